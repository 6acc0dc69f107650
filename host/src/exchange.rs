//! A user's mailbox, wherever it lives: Exchange on-premises through EWS ([`ews`]) or
//! Exchange Online through Microsoft Graph ([`graph`]). This module is the one model both
//! speak: items, ids, change batches, the flat field vocabulary ([`fields`]) and one error
//! type that keeps each backend's own error and status. The engine sees only this module;
//! `ews` and `graph` never import each other.

pub mod ews;
pub mod fields;
pub mod graph;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use crate::domain::Folder;
use crate::record::Fields;
use ews::{EwsClient, EwsError};
use graph::{GraphClient, GraphError};

/// An Exchange item id with the ChangeKey of the version it names. Store both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemId {
    pub id: String,
    pub change_key: String,
}

/// One change reported by SyncFolderItems (read-flag changes are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncChange {
    Created(ItemId),
    Updated(ItemId),
    /// The item id of a deleted item.
    Deleted(String),
}

/// One page of SyncFolderItems. Save `sync_state` only after applying all `changes`; call
/// again with it while `includes_last_item` is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncBatch {
    pub sync_state: String,
    pub includes_last_item: bool,
    pub changes: Vec<SyncChange>,
}

/// An item read from Exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeItem {
    pub id: ItemId,
    /// Tandem's sync id (`TandemSyncId` extended property), when the item has one.
    pub sync_id: Option<String>,
    pub fields: Fields,
}

/// What an optimistic update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Written; the item's new id and ChangeKey.
    Updated(ItemId),
    /// The item changed since its ChangeKey was read (ErrorIrresolvableConflict/ErrorStaleObject):
    /// read it again, merge, retry.
    Conflict,
    /// The item no longer exists.
    NotFound,
}

/// What went wrong with a mailbox, as the backend said it: its own error (and HTTP status)
/// is kept, and each backend classifies its own errors.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Ews(#[from] EwsError),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl ExchangeError {
    /// Whether the failure may pass on its own (connection lost, unavailable, throttled), so
    /// the request may have been carried out or may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Ews(error) => error.is_transient(),
            Self::Graph(error) => error.is_transient(),
        }
    }

    /// Whether retrying cannot help until an administrator acts (credentials, a mailbox that
    /// does not exist or may not be reached).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Ews(error) => error.is_permanent(),
            Self::Graph(error) => error.is_permanent(),
        }
    }

    /// Whether Exchange refused this one item rather than failing as a server (see each
    /// backend's `is_record_refusal`).
    pub fn is_record_refusal(&self) -> bool {
        match self {
            Self::Ews(error) => error.is_record_refusal(),
            Self::Graph(error) => error.is_record_refusal(),
        }
    }

    /// The saved cursor (EWS SyncState, Graph deltaLink) is no longer valid: resynchronise
    /// the folder from the beginning.
    pub fn is_invalid_sync_state(&self) -> bool {
        matches!(self, Self::Ews(EwsError::InvalidSyncState) | Self::Graph(GraphError::InvalidSyncState))
    }

    /// The backend's error code (an EWS response code, a Graph error code), when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Ews(error) => error.code(),
            Self::Graph(error) => error.code(),
        }
    }
}

/// What create-once asks of a backend: a plain batch create that may fail half-way, and a
/// look-up of the folder's items by sync id.
pub(crate) trait CreateOnceBackend {
    type Error: std::fmt::Display;
    /// How many failed rounds a batch gets before its last error is returned.
    fn create_attempts(&self) -> u32;
    /// Whether a failed create may have been carried out in part (lost reply, 5xx, throttled).
    fn may_have_created(error: &Self::Error) -> bool;
    async fn create_batch(&self, mailbox: &str, folder: Folder, items: &[(Fields, String)]) -> Result<Vec<ItemId>, Self::Error>;
    async fn items_by_sync_id(&self, mailbox: &str, folder: Folder) -> Result<HashMap<String, Vec<ItemId>>, Self::Error>;
}

/// Creates items that do not exist yet, each identified by its sync id, `chunk` at a time,
/// and returns their ids in order. When a create fails in a way that may have created part
/// of its batch, the folder is searched for the batch's sync ids and only the items not
/// found are sent again, so a retried create never makes a duplicate. Other errors are
/// returned at once; after the backend's attempts the last error is returned (what was
/// created is found by sync id next time). The backend checks every item before calling.
pub(crate) async fn create_items_once<B: CreateOnceBackend>(
    backend: &B,
    mailbox: &str,
    folder: Folder,
    items: &[(Fields, String)],
    chunk: usize,
) -> Result<Vec<ItemId>, B::Error> {
    let mut created = Vec::with_capacity(items.len());
    for chunk in items.chunks(chunk.max(1)) {
        let mut found: Vec<Option<ItemId>> = vec![None; chunk.len()];
        let mut failures: u32 = 0;
        loop {
            let pending: Vec<usize> = (0..chunk.len()).filter(|i| found[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let batch: Vec<(Fields, String)> = pending.iter().map(|i| chunk[*i].clone()).collect();
            match backend.create_batch(mailbox, folder, &batch).await {
                Ok(ids) => {
                    for (i, id) in pending.iter().zip(ids) {
                        found[*i] = Some(id);
                    }
                }
                Err(error) if B::may_have_created(&error) && failures + 1 < backend.create_attempts() => {
                    failures += 1;
                    tracing::warn!(
                        mailbox,
                        %error,
                        pending = pending.len(),
                        "a create failed and may have created part of its batch; looking the items up by sync id"
                    );
                    let existing = backend.items_by_sync_id(mailbox, folder).await?;
                    for i in pending {
                        if let Some(ids) = existing.get(&chunk[i].1) {
                            if ids.len() > 1 {
                                tracing::warn!(
                                    mailbox,
                                    sync_id = %chunk[i].1,
                                    copies = ids.len(),
                                    "several Exchange items carry one sync id; using the first"
                                );
                            }
                            found[i] = ids.first().cloned();
                        }
                    }
                }
                Err(error) => return Err(error),
            }
        }
        created.extend(found.into_iter().flatten());
    }
    Ok(created)
}

/// Items listed with their sync ids → the items of each sync id (items without one left out).
pub(crate) fn group_by_sync_id(listed: Vec<(ItemId, Option<String>)>) -> HashMap<String, Vec<ItemId>> {
    let mut by_sync_id: HashMap<String, Vec<ItemId>> = HashMap::new();
    for (id, sync_id) in listed {
        if let Some(sync_id) = sync_id {
            by_sync_id.entry(sync_id).or_default().push(id);
        }
    }
    by_sync_id
}

/// The connector of one user's mailbox.
#[derive(Clone)]
pub enum ExchangeClient {
    Ews(EwsClient),
    Graph(GraphClient),
}

impl ExchangeClient {
    /// Changes in `folder` since `sync_state` (EWS SyncState or Graph deltaLink).
    pub async fn sync_folder_items(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_state: Option<&str>,
        max_changes: u16,
    ) -> Result<SyncBatch, ExchangeError> {
        Ok(match self {
            Self::Ews(ews) => ews.sync_folder_items(mailbox, folder, sync_state, max_changes).await?,
            Self::Graph(graph) => graph.sync_folder_items(mailbox, folder, sync_state, max_changes.min(1000)).await?,
        })
    }

    pub async fn get_items(&self, mailbox: &str, folder: Folder, ids: &[String]) -> Result<Vec<ExchangeItem>, ExchangeError> {
        Ok(match self {
            Self::Ews(ews) => ews.get_items(mailbox, folder, ids).await?,
            Self::Graph(graph) => graph.get_items(mailbox, folder, ids).await?,
        })
    }

    /// Creates items carrying their sync ids, in batches.
    pub async fn create_items(&self, mailbox: &str, folder: Folder, items: &[(Fields, String)]) -> Result<Vec<ItemId>, ExchangeError> {
        Ok(match self {
            Self::Ews(ews) => ews.create_items(mailbox, folder, items).await?,
            Self::Graph(graph) => graph.create_items(mailbox, folder, items).await?,
        })
    }

    /// Writes `fields` over the item if it is still at `id`'s ChangeKey.
    pub async fn update_item(&self, mailbox: &str, folder: Folder, id: &ItemId, fields: &Fields) -> Result<UpdateOutcome, ExchangeError> {
        Ok(match self {
            Self::Ews(ews) => ews.update_item(mailbox, folder, id, fields).await?,
            Self::Graph(graph) => graph.update_item(mailbox, folder, id, fields).await?,
        })
    }

    pub async fn delete_items(&self, mailbox: &str, folder: Folder, ids: &[String]) -> Result<(), ExchangeError> {
        Ok(match self {
            Self::Ews(ews) => ews.delete_items(mailbox, folder, ids).await?,
            Self::Graph(graph) => graph.delete_items(mailbox, folder, ids).await?,
        })
    }
}
