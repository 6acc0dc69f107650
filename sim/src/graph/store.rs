//! The Graph emulator's mailboxes: contact folders, the primary calendar and To Do lists,
//! each a collection of items kept as Graph JSON properties, with a change sequence and
//! tombstones so delta queries can report what changed and what was removed.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The Graph resource types the emulator stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Contact,
    Event,
    TodoTask,
}

impl Kind {
    /// The entity type name, as in `microsoft.graph.contact`.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Event => "event",
            Kind::TodoTask => "todoTask",
        }
    }

    /// Contacts and events carry a `changeKey`; To Do tasks only an etag.
    pub fn has_change_key(self) -> bool {
        !matches!(self, Kind::TodoTask)
    }

    /// Whether `singleValueExtendedProperties` exist on this type (Outlook items only).
    pub fn has_extended_properties(self) -> bool {
        !matches!(self, Kind::TodoTask)
    }
}

/// A single-value extended property (`{"id": "String {guid} Name X", "value": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedProperty {
    pub id: String,
    pub value: String,
}

/// One stored item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub kind: Kind,
    /// The properties a client set (plus computed read-only ones such as `iCalUId`).
    pub properties: Map<String, Value>,
    pub extended: Vec<ExtendedProperty>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub change_key: String,
    /// The store sequence number of this item's last change.
    pub seq: u64,
}

impl Item {
    /// `W/"changeKey"`, as Graph's `@odata.etag`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.change_key)
    }

    pub fn extended_value(&self, id: &str) -> Option<&str> {
        self.extended
            .iter()
            .find(|p| same_extended_id(&p.id, id))
            .map(|p| p.value.as_str())
    }
}

/// An extended property id with its blanks collapsed, as the emulator stores and compares it.
pub fn canonical_extended_id(id: &str) -> String {
    id.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether two canonical extended property ids name the same property (case does not matter).
pub fn same_extended_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A folder of items: a contact folder, the calendar or a To Do list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Collection {
    pub id: String,
    pub display_name: String,
    pub items: BTreeMap<String, Item>,
    /// Deleted item id → sequence number of the delete.
    pub removed: BTreeMap<String, u64>,
}

impl Collection {
    fn new(id: String, display_name: &str) -> Self {
        Self {
            id,
            display_name: display_name.to_owned(),
            ..Default::default()
        }
    }
}

/// Which collection of a mailbox a request addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectionRef {
    ContactFolder(String),
    Calendar,
    TodoList(String),
}

impl CollectionRef {
    pub fn kind(&self) -> Kind {
        match self {
            CollectionRef::ContactFolder(_) => Kind::Contact,
            CollectionRef::Calendar => Kind::Event,
            CollectionRef::TodoList(_) => Kind::TodoTask,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mailbox {
    pub default_contact_folder: String,
    pub contact_folders: BTreeMap<String, Collection>,
    pub calendar: Collection,
    pub default_todo_list: String,
    pub todo_lists: BTreeMap<String, Collection>,
}

impl Mailbox {
    fn new() -> Self {
        let contacts = Collection::new(new_id(), "Contacts");
        let tasks = Collection::new(new_id(), "Tasks");
        Self {
            default_contact_folder: contacts.id.clone(),
            contact_folders: BTreeMap::from([(contacts.id.clone(), contacts)]),
            calendar: Collection::new(new_id(), "Calendar"),
            default_todo_list: tasks.id.clone(),
            todo_lists: BTreeMap::from([(tasks.id.clone(), tasks)]),
        }
    }

    /// The collection `r` names, if it exists. The contact folder id `contacts` is an alias
    /// of the default folder.
    pub fn collection(&self, r: &CollectionRef) -> Option<&Collection> {
        match r {
            CollectionRef::ContactFolder(id) => self.contact_folders.get(id),
            CollectionRef::Calendar => Some(&self.calendar),
            CollectionRef::TodoList(id) => self.todo_lists.get(id),
        }
    }

    fn collection_mut(&mut self, r: &CollectionRef) -> Option<&mut Collection> {
        match r {
            CollectionRef::ContactFolder(id) => self.contact_folders.get_mut(id),
            CollectionRef::Calendar => Some(&mut self.calendar),
            CollectionRef::TodoList(id) => self.todo_lists.get_mut(id),
        }
    }

    /// The contact folder holding contact `id`.
    pub fn folder_of_contact(&self, id: &str) -> Option<String> {
        self.contact_folders
            .values()
            .find(|f| f.items.contains_key(id))
            .map(|f| f.id.clone())
    }

    /// The collection holding item `id`, in any folder, calendar or list.
    pub fn locate(&self, id: &str) -> Option<CollectionRef> {
        if let Some(folder) = self.folder_of_contact(id) {
            return Some(CollectionRef::ContactFolder(folder));
        }
        if self.calendar.items.contains_key(id) {
            return Some(CollectionRef::Calendar);
        }
        self.todo_lists
            .values()
            .find(|l| l.items.contains_key(id))
            .map(|l| CollectionRef::TodoList(l.id.clone()))
    }

    /// Resolves the aliases `contacts` (default contact folder) and `defaultList`.
    pub fn resolve(&self, r: CollectionRef) -> CollectionRef {
        match r {
            CollectionRef::ContactFolder(id) if id.eq_ignore_ascii_case("contacts") => {
                CollectionRef::ContactFolder(self.default_contact_folder.clone())
            }
            CollectionRef::TodoList(id) if id.eq_ignore_ascii_case("defaultList") => {
                CollectionRef::TodoList(self.default_todo_list.clone())
            }
            other => other,
        }
    }
}

/// Everything the emulator stores (saved to `--data FILE`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Store {
    pub mailboxes: BTreeMap<String, Mailbox>,
    /// The last change sequence number handed out.
    pub seq: u64,
    /// Bumped by the "expire delta tokens" knob; tokens of older generations get 410.
    pub delta_generation: u64,
}

impl Store {
    /// The mailbox, created on first use.
    pub fn mailbox(&mut self, name: &str) -> &mut Mailbox {
        self.mailboxes
            .entry(name.to_owned())
            .or_insert_with(Mailbox::new)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Adds a contact folder or To Do list; returns its id.
    pub fn add_collection(&mut self, mailbox: &str, kind: Kind, display_name: &str) -> String {
        let collection = Collection::new(new_id(), display_name);
        let id = collection.id.clone();
        let mailbox = self.mailbox(mailbox);
        match kind {
            Kind::TodoTask => mailbox.todo_lists.insert(id.clone(), collection),
            _ => mailbox.contact_folders.insert(id.clone(), collection),
        };
        id
    }

    /// Stores a new item; `properties` are already validated.
    pub fn create(
        &mut self,
        mailbox: &str,
        collection: &CollectionRef,
        properties: Map<String, Value>,
        extended: Vec<ExtendedProperty>,
    ) -> Option<Item> {
        let seq = self.next_seq();
        let now = Utc::now();
        let item = Item {
            id: new_id(),
            kind: collection.kind(),
            properties,
            extended,
            created: now,
            modified: now,
            change_key: change_key(seq),
            seq,
        };
        let target = self.mailbox(mailbox).collection_mut(collection)?;
        target.items.insert(item.id.clone(), item.clone());
        Some(item)
    }

    /// Applies a validated patch (a `null` value removes the property); extended properties
    /// replace those with the same id.
    pub fn update(
        &mut self,
        mailbox: &str,
        collection: &CollectionRef,
        id: &str,
        patch: Map<String, Value>,
        extended: Vec<ExtendedProperty>,
    ) -> Option<Item> {
        let seq = self.next_seq();
        let target = self.mailbox(mailbox).collection_mut(collection)?;
        let item = target.items.get_mut(id)?;
        for (name, value) in patch {
            if value.is_null() {
                item.properties.remove(&name);
            } else {
                item.properties.insert(name, value);
            }
        }
        for property in extended {
            item.extended
                .retain(|p| !same_extended_id(&p.id, &property.id));
            item.extended.push(property);
        }
        item.seq = seq;
        item.modified = Utc::now();
        item.change_key = change_key(seq);
        Some(item.clone())
    }

    /// Deletes an item, leaving a tombstone for delta; false when it does not exist.
    pub fn delete(&mut self, mailbox: &str, collection: &CollectionRef, id: &str) -> bool {
        let seq = self.next_seq();
        let Some(target) = self.mailbox(mailbox).collection_mut(collection) else {
            return false;
        };
        if target.items.remove(id).is_none() {
            return false;
        }
        target.removed.insert(id.to_owned(), seq);
        true
    }
}

/// A new opaque item id in Graph's style (URL-safe, so it can sit in a path).
pub fn new_id() -> String {
    let bytes = uuid::Uuid::new_v4();
    format!(
        "AAMkAG{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_bytes())
    )
}

fn change_key(seq: u64) -> String {
    let mut bytes = seq.to_be_bytes().to_vec();
    bytes.extend_from_slice(&uuid::Uuid::new_v4().as_bytes()[..6]);
    format!(
        "EQAAABYAAA{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
