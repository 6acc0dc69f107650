//! Tandem's default business-contact mapping: Siebel `Contact` business component ⇄
//! Exchange contact, as a plugin (cdylib, built for wasm32-wasip2) and as plain Rust (rlib).
//!
//! Exchange field names are EWS element names, indexed entries flattened by key
//! (`EmailAddress1`, `BusinessPhone`, ...), exactly as the EWS connector reads and writes
//! them. Every mapped field is always present in the output, `Null` when the source lacks it
//! or has it blank, so clearing a field on one side clears it on the other.

#[cfg(feature = "export")]
use tandem_plugin_api::export_mapper;
use tandem_plugin_api::{Context, Fields, Mapper, PluginError, Value};

/// The category SSSE puts on contacts it wrote to Exchange; Tandem keeps it for continuity.
pub const SIEBEL_CATEGORY: &str = "Siebel Contact";

/// Siebel field ⇄ Exchange field, the pairs both directions map.
pub const FIELD_PAIRS: &[(&str, &str)] = &[
    ("First Name", "GivenName"),
    ("Last Name", "Surname"),
    ("Middle Name", "MiddleName"),
    ("Email Address", "EmailAddress1"),
    ("Work Phone #", "BusinessPhone"),
    ("Cellular Phone #", "MobilePhone"),
    ("Home Phone #", "HomePhone"),
    ("Fax Phone #", "BusinessFax"),
    ("Job Title", "JobTitle"),
    ("Assistant", "AssistantName"),
    ("Assistant Phone #", "AssistantPhone"),
    ("Primary Account Name", "CompanyName"),
];

/// Maps a Siebel Contact record to Exchange contact fields.
///
/// Sets every paired field (blank → `Null`), `Categories` = `["Siebel Contact"]` and
/// `FileAs` = "Last, First" (or whichever of the two is present; `Null` when neither is).
pub fn siebel_to_exchange(siebel: &Fields) -> Fields {
    let mut out = Fields::new();
    for (siebel_name, exchange_name) in FIELD_PAIRS {
        out.set_from(exchange_name, siebel, siebel_name);
    }
    out.set("Categories", Value::text_list([SIEBEL_CATEGORY]));
    let file_as = match (siebel.get_text("Last Name"), siebel.get_text("First Name")) {
        (Some(last), Some(first)) => Value::text(format!("{last}, {first}")),
        (Some(last), None) => Value::text(last),
        (None, Some(first)) => Value::text(first),
        (None, None) => Value::Null,
    };
    out.set("FileAs", file_as);
    out
}

/// Maps Exchange contact fields to a Siebel Contact record: the inverse of
/// [`siebel_to_exchange`] over [`FIELD_PAIRS`]. `Categories`, `FileAs` and any other Exchange
/// field are ignored.
pub fn exchange_to_siebel(exchange: &Fields) -> Fields {
    let mut out = Fields::new();
    for (siebel_name, exchange_name) in FIELD_PAIRS {
        out.set_from(siebel_name, exchange, exchange_name);
    }
    out
}

/// The plugin: the functions above behind the `mapper` world.
pub struct ContactMapping;

impl Mapper for ContactMapping {
    fn to_exchange(_ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        Ok(siebel_to_exchange(&siebel))
    }

    fn to_siebel(_ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
        Ok(exchange_to_siebel(&exchange))
    }
}

#[cfg(feature = "export")]
export_mapper!(ContactMapping);

#[cfg(test)]
mod tests;
