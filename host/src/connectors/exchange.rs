//! A user's mailbox, wherever it lives: Exchange on-premises through EWS or Exchange Online
//! through Microsoft Graph. Both connectors speak the same typed records (`ExchangeItem`,
//! `Fields` with EWS names), so the engine runs one code path and picks the connector per
//! user; Graph errors arrive as the EWS error kinds the engine already handles.

use super::ews::{EwsClient, EwsError, ExchangeItem, Folder, ItemId, SyncBatch, UpdateOutcome};
use super::graph::GraphClient;
use crate::record::Fields;

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
    ) -> Result<SyncBatch, EwsError> {
        match self {
            Self::Ews(ews) => ews.sync_folder_items(mailbox, folder, sync_state, max_changes).await,
            Self::Graph(graph) => Ok(graph.sync_folder_items(mailbox, folder, sync_state, max_changes.min(1000)).await?),
        }
    }

    pub async fn get_items(&self, mailbox: &str, folder: Folder, ids: &[String]) -> Result<Vec<ExchangeItem>, EwsError> {
        match self {
            Self::Ews(ews) => ews.get_items(mailbox, folder, ids).await,
            Self::Graph(graph) => Ok(graph.get_items(mailbox, folder, ids).await?),
        }
    }

    /// Creates items carrying their sync ids, in batches.
    pub async fn create_items(&self, mailbox: &str, folder: Folder, items: &[(Fields, String)]) -> Result<Vec<ItemId>, EwsError> {
        match self {
            Self::Ews(ews) => ews.create_items(mailbox, folder, items).await,
            Self::Graph(graph) => Ok(graph.create_items(mailbox, folder, items).await?),
        }
    }

    /// Writes `fields` over the item if it is still at `id`'s ChangeKey.
    pub async fn update_item(&self, mailbox: &str, folder: Folder, id: &ItemId, fields: &Fields) -> Result<UpdateOutcome, EwsError> {
        match self {
            Self::Ews(ews) => ews.update_item(mailbox, folder, id, fields).await,
            Self::Graph(graph) => Ok(graph.update_item(mailbox, folder, id, fields).await?),
        }
    }

    pub async fn delete_items(&self, mailbox: &str, folder: Folder, ids: &[String]) -> Result<(), EwsError> {
        match self {
            Self::Ews(ews) => ews.delete_items(mailbox, folder, ids).await,
            Self::Graph(graph) => Ok(graph.delete_items(mailbox, folder, ids).await?),
        }
    }
}
