//! Tandem's default employee mapping: Siebel `Employee` business component → Exchange contact
//! with category "Employee", as a plugin (cdylib, built for wasm32-wasip2) and as plain Rust
//! (rlib).
//!
//! Employees are **export only** (SSSE: Export Only is the recommended level, bidirectional
//! could create rogue employees; edits made in Outlook are overwritten). So [`Mapper::to_siebel`]
//! returns an **empty record**, never an error: the engine hashes the Siebel form of every
//! Exchange item it reads, and an error there would quarantine every employee copy (or fail
//! the run right after creating copies), while an empty record hashes the same whatever the
//! user edits in Outlook — Exchange never looks changed, nothing is written to Siebel, and
//! the next Siebel change overwrites the copy. An engine that wanted to create Siebel records
//! from Exchange items must not do it for this domain (an empty record has no name to insert).
//!
//! The contact fields and `FileAs` come from `contact-mapping` (reused, not copied): the
//! Employee fields are renamed to their Contact equivalents and mapped with its table.

use contact_mapping::FIELD_PAIRS;
#[cfg(feature = "export")]
use tandem_plugin_api::export_mapper;
use tandem_plugin_api::{Context, Fields, Mapper, PluginError, Value};

/// The category SSSE gives employee contacts in Exchange.
pub const EMPLOYEE_CATEGORY: &str = "Employee";

/// Siebel Employee field → the Siebel Contact field with the same meaning, whose Exchange
/// field (per [`contact_mapping::FIELD_PAIRS`]) the employee's value goes to.
pub const EMPLOYEE_TO_CONTACT: &[(&str, &str)] = &[
    ("First Name", "First Name"),
    ("Last Name", "Last Name"),
    ("EMail Addr", "Email Address"),
    ("Phone #", "Work Phone #"),
    ("Job Title", "Job Title"),
];

/// Maps a Siebel Employee record to Exchange contact fields: `GivenName`, `Surname`,
/// `EmailAddress1`, `BusinessPhone`, `JobTitle` (blank → `Null`), `FileAs` ("Last, First") and
/// `Categories` = `["Employee"]`. Other Exchange contact fields are not touched.
pub fn siebel_to_exchange(employee: &Fields) -> Fields {
    let mut as_contact = Fields::new();
    for (employee_name, contact_name) in EMPLOYEE_TO_CONTACT {
        as_contact.set_from(contact_name, employee, employee_name);
    }
    let mut out = contact_mapping::siebel_to_exchange(&as_contact);
    let kept: Vec<&str> = exchange_fields().collect();
    out.retain(|name, _| kept.contains(&name));
    out.set("Categories", Value::text_list([EMPLOYEE_CATEGORY]));
    out
}

/// The Exchange fields [`siebel_to_exchange`] writes.
pub fn exchange_fields() -> impl Iterator<Item = &'static str> {
    EMPLOYEE_TO_CONTACT
        .iter()
        .filter_map(|(_, contact_name)| {
            FIELD_PAIRS
                .iter()
                .find(|(siebel, _)| siebel == contact_name)
                .map(|(_, exchange)| *exchange)
        })
        .chain(["FileAs", "Categories"])
}

/// The plugin: export only; see the crate documentation for why `to_siebel` is empty.
pub struct EmployeeMapping;

impl Mapper for EmployeeMapping {
    fn to_exchange(_ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        Ok(siebel_to_exchange(&siebel))
    }

    fn to_siebel(_ctx: &Context, _exchange: Fields) -> Result<Fields, PluginError> {
        tandem_plugin_api::debug!("employees are export only: Exchange edits are not mapped back");
        Ok(Fields::new())
    }
}

#[cfg(feature = "export")]
export_mapper!(EmployeeMapping);

#[cfg(test)]
mod tests {
    use super::*;

    fn employee() -> Fields {
        [
            ("First Name", "Ada"),
            ("Last Name", "Lovelace"),
            ("Login Name", "ALOVELACE"),
            ("EMail Addr", "ada@example.com"),
            ("Phone #", "+44 20 7946 0000"),
            ("Job Title", "Analyst"),
        ]
        .into_iter()
        .collect()
    }

    fn ctx() -> Context {
        Context {
            domain: "employees".into(),
            user: "SADMIN".into(),
        }
    }

    #[test]
    fn employee_maps_to_a_contact_in_the_employee_category() {
        let ex = siebel_to_exchange(&employee());
        assert_eq!(ex.get_text("GivenName"), Some("Ada"));
        assert_eq!(ex.get_text("Surname"), Some("Lovelace"));
        assert_eq!(ex.get_text("EmailAddress1"), Some("ada@example.com"));
        assert_eq!(ex.get_text("BusinessPhone"), Some("+44 20 7946 0000"));
        assert_eq!(ex.get_text("JobTitle"), Some("Analyst"));
        assert_eq!(ex.get_text("FileAs"), Some("Lovelace, Ada"));
        assert_eq!(ex.get("Categories"), Some(&Value::text_list(["Employee"])));
        let names: Vec<&str> = ex.iter().map(|(n, _)| n).collect();
        let mut expected: Vec<&str> = exchange_fields().collect();
        expected.sort_unstable();
        assert_eq!(names, expected, "no other contact field is touched");
        assert_eq!(ex.len(), EMPLOYEE_TO_CONTACT.len() + 2);
    }

    #[test]
    fn blank_employee_fields_clear_the_copy() {
        let mut e = employee();
        e.set("Job Title", "");
        e.remove("Phone #");
        e.remove("First Name");
        let ex = siebel_to_exchange(&e);
        assert_eq!(ex.get("JobTitle"), Some(&Value::Null));
        assert_eq!(ex.get("BusinessPhone"), Some(&Value::Null));
        assert_eq!(ex.get("GivenName"), Some(&Value::Null));
        assert_eq!(ex.get_text("FileAs"), Some("Lovelace"));
    }

    #[test]
    fn to_siebel_is_empty_whatever_the_exchange_item_says() {
        let mut edited = siebel_to_exchange(&employee());
        let untouched = EmployeeMapping::to_siebel(&ctx(), edited.clone()).expect("never fails");
        edited.set("JobTitle", "Rogue title");
        edited.set("Categories", Value::Null);
        let after_edit = EmployeeMapping::to_siebel(&ctx(), edited).expect("never fails");
        assert!(untouched.is_empty() && after_edit.is_empty());
        assert_eq!(
            untouched, after_edit,
            "an Outlook edit never looks like a change"
        );
    }

    #[test]
    fn mapper_trait_delegates_to_the_plain_function() {
        let ex = EmployeeMapping::to_exchange(&ctx(), employee()).expect("never fails");
        assert_eq!(ex, siebel_to_exchange(&employee()));
    }
}
