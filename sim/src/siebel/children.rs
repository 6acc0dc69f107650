//! Child business components of the Siebel emulator: `/data/{BO}/{BC}/{Id}/{ChildBC}[/{ChildId}]`
//! (reference §6 "URLs and methods") and the `rel: child` links that point at them (§6
//! "Response shape": `{"rel":"child","href":".../Contact/0CR-1MF5Z6/Position","name":"Position"}`).
//!
//! A child is a record of another component, related to the parent either by a field of the
//! child naming the parent (an Action's `Contact Id`) or by a list field of the parent naming
//! the children (a Contact's team in `Position Id` / `Primary Position Id`).

use super::Record;
use super::visibility::{OWNER_FIELD, PRIMARY_POSITION_FIELD, TEAM_FIELD, id_list};

/// How a child record is tied to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// This field of the child holds the parent's Id.
    ChildField(&'static str),
    /// These (comma-separated list) fields of the parent hold the children's Ids; a new link
    /// is added to the first one.
    ParentFields(&'static [&'static str]),
}

/// One child business component of a parent component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLink {
    pub parent: (&'static str, &'static str),
    /// The child's name in URLs and links.
    pub name: &'static str,
    /// The business object / component the children are records of.
    pub target: (&'static str, &'static str),
    pub relation: Relation,
}

const TEAM_FIELDS: &[&str] = &[TEAM_FIELD, PRIMARY_POSITION_FIELD];

/// Every parent → child link the emulator serves.
pub const CHILD_LINKS: &[ChildLink] = &[
    ChildLink {
        parent: ("Contact", "Contact"),
        name: "Action",
        target: ("Action", "Action"),
        relation: Relation::ChildField("Contact Id"),
    },
    ChildLink {
        parent: ("Contact", "Contact"),
        name: "Position",
        target: ("Position", "Position"),
        relation: Relation::ParentFields(TEAM_FIELDS),
    },
    ChildLink {
        parent: ("Employee", "Employee"),
        name: "Action",
        target: ("Action", "Action"),
        relation: Relation::ChildField(OWNER_FIELD),
    },
    ChildLink {
        parent: ("Employee", "Employee"),
        name: "Position",
        target: ("Position", "Position"),
        relation: Relation::ParentFields(TEAM_FIELDS),
    },
    ChildLink {
        parent: ("Action", "Action"),
        name: "Contact",
        target: ("Contact", "Contact"),
        relation: Relation::ParentFields(&["Contact Id"]),
    },
    // The employee participants of an activity (a meeting's attendees besides its owner).
    ChildLink {
        parent: ("Action", "Action"),
        name: "Employee",
        target: ("Employee", "Employee"),
        relation: Relation::ParentFields(&["Employee Id"]),
    },
];

/// The child links of a component, in table order.
pub fn links_of(bus_object: &str, bus_comp: &str) -> impl Iterator<Item = &'static ChildLink> {
    CHILD_LINKS.iter().filter(move |link| link.parent == (bus_object, bus_comp))
}

/// The child link `name` of a component (names compare case-insensitively).
pub fn find(bus_object: &str, bus_comp: &str, name: &str) -> Option<&'static ChildLink> {
    links_of(bus_object, bus_comp).find(|link| link.name.eq_ignore_ascii_case(name))
}

impl ChildLink {
    /// Whether `child` (with Id `child_id`) is a child of `parent` (with Id `parent_id`).
    pub fn relates(&self, parent_id: &str, parent: &Record, child_id: &str, child: &Record) -> bool {
        match self.relation {
            Relation::ChildField(field) => id_list(child, field).any(|id| id == parent_id),
            Relation::ParentFields(fields) => fields.iter().any(|field| id_list(parent, field).any(|id| id == child_id)),
        }
    }

    /// Ties `child_id` to the parent; returns whether a new tie was made. Only the field that
    /// holds the tie changes — `Updated` is left alone, as Siebel leaves a parent's `Updated`
    /// alone when its multi-value groups change (§6 "Change-detection fields", caveat).
    pub fn tie(&self, parent_id: &str, parent: &mut Record, child_id: &str, child: &mut Record) -> bool {
        if self.relates(parent_id, parent, child_id, child) {
            return false;
        }
        match self.relation {
            Relation::ChildField(field) => {
                child.insert(field.to_owned(), parent_id.to_owned());
            }
            Relation::ParentFields(fields) => {
                let field = fields[0];
                let mut ids: Vec<String> = id_list(parent, field).map(str::to_owned).collect();
                ids.push(child_id.to_owned());
                parent.insert(field.to_owned(), ids.join(","));
            }
        }
        true
    }
}
