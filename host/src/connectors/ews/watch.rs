//! Streaming notifications as Tandem's low-latency trigger for EWS mailboxes: one streaming
//! subscription per mailbox (contacts, calendar, tasks) read with GetStreamingEvents. The
//! connection is renewed before Exchange's 30-minute limit, and the subscription is made
//! again when Exchange reports it lost. SyncFolderItems polling stays the fallback: a signal
//! only says "sync this mailbox now".

use std::time::Duration;

use tandem_sim::ews::wire::{self, Element};
use tokio::sync::mpsc;

use super::{EwsClient, EwsError, Folder, envelope, message_error, messages};

/// The longest a GetStreamingEvents connection is kept by default (Exchange allows 30 min).
pub const DEFAULT_WATCH_CONNECTION: Duration = Duration::from_secs(29 * 60);
/// A connection that sends nothing (not even a heartbeat) for this long is renewed.
pub const WATCH_IDLE_LIMIT: Duration = Duration::from_secs(180);

/// What one envelope of a GetStreamingEvents reply says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamChunk {
    /// Items were created, changed or deleted in a watched folder.
    pub changed: bool,
    /// Exchange closed the connection (`ConnectionStatus` `Closed`); connect again.
    pub closed: bool,
    /// The subscription is gone (expired, server restart); subscribe again.
    pub subscription_lost: bool,
}

/// How one streaming connection ended.
enum ConnectionEnd {
    /// Closed by the server or renewed by us: connect again with the same subscription.
    Renew,
    /// The subscription is gone: subscribe again.
    Resubscribe,
    /// Nobody listens any more.
    ReceiverGone,
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
        if let Some((code, text)) = message_error(message) {
            if is_subscription_error(&code) {
                chunk.subscription_lost = true;
                continue;
            }
            return Err(EwsError::Response {
                code,
                message: text,
            });
        }
        chunk.changed |= message.child("Notifications").is_some_and(has_events);
        chunk.closed |= message.child_text("ConnectionStatus") == Some("Closed");
    }
    Ok(chunk)
}

fn has_events(notifications: &Element) -> bool {
    notifications.children_named("Notification").any(|n| {
        n.children.iter().any(|event| {
            matches!(
                event.name.as_str(),
                "CreatedEvent" | "ModifiedEvent" | "DeletedEvent" | "MovedEvent" | "CopiedEvent"
            )
        })
    })
}

/// Response codes meaning "this subscription no longer exists".
fn is_subscription_error(code: &str) -> bool {
    matches!(
        code,
        "ErrorInvalidSubscription"
            | "ErrorSubscriptionNotFound"
            | "ErrorExpiredSubscription"
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
                    &[("Id", folder.distinguished_id())],
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
    /// subscription had to be made again (changes may have been missed meanwhile). One
    /// background task per mailbox runs until the receiver is dropped.
    pub fn watch(&self, mailboxes: Vec<String>) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(mailboxes.len().clamp(16, 4096));
        for mailbox in mailboxes {
            let client = self.clone();
            let sender = sender.clone();
            tokio::spawn(async move { client.watch_mailbox(mailbox, sender).await });
        }
        receiver
    }

    async fn watch_mailbox(&self, mailbox: String, sender: mpsc::Sender<String>) {
        let folders = [Folder::Contacts, Folder::Calendar, Folder::Tasks];
        let max_wait = (self.retry.max_back_off * 15).max(Duration::from_millis(100));
        let mut wait = Duration::from_millis(50).min(max_wait);
        let mut subscribed_before = false;
        'subscribe: loop {
            if sender.is_closed() {
                return;
            }
            let subscription = match self.subscribe(&mailbox, &folders).await {
                Ok(id) => id,
                Err(error) => {
                    tracing::warn!(%mailbox, %error, "EWS subscribe failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(max_wait);
                    continue;
                }
            };
            tracing::debug!(%mailbox, "EWS streaming subscription made");
            if subscribed_before && sender.send(mailbox.clone()).await.is_err() {
                return;
            }
            subscribed_before = true;
            loop {
                match self.stream_once(&mailbox, &subscription, &sender).await {
                    Ok(ConnectionEnd::Renew) => {
                        wait = Duration::from_millis(50).min(max_wait);
                    }
                    Ok(ConnectionEnd::Resubscribe) => {
                        tracing::info!(%mailbox, "EWS subscription lost; subscribing again");
                        continue 'subscribe;
                    }
                    Ok(ConnectionEnd::ReceiverGone) => return,
                    Err(error) => {
                        tracing::warn!(%mailbox, %error, "EWS streaming connection failed; reconnecting");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(max_wait);
                        if matches!(error, EwsError::Response { .. }) {
                            continue 'subscribe;
                        }
                    }
                }
            }
        }
    }

    /// One GetStreamingEvents connection, read until it ends.
    async fn stream_once(
        &self,
        mailbox: &str,
        subscription: &str,
        sender: &mpsc::Sender<String>,
    ) -> Result<ConnectionEnd, EwsError> {
        let minutes = self.watch_connection.as_secs().div_ceil(60).clamp(1, 30);
        let body = envelope(mailbox, |out| {
            out.open("m:GetStreamingEvents", &[]);
            out.open("m:SubscriptionIds", &[]);
            out.text_element("t:SubscriptionId", &[], subscription);
            out.close("m:SubscriptionIds");
            out.text_element("m:ConnectionTimeout", &[], &minutes.to_string());
            out.close("m:GetStreamingEvents");
        });
        let deadline = tokio::time::Instant::now() + self.watch_connection;
        let mut reply = self
            .stream_http
            .post(&self.config.endpoint)
            .basic_auth(&self.config.user, Some(&self.config.password))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("X-AnchorMailbox", mailbox)
            .body(body)
            .send()
            .await
            .map_err(|e| EwsError::Transport(e.to_string()))?;
        let status = reply.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(EwsError::Unauthorized);
        }
        if !status.is_success() {
            let text = reply.text().await.unwrap_or_default();
            return Err(match read_stream_chunk(&text) {
                Err(error @ EwsError::Response { .. }) => error,
                _ => EwsError::Unavailable {
                    status: status.as_u16(),
                },
            });
        }
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(WATCH_IDLE_LIMIT, reply.chunk()) => next,
                () = tokio::time::sleep_until(deadline) => return Ok(ConnectionEnd::Renew),
                () = sender.closed() => return Ok(ConnectionEnd::ReceiverGone),
            };
            let bytes = match next {
                Err(_) => {
                    return Err(EwsError::Transport(
                        "the streaming connection went quiet".into(),
                    ));
                }
                Ok(Err(error)) => return Err(EwsError::Transport(error.to_string())),
                Ok(Ok(None)) => return Ok(ConnectionEnd::Renew),
                Ok(Ok(Some(bytes))) => bytes,
            };
            buffer.extend_from_slice(&bytes);
            while let Some(end) = complete_envelope_len(&buffer) {
                let document: Vec<u8> = buffer.drain(..end).collect();
                let text = String::from_utf8_lossy(&document);
                let chunk = read_stream_chunk(&text)?;
                if chunk.changed && sender.send(mailbox.to_owned()).await.is_err() {
                    return Ok(ConnectionEnd::ReceiverGone);
                }
                if chunk.subscription_lost {
                    return Ok(ConnectionEnd::Resubscribe);
                }
                if chunk.closed {
                    return Ok(ConnectionEnd::Renew);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::envelope_end;

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
