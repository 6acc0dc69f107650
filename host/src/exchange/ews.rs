//! Tandem's Exchange Web Services connector: incremental sync, reads and writes of contacts,
//! calendar items and tasks in users' mailboxes, impersonated by one service account.
//!
//! Requests go over the connections of [`http`], signed in as [`auth`] says (Basic, NTLM or
//! Negotiate).
//!
//! Items travel as [`Fields`] keyed by EWS element names (`GivenName`, `EmailAddress1`,
//! `BusinessPhone`, `BusinessCity`, …); the element-order tables and the XML reader/writer
//! are shared with the emulator in [`tandem_ews_wire`], so there is one definition of
//! the schema order. Tandem's own sync id lives in the `PublicStrings` extended property
//! `TandemSyncId`. Calendar items add `Organizer`, `RequiredAttendees`, `OptionalAttendees`
//! and the flat `Recurrence.*` fields described in [`calendar`]; date-times (`Start`, `End`,
//! task `StartDate`, `DueDate`, `CompleteDate`) are [`Value::DateTime`] and go out in UTC.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue};
use tandem_ews_wire::{
    self as wire, Element, ExtendedKey, FieldPath, ItemKind, ValueKind, WireItem, WireValue, XmlOut,
    field_slot,
};

pub use crate::exchange::{ExchangeItem, Folder, ItemId, SyncBatch, SyncChange, UpdateOutcome};
use crate::record::{Fields, Value};

pub mod auth;
pub mod calendar;
pub mod http;
mod watch;
pub use auth::EwsAuth;
pub use watch::{DEFAULT_WATCH_CONNECTION, StreamChunk, WATCH_IDLE_LIMIT, read_stream_chunk};

/// The name of the extended property holding Tandem's sync id.
pub const SYNC_ID_PROPERTY: &str = "TandemSyncId";
/// Most ids per GetItem / DeleteItem request.
pub const BATCH_SIZE: usize = 50;
/// Most items per CreateItem request (an initial upload sends ~0.01 requests per item).
pub const CREATE_BATCH_SIZE: usize = 100;
/// Default cap on concurrent requests per service account (Exchange's `EWSMaxConcurrency`).
pub const DEFAULT_ACCOUNT_CONCURRENCY: usize = 27;
/// Default cap on concurrent requests per mailbox.
pub const DEFAULT_MAILBOX_CONCURRENCY: usize = 4;
/// The Exchange schema version every request asks for.
pub const REQUEST_SERVER_VERSION: &str = "Exchange2013_SP1";

/// Where and as whom to reach EWS.
#[derive(Clone)]
pub struct EwsConfig {
    /// `https://host/EWS/Exchange.asmx`.
    pub endpoint: String,
    /// The service account (needs the ApplicationImpersonation role on-premises); for NTLM
    /// and Negotiate `DOMAIN\user` or `user@domain`.
    pub user: String,
    pub password: String,
    /// How to sign in (`[exchange] auth`).
    pub auth: EwsAuth,
    /// Extra trusted CAs and proxy (`[exchange] ca_file`, `proxy`).
    pub transport: crate::transport::Transport,
}

impl std::fmt::Debug for EwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EwsConfig")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("auth", &self.auth)
            .field("transport", &self.transport)
            .finish()
    }
}

/// What went wrong talking to Exchange, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EwsError {
    #[error(
        "the saved EWS sync state is no longer valid (ErrorInvalidSyncStateData); drop it and resynchronise the folder from the beginning"
    )]
    InvalidSyncState,
    #[error(
        "Exchange rejected the service account's credentials (HTTP 401); check the EWS user and password in the configuration"
    )]
    Unauthorized,
    /// The server does not offer the configured sign-in scheme.
    #[error(
        "Exchange does not offer {configured} sign-in (it offers {}); {}",
        offered.join(", "),
        scheme_hint(offered)
    )]
    SignInScheme { configured: EwsAuth, offered: Vec<String> },
    /// The NTLM or Negotiate handshake broke down, or no OAuth token could be had.
    #[error(
        "the {scheme} sign-in to Exchange failed: {reason}; check [exchange] auth and what it needs \
         (user as DOMAIN\\user for ntlm and negotiate, [exchange.oauth] for oauth)"
    )]
    SignIn { scheme: EwsAuth, reason: String },
    #[error(
        "Exchange is busy (ErrorServerBusy) and still was after retrying; wait {back_off:?} before trying again"
    )]
    ServerBusy { back_off: Duration },
    #[error(
        "Exchange is unavailable (HTTP {status}) and still was after retrying; try again later"
    )]
    Unavailable { status: u16 },
    #[error("Exchange answered {code}: {message}")]
    Response { code: String, message: String },
    #[error("could not reach Exchange: {0}; check the EWS endpoint URL and the network")]
    Transport(String),
    /// The server's certificate was not accepted: no request was sent, and retrying cannot
    /// help until the server or `[exchange] ca_file` changes.
    #[error("could not reach Exchange: {0}")]
    Tls(crate::transport::TlsError),
    #[error("Exchange sent a reply Tandem cannot read: {0}")]
    BadReply(String),
    #[error(
        "field '{0}' has no EWS element in this folder; use EWS element names (e.g. GivenName, EmailAddress1, BusinessCity) in the mapping"
    )]
    UnknownField(String),
    #[error("field '{field}' cannot be sent to Exchange: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("invalid EWS request: {0}")]
    InvalidArgument(String),
}

impl EwsError {
    /// Whether the failure may pass on its own (connection lost, 503, throttled), so the
    /// request may have been carried out or may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EwsError::Transport(_) | EwsError::Unavailable { .. } | EwsError::ServerBusy { .. }
        )
    }

    /// Whether retrying cannot help until an administrator acts: the service account's
    /// credentials or rights, or a mailbox that does not exist.
    pub fn is_permanent(&self) -> bool {
        match self {
            EwsError::Unauthorized | EwsError::SignInScheme { .. } | EwsError::SignIn { .. } => true,
            EwsError::Response { code, .. } => matches!(
                code.as_str(),
                "ErrorNonExistentMailbox"
                    | "ErrorImpersonateUserDenied"
                    | "ErrorAccessDenied"
                    | "ErrorInvalidExchangeImpersonationHeaderData"
            ),
            _ => false,
        }
    }

    /// Whether Exchange refused this one item (a value or property it does not take), not
    /// the request as a whole: the record is set aside, the run goes on. The codes are
    /// `ResponseCodeType` values of `messages.xsd` that name an item's content.
    pub fn is_record_refusal(&self) -> bool {
        const ITEM_REFUSALS: &[&str] = &[
            "ErrorInvalidPropertySet",
            "ErrorInvalidValueForProperty",
            "ErrorPropertyValidationFailure",
            "ErrorValueOutOfRange",
            "ErrorInvalidRecipients",
            "ErrorItemSave",
            "ErrorObjectTypeChanged",
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "ErrorCalendarDurationIsTooLong",
            "ErrorCalendarInvalidRecurrence",
            "ErrorCalendarInvalidAttributeValue",
        ];
        match self {
            EwsError::UnknownField(_) | EwsError::InvalidValue { .. } => true,
            EwsError::Response { code, .. } => ITEM_REFUSALS.contains(&code.as_str()),
            _ => false,
        }
    }

    /// The EWS response code, for errors Exchange reported.
    pub fn code(&self) -> Option<&str> {
        match self {
            EwsError::Response { code, .. } => Some(code),
            EwsError::InvalidSyncState => Some("ErrorInvalidSyncStateData"),
            EwsError::ServerBusy { .. } => Some("ErrorServerBusy"),
            _ => None,
        }
    }
}

/// What to set when the server offers other schemes than the configured one.
fn scheme_hint(offered: &[String]) -> String {
    let has = |name: &str| offered.iter().any(|scheme| scheme.eq_ignore_ascii_case(name));
    let choice = if has("NTLM") {
        "ntlm"
    } else if has("Negotiate") {
        "negotiate"
    } else if has("Basic") {
        "basic"
    } else if has("Bearer") {
        return "set [exchange] auth = \"oauth\" with [exchange.oauth] (token_url, client_id, client secret of an app with EWS access)".into();
    } else {
        return "Tandem signs in with basic, ntlm, negotiate or oauth; ask the Exchange administrator to allow one on the EWS virtual directory".into();
    };
    let user = if choice == "basic" { "" } else { " (with user = 'DOMAIN\\user')" };
    format!("set [exchange] auth = \"{choice}\"{user}")
}

/// A request that got no usable answer, as the connector reports it.
pub(crate) fn http_error(error: http::HttpError) -> EwsError {
    match error {
        http::HttpError::Tls(tls) => EwsError::Tls(tls),
        http::HttpError::Transport(reason) => EwsError::Transport(reason),
        http::HttpError::Unauthorized { .. } => EwsError::Unauthorized,
        http::HttpError::SchemeNotOffered { configured, offered } => EwsError::SignInScheme { configured, offered },
        http::HttpError::SignIn { scheme, reason } => EwsError::SignIn { scheme, reason },
        // A token endpoint out of reach is retried as a transport failure; a refusal is a
        // sign-in failure that names the setting to fix.
        http::HttpError::Token { reason, transient: true } => EwsError::Transport(reason),
        http::HttpError::Token { reason, transient: false } => EwsError::SignIn { scheme: EwsAuth::OAuth, reason },
    }
}

/// The EWS item kind a folder holds.
fn item_kind(folder: Folder) -> ItemKind {
    match folder {
        Folder::Contacts => ItemKind::Contact,
        Folder::Calendar => ItemKind::CalendarItem,
        Folder::Tasks => ItemKind::Task,
    }
}

/// The `DistinguishedFolderId` of a folder (`contacts`, `calendar`, `tasks`).
pub fn distinguished_id(folder: Folder) -> &'static str {
    item_kind(folder).folder_id()
}

impl crate::exchange::CreateOnceBackend for EwsClient {
    type Error = EwsError;

    fn create_attempts(&self) -> u32 {
        self.retry.attempts
    }

    fn may_have_created(error: &EwsError) -> bool {
        error.is_transient()
    }

    async fn create_batch(&self, mailbox: &str, folder: Folder, items: &[(Fields, String)]) -> Result<Vec<ItemId>, EwsError> {
        self.create_items(mailbox, folder, items).await
    }

    async fn items_by_sync_id(
        &self,
        mailbox: &str,
        folder: Folder,
    ) -> Result<std::collections::HashMap<String, Vec<ItemId>>, EwsError> {
        self.sync_ids_in_folder(mailbox, folder).await
    }
}

/// How hard to retry transient failures.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    max_back_off: Duration,
}

/// Longest a request may take, answer included (GetStreamingEvents excepted).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An EWS client for one service account; cheap to clone.
#[derive(Clone)]
pub struct EwsClient {
    /// The connections, shared by clones; GetStreamingEvents opens its own.
    http: Arc<http::Connections>,
    config: Arc<EwsConfig>,
    retry: RetryPolicy,
    find_page_size: usize,
    watch_connection: Duration,
    limits: Arc<Limits>,
    /// Requests sent, by operation, for `GET /metrics`.
    requests: Arc<crate::telemetry::RemoteRequests>,
}

/// Concurrency caps shared by clones of one client.
#[derive(Debug)]
struct Limits {
    account: tokio::sync::Semaphore,
    per_mailbox: usize,
    mailboxes: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Limits {
    fn new(account: usize, per_mailbox: usize) -> Self {
        Self {
            account: tokio::sync::Semaphore::new(account.max(1)),
            per_mailbox: per_mailbox.max(1),
            mailboxes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn mailbox(&self, mailbox: &str) -> Arc<tokio::sync::Semaphore> {
        let mut map = self
            .mailboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(mailbox.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_mailbox)))
            .clone()
    }
}

impl std::fmt::Debug for EwsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EwsClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The parsed `m:{Operation}Response` element of a reply.
type OpResponse = Element;

impl EwsClient {
    pub fn new(config: EwsConfig) -> Result<Self, EwsError> {
        let url = reqwest::Url::parse(&config.endpoint).map_err(|e| {
            EwsError::InvalidArgument(format!("endpoint '{}' is not a URL: {e}", config.endpoint))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EwsError::InvalidArgument(format!(
                "endpoint '{}' must be http or https",
                config.endpoint
            )));
        }
        if config.user.is_empty() {
            return Err(EwsError::InvalidArgument("the EWS user is empty".into()));
        }
        let route = crate::transport::Route::new(&config.transport, &config.endpoint)
            .map_err(|e| EwsError::InvalidArgument(format!("[exchange] {e}; {}", e.hint())))?;
        let http = http::Connections::new(route, &config.endpoint, config.auth, &config.user, &config.password)
            .map_err(|e| EwsError::InvalidArgument(format!("[exchange] {e}")))?;
        Ok(Self {
            http: Arc::new(http),
            config: Arc::new(config),
            retry: RetryPolicy {
                attempts: 4,
                max_back_off: Duration::from_secs(2),
            },
            find_page_size: 500,
            watch_connection: DEFAULT_WATCH_CONNECTION,
            limits: Arc::new(Limits::new(
                DEFAULT_ACCOUNT_CONCURRENCY,
                DEFAULT_MAILBOX_CONCURRENCY,
            )),
            requests: crate::telemetry::RemoteRequests::ews(),
        })
    }

    /// What this client's connections did so far (opened, signed in, reused).
    pub fn connection_stats(&self) -> http::ConnectionStats {
        self.http.stats()
    }

    /// Requests this client and its clones sent through [`call`](Self::call), by EWS
    /// operation (GetStreamingEvents connections are not counted here).
    pub fn remote_requests(&self) -> Arc<crate::telemetry::RemoteRequests> {
        self.requests.clone()
    }

    /// Signs in with OAuth 2.0 client-credentials tokens from `endpoint` (`auth = "oauth"`):
    /// a bearer token on every request, fetched before it is needed and once more after a
    /// 401. Token requests go through `[exchange]`'s trust and proxy settings and count as
    /// `token` requests.
    pub fn with_oauth2(self, endpoint: crate::oauth::TokenEndpoint) -> Result<Self, EwsError> {
        let http = crate::transport::client_builder(&self.config.transport)
            .map_err(|error| EwsError::InvalidArgument(format!("[exchange] {error}")))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| EwsError::InvalidArgument(format!("[exchange.oauth] the HTTP client could not be built: {error}")))?;
        let tokens = crate::oauth::TokenSource::new(endpoint, http, self.requests.clone())
            .map_err(|error| EwsError::InvalidArgument(error.to_string()))?;
        self.http.use_tokens(Arc::new(tokens));
        Ok(self)
    }

    /// Caps concurrent requests of this service account (default
    /// [`DEFAULT_ACCOUNT_CONCURRENCY`]) and per mailbox (default
    /// [`DEFAULT_MAILBOX_CONCURRENCY`]). Streaming connections are not counted.
    pub fn with_concurrency(mut self, per_account: usize, per_mailbox: usize) -> Self {
        self.limits = Arc::new(Limits::new(per_account, per_mailbox));
        self
    }

    /// Changes how often transient failures (ErrorServerBusy, 503, connection errors) are
    /// tried in all, and the longest wait between tries (server hints are capped to it).
    pub fn with_retry(mut self, attempts: u32, max_back_off: Duration) -> Self {
        self.retry = RetryPolicy {
            attempts: attempts.max(1),
            max_back_off,
        };
        self
    }

    /// Changes the FindItem page size (1–1000; Exchange caps pages at 1000).
    pub fn with_find_page_size(mut self, size: usize) -> Self {
        self.find_page_size = size.clamp(1, 1000);
        self
    }

    /// One SyncFolderItems call (IdOnly). `sync_state` is `None` on the first sync.
    pub async fn sync_folder_items(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_state: Option<&str>,
        max_changes: u16,
    ) -> Result<SyncBatch, EwsError> {
        if !(1..=512).contains(&max_changes) {
            return Err(EwsError::InvalidArgument(format!(
                "max_changes must be 1 to 512, not {max_changes}"
            )));
        }
        let body = envelope(mailbox, |out| {
            out.open("m:SyncFolderItems", &[]);
            out.open("m:ItemShape", &[]);
            out.text_element("t:BaseShape", &[], "IdOnly");
            out.close("m:ItemShape");
            out.open("m:SyncFolderId", &[]);
            out.empty(
                "t:DistinguishedFolderId",
                &[("Id", distinguished_id(folder))],
            );
            out.close("m:SyncFolderId");
            if let Some(state) = sync_state.filter(|s| !s.is_empty()) {
                out.text_element("m:SyncState", &[], state);
            }
            out.text_element("m:MaxChangesReturned", &[], &max_changes.to_string());
            out.text_element("m:SyncScope", &[], "NormalItems");
            out.close("m:SyncFolderItems");
        });
        let response = self.call(mailbox, "SyncFolderItems", body, true).await?;
        let message = single_message(&response)?;
        if let Some((code, text)) = message_error(message) {
            return Err(message_failure(message, code, text));
        }
        let sync_state = message
            .child_text("SyncState")
            .ok_or_else(|| EwsError::BadReply("SyncFolderItems reply has no SyncState".into()))?
            .to_owned();
        let includes_last_item = parse_bool(
            message
                .child_text("IncludesLastItemInRange")
                .unwrap_or("true"),
        );
        let mut changes = Vec::new();
        for change in message
            .child("Changes")
            .map(|c| c.children.as_slice())
            .unwrap_or_default()
        {
            match change.name.as_str() {
                "Create" => changes.push(SyncChange::Created(change_item_id(change)?)),
                "Update" => changes.push(SyncChange::Updated(change_item_id(change)?)),
                "Delete" => {
                    let id = change
                        .child("ItemId")
                        .and_then(|id| id.attr("Id"))
                        .ok_or_else(|| {
                            EwsError::BadReply("a Delete change has no ItemId".into())
                        })?;
                    changes.push(SyncChange::Deleted(id.to_owned()));
                }
                _ => {}
            }
        }
        Ok(SyncBatch {
            sync_state,
            includes_last_item,
            changes,
        })
    }

    /// Reads items with all their properties and the sync id; ids that no longer exist are
    /// left out. Sends at most [`BATCH_SIZE`] ids per request.
    pub async fn get_items(
        &self,
        mailbox: &str,
        folder: Folder,
        ids: &[String],
    ) -> Result<Vec<ExchangeItem>, EwsError> {
        let mut items = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_SIZE) {
            let body = envelope(mailbox, |out| {
                out.open("m:GetItem", &[]);
                out.open("m:ItemShape", &[]);
                out.text_element("t:BaseShape", &[], "AllProperties");
                out.text_element("t:BodyType", &[], "Text");
                out.open("t:AdditionalProperties", &[]);
                ExtendedKey::public_string(SYNC_ID_PROPERTY).write(out);
                out.close("t:AdditionalProperties");
                out.close("m:ItemShape");
                out.open("m:ItemIds", &[]);
                for id in chunk {
                    out.empty("t:ItemId", &[("Id", id)]);
                }
                out.close("m:ItemIds");
                out.close("m:GetItem");
            });
            let response = self.call(mailbox, "GetItem", body, true).await?;
            for message in messages(&response) {
                if let Some((code, text)) = message_error(message) {
                    if code == "ErrorItemNotFound" {
                        continue;
                    }
                    return Err(message_failure(message, code, text));
                }
                for element in message
                    .child("Items")
                    .map(|i| i.children.as_slice())
                    .unwrap_or_default()
                {
                    if ItemKind::from_element(&element.name).is_none() {
                        // e.g. a t:DistributionList in the contacts folder: not synced.
                        tracing::debug!(mailbox, element = %element.name, "GetItem returned an item type Tandem does not sync; skipped");
                        continue;
                    }
                    let item = wire::parse_item(element, false).map_err(EwsError::BadReply)?;
                    if item.kind != item_kind(folder) {
                        tracing::warn!(
                            mailbox,
                            kind = item.kind.element(),
                            "GetItem returned an item of another folder; skipped"
                        );
                        continue;
                    }
                    items.push(exchange_item(item)?);
                }
            }
        }
        Ok(items)
    }

    /// Creates items, each with its Tandem sync id, and returns their ids in the same order.
    /// Field names are checked before anything is sent. On an error part of a batch may have
    /// been created; find those by sync id.
    pub async fn create_items(
        &self,
        mailbox: &str,
        folder: Folder,
        items: &[(Fields, String)],
    ) -> Result<Vec<ItemId>, EwsError> {
        let kind = item_kind(folder);
        let wire_items: Vec<WireItem> = items
            .iter()
            .map(|(fields, sync_id)| {
                let mut item = to_wire(kind, fields)?;
                item.extended.push((
                    ExtendedKey::public_string(SYNC_ID_PROPERTY),
                    sync_id.clone(),
                ));
                Ok(item)
            })
            .collect::<Result<_, EwsError>>()?;
        let mut ids = Vec::with_capacity(items.len());
        for chunk in wire_items.chunks(CREATE_BATCH_SIZE) {
            let mut attrs: Vec<(&str, &str)> = Vec::new();
            if folder == Folder::Calendar {
                attrs.push(("SendMeetingInvitations", "SendToNone"));
            }
            let body = envelope(mailbox, |out| {
                out.open("m:CreateItem", &attrs);
                out.open("m:SavedItemFolderId", &[]);
                out.empty(
                    "t:DistinguishedFolderId",
                    &[("Id", distinguished_id(folder))],
                );
                out.close("m:SavedItemFolderId");
                out.open("m:Items", &[]);
                for item in chunk {
                    wire::write_item(out, item);
                }
                out.close("m:Items");
                out.close("m:CreateItem");
            });
            let response = self.call(mailbox, "CreateItem", body, false).await?;
            let replies = messages(&response);
            if replies.len() != chunk.len() {
                return Err(EwsError::BadReply(format!(
                    "CreateItem sent {} items but got {} answers",
                    chunk.len(),
                    replies.len()
                )));
            }
            for message in replies {
                if let Some((code, text)) = message_error(message) {
                    return Err(message_failure(message, code, text));
                }
                ids.push(first_item_id(message)?);
            }
        }
        Ok(ids)
    }

    /// Creates items that do not exist yet, each identified by its sync id, and returns their
    /// ids in the same order. When a CreateItem fails in a way that may have created part of
    /// its batch anyway (connection dropped or reply lost, HTTP 503, still ErrorServerBusy
    /// after the retries), the folder is searched for the batch's sync ids and only the items
    /// not found are sent again, so a retried create never makes a duplicate. Other errors are
    /// returned at once; after as many failed rounds per batch as the retry policy's attempts,
    /// the last error is returned (what was created is found by sync id next time).
    pub async fn create_items_once(
        &self,
        mailbox: &str,
        folder: Folder,
        items: &[(Fields, String)],
    ) -> Result<Vec<ItemId>, EwsError> {
        // Check every item before sending anything.
        for (fields, _) in items {
            to_wire(item_kind(folder), fields)?;
        }
        crate::exchange::create_items_once(self, mailbox, folder, items, CREATE_BATCH_SIZE).await
    }

    /// Every item of the folder that carries a Tandem sync id, by sync id (paged FindItem).
    pub async fn sync_ids_in_folder(
        &self,
        mailbox: &str,
        folder: Folder,
    ) -> Result<std::collections::HashMap<String, Vec<ItemId>>, EwsError> {
        Ok(crate::exchange::group_by_sync_id(self.find_ids(mailbox, folder, None, true).await?))
    }

    /// Writes `fields` to an item, only if it is still at `id.change_key` (NeverOverwrite).
    /// Non-blank values are set, blank text and `Null` delete the property.
    pub async fn update_item(
        &self,
        mailbox: &str,
        folder: Folder,
        id: &ItemId,
        fields: &Fields,
    ) -> Result<UpdateOutcome, EwsError> {
        let mut outcomes = self.update_items(mailbox, folder, &[(id.clone(), fields.clone())]).await?;
        outcomes.pop().ok_or_else(|| EwsError::BadReply("UpdateItem: no outcome".into()))
    }

    /// Writes several items, [`BATCH_SIZE`] `ItemChange`s per UpdateItem request, each only
    /// if it is still at its ChangeKey (NeverOverwrite). One outcome per change, in order: a
    /// conflict or a vanished item is that item's outcome, not an error of the batch.
    pub async fn update_items(
        &self,
        mailbox: &str,
        folder: Folder,
        changes: &[(ItemId, Fields)],
    ) -> Result<Vec<UpdateOutcome>, EwsError> {
        let kind = item_kind(folder);
        let mut outcomes: Vec<Option<UpdateOutcome>> = vec![None; changes.len()];
        let mut pending = Vec::new();
        for (index, (id, fields)) in changes.iter().enumerate() {
            let updates = updates_for(kind, fields)?;
            if updates.is_empty() {
                outcomes[index] = Some(UpdateOutcome::Updated(id.clone()));
            } else {
                pending.push((index, id, updates));
            }
        }
        let mut attrs: Vec<(&str, &str)> = vec![("ConflictResolution", "NeverOverwrite")];
        if folder == Folder::Calendar {
            attrs.push(("SendMeetingInvitationsOrCancellations", "SendToNone"));
        }
        for chunk in pending.chunks(BATCH_SIZE) {
            let body = envelope(mailbox, |out| {
                out.open("m:UpdateItem", &attrs);
                out.open("m:ItemChanges", &[]);
                for (_, id, updates) in chunk {
                    out.open("t:ItemChange", &[]);
                    out.empty("t:ItemId", &[("Id", &id.id), ("ChangeKey", &id.change_key)]);
                    out.open("t:Updates", &[]);
                    for update in updates {
                        update.write(out);
                    }
                    out.close("t:Updates");
                    out.close("t:ItemChange");
                }
                out.close("m:ItemChanges");
                out.close("m:UpdateItem");
            });
            let response = self.call(mailbox, "UpdateItem", body, true).await?;
            let replies = messages(&response);
            if replies.len() != chunk.len() {
                return Err(EwsError::BadReply(format!(
                    "UpdateItem answered {} messages for {} changes",
                    replies.len(),
                    chunk.len()
                )));
            }
            for ((index, _, _), message) in chunk.iter().zip(replies) {
                outcomes[*index] = Some(match message_error(message) {
                    None => UpdateOutcome::Updated(first_item_id(message)?),
                    Some((code, _)) if code == "ErrorIrresolvableConflict" || code == "ErrorStaleObject" => {
                        UpdateOutcome::Conflict
                    }
                    Some((code, _)) if code == "ErrorItemNotFound" => UpdateOutcome::NotFound,
                    Some((code, text)) => return Err(message_failure(message, code, text)),
                });
            }
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Moves items to Deleted Items (they show as deletes in SyncFolderItems). Ids that no
    /// longer exist count as deleted.
    pub async fn delete_items(
        &self,
        mailbox: &str,
        folder: Folder,
        ids: &[String],
    ) -> Result<(), EwsError> {
        let mut attrs: Vec<(&str, &str)> = vec![("DeleteType", "MoveToDeletedItems")];
        match folder {
            Folder::Calendar => attrs.push(("SendMeetingCancellations", "SendToNone")),
            Folder::Tasks => attrs.push(("AffectedTaskOccurrences", "AllOccurrences")),
            Folder::Contacts => {}
        }
        for chunk in ids.chunks(BATCH_SIZE) {
            let body = envelope(mailbox, |out| {
                out.open("m:DeleteItem", &attrs);
                out.open("m:ItemIds", &[]);
                for id in chunk {
                    out.empty("t:ItemId", &[("Id", id)]);
                }
                out.close("m:ItemIds");
                out.close("m:DeleteItem");
            });
            let response = self.call(mailbox, "DeleteItem", body, true).await?;
            for message in messages(&response) {
                match message_error(message) {
                    None => {}
                    Some((code, _)) if code == "ErrorItemNotFound" => {}
                    Some((code, text)) => return Err(message_failure(message, code, text)),
                }
            }
        }
        Ok(())
    }

    /// GetFolder of the Contacts, Calendar and Tasks folders of `mailbox` as its
    /// impersonated user: sign-in and the impersonation right, without writing anything. For
    /// `tandem doctor`.
    pub async fn probe(&self, mailbox: &str) -> Result<(), EwsError> {
        let body = envelope(mailbox, |out| {
            out.open("m:GetFolder", &[]);
            out.open("m:FolderShape", &[]);
            out.text_element("t:BaseShape", &[], "IdOnly");
            out.close("m:FolderShape");
            out.open("m:FolderIds", &[]);
            for folder in [Folder::Contacts, Folder::Calendar, Folder::Tasks] {
                out.empty("t:DistinguishedFolderId", &[("Id", distinguished_id(folder))]);
            }
            out.close("m:FolderIds");
            out.close("m:GetFolder");
        });
        let response = self.call(mailbox, "GetFolder", body, true).await?;
        for message in messages(&response) {
            if let Some((code, text)) = message_error(message) {
                return Err(message_failure(message, code, text));
            }
        }
        Ok(())
    }

    /// Every item id in the folder, paging with IndexedPageItemView to the end.
    pub async fn find_item_ids(
        &self,
        mailbox: &str,
        folder: Folder,
    ) -> Result<Vec<ItemId>, EwsError> {
        let found = self.find_ids(mailbox, folder, None, false).await?;
        Ok(found.into_iter().map(|(id, _)| id).collect())
    }

    /// The items whose `TandemSyncId` equals `sync_id` (normally zero or one; more means
    /// duplicates, e.g. after a CreateItem whose reply was lost).
    pub async fn find_items_by_sync_id(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_id: &str,
    ) -> Result<Vec<ItemId>, EwsError> {
        let found = self.find_ids(mailbox, folder, Some(sync_id), false).await?;
        Ok(found.into_iter().map(|(id, _)| id).collect())
    }

    /// FindItem paging to the end, optionally restricted to one sync id, optionally reading
    /// each item's sync id.
    async fn find_ids(
        &self,
        mailbox: &str,
        folder: Folder,
        sync_id: Option<&str>,
        with_sync_id: bool,
    ) -> Result<Vec<(ItemId, Option<String>)>, EwsError> {
        let mut ids = Vec::new();
        let mut offset: usize = 0;
        loop {
            let body = envelope(mailbox, |out| {
                out.open("m:FindItem", &[("Traversal", "Shallow")]);
                out.open("m:ItemShape", &[]);
                out.text_element("t:BaseShape", &[], "IdOnly");
                if with_sync_id {
                    out.open("t:AdditionalProperties", &[]);
                    ExtendedKey::public_string(SYNC_ID_PROPERTY).write(out);
                    out.close("t:AdditionalProperties");
                }
                out.close("m:ItemShape");
                out.empty(
                    "m:IndexedPageItemView",
                    &[
                        ("MaxEntriesReturned", &self.find_page_size.to_string()),
                        ("Offset", &offset.to_string()),
                        ("BasePoint", "Beginning"),
                    ],
                );
                if let Some(sync_id) = sync_id {
                    out.open("m:Restriction", &[]);
                    out.open("t:IsEqualTo", &[]);
                    ExtendedKey::public_string(SYNC_ID_PROPERTY).write(out);
                    out.open("t:FieldURIOrConstant", &[]);
                    out.empty("t:Constant", &[("Value", sync_id)]);
                    out.close("t:FieldURIOrConstant");
                    out.close("t:IsEqualTo");
                    out.close("m:Restriction");
                }
                out.open("m:ParentFolderIds", &[]);
                out.empty(
                    "t:DistinguishedFolderId",
                    &[("Id", distinguished_id(folder))],
                );
                out.close("m:ParentFolderIds");
                out.close("m:FindItem");
            });
            let response = self.call(mailbox, "FindItem", body, true).await?;
            let message = single_message(&response)?;
            if let Some((code, text)) = message_error(message) {
                return Err(message_failure(message, code, text));
            }
            let root = message
                .child("RootFolder")
                .ok_or_else(|| EwsError::BadReply("FindItem reply has no RootFolder".into()))?;
            let page: Vec<(ItemId, Option<String>)> = root
                .child("Items")
                .map(|items| {
                    items
                        .children
                        .iter()
                        .filter_map(|item| item.child("ItemId").map(|id| (item, id)))
                        .map(|(item, id)| Ok((item_id_of(id)?, sync_id_of(item))))
                        .collect::<Result<Vec<_>, EwsError>>()
                })
                .transpose()?
                .unwrap_or_default();
            let includes_last = root.attr("IncludesLastItemInRange").is_none_or(parse_bool);
            let next = root
                .attr("IndexedPagingOffset")
                .and_then(|o| o.parse::<usize>().ok())
                .unwrap_or(offset + page.len());
            let got = page.len();
            ids.extend(page);
            if includes_last || got == 0 || next <= offset {
                break;
            }
            offset = next;
        }
        Ok(ids)
    }

    /// Sends one request, retrying transient failures; returns `m:{operation}Response`.
    async fn call(
        &self,
        mailbox: &str,
        operation: &'static str,
        body: String,
        idempotent: bool,
    ) -> Result<OpResponse, EwsError> {
        let mailbox_slots = self.limits.mailbox(mailbox);
        let _mailbox_slot = mailbox_slots
            .acquire()
            .await
            .map_err(|_| EwsError::Transport("the client is shutting down".into()))?;
        let _account_slot = self
            .limits
            .account
            .acquire()
            .await
            .map_err(|_| EwsError::Transport("the client is shutting down".into()))?;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            let back_off = self
                .retry
                .max_back_off
                .min(Duration::from_millis(100 * 2u64.pow(attempt.min(10))));
            tracing::debug!(operation, mailbox, attempt, "EWS request");
            self.requests.count(operation);
            let headers = request_headers(mailbox, false);
            let sent = match tokio::time::timeout(REQUEST_TIMEOUT, self.http.post(&headers, body.clone().into())).await {
                Ok(sent) => sent.map_err(http_error),
                Err(_) => Err(EwsError::Transport(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))),
            };
            let reply = match sent {
                Ok(reply) => reply,
                Err(error) if error.is_permanent() || matches!(error, EwsError::Tls(_)) => return Err(error),
                Err(error) if idempotent && !last => {
                    tracing::warn!(operation, mailbox, %error, "EWS request failed; retrying");
                    tokio::time::sleep(back_off).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let status = reply.status;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                if idempotent && !last {
                    tracing::warn!(operation, mailbox, "EWS answered 503; retrying");
                    tokio::time::sleep(back_off).await;
                    continue;
                }
                return Err(EwsError::Unavailable {
                    status: status.as_u16(),
                });
            }
            let text = String::from_utf8_lossy(&reply.body);
            match read_reply(operation, status.as_u16(), &text) {
                Err(EwsError::ServerBusy { back_off: hint }) => {
                    let wait = hint.min(self.retry.max_back_off);
                    // A throttled request was not processed, so even CreateItem may be resent.
                    if !last {
                        tracing::warn!(
                            operation,
                            mailbox,
                            wait_ms = wait.as_millis() as u64,
                            "EWS ErrorServerBusy; backing off"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(EwsError::ServerBusy { back_off: hint });
                }
                other => return other,
            }
        }
    }
}

/// The headers of an EWS request for `mailbox` (streaming ones ask for server affinity).
fn request_headers(mailbox: &str, streaming: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"))];
    if let Ok(anchor) = HeaderValue::from_str(mailbox) {
        headers.push((HeaderName::from_static("x-anchormailbox"), anchor));
    }
    if streaming {
        headers.push((HeaderName::from_static("x-preferserveraffinity"), HeaderValue::from_static("true")));
    }
    headers
}

/// Reads the reply to `operation` (HTTP status and body) and returns its
/// `m:{operation}Response` element. SOAP faults become errors; `ErrorServerBusy` carries the
/// server's `BackOffMilliseconds` (or 1 s when it sent none). Never panics, whatever the input.
pub fn read_reply(operation: &str, http_status: u16, body: &str) -> Result<Element, EwsError> {
    let envelope = wire::parse_document(body)
        .map_err(|e| EwsError::BadReply(format!("{operation} (HTTP {http_status}): {e}")))?;
    let first = envelope
        .child("Body")
        .and_then(|b| b.children.first())
        .ok_or_else(|| {
            EwsError::BadReply(format!("{operation} (HTTP {http_status}): no SOAP Body"))
        })?;
    if first.name == "Fault" {
        let (code, message, hint) = read_fault(first);
        if code == "ErrorServerBusy" {
            return Err(EwsError::ServerBusy {
                back_off: hint.unwrap_or(Duration::from_secs(1)),
            });
        }
        return Err(EwsError::Response { code, message });
    }
    if !(200..300).contains(&http_status) {
        return Err(EwsError::BadReply(format!(
            "{operation}: HTTP {http_status} without a SOAP fault"
        )));
    }
    let expected = format!("{operation}Response");
    if first.name != expected {
        return Err(EwsError::BadReply(format!(
            "expected {expected}, got {}",
            first.name
        )));
    }
    Ok(first.clone())
}

/// Feeds arbitrary bytes to every reply reader of the connector, discarding the results:
/// the fuzz target (`fuzz/fuzz_targets/ews_reply.rs`) and the randomized no-panic test call
/// it. It must never panic.
pub fn parse_any_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The operation name only labels errors: one read covers every reply reader.
    if let Ok(response) = read_reply("any operation", 200, &text) {
        for message in messages(&response) {
            let _ = message_error(message);
            let _ = first_item_id(message);
            let _ = message.child_text("SyncState");
            for item in message
                .child("Items")
                .map(|i| i.children.as_slice())
                .unwrap_or_default()
            {
                if let Ok(item) = wire::parse_item(item, false) {
                    let _ = exchange_item(item);
                }
            }
            for change in message
                .child("Changes")
                .map(|c| c.children.as_slice())
                .unwrap_or_default()
            {
                let _ = change_item_id(change);
            }
        }
    }
    let _ = read_stream_chunk(&text);
}

// ----- request building -----

/// A SOAP request envelope with the version and impersonation headers.
fn envelope(mailbox: &str, body: impl FnOnce(&mut XmlOut)) -> String {
    let mut out = XmlOut::new();
    out.open(
        "soap:Envelope",
        &[
            ("xmlns:soap", wire::NS_SOAP),
            ("xmlns:m", wire::NS_MESSAGES),
            ("xmlns:t", wire::NS_TYPES),
        ],
    );
    out.open("soap:Header", &[]);
    out.empty(
        "t:RequestServerVersion",
        &[("Version", REQUEST_SERVER_VERSION)],
    );
    out.open("t:ExchangeImpersonation", &[]);
    out.open("t:ConnectingSID", &[]);
    out.text_element("t:PrimarySmtpAddress", &[], mailbox);
    out.close("t:ConnectingSID");
    out.close("t:ExchangeImpersonation");
    out.close("soap:Header");
    out.open("soap:Body", &[]);
    body(&mut out);
    out.close("soap:Body");
    out.close("soap:Envelope");
    out.finish()
}

/// One `t:SetItemField` or `t:DeleteItemField`.
enum Update {
    Set { path: FieldPath, item: WireItem },
    Delete(FieldPath),
}

impl Update {
    fn write(&self, out: &mut XmlOut) {
        match self {
            Update::Set { path, item } => {
                out.open("t:SetItemField", &[]);
                path.write(out);
                wire::write_item(out, item);
                out.close("t:SetItemField");
            }
            Update::Delete(path) => {
                out.open("t:DeleteItemField", &[]);
                path.write(out);
                out.close("t:DeleteItemField");
            }
        }
    }
}

fn updates_for(kind: ItemKind, fields: &Fields) -> Result<Vec<Update>, EwsError> {
    let mut updates = Vec::with_capacity(fields.len());
    for (element, markup) in structured_elements(kind, fields)? {
        let path = field_slot(kind, element)
            .ok_or_else(|| EwsError::UnknownField(element.to_owned()))?
            .path();
        match markup {
            None => updates.push(Update::Delete(path)),
            Some(markup) => {
                let mut item = WireItem::new(kind);
                item.fields
                    .insert(element.to_owned(), WireValue::Text(markup));
                updates.push(Update::Set { path, item });
            }
        }
    }
    for (name, value) in fields {
        if kind == ItemKind::CalendarItem && calendar::is_structured(name) {
            continue;
        }
        let slot = field_slot(kind, name).ok_or_else(|| EwsError::UnknownField(name.to_owned()))?;
        match wire_value(slot.value_kind(), name, value)? {
            None => updates.push(Update::Delete(slot.path())),
            Some(wire_value) => {
                let mut item = WireItem::new(kind);
                item.fields.insert(name.to_owned(), wire_value);
                updates.push(Update::Set {
                    path: slot.path(),
                    item,
                });
            }
        }
    }
    Ok(updates)
}

/// The calendar item elements built from flat fields (see [`calendar`]); none for other kinds.
fn structured_elements(
    kind: ItemKind,
    fields: &Fields,
) -> Result<Vec<(&'static str, Option<String>)>, EwsError> {
    if kind == ItemKind::CalendarItem {
        calendar::structured_elements(fields)
    } else {
        Ok(Vec::new())
    }
}

/// Converts fields to a wire item, leaving blank values out; unknown names are errors.
fn to_wire(kind: ItemKind, fields: &Fields) -> Result<WireItem, EwsError> {
    let mut item = WireItem::new(kind);
    for (element, markup) in structured_elements(kind, fields)? {
        if let Some(markup) = markup {
            item.fields
                .insert(element.to_owned(), WireValue::Text(markup));
        }
    }
    for (name, value) in fields {
        if kind == ItemKind::CalendarItem && calendar::is_structured(name) {
            continue;
        }
        let slot = field_slot(kind, name).ok_or_else(|| EwsError::UnknownField(name.to_owned()))?;
        if let Some(wire_value) = wire_value(slot.value_kind(), name, value)? {
            item.fields.insert(name.to_owned(), wire_value);
        }
    }
    Ok(item)
}

/// One value as wire text; `None` for blank values (which mean "no value").
fn wire_value(kind: ValueKind, name: &str, value: &Value) -> Result<Option<WireValue>, EwsError> {
    let invalid = |reason: &str| EwsError::InvalidValue {
        field: name.to_owned(),
        reason: reason.to_owned(),
    };
    if kind == ValueKind::Raw {
        return Err(invalid(
            "this structured EWS element is not written from mapped fields; for calendar items use Organizer, RequiredAttendees, OptionalAttendees and the Recurrence.* fields",
        ));
    }
    if value.is_blank() {
        return Ok(None);
    }
    if let Value::List(items) = value {
        if kind != ValueKind::Strings {
            return Err(invalid("a list is only allowed for Categories"));
        }
        let texts: Vec<String> = items
            .iter()
            .filter(|v| !v.is_blank())
            .map(|v| scalar_text(v).ok_or_else(|| invalid("list entries must be plain values")))
            .collect::<Result<_, _>>()?;
        return Ok((!texts.is_empty()).then_some(WireValue::List(texts)));
    }
    let text = match (kind, value) {
        (ValueKind::DateTime, Value::Text(text)) => DateTime::parse_from_rfc3339(text.trim())
            .map(|dt| utc_text(dt.with_timezone(&Utc)))
            .map_err(|_| invalid("expected an RFC 3339 date-time"))?,
        (ValueKind::DateTime, Value::DateTime(_)) => {
            scalar_text(value).ok_or_else(|| invalid("bad date-time"))?
        }
        (ValueKind::DateTime, _) => return Err(invalid("expected a date-time")),
        (ValueKind::Boolean, Value::Boolean(_)) => {
            scalar_text(value).ok_or_else(|| invalid("bad boolean"))?
        }
        (ValueKind::Boolean, Value::Text(text)) if matches!(text.trim(), "true" | "false") => {
            text.trim().to_owned()
        }
        (ValueKind::Boolean, _) => return Err(invalid("expected true or false")),
        (ValueKind::Double | ValueKind::Integer, Value::Text(text))
            if text.trim().parse::<f64>().is_ok() =>
        {
            text.trim().to_owned()
        }
        (ValueKind::Double | ValueKind::Integer, Value::Integer(_) | Value::Number(_)) => {
            scalar_text(value).ok_or_else(|| invalid("bad number"))?
        }
        (ValueKind::Double | ValueKind::Integer, _) => return Err(invalid("expected a number")),
        (ValueKind::Strings, _) => return Ok(scalar_text(value).map(|t| WireValue::List(vec![t]))),
        _ => scalar_text(value).ok_or_else(|| invalid("expected a plain value"))?,
    };
    Ok(Some(WireValue::Text(text)))
}

fn utc_text(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::List(_) => None,
        Value::Text(text) => Some(text.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::DateTime(dt) => Some(utc_text(*dt)),
    }
}

// ----- reply reading -----

/// Converts a wire item read from a reply into an [`ExchangeItem`].
fn exchange_item(item: WireItem) -> Result<ExchangeItem, EwsError> {
    let (id, change_key) = item
        .id
        .clone()
        .ok_or_else(|| EwsError::BadReply("an item in the reply has no ItemId".into()))?;
    let sync_key = ExtendedKey::public_string(SYNC_ID_PROPERTY);
    let sync_id = item
        .extended
        .iter()
        .find(|(key, _)| *key == sync_key)
        .map(|(_, v)| v.clone());
    let mut fields = Fields::new();
    for (name, value) in item.fields {
        let kind = field_slot(item.kind, &name).map_or(ValueKind::Text, |slot| slot.value_kind());
        if kind == ValueKind::Raw {
            // Organizer, attendees and recurrence become flat fields; other structured
            // elements (time zones, task recurrence) are not mapped.
            if item.kind == ItemKind::CalendarItem
                && let WireValue::Text(markup) = &value
            {
                fields.extend(calendar::fields_from_markup(&name, markup));
            }
            continue;
        }
        fields.insert(name, field_value(kind, value));
    }
    Ok(ExchangeItem {
        id: ItemId { id, change_key },
        sync_id,
        fields,
    })
}

fn field_value(kind: ValueKind, value: WireValue) -> Value {
    let text = match value {
        WireValue::List(items) => return Value::List(items.into_iter().map(Value::Text).collect()),
        WireValue::Text(text) => text,
    };
    let trimmed = text.trim();
    match kind {
        ValueKind::Strings => Value::List(vec![Value::Text(text)]),
        ValueKind::DateTime => DateTime::parse_from_rfc3339(trimmed)
            .map(|dt| Value::DateTime(dt.with_timezone(&Utc)))
            .unwrap_or(Value::Text(text)),
        ValueKind::Boolean => match trimmed {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => Value::Text(text),
        },
        ValueKind::Integer => trimmed
            .parse()
            .map(Value::Integer)
            .unwrap_or(Value::Text(text)),
        ValueKind::Double => trimmed
            .parse()
            .map(Value::Number)
            .unwrap_or(Value::Text(text)),
        _ => Value::Text(text),
    }
}

fn messages(response: &Element) -> Vec<&Element> {
    response
        .child("ResponseMessages")
        .map(|m| m.children.iter().collect())
        .unwrap_or_default()
}

fn single_message(response: &Element) -> Result<&Element, EwsError> {
    messages(response)
        .into_iter()
        .next()
        .ok_or_else(|| EwsError::BadReply(format!("{} has no response message", response.name)))
}

/// `Some((ResponseCode, MessageText))` for an error response message.
fn message_error(message: &Element) -> Option<(String, String)> {
    if message.attr("ResponseClass") != Some("Error") {
        return None;
    }
    let code = message
        .child_text("ResponseCode")
        .unwrap_or("ErrorUnknown")
        .to_owned();
    let text = message
        .child_text("MessageText")
        .unwrap_or_default()
        .to_owned();
    Some((code, text))
}

/// The error for a failed response message; throttling and sync-state codes get their own
/// variants so callers can back off or resynchronise.
fn message_failure(message: &Element, code: String, text: String) -> EwsError {
    match code.as_str() {
        "ErrorInvalidSyncStateData" => EwsError::InvalidSyncState,
        "ErrorServerBusy" => EwsError::ServerBusy {
            back_off: back_off_hint(message.child("MessageXml")).unwrap_or_default(),
        },
        _ => EwsError::Response {
            code,
            message: text,
        },
    }
}

/// `BackOffMilliseconds` from a `MessageXml` element.
fn back_off_hint(message_xml: Option<&Element>) -> Option<Duration> {
    message_xml
        .and_then(|m| {
            m.children_named("Value")
                .find(|v| v.attr("Name") == Some("BackOffMilliseconds"))
        })
        .and_then(|v| v.text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

fn item_id_of(element: &Element) -> Result<ItemId, EwsError> {
    let id = element
        .attr("Id")
        .ok_or_else(|| EwsError::BadReply("ItemId without Id".into()))?;
    Ok(ItemId {
        id: id.to_owned(),
        change_key: element.attr("ChangeKey").unwrap_or_default().to_owned(),
    })
}

/// The `TandemSyncId` extended property of an item element, if it carries one.
fn sync_id_of(item: &Element) -> Option<String> {
    let sync_key = ExtendedKey::public_string(SYNC_ID_PROPERTY);
    item.children_named("ExtendedProperty")
        .find(|p| {
            p.child("ExtendedFieldURI")
                .and_then(ExtendedKey::from_element)
                .is_some_and(|key| key == sync_key)
        })
        .and_then(|p| p.child("Value"))
        .map(|v| v.text.clone())
}

/// The ItemId of the item inside a sync Create/Update change.
fn change_item_id(change: &Element) -> Result<ItemId, EwsError> {
    change
        .children
        .first()
        .and_then(|item| item.child("ItemId"))
        .ok_or_else(|| EwsError::BadReply(format!("a {} change has no ItemId", change.name)))
        .and_then(item_id_of)
}

/// The ItemId of the first item in a message's `m:Items`.
fn first_item_id(message: &Element) -> Result<ItemId, EwsError> {
    message
        .child("Items")
        .and_then(|items| items.children.first())
        .and_then(|item| item.child("ItemId"))
        .ok_or_else(|| EwsError::BadReply(format!("{} has no ItemId", message.name)))
        .and_then(item_id_of)
}

/// `(code, message, BackOffMilliseconds)` of a SOAP fault.
fn read_fault(fault: &Element) -> (String, String, Option<Duration>) {
    let detail = fault.child("detail");
    let code = detail
        .and_then(|d| d.child_text("ResponseCode"))
        .map(str::to_owned)
        .or_else(|| {
            fault
                .child_text("faultcode")
                .map(|c| c.rsplit(':').next().unwrap_or(c).to_owned())
        })
        .unwrap_or_else(|| "ErrorUnknown".into());
    let message = detail
        .and_then(|d| d.child_text("Message"))
        .or_else(|| fault.child_text("faultstring"))
        .unwrap_or_default()
        .to_owned();
    let back_off = back_off_hint(detail.and_then(|d| d.child("MessageXml")));
    (code, message, back_off)
}

fn parse_bool(text: &str) -> bool {
    matches!(text.trim(), "true" | "1")
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_signin;
