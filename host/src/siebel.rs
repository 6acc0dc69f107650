//! The Siebel REST connector: reads and writes Siebel business-component records over the
//! Siebel REST API (`{base}/data/{BusObject}/{BusComp}[/{Id}]`) and speaks the host's
//! [`Fields`].
//!
//! Safety rules it keeps:
//! - GET, PUT (upsert) and DELETE are idempotent, so they are retried on 5xx and transport
//!   errors with exponential backoff and jitter; POST (insert) is **never** retried, because
//!   Oracle documents that retrying a POST creates a duplicate.
//! - Queries page with `PageSize=100` / `StartRowNum` until a short page or a 204, as Oracle
//!   documents (there is no next-page link).
//! - Literals in generated searchspecs are quoted with [`searchspec_literal`].
//! - Date-times: Siebel reads and writes them in its user's time zone; inside Tandem every
//!   Siebel date-time text is UTC. The client converts at the edge with
//!   [`SiebelClient::with_time_zone`]: records read, values written, searchspec literals.
//! - The password is sent only in the `Authorization` header and never logged.
//! - Creates that must survive a crash or a lost reply use [`SiebelClient::insert_idempotent`]:
//!   the record carries our sync id in `Integration Id` and is looked up before any (re-)POST.
//! - At most [`DEFAULT_MAX_CONCURRENT`] requests are in flight per client (see
//!   [`SiebelClient::with_max_concurrent`]).
//! - Configuration mistakes (401/403, unknown business component) are logged as an error once
//!   per client and operation kind, never retried.
//! - OAuth 2.0 client credentials ([`SiebelClient::with_oauth2`], through [`crate::oauth`]):
//!   the bearer token is fetched on first use, refreshed shortly before it expires and once
//!   more after a 401.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value as Json};

use crate::oauth::{SecretPlacement, TokenEndpoint, TokenError, TokenSource};
use crate::record::{Fields, Value};
use crate::telemetry::RemoteRequests;
use crate::transport::{TlsError, Transport, TransportError};

pub mod change_feed;
pub mod dates;

/// Largest page Siebel serves (documented maximum of `PageSize`).
const PAGE_SIZE: usize = 100;
/// Ids per `[Id] = … OR …` query, to keep URLs short.
const IDS_PER_QUERY: usize = 50;
/// Tries of an idempotent request before giving up.
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles each retry, plus up to half again of jitter.
const BASE_DELAY: Duration = Duration::from_millis(50);
/// Longest error body kept in an error message.
const MAX_BODY_IN_ERROR: usize = 500;
/// Requests in flight at once per client unless changed with `with_max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// Lookups of `Integration Id` after a failed POST, before giving up (each retried itself).
const IDEMPOTENT_INSERT_ROUNDS: u32 = 4;

/// Where and as whom to reach Siebel.
#[derive(Clone)]
pub struct SiebelConfig {
    /// The REST root, e.g. `http://127.0.0.1:PORT/siebel/v1.0` (no `/data`).
    pub base_url: String,
    pub user: String,
    pub password: String,
    /// Extra trusted CAs and proxy (`[siebel] ca_file`, `proxy`).
    pub transport: Transport,
}

impl fmt::Debug for SiebelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiebelConfig")
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("transport", &self.transport)
            .finish()
    }
}

/// What went wrong talking to Siebel, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiebelError {
    /// The configuration cannot work (bad base URL, client setup).
    #[error("the Siebel connector is misconfigured: {detail}; set siebel base_url like http://host:port/siebel/v1.0")]
    InvalidConfig { detail: String },
    /// Siebel refused the credentials (401/403): a configuration problem, not worth retrying.
    #[error(
        "Siebel refused user '{user}' (HTTP {status}) for {operation}; check the Siebel user and password in the configuration and that the user may use the REST API"
    )]
    Unauthorized { operation: String, user: String, status: u16 },
    /// 404: no such business object / component, or no record with that Id.
    #[error("Siebel has no {what} (HTTP 404); check the business object/component name and the record Id")]
    NotFound { what: String },
    /// Any other non-success HTTP status (after retries, for idempotent requests).
    #[error("Siebel answered HTTP {status} to {operation}: {body}{}", server_hint(*status))]
    Server { operation: String, status: u16, body: String },
    /// No HTTP answer at all (connection refused, timeout, reset).
    #[error(
        "could not reach Siebel for {operation}: {}; check that the Siebel server is up and the base URL is right",
        crate::transport::describe(source)
    )]
    Transport {
        operation: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server's certificate was not accepted (unknown issuer, expired, wrong host name):
    /// no request was sent, and retrying cannot help until the server or `ca_file` changes.
    #[error("could not reach Siebel for {operation}: {source}")]
    Tls {
        operation: String,
        #[source]
        source: TlsError,
    },
    /// No OAuth bearer token: the token endpoint refused the client, or could not be reached.
    #[error("no OAuth token for Siebel: {source}")]
    Token {
        #[source]
        source: TokenError,
    },
    /// `[siebel] ca_file` or `proxy` cannot be used.
    #[error("the Siebel connection cannot be set up: {source}; {}", source.hint())]
    TlsSettings {
        #[source]
        source: TransportError,
    },
    /// An answer that is not the documented JSON shape.
    #[error(
        "Siebel's reply to {operation} is not what the REST API documents: {detail}; check that base_url points at the Siebel REST API"
    )]
    BadReply { operation: String, detail: String },
    /// A field value that has no Siebel text form (lists, NaN).
    #[error("field '{field}' cannot be sent to Siebel: {detail}; map it to text in the plugin")]
    InvalidValue { field: String, detail: String },
}

/// A request that got no answer: a refused certificate, or anything else on the way.
fn transport_error(operation: &str, source: reqwest::Error) -> SiebelError {
    match crate::transport::tls_error(&source, "siebel") {
        Some(tls) => SiebelError::Tls { operation: operation.to_owned(), source: tls },
        None => SiebelError::Transport { operation: operation.to_owned(), source },
    }
}

fn server_hint(status: u16) -> &'static str {
    if status >= 500 {
        "; the Siebel server failed (idempotent requests were already retried), try again later or check the Siebel server logs"
    } else {
        "; Siebel rejected the request, check the field names and values"
    }
}

impl SiebelError {
    /// The HTTP status, when Siebel answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SiebelError::Unauthorized { status, .. } | SiebelError::Server { status, .. } => Some(*status),
            SiebelError::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    /// True when trying again later may succeed (server failures, transport errors), not
    /// when Siebel refused the record itself.
    pub fn is_transient(&self) -> bool {
        match self {
            SiebelError::Server { status, .. } => (*status >= 500 || *status == 429) && !self.is_record_refusal(),
            SiebelError::Transport { .. } => true,
            SiebelError::Token { source } => source.is_transient(),
            _ => false,
        }
    }

    /// True when retrying cannot help until an administrator acts: refused credentials (user
    /// and password, or the OAuth client), settings that cannot work.
    pub fn is_permanent(&self) -> bool {
        match self {
            SiebelError::Unauthorized { .. } | SiebelError::InvalidConfig { .. } => true,
            SiebelError::Token { source } => {
                matches!(source, TokenError::Refused { .. } | TokenError::Settings { .. } | TokenError::Credential { .. })
            }
            _ => false,
        }
    }

    /// True when Siebel refused this one record rather than failing as a server: a value
    /// outside a bounded list (`SBL-EAI-04401`), a date it cannot read (`SBL-DAT-00359`), text
    /// longer than its column, a field the component lacks. Siebel answers most of these
    /// HTTP 500 with an `SBL-…` code (Oracle REST API guide, status codes); a 500 that carries
    /// the Application Interface's own internal-error code (`SBL-EAI-05001`), or none at
    /// all, is a server failure. The record is set aside and the rest of the run goes on.
    pub fn is_record_refusal(&self) -> bool {
        match self {
            SiebelError::Server { status: 400 | 409 | 422, .. } => true,
            SiebelError::Server { status: 500, body, .. } => {
                let refusal = body.contains("SBL-") && !body.contains(INTERNAL_ERROR_CODE);
                refusal || body.contains(TOO_LONG_MESSAGE)
            }
            SiebelError::InvalidValue { .. } => true,
            _ => false,
        }
    }
}

/// The Siebel Application Interface's code for its own internal failure: a server problem,
/// not a refusal of the record.
const INTERNAL_ERROR_CODE: &str = "SBL-EAI-05001";
/// What Siebel says of text longer than its column (Global Deployment Guide, "Field Size
/// Issues"; Oracle documents the message, not a code).
const TOO_LONG_MESSAGE: &str = "is bigger than the corresponding length allocated in the database";

/// One record as Siebel returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct SiebelRecord {
    /// The row Id.
    pub id: String,
    /// The `Updated` system field (`MM/DD/YYYY HH:MM:SS`), when returned.
    pub updated: Option<String>,
    /// Every returned field except `Id` and `Link`, as [`Value::Text`]; null or absent fields
    /// are left out, empty ones are `Text("")`.
    pub fields: Fields,
}

impl SiebelRecord {
    /// Turns every full date-time text (Siebel's, in `zone`) into UTC, `updated` too.
    fn date_times_to_utc(&mut self, zone: chrono_tz::Tz) {
        if zone == chrono_tz::Tz::UTC {
            return;
        }
        let converted: Vec<(String, String)> = self
            .fields
            .iter()
            .filter_map(|(name, value)| Some((name.to_owned(), dates::utc_from_zone(value.as_text()?, zone)?)))
            .collect();
        for (name, utc) in converted {
            self.fields.insert(name, Value::Text(utc));
        }
        if let Some(utc) = self.updated.as_deref().and_then(|text| dates::utc_from_zone(text, zone)) {
            self.updated = Some(utc);
        }
    }
}

/// A searchspec text literal: `'…'` with inner single quotes doubled (`O'Brien` → `'O''Brien'`).
pub fn searchspec_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Client of one Siebel REST endpoint. Cloning is cheap (shares the connection pool).
#[derive(Clone)]
pub struct SiebelClient {
    base: Url,
    user: String,
    password: String,
    http: reqwest::Client,
    limiter: Arc<tokio::sync::Semaphore>,
    oauth: Option<Arc<TokenSource>>,
    /// Configuration errors already logged at error level (logged once each).
    reported: Arc<Mutex<HashSet<String>>>,
    /// `ViewMode` sent with every request; `None` leaves Siebel's default (Sales Rep).
    view_mode: Option<String>,
    /// The time zone of the integration user's Siebel profile: Siebel reads and writes
    /// date-times in it, Tandem holds them in UTC (see [`dates`]).
    time_zone: chrono_tz::Tz,
    /// Requests sent, by kind, for `GET /metrics`.
    requests: Arc<RemoteRequests>,
}

/// OAuth 2.0 client-credentials settings for [`SiebelClient::with_oauth2`].
#[derive(Clone)]
pub struct OAuth2Config {
    /// The token endpoint, e.g. `https://idp/oauth2/token`.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for OAuth2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Config")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for SiebelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiebelClient")
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer: status and body, plus how many tries it took.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    attempts: u32,
}

impl SiebelClient {
    /// Checks the configuration and builds the HTTP client; does not contact Siebel.
    pub fn new(config: SiebelConfig) -> Result<Self, SiebelError> {
        let trimmed = config.base_url.trim().trim_end_matches('/');
        let base = Url::parse(trimmed).map_err(|e| SiebelError::InvalidConfig {
            detail: format!("base_url '{}' is not a URL ({e})", config.base_url),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(SiebelError::InvalidConfig {
                detail: format!("base_url '{}' must be an http:// or https:// URL", config.base_url),
            });
        }
        if config.user.is_empty() {
            return Err(SiebelError::InvalidConfig { detail: "the Siebel user is empty".into() });
        }
        let http = crate::transport::client_builder(&config.transport)
            .map_err(|source| SiebelError::TlsSettings { source })?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // The Application Interface's session cookie, kept so Siebel need not open a
            // session for every request.
            .cookie_store(true)
            .build()
            .map_err(|e| SiebelError::InvalidConfig { detail: format!("the HTTP client could not be built ({e})") })?;
        Ok(Self {
            base,
            user: config.user,
            password: config.password,
            http,
            limiter: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CONCURRENT)),
            oauth: None,
            reported: Arc::new(Mutex::new(HashSet::new())),
            view_mode: None,
            time_zone: chrono_tz::Tz::UTC,
            requests: RemoteRequests::siebel(),
        })
    }

    /// Requests this client and its clones sent, by kind (`query`, `insert`, `update`,
    /// `delete`, `token`).
    pub fn remote_requests(&self) -> Arc<RemoteRequests> {
        self.requests.clone()
    }

    /// When the OAuth client's credential expires, when known (for `/metrics` and the status).
    pub fn credential_expiry(&self) -> Option<crate::oauth::CredentialExpiry> {
        self.oauth.as_ref().and_then(|tokens| tokens.expiry())
    }

    /// Caps the requests this client (and its clones) has in flight at once (at least 1).
    pub fn with_max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.limiter = Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1)));
        self
    }

    /// Sends `ViewMode=mode` with every request, reads and writes (e.g. `All` to see every
    /// record whatever its team, as change detection must); without it Siebel applies its
    /// default, Sales Rep, and a record off the integration user's teams is not found.
    pub fn with_view_mode(mut self, mode: &str) -> Self {
        self.view_mode = Some(mode.to_owned()).filter(|m| !m.trim().is_empty());
        self
    }

    /// Reads and writes date-times in `zone`, the time zone of the integration user's Siebel
    /// profile (Siebel converts with it): every full date-time text of a record read is turned
    /// into UTC, and every date-time written or compared in a searchspec is turned back.
    pub fn with_time_zone(mut self, zone: chrono_tz::Tz) -> Self {
        self.time_zone = zone;
        self
    }

    /// Authenticates with OAuth 2.0 client credentials (bearer tokens) instead of Basic auth;
    /// the client id and secret go to the token endpoint as HTTP Basic (RFC 6749 §2.3.1).
    pub fn with_oauth2(mut self, config: OAuth2Config) -> Result<Self, SiebelError> {
        let endpoint = TokenEndpoint {
            section: "siebel",
            token_url: config.token_url,
            client_id: config.client_id,
            credential: config.client_secret.into(),
            scope: None,
            secret_placement: SecretPlacement::BasicHeader,
        };
        let tokens = TokenSource::new(endpoint, self.http.clone(), self.requests.clone())
            .map_err(|error| SiebelError::InvalidConfig { detail: error.to_string() })?;
        self.oauth = Some(Arc::new(tokens));
        Ok(self)
    }

    /// Like [`query`](Self::query) but asks only for `fields` (plus `Id`), to keep replies small.
    pub async fn query_fields(
        &self,
        bus_object: &str,
        bus_comp: &str,
        searchspec: Option<&str>,
        fields: &[&str],
    ) -> Result<Vec<SiebelRecord>, SiebelError> {
        self.query_with(bus_object, bus_comp, searchspec, Some(fields)).await
    }

    /// Like [`get_by_ids`](Self::get_by_ids) but asks only for `fields` (plus `Id`).
    pub async fn get_by_ids_fields(
        &self,
        bus_object: &str,
        bus_comp: &str,
        ids: &[String],
        fields: &[&str],
    ) -> Result<Vec<SiebelRecord>, SiebelError> {
        let mut seen = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| !id.is_empty() && seen.insert(id.as_str())).collect();
        let mut records = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(IDS_PER_QUERY) {
            let spec =
                chunk.iter().map(|id| format!("[Id] = {}", searchspec_literal(id))).collect::<Vec<_>>().join(" OR ");
            records.extend(self.query_with(bus_object, bus_comp, Some(&spec), Some(fields)).await?);
        }
        Ok(records)
    }

    /// The record whose `Integration Id` is `sync_id`, if any. More than one is an error
    /// (someone created duplicates; a person must merge them).
    pub async fn find_by_integration_id(
        &self,
        bus_object: &str,
        bus_comp: &str,
        sync_id: &str,
    ) -> Result<Option<SiebelRecord>, SiebelError> {
        let spec = format!("[Integration Id] = {}", searchspec_literal(sync_id));
        let mut found = self.query(bus_object, bus_comp, Some(&spec)).await?;
        match found.len() {
            0 | 1 => Ok(found.pop()),
            count => Err(SiebelError::BadReply {
                operation: format!("lookup of Integration Id {sync_id} in {bus_object}/{bus_comp}"),
                detail: format!(
                    "{count} records carry this Integration Id; merge the duplicates in Siebel, then sync again"
                ),
            }),
        }
    }

    /// Creates a record exactly once, keyed by our `sync_id` (stored in `Integration Id`).
    ///
    /// Looks the sync id up first and returns the existing Id when found (a crash or lost
    /// reply after an earlier POST). A POST is sent only after a lookup found nothing; when a
    /// POST fails without a clear answer (5xx, transport) the lookup runs again before any new
    /// POST, so a record is never created twice. Errors that are not transient end it at once.
    pub async fn insert_idempotent(
        &self,
        bus_object: &str,
        bus_comp: &str,
        fields: &Fields,
        sync_id: &str,
    ) -> Result<String, SiebelError> {
        if sync_id.trim().is_empty() {
            return Err(SiebelError::InvalidValue {
                field: "Integration Id".into(),
                detail: "an idempotent insert needs a non-empty sync id".into(),
            });
        }
        let mut fields = fields.clone();
        fields.insert("Integration Id".into(), Value::Text(sync_id.to_owned()));
        let mut round = 1;
        loop {
            if let Some(existing) = self.find_by_integration_id(bus_object, bus_comp, sync_id).await? {
                tracing::debug!(bus_object, bus_comp, id = existing.id, "idempotent insert found the record already");
                return Ok(existing.id);
            }
            match self.insert(bus_object, bus_comp, &fields).await {
                Ok(id) => return Ok(id),
                Err(error) if error.is_transient() && round < IDEMPOTENT_INSERT_ROUNDS => {
                    tracing::warn!(bus_object, bus_comp, round, %error, "insert failed; looking the record up before trying again");
                    tokio::time::sleep(backoff(round)).await;
                    round += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The records with these Ids; Ids that do not exist (or are not visible) are simply
    /// absent from the answer. Queries `[Id] = 'a' OR [Id] = 'b' …`, 50 Ids at a time.
    pub async fn get_by_ids(
        &self,
        bus_object: &str,
        bus_comp: &str,
        ids: &[String],
    ) -> Result<Vec<SiebelRecord>, SiebelError> {
        let mut seen = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| !id.is_empty() && seen.insert(id.as_str())).collect();
        let mut records = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(IDS_PER_QUERY) {
            let spec =
                chunk.iter().map(|id| format!("[Id] = {}", searchspec_literal(id))).collect::<Vec<_>>().join(" OR ");
            records.extend(self.query(bus_object, bus_comp, Some(&spec)).await?);
        }
        Ok(records)
    }

    /// Every record of the component matching `searchspec` (all when `None`), paging to the end.
    pub async fn query(
        &self,
        bus_object: &str,
        bus_comp: &str,
        searchspec: Option<&str>,
    ) -> Result<Vec<SiebelRecord>, SiebelError> {
        self.query_with(bus_object, bus_comp, searchspec, None).await
    }

    async fn query_with(
        &self,
        bus_object: &str,
        bus_comp: &str,
        searchspec: Option<&str>,
        fields: Option<&[&str]>,
    ) -> Result<Vec<SiebelRecord>, SiebelError> {
        let url = self.url(bus_object, bus_comp, None)?;
        let operation = format!("query of {bus_object}/{bus_comp}");
        let mut records = Vec::new();
        let mut seen = HashSet::new();
        let mut start = 0usize;
        loop {
            // ForwardOnly: a query selecting more than 9,900 records fails without it, and
            // the pages are read in order anyway.
            let mut query = vec![
                ("uniformresponse", "y".to_owned()),
                ("PageSize", PAGE_SIZE.to_string()),
                ("StartRowNum", start.to_string()),
                ("ExecutionMode", "ForwardOnly".to_owned()),
            ];
            if let Some(spec) = searchspec.filter(|s| !s.trim().is_empty()) {
                query.push(("searchspec", dates::searchspec_in_zone(spec, self.time_zone)));
            }
            if let Some(fields) = fields {
                query.push(("fields", fields.join(",")));
            }
            let reply = self.execute(Method::GET, url.clone(), &query, None, true, &operation).await?;
            let page = match reply.status {
                StatusCode::NO_CONTENT => Vec::new(),
                // Some Siebel releases answer an empty query with 404 "There is no data …".
                StatusCode::NOT_FOUND if body_text(&reply.body).to_ascii_lowercase().contains("no data") => Vec::new(),
                status if status.is_success() => {
                    let mut records = parse_items(&reply.body, &operation)?;
                    records.iter_mut().for_each(|record| record.date_times_to_utc(self.time_zone));
                    records
                }
                _ => {
                    return Err(self.status_error(
                        reply,
                        &operation,
                        &format!("business component {bus_object}/{bus_comp}"),
                    ));
                }
            };
            let count = page.len();
            let mut new = 0;
            for record in page {
                if seen.insert(record.id.clone()) {
                    new += 1;
                    records.push(record);
                }
            }
            if count < PAGE_SIZE {
                return Ok(records);
            }
            if new == 0 {
                return Err(SiebelError::BadReply {
                    operation,
                    detail: format!(
                        "the page at StartRowNum={start} repeats records already seen (StartRowNum ignored?)"
                    ),
                });
            }
            start += count;
        }
    }

    /// The field names of a business component, from its OpenAPI description
    /// (`GET …/data/{BO}/{BC}/describe`): the properties of the definition
    /// `data_{BO}_{BC}_`. Reads only; for `tandem doctor`.
    pub async fn describe(&self, bus_object: &str, bus_comp: &str) -> Result<BTreeSet<String>, SiebelError> {
        let url = self.url(bus_object, bus_comp, Some("describe"))?;
        let operation = format!("describe of {bus_object}/{bus_comp}");
        let reply = self.execute(Method::GET, url, &[], None, true, &operation).await?;
        if !reply.status.is_success() {
            return Err(self.status_error(reply, &operation, &format!("business component {bus_object}/{bus_comp}")));
        }
        let document: Json = serde_json::from_slice(&reply.body)
            .map_err(|e| SiebelError::BadReply { operation: operation.clone(), detail: format!("not JSON ({e})") })?;
        let definition = format!("data_{bus_object}_{bus_comp}_");
        let properties = document["definitions"][&definition]["properties"].as_object().ok_or_else(|| SiebelError::BadReply {
            operation: operation.clone(),
            detail: format!("no definitions[\"{definition}\"].properties in the description"),
        })?;
        Ok(properties.keys().cloned().collect())
    }

    /// Inserts a record (POST) and returns its new Id. Blank and null fields are left out.
    ///
    /// Never retried: a retried POST would create a duplicate. On a transport error or 5xx
    /// the record may or may not exist; look it up (e.g. by `Integration Id`) before trying again.
    pub async fn insert(&self, bus_object: &str, bus_comp: &str, fields: &Fields) -> Result<String, SiebelError> {
        let mut body = Map::new();
        for (name, value) in fields {
            if let Some(text) = to_siebel_text(name, value, self.time_zone)?.filter(|t| !t.is_empty()) {
                body.insert(name.to_owned(), Json::String(text));
            }
        }
        let url = self.url(bus_object, bus_comp, None)?;
        let operation = format!("insert into {bus_object}/{bus_comp} (not retried; the record may or may not exist)");
        let reply = self.execute(Method::POST, url, &[], Some(&Json::Object(body)), false, &operation).await?;
        if !reply.status.is_success() {
            return Err(self.status_error(reply, &operation, &format!("business component {bus_object}/{bus_comp}")));
        }
        let value: Json = serde_json::from_slice(&reply.body).map_err(|e| SiebelError::BadReply {
            operation: operation.clone(),
            detail: format!("the body is not JSON ({e})"),
        })?;
        let item = match &value["items"] {
            Json::Array(items) => items.first().cloned().unwrap_or(Json::Null),
            other => other.clone(),
        };
        match item.get("Id").and_then(Json::as_str) {
            Some(id) if !id.is_empty() => {
                tracing::debug!(bus_object, bus_comp, id, "inserted a Siebel record");
                Ok(id.to_owned())
            }
            _ => Err(SiebelError::BadReply { operation, detail: "the reply has no items.Id".into() }),
        }
    }

    /// Changes the given fields of a record (PUT, an upsert). Null and blank values clear the
    /// field (sent as `""`); fields not given are left alone. With no fields it sends nothing,
    /// so it does not advance `Updated`.
    pub async fn update(&self, bus_object: &str, bus_comp: &str, id: &str, fields: &Fields) -> Result<(), SiebelError> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut body = Map::new();
        for (name, value) in fields {
            let text = to_siebel_text(name, value, self.time_zone)?.unwrap_or_default();
            body.insert(name.to_owned(), Json::String(text));
        }
        let url = self.url(bus_object, bus_comp, Some(id))?;
        let operation = format!("update of {bus_object}/{bus_comp} {id}");
        let reply = self.execute(Method::PUT, url, &[], Some(&Json::Object(body)), true, &operation).await?;
        if !reply.status.is_success() {
            return Err(self.status_error(reply, &operation, &format!("{bus_object}/{bus_comp} record {id}")));
        }
        Ok(())
    }

    /// Deletes a record. A 404 after a retry counts as done (an earlier try deleted it).
    pub async fn delete(&self, bus_object: &str, bus_comp: &str, id: &str) -> Result<(), SiebelError> {
        let url = self.url(bus_object, bus_comp, Some(id))?;
        let operation = format!("delete of {bus_object}/{bus_comp} {id}");
        let reply = self.execute(Method::DELETE, url, &[], None, true, &operation).await?;
        if reply.status.is_success() || (reply.status == StatusCode::NOT_FOUND && reply.attempts > 1) {
            return Ok(());
        }
        Err(self.status_error(reply, &operation, &format!("{bus_object}/{bus_comp} record {id}")))
    }

    /// `{base}/data/{bo}/{bc}[/{id}]`, each part percent-encoded as one path segment.
    fn url(&self, bus_object: &str, bus_comp: &str, id: Option<&str>) -> Result<Url, SiebelError> {
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|()| SiebelError::InvalidConfig {
                detail: format!("base_url '{}' cannot take a path", self.base),
            })?;
            segments.pop_if_empty().push("data").push(bus_object).push(bus_comp);
            if let Some(id) = id {
                segments.push(id);
            }
        }
        Ok(url)
    }

    /// Sends a request; when `retry`, tries again on 5xx, 429 and transport errors.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Json>,
        retry: bool,
        operation: &str,
    ) -> Result<Reply, SiebelError> {
        let attempts = if retry { MAX_ATTEMPTS } else { 1 };
        let mut attempt = 1;
        let mut token_refreshed = false;
        loop {
            tracing::debug!(%method, url = %url, attempt, "Siebel request");
            let _permit = self.limiter.acquire().await.map_err(|_| SiebelError::InvalidConfig {
                detail: "the request limiter was closed".into(),
            })?;
            let mut request = self.http.request(method.clone(), url.clone());
            request = match &self.oauth {
                Some(tokens) => request.bearer_auth(self.bearer_token(tokens, false).await?),
                None => request.basic_auth(&self.user, Some(&self.password)),
            };
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(mode) = &self.view_mode {
                request = request.query(&[("ViewMode", mode)]);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            self.requests.count(match method {
                Method::GET => "query",
                Method::POST => "insert",
                Method::PUT => "update",
                Method::DELETE => "delete",
                _ => "other",
            });
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) => Ok(Reply { status, body: bytes.to_vec(), attempts: attempt }),
                        Err(source) => Err(source),
                    }
                }
                Err(source) => Err(source),
            };
            drop(_permit);
            if let (Some(tokens), Ok(reply)) = (&self.oauth, &outcome)
                && reply.status == StatusCode::UNAUTHORIZED
                && !token_refreshed
            {
                // The token may have been revoked or expired early: fetch a new one, once.
                token_refreshed = true;
                self.bearer_token(tokens, true).await?;
                continue;
            }
            let transient = match &outcome {
                Ok(reply) => reply.status.is_server_error() || reply.status == StatusCode::TOO_MANY_REQUESTS,
                // A refused certificate stays refused: no retry.
                Err(error) => crate::transport::tls_error(error, "siebel").is_none(),
            };
            if !transient || attempt >= attempts {
                return outcome.map_err(|source| transport_error(operation, source));
            }
            let delay = backoff(attempt);
            match &outcome {
                Ok(reply) => {
                    tracing::warn!(%method, url = %url, attempt, status = reply.status.as_u16(), delay_ms = delay.as_millis() as u64, "Siebel request failed, retrying")
                }
                Err(error) => {
                    tracing::warn!(%method, url = %url, attempt, %error, delay_ms = delay.as_millis() as u64, "Siebel request failed, retrying")
                }
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// A valid bearer token: the cached one unless it is near expiry or `force` is set.
    async fn bearer_token(&self, tokens: &TokenSource, force: bool) -> Result<String, SiebelError> {
        tokens.token(force).await.map_err(|error| match error {
            TokenError::Tls(source) => SiebelError::Tls { operation: "OAuth token request".into(), source },
            refused @ TokenError::Refused { .. } => {
                self.report_config_error("oauth", "Siebel's token endpoint refused the OAuth client id/secret");
                SiebelError::Token { source: refused }
            }
            other => SiebelError::Token { source: other },
        })
    }

    /// Logs a configuration error at error level the first time `key` is seen, else at debug.
    fn report_config_error(&self, key: &str, message: &str) {
        let first = self.reported.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key.to_owned());
        if first {
            tracing::error!(problem = key, "{message}; fix the Siebel configuration (not retried)");
        } else {
            tracing::debug!(problem = key, "{message} (already reported)");
        }
    }

    /// The error for a non-success reply.
    fn status_error(&self, reply: Reply, operation: &str, what: &str) -> SiebelError {
        match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.report_config_error(
                    &format!("auth-{}", reply.status.as_u16()),
                    &format!("Siebel refused user '{}' (HTTP {})", self.user, reply.status.as_u16()),
                );
                SiebelError::Unauthorized {
                    operation: operation.to_owned(),
                    user: self.user.clone(),
                    status: reply.status.as_u16(),
                }
            }
            StatusCode::NOT_FOUND => {
                if what.starts_with("business component") {
                    self.report_config_error(&format!("missing-{what}"), &format!("Siebel has no {what}"));
                }
                SiebelError::NotFound { what: what.to_owned() }
            }
            status => SiebelError::Server {
                operation: operation.to_owned(),
                status: status.as_u16(),
                body: error_message(&reply.body),
            },
        }
    }
}

/// Exponential backoff with jitter: base·2^(attempt−1) plus up to half of that again.
fn backoff(attempt: u32) -> Duration {
    let exponential = BASE_DELAY.saturating_mul(1u32 << (attempt - 1).min(10));
    let jitter_ms = rand::rng().random_range(0..=exponential.as_millis() as u64 / 2);
    exponential + Duration::from_millis(jitter_ms)
}

fn body_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The useful part of an error body: Siebel's `ERROR` / Problem `detail`, or the text, shortened.
fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Json>(body) {
        Ok(json) => {
            let pick = |key: &str| json.get(key).and_then(Json::as_str).map(str::to_owned);
            match (pick("ERROR"), pick("detail"), pick("errorCode")) {
                (Some(message), _, _) => message,
                (None, Some(detail), Some(code)) => format!("{code}: {detail}"),
                (None, Some(detail), None) => detail,
                _ => json.to_string(),
            }
        }
        Err(_) => body_text(body),
    };
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX_BODY_IN_ERROR) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Parses a query reply (`{"items": [ {...}, ... ]}` or a single item object) into records.
/// Public so the fuzz targets and robustness tests can throw arbitrary bytes at it.
pub fn parse_query_reply(body: &[u8]) -> Result<Vec<SiebelRecord>, SiebelError> {
    parse_items(body, "reply parsing")
}

/// Parses `{"items": [ {...}, ... ]}` (or a single item object) into records.
fn parse_items(body: &[u8], operation: &str) -> Result<Vec<SiebelRecord>, SiebelError> {
    let bad = |detail: String| SiebelError::BadReply { operation: operation.to_owned(), detail };
    let value: Json = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON ({e})")))?;
    let items = match value.get("items") {
        Some(Json::Array(items)) => items.clone(),
        Some(item @ Json::Object(_)) => vec![item.clone()],
        Some(Json::Null) | None => return Err(bad("the reply has no \"items\"".into())),
        Some(other) => return Err(bad(format!("\"items\" is neither a list nor an object: {other}"))),
    };
    items.into_iter().map(|item| parse_record(item).map_err(&bad)).collect()
}

fn parse_record(item: Json) -> Result<SiebelRecord, String> {
    let Json::Object(map) = item else {
        return Err(format!("an item is not an object: {item}"));
    };
    let id = match map.get("Id") {
        Some(Json::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err("an item has no \"Id\"".into()),
    };
    let mut fields = Fields::new();
    for (name, value) in map {
        if name == "Id" || name == "Link" {
            continue;
        }
        let text = match value {
            Json::String(text) => text,
            Json::Number(number) => number.to_string(),
            Json::Bool(flag) => (if flag { "Y" } else { "N" }).to_owned(),
            // Null is "no value"; arrays/objects are child records or links, not fields.
            Json::Null | Json::Array(_) | Json::Object(_) => continue,
        };
        fields.insert(name, Value::Text(text));
    }
    let updated = fields.get("Updated").and_then(Value::as_text).filter(|t| !t.is_empty()).map(str::to_owned);
    Ok(SiebelRecord { id, updated, fields })
}

/// A host value as Siebel text; `None` for null. Integers and numbers as written, booleans as
/// `Y`/`N`, date-times as `MM/DD/YYYY HH:MM:SS` in `zone` (a date-time text, which Tandem
/// holds in UTC, too).
fn to_siebel_text(field: &str, value: &Value, zone: chrono_tz::Tz) -> Result<Option<String>, SiebelError> {
    Ok(match value {
        Value::Null => None,
        Value::Text(text) => Some(dates::utc_text_in_zone(text, zone).unwrap_or_else(|| text.clone())),
        Value::Integer(number) => Some(number.to_string()),
        Value::Number(number) if number.is_finite() => Some(number.to_string()),
        Value::Number(number) => {
            return Err(SiebelError::InvalidValue {
                field: field.to_owned(),
                detail: format!("{number} is not a finite number"),
            });
        }
        Value::Boolean(flag) => Some((if *flag { "Y" } else { "N" }).to_owned()),
        Value::DateTime(at) => Some(dates::in_zone(*at, zone)),
        Value::List(_) => {
            return Err(SiebelError::InvalidValue {
                field: field.to_owned(),
                detail: "lists have no Siebel field form".into(),
            });
        }
    })
}

#[cfg(test)]
mod tests;
