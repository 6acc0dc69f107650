//! The EWS emulator's mailbox store: items per distinguished folder, ChangeKeys, and the
//! per-folder change sequence that SyncFolderItems states point into.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::wire::{ExtendedKey, ItemKind, WireItem, WireValue};

/// Every mailbox, keyed by lower-case SMTP address.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Store {
    pub mailboxes: BTreeMap<String, Mailbox>,
    /// Source of fresh ChangeKeys (global, so a key is never reused).
    pub next_change_key: u64,
    /// Streaming subscriptions by id (in memory only, like Exchange's).
    #[serde(skip)]
    pub subscriptions: BTreeMap<String, super::notify::Subscription>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Mailbox {
    pub folders: BTreeMap<ItemKind, Folder>,
}

/// One distinguished folder: its items, deletions, and change sequence.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Folder {
    /// Random per folder; SyncStates from another folder (or a wiped store) are rejected.
    pub epoch: String,
    /// Bumped by every create, update and delete; a SyncState holds a value of it.
    pub seq: u64,
    pub items: BTreeMap<String, StoredItem>,
    pub tombstones: Vec<Tombstone>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredItem {
    pub id: String,
    pub change_key: String,
    pub fields: BTreeMap<String, WireValue>,
    pub extended: Vec<(ExtendedKey, String)>,
    pub created_seq: u64,
    pub modified_seq: u64,
    /// A recurring master's modified and deleted occurrences.
    #[serde(default, skip_serializing_if = "OccurrenceEdits::is_empty")]
    pub occurrences: OccurrenceEdits,
}

/// What was done to single occurrences of a recurring series, by 1-based instance index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct OccurrenceEdits {
    /// Occurrences changed on their own (Exchange's exceptions).
    pub modified: BTreeMap<u32, ModifiedOccurrence>,
    /// Occurrences deleted from the series.
    pub deleted: BTreeSet<u32>,
}

impl OccurrenceEdits {
    pub fn is_empty(&self) -> bool {
        self.modified.is_empty() && self.deleted.is_empty()
    }
}

/// An exception: how one occurrence differs from its master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModifiedOccurrence {
    pub change_key: String,
    /// Fields whose value differs from the master's (Start and End always among them).
    pub fields: BTreeMap<String, WireValue>,
    /// Master fields the occurrence does not have.
    pub removed: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    pub id: String,
    pub change_key: String,
    pub created_seq: u64,
    pub deleted_seq: u64,
}

/// One change reported by SyncFolderItems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Create { id: String, change_key: String },
    Update { id: String, change_key: String },
    Delete { id: String, change_key: String },
}

impl Folder {
    fn new() -> Self {
        Self {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            seq: 0,
            items: BTreeMap::new(),
            tombstones: Vec::new(),
        }
    }

    /// The opaque state meaning "everything up to `seq` seen".
    pub fn sync_state(&self, kind: ItemKind, seq: u64) -> String {
        let raw = format!(
            "tandem-ews-sim/v1/{}/{}/{seq}",
            kind.folder_id(),
            self.epoch
        );
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// Reads a state produced by [`Folder::sync_state`]; `None` when it is not valid here.
    pub fn parse_sync_state(&self, kind: ItemKind, state: &str) -> Option<u64> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(state.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let rest = raw.strip_prefix("tandem-ews-sim/v1/")?;
        let mut parts = rest.split('/');
        let (folder, epoch, seq) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || folder != kind.folder_id() || epoch != self.epoch {
            return None;
        }
        let seq: u64 = seq.parse().ok()?;
        (seq <= self.seq).then_some(seq)
    }

    /// The changes after `since`, oldest first: items created or modified later, and deletions
    /// of items that existed at `since`. Each change carries the sequence it happened at.
    pub fn changes_since(&self, since: u64) -> Vec<(u64, Change)> {
        let mut changes: Vec<(u64, Change)> = self
            .items
            .values()
            .filter(|item| item.modified_seq > since)
            .map(|item| {
                let (id, change_key) = (item.id.clone(), item.change_key.clone());
                let change = if item.created_seq > since {
                    Change::Create { id, change_key }
                } else {
                    Change::Update { id, change_key }
                };
                (item.modified_seq, change)
            })
            .collect();
        changes.extend(
            self.tombstones
                .iter()
                .filter(|t| t.deleted_seq > since && t.created_seq <= since)
                .map(|t| {
                    (
                        t.deleted_seq,
                        Change::Delete {
                            id: t.id.clone(),
                            change_key: t.change_key.clone(),
                        },
                    )
                }),
        );
        changes.sort_by_key(|(seq, _)| *seq);
        changes
    }

    /// Items in creation order (the FindItem view).
    pub fn items_in_order(&self) -> Vec<&StoredItem> {
        let mut items: Vec<&StoredItem> = self.items.values().collect();
        items.sort_by_key(|item| item.created_seq);
        items
    }
}

impl Mailbox {
    pub fn folder(&mut self, kind: ItemKind) -> &mut Folder {
        self.folders.entry(kind).or_insert_with(Folder::new)
    }

    /// Finds which folder holds an item.
    pub fn locate(&self, id: &str) -> Option<ItemKind> {
        self.folders
            .iter()
            .find(|(_, folder)| folder.items.contains_key(id))
            .map(|(kind, _)| *kind)
    }

    pub fn item(&self, id: &str) -> Option<(ItemKind, &StoredItem)> {
        self.folders
            .iter()
            .find_map(|(kind, folder)| folder.items.get(id).map(|item| (*kind, item)))
    }
}

impl Store {
    pub fn fresh_change_key(&mut self) -> String {
        self.next_change_key += 1;
        let raw = format!("CK{:012}", self.next_change_key);
        format!(
            "EQAAABYA{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Adds a new item to a folder and returns `(Id, ChangeKey)`.
    pub fn create(&mut self, mailbox: &str, kind: ItemKind, item: WireItem) -> (String, String) {
        let change_key = self.fresh_change_key();
        let id = format!(
            "AAMkAGI2{}",
            base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
        );
        let folder = self
            .mailboxes
            .entry(mailbox.to_owned())
            .or_default()
            .folder(kind);
        folder.seq += 1;
        let stored = StoredItem {
            id: id.clone(),
            change_key: change_key.clone(),
            fields: item.fields,
            extended: item.extended,
            created_seq: folder.seq,
            modified_seq: folder.seq,
            occurrences: OccurrenceEdits::default(),
        };
        folder.items.insert(id.clone(), stored);
        (id, change_key)
    }

    /// Replaces an item's content (already validated) and gives it a new ChangeKey.
    pub fn replace(
        &mut self,
        mailbox: &str,
        kind: ItemKind,
        updated: StoredItem,
    ) -> Option<String> {
        let change_key = self.fresh_change_key();
        let folder = self.mailboxes.get_mut(mailbox)?.folder(kind);
        let current = folder.items.get_mut(&updated.id)?;
        folder.seq += 1;
        *current = StoredItem {
            change_key: change_key.clone(),
            modified_seq: folder.seq,
            ..updated
        };
        Some(change_key)
    }

    /// Removes an item, leaving a tombstone for SyncFolderItems. False when it does not exist.
    pub fn delete(&mut self, mailbox: &str, id: &str) -> bool {
        let Some(mailbox) = self.mailboxes.get_mut(mailbox) else {
            return false;
        };
        let Some(kind) = mailbox.locate(id) else {
            return false;
        };
        let folder = mailbox.folder(kind);
        let Some(item) = folder.items.remove(id) else {
            return false;
        };
        folder.seq += 1;
        folder.tombstones.push(Tombstone {
            id: item.id,
            change_key: item.change_key,
            created_seq: item.created_seq,
            deleted_seq: folder.seq,
        });
        true
    }
}
