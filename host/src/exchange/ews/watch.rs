//! Streaming notifications as Tandem's low-latency trigger for EWS mailboxes: one streaming
//! subscription per mailbox (contacts, calendar, tasks), and one GetStreamingEvents
//! connection per group of up to 200 subscriptions (Exchange's limit per request; its
//! `HangingConnectionLimit` allows only ~10 streaming connections per account). Each
//! notification names its SubscriptionId, which maps back to the mailbox. A connection is
//! renewed before Exchange's 30-minute limit, and a subscription Exchange reports lost is made
//! again alone, the others of its group staying as they are. SyncFolderItems polling stays the
//! fallback: a signal only says "sync this mailbox now".

use std::time::Duration;

use http_body_util::BodyExt as _;
use tandem_ews_wire::{self as wire, Element};
use tokio::sync::mpsc;

use super::{EwsClient, EwsError, Folder, distinguished_id, envelope, message_error, messages};

/// The longest a GetStreamingEvents connection is kept by default (Exchange allows 30 min).
pub const DEFAULT_WATCH_CONNECTION: Duration = Duration::from_secs(29 * 60);
/// A connection that sends nothing (not even a heartbeat) for this long is renewed.
pub const WATCH_IDLE_LIMIT: Duration = Duration::from_secs(180);
/// Most subscriptions read by one GetStreamingEvents connection (Exchange's limit).
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 200;

/// What one envelope of a GetStreamingEvents reply says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamChunk {
    /// Items were created, changed or deleted in a watched folder.
    pub changed: bool,
    /// The subscriptions whose notifications carry such events (each named once).
    pub changed_subscriptions: Vec<String>,
    /// Exchange closed the connection (`ConnectionStatus` `Closed`); connect again.
    pub closed: bool,
    /// A subscription is gone (expired, server restart); subscribe again.
    pub subscription_lost: bool,
    /// The ids Exchange named as gone (`ErrorSubscriptionIds`); empty when it named none,
    /// in which case every subscription of the connection must be made again.
    pub lost_subscriptions: Vec<String>,
}

/// How one streaming connection ended.
enum ConnectionEnd {
    /// Closed by the server or renewed by us: connect again with the same subscriptions.
    Renew,
    /// These subscriptions are gone (all of them when empty): subscribe them again.
    Resubscribe(Vec<String>),
    /// Nobody listens any more.
    ReceiverGone,
}

/// One watched mailbox of a connection's group.
struct Watched {
    mailbox: String,
    /// The live streaming subscription, if made.
    subscription: Option<String>,
    /// A subscription was made before: making one again is signalled (events may be missed).
    subscribed_before: bool,
}

/// Reads one SOAP envelope of a GetStreamingEvents reply (a chunk of the open HTTP reply).
pub fn read_stream_chunk(xml: &str) -> Result<StreamChunk, EwsError> {
    let envelope = wire::parse_document(xml)
        .map_err(|e| EwsError::BadReply(format!("GetStreamingEvents chunk: {e}")))?;
    let first = envelope
        .child("Body")
        .and_then(|b| b.children.first())
        .ok_or_else(|| EwsError::BadReply("GetStreamingEvents chunk has no SOAP Body".into()))?;
    if first.name == "Fault" {
        let (code, message, _) = super::read_fault(first);
        return Err(EwsError::Response { code, message });
    }
    if first.name != "GetStreamingEventsResponse" {
        return Err(EwsError::BadReply(format!(
            "expected GetStreamingEventsResponse, got {}",
            first.name
        )));
    }
    let mut chunk = StreamChunk::default();
    for message in messages(first) {
        chunk.closed |= message.child_text("ConnectionStatus").map(str::trim) == Some("Closed");
        if let Some((code, text)) = message_error(message) {
            if is_subscription_error(&code) {
                chunk.subscription_lost = true;
                let named = message
                    .child("ErrorSubscriptionIds")
                    .into_iter()
                    .flat_map(|ids| {
                        ids.children_named("SubscriptionId")
                            .map(|id| id.text.trim().to_owned())
                    });
                for id in named.filter(|id| !id.is_empty()) {
                    if !chunk.lost_subscriptions.contains(&id) {
                        chunk.lost_subscriptions.push(id);
                    }
                }
                continue;
            }
            return Err(EwsError::Response {
                code,
                message: text,
            });
        }
        let notifications = message
            .child("Notifications")
            .into_iter()
            .flat_map(|n| n.children_named("Notification"));
        for notification in notifications.filter(|n| has_events(n)) {
            chunk.changed = true;
            if let Some(id) = notification.child_text("SubscriptionId").map(str::trim)
                && !id.is_empty()
                && !chunk.changed_subscriptions.iter().any(|known| known == id)
            {
                chunk.changed_subscriptions.push(id.to_owned());
            }
        }
    }
    Ok(chunk)
}

fn has_events(notification: &Element) -> bool {
    notification.children.iter().any(|event| {
        matches!(
            event.name.as_str(),
            "CreatedEvent" | "ModifiedEvent" | "DeletedEvent" | "MovedEvent" | "CopiedEvent"
        )
    })
}

/// Response codes meaning "this subscription no longer exists" (or missed events, which
/// equally needs a new subscription and a sync).
fn is_subscription_error(code: &str) -> bool {
    matches!(
        code,
        "ErrorInvalidSubscription"
            | "ErrorSubscriptionNotFound"
            | "ErrorExpiredSubscription"
            | "ErrorMissedNotificationEvents"
            | "ErrorSubscriptionAccessDenied"
            | "ErrorSubscriptionDelegateAccessNotSupported"
            | "ErrorProxiedSubscriptionCallFailure"
            | "ErrorSubscriptionUnsubscribed"
    )
}

/// Byte offset just after the first complete `</…Envelope>` in `buffer`.
fn envelope_end(buffer: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = buffer[from..].find("Envelope>") {
        let end = from + found + "Envelope>".len();
        let tag_start = buffer[..from + found].rfind('<');
        if tag_start.is_some_and(|start| buffer[start..].starts_with("</")) {
            return Some(end);
        }
        from = end;
    }
    None
}

/// Length of the first complete envelope in received bytes (which may end mid-character).
fn complete_envelope_len(buffer: &[u8]) -> Option<usize> {
    let valid = match std::str::from_utf8(buffer) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&buffer[..error.valid_up_to()]).unwrap_or_default(),
    };
    envelope_end(valid)
}

impl EwsClient {
    /// How long a GetStreamingEvents connection is kept before it is renewed (default
    /// [`DEFAULT_WATCH_CONNECTION`]; Exchange allows at most 30 minutes).
    pub fn with_watch_connection(mut self, limit: Duration) -> Self {
        self.watch_connection = limit.clamp(Duration::from_millis(100), Duration::from_secs(1800));
        self
    }

    /// Creates a streaming subscription for the folders of a mailbox; returns its id.
    pub async fn subscribe(&self, mailbox: &str, folders: &[Folder]) -> Result<String, EwsError> {
        if folders.is_empty() {
            return Err(EwsError::InvalidArgument(
                "subscribe needs at least one folder".into(),
            ));
        }
        let body = envelope(mailbox, |out| {
            out.open("m:Subscribe", &[]);
            out.open("m:StreamingSubscriptionRequest", &[]);
            out.open("t:FolderIds", &[]);
            for folder in folders {
                out.empty(
                    "t:DistinguishedFolderId",
                    &[("Id", distinguished_id(*folder))],
                );
            }
            out.close("t:FolderIds");
            out.open("t:EventTypes", &[]);
            for event in [
                "CreatedEvent",
                "DeletedEvent",
                "ModifiedEvent",
                "MovedEvent",
            ] {
                out.text_element("t:EventType", &[], event);
            }
            out.close("t:EventTypes");
            out.close("m:StreamingSubscriptionRequest");
            out.close("m:Subscribe");
        });
        let response = self.call(mailbox, "Subscribe", body, true).await?;
        let message = super::single_message(&response)?;
        if let Some((code, text)) = message_error(message) {
            return Err(super::message_failure(message, code, text));
        }
        message
            .child_text("SubscriptionId")
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| EwsError::BadReply("Subscribe reply has no SubscriptionId".into()))
    }

    /// Watches mailboxes (contacts, calendar, tasks) with streaming notifications. The
    /// receiver gets a mailbox address each time something changed in it, and also after a
    /// subscription had to be made again (changes may have been missed meanwhile). The
    /// mailboxes are split into groups of [`MAX_SUBSCRIPTIONS_PER_CONNECTION`]; one background
    /// task per group subscribes each of its mailboxes and reads all their subscriptions over
    /// one GetStreamingEvents connection, until the receiver is dropped.
    pub fn watch(&self, mailboxes: Vec<String>) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(mailboxes.len().clamp(16, 4096));
        for group in mailboxes.chunks(MAX_SUBSCRIPTIONS_PER_CONNECTION) {
            let client = self.clone();
            let sender = sender.clone();
            let group = group.to_vec();
            tokio::spawn(async move { client.watch_group(group, sender).await });
        }
        receiver
    }

    async fn watch_group(&self, mailboxes: Vec<String>, sender: mpsc::Sender<String>) {
        let folders = [Folder::Contacts, Folder::Calendar, Folder::Tasks];
        let max_wait = (self.retry.max_back_off * 15).max(Duration::from_millis(100));
        let first_wait = Duration::from_millis(50).min(max_wait);
        let mut connect_wait = first_wait;
        let mut subscribe_wait = first_wait;
        let mut group: Vec<Watched> = mailboxes
            .into_iter()
            .map(|mailbox| Watched {
                mailbox,
                subscription: None,
                subscribed_before: false,
            })
            .collect();
        loop {
            if sender.is_closed() {
                return;
            }
            let mut unsubscribed = 0usize;
            for watched in group.iter_mut().filter(|w| w.subscription.is_none()) {
                match self.subscribe(&watched.mailbox, &folders).await {
                    Ok(id) => {
                        tracing::debug!(mailbox = %watched.mailbox, "EWS streaming subscription made");
                        watched.subscription = Some(id);
                        if watched.subscribed_before
                            && sender.send(watched.mailbox.clone()).await.is_err()
                        {
                            return;
                        }
                        watched.subscribed_before = true;
                    }
                    Err(error) => {
                        tracing::warn!(mailbox = %watched.mailbox, %error, "EWS subscribe failed; retrying");
                        unsubscribed += 1;
                    }
                }
            }
            // Mailboxes whose Subscribe failed are tried again when this connection is
            // renewed early, after the subscribe back-off.
            let retry_after = (unsubscribed > 0).then_some(subscribe_wait);
            if unsubscribed > 0 {
                subscribe_wait = (subscribe_wait * 2).min(max_wait);
            } else {
                subscribe_wait = first_wait;
            }
            if unsubscribed == group.len() {
                tokio::select! {
                    () = tokio::time::sleep(retry_after.unwrap_or(first_wait)) => {}
                    () = sender.closed() => return,
                }
                continue;
            }
            match self.stream_once(&group, retry_after, &sender).await {
                Ok(ConnectionEnd::Renew) => connect_wait = first_wait,
                Ok(ConnectionEnd::Resubscribe(lost)) => {
                    let mut dropped = 0usize;
                    for watched in &mut group {
                        let gone = watched
                            .subscription
                            .as_ref()
                            .is_some_and(|id| lost.is_empty() || lost.contains(id));
                        if gone {
                            watched.subscription = None;
                            dropped += 1;
                        }
                    }
                    tracing::info!(
                        subscriptions = dropped,
                        "EWS subscriptions lost; subscribing again"
                    );
                }
                Ok(ConnectionEnd::ReceiverGone) => return,
                Err(error) => {
                    tracing::warn!(%error, mailboxes = group.len(), "EWS streaming connection failed; reconnecting");
                    if let EwsError::Response { code, .. } = &error
                        && is_subscription_error(code)
                    {
                        // The reply names no subscription: every one of them is made again.
                        for watched in &mut group {
                            watched.subscription = None;
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(connect_wait) => {}
                        () = sender.closed() => return,
                    }
                    connect_wait = (connect_wait * 2).min(max_wait);
                }
            }
        }
    }

    /// One GetStreamingEvents connection for the subscriptions of `group`, read until it
    /// ends (at the latest after the connection limit, or `renew_after` when given).
    async fn stream_once(
        &self,
        group: &[Watched],
        renew_after: Option<Duration>,
        sender: &mpsc::Sender<String>,
    ) -> Result<ConnectionEnd, EwsError> {
        let Some(anchor) = group
            .iter()
            .find(|w| w.subscription.is_some())
            .map(|w| w.mailbox.as_str())
        else {
            return Ok(ConnectionEnd::Renew);
        };
        let minutes = self.watch_connection.as_secs().div_ceil(60).clamp(1, 30);
        let body = envelope(anchor, |out| {
            out.open("m:GetStreamingEvents", &[]);
            out.open("m:SubscriptionIds", &[]);
            for id in group.iter().filter_map(|w| w.subscription.as_deref()) {
                out.text_element("t:SubscriptionId", &[], id);
            }
            out.close("m:SubscriptionIds");
            out.text_element("m:ConnectionTimeout", &[], &minutes.to_string());
            out.close("m:GetStreamingEvents");
        });
        let lifetime = renew_after.map_or(self.watch_connection, |after| {
            after.min(self.watch_connection)
        });
        let deadline = tokio::time::Instant::now() + lifetime;
        tracing::debug!(
            anchor,
            subscriptions = group.len(),
            "EWS GetStreamingEvents"
        );
        self.requests.count("GetStreamingEvents");
        let headers = super::request_headers(anchor, true);
        let opened = tokio::time::timeout(super::REQUEST_TIMEOUT, self.http.post_streaming(&headers, body.into()))
            .await
            .map_err(|_| EwsError::Transport(format!("no answer within {} s", super::REQUEST_TIMEOUT.as_secs())))?;
        let reply = opened.map_err(super::http_error)?;
        let status = reply.status;
        let mut stream = reply.body;
        if !status.is_success() {
            let text = stream.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
            return Err(match read_stream_chunk(&String::from_utf8_lossy(&text)) {
                Err(error @ EwsError::Response { .. }) => error,
                _ => EwsError::Unavailable {
                    status: status.as_u16(),
                },
            });
        }
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(WATCH_IDLE_LIMIT, stream.frame()) => next,
                () = tokio::time::sleep_until(deadline) => return Ok(ConnectionEnd::Renew),
                () = sender.closed() => return Ok(ConnectionEnd::ReceiverGone),
            };
            let bytes = match next {
                Err(_) => {
                    return Err(EwsError::Transport(
                        "the streaming connection went quiet".into(),
                    ));
                }
                Ok(Some(Err(error))) => {
                    return Err(EwsError::Transport(format!(
                        "the streaming connection broke: {}",
                        crate::transport::describe(&error)
                    )));
                }
                Ok(None) => return Ok(ConnectionEnd::Renew),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(bytes) => bytes,
                    // Trailers: nothing to read.
                    Err(_) => continue,
                },
            };
            buffer.extend_from_slice(&bytes);
            while let Some(end) = complete_envelope_len(&buffer) {
                let document: Vec<u8> = buffer.drain(..end).collect();
                let text = String::from_utf8_lossy(&document);
                let chunk = read_stream_chunk(&text)?;
                if chunk.changed {
                    for mailbox in changed_mailboxes(group, &chunk.changed_subscriptions) {
                        if sender.send(mailbox.to_owned()).await.is_err() {
                            return Ok(ConnectionEnd::ReceiverGone);
                        }
                    }
                }
                if chunk.subscription_lost {
                    return Ok(ConnectionEnd::Resubscribe(chunk.lost_subscriptions));
                }
                if chunk.closed {
                    return Ok(ConnectionEnd::Renew);
                }
            }
        }
    }
}

/// The mailboxes of `group` whose subscriptions had events. A notification without a
/// SubscriptionId (not schema-valid, but cheap to survive) signals every subscribed mailbox.
fn changed_mailboxes<'a>(group: &'a [Watched], changed: &[String]) -> Vec<&'a str> {
    group
        .iter()
        .filter(|w| {
            w.subscription
                .as_ref()
                .is_some_and(|id| changed.is_empty() || changed.contains(id))
        })
        .map(|w| w.mailbox.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{envelope_end, read_stream_chunk};

    fn chunk(messages: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body><m:GetStreamingEventsResponse><m:ResponseMessages>{messages}</m:ResponseMessages></m:GetStreamingEventsResponse></s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn stream_chunk_names_the_subscriptions_with_events_and_the_lost_ones() {
        let events = chunk(
            r#"<m:GetStreamingEventsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notifications><t:Notification><t:SubscriptionId>a</t:SubscriptionId><t:StatusEvent><t:Watermark>w</t:Watermark></t:StatusEvent></t:Notification><t:Notification><t:SubscriptionId>b</t:SubscriptionId><t:CreatedEvent><t:Watermark>w</t:Watermark></t:CreatedEvent></t:Notification><t:Notification><t:SubscriptionId>c</t:SubscriptionId><t:DeletedEvent><t:Watermark>w</t:Watermark></t:DeletedEvent></t:Notification><t:Notification><t:SubscriptionId>b</t:SubscriptionId><t:ModifiedEvent><t:Watermark>w</t:Watermark></t:ModifiedEvent></t:Notification></m:Notifications></m:GetStreamingEventsResponseMessage>"#,
        );
        let read = read_stream_chunk(&events).unwrap();
        assert!(read.changed && !read.closed && !read.subscription_lost);
        assert_eq!(
            read.changed_subscriptions,
            ["b", "c"],
            "a had only a status event"
        );

        let lost = chunk(
            r#"<m:GetStreamingEventsResponseMessage ResponseClass="Error"><m:MessageText>gone</m:MessageText><m:ResponseCode>ErrorInvalidSubscription</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:ErrorSubscriptionIds><t:SubscriptionId>c</t:SubscriptionId></m:ErrorSubscriptionIds><m:ConnectionStatus>Closed</m:ConnectionStatus></m:GetStreamingEventsResponseMessage>"#,
        );
        let read = read_stream_chunk(&lost).unwrap();
        assert!(read.subscription_lost && read.closed && !read.changed);
        assert_eq!(read.lost_subscriptions, ["c"]);
    }

    #[test]
    fn envelope_end_finds_closing_tags_with_any_prefix() {
        let two = "<s:Envelope><a>Envelope></a></s:Envelope><Envelope></Envelope>";
        let first = envelope_end(two);
        assert_eq!(
            first,
            Some("<s:Envelope><a>Envelope></a></s:Envelope>".len())
        );
        assert_eq!(envelope_end("<s:Envelope><a/>"), None);
        assert_eq!(envelope_end("<Envelope/></Envelope>"), Some(22));
    }
}
