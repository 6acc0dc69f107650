//! Tandem's Microsoft Graph connector (Exchange Online): the same operations, typed records
//! and semantics as the EWS connector, on the neutral model of [`super`], so the engine and the
//! mapping plugins work unchanged whichever backend a mailbox is on.
//!
//! **API.** [`GraphClient::new`]`(`[`GraphConfig`]`)`, then `sync_folder_items`, `get_items`,
//! `create_items`, `create_items_once`, `update_item`, `update_items`, `delete_items`,
//! `find_items_by_sync_id`, `find_item_ids`, `sync_ids_in_folder` — same arguments and result
//! types as the EWS client ([`Folder`], [`ItemId`], [`ExchangeItem`], [`SyncChange`],
//! [`SyncBatch`], [`UpdateOutcome`]); errors are [`GraphError`], classified here (transient,
//! permanent, invalid delta link) and carried to the engine as
//! [`ExchangeError::Graph`](super::ExchangeError) with their HTTP status.
//!
//! **Folders.** Contacts: the default contact folder (`contactFolders/contacts/contacts[/delta]`,
//! items at `contacts/{id}`). Calendar: `calendarView/delta` over a window fixed when a round
//! starts, [`CALENDAR_WINDOW_PAST`] before today to [`CALENDAR_WINDOW_FUTURE`] after (the
//! window travels inside the deltaLink); items at `events/{id}`. Graph reports events leaving
//! the window as `@removed`, so removed event ids are checked with a GET and only those that
//! are really gone are reported as deletes. Tasks: the default To Do list (looked up once per
//! mailbox by `wellknownListName == defaultList`).
//!
//! **Cursor.** `sync_folder_items` reads one delta page (`Prefer: odata.maxpagesize`). While a
//! round has more pages the returned `sync_state` is the `@odata.nextLink` and
//! `includes_last_item` is false; the page that ends the round returns the `@odata.deltaLink`.
//! Save only the state of a batch with `includes_last_item` (the engine does). A 410 /
//! `syncStateNotFound` — or a saved state that is not a link of this Graph endpoint, e.g. an EWS
//! SyncState after a mailbox moved — is [`GraphError::InvalidSyncState`]. Graph does not tell
//! creates from updates: the first round reports [`SyncChange::Created`] (its nextLinks carry
//! the fragment [`INITIAL_ROUND_MARKER`] to remember it), later rounds `Updated`.
//! `@removed` (reason `deleted` or `changed`, i.e. moved out of the folder) is `Deleted`.
//!
//! **Field mapping** (flat EWS names ⇄ Graph), implemented in `graph/mapping.rs`:
//!
//! | folder | flat field | Graph |
//! |---|---|---|
//! | contacts | `GivenName`, `Surname`, `MiddleName`, `DisplayName`, `FileAs`, `Initials`, `Nickname`, `CompanyName`, `JobTitle`, `Department`, `OfficeLocation`, `Profession`, `Manager`, `AssistantName`, `SpouseName`, `Generation`, `BusinessHomePage`, `MobilePhone` | the camelCase property (`nickName` for `Nickname`) |
//! | contacts | `Birthday` (date-time) | `birthday` |
//! | contacts | `Body` | `personalNotes` |
//! | contacts | `Categories` (list) | `categories` |
//! | contacts | `EmailAddress1..3` | `emailAddresses[0..2].address` (name = address on write) |
//! | contacts | `BusinessPhone`, `BusinessPhone2` / `HomePhone`, `HomePhone2` | `businessPhones[0..1]` / `homePhones[0..1]` |
//! | contacts | `ImAddress1..3` | `imAddresses[0..2]` |
//! | contacts | `{Business,Home,Other}{Street,City,State,CountryOrRegion,PostalCode}` | `{business,home,other}Address.{street,…}` |
//! | contacts | `Sensitivity`, `Importance` | MAPI `Integer 0x0036`, `Integer 0x0017` (extended properties; Graph contacts have neither) |
//! | contacts | `AssistantPhone`, `BusinessFax`, `Callback`, `CarPhone`, `CompanyMainPhone`, `HomeFax`, `Isdn`, `OtherFax`, `OtherTelephone`, `Pager`, `PrimaryPhone`, `RadioPhone`, `Telex`, `TtyTddPhone` | their MAPI string properties (`String 0x3A2E`, `0x3A24`, …) |
//! | calendar | `Subject`, `Categories`, `IsAllDayEvent` (`isAllDay`), `ReminderIsSet` (`isReminderOn`), `ReminderMinutesBeforeStart` | same meaning |
//! | calendar | `Body` | `body.content` (`contentType: text`) |
//! | calendar | `Start`, `End` (date-times) | `start`/`end` `{dateTime, timeZone: "UTC"}` |
//! | calendar | `Location` | `location.displayName` |
//! | calendar | `Sensitivity`, `Importance`, `LegacyFreeBusyStatus` | `sensitivity`, `importance`, `showAs` (`Normal`⇄`normal`, `OOF`⇄`oof`, `NoData`⇄`unknown`, …) |
//! | calendar | `Organizer` (read-only: ignored on write), `RequiredAttendees`, `OptionalAttendees` | `organizer.emailAddress.address`, `attendees[type=required/optional]` (resources kept) |
//! | calendar | `UID` (read-only here) | `iCalUId` |
//! | calendar | `Recurrence.*` (see `ews/calendar.rs`) | `recurrence.pattern` / `.range` (`Weekday`, `WeekendDay`, `Day` expand to day lists; read back as such for Relative* patterns; yearly interval is 1; range time zone UTC) |
//! | tasks | `Subject` | `title` |
//! | tasks | `Body` | `body.content` |
//! | tasks | `StartDate`, `DueDate`, `CompleteDate` | `startDateTime`, `dueDateTime`, `completedDateTime` (UTC) |
//! | tasks | `Status`, `Importance`, `Categories`, `ReminderIsSet` | `status` (`NotStarted`⇄`notStarted`, …), `importance`, `categories`, `isReminderOn` |
//! | tasks | `PercentComplete`, `Sensitivity`, `ReminderMinutesBeforeStart`, `Mileage`, `BillingInformation` | To Do has no such properties: kept as JSON in the `displayName` of the task's Tandem `linkedResource`, so they round-trip and are never cleared |
//!
//! Sync id: contacts and events carry it in the single-value extended property
//! [`SYNC_ID_PROPERTY_ID`] (the same MAPI property EWS writes); To Do tasks (no extended
//! properties) in a `linkedResource` with `applicationName: "Tandem"` and `externalId`. Field
//! names outside the table are [`GraphError::UnknownField`], as with EWS. Lists written in part
//! (e.g. only `EmailAddress2`) are merged with the item's current value (read first); list
//! entries are compacted (a blank `EmailAddress1` moves `EmailAddress2` up).
//!
//! **Time zones.** Everything is sent in UTC. Reads ask `Prefer: outlook.timezone="UTC"` (and
//! `outlook.body-content-type="text"`, so bodies come as text, not HTML);
//! `timeZone` values `UTC`, `Etc/UTC`, `Etc/GMT`, `GMT`, `Coordinated Universal Time` and
//! `dateTime`s with an offset are read as date-times; any other zone is kept as text
//! `"{dateTime} ({timeZone})"` (the mapping sees it, nothing is lost).
//!
//! **Requests.** Reads, creates, updates and deletes go in `$batch` requests of at most
//! [`MAX_BATCH`]. Per mailbox at most `limits.concurrent_per_mailbox` (4) requests are in
//! flight, and a sliding-window pacer keeps the sub-requests under `limits.requests_per_window`
//! per `limits.window` (Graph counts each batch step) with a small safety margin. 429 and 503
//! (top level or batch step) are retried after `Retry-After`, which also holds back the other
//! requests of that mailbox. Updates send `If-Match: W/"{changeKey}"` (412 →
//! [`UpdateOutcome::Conflict`], 404 → `NotFound`). Tokens: client credentials at `token_url`
//! with the app's secret or certificate ([`crate::oauth`]), cached until shortly before
//! expiry, fetched again once on a 401.
//!
//! **Change notifications** (`graph/watch.rs`): [`GraphWebhook`] is the webhook receiver the
//! host serves (validation handshake, `clientState` checks) and [`GraphClient::watch`] the
//! subscription manager (create, renew, re-create, reauthorize, delete); it gives the same
//! "mailbox changed" signals as `EwsClient::watch`.

mod mapping;
mod watch;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value as Json, json};

pub use super::{ExchangeItem, Folder, ItemId, SyncBatch, SyncChange, UpdateOutcome};
use crate::record::Fields;
use crate::telemetry::RemoteRequests;
pub use mapping::{SYNC_ID_PROPERTY_ID, TASK_LINK_APPLICATION};
pub use watch::{
    CHANGE_TYPES, DEFAULT_SUBSCRIPTION_LIFETIME, GraphWebhook, LIFECYCLE_PATH,
    MAX_LIFETIME_OUTLOOK, MAX_LIFETIME_TODO, MAX_RETRY_WAIT, NOTIFICATION_PATH,
    RENEW_AFTER_PERCENT, WebhookStats,
};

/// Graph's limit of requests in one `$batch`.
pub const MAX_BATCH: usize = 20;
/// How far back the calendar delta window reaches.
pub const CALENDAR_WINDOW_PAST: chrono::Duration = chrono::Duration::days(365);
/// How far ahead the calendar delta window reaches.
pub const CALENDAR_WINDOW_FUTURE: chrono::Duration = chrono::Duration::days(730);
/// Appended to the nextLinks of a folder's first round (an URL fragment, never sent), so
/// their pages still report [`SyncChange::Created`].
pub const INITIAL_ROUND_MARKER: &str = "#tandem-initial-round";
/// The scope of a client-credentials token for Graph.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The `Prefer` header of every request: date-times in UTC, and bodies as text — without it
/// Graph answers event bodies in HTML, which would land in Siebel and come back escaped, an
/// echo write on every cycle ("Get event": `outlook.body-content-type`).
const PREFERENCES: &str = "outlook.timezone=\"UTC\", outlook.body-content-type=\"text\"";

/// Throttling limits the client keeps to, per mailbox (Outlook's: 10,000 requests per 10
/// minutes, 4 concurrent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphLimits {
    pub requests_per_window: u32,
    pub window: Duration,
    pub concurrent_per_mailbox: usize,
    /// Client-side pacing on (default). Off only for the benchmark's baseline.
    pub pacing: bool,
}

impl Default for GraphLimits {
    fn default() -> Self {
        Self {
            requests_per_window: 10_000,
            window: Duration::from_secs(600),
            concurrent_per_mailbox: 4,
            pacing: true,
        }
    }
}

/// Where and as which app registration to reach Graph.
#[derive(Clone)]
pub struct GraphConfig {
    /// `https://graph.microsoft.com/v1.0` (no trailing slash needed).
    pub base_url: String,
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    pub client_id: String,
    /// The app's client secret or certificate.
    pub credential: crate::oauth::ClientCredential,
    pub limits: GraphLimits,
    /// Extra trusted CAs and proxy (`[graph] ca_file`, `proxy`), for Graph and the token
    /// endpoint alike.
    pub transport: crate::transport::Transport,
}

impl std::fmt::Debug for GraphConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphConfig")
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("limits", &self.limits)
            .field("transport", &self.transport)
            .finish()
    }
}

/// What went wrong talking to Graph, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    #[error(
        "the saved Graph delta link is no longer valid (410 syncStateNotFound); drop it and resynchronise the folder from the beginning"
    )]
    InvalidSyncState,
    #[error(
        "Graph refused the app's token (HTTP 401) even after fetching a new one; check the client id, secret and the app's permissions"
    )]
    Unauthorized,
    /// No access token: the token endpoint refused the app registration's credentials, or
    /// could not be reached.
    #[error("no Graph access token: {0}")]
    Token(crate::oauth::TokenError),
    #[error(
        "Graph is throttling this mailbox (429) and still was after retrying; wait {retry_after:?} before trying again"
    )]
    Throttled { retry_after: Duration },
    #[error("Graph is unavailable (HTTP {status}) and still was after retrying; try again later")]
    Unavailable { status: u16 },
    #[error("Graph answered HTTP {status} {code}: {message}")]
    Response {
        status: u16,
        code: String,
        message: String,
    },
    #[error("could not reach Graph: {0}; check base_url and the network")]
    Transport(String),
    /// The server's certificate was not accepted: no request was sent, and retrying cannot
    /// help until the server or `[graph] ca_file` changes.
    #[error("could not reach Graph: {0}")]
    Tls(crate::transport::TlsError),
    #[error("Graph sent a reply Tandem cannot read: {0}")]
    BadReply(String),
    #[error(
        "field '{0}' has no Graph property in this folder; use the EWS flat names listed in exchange::graph"
    )]
    UnknownField(String),
    #[error("field '{field}' cannot be sent to Graph: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("invalid Graph request: {0}")]
    InvalidArgument(String),
}

impl GraphError {
    /// Whether the failure may pass on its own (so the request may have been carried out).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GraphError::Transport(_)
                | GraphError::Unavailable { .. }
                | GraphError::Throttled { .. }
        ) || matches!(self, GraphError::Token(error) if error.is_transient())
    }

    /// Whether retrying cannot help until an administrator acts: the app's credentials or
    /// permissions, or a mailbox Graph does not know (`ErrorInvalidUser`, a mailbox not on
    /// Exchange Online: `MailboxNotEnabledForRESTAPI`).
    pub fn is_permanent(&self) -> bool {
        match self {
            GraphError::Unauthorized => true,
            GraphError::Token(error) => matches!(
                error,
                crate::oauth::TokenError::Refused { .. }
                    | crate::oauth::TokenError::Credential { .. }
                    | crate::oauth::TokenError::Settings { .. }
            ),
            GraphError::Response { code, .. } => matches!(
                code.as_str(),
                "ErrorInvalidUser" | "MailboxNotEnabledForRESTAPI" | "ErrorAccessDenied" | "Authorization_RequestDenied"
            ),
            _ => false,
        }
    }

    /// Whether Graph refused this one item (400 or 422 to a write: a property value it does
    /// not take), not the request as a whole: the record is set aside, the run goes on.
    pub fn is_record_refusal(&self) -> bool {
        match self {
            GraphError::Response { status: 400 | 422, code, .. } => !matches!(code.as_str(), "syncStateNotFound" | "resyncRequired"),
            GraphError::UnknownField(_) | GraphError::InvalidValue { .. } => true,
            _ => false,
        }
    }

    /// Graph's error code, for errors Graph reported.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Response { code, .. } => Some(code),
            GraphError::InvalidSyncState => Some("syncStateNotFound"),
            _ => None,
        }
    }

    /// The HTTP status Graph answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Response { status, .. } | GraphError::Unavailable { status } => Some(*status),
            GraphError::Unauthorized => Some(401),
            GraphError::Throttled { .. } => Some(429),
            GraphError::InvalidSyncState => Some(410),
            _ => None,
        }
    }
}

impl crate::exchange::CreateOnceBackend for GraphClient {
    type Error = GraphError;

    fn create_attempts(&self) -> u32 {
        self.attempts
    }

    fn may_have_created(error: &GraphError) -> bool {
        error.is_transient()
    }

    async fn create_batch(&self, mailbox: &str, folder: Folder, items: &[(Fields, String)]) -> Result<Vec<ItemId>, GraphError> {
        self.create_items(mailbox, folder, items).await
    }

    async fn items_by_sync_id(&self, mailbox: &str, folder: Folder) -> Result<HashMap<String, Vec<ItemId>>, GraphError> {
        self.sync_ids_in_folder(mailbox, folder).await
    }
}

/// One mailbox's pacing state: a sliding log of request times, the concurrency cap and a
/// hold-off set by `Retry-After`.
#[derive(Debug)]
struct MailboxGate {
    sent: std::sync::Mutex<VecDeque<Instant>>,
    held_until: std::sync::Mutex<Option<Instant>>,
    in_flight: tokio::sync::Semaphore,
}

/// One batch step.
#[derive(Debug, Clone)]
struct Step {
    method: &'static str,
    /// Relative to the base URL, starting with `/`.
    url: String,
    body: Option<Json>,
    if_match: Option<String>,
}

/// One batch step's answer.
#[derive(Debug)]
struct StepReply {
    status: u16,
    body: Json,
}

/// A Graph client for one app registration; cheap to clone.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    config: Arc<GraphConfig>,
    base: Arc<str>,
    attempts: u32,
    max_wait: Duration,
    gates: Arc<std::sync::Mutex<HashMap<String, Arc<MailboxGate>>>>,
    tokens: Arc<crate::oauth::TokenSource>,
    task_lists: Arc<std::sync::Mutex<HashMap<String, String>>>,
    requests: Arc<RemoteRequests>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"@._-+~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"._-~$".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The change key of an item: `changeKey`, else the inside of `@odata.etag` (`W/"…"`).
fn change_key_of(item: &Json) -> String {
    if let Some(key) = item.get("changeKey").and_then(Json::as_str) {
        return key.to_owned();
    }
    item.get("@odata.etag")
        .and_then(Json::as_str)
        .map(|tag| tag.trim_start_matches("W/").trim_matches('"').to_owned())
        .unwrap_or_default()
}

fn item_id_of(item: &Json) -> Result<ItemId, GraphError> {
    let id = item
        .get("id")
        .and_then(Json::as_str)
        .ok_or_else(|| GraphError::BadReply("an item has no id".into()))?;
    Ok(ItemId {
        id: id.to_owned(),
        change_key: change_key_of(item),
    })
}

fn error_of(status: u16, body: &Json) -> GraphError {
    let code = body
        .pointer("/error/code")
        .and_then(Json::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let message = body
        .pointer("/error/message")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    if status == 410
        || code.eq_ignore_ascii_case("syncStateNotFound")
        || code.eq_ignore_ascii_case("resyncRequired")
    {
        return GraphError::InvalidSyncState;
    }
    GraphError::Response {
        status,
        code,
        message,
    }
}

/// A request that got no answer: a refused certificate, or anything else on the way.
fn transport_error(error: reqwest::Error) -> GraphError {
    match crate::transport::tls_error(&error, "graph") {
        Some(tls) => GraphError::Tls(tls),
        None => GraphError::Transport(crate::transport::describe(&error)),
    }
}

fn retry_after_of(value: Option<&str>) -> Duration {
    Duration::from_secs(
        value
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1),
    )
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        for (name, url) in [
            ("base_url", &config.base_url),
            ("token_url", &config.token_url),
        ] {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                GraphError::InvalidArgument(format!("{name} '{url}' is not a URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(GraphError::InvalidArgument(format!(
                    "{name} '{url}' must be http or https"
                )));
            }
        }
        if config.limits.requests_per_window == 0 || config.limits.window.is_zero() {
            return Err(GraphError::InvalidArgument(
                "limits: requests_per_window and window must be above zero".into(),
            ));
        }
        let http = crate::transport::client_builder(&config.transport)
            .map_err(|e| GraphError::InvalidArgument(format!("[graph] {e}; {}", e.hint())))?
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| GraphError::Transport(format!("cannot build the HTTP client: {e}")))?;
        let base: Arc<str> = config.base_url.trim_end_matches('/').into();
        let requests = RemoteRequests::graph();
        let tokens = crate::oauth::TokenSource::new(
            crate::oauth::TokenEndpoint {
                section: "graph",
                token_url: config.token_url.clone(),
                client_id: config.client_id.clone(),
                credential: config.credential.clone(),
                scope: Some(GRAPH_SCOPE.into()),
                secret_placement: crate::oauth::SecretPlacement::Body,
            },
            http.clone(),
            requests.clone(),
        )
        .map_err(|e| GraphError::InvalidArgument(e.to_string()))?;
        Ok(Self {
            http,
            config: Arc::new(config),
            base,
            attempts: 6,
            max_wait: Duration::from_secs(120),
            gates: Arc::default(),
            tokens: Arc::new(tokens),
            task_lists: Arc::default(),
            requests,
        })
    }

    /// The client's request counters (shared by its clones), for `/metrics`.
    pub fn remote_requests(&self) -> Arc<RemoteRequests> {
        self.requests.clone()
    }

    /// Changes how often transient failures are tried in all and the longest wait honoured
    /// (a longer `Retry-After` ends the call with [`GraphError::Throttled`]).
    pub fn with_retry(mut self, attempts: u32, max_wait: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.max_wait = max_wait;
        self
    }

    fn gate(&self, mailbox: &str) -> Arc<MailboxGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(mailbox.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(MailboxGate {
                    sent: std::sync::Mutex::new(VecDeque::new()),
                    held_until: std::sync::Mutex::new(None),
                    in_flight: tokio::sync::Semaphore::new(
                        self.config.limits.concurrent_per_mailbox.max(1),
                    ),
                })
            })
            .clone()
    }

    /// Waits until `cost` more requests fit the mailbox's window (and any `Retry-After`).
    async fn pace(&self, gate: &MailboxGate, cost: usize) {
        let limits = self.config.limits;
        loop {
            let held = *gate.held_until.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = held.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            if !limits.pacing {
                return;
            }
            // A margin for the time between our clock and the server's admission.
            let window = limits.window + (limits.window / 50).max(Duration::from_millis(150));
            let budget = limits.requests_per_window as usize;
            let cost = cost.min(budget);
            let wait = {
                let mut sent = gate.sent.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    sent.pop_front();
                }
                if sent.len() + cost <= budget {
                    sent.extend(std::iter::repeat_n(now, cost));
                    return;
                }
                let oldest_needed = sent[sent.len() + cost - budget - 1];
                (oldest_needed + window).saturating_duration_since(now)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    fn hold(&self, gate: &MailboxGate, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = gate.held_until.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none_or(|h| h < until) {
            *held = Some(until);
        }
    }

    /// When the app's secret or certificate expires, when known (for `/metrics` and the status).
    pub fn credential_expiry(&self) -> Option<crate::oauth::CredentialExpiry> {
        self.tokens.expiry()
    }

    async fn access_token(&self, force: bool) -> Result<String, GraphError> {
        self.tokens.token(force).await.map_err(|error| match error {
            // A refused certificate is the same failure wherever it happens.
            crate::oauth::TokenError::Tls(tls) => GraphError::Tls(tls),
            other => GraphError::Token(other),
        })
    }

    /// Sends one request for `mailbox` (cost = Graph requests it counts as), with pacing,
    /// the concurrency cap, token refresh and retries. Returns status and JSON body.
    #[allow(clippy::too_many_arguments)] // one private choke point; a struct would only rename them
    async fn send(
        &self,
        mailbox: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Json>,
        headers: &[(&str, String)],
        idempotent: bool,
        cost: usize,
    ) -> Result<(StatusCode, Json), GraphError> {
        let gate = self.gate(mailbox);
        let mut refreshed = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.attempts;
            let reply = {
                // The slot first: the pacer's clock must be the moment the request leaves.
                let _slot = gate
                    .in_flight
                    .acquire()
                    .await
                    .map_err(|_| GraphError::Transport("the client is shutting down".into()))?;
                self.pace(&gate, cost).await;
                let token = self.access_token(false).await?;
                self.requests.count(if url.ends_with("/$batch") { "batch" } else { method.as_str() });
                let mut request = self
                    .http
                    .request(method.clone(), url)
                    .bearer_auth(&token)
                    .header("Prefer", PREFERENCES);
                for (name, value) in headers {
                    request = request.header(*name, value);
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                match request.send().await {
                    Ok(reply) => {
                        let status = reply.status();
                        let retry_after = retry_after_of(
                            reply
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok()),
                        );
                        let text = reply.text().await.map_err(transport_error);
                        text.map(|t| (status, retry_after, t))
                    }
                    Err(error) => Err(transport_error(error)),
                }
            };
            let (status, retry_after, text) = match reply {
                Ok(reply) => reply,
                Err(error @ GraphError::Tls(_)) => return Err(error),
                Err(error) if idempotent && !last => {
                    tracing::warn!(mailbox, %error, "Graph request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(6)))).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let json: Json = if text.trim().is_empty() {
                Json::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Json::Null)
            };
            match status.as_u16() {
                401 if !refreshed => {
                    refreshed = true;
                    self.access_token(true).await?;
                    continue;
                }
                401 => return Err(GraphError::Unauthorized),
                // 429 means not carried out: always safe to send again.
                429 | 503
                    if (status == StatusCode::TOO_MANY_REQUESTS || idempotent)
                        && !last
                        && retry_after <= self.max_wait =>
                {
                    tracing::warn!(
                        mailbox,
                        status = status.as_u16(),
                        wait_s = retry_after.as_secs(),
                        "Graph asked to back off; waiting"
                    );
                    self.hold(&gate, retry_after);
                    continue;
                }
                429 => {
                    self.hold(&gate, retry_after);
                    return Err(GraphError::Throttled { retry_after });
                }
                500 | 502 | 503 | 504 if idempotent && !last => {
                    tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(6)))).await;
                    continue;
                }
                500 | 502 | 503 | 504 => {
                    return Err(GraphError::Unavailable {
                        status: status.as_u16(),
                    });
                }
                _ => return Ok((status, json)),
            }
        }
    }

    /// GET of a full URL for `mailbox`; non-2xx answers are errors.
    async fn get_json(
        &self,
        mailbox: &str,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Json, GraphError> {
        let (status, body) = self
            .send(mailbox, reqwest::Method::GET, url, None, headers, true, 1)
            .await?;
        if !status.is_success() {
            return Err(error_of(status.as_u16(), &body));
        }
        Ok(body)
    }

    /// Runs steps in `$batch` requests of at most [`MAX_BATCH`]; steps answered 429 (or 503
    /// when `idempotent`) are sent again after their `Retry-After`. One reply per step.
    async fn batch(
        &self,
        mailbox: &str,
        steps: &[Step],
        idempotent: bool,
    ) -> Result<Vec<StepReply>, GraphError> {
        let mut replies: Vec<Option<StepReply>> = (0..steps.len()).map(|_| None).collect();
        for chunk_start in (0..steps.len()).step_by(MAX_BATCH) {
            let chunk_end = (chunk_start + MAX_BATCH).min(steps.len());
            let mut pending: Vec<usize> = (chunk_start..chunk_end).collect();
            let mut round: u32 = 0;
            while !pending.is_empty() {
                round += 1;
                let requests: Vec<Json> = pending
                    .iter()
                    .map(|index| {
                        let step = &steps[*index];
                        let mut headers = serde_json::Map::new();
                        if step.body.is_some() {
                            headers.insert("Content-Type".into(), json!("application/json"));
                        }
                        if let Some(tag) = &step.if_match {
                            headers.insert("If-Match".into(), json!(tag));
                        }
                        headers.insert("Prefer".into(), json!(PREFERENCES));
                        let mut request = json!({"id": index.to_string(), "method": step.method, "url": step.url, "headers": headers});
                        if let Some(body) = &step.body {
                            request["body"] = body.clone();
                        }
                        request
                    })
                    .collect();
                let url = format!("{}/$batch", self.base);
                let (status, body) = self
                    .send(
                        mailbox,
                        reqwest::Method::POST,
                        &url,
                        Some(&json!({"requests": requests})),
                        &[],
                        idempotent,
                        pending.len(),
                    )
                    .await?;
                if !status.is_success() {
                    return Err(error_of(status.as_u16(), &body));
                }
                let responses =
                    body.get("responses")
                        .and_then(Json::as_array)
                        .ok_or_else(|| {
                            GraphError::BadReply("a $batch reply has no responses".into())
                        })?;
                let mut again = Vec::new();
                let mut wait = Duration::ZERO;
                for response in responses {
                    let index = response
                        .get("id")
                        .and_then(Json::as_str)
                        .and_then(|id| id.parse::<usize>().ok())
                        .filter(|i| pending.contains(i))
                        .ok_or_else(|| {
                            GraphError::BadReply(
                                "a $batch response names no request of the batch".into(),
                            )
                        })?;
                    let status = response.get("status").and_then(Json::as_u64).unwrap_or(0) as u16;
                    let retry_after = retry_after_of(
                        response
                            .get("headers")
                            .and_then(|h| h.as_object())
                            .and_then(|h| {
                                h.iter()
                                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                                    .and_then(|(_, v)| v.as_str())
                            }),
                    );
                    let retryable =
                        status == 429 || (idempotent && matches!(status, 500 | 502 | 503 | 504));
                    if retryable && round < self.attempts {
                        again.push(index);
                        wait = wait.max(retry_after);
                        continue;
                    }
                    if status == 429 {
                        return Err(GraphError::Throttled { retry_after });
                    }
                    replies[index] = Some(StepReply {
                        status,
                        body: response.get("body").cloned().unwrap_or(Json::Null),
                    });
                }
                if replies[chunk_start..chunk_end]
                    .iter()
                    .filter(|r| r.is_none())
                    .count()
                    != again.len()
                {
                    return Err(GraphError::BadReply(
                        "a $batch reply left requests unanswered".into(),
                    ));
                }
                if !again.is_empty() {
                    tracing::warn!(
                        mailbox,
                        steps = again.len(),
                        wait_s = wait.as_secs(),
                        "Graph throttled batch steps; waiting"
                    );
                    if wait > self.max_wait {
                        return Err(GraphError::Throttled { retry_after: wait });
                    }
                    self.hold(&self.gate(mailbox), wait);
                }
                pending = again;
            }
        }
        replies
            .into_iter()
            .map(|r| r.ok_or_else(|| GraphError::BadReply("a $batch step has no answer".into())))
            .collect()
    }

    fn user_path(mailbox: &str) -> String {
        format!("/users/{}", encode_segment(mailbox))
    }

    /// The id of the mailbox's default To Do list (looked up once).
    async fn task_list(&self, mailbox: &str) -> Result<String, GraphError> {
        let key = mailbox.to_ascii_lowercase();
        if let Some(id) = self
            .task_lists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(id.clone());
        }
        let url = format!("{}{}/todo/lists", self.base, Self::user_path(mailbox));
        let body = self.get_json(mailbox, &url, &[]).await?;
        let id = body
            .get("value")
            .and_then(Json::as_array)
            .and_then(|lists| {
                lists.iter().find(|l| {
                    l.get("wellknownListName").and_then(Json::as_str) == Some("defaultList")
                })
            })
            .and_then(|l| l.get("id"))
            .and_then(Json::as_str)
            .ok_or_else(|| GraphError::BadReply(format!("{mailbox} has no default To Do list")))?
            .to_owned();
        self.task_lists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, id.clone());
        Ok(id)
    }

    /// The collection path of a folder (relative, for creates and lists).
    async fn collection(&self, mailbox: &str, folder: Folder) -> Result<String, GraphError> {
        let user = Self::user_path(mailbox);
        Ok(match folder {
            Folder::Contacts => format!("{user}/contactFolders/contacts/contacts"),
            Folder::Calendar => format!("{user}/events"),
            Folder::Tasks => format!(
                "{user}/todo/lists/{}/tasks",
                encode_segment(&self.task_list(mailbox).await?)
            ),
        })
    }

    async fn item_path(
        &self,
        mailbox: &str,
        folder: Folder,
        id: &str,
    ) -> Result<String, GraphError> {
        let user = Self::user_path(mailbox);
        Ok(match folder {
            Folder::Contacts => format!("{user}/contacts/{}", encode_segment(id)),
            Folder::Calendar => format!("{user}/events/{}", encode_segment(id)),
            Folder::Tasks => format!(
                "{}/{}",
                self.collection(mailbox, folder).await?,
                encode_segment(id)
            ),
        })
    }

    /// The `$expand` that reads our sync id (and kept fields) with an item.
    fn expand(folder: Folder) -> String {
        match folder {
            Folder::Tasks => "$expand=linkedResources".into(),
            _ => {
                let filter: Vec<String> = mapping::extended_ids(folder)
                    .iter()
                    .map(|id| format!("id eq '{id}'"))
                    .collect();
                format!(
                    "$expand={}",
                    encode_query(&format!(
                        "singleValueExtendedProperties($filter={})",
                        filter.join(" or ")
                    ))
                )
            }
        }
    }

    /// One delta page. `sync_state` is `None` at first, then the state of the previous batch.
    pub async fn sync_folder_items(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_state: Option<&str>,
        max_changes: u16,
    ) -> Result<SyncBatch, GraphError> {
        if !(1..=1000).contains(&max_changes) {
            return Err(GraphError::InvalidArgument(format!(
                "max_changes must be 1 to 1000, not {max_changes}"
            )));
        }
        // Pages after the first of an initial round carry a marker so they still report creates.
        let (sync_state, continues_initial) =
            match sync_state.and_then(|s| s.strip_suffix(INITIAL_ROUND_MARKER)) {
                Some(link) => (Some(link), true),
                None => (sync_state, false),
            };
        let initial = continues_initial || sync_state.is_none_or(str::is_empty);
        let url = match sync_state.filter(|s| !s.is_empty()) {
            Some(state) => {
                // Only our own links carry our token; anything else (an EWS SyncState) means resync.
                if !state.starts_with(&format!("{}/", self.base)) {
                    tracing::warn!(
                        mailbox,
                        "the saved sync state is not a Graph delta link of this endpoint; resyncing"
                    );
                    return Err(GraphError::InvalidSyncState);
                }
                state.to_owned()
            }
            None => {
                let user = Self::user_path(mailbox);
                match folder {
                    Folder::Contacts => format!(
                        "{}{user}/contactFolders/contacts/contacts/delta?$select=id,changeKey",
                        self.base
                    ),
                    Folder::Calendar => {
                        let today = chrono::Utc::now()
                            .date_naive()
                            .and_hms_opt(0, 0, 0)
                            .unwrap_or_default();
                        let start = (today - CALENDAR_WINDOW_PAST).format("%Y-%m-%dT%H:%M:%SZ");
                        let end = (today + CALENDAR_WINDOW_FUTURE).format("%Y-%m-%dT%H:%M:%SZ");
                        format!(
                            "{}{user}/calendarView/delta?startDateTime={start}&endDateTime={end}",
                            self.base
                        )
                    }
                    Folder::Tasks => {
                        let list = self.task_list(mailbox).await?;
                        format!(
                            "{}{user}/todo/lists/{}/tasks/delta",
                            self.base,
                            encode_segment(&list)
                        )
                    }
                }
            }
        };
        let body = self
            .get_json(
                mailbox,
                &url,
                &[("Prefer", format!("odata.maxpagesize={max_changes}"))],
            )
            .await?;
        let mut changes = Vec::new();
        let mut removed_events = Vec::new();
        for entry in body
            .get("value")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let id = entry
                .get("id")
                .and_then(Json::as_str)
                .ok_or_else(|| GraphError::BadReply("a delta entry has no id".into()))?;
            if entry.get("@removed").is_some() {
                if folder == Folder::Calendar {
                    removed_events.push(id.to_owned());
                } else {
                    changes.push(SyncChange::Deleted(id.to_owned()));
                }
                continue;
            }
            let item_id = ItemId {
                id: id.to_owned(),
                change_key: change_key_of(entry),
            };
            changes.push(if initial {
                SyncChange::Created(item_id)
            } else {
                SyncChange::Updated(item_id)
            });
        }
        if !removed_events.is_empty() {
            // Events leaving the window are reported as removed: only report the gone ones.
            let mut steps = Vec::with_capacity(removed_events.len());
            for id in &removed_events {
                steps.push(Step {
                    method: "GET",
                    url: format!("{}?$select=id", self.item_path(mailbox, folder, id).await?),
                    body: None,
                    if_match: None,
                });
            }
            for (id, reply) in removed_events
                .into_iter()
                .zip(self.batch(mailbox, &steps, true).await?)
            {
                match reply.status {
                    404 => changes.push(SyncChange::Deleted(id)),
                    200..=299 => tracing::debug!(
                        mailbox,
                        id,
                        "an event left the calendar window; not a delete"
                    ),
                    status => return Err(error_of(status, &reply.body)),
                }
            }
        }
        let (state, last) = match (
            body.get("@odata.nextLink").and_then(Json::as_str),
            body.get("@odata.deltaLink").and_then(Json::as_str),
        ) {
            (Some(next), _) if initial => (format!("{next}{INITIAL_ROUND_MARKER}"), false),
            (Some(next), _) => (next.to_owned(), false),
            (None, Some(delta)) => (delta.to_owned(), true),
            (None, None) => {
                return Err(GraphError::BadReply(
                    "a delta page has neither nextLink nor deltaLink".into(),
                ));
            }
        };
        Ok(SyncBatch {
            sync_state: state,
            includes_last_item: last,
            changes,
        })
    }

    /// Reads items with all mapped fields and the sync id; ids that no longer exist are left out.
    pub async fn get_items(
        &self,
        mailbox: &str,
        folder: Folder,
        ids: &[String],
    ) -> Result<Vec<ExchangeItem>, GraphError> {
        let raw = self.read_raw(mailbox, folder, ids).await?;
        raw.into_iter()
            .flatten()
            .map(|item| Self::exchange_item(folder, &item))
            .collect()
    }

    fn exchange_item(folder: Folder, item: &Json) -> Result<ExchangeItem, GraphError> {
        let id = item_id_of(item)?;
        let (fields, sync_id) = mapping::from_graph(folder, item);
        Ok(ExchangeItem {
            id,
            sync_id,
            fields,
        })
    }

    /// The items' Graph JSON, `None` for those that no longer exist.
    async fn read_raw(
        &self,
        mailbox: &str,
        folder: Folder,
        ids: &[String],
    ) -> Result<Vec<Option<Json>>, GraphError> {
        let mut steps = Vec::with_capacity(ids.len());
        for id in ids {
            steps.push(Step {
                method: "GET",
                url: format!(
                    "{}?{}",
                    self.item_path(mailbox, folder, id).await?,
                    Self::expand(folder)
                ),
                body: None,
                if_match: None,
            });
        }
        self.batch(mailbox, &steps, true)
            .await?
            .into_iter()
            .map(|reply| match reply.status {
                200 => Ok(Some(reply.body)),
                404 => Ok(None),
                status => Err(error_of(status, &reply.body)),
            })
            .collect()
    }

    /// Creates items, each with its sync id, and returns their ids in order. Field names are
    /// checked before anything is sent. On an error part may have been created: find those by
    /// sync id (or use [`create_items_once`](Self::create_items_once)).
    pub async fn create_items(
        &self,
        mailbox: &str,
        folder: Folder,
        items: &[(Fields, String)],
    ) -> Result<Vec<ItemId>, GraphError> {
        let bodies: Vec<Json> = items
            .iter()
            .map(|(fields, sync_id)| {
                mapping::to_graph(folder, fields, None, true, Some(sync_id))
                    .map(mapping::GraphBody::into_json)
            })
            .collect::<Result<_, _>>()?;
        let collection = self.collection(mailbox, folder).await?;
        let steps: Vec<Step> = bodies
            .into_iter()
            .map(|body| Step {
                method: "POST",
                url: collection.clone(),
                body: Some(body),
                if_match: None,
            })
            .collect();
        let replies = self.batch(mailbox, &steps, false).await?;
        let mut ids = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply.status {
                200 | 201 => ids.push(item_id_of(&reply.body)?),
                500 | 502 | 503 | 504 => {
                    return Err(GraphError::Unavailable {
                        status: reply.status,
                    });
                }
                status => return Err(error_of(status, &reply.body)),
            }
        }
        Ok(ids)
    }

    /// Creates items that do not exist yet, identified by sync id; ids in order. After a
    /// failure that may have created part of a batch (lost reply, 5xx) the folder is searched
    /// for the sync ids and only the missing items are sent again, so no duplicate is made.
    pub async fn create_items_once(
        &self,
        mailbox: &str,
        folder: Folder,
        items: &[(Fields, String)],
    ) -> Result<Vec<ItemId>, GraphError> {
        for (fields, sync_id) in items {
            mapping::to_graph(folder, fields, None, true, Some(sync_id))?;
        }
        // Graph batches its creates itself ($batch of MAX_BATCH): one round for all items.
        crate::exchange::create_items_once(self, mailbox, folder, items, items.len()).await
    }

    /// Every item of the folder that carries a sync id, by sync id (paged list).
    pub async fn sync_ids_in_folder(
        &self,
        mailbox: &str,
        folder: Folder,
    ) -> Result<HashMap<String, Vec<ItemId>>, GraphError> {
        Ok(crate::exchange::group_by_sync_id(self.list_ids(mailbox, folder, None).await?))
    }

    /// Reads at most one entry of each collection Tandem syncs for `mailbox` (contacts,
    /// events, To Do lists): a token, and the app's permissions on that mailbox, without
    /// writing anything. For `tandem doctor`.
    pub async fn probe(&self, mailbox: &str) -> Result<(), GraphError> {
        let user = Self::user_path(mailbox);
        for collection in ["contactFolders/contacts/contacts", "events", "todo/lists"] {
            let url = format!("{}{user}/{collection}?$top=1&$select=id", self.base);
            self.get_json(mailbox, &url, &[]).await?;
        }
        Ok(())
    }

    /// Every item id in the folder.
    pub async fn find_item_ids(
        &self,
        mailbox: &str,
        folder: Folder,
    ) -> Result<Vec<ItemId>, GraphError> {
        Ok(self
            .list_ids(mailbox, folder, None)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The items whose sync id equals `sync_id` (normally zero or one).
    pub async fn find_items_by_sync_id(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_id: &str,
    ) -> Result<Vec<ItemId>, GraphError> {
        let found = self.list_ids(mailbox, folder, Some(sync_id)).await?;
        Ok(found
            .into_iter()
            .filter(|(_, s)| s.as_deref() == Some(sync_id))
            .map(|(id, _)| id)
            .collect())
    }

    /// Lists the folder to the end (`$top` 500), with each item's sync id; contacts and
    /// events can be filtered on the sync id by the server.
    async fn list_ids(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_id: Option<&str>,
    ) -> Result<Vec<(ItemId, Option<String>)>, GraphError> {
        let collection = self.collection(mailbox, folder).await?;
        let mut url = match folder {
            Folder::Calendar | Folder::Contacts => {
                let select = if folder == Folder::Contacts {
                    "id,changeKey"
                } else {
                    "id"
                };
                let expand = format!(
                    "$expand={}",
                    encode_query(&format!(
                        "singleValueExtendedProperties($filter=id eq '{SYNC_ID_PROPERTY_ID}')"
                    ))
                );
                let filter = sync_id
                    .map(|value| {
                        let text = format!(
                            "singleValueExtendedProperties/Any(ep: ep/id eq '{SYNC_ID_PROPERTY_ID}' and ep/value eq '{}')",
                            value.replace('\'', "''")
                        );
                        format!("&$filter={}", encode_query(&text))
                    })
                    .unwrap_or_default();
                format!(
                    "{}{collection}?$top=500&$select={select}&{expand}{filter}",
                    self.base
                )
            }
            Folder::Tasks => format!("{}{collection}?$top=500&$expand=linkedResources", self.base),
        };
        let mut found = Vec::new();
        loop {
            let body = self.get_json(mailbox, &url, &[]).await?;
            for item in body
                .get("value")
                .and_then(Json::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let (_, item_sync_id) = mapping::from_graph(folder, item);
                found.push((item_id_of(item)?, item_sync_id));
            }
            match body.get("@odata.nextLink").and_then(Json::as_str) {
                Some(next) if next.starts_with(&*self.base) => url = next.to_owned(),
                Some(_) => {
                    return Err(GraphError::BadReply(
                        "a nextLink points outside the Graph endpoint".into(),
                    ));
                }
                None => break,
            }
        }
        Ok(found)
    }

    /// Writes `fields` to an item, only if it is still at `id.change_key`.
    pub async fn update_item(
        &self,
        mailbox: &str,
        folder: Folder,
        id: &ItemId,
        fields: &Fields,
    ) -> Result<UpdateOutcome, GraphError> {
        let mut outcomes = self
            .update_items(mailbox, folder, &[(id.clone(), fields.clone())])
            .await?;
        outcomes
            .pop()
            .ok_or_else(|| GraphError::BadReply("update: no outcome".into()))
    }

    /// Writes several items (`PATCH` with `If-Match`, in batches): one outcome per change, in
    /// order; a conflict (412) or a vanished item (404) is that item's outcome. Non-blank
    /// values are set, blank text and `Null` clear the property.
    pub async fn update_items(
        &self,
        mailbox: &str,
        folder: Folder,
        changes: &[(ItemId, Fields)],
    ) -> Result<Vec<UpdateOutcome>, GraphError> {
        let mut outcomes: Vec<Option<UpdateOutcome>> = vec![None; changes.len()];
        // Items whose lists are written in part are read first, to merge.
        let to_read: Vec<usize> = (0..changes.len())
            .filter(|i| mapping::needs_current(folder, &changes[*i].1))
            .collect();
        let ids: Vec<String> = to_read.iter().map(|i| changes[*i].0.id.clone()).collect();
        let mut current: HashMap<usize, Json> = HashMap::new();
        if !ids.is_empty() {
            for (index, item) in to_read
                .iter()
                .zip(self.read_raw(mailbox, folder, &ids).await?)
            {
                match item {
                    None => outcomes[*index] = Some(UpdateOutcome::NotFound),
                    Some(item) if change_key_of(&item) != changes[*index].0.change_key => {
                        outcomes[*index] = Some(UpdateOutcome::Conflict)
                    }
                    Some(item) => {
                        current.insert(*index, item);
                    }
                }
            }
        }
        let mut steps = Vec::new();
        let mut stepped = Vec::new();
        for (index, (id, fields)) in changes.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            let body = mapping::to_graph(folder, fields, current.get(&index), false, None)?;
            if body.is_empty() {
                outcomes[index] = Some(UpdateOutcome::Updated(id.clone()));
                continue;
            }
            steps.push(Step {
                method: "PATCH",
                url: self.item_path(mailbox, folder, &id.id).await?,
                body: Some(body.into_json()),
                if_match: Some(format!("W/\"{}\"", id.change_key)),
            });
            stepped.push(index);
        }
        for (index, reply) in stepped
            .into_iter()
            .zip(self.batch(mailbox, &steps, true).await?)
        {
            outcomes[index] = Some(match reply.status {
                200..=299 => UpdateOutcome::Updated(item_id_of(&reply.body)?),
                412 | 409 => UpdateOutcome::Conflict,
                404 => UpdateOutcome::NotFound,
                status => return Err(error_of(status, &reply.body)),
            });
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| GraphError::BadReply("update: an outcome is missing".into())))
            .collect()
    }

    /// Deletes items (Graph moves them to Deleted Items); ids that no longer exist count as deleted.
    pub async fn delete_items(
        &self,
        mailbox: &str,
        folder: Folder,
        ids: &[String],
    ) -> Result<(), GraphError> {
        let mut steps = Vec::with_capacity(ids.len());
        for id in ids {
            steps.push(Step {
                method: "DELETE",
                url: self.item_path(mailbox, folder, id).await?,
                body: None,
                if_match: None,
            });
        }
        for reply in self.batch(mailbox, &steps, true).await? {
            match reply.status {
                200..=299 | 404 => {}
                status => return Err(error_of(status, &reply.body)),
            }
        }
        Ok(())
    }
}
