//! Microsoft Graph emulator (`tandem sim graph`): the Outlook contacts, calendar and To Do
//! parts of `/v1.0` as Microsoft documents them, so a Graph connector and real Graph clients
//! (msgraph-sdk) can be tested without Exchange Online.
//!
//! - Auth: OAuth2 client credentials at `POST /{tenant}/oauth2/v2.0/token`: the app's secret
//!   (form body or Basic client auth), or a client assertion signed with a certificate
//!   registered with the app (`GraphSimConfig::certificates`, [`GraphSim::register_certificate`]),
//!   checked as Entra ID checks it (`graph/certificates.rs`); `/v1.0` wants
//!   `Authorization: Bearer TOKEN` (401 `InvalidAuthenticationToken` when missing, unknown or
//!   expired).
//! - Resources under `/v1.0/users/{id|upn}/` (a mailbox is created on first use unless
//!   `mailboxes` names the only ones): `contacts[/{id}]`, `contacts/delta`,
//!   `contactFolders[/{id}[/contacts[/{id}|/delta]]]` (`contacts` is an alias of the default
//!   folder's id), `events[/{id}]`, `calendarView[/delta]?startDateTime=&endDateTime=`,
//!   `todo/lists[/{id}[/tasks[/{id}|/delta]]]` (`defaultList` is an alias of the default
//!   list). GET/POST/PATCH/DELETE with `If-Match` (412 on a stale etag), `$select`, `$top`,
//!   `$skip`, `Prefer: odata.maxpagesize` (delta), `Prefer: outlook.body-content-type` (event
//!   bodies come as HTML unless it asks for text), single-value extended properties
//!   (`$expand=singleValueExtendedProperties($filter=id eq '…')` and
//!   `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')`).
//! - Delta: `@odata.nextLink` / `@odata.deltaLink` with opaque tokens, `@removed`, and 410
//!   `syncStateNotFound` (with a `Location` to restart from) for unreadable or expired tokens.
//! - `POST /v1.0/$batch` (at most [`MAX_BATCH_REQUESTS`], run in order, `dependsOn` → 424
//!   when a dependency failed).
//! - Throttling per app and mailbox ([`ThrottleLimits`]); each batch sub-request counts.
//! - `/v1.0/subscriptions` with the validation handshake and change and lifecycle
//!   notifications (see `graph/subscriptions.rs`).
//! - `GET /_sim/stats` counts requests by operation: the method and the path after
//!   `users/{id}/` with ids as `{id}`, e.g. `GET contacts/delta`,
//!   `GET contactFolders/{id}/contacts/delta`, `PATCH contacts/{id}`, `GET calendarView/delta`,
//!   `POST todo/lists/{id}/tasks`, `POST $batch`, `POST subscriptions`, and `POST token` for
//!   the token endpoint; batch sub-requests are counted under their own names as well.
//! - Fault kinds for `POST /_sim/faults`: `throttled` (429 + `Retry-After`),
//!   `service-unavailable` (503 + `Retry-After`) and `gateway-timeout` (504), which change
//!   nothing; opt-in (only when named): `slow` (reply [`SLOW_REPLY_DELAY`] late, holding its
//!   concurrency slot) and `drop` (the request IS carried out, then the connection closes).
//! - Test knobs: `POST /_sim/graph/expire-delta-tokens`, `POST /_sim/graph/expire-access-tokens`,
//!   `GET /_sim/graph/throttle` ([`ThrottleReport`]: limits, requests refused, peak
//!   concurrency), `POST /_sim/graph/throttle` (new [`ThrottleLimits`] as JSON), `POST /_sim/graph/lifecycle`
//!   (`{"subscriptionId", "lifecycleEvent"}`).
//!
//! Not emulated: occurrence expansion of recurring events (a series is one item spanning its
//! range), time zone conversion (window checks read `dateTime` as UTC whatever `timeZone`
//! says), `Prefer: outlook.timezone`, messages, attachments, resource data in notifications.

mod certificates;
mod delta;
mod query;
mod resource;
mod store;
mod subscriptions;
mod throttle;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::common::{self, ConnectionControl, Credentials, RunningServer, SimControl};
use delta::DeltaState;
use resource::RenderOptions;
use store::{CollectionRef, Item, Kind, Store};
use subscriptions::{Subscription, Watched};
use throttle::{Throttle, Throttled};

pub use certificates::{AppCertificate, MAX_ASSERTION_LIFETIME_SECS, RegisteredCertificate};
pub use throttle::{ThrottleLimits, ThrottleReport};

/// The fault kinds this emulator injects by default.
pub const FAULT_KINDS: &[&str] = &["throttled", "service-unavailable", "gateway-timeout"];
/// Fault kinds injected only when `POST /_sim/faults` names them in `kinds`.
pub const OPT_IN_FAULT_KINDS: &[&str] = &["slow", "drop"];
/// How late a reply comes under the `slow` fault.
pub const SLOW_REPLY_DELAY: Duration = Duration::from_millis(250);
/// The `Retry-After` (seconds) of injected `throttled` and `service-unavailable` faults.
pub const FAULT_RETRY_AFTER_SECS: u64 = 1;
/// Graph's limit of requests in one JSON batch.
pub const MAX_BATCH_REQUESTS: usize = 20;
/// The extended property Tandem keeps its sync id in: `PS_PUBLIC_STRINGS`, `TandemSyncId` —
/// the same MAPI property the EWS connector writes as `PublicStrings`.
pub const SYNC_ID_PROPERTY_ID: &str =
    "String {00020329-0000-0000-C000-000000000046} Name TandemSyncId";
/// The page size of lists and delta rounds when the client names none (Graph's default).
pub const DEFAULT_PAGE_SIZE: usize = 10;
/// The largest page the emulator hands out.
pub const MAX_PAGE_SIZE: usize = 1000;

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct GraphSimConfig {
    /// The one app registration: client id (`user`) and client secret (`password`).
    pub credentials: Credentials,
    /// Certificates registered with the app (PEM), for certificate credentials; the secret
    /// keeps working beside them.
    pub certificates: Vec<String>,
    /// The tenant whose token endpoint issues tokens (`/{tenant_id}/oauth2/v2.0/token`).
    pub tenant_id: String,
    /// How long an access token lives.
    pub token_lifetime: Duration,
    pub throttle: ThrottleLimits,
    /// Share of requests that get an injected fault at start (0.0–1.0).
    pub fault_rate: f64,
    /// Seed for fault injection, so runs repeat.
    pub seed: u64,
    /// When set, only these mailboxes exist (others get 404 `ErrorInvalidUser`).
    pub mailboxes: Option<Vec<String>>,
    /// When set, the store is loaded from this JSON file (if present) and saved after writes
    /// (items, folders, lists and the delta generation; not tokens or subscriptions).
    pub data_file: Option<PathBuf>,
}

impl Default for GraphSimConfig {
    fn default() -> Self {
        Self {
            credentials: Credentials::new(
                "6731de76-14a6-49ae-97bc-6eba6914391e",
                "graph-sim-secret",
            ),
            certificates: Vec::new(),
            tenant_id: "4f1c2d3e-0000-4000-8000-7a6e5d4c3b2a".into(),
            token_lifetime: Duration::from_secs(3599),
            throttle: ThrottleLimits::default(),
            fault_rate: 0.0,
            seed: 0,
            mailboxes: None,
            data_file: None,
        }
    }
}

/// The Graph emulator; clones share one state.
#[derive(Clone)]
pub struct GraphSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSim")
            .field("client_id", &self.inner.config.credentials.user)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: GraphSimConfig,
    control: Arc<SimControl>,
    store: Mutex<Store>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    /// The app's certificates and the client assertions already used.
    certificates: Mutex<Vec<RegisteredCertificate>>,
    seen_assertions: Mutex<certificates::SeenAssertions>,
    throttle: Arc<Throttle>,
    subscriptions: Mutex<BTreeMap<String, Subscription>>,
    /// For the validation handshake and notifications.
    http: reqwest::Client,
}

struct IssuedToken {
    app: String,
    expires: Instant,
}

/// A Graph error answer: `{"error": {"code", "message", "innerError"}}` plus headers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Graph emulator answered {status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn item_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn into_answer(self) -> Answer {
        Answer {
            status: self.status,
            headers: self.headers,
            body: Some(error_body(&self.code, &self.message)),
        }
    }
}

fn error_body(code: &str, message: &str) -> Value {
    let request_id = uuid::Uuid::new_v4().to_string();
    json!({"error": {"code": code, "message": message, "innerError": {
        "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": request_id,
        "client-request-id": request_id,
    }}})
}

/// A reply before it becomes HTTP (or a batch sub-response).
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Answer {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: None,
        }
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => {
                let mut r = (self.status, body.to_string()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"),
                );
                r
            }
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// A change to report to subscriptions.
#[derive(Debug, Clone)]
struct Change {
    mailbox: String,
    collection: CollectionRef,
    kind: Kind,
    item_id: String,
    change_type: &'static str,
    etag: Option<String>,
}

/// One `/v1.0` request, from HTTP or from a batch.
#[derive(Debug)]
struct Call {
    method: Method,
    /// `/v1.0/...` as requested, for links.
    path: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Value>,
    /// `http://host:port`.
    base: String,
}

impl Call {
    fn link(&self, pairs: &[(String, String)]) -> String {
        format!("{}{}?{}", self.base, self.path, query::encode_query(pairs))
    }

    fn render_options(&self) -> Result<RenderOptions, ApiError> {
        let mut options = RenderOptions {
            select: query::select(&self.query),
            text_bodies: Some(query::prefers_text_bodies(&self.headers)),
            ..Default::default()
        };
        match query::param(&self.query, "$expand") {
            Some(expand) if expand.trim().eq_ignore_ascii_case("linkedResources") => {
                options.expand_linked = true
            }
            Some(expand) => {
                options.expand_extended =
                    Some(query::extended_property_expand(expand).map_err(|why| {
                        ApiError::bad_request("BadRequest", format!("Invalid $expand: {why}."))
                    })?);
            }
            None => {}
        }
        Ok(options)
    }
}

/// Splits `/v1.0/a/b` (or `a/b` in a batch) into decoded segments after the version.
fn segments_of(path: &str) -> Vec<String> {
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_prefix("v1.0").unwrap_or(trimmed);
    trimmed
        .split('/')
        .filter(|s| !s.is_empty())
        .map(query::percent_decode)
        // The SDKs call functions OData style: `contacts/delta()`.
        .map(|s| {
            if s == "delta()" {
                "delta".to_owned()
            } else {
                s
            }
        })
        .collect()
}

/// The stats name of a request: method plus path after `users/{id}/`, ids as `{id}`.
fn operation_name(method: &Method, segments: &[String]) -> String {
    const LITERALS: &[&str] = &[
        "contacts",
        "contactFolders",
        "events",
        "calendarView",
        "delta",
        "todo",
        "lists",
        "tasks",
        "subscriptions",
        "$batch",
        "reauthorize",
    ];
    let rest = match segments {
        [users, _, rest @ ..] if users.eq_ignore_ascii_case("users") => rest,
        [me, rest @ ..] if me.eq_ignore_ascii_case("me") => rest,
        other => other,
    };
    if rest.is_empty() {
        return format!("{method} unknown");
    }
    const COLLECTIONS: &[&str] = &[
        "contacts",
        "contactFolders",
        "events",
        "lists",
        "tasks",
        "subscriptions",
    ];
    let mut path: Vec<&str> = Vec::new();
    for segment in rest {
        let after_collection = path.last().is_some_and(|prev| COLLECTIONS.contains(prev));
        let literal =
            LITERALS.contains(&segment.as_str()) && !(after_collection && segment != "delta");
        path.push(if literal { segment.as_str() } else { "{id}" });
    }
    format!("{method} {}", path.join("/"))
}

impl GraphSim {
    pub fn new(config: GraphSimConfig) -> anyhow::Result<Self> {
        let store = match &config.data_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading Graph data file {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "parsing Graph data file {} (delete it to start empty)",
                        path.display()
                    )
                })?
            }
            _ => Store::default(),
        };
        let registered = config
            .certificates
            .iter()
            .enumerate()
            .map(|(index, pem)| {
                RegisteredCertificate::from_pem(pem).with_context(|| format!("app certificate {}", index + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the Graph emulator's webhook client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                control: SimControl::new(config.fault_rate, config.seed),
                throttle: Throttle::new(config.throttle),
                config,
                store: Mutex::new(store),
                tokens: Mutex::default(),
                certificates: Mutex::new(registered),
                seen_assertions: Mutex::default(),
                subscriptions: Mutex::default(),
                http,
            }),
        })
    }

    /// The token endpoint, `/v1.0`, the test knobs and the shared `/_sim` routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .route("/v1.0/{*rest}", any(api))
            .route(
                "/_sim/graph/expire-delta-tokens",
                post(knob_expire_delta_tokens),
            )
            .route(
                "/_sim/graph/expire-access-tokens",
                post(knob_expire_access_tokens),
            )
            .route(
                "/_sim/graph/throttle",
                get(knob_get_throttle).post(knob_set_throttle),
            )
            .route("/_sim/graph/lifecycle", post(knob_lifecycle))
            .with_state(self.clone())
            .merge(common::control_routes(self.inner.control.clone()))
    }

    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningServer> {
        RunningServer::start(self.router(), addr).await
    }

    /// Like `serve`, over HTTPS with `tls`'s certificate (`--tls`).
    pub async fn serve_tls(&self, addr: SocketAddr, tls: &crate::tls::SimTls) -> std::io::Result<RunningServer> {
        RunningServer::start_tls(self.router(), addr, tls).await
    }

    /// Registers a certificate (PEM) with the app, as uploading it under "Certificates &
    /// secrets" does; returns its SHA-1 thumbprint in hex.
    pub fn register_certificate(&self, pem: &str) -> anyhow::Result<String> {
        let certificate = RegisteredCertificate::from_pem(pem)?;
        let thumbprint = certificate.thumbprint_hex();
        self.inner.certificates.lock().unwrap_or_else(|p| p.into_inner()).push(certificate);
        Ok(thumbprint)
    }

    /// The app registration's client id and secret.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.config.credentials
    }

    pub fn tenant_id(&self) -> &str {
        &self.inner.config.tenant_id
    }

    /// `BASE/TENANT/oauth2/v2.0/token` for a server at `base` (`http://127.0.0.1:PORT`).
    pub fn token_url(&self, base: &str) -> String {
        format!("{base}/{}/oauth2/v2.0/token", self.inner.config.tenant_id)
    }

    pub fn stats(&self) -> common::StatsReport {
        self.inner.control.stats.report()
    }

    /// Sets fault injection, as `POST /_sim/faults` does.
    pub fn set_faults(&self, settings: common::FaultSettings) {
        self.inner.control.faults.set(settings);
    }

    pub fn set_throttle_limits(&self, limits: ThrottleLimits) {
        self.inner.throttle.set_limits(limits);
    }

    /// The limits, how many requests throttling refused and the peak concurrency seen.
    pub fn throttle_report(&self) -> ThrottleReport {
        self.inner.throttle.report()
    }

    /// Makes every delta token handed out so far invalid (their next use gets 410).
    pub fn expire_delta_tokens(&self) {
        self.store().delta_generation += 1;
    }

    /// Makes every access token handed out so far expire now.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for token in self.tokens().values_mut() {
            token.expires = now;
        }
    }

    /// Creates an item directly (as a user in Outlook would): `folder` is `contacts`,
    /// `calendar` or `tasks` (the default folder, calendar or list); `properties` is the Graph
    /// JSON of a contact, event or todoTask, checked as a POST body is.
    pub fn create_item(
        &self,
        mailbox: &str,
        folder: &str,
        properties: Value,
    ) -> anyhow::Result<String> {
        let mailbox = mailbox.to_ascii_lowercase();
        let collection = match folder {
            "contacts" => CollectionRef::ContactFolder("contacts".into()),
            "calendar" => CollectionRef::Calendar,
            "tasks" => CollectionRef::TodoList("defaultList".into()),
            other => anyhow::bail!("unknown folder '{other}': use contacts, calendar or tasks"),
        };
        let (answer, changes) = self
            .create(&mailbox, collection, &properties)
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
        self.after_changes(&changes);
        answer
            .body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("the emulator made an item without an id")
    }

    /// Changes an item directly (a user's edit): a PATCH body.
    pub fn update_item(&self, mailbox: &str, item_id: &str, patch: Value) -> anyhow::Result<()> {
        let mailbox = mailbox.to_ascii_lowercase();
        let collection = self
            .store()
            .mailbox(&mailbox)
            .locate(item_id)
            .with_context(|| format!("no item {item_id} in {mailbox}"))?;
        let changes = self
            .patch_item(&mailbox, &collection, item_id, &patch, None)
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?
            .1;
        self.after_changes(&changes);
        Ok(())
    }

    /// Deletes an item directly; false when it does not exist.
    pub fn delete_item(&self, mailbox: &str, item_id: &str) -> bool {
        let mailbox = mailbox.to_ascii_lowercase();
        let Some(collection) = self.store().mailbox(&mailbox).locate(item_id) else {
            return false;
        };
        match self.remove_item(&mailbox, &collection, item_id, None) {
            Ok((_, changes)) => {
                self.after_changes(&changes);
                true
            }
            Err(_) => false,
        }
    }

    /// An item as Graph renders it, with all its extended properties; `None` when absent.
    pub fn item(&self, mailbox: &str, item_id: &str) -> Option<Value> {
        let mut store = self.store();
        let mailbox = store.mailbox(&mailbox.to_ascii_lowercase());
        let collection = mailbox.locate(item_id)?;
        let collection = mailbox.collection(&collection)?;
        let item = collection.items.get(item_id)?;
        let options = RenderOptions {
            expand_extended: Some(Vec::new()),
            expand_linked: true,
            ..Default::default()
        };
        Some(resource::render(item, &collection.id, &options))
    }

    /// Number of items in a mailbox's default contact folder (`contacts`), calendar
    /// (`calendar`) or default To Do list (`tasks`).
    pub fn item_count(&self, mailbox: &str, folder: &str) -> usize {
        let mut store = self.store();
        let mailbox = store.mailbox(&mailbox.to_ascii_lowercase());
        let collection = match folder {
            "contacts" => mailbox.contact_folders.get(&mailbox.default_contact_folder),
            "calendar" => Some(&mailbox.calendar),
            "tasks" => mailbox.todo_lists.get(&mailbox.default_todo_list),
            _ => None,
        };
        collection.map_or(0, |c| c.items.len())
    }

    /// Ids of the live subscriptions.
    pub fn subscription_ids(&self) -> Vec<String> {
        self.subscriptions().keys().cloned().collect()
    }

    /// Sends a lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved` —
    /// which also ends the subscription — or `missed`) to the subscription's lifecycle URL.
    pub fn send_lifecycle_notification(
        &self,
        subscription_id: &str,
        event: &str,
    ) -> Result<(), ApiError> {
        if !matches!(
            event,
            "reauthorizationRequired" | "subscriptionRemoved" | "missed"
        ) {
            return Err(ApiError::bad_request(
                "InvalidRequest",
                format!(
                    "lifecycleEvent '{event}' is not one of reauthorizationRequired, subscriptionRemoved, missed"
                ),
            ));
        }
        let mut subscriptions = self.subscriptions();
        let subscription = subscriptions.get(subscription_id).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("No subscription {subscription_id}."),
            )
        })?;
        let url = subscription.lifecycle_url.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "InvalidRequest",
                "The subscription has no lifecycleNotificationUrl.",
            )
        })?;
        if event == "subscriptionRemoved" {
            subscriptions.remove(subscription_id);
        }
        drop(subscriptions);
        let notification = subscriptions::lifecycle_notification(
            &subscription,
            &self.inner.config.tenant_id,
            event,
        );
        subscriptions::post_in_background(&self.inner.http, url, notification);
        Ok(())
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, IssuedToken>> {
        self.inner.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subscriptions(&self) -> MutexGuard<'_, BTreeMap<String, Subscription>> {
        let mut subscriptions = self
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Utc::now();
        subscriptions.retain(|_, s| s.expiration > now);
        subscriptions
    }

    /// Writes the store to the data file, if one is configured (best effort, logged).
    fn save(&self) {
        let Some(path) = &self.inner.config.data_file else {
            return;
        };
        let json = match serde_json::to_string(&*self.store()) {
            Ok(json) => json,
            Err(error) => {
                tracing::warn!(%error, "could not serialise the Graph emulator store");
                return;
            }
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let written = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "could not save the Graph emulator store");
        }
    }

    /// Saves and notifies subscriptions after changes.
    fn after_changes(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        self.save();
        let subscriptions: Vec<Subscription> = self.subscriptions().values().cloned().collect();
        for change in changes {
            for subscription in &subscriptions {
                if subscription.mailbox == change.mailbox
                    && subscription.watched.covers(&change.collection)
                    && subscription
                        .change_types
                        .iter()
                        .any(|t| t == change.change_type)
                {
                    let notification = subscriptions::change_notification(
                        subscription,
                        &self.inner.config.tenant_id,
                        change.change_type,
                        change.kind,
                        &change.collection,
                        &change.item_id,
                        change.etag.as_deref(),
                    );
                    subscriptions::post_in_background(
                        &self.inner.http,
                        subscription.notification_url.clone(),
                        notification,
                    );
                }
            }
        }
    }

    /// The app a bearer token belongs to.
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let unauthorized = |message: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message).with_header(
                "www-authenticate",
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            )
        };
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if token.is_empty() {
            return Err(unauthorized("Access token is empty."));
        }
        let tokens = self.tokens();
        match tokens.get(token) {
            None => Err(unauthorized(
                "Access token validation failure. Invalid audience.",
            )),
            Some(issued) if issued.expires <= Instant::now() => Err(unauthorized(
                "Lifetime validation failed, the token is expired.",
            )),
            Some(issued) => Ok(issued.app.clone()),
        }
    }

    /// The lower-cased mailbox of a `users/{id}` segment, if it may exist.
    fn mailbox_named(&self, user: &str) -> Result<String, ApiError> {
        let mailbox = user.to_ascii_lowercase();
        if let Some(allowed) = &self.inner.config.mailboxes
            && !allowed.iter().any(|m| m.eq_ignore_ascii_case(&mailbox))
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                format!("The requested user '{user}' is invalid."),
            ));
        }
        Ok(mailbox)
    }

    fn draw_fault(&self) -> Option<&'static str> {
        let faults = &self.inner.control.faults;
        let named = faults.settings().kinds;
        let mut kinds: Vec<&'static str> = FAULT_KINDS.to_vec();
        kinds.extend(
            OPT_IN_FAULT_KINDS
                .iter()
                .filter(|kind| named.iter().any(|n| n == *kind)),
        );
        faults.draw(&kinds)
    }

    /// Runs one request: throttling (per app and mailbox), faults (top-level requests only),
    /// the request itself, then saving and notifications. Returns whether to drop the
    /// connection instead of answering.
    async fn run_one(&self, app: &str, call: Call, top_level: bool) -> (Answer, bool) {
        let mailbox = match call.segments.as_slice() {
            [users, user, ..] if users.eq_ignore_ascii_case("users") => {
                Some(user.to_ascii_lowercase())
            }
            _ => None,
        };
        let _slot = match mailbox
            .as_deref()
            .map(|m| self.inner.throttle.admit(app, m))
        {
            Some(Err(throttled)) => return (throttled_error(throttled).into_answer(), false),
            Some(Ok(slot)) => Some(slot),
            None => None,
        };
        let mut drop_reply = false;
        if top_level {
            match self.draw_fault() {
                Some("slow") => tokio::time::sleep(SLOW_REPLY_DELAY).await,
                Some("drop") => drop_reply = true,
                Some(kind) => return (fault_error(kind).into_answer(), false),
                None => {}
            }
        }
        let answer = match self.execute(app, &call).await {
            Ok((answer, changes)) => {
                self.after_changes(&changes);
                answer
            }
            Err(error) => error.into_answer(),
        };
        (answer, drop_reply)
    }

    async fn execute(&self, app: &str, call: &Call) -> Result<(Answer, Vec<Change>), ApiError> {
        let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["subscriptions", ..] => self
                .subscriptions_call(app, call, &segments[1..])
                .await
                .map(|a| (a, Vec::new())),
            [users, user, rest @ ..] if users.eq_ignore_ascii_case("users") => {
                let mailbox = self.mailbox_named(user)?;
                self.mailbox_call(&mailbox, call, rest)
            }
            [me, ..] if me.eq_ignore_ascii_case("me") => Err(ApiError::bad_request(
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            )),
            _ => Err(unknown_segment(call)),
        }
    }

    fn mailbox_call(
        &self,
        mailbox: &str,
        call: &Call,
        rest: &[&str],
    ) -> Result<(Answer, Vec<Change>), ApiError> {
        use CollectionRef::{Calendar, ContactFolder, TodoList};
        let method = &call.method;
        let default_contacts = || ContactFolder("contacts".into());
        let read_only = |answer: Result<Answer, ApiError>| answer.map(|a| (a, Vec::new()));
        match (method.as_str(), rest) {
            ("GET", ["contacts"]) => read_only(self.list(mailbox, default_contacts(), call, None)),
            ("POST", ["contacts"]) => self.create(mailbox, default_contacts(), &body_of(call)?),
            ("GET", ["contacts", "delta"]) => {
                read_only(self.delta(mailbox, default_contacts(), call))
            }
            (_, ["contacts", id]) => {
                let folder = self
                    .store()
                    .mailbox(mailbox)
                    .folder_of_contact(id)
                    .ok_or_else(ApiError::item_not_found)?;
                self.item_call(mailbox, ContactFolder(folder), id, call)
            }
            ("GET", ["contactFolders"]) => {
                read_only(Ok(self.list_collections(mailbox, Kind::Contact)))
            }
            ("POST", ["contactFolders"]) => {
                read_only(self.create_collection(mailbox, Kind::Contact, call))
            }
            ("GET", ["contactFolders", folder]) => {
                read_only(self.collection_json(mailbox, ContactFolder((*folder).into())))
            }
            ("GET", ["contactFolders", folder, "contacts"]) => {
                read_only(self.list(mailbox, ContactFolder((*folder).into()), call, None))
            }
            ("POST", ["contactFolders", folder, "contacts"]) => {
                self.create(mailbox, ContactFolder((*folder).into()), &body_of(call)?)
            }
            ("GET", ["contactFolders", folder, "contacts", "delta"]) => {
                read_only(self.delta(mailbox, ContactFolder((*folder).into()), call))
            }
            (_, ["contactFolders", folder, "contacts", id]) => {
                let collection = self.existing(mailbox, ContactFolder((*folder).into()))?;
                self.item_call(mailbox, collection, id, call)
            }
            ("GET", ["events"]) => read_only(self.list(mailbox, Calendar, call, None)),
            ("POST", ["events"]) => self.create(mailbox, Calendar, &body_of(call)?),
            (_, ["events", id]) => self.item_call(mailbox, Calendar, id, call),
            ("GET", ["calendarView"]) => {
                let window = window_of(call)?;
                read_only(self.list(mailbox, Calendar, call, Some(window)))
            }
            ("GET", ["calendarView", "delta"]) => read_only(self.delta(mailbox, Calendar, call)),
            ("GET", ["todo", "lists"]) => {
                read_only(Ok(self.list_collections(mailbox, Kind::TodoTask)))
            }
            ("POST", ["todo", "lists"]) => {
                read_only(self.create_collection(mailbox, Kind::TodoTask, call))
            }
            ("GET", ["todo", "lists", list]) => {
                read_only(self.collection_json(mailbox, TodoList((*list).into())))
            }
            ("GET", ["todo", "lists", list, "tasks"]) => {
                read_only(self.list(mailbox, TodoList((*list).into()), call, None))
            }
            ("POST", ["todo", "lists", list, "tasks"]) => {
                self.create(mailbox, TodoList((*list).into()), &body_of(call)?)
            }
            ("GET", ["todo", "lists", list, "tasks", "delta"]) => {
                read_only(self.delta(mailbox, TodoList((*list).into()), call))
            }
            (_, ["todo", "lists", list, "tasks", id]) => {
                let collection = self.existing(mailbox, TodoList((*list).into()))?;
                self.item_call(mailbox, collection, id, call)
            }
            (
                _,
                [
                    "contacts" | "contactFolders" | "events" | "calendarView" | "todo",
                    ..,
                ],
            ) if !rest.is_empty() => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                format!("The HTTP method '{method}' is not allowed for this resource."),
            )),
            _ => Err(unknown_segment(call)),
        }
    }

    /// The collection, resolved, or 404.
    fn existing(
        &self,
        mailbox: &str,
        collection: CollectionRef,
    ) -> Result<CollectionRef, ApiError> {
        let mut store = self.store();
        let mailbox = store.mailbox(mailbox);
        let resolved = mailbox.resolve(collection);
        mailbox
            .collection(&resolved)
            .map(|_| resolved)
            .ok_or_else(ApiError::item_not_found)
    }

    fn item_call(
        &self,
        mailbox: &str,
        collection: CollectionRef,
        id: &str,
        call: &Call,
    ) -> Result<(Answer, Vec<Change>), ApiError> {
        let if_match = call
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok());
        match call.method.as_str() {
            "GET" => {
                let options = call.render_options()?;
                let mut store = self.store();
                let target = store
                    .mailbox(mailbox)
                    .collection(&collection)
                    .ok_or_else(ApiError::item_not_found)?;
                let item = target.items.get(id).ok_or_else(ApiError::item_not_found)?;
                Ok((
                    Answer::json(StatusCode::OK, resource::render(item, &target.id, &options)),
                    Vec::new(),
                ))
            }
            "PATCH" => self.patch_item(mailbox, &collection, id, &body_of(call)?, if_match),
            "DELETE" => self.remove_item(mailbox, &collection, id, if_match),
            other => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                format!("The HTTP method '{other}' is not allowed for an item."),
            )),
        }
    }

    fn create(
        &self,
        mailbox: &str,
        collection: CollectionRef,
        body: &Value,
    ) -> Result<(Answer, Vec<Change>), ApiError> {
        let collection = self.existing(mailbox, collection)?;
        let kind = collection.kind();
        let mut checked = resource::check_body(kind, body, true)?;
        if kind == Kind::Event {
            let uid = format!(
                "040000008200E00074C5B7101A82E00800000000{}",
                hex::encode(uuid::Uuid::new_v4().as_bytes()).to_ascii_uppercase()
            );
            checked.properties.insert("iCalUId".into(), json!(uid));
            checked.properties.insert("isOrganizer".into(), json!(true));
            checked
                .properties
                .entry("organizer")
                .or_insert_with(|| json!({"emailAddress": {"name": mailbox, "address": mailbox}}));
            checked.properties.insert(
                "responseStatus".into(),
                json!({"response": "organizer", "time": "0001-01-01T00:00:00Z"}),
            );
            let zone = checked
                .properties
                .get("start")
                .and_then(|s| s.get("timeZone"))
                .cloned()
                .unwrap_or(json!("UTC"));
            checked
                .properties
                .insert("originalStartTimeZone".into(), zone.clone());
            checked
                .properties
                .insert("originalEndTimeZone".into(), zone);
        }
        let mut store = self.store();
        let item = store
            .create(mailbox, &collection, checked.properties, checked.extended)
            .ok_or_else(ApiError::item_not_found)?;
        let parent = store
            .mailbox(mailbox)
            .collection(&collection)
            .map(|c| c.id.clone())
            .unwrap_or_default();
        drop(store);
        let options = RenderOptions::default();
        let change = change_of(mailbox, &collection, &item, "created");
        Ok((
            Answer::json(
                StatusCode::CREATED,
                resource::render(&item, &parent, &options),
            ),
            vec![change],
        ))
    }

    fn patch_item(
        &self,
        mailbox: &str,
        collection: &CollectionRef,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Answer, Vec<Change>), ApiError> {
        let checked = resource::check_body(collection.kind(), body, false)?;
        let mut store = self.store();
        let (current, parent) = {
            let target = store
                .mailbox(mailbox)
                .collection(collection)
                .ok_or_else(ApiError::item_not_found)?;
            (
                target
                    .items
                    .get(id)
                    .cloned()
                    .ok_or_else(ApiError::item_not_found)?,
                target.id.clone(),
            )
        };
        check_if_match(&current, if_match)?;
        if collection.kind() == Kind::Event {
            let mut merged = current.properties.clone();
            merged.extend(checked.properties.clone());
            resource::check_body(Kind::Event, &Value::Object(merged), false)?;
        }
        let item = store
            .update(
                mailbox,
                collection,
                id,
                checked.properties,
                checked.extended,
            )
            .ok_or_else(ApiError::item_not_found)?;
        drop(store);
        let change = change_of(mailbox, collection, &item, "updated");
        let options = RenderOptions::default();
        Ok((
            Answer::json(StatusCode::OK, resource::render(&item, &parent, &options)),
            vec![change],
        ))
    }

    fn remove_item(
        &self,
        mailbox: &str,
        collection: &CollectionRef,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(Answer, Vec<Change>), ApiError> {
        let mut store = self.store();
        let current = store
            .mailbox(mailbox)
            .collection(collection)
            .and_then(|c| c.items.get(id).cloned())
            .ok_or_else(ApiError::item_not_found)?;
        check_if_match(&current, if_match)?;
        store.delete(mailbox, collection, id);
        drop(store);
        let mut change = change_of(mailbox, collection, &current, "deleted");
        change.etag = None;
        Ok((Answer::no_content(), vec![change]))
    }

    /// A paged list (`$top`, `$skip`, `$select`, `$expand`, the extended-property `$filter`),
    /// restricted to a window for calendarView.
    fn list(
        &self,
        mailbox: &str,
        collection: CollectionRef,
        call: &Call,
        window: Option<(chrono::NaiveDateTime, chrono::NaiveDateTime)>,
    ) -> Result<Answer, ApiError> {
        let collection = self.existing(mailbox, collection)?;
        let options = call.render_options()?;
        let filter = match query::param(&call.query, "$filter") {
            Some(_) if !collection.kind().has_extended_properties() => {
                return Err(ApiError::bad_request(
                    "BadRequest",
                    "Invalid filter clause: this resource supports no $filter in the emulator.",
                ));
            }
            Some(text) => Some(query::extended_property_filter(text).map_err(|why| {
                ApiError::bad_request("BadRequest", format!("Invalid filter clause: {why}."))
            })?),
            None => None,
        };
        let number = |name: &str, default: usize| -> Result<usize, ApiError> {
            match query::param(&call.query, name) {
                Some(text) => text.parse().map_err(|_| {
                    ApiError::bad_request("BadRequest", format!("Invalid {name} value '{text}'."))
                }),
                None => Ok(default),
            }
        };
        let top = number("$top", DEFAULT_PAGE_SIZE)?.clamp(1, MAX_PAGE_SIZE);
        let skip = number("$skip", 0)?;
        let mut store = self.store();
        let target = store
            .mailbox(mailbox)
            .collection(&collection)
            .ok_or_else(ApiError::item_not_found)?;
        let matching: Vec<&Item> = target
            .items
            .values()
            .filter(|item| {
                window
                    .as_ref()
                    .is_none_or(|(start, end)| resource::event_in_window(item, start, end))
            })
            .filter(|item| {
                filter
                    .as_ref()
                    .is_none_or(|(id, value)| item.extended_value(id) == Some(value.as_str()))
            })
            .collect();
        let value: Vec<Value> = matching
            .iter()
            .skip(skip)
            .take(top)
            .map(|item| resource::render(item, &target.id, &options))
            .collect();
        let mut body = json!({"value": value});
        if skip + top < matching.len() {
            let mut pairs: Vec<(String, String)> = call
                .query
                .iter()
                .filter(|(k, _)| {
                    !k.eq_ignore_ascii_case("$skip") && !k.eq_ignore_ascii_case("$top")
                })
                .cloned()
                .collect();
            pairs.push(("$top".into(), top.to_string()));
            pairs.push(("$skip".into(), (skip + top).to_string()));
            body["@odata.nextLink"] = json!(call.link(&pairs));
        }
        Ok(Answer::json(StatusCode::OK, body))
    }

    fn delta(
        &self,
        mailbox: &str,
        collection: CollectionRef,
        call: &Call,
    ) -> Result<Answer, ApiError> {
        let token = query::param(&call.query, "$skiptoken")
            .or_else(|| query::param(&call.query, "$deltatoken"));
        let is_calendar = collection == CollectionRef::Calendar;
        let page_size = query::max_page_size(&call.headers)
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let collection = self.existing(mailbox, collection)?;
        let generation = self.store().delta_generation;
        let state = match token {
            Some(token) => {
                let decoded = DeltaState::decode(token);
                let restart = {
                    let mut pairs = Vec::new();
                    if let Some((start, end)) = decoded.as_ref().and_then(|s| s.window.clone()) {
                        pairs.push(("startDateTime".to_owned(), start));
                        pairs.push(("endDateTime".to_owned(), end));
                    }
                    if pairs.is_empty() {
                        format!("{}{}", call.base, call.path)
                    } else {
                        call.link(&pairs)
                    }
                };
                match decoded {
                    Some(state)
                        if state.generation == generation
                            && state.mailbox == mailbox
                            && state.collection == collection =>
                    {
                        state
                    }
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::GONE,
                            "syncStateNotFound",
                            "The sync state generation is not found or has expired. Restart the synchronization without a token.",
                        )
                        .with_header("location", restart));
                    }
                }
            }
            None => {
                if query::param(&call.query, "$filter").is_some()
                    || query::param(&call.query, "$orderby").is_some()
                {
                    return Err(ApiError::bad_request(
                        "BadRequest",
                        "$filter and $orderby are not supported with delta.",
                    ));
                }
                let window = if is_calendar {
                    let start = query::param(&call.query, "startDateTime");
                    let end = query::param(&call.query, "endDateTime");
                    match (start, end) {
                        (Some(start), Some(end)) => {
                            window_of(call)?;
                            Some((start.to_owned(), end.to_owned()))
                        }
                        _ => return Err(missing_window()),
                    }
                } else {
                    None
                };
                DeltaState {
                    mailbox: mailbox.to_owned(),
                    collection: collection.clone(),
                    from: 0,
                    to: None,
                    after: 0,
                    initial: true,
                    generation,
                    select: if is_calendar {
                        None
                    } else {
                        query::select(&call.query)
                    },
                    window,
                }
            }
        };
        let mut store = self.store();
        let current_seq = store.seq;
        let target = store
            .mailbox(mailbox)
            .collection(&collection)
            .ok_or_else(ApiError::item_not_found)?;
        let page = delta::page(target, &state, current_seq, page_size, query::prefers_text_bodies(&call.headers));
        drop(store);
        let (link_name, token_name) = if page.done {
            ("@odata.deltaLink", "$deltatoken")
        } else {
            ("@odata.nextLink", "$skiptoken")
        };
        let link = call.link(&[(token_name.to_owned(), page.next.encode())]);
        let mut answer = Answer::json(
            StatusCode::OK,
            json!({"value": page.value, link_name: link}),
        );
        if let Some(size) = query::max_page_size(&call.headers) {
            answer.headers.push((
                "preference-applied".into(),
                format!("odata.maxpagesize={size}"),
            ));
        }
        Ok(answer)
    }

    fn list_collections(&self, mailbox: &str, kind: Kind) -> Answer {
        let mut store = self.store();
        let mailbox = store.mailbox(mailbox);
        let value: Vec<Value> = match kind {
            Kind::TodoTask => mailbox
                .todo_lists
                .values()
                .map(|l| todo_list_json(l, l.id == mailbox.default_todo_list))
                .collect(),
            _ => mailbox
                .contact_folders
                .values()
                .filter(|f| f.id != mailbox.default_contact_folder)
                .map(|f| contact_folder_json(f, &mailbox.default_contact_folder))
                .collect(),
        };
        Answer::json(StatusCode::OK, json!({"value": value}))
    }

    fn collection_json(
        &self,
        mailbox: &str,
        collection: CollectionRef,
    ) -> Result<Answer, ApiError> {
        let collection = self.existing(mailbox, collection)?;
        let mut store = self.store();
        let mailbox = store.mailbox(mailbox);
        let target = mailbox
            .collection(&collection)
            .ok_or_else(ApiError::item_not_found)?;
        let body = match collection {
            CollectionRef::TodoList(_) => {
                todo_list_json(target, target.id == mailbox.default_todo_list)
            }
            _ => contact_folder_json(target, &mailbox.default_contact_folder),
        };
        Ok(Answer::json(StatusCode::OK, body))
    }

    fn create_collection(
        &self,
        mailbox: &str,
        kind: Kind,
        call: &Call,
    ) -> Result<Answer, ApiError> {
        let body = body_of(call)?;
        let name = body
            .get("displayName")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("ErrorInvalidRequest", "displayName is required.")
            })?;
        let mut store = self.store();
        let id = store.add_collection(mailbox, kind, name);
        let mailbox_state = store.mailbox(mailbox);
        let body = match kind {
            Kind::TodoTask => mailbox_state
                .todo_lists
                .get(&id)
                .map(|l| todo_list_json(l, false)),
            _ => mailbox_state
                .contact_folders
                .get(&id)
                .map(|f| contact_folder_json(f, &mailbox_state.default_contact_folder)),
        };
        drop(store);
        self.save();
        Ok(Answer::json(
            StatusCode::CREATED,
            body.unwrap_or(Value::Null),
        ))
    }

    async fn subscriptions_call(
        &self,
        app: &str,
        call: &Call,
        rest: &[&str],
    ) -> Result<Answer, ApiError> {
        let not_found = |id: &str| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("The object '{id}' doesn't exist."),
            )
        };
        match (call.method.as_str(), rest) {
            ("GET", []) => {
                let value: Vec<Value> = self
                    .subscriptions()
                    .values()
                    .map(Subscription::to_json)
                    .collect();
                Ok(Answer::json(StatusCode::OK, json!({"value": value})))
            }
            ("POST", []) => self.create_subscription(app, call).await,
            ("GET", [id]) => self
                .subscriptions()
                .get(*id)
                .map(|s| Answer::json(StatusCode::OK, s.to_json()))
                .ok_or_else(|| not_found(id)),
            ("PATCH", [id]) => {
                let body = body_of(call)?;
                let text = body
                    .get("expirationDateTime")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "InvalidRequest",
                            "PATCH of a subscription needs expirationDateTime.",
                        )
                    })?;
                let mut subscriptions = self.subscriptions();
                let subscription = subscriptions.get_mut(*id).ok_or_else(|| not_found(id))?;
                subscription.expiration =
                    subscriptions::check_expiration(&subscription.watched, text)?;
                Ok(Answer::json(StatusCode::OK, subscription.to_json()))
            }
            ("DELETE", [id]) => self
                .subscriptions()
                .remove(*id)
                .map(|_| Answer::no_content())
                .ok_or_else(|| not_found(id)),
            ("POST", [id, "reauthorize"]) => self
                .subscriptions()
                .get(*id)
                .map(|_| Answer::no_content())
                .ok_or_else(|| not_found(id)),
            _ => Err(unknown_segment(call)),
        }
    }

    async fn create_subscription(&self, app: &str, call: &Call) -> Result<Answer, ApiError> {
        let body = body_of(call)?;
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        let required = |name: &str| {
            text(name).ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidRequest",
                    format!("The subscription needs '{name}'."),
                )
            })
        };
        let resource = required("resource")?;
        let (user, watched) = subscriptions::parse_resource(&resource)?;
        let mailbox = self.mailbox_named(&user)?;
        let resolved_id = |collection: CollectionRef| match collection {
            CollectionRef::ContactFolder(id) | CollectionRef::TodoList(id) => id,
            CollectionRef::Calendar => String::new(),
        };
        let watched = match watched {
            Watched::ContactFolder(id) => Watched::ContactFolder(resolved_id(
                self.existing(&mailbox, CollectionRef::ContactFolder(id))?,
            )),
            Watched::TodoList(id) => Watched::TodoList(resolved_id(
                self.existing(&mailbox, CollectionRef::TodoList(id))?,
            )),
            other => other,
        };
        let change_types = subscriptions::parse_change_types(&required("changeType")?)?;
        let expiration =
            subscriptions::check_expiration(&watched, &required("expirationDateTime")?)?;
        let client_state = text("clientState");
        if client_state
            .as_ref()
            .is_some_and(|s| s.chars().count() > 128)
        {
            return Err(ApiError::bad_request(
                "InvalidRequest",
                "clientState can be at most 128 characters.",
            ));
        }
        let notification_url = required("notificationUrl")?;
        subscriptions::check_webhook_url("notificationUrl", &notification_url)?;
        let lifecycle_url = text("lifecycleNotificationUrl");
        if let Some(url) = &lifecycle_url {
            subscriptions::check_webhook_url("lifecycleNotificationUrl", url)?;
        }
        subscriptions::validate_endpoint(&self.inner.http, "notificationUrl", &notification_url)
            .await?;
        if let Some(url) = &lifecycle_url {
            subscriptions::validate_endpoint(&self.inner.http, "lifecycleNotificationUrl", url)
                .await?;
        }
        let subscription = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            resource,
            mailbox,
            watched,
            change_types,
            notification_url,
            lifecycle_url,
            client_state,
            expiration,
            application_id: app.to_owned(),
        };
        let answer = Answer::json(StatusCode::CREATED, subscription.to_json());
        self.subscriptions()
            .insert(subscription.id.clone(), subscription);
        Ok(answer)
    }

    /// `POST /v1.0/$batch`: sub-requests in order, each throttled and counted on its own.
    async fn batch(&self, app: &str, base: &str, body: Option<Value>) -> Answer {
        let requests = match body
            .as_ref()
            .and_then(|b| b.get("requests"))
            .and_then(Value::as_array)
        {
            Some(requests) => requests.clone(),
            None => {
                return ApiError::bad_request(
                    "BadRequest",
                    "Invalid batch payload format: expected {\"requests\": [...]}.",
                )
                .into_answer();
            }
        };
        if requests.len() > MAX_BATCH_REQUESTS {
            return ApiError::bad_request(
                "BadRequest",
                format!("Number of batch request steps ({}) exceeds the maximum of {MAX_BATCH_REQUESTS}.", requests.len()),
            )
            .into_answer();
        }
        let mut seen: Vec<String> = Vec::new();
        let mut parsed = Vec::new();
        for request in &requests {
            match parse_batch_step(request, &seen) {
                Ok(step) => {
                    seen.push(step.id.clone());
                    parsed.push(step);
                }
                Err(error) => return error.into_answer(),
            }
        }
        let mut statuses: HashMap<String, StatusCode> = HashMap::new();
        let mut responses = Vec::new();
        for step in parsed {
            let failed_dependency = step
                .depends_on
                .iter()
                .any(|d| statuses.get(d).is_none_or(|s| !s.is_success()));
            let answer = if failed_dependency {
                ApiError::new(
                    StatusCode::FAILED_DEPENDENCY,
                    "FailedDependency",
                    "A request this one depends on failed.",
                )
                .into_answer()
            } else {
                let (path, query_text) =
                    step.url.split_once('?').unwrap_or((step.url.as_str(), ""));
                let segments = segments_of(path);
                let call = Call {
                    method: step.method.clone(),
                    path: format!(
                        "/v1.0/{}",
                        path.trim_start_matches('/').trim_start_matches("v1.0/")
                    ),
                    query: query::parse_query(query_text),
                    headers: step.headers.clone(),
                    body: step.body.clone(),
                    base: base.to_owned(),
                    segments,
                };
                self.inner
                    .control
                    .stats
                    .record(&operation_name(&call.method, &call.segments));
                if call.segments.first().is_some_and(|s| s == "$batch") {
                    ApiError::bad_request("BadRequest", "A batch cannot contain a batch.")
                        .into_answer()
                } else {
                    self.run_one(app, call, false).await.0
                }
            };
            statuses.insert(step.id.clone(), answer.status);
            let mut headers = Map::new();
            if answer.body.is_some() {
                headers.insert("Content-Type".into(), json!("application/json"));
            }
            for (name, value) in &answer.headers {
                headers.insert(header_case(name), json!(value));
            }
            let mut response =
                json!({"id": step.id, "status": answer.status.as_u16(), "headers": headers});
            if let Some(body) = answer.body {
                response["body"] = body;
            }
            responses.push(response);
        }
        Answer::json(StatusCode::OK, json!({"responses": responses}))
    }

    fn issue_token(
        &self,
        form: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<Value, (StatusCode, Value)> {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let oauth_error = |status: StatusCode, error: &str, code: u32, description: &str| {
            (
                status,
                json!({
                    "error": error,
                    "error_description": format!("AADSTS{code}: {description}"),
                    "error_codes": [code],
                    "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
                    "trace_id": uuid::Uuid::new_v4().to_string(),
                    "correlation_id": uuid::Uuid::new_v4().to_string(),
                }),
            )
        };
        if field("grant_type") != Some("client_credentials") {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type; the emulator supports client_credentials only.",
            ));
        }
        let expected = &self.inner.config.credentials;
        let refused = |refusal: certificates::Refusal| {
            oauth_error(refusal.status, refusal.error, refusal.code, &refusal.description)
        };
        let basic = headers.contains_key(header::AUTHORIZATION);
        let assertion = field("client_assertion_type").is_some() || field("client_assertion").is_some();
        let client_id = if basic {
            if !expected.check_basic(headers) {
                return Err(oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                ));
            }
            expected.user.clone()
        } else {
            let Some(client_id) = field("client_id") else {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_id'.",
                ));
            };
            if client_id != expected.user {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    700016,
                    &format!(
                        "Application with identifier '{client_id}' was not found in the directory."
                    ),
                ));
            }
            if assertion {
                if field("client_assertion_type") != Some(certificates::CLIENT_ASSERTION_TYPE) {
                    return Err(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        90023,
                        &format!("The client_assertion_type must be '{}'.", certificates::CLIENT_ASSERTION_TYPE),
                    ));
                }
                let Some(assertion) = field("client_assertion") else {
                    return Err(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        900144,
                        "The request body must contain the following parameter: 'client_assertion'.",
                    ));
                };
                let audience = self.token_url(&common::origin(headers));
                let registered = self.inner.certificates.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let check = certificates::Expected {
                    client_id,
                    audience: &audience,
                    certificates: &registered,
                    now: Utc::now().timestamp(),
                };
                let mut seen = self.inner.seen_assertions.lock().unwrap_or_else(|p| p.into_inner());
                certificates::check_assertion(assertion, &check, &mut seen).map_err(refused)?;
            } else {
                match field("client_secret") {
                    None => {
                        return Err(oauth_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_client",
                            7000218,
                            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                        ));
                    }
                    Some(secret) if secret != expected.password => {
                        return Err(oauth_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_client",
                            7000215,
                            "Invalid client secret provided.",
                        ));
                    }
                    Some(_) => {}
                }
            }
            client_id.to_owned()
        };
        match field("scope") {
            Some(scope)
                if scope.split_whitespace().all(|s| s.ends_with("/.default"))
                    && !scope.trim().is_empty() => {}
            _ => {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                ));
            }
        }
        let token = format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(uuid::Uuid::new_v4().as_bytes())
        );
        let lifetime = self.inner.config.token_lifetime;
        let now = Instant::now();
        let mut tokens = self.tokens();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.clone(),
            IssuedToken {
                app: client_id,
                expires: now + lifetime,
            },
        );
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": token,
        }))
    }
}

/// A batch step, checked.
struct BatchStep {
    id: String,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn parse_batch_step(request: &Value, earlier: &[String]) -> Result<BatchStep, ApiError> {
    let invalid = |why: String| {
        ApiError::bad_request("BadRequest", format!("Invalid batch payload format: {why}"))
    };
    let id = match request.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid("every request needs an 'id'.".into())),
    };
    if earlier.contains(&id) {
        return Err(invalid(format!("the request id '{id}' is used twice.")));
    }
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .ok_or_else(|| invalid(format!("request '{id}' needs a 'method'.")))?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.contains("://"))
        .ok_or_else(|| invalid(format!("request '{id}' needs a relative 'url'.")))?
        .to_owned();
    let mut headers = HeaderMap::new();
    if let Some(map) = request.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::try_from),
            ) {
                headers.insert(name, value);
            }
        }
    }
    let body = request.get("body").cloned();
    if body.is_some() && !headers.contains_key(header::CONTENT_TYPE) {
        return Err(invalid(format!(
            "request '{id}' has a body but no Content-Type header."
        )));
    }
    let depends_on: Vec<String> = match request.get("dependsOn") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|d| {
                d.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| d.to_string())
            })
            .collect(),
        Some(_) => {
            return Err(invalid(format!(
                "request '{id}': dependsOn must be an array of ids."
            )));
        }
    };
    if let Some(unknown) = depends_on.iter().find(|d| !earlier.contains(d)) {
        return Err(invalid(format!(
            "request '{id}' depends on '{unknown}', which is not an earlier request of the batch."
        )));
    }
    Ok(BatchStep {
        id,
        method,
        url,
        headers,
        body,
        depends_on,
    })
}

/// `retry-after` → `Retry-After`, as header names appear in batch responses.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn change_of(
    mailbox: &str,
    collection: &CollectionRef,
    item: &Item,
    change_type: &'static str,
) -> Change {
    Change {
        mailbox: mailbox.to_owned(),
        collection: collection.clone(),
        kind: item.kind,
        item_id: item.id.clone(),
        change_type,
        etag: Some(item.etag()),
    }
}

fn check_if_match(item: &Item, if_match: Option<&str>) -> Result<(), ApiError> {
    match if_match {
        Some(tag)
            if tag.trim() != "*" && tag.trim() != item.etag() && tag.trim() != item.change_key =>
        {
            Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "ErrorIrresolvableConflict",
                "The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.",
            ))
        }
        _ => Ok(()),
    }
}

fn body_of(call: &Call) -> Result<Value, ApiError> {
    call.body
        .clone()
        .ok_or_else(|| ApiError::bad_request("BadRequest", "Empty Payload. JSON content expected."))
}

fn missing_window() -> ApiError {
    ApiError::bad_request(
        "ErrorInvalidParameter",
        "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
    )
}

fn window_of(call: &Call) -> Result<(chrono::NaiveDateTime, chrono::NaiveDateTime), ApiError> {
    let read = |name: &str| {
        let text = query::param(&call.query, name).ok_or_else(missing_window)?;
        resource::parse_date_time(text).ok_or_else(|| {
            ApiError::bad_request(
                "ErrorInvalidParameter",
                format!("{name} '{text}' is not an ISO 8601 date and time."),
            )
        })
    };
    Ok((read("startDateTime")?, read("endDateTime")?))
}

fn unknown_segment(call: &Call) -> ApiError {
    let last = call.segments.last().cloned().unwrap_or_default();
    ApiError::bad_request(
        "BadRequest",
        format!("Resource not found for the segment '{last}'."),
    )
}

fn throttled_error(throttled: Throttled) -> ApiError {
    let (secs, message) = match throttled {
        Throttled::TooManyConcurrent { retry_after_secs } => (
            retry_after_secs,
            "Application is over its MailboxConcurrency limit.",
        ),
        Throttled::TooManyRequests { retry_after_secs } => (
            retry_after_secs,
            "Application is over its limit of requests per mailbox.",
        ),
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ApplicationThrottled",
        message,
    )
    .with_header("retry-after", secs.to_string())
}

fn fault_error(kind: &str) -> ApiError {
    match kind {
        "throttled" => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit. (injected by the Graph emulator)",
        )
        .with_header("retry-after", FAULT_RETRY_AFTER_SECS.to_string()),
        "service-unavailable" => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable. (injected by the Graph emulator)",
        )
        .with_header("retry-after", FAULT_RETRY_AFTER_SECS.to_string()),
        _ => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "GatewayTimeout",
            "The gateway did not receive a timely response. (injected by the Graph emulator)",
        ),
    }
}

fn contact_folder_json(folder: &store::Collection, default_id: &str) -> Value {
    json!({"id": folder.id, "displayName": folder.display_name, "parentFolderId": default_id})
}

fn todo_list_json(list: &store::Collection, default: bool) -> Value {
    json!({
        "@odata.etag": format!("W/\"{}\"", list.id.chars().rev().take(12).collect::<String>()),
        "id": list.id,
        "displayName": list.display_name,
        "isOwner": true,
        "isShared": false,
        "wellknownListName": if default { "defaultList" } else { "none" },
    })
}

/// `/v1.0/*`.
async fn api(
    State(sim): State<GraphSim>,
    connection: ConnectionControl,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segments = segments_of(uri.path());
    sim.inner
        .control
        .stats
        .record(&operation_name(&method, &segments));
    let app = match sim.authenticate(&headers) {
        Ok(app) => app,
        Err(error) => return error.into_answer().into_response(),
    };
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => Some(value),
            Err(error) => {
                return ApiError::bad_request(
                    "BadRequest",
                    format!("Unable to read JSON request payload: {error}."),
                )
                .into_answer()
                .into_response();
            }
        }
    };
    let base = common::origin(&headers);
    if segments.len() == 1 && segments[0] == "$batch" {
        if method != Method::POST {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                "$batch takes POST.",
            )
            .into_answer()
            .into_response();
        }
        let fault = sim.draw_fault();
        match fault {
            Some("slow") => tokio::time::sleep(SLOW_REPLY_DELAY).await,
            Some("drop") | None => {}
            Some(kind) => return fault_error(kind).into_answer().into_response(),
        }
        let answer = sim.batch(&app, &base, body).await;
        if fault == Some("drop") && connection.drop_connection() {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        return answer.into_response();
    }
    let call = Call {
        method,
        path: uri.path().to_owned(),
        segments,
        query: query::parse_query(uri.query().unwrap_or_default()),
        headers,
        body,
        base,
    };
    let (answer, drop_reply) = sim.run_one(&app, call, true).await;
    if drop_reply && connection.drop_connection() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    answer.into_response()
}

async fn token_endpoint(
    State(sim): State<GraphSim>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.inner.control.stats.record("POST token");
    if !tenant.eq_ignore_ascii_case(&sim.inner.config.tenant_id) {
        let body = json!({
            "error": "invalid_tenant",
            "error_description": format!("AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
            "error_codes": [90002],
        });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let form = query::parse_query(&String::from_utf8_lossy(&body));
    match sim.issue_token(&form, &headers) {
        Ok(token) => axum::Json(token).into_response(),
        Err((status, body)) => (status, axum::Json(body)).into_response(),
    }
}

async fn openid_configuration(
    State(sim): State<GraphSim>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = common::origin(&headers);
    let issuer = format!("{base}/{tenant}/v2.0");
    axum::Json(json!({
        "token_endpoint": sim.token_url(&base),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EU",
    }))
    .into_response()
}

async fn knob_expire_delta_tokens(State(sim): State<GraphSim>) -> StatusCode {
    sim.expire_delta_tokens();
    StatusCode::NO_CONTENT
}

async fn knob_expire_access_tokens(State(sim): State<GraphSim>) -> StatusCode {
    sim.expire_access_tokens();
    StatusCode::NO_CONTENT
}

async fn knob_get_throttle(State(sim): State<GraphSim>) -> axum::Json<ThrottleReport> {
    axum::Json(sim.throttle_report())
}

async fn knob_set_throttle(
    State(sim): State<GraphSim>,
    axum::Json(limits): axum::Json<ThrottleLimits>,
) -> Response {
    if limits.requests_per_window == 0 || limits.concurrent_requests == 0 || limits.window_ms == 0 {
        return (StatusCode::BAD_REQUEST, "every limit must be at least 1").into_response();
    }
    sim.set_throttle_limits(limits);
    axum::Json(limits).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LifecycleRequest {
    subscription_id: String,
    lifecycle_event: String,
}

async fn knob_lifecycle(
    State(sim): State<GraphSim>,
    axum::Json(request): axum::Json<LifecycleRequest>,
) -> Response {
    match sim.send_lifecycle_notification(&request.subscription_id, &request.lifecycle_event) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => error.into_answer().into_response(),
    }
}

#[cfg(test)]
mod tests;
