//! Graph change notifications as Tandem's low-latency trigger for mailboxes on Exchange Online,
//! the Graph twin of `ews/watch.rs`: delta polling stays the fallback, a signal only
//! says "sync this mailbox now".
//!
//! Two halves:
//! - [`GraphWebhook`] — the receiver the host serves ([`GraphWebhook::router`], routes
//!   [`NOTIFICATION_PATH`] and [`LIFECYCLE_PATH`]): it answers the `validationToken` handshake
//!   (the token back as `text/plain`, 200), takes change and lifecycle notifications (202), and
//!   checks each notification's `clientState` against the one its subscription was made with.
//!   Notifications that don't match (forged, or from an earlier run's subscriptions) are dropped
//!   and counted ([`WebhookStats::rejected`]); a `clientState` is never logged.
//! - [`GraphClient::watch`] — the subscription manager: per mailbox one subscription each to its
//!   contacts, events and default To Do list's tasks (`created,updated,deleted`), each with its
//!   own random `clientState`; renewed by PATCH after [`RENEW_AFTER_PERCENT`] of its lifetime;
//!   made again (and the mailbox signalled, changes may have been missed) after a 404 or a
//!   `subscriptionRemoved`; `reauthorizationRequired` → `POST …/reauthorize`; `missed` → a
//!   signal. Dropping the receiver deletes the subscriptions.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::secrets::digests_equal;
use super::{Folder, GraphClient, GraphError, encode_segment, error_of};

/// Where [`GraphWebhook::router`] takes change notifications.
pub const NOTIFICATION_PATH: &str = "/graph/notifications";
/// Where [`GraphWebhook::router`] takes lifecycle notifications.
pub const LIFECYCLE_PATH: &str = "/graph/lifecycle";
/// How long a subscription is asked to live unless [`GraphWebhook::with_subscription_lifetime`]
/// says otherwise (capped per resource: [`MAX_LIFETIME_OUTLOOK`], [`MAX_LIFETIME_TODO`]).
pub const DEFAULT_SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(2 * 24 * 3600);
/// Graph's longest lifetime of a contact or event subscription (10,080 minutes).
pub const MAX_LIFETIME_OUTLOOK: Duration = Duration::from_secs(10_080 * 60);
/// Graph's longest lifetime of a To Do task subscription (4,230 minutes).
pub const MAX_LIFETIME_TODO: Duration = Duration::from_secs(4_230 * 60);
/// A subscription is renewed once this share (in percent) of its lifetime has passed.
pub const RENEW_AFTER_PERCENT: u32 = 80;
/// The change types every subscription asks for.
pub const CHANGE_TYPES: &str = "created,updated,deleted";
/// First wait after a failed create or renewal; doubles up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between attempts to make or renew a subscription.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// What the receiver has seen since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Change notifications whose `clientState` matched (each one notification, not a POST).
    pub accepted: u64,
    /// Lifecycle notifications whose `clientState` matched.
    pub lifecycle: u64,
    /// Notifications dropped: unknown subscription or a `clientState` that does not match.
    pub rejected: u64,
}

/// What a checked notification asks of its subscription's watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    /// Something changed in the watched collection.
    Changed,
    /// Graph could not deliver some notifications: sync the mailbox.
    Missed,
    /// Graph ended the subscription: make it again.
    Removed,
    /// The subscription needs `POST /subscriptions/{id}/reauthorize`.
    Reauthorize,
}

/// A checked notification, sent by the receiver to the watcher that owns the subscription.
#[derive(Debug)]
struct SlotEvent {
    slot: usize,
    subscription_id: String,
    notice: Notice,
}

/// A subscription the receiver accepts notifications for.
struct Registration {
    /// `None` while its creation is in flight (a notification may beat the reply).
    subscription_id: Option<String>,
    /// SHA-256 of the `clientState`: the secret itself is kept by no one but Graph and the
    /// watcher that made it, and digests compare in constant time.
    state_digest: [u8; 32],
    slot: usize,
    events: mpsc::UnboundedSender<SlotEvent>,
}

#[derive(Default)]
struct Registry {
    by_key: HashMap<u64, Registration>,
    by_subscription: HashMap<String, u64>,
    next_key: u64,
}

struct WebhookInner {
    notification_url: String,
    lifecycle_url: String,
    registry: Mutex<Registry>,
    accepted: AtomicU64,
    lifecycle: AtomicU64,
    rejected: AtomicU64,
}

/// The Graph webhook receiver and the settings of the subscriptions pointing at it; clones
/// share one registry, so one receiver serves every [`GraphClient::watch`].
#[derive(Clone)]
pub struct GraphWebhook {
    inner: Arc<WebhookInner>,
    lifetime: Duration,
}

impl std::fmt::Debug for GraphWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphWebhook")
            .field("notification_url", &self.inner.notification_url)
            .field("lifecycle_url", &self.inner.lifecycle_url)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a clientState: what the registry keeps and compares (constant time).
fn digest_of(client_state: &str) -> [u8; 32] {
    Sha256::digest(client_state.as_bytes()).into()
}

/// A fresh random `clientState` (256 bits, URL-safe base64: 43 characters, Graph allows 128).
fn new_client_state() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl GraphWebhook {
    /// A receiver reached by Graph at `public_base_url` (the host's listener that mounts
    /// [`router`](Self::router), as seen from Microsoft: `https://tandem.example.com` gives
    /// `https://tandem.example.com/graph/notifications` and `…/graph/lifecycle`; a path prefix
    /// is kept, for a reverse proxy that strips it). Graph itself wants https; the emulator
    /// takes http on loopback.
    pub fn new(public_base_url: &str) -> Result<Self, GraphError> {
        let parsed = reqwest::Url::parse(public_base_url).map_err(|e| {
            GraphError::InvalidArgument(format!(
                "webhook base URL '{public_base_url}' is not a URL: {e}"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(GraphError::InvalidArgument(format!(
                "webhook base URL '{public_base_url}' must be an http(s) URL without query or fragment"
            )));
        }
        let base = public_base_url.trim_end_matches('/');
        Ok(Self {
            inner: Arc::new(WebhookInner {
                notification_url: format!("{base}{NOTIFICATION_PATH}"),
                lifecycle_url: format!("{base}{LIFECYCLE_PATH}"),
                registry: Mutex::default(),
                accepted: AtomicU64::new(0),
                lifecycle: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
            lifetime: DEFAULT_SUBSCRIPTION_LIFETIME,
        })
    }

    /// How long the subscriptions of watches started from now on are asked to live (at least a
    /// second; Graph's maximum per resource still applies). Short lifetimes are for tests.
    pub fn with_subscription_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    /// The `notificationUrl` of the subscriptions.
    pub fn notification_url(&self) -> &str {
        &self.inner.notification_url
    }

    /// The `lifecycleNotificationUrl` of the subscriptions.
    pub fn lifecycle_url(&self) -> &str {
        &self.inner.lifecycle_url
    }

    /// The routes [`NOTIFICATION_PATH`] and [`LIFECYCLE_PATH`] (POST), to merge into the router
    /// of a listener Graph can reach, outside any bearer-token layer: Graph authenticates by
    /// `clientState`, which the receiver checks.
    pub fn router(&self) -> Router {
        Router::new()
            .route(NOTIFICATION_PATH, post(receive))
            .route(LIFECYCLE_PATH, post(receive))
            .with_state(self.clone())
    }

    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            accepted: self.inner.accepted.load(Ordering::Relaxed),
            lifecycle: self.inner.lifecycle.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
        }
    }

    /// How many subscriptions the receiver currently accepts notifications for.
    pub fn live_subscriptions(&self) -> usize {
        self.registry().by_subscription.len()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn register(
        &self,
        slot: usize,
        state_digest: [u8; 32],
        events: &mpsc::UnboundedSender<SlotEvent>,
    ) -> u64 {
        let mut registry = self.registry();
        registry.next_key += 1;
        let key = registry.next_key;
        registry.by_key.insert(
            key,
            Registration {
                subscription_id: None,
                state_digest,
                slot,
                events: events.clone(),
            },
        );
        key
    }

    fn bind(&self, key: u64, subscription_id: &str) {
        let mut registry = self.registry();
        if let Some(registration) = registry.by_key.get_mut(&key) {
            registration.subscription_id = Some(subscription_id.to_owned());
            registry
                .by_subscription
                .insert(subscription_id.to_owned(), key);
        }
    }

    fn unregister(&self, key: u64) {
        let mut registry = self.registry();
        if let Some(registration) = registry.by_key.remove(&key)
            && let Some(id) = registration.subscription_id
        {
            registry.by_subscription.remove(&id);
        }
    }

    /// Checks one notification and hands it to its watcher; false when it is dropped.
    fn accept(&self, notification: &Json) -> bool {
        let subscription_id = notification
            .get("subscriptionId")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let presented = notification
            .get("clientState")
            .and_then(Json::as_str)
            .map(digest_of);
        let notice = match notification.get("lifecycleEvent").and_then(Json::as_str) {
            None => Notice::Changed,
            Some("subscriptionRemoved") => Notice::Removed,
            Some("reauthorizationRequired") => Notice::Reauthorize,
            // `missed`, and any event Graph adds later: a sync catches up whatever it means.
            Some(_) => Notice::Missed,
        };
        let target = {
            let registry = self.registry();
            let matches = |r: &&Registration| {
                presented
                    .as_ref()
                    .is_some_and(|digest| digests_equal(digest, &r.state_digest))
            };
            match registry.by_subscription.get(subscription_id) {
                Some(key) => registry.by_key.get(key).filter(matches),
                // A notification may come before the creation's reply was read.
                None => registry
                    .by_key
                    .values()
                    .filter(|r| r.subscription_id.is_none())
                    .find(matches),
            }
            .map(|r| (r.slot, r.events.clone()))
        };
        let Some((slot, events)) = target else {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                subscription_id,
                "dropped a Graph notification: unknown subscription or clientState mismatch (forged, or left from an earlier run)"
            );
            return false;
        };
        let counter = if notice == Notice::Changed {
            &self.inner.accepted
        } else {
            &self.inner.lifecycle
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // The watcher may have just stopped: then nobody needs the signal.
        let _ = events.send(SlotEvent {
            slot,
            subscription_id: subscription_id.to_owned(),
            notice,
        });
        true
    }
}

/// `validationToken` of a query string, decoded.
fn validation_token(query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs
        .into_iter()
        .find(|(name, _)| name == "validationToken")
        .map(|(_, value)| value)
}

/// Both routes: the handshake, or a `{"value": [notification, …]}` batch.
async fn receive(
    State(webhook): State<GraphWebhook>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(token) = validation_token(query.as_deref()) {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            token,
        )
            .into_response();
    }
    let batch: Json = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, "a Graph notification POST is not JSON; refused");
            return (
                StatusCode::BAD_REQUEST,
                "expected a JSON notification batch",
            )
                .into_response();
        }
    };
    let Some(notifications) = batch.get("value").and_then(Json::as_array) else {
        tracing::warn!("a Graph notification POST has no 'value' list; refused");
        return (StatusCode::BAD_REQUEST, "expected {\"value\": [...]}").into_response();
    };
    for notification in notifications {
        webhook.accept(notification);
    }
    StatusCode::ACCEPTED.into_response()
}

/// The next step a subscription needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Renew,
    Reauthorize,
}

/// A live subscription.
#[derive(Debug)]
struct Live {
    id: String,
    expires: Instant,
    renew_at: Instant,
}

/// One mailbox folder's subscription, as the watcher keeps it.
struct Slot {
    mailbox: String,
    folder: Folder,
    live: Option<Live>,
    /// The receiver's registration of the current (or in-flight) subscription.
    registration: Option<u64>,
    action: Action,
    due: Instant,
    failures: u32,
    /// A subscription was made before: making one again means changes may have been missed.
    made_before: bool,
}

fn retry_wait(failures: u32) -> Duration {
    FIRST_RETRY_WAIT
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_RETRY_WAIT)
}

fn max_lifetime(folder: Folder) -> Duration {
    match folder {
        Folder::Tasks => MAX_LIFETIME_TODO,
        _ => MAX_LIFETIME_OUTLOOK,
    }
}

/// How long from now until an `expirationDateTime` Graph granted (`fallback` if unreadable).
fn granted_lifetime(reply: &Json, fallback: Duration) -> Duration {
    reply
        .get("expirationDateTime")
        .and_then(Json::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .and_then(|at| (at.with_timezone(&Utc) - Utc::now()).to_std().ok())
        .unwrap_or(fallback)
}

impl GraphClient {
    /// Watches mailboxes (contacts, events, the default To Do list's tasks) with Graph change
    /// notifications delivered to `webhook`. The receiver gets a mailbox address (as given)
    /// each time something changed in it, after a `missed` lifecycle notification, and after a
    /// subscription had to be made again. One background task makes, renews and re-makes the
    /// subscriptions until the receiver is dropped; it then deletes them.
    pub fn watch(&self, webhook: &GraphWebhook, mailboxes: Vec<String>) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(mailboxes.len().clamp(16, 4096));
        let client = self.clone();
        let webhook = webhook.clone();
        tokio::spawn(async move { client.watch_mailboxes(webhook, mailboxes, sender).await });
        receiver
    }

    async fn watch_mailboxes(
        &self,
        webhook: GraphWebhook,
        mailboxes: Vec<String>,
        sender: mpsc::Sender<String>,
    ) {
        let (events_sender, mut events) = mpsc::unbounded_channel::<SlotEvent>();
        let now = Instant::now();
        let mut slots: Vec<Slot> = mailboxes
            .iter()
            .flat_map(|mailbox| {
                [Folder::Contacts, Folder::Calendar, Folder::Tasks].map(|folder| Slot {
                    mailbox: mailbox.clone(),
                    folder,
                    live: None,
                    registration: None,
                    action: Action::Create,
                    due: now,
                    failures: 0,
                    made_before: false,
                })
            })
            .collect();
        // Mailboxes to signal, each once, sent as the consumer takes them.
        let mut signals: VecDeque<String> = VecDeque::new();
        let queue = |signals: &mut VecDeque<String>, mailbox: &str| {
            if !signals.iter().any(|m| m == mailbox) {
                signals.push_back(mailbox.to_owned());
            }
        };
        loop {
            let next_due = slots
                .iter()
                .enumerate()
                .min_by_key(|(_, slot)| slot.due)
                .map(|(index, slot)| (index, slot.due));
            tokio::select! {
                biased;
                () = sender.closed() => break,
                Some(event) = events.recv() => {
                    let Some(slot) = slots.get_mut(event.slot) else { continue };
                    let current = slot.live.as_ref().is_some_and(|l| l.id == event.subscription_id);
                    match event.notice {
                        Notice::Changed | Notice::Missed => queue(&mut signals, &slot.mailbox),
                        Notice::Removed if current => {
                            tracing::info!(mailbox = %slot.mailbox, folder = ?slot.folder, subscription_id = %event.subscription_id, "Graph removed a subscription; making it again");
                            slot.live = None;
                            slot.action = Action::Create;
                            slot.due = Instant::now();
                        }
                        Notice::Reauthorize if current => {
                            slot.action = Action::Reauthorize;
                            slot.due = Instant::now();
                        }
                        Notice::Removed | Notice::Reauthorize => {
                            tracing::debug!(subscription_id = %event.subscription_id, "lifecycle notification of a replaced subscription; ignored");
                        }
                    }
                }
                permit = sender.reserve(), if !signals.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(mailbox) = signals.pop_front() {
                        permit.send(mailbox);
                    }
                }
                () = tokio::time::sleep_until(next_due.map_or(now, |(_, due)| due)), if next_due.is_some() => {
                    let Some((index, _)) = next_due else { continue };
                    let Some(slot) = slots.get_mut(index) else { continue };
                    if self.advance(&webhook, index, slot, &events_sender).await {
                        queue(&mut signals, &slot.mailbox);
                    }
                }
            }
        }
        for slot in &mut slots {
            self.end_subscription(&webhook, slot).await;
        }
    }

    /// Does a slot's due step; true when the mailbox should be signalled.
    async fn advance(
        &self,
        webhook: &GraphWebhook,
        index: usize,
        slot: &mut Slot,
        events: &mpsc::UnboundedSender<SlotEvent>,
    ) -> bool {
        let result = match slot.action {
            Action::Create => self.create_subscription(webhook, index, slot, events).await,
            Action::Renew => self.renew_subscription(webhook, slot).await,
            Action::Reauthorize => self.reauthorize_subscription(slot).await,
        };
        match result {
            Ok(signal) => {
                slot.failures = 0;
                signal
            }
            Err(error) => {
                let mut wait = retry_wait(slot.failures);
                slot.failures = slot.failures.saturating_add(1);
                if let Some(live) = &slot.live {
                    let left = live.expires.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // Expired meanwhile: Graph has dropped it; start over.
                        slot.live = None;
                        slot.action = Action::Create;
                        wait = Duration::ZERO;
                    } else {
                        // Try again well before it expires.
                        slot.action = Action::Renew;
                        wait = wait.min(left / 2);
                    }
                }
                tracing::warn!(mailbox = %slot.mailbox, folder = ?slot.folder, action = ?slot.action, %error, retry_in_ms = wait.as_millis() as u64, "Graph subscription step failed; delta polling covers the mailbox meanwhile");
                slot.due = Instant::now() + wait;
                false
            }
        }
    }

    async fn create_subscription(
        &self,
        webhook: &GraphWebhook,
        index: usize,
        slot: &mut Slot,
        events: &mpsc::UnboundedSender<SlotEvent>,
    ) -> Result<bool, GraphError> {
        if let Some(key) = slot.registration.take() {
            webhook.unregister(key);
        }
        let user = format!("users/{}", encode_segment(&slot.mailbox));
        let resource = match slot.folder {
            Folder::Contacts => format!("{user}/contacts"),
            Folder::Calendar => format!("{user}/events"),
            Folder::Tasks => format!(
                "{user}/todo/lists/{}/tasks",
                encode_segment(&self.task_list(&slot.mailbox).await?)
            ),
        };
        let lifetime = webhook.lifetime.min(max_lifetime(slot.folder));
        let client_state = new_client_state();
        let key = webhook.register(index, digest_of(&client_state), events);
        let started = Instant::now();
        let body = json!({
            "changeType": CHANGE_TYPES,
            "notificationUrl": webhook.notification_url(),
            "lifecycleNotificationUrl": webhook.lifecycle_url(),
            "resource": resource,
            "expirationDateTime": expiration_text(lifetime),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        });
        let url = format!("{}/subscriptions", self.base);
        let reply = self
            .send(
                &slot.mailbox,
                reqwest::Method::POST,
                &url,
                Some(&body),
                &[],
                false,
                1,
            )
            .await;
        let (status, reply) = match reply {
            Ok(reply) => reply,
            Err(error) => {
                webhook.unregister(key);
                return Err(error);
            }
        };
        let id = match reply.get("id").and_then(Json::as_str) {
            Some(id) if status.is_success() => id.to_owned(),
            _ => {
                webhook.unregister(key);
                return Err(if status.is_success() {
                    GraphError::BadReply("a subscription reply has no id".into())
                } else {
                    error_of(status.as_u16(), &reply)
                });
            }
        };
        webhook.bind(key, &id);
        slot.registration = Some(key);
        let granted = granted_lifetime(&reply, lifetime);
        tracing::info!(mailbox = %slot.mailbox, folder = ?slot.folder, subscription_id = %id, lifetime_s = granted.as_secs(), "Graph subscription made");
        self.set_live(slot, id, started, granted);
        let signal = slot.made_before;
        slot.made_before = true;
        Ok(signal)
    }

    fn set_live(&self, slot: &mut Slot, id: String, started: Instant, granted: Duration) {
        let renew_in = granted * RENEW_AFTER_PERCENT / 100;
        slot.live = Some(Live {
            id,
            expires: started + granted,
            renew_at: started + renew_in,
        });
        slot.action = Action::Renew;
        slot.due = started + renew_in;
    }

    async fn renew_subscription(
        &self,
        webhook: &GraphWebhook,
        slot: &mut Slot,
    ) -> Result<bool, GraphError> {
        let Some(live) = &slot.live else {
            slot.action = Action::Create;
            slot.due = Instant::now();
            return Ok(false);
        };
        let id = live.id.clone();
        let lifetime = webhook.lifetime.min(max_lifetime(slot.folder));
        let started = Instant::now();
        let url = format!("{}/subscriptions/{}", self.base, encode_segment(&id));
        let (status, reply) = self
            .send(
                &slot.mailbox,
                reqwest::Method::PATCH,
                &url,
                Some(&json!({"expirationDateTime": expiration_text(lifetime)})),
                &[],
                true,
                1,
            )
            .await?;
        match status.as_u16() {
            200..=299 => {
                let granted = granted_lifetime(&reply, lifetime);
                tracing::debug!(mailbox = %slot.mailbox, folder = ?slot.folder, subscription_id = %id, lifetime_s = granted.as_secs(), "Graph subscription renewed");
                self.set_live(slot, id, started, granted);
                Ok(false)
            }
            404 => {
                tracing::info!(mailbox = %slot.mailbox, folder = ?slot.folder, subscription_id = %id, "Graph no longer knows a subscription; making it again");
                slot.live = None;
                slot.action = Action::Create;
                slot.due = Instant::now();
                Ok(false)
            }
            status => Err(error_of(status, &reply)),
        }
    }

    async fn reauthorize_subscription(&self, slot: &mut Slot) -> Result<bool, GraphError> {
        let Some(live) = &slot.live else {
            slot.action = Action::Create;
            slot.due = Instant::now();
            return Ok(false);
        };
        let url = format!(
            "{}/subscriptions/{}/reauthorize",
            self.base,
            encode_segment(&live.id)
        );
        let (status, _) = self
            .send(
                &slot.mailbox,
                reqwest::Method::POST,
                &url,
                None,
                &[],
                true,
                1,
            )
            .await?;
        match status.as_u16() {
            200..=299 => {
                tracing::debug!(mailbox = %slot.mailbox, folder = ?slot.folder, subscription_id = %live.id, "Graph subscription reauthorized");
                slot.action = Action::Renew;
                slot.due = live.renew_at;
                Ok(false)
            }
            404 => {
                slot.live = None;
                slot.action = Action::Create;
                slot.due = Instant::now();
                Ok(false)
            }
            // A renewal also reauthorizes.
            status => {
                tracing::warn!(mailbox = %slot.mailbox, subscription_id = %live.id, status, "Graph reauthorize failed; renewing instead");
                slot.action = Action::Renew;
                slot.due = Instant::now();
                Ok(false)
            }
        }
    }

    /// Deletes a slot's subscription (best effort: it expires on its own) and forgets it.
    async fn end_subscription(&self, webhook: &GraphWebhook, slot: &mut Slot) {
        if let Some(key) = slot.registration.take() {
            webhook.unregister(key);
        }
        let Some(live) = slot.live.take() else {
            return;
        };
        let url = format!("{}/subscriptions/{}", self.base, encode_segment(&live.id));
        match self
            .send(
                &slot.mailbox,
                reqwest::Method::DELETE,
                &url,
                None,
                &[],
                true,
                1,
            )
            .await
        {
            Ok((status, _)) if status.is_success() || status == StatusCode::NOT_FOUND => {
                tracing::debug!(mailbox = %slot.mailbox, subscription_id = %live.id, "Graph subscription deleted");
            }
            Ok((status, reply)) => {
                let error = error_of(status.as_u16(), &reply);
                tracing::warn!(mailbox = %slot.mailbox, subscription_id = %live.id, %error, "could not delete a Graph subscription; it will expire on its own");
            }
            Err(error) => {
                tracing::warn!(mailbox = %slot.mailbox, subscription_id = %live.id, %error, "could not delete a Graph subscription; it will expire on its own");
            }
        }
    }
}

/// `expirationDateTime` for a subscription living `lifetime` from now.
fn expiration_text(lifetime: Duration) -> String {
    let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::days(1));
    (Utc::now() + lifetime).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_token_is_read_decoded_from_the_query() {
        assert_eq!(
            validation_token(Some("validationToken=Validation%3A%20a+b")).as_deref(),
            Some("Validation: a b")
        );
        assert_eq!(validation_token(Some("other=1")), None);
        assert_eq!(validation_token(None), None);
    }

    #[test]
    fn client_states_are_random_and_fit_graphs_limit() {
        let a = new_client_state();
        let b = new_client_state();
        assert_ne!(a, b);
        assert!(a.len() >= 40 && a.len() <= 128, "{}", a.len());
        assert!(digests_equal(&digest_of(&a), &digest_of(&a)));
        assert!(!digests_equal(&digest_of(&a), &digest_of(&b)));
    }

    #[test]
    fn retry_waits_grow_and_are_capped() {
        assert_eq!(retry_wait(0), FIRST_RETRY_WAIT);
        assert_eq!(retry_wait(1), FIRST_RETRY_WAIT * 2);
        assert_eq!(retry_wait(40), MAX_RETRY_WAIT);
    }
}
