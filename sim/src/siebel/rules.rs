//! What the emulated Siebel refuses in a write, as a real one does: values outside a bounded
//! list of values, and text longer than its column. Each rule has a row in
//! `docs/conformance.md`; a refusal is HTTP 500 with Siebel's message, and nothing is stored.

use axum::http::StatusCode;

use super::ApiError;

/// A bounded list of values: the field, the LOV type it is bound to, and its values.
struct BoundedList {
    bus_comp: &'static str,
    field: &'static str,
    lov_type: &'static str,
    values: &'static [&'static str],
}

/// The bounded lists the emulator holds. A site's own tables hold more (or other) values;
/// these are the ones Oracle's documentation names, so a value the emulator takes is one
/// every Siebel has.
const BOUNDED_LISTS: &[BoundedList] = &[
    // Siebel Server Sync Guide, "How Priorities and Status Values Are Set for a Task Record".
    BoundedList {
        bus_comp: "Action",
        field: "Priority",
        lov_type: "ACTIVITY_PRIORITY",
        values: &["1-ASAP", "2-High", "3-Medium", "4-Low"],
    },
    BoundedList {
        bus_comp: "Action",
        field: "Status",
        lov_type: "EVENT_STATUS",
        values: &["Acknowledged", "Not Started", "In Progress", "Done", "On Hold", "Cancelled", "Declined"],
    },
    // Activity types used by SSSE and Siebel CRM Desktop's field mappings ("To Do" is CRM
    // Desktop's default for a shared task).
    BoundedList {
        bus_comp: "Action",
        field: "Type",
        lov_type: "TODO_TYPE",
        values: &["Appointment", "Call", "Meeting", "To Do", "Email - Inbound", "Email - Outbound", "Personal"],
    },
    // "Display In", which decides the Siebel views (and so the Exchange folder) of an activity.
    BoundedList {
        bus_comp: "Action",
        field: "Display",
        lov_type: "TODO_DISPLAY",
        values: &["Calendar and Activities", "To Do and Activities", "Activities Only"],
    },
];

/// Text fields with a column length the emulator enforces: (field, characters). Oracle's
/// integration-object field tables give `Integration Id` as text of 30 on every component.
const FIELD_LENGTHS: &[(&str, usize)] = &[("Integration Id", 30)];

/// Siebel's code for a value outside a bounded picklist (seen by real clients of the REST API).
const NOT_IN_BOUNDED_LIST: &str = "SBL-EAI-04401";

/// Checks the fields of a write to `bus_comp`; an empty value clears a field and is always
/// taken.
pub(super) fn check_write(bus_comp: &str, fields: &[(String, String)]) -> Result<(), ApiError> {
    for (name, value) in fields.iter().filter(|(_, value)| !value.is_empty()) {
        if let Some(list) = BOUNDED_LISTS.iter().find(|l| l.bus_comp == bus_comp && l.field == name) {
            // Bounded picklists take an exact match only (Oracle EAI guide, "Picklist Validation").
            if !list.values.contains(&value.as_str()) {
                return Err(refusal(format!(
                    "{NOT_IN_BOUNDED_LIST}: '{value}' is not a value of the bounded picklist of field '{name}' of {bus_comp} \
                     (list of values {}: {})",
                    list.lov_type,
                    list.values.join(", ")
                )));
            }
        }
        if let Some((_, limit)) = FIELD_LENGTHS.iter().find(|(field, _)| field == name) {
            let length = value.chars().count();
            if length > *limit {
                return Err(refusal(format!(
                    "The length of the text entered is bigger than the corresponding length allocated in the database: \
                     field '{name}' of {bus_comp} holds {limit} characters, the value has {length}"
                )));
            }
        }
    }
    Ok(())
}

fn refusal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn bounded_lists_take_exact_values_only() {
        assert!(check_write("Action", &fields(&[("Priority", "2-High"), ("Status", "On Hold")])).is_ok());
        let refused = check_write("Action", &fields(&[("Type", "Blue Category")])).unwrap_err();
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(refused.message.contains("SBL-EAI-04401") && refused.message.contains("Blue Category"), "{}", refused.message);
        assert!(check_write("Action", &fields(&[("Status", "in progress")])).is_err(), "case counts");
        assert!(check_write("Action", &fields(&[("Status", "Waiting on Someone Else")])).is_err());
        assert!(check_write("Action", &fields(&[("Status", "")])).is_ok(), "clearing is taken");
        // Another component's field of the same name is not bound to the list.
        assert!(check_write("Contact", &fields(&[("Status", "Anything")])).is_ok());
    }

    #[test]
    fn integration_id_holds_thirty_characters() {
        let thirty = "a".repeat(30);
        assert!(check_write("Contact", &fields(&[("Integration Id", &thirty)])).is_ok());
        let uuid = "7a1d3c5e-0b8f-4e21-9c6d-2f4a8e1b5d3c";
        let refused = check_write("Action", &fields(&[("Integration Id", uuid)])).unwrap_err();
        assert!(refused.message.contains("bigger than the corresponding length"), "{}", refused.message);
    }
}
