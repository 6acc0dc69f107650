//! What the connectors report about their traffic (requests sent, by kind), kept below
//! them so a connector counts without knowing who reads the counts (`metrics`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Siebel request kinds: the REST verbs as Siebel names them, plus OAuth token requests.
pub const SIEBEL_REQUEST_KINDS: &[&str] = &["query", "insert", "update", "delete", "token"];

/// EWS operations Tandem sends, plus OAuth token requests (`auth = "oauth"`).
pub const EWS_REQUEST_KINDS: &[&str] = &[
    "SyncFolderItems",
    "GetItem",
    "CreateItem",
    "UpdateItem",
    "DeleteItem",
    "FindItem",
    "GetFolder",
    "Subscribe",
    "Unsubscribe",
    "GetStreamingEvents",
    "token",
];

/// Microsoft Graph requests: by HTTP method, `$batch` calls, and token requests.
pub const GRAPH_REQUEST_KINDS: &[&str] = &["GET", "POST", "PATCH", "DELETE", "batch", "token"];

/// Requests a connector sent, by kind: a fixed set of labels (anything else is `other`),
/// counted with one atomic add per request. Clones of a client share one.
#[derive(Debug)]
pub struct RemoteRequests {
    pub(crate) system: &'static str,
    kinds: &'static [&'static str],
    /// One per kind, then `other`.
    counts: Box<[AtomicU64]>,
}

impl RemoteRequests {
    pub fn new(system: &'static str, kinds: &'static [&'static str]) -> Arc<Self> {
        Arc::new(Self { system, kinds, counts: (0..=kinds.len()).map(|_| AtomicU64::new(0)).collect() })
    }

    /// The counters of a Siebel client.
    pub fn siebel() -> Arc<Self> {
        Self::new("siebel", SIEBEL_REQUEST_KINDS)
    }

    /// The counters of an EWS client.
    pub fn ews() -> Arc<Self> {
        Self::new("exchange", EWS_REQUEST_KINDS)
    }

    /// The counters of a Microsoft Graph client.
    pub fn graph() -> Arc<Self> {
        Self::new("graph", GRAPH_REQUEST_KINDS)
    }

    /// Counts one request (each try of a retried request counts).
    pub fn count(&self, kind: &str) {
        let index = self.kinds.iter().position(|known| *known == kind).unwrap_or(self.kinds.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests of `kind` were sent.
    pub fn get(&self, kind: &str) -> u64 {
        let index = self.kinds.iter().position(|known| *known == kind).unwrap_or(self.kinds.len());
        self.counts[index].load(Ordering::Relaxed)
    }

    /// All requests sent.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn labelled(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.kinds
            .iter()
            .copied()
            .chain(std::iter::once("other"))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
    }
}
