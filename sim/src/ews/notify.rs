//! Streaming notifications in the EWS emulator: `Subscribe` (StreamingSubscriptionRequest),
//! `Unsubscribe` and `GetStreamingEvents`, whose HTTP reply stays open and carries one SOAP
//! envelope per chunk (events, heartbeats, and a final `ConnectionStatus` `Closed`), as
//! Exchange sends them. Subscriptions live in memory only, like Exchange's.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{broadcast, mpsc};

use super::ops::Fault;
use super::store::{Change, Store};
use super::wire::{Element, ItemKind, XmlOut};
use super::{EwsSim, close_envelope, open_envelope};

/// How often an open GetStreamingEvents connection gets a `ConnectionStatus` `OK` heartbeat.
pub const STREAMING_HEARTBEAT: Duration = Duration::from_secs(15);

/// One streaming subscription: whose, which folders, and how far each folder was reported.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub mailbox: String,
    /// Folder → the change sequence already reported.
    pub watermarks: BTreeMap<ItemKind, u64>,
}

/// The folder id the emulator reports for a distinguished folder in events.
fn folder_id_of(kind: ItemKind) -> String {
    super::folders::folder_id(kind.folder_id())
}

/// `Subscribe` with a `StreamingSubscriptionRequest` over distinguished folders.
pub(crate) fn subscribe(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    let request = op
        .child("StreamingSubscriptionRequest")
        .ok_or_else(|| Fault {
            code: "ErrorInvalidSubscriptionRequest",
            message: "This EWS emulator supports only StreamingSubscriptionRequest subscriptions."
                .into(),
        })?;
    if request
        .child("EventTypes")
        .is_none_or(|e| e.children.is_empty())
    {
        return Err(Fault::schema(
            "StreamingSubscriptionRequest needs EventTypes",
        ));
    }
    let kinds: Vec<ItemKind> = if request.attr("SubscribeToAllFolders") == Some("true") {
        ItemKind::ALL.to_vec()
    } else {
        let folders = request.child("FolderIds").ok_or_else(|| {
            Fault::schema("StreamingSubscriptionRequest needs FolderIds or SubscribeToAllFolders")
        })?;
        folders
            .children
            .iter()
            .map(|folder| {
                let id = super::folders::folder_name(folder)?;
                ItemKind::from_folder_id(&id).ok_or_else(|| Fault {
                    code: "ErrorFolderNotFound",
                    message: format!(
                        "The folder '{id}' is not emulated; use contacts, calendar or tasks."
                    ),
                })
            })
            .collect::<Result<_, Fault>>()?
    };
    let folders = store.mailboxes.entry(mailbox.to_owned()).or_default();
    let watermarks = kinds
        .iter()
        .map(|kind| (*kind, folders.folder(*kind).seq))
        .collect();
    let id = uuid::Uuid::new_v4().to_string();
    store.subscriptions.insert(
        id.clone(),
        Subscription {
            mailbox: mailbox.to_owned(),
            watermarks,
        },
    );
    out.open("m:SubscribeResponse", &[]);
    out.open("m:ResponseMessages", &[]);
    out.open(
        "m:SubscribeResponseMessage",
        &[("ResponseClass", "Success")],
    );
    out.text_element("m:ResponseCode", &[], "NoError");
    out.text_element("m:SubscriptionId", &[], &id);
    out.close("m:SubscribeResponseMessage");
    out.close("m:ResponseMessages");
    out.close("m:SubscribeResponse");
    Ok(())
}

/// `Unsubscribe`: removes a subscription of this mailbox.
pub(crate) fn unsubscribe(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    let id = op
        .child_text("SubscriptionId")
        .ok_or_else(|| Fault::schema("Unsubscribe needs a SubscriptionId"))?;
    let known = store
        .subscriptions
        .get(id)
        .is_some_and(|s| s.mailbox == mailbox);
    out.open("m:UnsubscribeResponse", &[]);
    out.open("m:ResponseMessages", &[]);
    if known {
        store.subscriptions.remove(id);
        out.open(
            "m:UnsubscribeResponseMessage",
            &[("ResponseClass", "Success")],
        );
        out.text_element("m:ResponseCode", &[], "NoError");
    } else {
        out.open(
            "m:UnsubscribeResponseMessage",
            &[("ResponseClass", "Error")],
        );
        out.text_element("m:MessageText", &[], "The subscription was not found.");
        out.text_element("m:ResponseCode", &[], "ErrorSubscriptionNotFound");
        out.text_element("m:DescriptiveLinkKey", &[], "0");
    }
    out.close("m:UnsubscribeResponseMessage");
    out.close("m:ResponseMessages");
    out.close("m:UnsubscribeResponse");
    Ok(())
}

/// One chunk of a GetStreamingEvents reply.
enum Chunk<'a> {
    /// `ConnectionStatus` OK (first chunk and heartbeats).
    Open,
    Events(&'a str),
    /// The connection ends normally (its ConnectionTimeout elapsed).
    Closed,
    /// Subscriptions that no longer exist; the connection ends.
    Lost(&'a [String]),
}

fn chunk_xml(chunk: &Chunk<'_>) -> String {
    let mut out = open_envelope();
    out.open("m:GetStreamingEventsResponse", &[]);
    out.open("m:ResponseMessages", &[]);
    match chunk {
        Chunk::Lost(ids) => {
            out.open(
                "m:GetStreamingEventsResponseMessage",
                &[("ResponseClass", "Error")],
            );
            out.text_element(
                "m:MessageText",
                &[],
                "The subscription is no longer valid; subscribe again.",
            );
            out.text_element("m:ResponseCode", &[], "ErrorInvalidSubscription");
            out.text_element("m:DescriptiveLinkKey", &[], "0");
            out.open("m:ErrorSubscriptionIds", &[]);
            for id in *ids {
                out.text_element("t:SubscriptionId", &[], id);
            }
            out.close("m:ErrorSubscriptionIds");
            out.text_element("m:ConnectionStatus", &[], "Closed");
        }
        other => {
            out.open(
                "m:GetStreamingEventsResponseMessage",
                &[("ResponseClass", "Success")],
            );
            out.text_element("m:ResponseCode", &[], "NoError");
            match other {
                Chunk::Events(notifications) => {
                    out.open("m:Notifications", &[]);
                    out.raw(notifications);
                    out.close("m:Notifications");
                }
                Chunk::Closed => {
                    out.text_element("m:ConnectionStatus", &[], "Closed");
                }
                _ => {
                    out.text_element("m:ConnectionStatus", &[], "OK");
                }
            }
        }
    }
    out.close("m:GetStreamingEventsResponseMessage");
    out.close("m:ResponseMessages");
    out.close("m:GetStreamingEventsResponse");
    close_envelope(out)
}

/// Collects the events of `ids` since their watermarks and advances them. Returns the
/// `t:Notification` elements (empty when nothing happened) and the ids that do not exist.
/// The ids may belong to different mailboxes (one connection serves a group of mailboxes,
/// as Exchange allows up to 200 subscriptions per GetStreamingEvents); each notification
/// names its SubscriptionId so the client can tell whose mailbox changed.
fn collect_events(store: &mut Store, ids: &[String]) -> (String, Vec<String>) {
    let mut out = XmlOut::default();
    let mut lost = Vec::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for id in ids {
        let Some(subscription) = store.subscriptions.get(id).cloned() else {
            lost.push(id.clone());
            continue;
        };
        let folders = store
            .mailboxes
            .entry(subscription.mailbox.clone())
            .or_default();
        let mut events: Vec<(ItemKind, u64, Change)> = Vec::new();
        let mut watermarks = subscription.watermarks.clone();
        for (kind, since) in &subscription.watermarks {
            let folder = folders.folder(*kind);
            for (seq, change) in folder.changes_since(*since) {
                events.push((*kind, seq, change));
            }
            // Items created and deleted since the watermark: SyncFolderItems nets them
            // out, but Exchange still sends both events.
            for gone in folder
                .tombstones
                .iter()
                .filter(|t| t.created_seq > *since && t.deleted_seq > *since)
            {
                let (id, change_key) = (gone.id.clone(), gone.change_key.clone());
                events.push((
                    *kind,
                    gone.created_seq,
                    Change::Create {
                        id: id.clone(),
                        change_key: change_key.clone(),
                    },
                ));
                events.push((*kind, gone.deleted_seq, Change::Delete { id, change_key }));
            }
            watermarks.insert(*kind, folder.seq);
        }
        if let Some(s) = store.subscriptions.get_mut(id) {
            s.watermarks = watermarks;
        }
        if events.is_empty() {
            continue;
        }
        events.sort_by_key(|(_, seq, _)| *seq);
        out.open("t:Notification", &[]);
        out.text_element("t:SubscriptionId", &[], id);
        out.text_element("t:MoreEvents", &[], "false");
        for (kind, seq, change) in events {
            let (tag, id, change_key) = match change {
                Change::Create { id, change_key } => ("t:CreatedEvent", id, change_key),
                Change::Update { id, change_key } => ("t:ModifiedEvent", id, change_key),
                Change::Delete { id, change_key } => ("t:DeletedEvent", id, change_key),
            };
            out.open(tag, &[]);
            out.text_element("t:Watermark", &[], &format!("{}-{seq}", kind.folder_id()));
            out.text_element("t:TimeStamp", &[], &now);
            out.empty("t:ItemId", &[("Id", &id), ("ChangeKey", &change_key)]);
            out.empty("t:ParentFolderId", &[("Id", &folder_id_of(kind))]);
            out.close(tag);
        }
        out.close("t:Notification");
    }
    (out.finish(), lost)
}

/// The body of a streamed reply: chunks sent by the task that watches the store.
struct ChunkStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

impl EwsSim {
    /// Answers `GetStreamingEvents` for one or more subscriptions (of any mailboxes): checks
    /// the request, then streams chunks until the
    /// ConnectionTimeout (or the configured connection limit) elapses, a subscription is
    /// lost, or the client goes away.
    pub(crate) fn get_streaming_events(&self, envelope: &Element, seq: u64) -> Response {
        let fail = |fault: Fault| {
            super::xml_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                super::fault_body(&fault, None),
            )
        };
        // The impersonated mailbox is the group's anchor; the subscriptions may belong to
        // other mailboxes of the same group.
        if let Err(fault) = self.mailbox_for(envelope) {
            return fail(fault);
        }
        let Some(op) = super::operation_of(envelope) else {
            return fail(Fault::schema("missing operation"));
        };
        let ids: Vec<String> = op
            .child("SubscriptionIds")
            .map(|ids| {
                ids.children_named("SubscriptionId")
                    .map(|id| id.text.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return fail(Fault::schema("GetStreamingEvents needs SubscriptionIds"));
        }
        let minutes: u64 = match op.child_text("ConnectionTimeout").map(str::parse) {
            Some(Ok(minutes)) if (1..=30).contains(&minutes) => minutes,
            _ => {
                return fail(Fault::schema(
                    "ConnectionTimeout must be a number of minutes from 1 to 30",
                ));
            }
        };
        let mut lifetime = Duration::from_secs(minutes * 60);
        if let Some(limit) = self.inner.config.streaming_connection_limit {
            lifetime = lifetime.min(limit);
        }
        let (sender, receiver) = mpsc::channel::<Bytes>(64);
        let changes = self.inner.changed.subscribe();
        let sim = self.clone();
        tokio::spawn(async move {
            sim.stream_events(ids, lifetime, changes, sender, seq).await;
        });
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml; charset=utf-8"),
            )],
            Body::from_stream(ChunkStream(receiver)),
        )
            .into_response()
    }

    async fn stream_events(
        &self,
        ids: Vec<String>,
        lifetime: Duration,
        mut changes: broadcast::Receiver<()>,
        sender: mpsc::Sender<Bytes>,
        seq: u64,
    ) {
        let deadline = tokio::time::Instant::now() + lifetime;
        let mut chunk_number = 0u32;
        let mut send = async |chunk: Chunk<'_>| {
            let xml = chunk_xml(&chunk);
            chunk_number += 1;
            self.capture(
                seq,
                "GetStreamingEvents",
                &format!("response-{chunk_number:03}"),
                xml.as_bytes(),
                true,
            );
            // Waits while the client is slow; fails only when it went away.
            sender.send(Bytes::from(xml)).await.is_ok()
        };
        if !send(Chunk::Open).await {
            return;
        }
        loop {
            let (events, lost) = collect_events(&mut self.store(), &ids);
            if !lost.is_empty() {
                send(Chunk::Lost(&lost)).await;
                return;
            }
            if !events.is_empty() && !send(Chunk::Events(&events)).await {
                return;
            }
            tokio::select! {
                received = changes.recv() => {
                    if matches!(received, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    send(Chunk::Closed).await;
                    return;
                }
                () = tokio::time::sleep(STREAMING_HEARTBEAT) => {
                    if !send(Chunk::Open).await {
                        return;
                    }
                }
                () = sender.closed() => return,
            }
        }
    }

    /// Drops every streaming subscription, as an Exchange restart or a subscription expiry
    /// does; open GetStreamingEvents connections get `ErrorInvalidSubscription`.
    pub fn expire_subscriptions(&self) {
        self.store().subscriptions.clear();
        self.notify_changed();
    }

    /// Drops the streaming subscriptions of one mailbox only (as a mailbox move does); an
    /// open GetStreamingEvents connection reading them gets `ErrorInvalidSubscription` naming
    /// just those ids.
    pub fn expire_subscriptions_of(&self, mailbox: &str) {
        let mailbox = mailbox.to_ascii_lowercase();
        self.store()
            .subscriptions
            .retain(|_, subscription| subscription.mailbox != mailbox);
        self.notify_changed();
    }

    /// Number of live streaming subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.store().subscriptions.len()
    }

    /// Wakes open GetStreamingEvents connections so they report new events.
    pub(crate) fn notify_changed(&self) {
        // No receivers simply means nobody is streaming.
        let _ = self.inner.changed.send(());
    }
}
