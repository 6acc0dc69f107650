//! Meeting participants between the two sides: Siebel keeps a calendar activity's attendees
//! as Ids (`Employee Id` and `Contact Id`, comma-separated, the Employees and Contacts
//! multi-value groups), Exchange as SMTP addresses. The engine shows the mapping plugin the
//! participants' addresses as the pseudo-field `Attendee Emails` and turns what comes back into
//! Ids again, so a plugin maps attendees as plain values (reference §2 "Calendar specifics").
//!
//! SSSE's rules kept here: only participants with an email address become attendees; the
//! owner is the organizer, not an attendee; an address that is neither a known employee nor a
//! known contact is dropped on the way into Siebel; participants without an address (which
//! Exchange never sees) stay.

use std::collections::HashMap;

use tracing::debug;

use crate::siebel::{SiebelClient, SiebelError, SiebelRecord, searchspec_literal};
use crate::record::{Fields, Value};

/// The employee participants of an activity.
pub const EMPLOYEE_PARTICIPANTS: &str = "Employee Id";
/// The contact participants of an activity.
pub const CONTACT_PARTICIPANTS: &str = "Contact Id";
/// The pseudo-field the mapping plugin sees: the participants' addresses, a list of texts.
pub const ATTENDEE_EMAILS: &str = "Attendee Emails";
/// The owner of an activity (the organizer of a meeting).
const OWNER: &str = "Primary Owner Id";
const EMPLOYEE_EMAIL: &str = "EMail Addr";
const CONTACT_EMAIL: &str = "Email Address";

/// The Ids of a comma-separated list field.
pub fn id_list(fields: &Fields, name: &str) -> Vec<String> {
    fields
        .get(name)
        .and_then(Value::as_text)
        .map(|list| list.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether `employee_id` owns the activity.
pub fn is_owner(fields: &Fields, employee_id: &str) -> bool {
    fields.get(OWNER).and_then(Value::as_text).is_some_and(|owner| owner.trim() == employee_id)
}

/// Whether `employee_id` is an employee participant of the activity (its owner aside).
pub fn is_participant(fields: &Fields, employee_id: &str) -> bool {
    id_list(fields, EMPLOYEE_PARTICIPANTS).iter().any(|id| id == employee_id)
}

/// The list field holding `ids`: their comma-separated text, `Null` when empty.
fn list_value(ids: &[String]) -> Value {
    if ids.is_empty() { Value::Null } else { Value::Text(ids.join(",")) }
}

/// What one run learnt of participants' addresses, so each is read from Siebel once.
#[derive(Debug, Default)]
pub struct Directory {
    /// Employee Id → email address (`None`: the employee has none, or is not visible).
    employees: HashMap<String, Option<String>>,
    contacts: HashMap<String, Option<String>>,
}

impl Directory {
    /// Reads the addresses of the participants of `records` not known yet: one query per
    /// component per 50 Ids.
    async fn learn(&mut self, siebel: &SiebelClient, records: &[&Fields]) -> Result<(), SiebelError> {
        for (field, (bo, email_field), known) in [
            (EMPLOYEE_PARTICIPANTS, ("Employee", EMPLOYEE_EMAIL), &mut self.employees),
            (CONTACT_PARTICIPANTS, ("Contact", CONTACT_EMAIL), &mut self.contacts),
        ] {
            let mut wanted: Vec<String> = records.iter().flat_map(|fields| id_list(fields, field)).collect();
            if field == EMPLOYEE_PARTICIPANTS {
                // The owner's address only matters for a meeting with participants (it is
                // left out of the attendees).
                let owners = records
                    .iter()
                    .filter(|f| !id_list(f, EMPLOYEE_PARTICIPANTS).is_empty() || !id_list(f, CONTACT_PARTICIPANTS).is_empty())
                    .filter_map(|f| f.get(OWNER).and_then(Value::as_text));
                wanted.extend(owners.map(|owner| owner.trim().to_owned()));
            }
            wanted.retain(|id| !known.contains_key(id));
            wanted.sort();
            wanted.dedup();
            if wanted.is_empty() {
                continue;
            }
            for record in siebel.get_by_ids(bo, bo, &wanted).await? {
                let email = record.fields.get(email_field).and_then(Value::as_text).map(str::trim).filter(|e| !e.is_empty());
                known.insert(record.id.clone(), email.map(str::to_owned));
            }
            for id in wanted {
                known.entry(id).or_insert(None);
            }
        }
        Ok(())
    }

    fn email_of(&self, field: &str, id: &str) -> Option<&str> {
        let known = if field == EMPLOYEE_PARTICIPANTS { &self.employees } else { &self.contacts };
        known.get(id).and_then(|email| email.as_deref())
    }

    /// Adds `Attendee Emails` to each record: the addresses of its employee participants and
    /// then its contact participants, its owner left out, each address once.
    pub async fn annotate(&mut self, siebel: &SiebelClient, records: &mut [SiebelRecord]) -> Result<(), SiebelError> {
        let all: Vec<&Fields> = records.iter().map(|r| &r.fields).collect();
        self.learn(siebel, &all).await?;
        for record in records {
            let owner_email = record
                .fields
                .get(OWNER)
                .and_then(Value::as_text)
                .and_then(|owner| self.email_of(EMPLOYEE_PARTICIPANTS, owner.trim()))
                .map(str::to_ascii_lowercase);
            let mut emails: Vec<String> = Vec::new();
            for field in [EMPLOYEE_PARTICIPANTS, CONTACT_PARTICIPANTS] {
                for id in id_list(&record.fields, field) {
                    let Some(email) = self.email_of(field, &id) else { continue };
                    let lower = email.to_ascii_lowercase();
                    if Some(&lower) != owner_email.as_ref() && !emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
                        emails.push(email.to_owned());
                    }
                }
            }
            let value = if emails.is_empty() { Value::Null } else { Value::List(emails.into_iter().map(Value::Text).collect()) };
            record.fields.insert(ATTENDEE_EMAILS.into(), value);
        }
        Ok(())
    }

    /// Replaces `Attendee Emails` in `wanted` (fields about to be written over `current`) by
    /// the participant lists it means. Participants whose address is listed stay; others with
    /// an address leave; those without one, and the owner, stay; a new address becomes the
    /// employee or the contact that has it (exactly one), or is dropped. The lists are written
    /// only when they change.
    pub async fn resolve(&mut self, siebel: &SiebelClient, current: &Fields, wanted: &mut Fields) -> Result<(), SiebelError> {
        let Some(attendees) = wanted.remove(ATTENDEE_EMAILS) else { return Ok(()) };
        let addresses: Vec<String> = match attendees {
            Value::List(items) => items.iter().filter_map(Value::as_text).map(|t| t.trim().to_owned()).collect(),
            Value::Text(text) => vec![text.trim().to_owned()],
            _ => Vec::new(),
        };
        self.learn(siebel, &[current]).await?;
        let owner = current.get(OWNER).or_else(|| wanted.get(OWNER)).and_then(Value::as_text).map(str::trim).unwrap_or("");
        let listed = |email: Option<&str>| email.is_some_and(|e| addresses.iter().any(|a| a.eq_ignore_ascii_case(e)));
        let mut employees: Vec<String> = id_list(current, EMPLOYEE_PARTICIPANTS)
            .into_iter()
            .filter(|id| {
                let email = self.email_of(EMPLOYEE_PARTICIPANTS, id);
                id == owner || email.is_none() || listed(email)
            })
            .collect();
        let mut contacts: Vec<String> = id_list(current, CONTACT_PARTICIPANTS)
            .into_iter()
            .filter(|id| {
                let email = self.email_of(CONTACT_PARTICIPANTS, id);
                email.is_none() || listed(email)
            })
            .collect();
        let owner_email = self.email_of(EMPLOYEE_PARTICIPANTS, owner).map(str::to_owned);
        for address in addresses.iter().filter(|a| !a.is_empty()) {
            let kept = employees
                .iter()
                .map(|id| (EMPLOYEE_PARTICIPANTS, id))
                .chain(contacts.iter().map(|id| (CONTACT_PARTICIPANTS, id)))
                .any(|(field, id)| self.email_of(field, id).is_some_and(|e| e.eq_ignore_ascii_case(address)));
            if kept || owner_email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(address)) {
                continue;
            }
            match self.find_by_email(siebel, address).await? {
                Some((EMPLOYEE_PARTICIPANTS, id)) => employees.push(id),
                Some((_, id)) => contacts.push(id),
                None => debug!(%address, "an attendee who is neither a Siebel employee nor a contact; dropped"),
            }
        }
        for (field, ids) in [(EMPLOYEE_PARTICIPANTS, employees), (CONTACT_PARTICIPANTS, contacts)] {
            if ids != id_list(current, field) {
                wanted.insert(field.into(), list_value(&ids));
            }
        }
        Ok(())
    }

    /// The one employee, or else the one contact, with this address.
    async fn find_by_email(&mut self, siebel: &SiebelClient, address: &str) -> Result<Option<(&'static str, String)>, SiebelError> {
        for (field, bo, email_field) in
            [(EMPLOYEE_PARTICIPANTS, "Employee", EMPLOYEE_EMAIL), (CONTACT_PARTICIPANTS, "Contact", CONTACT_EMAIL)]
        {
            // `~=`: an address is the same whatever its case, and Siebel's `=` is not.
            let spec = format!("[{email_field}] ~= {}", searchspec_literal(address));
            let found = siebel.query(bo, bo, Some(&spec)).await?;
            if let [record] = found.as_slice() {
                let known = if field == EMPLOYEE_PARTICIPANTS { &mut self.employees } else { &mut self.contacts };
                // Siebel's own spelling of the address, as the next run learns it, so the
                // record reads the same then.
                let stored = record.fields.get(email_field).and_then(Value::as_text).unwrap_or(address);
                known.insert(record.id.clone(), Some(stored.to_owned()));
                return Ok(Some((field, record.id.clone())));
            }
        }
        Ok(None)
    }
}

/// Removes `employee_id` from the employee participants: the fields to write, or `None` when
/// they are not one.
pub fn without_participant(current: &Fields, employee_id: &str) -> Option<Fields> {
    let ids = id_list(current, EMPLOYEE_PARTICIPANTS);
    if !ids.iter().any(|id| id == employee_id) {
        return None;
    }
    let rest: Vec<String> = ids.into_iter().filter(|id| id != employee_id).collect();
    Some(Fields::from([(EMPLOYEE_PARTICIPANTS.to_owned(), list_value(&rest))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::Text((*v).to_owned()))).collect()
    }

    #[test]
    fn id_lists_split_on_commas_and_ignore_blanks() {
        let f = fields(&[(EMPLOYEE_PARTICIPANTS, " 1-A, ,1-B,"), (OWNER, "1-O")]);
        assert_eq!(id_list(&f, EMPLOYEE_PARTICIPANTS), ["1-A", "1-B"]);
        assert!(is_participant(&f, "1-B") && !is_participant(&f, "1-"));
        assert!(is_owner(&f, "1-O") && !is_owner(&f, "1-A"));
        assert!(id_list(&f, CONTACT_PARTICIPANTS).is_empty());
    }

    #[test]
    fn leaving_a_meeting_removes_only_that_participant() {
        let f = fields(&[(EMPLOYEE_PARTICIPANTS, "1-A,1-B")]);
        assert_eq!(without_participant(&f, "1-A"), Some(fields(&[(EMPLOYEE_PARTICIPANTS, "1-B")])));
        let last = without_participant(&fields(&[(EMPLOYEE_PARTICIPANTS, "1-B")]), "1-B").expect("a participant");
        assert_eq!(last.get(EMPLOYEE_PARTICIPANTS), Some(&Value::Null));
        assert_eq!(without_participant(&f, "1-C"), None, "not a participant: nothing to write");
    }
}
