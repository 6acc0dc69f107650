//! Emulator of the Siebel REST API (`/siebel/v1.0/data/{BusObject}/{BusComp}[/{Id}]`), so
//! Tandem's tests, `tandem demo` and plugin authors can run without a Siebel server.
//!
//! It follows Oracle's documented behaviour (see `reference/siebel-ssse-and-rest.md` §6):
//! GET queries (`PageSize` default 10 / max 100 — larger values are refused with 400, `StartRowNum`,
//! `searchspec`, `fields`, `uniformresponse=y`, `recordcountneeded=true`), POST inserts
//! (200 with the new `Id` and a self link), PUT upserts (200), DELETE (204), Basic auth (401),
//! 404 for an unknown business object / component or record, 405 and 415.
//!
//! Choices where Oracle's documentation is silent or varies:
//! - A query that matches nothing (or a page past the end) answers **204 No Content** with no
//!   body (documented as "an empty page may return 204"); 404 is kept for "no such BO/BC" and
//!   "no such record Id", so the two never mix.
//! - Records are returned ordered by `Id`; generated Ids (`1-10000`, `1-10001`, …) have a
//!   fixed width, so that is also insertion order.
//! - Every record answers all fields of its component (empty ones as `""`); an empty value and
//!   an absent one are the same (Siebel stores no `""`). A field the component lacks is
//!   refused wherever it is named, with HTTP 500: in a write (`SBL-DAT-00398`), in `fields`
//!   (`SBL-EAI-50258`), in a searchspec or sortspec (`SBL-DAT-00416`).
//! - Errors come as `{"ERROR": "message"}`; an injected 503 comes Problem-style
//!   (`{"type","title","status","detail","errorCode":"SBL-EAI-05001"}`).
//! - Fault kinds: `http500`, `http503`, `drop` (drawn by default, also by `--fault-rate`),
//!   `slow` (answers normally after 1.5 s) and `lost_reply` (a write is applied, then answered
//!   503 — as when a gateway times out after Siebel committed; a read just gets the 503); the
//!   last two only when named in `kinds` of `POST /_sim/faults`. `drop` closes the connection
//!   without any reply — after carrying out a write, the case a client cannot tell from a
//!   failure. Except `lost_reply` and `drop`, a faulted request changes nothing.
//! - A query selecting more than 9,900 records fails (HTTP 500; Oracle documents the failure,
//!   not its code, so none is sent) unless it passes `ExecutionMode=ForwardOnly`.
//! - `ViewMode` (default Sales Rep) filters by position; see `siebel/visibility.rs` for the model.
//!   Besides the configured admin user, `SiebelSimConfig::users` may log in; a user is the
//!   Employee with that `Login Name`. Writes take `ViewMode` too: a PUT or DELETE of a record
//!   the caller does not see under it is a 404, as a query for it would find nothing.
//! - Child business components (`…/{Id}/{ChildBC}[/{ChildId}]`, see `siebel/children.rs`): GET queries
//!   them with the same parameters; PUT upserts a child and ties it to the parent, answering
//!   **201** when it made a new child or tie (documented for a child upsert) and 200 when it
//!   only changed an already tied child. Query replies carry a `rel: child` link per child
//!   component unless `childlinks=None` (or a comma list naming the ones wanted); items read
//!   through a parent also carry a `parent` link and a `canonical` link to their own URL.
//! - Equalities in a searchspec (`[Integration Id] = '…'`, `[Id] = … OR …`) are looked up in
//!   per-field indexes, as a real Siebel's indexed columns are, instead of scanning the
//!   component (see `siebel/store.rs`); the answers are exactly a scan's.
//! - `Position/Position` holds positions (`Name`, `Parent Position Id`, `Organization Id`).
//! - `sortspec=Field [(ASCENDING|DESCENDING)], …` sorts before paging (values compare as the
//!   searchspec compares them: dates, numbers, else text); ties keep `Id` order. An unknown
//!   direction is a 400.
//! - Writes are checked as a real Siebel checks them (`siebel/rules.rs`): bounded lists of
//!   values take an exact value only (`SBL-EAI-04401`), `Integration Id` holds 30 characters;
//!   a refused write is HTTP 500 with Siebel's message and stores nothing.
//! - OAuth 2.0 (when `SiebelSimConfig::oauth_client` is set): `POST /oauth2/token` with the
//!   client id/secret as Basic auth and `grant_type=client_credentials` answers
//!   `{"access_token","token_type":"Bearer","expires_in"}`; data requests then take
//!   `Authorization: Bearer TOKEN` only: an Application Interface profile authenticates one
//!   way, so Basic is refused (401 `WWW-Authenticate: Bearer`). Tokens are checked by lookup
//!   (introspection), expire after `token_lifetime`, and `POST /_sim/oauth/revoke` drops all.
//! - Sessions: a successful data request without a live session cookie gets one
//!   (`Set-Cookie: _sn=…; Path=/siebel; HttpOnly`, `Secure` over TLS);
//!   [`SiebelSim::sessions`] counts the sessions opened and the requests that brought theirs
//!   back.
//! - `GET {DATA_PREFIX}/{BO}/{BC}/describe`: the component's OpenAPI 2.0 description, its
//!   fields under `definitions["data_{BO}_{BC}_"].properties`.

mod children;
mod rules;
mod searchspec;
mod store;
mod time_zone;
mod visibility;

#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Map, Value as Json, json};

pub use searchspec::{SearchSpecError, parse as parse_searchspec, parse_siebel_datetime};

use crate::common::{self, ConnectionControl, Credentials, RunningServer, SimControl};
use children::ChildLink;
use store::Store;
use visibility::{ViewMode, Viewer};

/// URL prefix of the data API.
pub const DATA_PREFIX: &str = "/siebel/v1.0/data";

/// Fields the server maintains; clients' writes to them are ignored.
const SYSTEM_FIELDS: &[&str] = &["Id", "Created", "Created By", "Updated", "Updated By", "Mod Id"];

/// The business components this emulator serves: (business object, business component, fields).
const COMPONENTS: &[(&str, &str, &[&str])] = &[
    (
        "Contact",
        "Contact",
        &[
            "First Name",
            "Last Name",
            "Middle Name",
            "M/M",
            "M/F",
            "Email Address",
            "Work Phone #",
            "Home Phone #",
            "Cellular Phone #",
            "Fax Phone #",
            "Assistant",
            "Assistant Phone #",
            "Job Title",
            "Personal Contact",
            "Primary Account Name",
            "Person UId",
            "Integration Id",
            // Owner and team (see `siebel/visibility.rs`).
            "Primary Owner Id",
            "Position Id",
            "Primary Position Id",
            "Organization Id",
        ],
    ),
    (
        "Employee",
        "Employee",
        &["First Name", "Last Name", "Login Name", "EMail Addr", "Phone #", "Job Title", "Position Id", "Primary Position Id"],
    ),
    ("Position", "Position", &["Name", "Parent Position Id", "Organization Id"]),
    (
        "Action",
        "Action",
        &[
            "Type",
            "Display",
            "Description",
            "Comment",
            "Planned",
            "Planned Completion",
            "Due",
            "Done",
            "Status",
            "Priority",
            "Percent Complete",
            "Meeting Location",
            "Primary Owner Id",
            // Participants, comma-separated Ids (the Employees and Contacts multi-value
            // groups): the attendees of a meeting.
            "Employee Id",
            "Contact Id",
            "Private",
            "Integration Id",
            "Position Id",
            "Primary Position Id",
            "Organization Id",
        ],
    ),
];

/// A query selecting more records than this fails unless it passes
/// `ExecutionMode=ForwardOnly` (Oracle REST API guide, "Querying Records Using the
/// ExecutionMode Parameter").
const MAX_SCROLLABLE_ROWS: usize = 9_900;

/// Siebel's date-time format, as `Created` / `Updated` carry it (UTC here).
const DATETIME_FORMAT: &str = "%m/%d/%Y %H:%M:%S";

/// First generated row-id number: base 36 "10000", so generated Ids are 5 characters wide.
const FIRST_ROW_NUMBER: u64 = 36 * 36 * 36 * 36;

/// How the Siebel emulator starts.
#[derive(Debug, Clone)]
pub struct SiebelSimConfig {
    /// The Basic-auth user and password every data request must carry.
    pub credentials: Credentials,
    /// Share of data requests (0.0–1.0) answered with an injected 500/503.
    pub fault_rate: f64,
    /// Seed of the fault injector, so a run can be repeated.
    pub seed: u64,
    /// When set: loaded at start (if it exists) and rewritten after every write.
    pub data_file: Option<PathBuf>,
    /// When set: the OAuth client id/secret `POST /oauth2/token` accepts.
    pub oauth_client: Option<Credentials>,
    /// How long an issued OAuth token is valid.
    pub token_lifetime: Duration,
    /// Further Basic-auth users (not administrators); each is the Employee with that
    /// `Login Name`, seeing what its position allows.
    pub users: Vec<Credentials>,
    /// The time zone of every user's profile (the administrator's too), unless
    /// `user_time_zones` names another: date-times go in and out in it.
    pub time_zone: chrono_tz::Tz,
    /// Logins (any case) whose profile has a time zone of its own.
    pub user_time_zones: Vec<(String, chrono_tz::Tz)>,
}

impl Default for SiebelSimConfig {
    fn default() -> Self {
        Self {
            credentials: Credentials::new("sadmin", "siebel-sim"),
            fault_rate: 0.0,
            seed: 0,
            data_file: None,
            oauth_client: None,
            token_lifetime: Duration::from_secs(3600),
            users: Vec::new(),
            time_zone: chrono_tz::Tz::UTC,
            user_time_zones: Vec::new(),
        }
    }
}

/// One record: field name to text value. Never holds `""` (empty means absent).
pub(crate) type Record = BTreeMap<String, String>;

#[derive(Debug)]
struct Inner {
    credentials: Credentials,
    control: Arc<SimControl>,
    data_file: Option<PathBuf>,
    store: Mutex<Store>,
    oauth_client: Option<Credentials>,
    token_lifetime: Duration,
    /// Issued bearer tokens and when they expire.
    tokens: Mutex<HashMap<String, Instant>>,
    users: Vec<Credentials>,
    /// Session ids handed out in `_sn` cookies.
    sessions: Mutex<std::collections::HashSet<String>>,
    /// Requests that brought a live session cookie back.
    sessions_reused: std::sync::atomic::AtomicU64,
    /// Fields this site's repository lacks ("{BC}/{field}"), left out of `describe`.
    hidden_fields: Mutex<std::collections::HashSet<String>>,
    time_zone: chrono_tz::Tz,
    user_time_zones: Vec<(String, chrono_tz::Tz)>,
}

/// The Siebel REST emulator. Cloning is cheap and shares the same data.
#[derive(Debug, Clone)]
pub struct SiebelSim {
    inner: Arc<Inner>,
}

/// A failed request: status and the `{"ERROR": …}` message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "ERROR": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Siebel\""));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, PUT, DELETE"));
        }
        response
    }
}

fn component_fields(bus_object: &str, bus_comp: &str) -> Option<&'static [&'static str]> {
    COMPONENTS.iter().find(|(bo, bc, _)| *bo == bus_object && *bc == bus_comp).map(|(_, _, fields)| *fields)
}

/// Where a client named a field, which decides Siebel's error code when the component lacks
/// it (codes seen by real clients, `reference/real-server-facts.md`).
#[derive(Debug, Clone, Copy)]
enum FieldUse {
    Write,
    FieldsParameter,
    SearchSpec,
}

impl FieldUse {
    fn unknown(self, field: &str, bus_comp: &str) -> ApiError {
        let message = match self {
            FieldUse::Write => format!(
                "SBL-DAT-00398: Field '{field}' does not exist in definition for business component '{bus_comp}'. \
                 Please ask your systems administrator to check your configuration."
            ),
            FieldUse::FieldsParameter => {
                format!("SBL-EAI-50258: the fields parameter names '{field}', which is not a field of business component '{bus_comp}'")
            }
            FieldUse::SearchSpec => {
                format!("SBL-DAT-00416: the search or sort specification names '{field}', which is not a field of business component '{bus_comp}'")
            }
        };
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

fn component_key(bus_object: &str, bus_comp: &str) -> String {
    format!("{bus_object}/{bus_comp}")
}

fn now_text() -> String {
    chrono::Utc::now().format(DATETIME_FORMAT).to_string()
}

fn row_id(number: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = number;
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    format!("1-{}", String::from_utf8_lossy(&out))
}

/// A client-sent JSON value as stored text: strings as is, numbers as written, booleans as
/// `Y`/`N`, null as empty. Objects and arrays (child records) are refused.
fn json_to_text(field: &str, value: &Json) -> Result<String, String> {
    match value {
        Json::String(text) => Ok(text.clone()),
        Json::Number(number) => Ok(number.to_string()),
        Json::Bool(flag) => Ok(if *flag { "Y" } else { "N" }.to_owned()),
        Json::Null => Ok(String::new()),
        Json::Array(_) | Json::Object(_) => {
            Err(format!("field '{field}' has a list or object value; send field values as text"))
        }
    }
}

fn load_store(path: &Path) -> anyhow::Result<Store> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the Siebel emulator data file {}", path.display()))?;
    let store: Store = serde_json::from_str(&text).with_context(|| {
        format!("the Siebel emulator data file {} is not valid; fix or delete it to start empty", path.display())
    })?;
    Ok(store)
}

/// Writes the store to a temporary file next to `path`, then renames it over `path`.
fn save_store(store: &Store, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(store).context("could not encode the Siebel emulator data")?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, text).with_context(|| format!("could not write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("could not replace {}", path.display()))?;
    Ok(())
}

impl SiebelSim {
    /// Builds the emulator; loads `config.data_file` when it exists.
    pub fn new(config: SiebelSimConfig) -> anyhow::Result<Self> {
        if !(0.0..=1.0).contains(&config.fault_rate) {
            anyhow::bail!("fault rate {} is out of range; use a share between 0 and 1", config.fault_rate);
        }
        let mut store = match &config.data_file {
            Some(path) if path.exists() => load_store(path)?,
            _ => Store::default(),
        };
        store.next_row = store.next_row.max(FIRST_ROW_NUMBER);
        Ok(Self {
            inner: Arc::new(Inner {
                credentials: config.credentials,
                control: SimControl::new(config.fault_rate, config.seed),
                data_file: config.data_file,
                store: Mutex::new(store),
                oauth_client: config.oauth_client,
                token_lifetime: config.token_lifetime,
                tokens: Mutex::new(HashMap::new()),
                sessions: Mutex::new(Default::default()),
                sessions_reused: Default::default(),
                hidden_fields: Mutex::new(Default::default()),
                users: config.users,
                time_zone: config.time_zone,
                user_time_zones: config.user_time_zones,
            }),
        })
    }

    /// The Basic-auth credentials data requests must carry.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// The shared `/_sim` state (stats, fault injection).
    pub fn control(&self) -> Arc<SimControl> {
        self.inner.control.clone()
    }

    /// The HTTP routes: the data API plus `/_sim/stats` and `/_sim/faults`.
    pub fn router(&self) -> Router {
        let data = Router::new()
            .route(&format!("{DATA_PREFIX}/{{bo}}/{{bc}}"), any(collection_route))
            .route(&format!("{DATA_PREFIX}/{{bo}}/{{bc}}/{{id}}"), any(record_route))
            .route(&format!("{DATA_PREFIX}/{{bo}}/{{bc}}/{{id}}/{{child}}"), any(child_collection_route))
            .route(&format!("{DATA_PREFIX}/{{bo}}/{{bc}}/{{id}}/{{child}}/{{child_id}}"), any(child_record_route))
            .route("/oauth2/token", post(token_route))
            .route("/_sim/oauth/revoke", post(revoke_route))
            .fallback(fallback_route)
            .layer(axum::middleware::from_fn_with_state(self.clone(), sessions))
            .with_state(self.clone());
        data.merge(common::control_routes(self.inner.control.clone()))
    }

    /// Serves on `addr` (port 0 picks a free port) until the returned server is dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningServer> {
        RunningServer::start(self.router(), addr).await
    }

    /// Like `serve`, over HTTPS with `tls`'s certificate (`--tls`).
    pub async fn serve_tls(&self, addr: SocketAddr, tls: &crate::tls::SimTls) -> std::io::Result<RunningServer> {
        RunningServer::start_tls(self.router(), addr, tls).await
    }

    /// Inserts a record without HTTP (for seeding demo data); returns the new Id.
    pub fn insert(&self, bus_object: &str, bus_comp: &str, fields: Map<String, Json>) -> anyhow::Result<String> {
        if component_fields(bus_object, bus_comp).is_none() {
            anyhow::bail!("the Siebel emulator has no business component {bus_object}/{bus_comp}");
        }
        let fields = fields
            .iter()
            .map(|(name, value)| json_to_text(name, value).map(|text| (name.clone(), text)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| anyhow::anyhow!(message))?;
        self.check_fields_exist((bus_object, bus_comp), fields.iter().map(|(name, _)| name.as_str()), FieldUse::Write)
            .map_err(|error| anyhow::anyhow!(error.message))?;
        let mut fields = fields;
        self.store_date_times(&self.inner.credentials.user, &mut fields).map_err(|error| anyhow::anyhow!(error.message))?;
        let mut store = self.lock();
        let id = apply_insert(&mut store, bus_object, bus_comp, fields, "SADMIN");
        self.persist(&store).context("the record was inserted but the data file could not be saved")?;
        Ok(id)
    }

    /// A record as the API would return it to the administrator (all fields, date-times in
    /// its time zone), or `None` when absent.
    pub fn get(&self, bus_object: &str, bus_comp: &str, id: &str) -> Option<Map<String, Json>> {
        let fields = component_fields(bus_object, bus_comp)?;
        let store = self.lock();
        let record = store.record(&component_key(bus_object, bus_comp), id)?;
        Some(render_fields(record, fields, None, self.inner.time_zone))
    }

    /// Sets a record's `Updated` (`MM/DD/YYYY HH:MM:SS` in the administrator's time zone)
    /// without HTTP, as a late commit by another application server leaves it (a test aid:
    /// clients cannot write system fields).
    pub fn set_updated(&self, bus_object: &str, bus_comp: &str, id: &str, updated: &str) -> anyhow::Result<()> {
        let stored = time_zone::stored(updated, self.inner.time_zone).map_err(|message| anyhow::anyhow!(message))?;
        let mut store = self.lock();
        store
            .update(&component_key(bus_object, bus_comp), id, |record| record.insert("Updated".into(), stored.clone()))
            .with_context(|| format!("the Siebel emulator has no {bus_object}/{bus_comp} record {id}"))?;
        self.persist(&store).context("Updated was set but the data file could not be saved")
    }

    /// Makes `describe` of `bus_comp` leave `field` out, as on a site whose repository has no
    /// such field (to test what notices it).
    pub fn hide_field(&self, bus_comp: &str, field: &str) {
        self.inner.hidden_fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(format!("{bus_comp}/{field}"));
    }

    /// Refuses the first of `names` that is not a field of the component (a system field or
    /// one of its own, unless [`Self::hide_field`] took it out), as a real Siebel refuses a
    /// field its repository lacks: HTTP 500 with the code for where it was named.
    fn check_fields_exist<'n>(
        &self,
        (bus_object, bus_comp): (&str, &str),
        names: impl IntoIterator<Item = &'n str>,
        used_in: FieldUse,
    ) -> Result<(), ApiError> {
        let own = component_fields(bus_object, bus_comp).unwrap_or(&[]);
        let hidden = self.inner.hidden_fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for name in names {
            let known = SYSTEM_FIELDS.contains(&name) || own.contains(&name);
            if !known || hidden.contains(&format!("{bus_comp}/{name}")) {
                return Err(used_in.unknown(name, bus_comp));
            }
        }
        Ok(())
    }

    /// The time zone of `login`'s profile.
    fn zone_of(&self, login: &str) -> chrono_tz::Tz {
        let own = self.inner.user_time_zones.iter().find(|(user, _)| user.eq_ignore_ascii_case(login));
        own.map_or(self.inner.time_zone, |(_, zone)| *zone)
    }

    /// Reads the date-times of a write in `login`'s time zone and turns them into the stored
    /// UTC; text that is not Siebel's date-time, or a time the zone skips, is refused with
    /// `SBL-DAT-00359` (HTTP 500), as an ISO date is by a real Siebel.
    fn store_date_times(&self, login: &str, fields: &mut [(String, String)]) -> Result<(), ApiError> {
        let zone = self.zone_of(login);
        for (name, value) in fields.iter_mut().filter(|(name, value)| time_zone::is_datetime_field(name) && !value.is_empty()) {
            *value = time_zone::stored(value, zone).map_err(|message| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("SBL-DAT-00359: field '{name}': {message}"))
            })?;
        }
        Ok(())
    }

    /// Sessions opened (cookies handed out) and requests that brought a live one back.
    pub fn sessions(&self) -> (usize, u64) {
        let opened = self.inner.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len();
        (opened, self.inner.sessions_reused.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The sign-in scheme a 401 asks for.
    fn challenge(&self) -> HeaderValue {
        match self.inner.oauth_client {
            Some(_) => HeaderValue::from_static("Bearer realm=\"Siebel\""),
            None => HeaderValue::from_static("Basic realm=\"Siebel\""),
        }
    }

    /// Requests counted so far, by HTTP method.
    pub fn stats(&self) -> common::StatsReport {
        self.inner.control.stats.report()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The login of the request's user: the admin's for its Basic credentials or a live bearer
    /// token, a configured user's for theirs; `None` when not authenticated.
    /// With OAuth configured the profile takes bearer tokens only.
    fn authenticate(&self, headers: &HeaderMap) -> Option<String> {
        if self.inner.oauth_client.is_none() {
            if self.inner.credentials.check_basic(headers) {
                return Some(self.inner.credentials.user.clone());
            }
            if let Some(user) = self.inner.users.iter().find(|user| user.check_basic(headers)) {
                return Some(user.user.clone());
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let token = bearer.map(str::trim)?;
        let tokens = self.inner.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
            .then(|| self.inner.credentials.user.clone())
    }

    fn persist(&self, store: &Store) -> anyhow::Result<()> {
        match &self.inner.data_file {
            Some(path) => save_store(store, path),
            None => Ok(()),
        }
    }
}

/// Adds a record with a fresh Id and the system fields; returns the Id.
fn apply_insert(
    store: &mut Store,
    bus_object: &str,
    bus_comp: &str,
    fields: Vec<(String, String)>,
    user: &str,
) -> String {
    let key = component_key(bus_object, bus_comp);
    let mut id = row_id(store.next_row);
    store.next_row += 1;
    while store.contains(&key, &id) {
        id = row_id(store.next_row);
        store.next_row += 1;
    }
    let now = now_text();
    let mut record = Record::new();
    for (name, text) in fields {
        if !SYSTEM_FIELDS.contains(&name.as_str()) && !text.is_empty() {
            record.insert(name, text);
        }
    }
    record.insert("Id".into(), id.clone());
    record.insert("Created".into(), now.clone());
    record.insert("Created By".into(), user.to_owned());
    record.insert("Updated".into(), now);
    record.insert("Updated By".into(), user.to_owned());
    record.insert("Mod Id".into(), "0".into());
    store.insert(&key, &id, record);
    id
}

/// Updates (or creates with the given Id) a record; returns whether it was created.
fn apply_upsert(store: &mut Store, key: &str, id: &str, fields: Vec<(String, String)>, user: &str) -> bool {
    let now = now_text();
    let existing = store.record(key, id).cloned();
    let created = existing.is_none();
    let mut record = existing.unwrap_or_else(|| {
        Record::from([
            ("Id".to_owned(), id.to_owned()),
            ("Created".to_owned(), now.clone()),
            ("Created By".to_owned(), user.to_owned()),
            ("Mod Id".to_owned(), "-1".to_owned()),
        ])
    });
    for (name, text) in fields {
        if SYSTEM_FIELDS.contains(&name.as_str()) {
            continue;
        }
        if text.is_empty() {
            record.remove(&name);
        } else {
            record.insert(name, text);
        }
    }
    let mod_id = record.get("Mod Id").and_then(|m| m.parse::<i64>().ok()).unwrap_or(0) + 1;
    record.insert("Mod Id".into(), mod_id.to_string());
    record.insert("Updated".into(), now);
    record.insert("Updated By".into(), user.to_owned());
    store.insert(key, id, record);
    created
}

/// A record as JSON: the requested fields (or all component fields plus stored extras), with
/// `Id` always present and absent fields as `""`.
fn render_fields(record: &Record, component: &[&str], wanted: Option<&[String]>, zone: chrono_tz::Tz) -> Map<String, Json> {
    let mut out = Map::new();
    let id = record.get("Id").cloned().unwrap_or_default();
    out.insert("Id".into(), Json::String(id));
    let text = |name: &str| {
        let stored = record.get(name).cloned().unwrap_or_default();
        Json::String(if time_zone::is_shown_in_zone(name) { time_zone::shown(&stored, zone) } else { stored })
    };
    match wanted {
        Some(names) => {
            for name in names {
                out.insert(name.clone(), text(name));
            }
        }
        None => {
            for name in SYSTEM_FIELDS.iter().chain(component.iter()) {
                out.insert((*name).to_owned(), text(name));
            }
            for name in record.keys() {
                out.entry(name.clone()).or_insert_with(|| text(name));
            }
        }
    }
    out
}

/// Query parameters, looked up case-insensitively (Siebel accepts `pagesize` too).
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let raw = raw.unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(raw)?;
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// `ViewMode`, Sales Rep when absent; on reads and writes alike.
    fn view_mode(&self) -> Result<ViewMode, ApiError> {
        match self.get("ViewMode").map(str::trim).filter(|m| !m.is_empty()) {
            None => Ok(ViewMode::SalesRep),
            Some(text) => ViewMode::parse(text).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("ViewMode '{text}' is not supported; use Sales Rep, Personal, Manager, Organization or All"),
                )
            }),
        }
    }

    fn flag(&self, name: &str, truthy: &[&str]) -> bool {
        self.get(name).is_some_and(|value| truthy.iter().any(|t| value.trim().eq_ignore_ascii_case(t)))
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a whole number of 0 or more, got '{text}'"),
                )
            }),
        }
    }
}

/// Decodes `a=b&c=d` with percent-decoding and `+` as space.
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |part: &str| -> Result<String, ApiError> {
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b'%' => {
                    let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                    let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the query string has a bad %-escape"));
                    };
                    out.push(value);
                    i += 3;
                }
                other => {
                    out.push(other);
                    i += 1;
                }
            }
        }
        String::from_utf8(out)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the query string is not valid UTF-8 after decoding"))
    };
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// `Field (DESCENDING), [Other] (ASCENDING), Third` → `(field, descending)` keys.
fn parse_sortspec(text: &str) -> Result<Vec<(String, bool)>, ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, format!("SBL-DAT-00190: invalid sortspec: {detail}"));
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, direction) = match item.find('(') {
                Some(open) => {
                    let Some(inner) = item[open + 1..].strip_suffix(')') else {
                        return Err(bad(format!("'{item}' has an unclosed '('")));
                    };
                    (item[..open].trim(), inner.trim())
                }
                None => (item, "ASCENDING"),
            };
            let name = name.trim_start_matches('[').trim_end_matches(']').trim();
            if name.is_empty() {
                return Err(bad(format!("'{item}' names no field")));
            }
            let descending = match direction.to_ascii_uppercase().as_str() {
                "ASCENDING" | "ASC" => false,
                "DESCENDING" | "DESC" => true,
                other => return Err(bad(format!("direction '{other}' is not ASCENDING or DESCENDING"))),
            };
            Ok((name.to_owned(), descending))
        })
        .collect()
}

/// `http(s)://host` of the request, for absolute links.
fn origin(headers: &HeaderMap) -> String {
    common::origin(headers)
}

fn link(rel: &str, href: String, name: &str) -> Json {
    json!({ "rel": rel, "href": href, "name": name })
}

/// Checks auth and the component and counts the request. Returns the component's field list
/// and the user's login.
fn admit(
    sim: &SiebelSim,
    method: &Method,
    headers: &HeaderMap,
    bus_object: &str,
    bus_comp: &str,
) -> Result<(&'static [&'static str], String), ApiError> {
    sim.inner.control.stats.record(method.as_str());
    let Some(login) = sim.authenticate(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "SBL-UIF-00298: authentication failed; send Basic credentials of a Siebel user or a valid OAuth bearer token",
        ));
    };
    let fields = component_fields(bus_object, bus_comp).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("SBL-EAI-04421: business object '{bus_object}' / business component '{bus_comp}' is not available"),
        )
    })?;
    Ok((fields, login))
}

/// The child component `name` of `bo`/`bc`, or a 404 naming the ones there are.
fn child_link(bo: &str, bc: &str, name: &str) -> Result<&'static ChildLink, ApiError> {
    children::find(bo, bc, name).ok_or_else(|| {
        let known: Vec<&str> = children::links_of(bo, bc).map(|link| link.name).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "SBL-EAI-04421: business component '{bc}' has no child business component '{name}' (it has: {})",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ),
        )
    })
}

/// An injected fault, drawn after a request is validated and before it changes anything.
enum Fault {
    /// Answer this instead of doing the request.
    Reply(Response),
    /// Do the write, then answer 503 (the client never learns the outcome).
    LostReply,
    /// Do the write, then close the connection without any reply.
    Drop,
}

fn unavailable_reply() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "The Siebel server is busy; retry later (injected fault)",
            "errorCode": "SBL-EAI-05001",
        })),
    )
        .into_response()
}

/// Cuts the request's connection, so the reply returned here is never delivered (it is the
/// answer only when the request came without a connection to cut, e.g. in-process).
fn dropped_reply(connection: &ConnectionControl) -> Response {
    if connection.drop_connection() {
        tracing::debug!("Siebel emulator dropped a connection without replying (injected fault)");
    }
    unavailable_reply()
}

/// Draws a fault; `slow` sleeps here and lets the request go on.
async fn inject_fault(sim: &SiebelSim) -> Option<Fault> {
    let faults = &sim.inner.control.faults;
    let mut kinds = vec!["http500", "http503", "drop"];
    let named = faults.settings().kinds;
    for opt_in in ["slow", "lost_reply"] {
        if named.iter().any(|kind| kind == opt_in) {
            kinds.push(opt_in);
        }
    }
    match faults.draw(&kinds)? {
        "http500" => Some(Fault::Reply(
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SBL-EAI-05001: an internal error occurred in the Siebel Application Interface (injected fault)",
            )
            .into_response(),
        )),
        "http503" => Some(Fault::Reply(unavailable_reply())),
        "lost_reply" => Some(Fault::LostReply),
        "drop" => Some(Fault::Drop),
        _ => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            None
        }
    }
}

/// For reads: the reply to give instead of the answer, when a fault was drawn (a lost reply
/// is just a 503; a drop cuts the connection).
async fn inject_read_fault(sim: &SiebelSim, connection: &ConnectionControl) -> Option<Response> {
    match inject_fault(sim).await? {
        Fault::Reply(response) => Some(response),
        Fault::LostReply => Some(unavailable_reply()),
        Fault::Drop => Some(dropped_reply(connection)),
    }
}

/// What becomes of a write's answer once the write is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteFault {
    None,
    LoseReply,
    Drop,
}

/// For writes: `Err(response)` answers at once without writing; otherwise what to do with the
/// answer after writing.
async fn inject_write_fault(sim: &SiebelSim) -> Result<WriteFault, Response> {
    match inject_fault(sim).await {
        Some(Fault::Reply(response)) => Err(response),
        Some(Fault::LostReply) => Ok(WriteFault::LoseReply),
        Some(Fault::Drop) => Ok(WriteFault::Drop),
        None => Ok(WriteFault::None),
    }
}

/// The answer to a write that was carried out, or what the drawn fault makes of it.
fn finish_write(fault: WriteFault, connection: &ConnectionControl, answer: impl FnOnce() -> Response) -> Response {
    match fault {
        WriteFault::None => answer(),
        WriteFault::LoseReply => unavailable_reply(),
        WriteFault::Drop => dropped_reply(connection),
    }
}

/// `POST /oauth2/token`: client credentials grant.
/// Name of the session cookie.
const SESSION_COOKIE: &str = "_sn";

/// Hands out a session cookie on a successful data request that brought none (or a stale
/// one), and counts the requests that brought theirs back. Also puts the profile's scheme in
/// a 401's `WWW-Authenticate`.
async fn sessions(State(sim): State<SiebelSim>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let data_request = request.uri().path().starts_with(DATA_PREFIX);
    let https = common::origin(request.headers()).starts_with("https:");
    let brought = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, sim.challenge());
        return response;
    }
    if !data_request || !response.status().is_success() {
        return response;
    }
    let mut live = sim.inner.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if brought.iter().any(|id| live.contains(id)) {
        sim.inner.sessions_reused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return response;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    live.insert(id.clone());
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/siebel; HttpOnly{}", if https { "; Secure" } else { "" });
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn token_route(State(sim): State<SiebelSim>, headers: HeaderMap, body: Bytes) -> Response {
    sim.inner.control.stats.record("TOKEN");
    let Some(client) = &sim.inner.oauth_client else {
        return ApiError::new(StatusCode::NOT_FOUND, "OAuth is not enabled on this Siebel emulator").into_response();
    };
    let grant_ok = serde_urlencoded_pairs(&String::from_utf8_lossy(&body))
        .map(|pairs| pairs.iter().any(|(k, v)| k == "grant_type" && v == "client_credentials"))
        .unwrap_or(false);
    if !grant_ok {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "unsupported_grant_type" }))).into_response();
    }
    if !client.check_basic(&headers) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" }))).into_response();
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let lifetime = sim.inner.token_lifetime;
    sim.inner
        .tokens
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(token.clone(), Instant::now() + lifetime);
    axum::Json(json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime.as_secs() }))
        .into_response()
}

/// `POST /_sim/oauth/revoke`: forgets every issued token (tests token refresh).
async fn revoke_route(State(sim): State<SiebelSim>) -> StatusCode {
    sim.inner.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    StatusCode::NO_CONTENT
}

/// A component's OpenAPI 2.0 description, as `…/{BO}/{BC}/describe` answers: its fields are
/// the properties of the definition `data_{BO}_{BC}_`.
fn describe(bo: &str, bc: &str, fields: &[&str]) -> Json {
    let definition = format!("data_{bo}_{bc}_");
    let properties: Map<String, Json> =
        SYSTEM_FIELDS.iter().chain(fields).map(|field| (field.to_string(), json!({ "type": "string" }))).collect();
    json!({
        "swagger": "2.0",
        "info": { "description": "Siebel REST API", "version": "1.0", "title": "Siebel REST API" },
        "basePath": "/siebel/v1.0",
        "definitions": { definition.clone(): { "type": "object", "required": [], "properties": properties } },
        "tags": [{ "name": format!("data/{bo}/{bc}/"), "description": format!("Operations available on data/{bo}/{bc}/") }],
        "paths": { format!("/data/{bo}/{bc}/"): { "get": { "tags": [definition], "operationId": format!("data_{bo}_{bc}_/get") } } },
    })
}

/// Parses a POST/PUT body: JSON content type (else 415) holding an object (else 400).
fn write_body(headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type '{content_type}' is not supported; send Content-Type: application/json"),
        ));
    }
    let value: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the request body is not valid JSON: {e}")))?;
    let Json::Object(fields) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request body must be a JSON object of field names to values",
        ));
    };
    fields
        .iter()
        .map(|(name, value)| json_to_text(name, value).map(|text| (name.clone(), text)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))
}


/// `Created By` / `Updated By` of the request's user.
fn stamp_name(login: &str) -> String {
    login.to_ascii_uppercase()
}

/// The answer to a write: `{"items": {...fields, "Id", "Link": self}}` with `status`.
fn write_reply(
    sim: &SiebelSim,
    login: &str,
    (bo, bc): (&str, &str),
    id: &str,
    (self_href, link_name): (String, &str),
    status: StatusCode,
) -> Response {
    let component = component_fields(bo, bc).unwrap_or(&[]);
    let store = sim.lock();
    let record = store.record(&component_key(bo, bc), id);
    let mut item = record.map(|r| render_fields(r, component, None, sim.zone_of(login))).unwrap_or_default();
    item.insert("Id".into(), Json::String(id.to_owned()));
    item.insert("Link".into(), link("self", self_href, link_name));
    (status, axum::Json(json!({ "items": item }))).into_response()
}

fn persist_or_error(sim: &SiebelSim, store: &Store) -> Result<(), ApiError> {
    sim.persist(store).map_err(|error| {
        tracing::error!(error = format!("{error:#}"), "Siebel emulator could not save its data file");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the data file could not be saved: {error:#}"))
    })
}


async fn collection_route(
    State(sim): State<SiebelSim>,
    method: Method,
    UrlPath((bo, bc)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    connection: ConnectionControl,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (_, login) = admit(&sim, &method, &headers, &bo, &bc)?;
        match method {
            Method::GET => {
                let params = QueryParams::parse(query.as_deref())?;
                if let Some(response) = inject_read_fault(&sim, &connection).await {
                    return Ok(response);
                }
                let scope = Scope::Component { id: None };
                query_records(&sim, &headers, &login, (&bo, &bc), scope, &params, query.as_deref())
            }
            Method::POST => {
                let fields = write_body(&headers, &body)?;
                sim.check_fields_exist((&bo, &bc), fields.iter().map(|(name, _)| name.as_str()), FieldUse::Write)?;
                let mut fields = fields;
                sim.store_date_times(&login, &mut fields)?;
                rules::check_write(&bc, &fields)?;
                let fault = match inject_write_fault(&sim).await {
                    Ok(fault) => fault,
                    Err(response) => return Ok(response),
                };
                let id = {
                    let mut store = sim.lock();
                    let id = apply_insert(&mut store, &bo, &bc, fields, &stamp_name(&login));
                    persist_or_error(&sim, &store)?;
                    id
                };
                tracing::debug!(bo, bc, id, ?fault, "Siebel emulator inserted a record");
                Ok(finish_write(fault, &connection, || {
                    let href = format!("{}{DATA_PREFIX}/{bo}/{bc}/{id}", origin(&headers));
                    write_reply(&sim, &login, (&bo, &bc), &id, (href, &bc), StatusCode::OK)
                }))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on a business component; use GET to query or POST to insert"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn record_route(
    State(sim): State<SiebelSim>,
    method: Method,
    UrlPath((bo, bc, id)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    connection: ConnectionControl,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (fields, login) = admit(&sim, &method, &headers, &bo, &bc)?;
        let key = component_key(&bo, &bc);
        match method {
            Method::GET if id == "describe" => {
                let hidden = sim.inner.hidden_fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                let shown: Vec<&str> = fields.iter().copied().filter(|field| !hidden.contains(&format!("{bc}/{field}"))).collect();
                Ok(axum::Json(describe(&bo, &bc, &shown)).into_response())
            }
            Method::GET => {
                let params = QueryParams::parse(query.as_deref())?;
                if let Some(response) = inject_read_fault(&sim, &connection).await {
                    return Ok(response);
                }
                let scope = Scope::Component { id: Some(&id) };
                query_records(&sim, &headers, &login, (&bo, &bc), scope, &params, query.as_deref())
            }
            Method::PUT => {
                let view_mode = QueryParams::parse(query.as_deref())?.view_mode()?;
                let fields = write_body(&headers, &body)?;
                sim.check_fields_exist((&bo, &bc), fields.iter().map(|(name, _)| name.as_str()), FieldUse::Write)?;
                let mut fields = fields;
                sim.store_date_times(&login, &mut fields)?;
                rules::check_write(&bc, &fields)?;
                let fault = match inject_write_fault(&sim).await {
                    Ok(fault) => fault,
                    Err(response) => return Ok(response),
                };
                {
                    let mut store = sim.lock();
                    if !sees_if_there(&store, &key, &id, &login, view_mode) {
                        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {bc} record has Id '{id}'")));
                    }
                    let created = apply_upsert(&mut store, &key, &id, fields, &stamp_name(&login));
                    persist_or_error(&sim, &store)?;
                    tracing::debug!(bo, bc, id, created, ?fault, "Siebel emulator upserted a record");
                }
                Ok(finish_write(fault, &connection, || {
                    let href = format!("{}{DATA_PREFIX}/{bo}/{bc}/{id}", origin(&headers));
                    write_reply(&sim, &login, (&bo, &bc), &id, (href, &bc), StatusCode::OK)
                }))
            }
            Method::DELETE => {
                let view_mode = QueryParams::parse(query.as_deref())?.view_mode()?;
                let fault = match inject_write_fault(&sim).await {
                    Ok(fault) => fault,
                    Err(response) => return Ok(response),
                };
                {
                    let mut store = sim.lock();
                    if !sees_if_there(&store, &key, &id, &login, view_mode) {
                        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {bc} record has Id '{id}'")));
                    }
                    let removed = store.remove(&key, &id);
                    if removed.is_none() {
                        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {bc} record has Id '{id}'")));
                    }
                    persist_or_error(&sim, &store)?;
                }
                tracing::debug!(bo, bc, id, ?fault, "Siebel emulator deleted a record");
                Ok(finish_write(fault, &connection, || StatusCode::NO_CONTENT.into_response()))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on a record; use GET, PUT (upsert) or DELETE"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `…/{bo}/{bc}/{id}/{child}`: GET queries the parent's children.
async fn child_collection_route(
    State(sim): State<SiebelSim>,
    method: Method,
    UrlPath((bo, bc, id, child)): UrlPath<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    connection: ConnectionControl,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (_, login) = admit(&sim, &method, &headers, &bo, &bc)?;
        let link = child_link(&bo, &bc, &child)?;
        if method != Method::GET {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on child records; use GET to query, or PUT …/{}/{{Id}} to upsert one", link.name),
            ));
        }
        let params = QueryParams::parse(query.as_deref())?;
        if let Some(response) = inject_read_fault(&sim, &connection).await {
            return Ok(response);
        }
        let scope = Scope::Children { parent_id: &id, link, child_id: None };
        query_records(&sim, &headers, &login, (&bo, &bc), scope, &params, query.as_deref())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `…/{bo}/{bc}/{id}/{child}/{child_id}`: GET reads one child; PUT upserts it and ties it to
/// the parent (201 when that made a new record or tie, 200 otherwise).
#[allow(clippy::too_many_arguments)]
async fn child_record_route(
    State(sim): State<SiebelSim>,
    method: Method,
    UrlPath((bo, bc, id, child, child_id)): UrlPath<(String, String, String, String, String)>,
    RawQuery(query): RawQuery,
    connection: ConnectionControl,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (_, login) = admit(&sim, &method, &headers, &bo, &bc)?;
        let link = child_link(&bo, &bc, &child)?;
        match method {
            Method::GET => {
                let params = QueryParams::parse(query.as_deref())?;
                if let Some(response) = inject_read_fault(&sim, &connection).await {
                    return Ok(response);
                }
                let scope = Scope::Children { parent_id: &id, link, child_id: Some(&child_id) };
                query_records(&sim, &headers, &login, (&bo, &bc), scope, &params, query.as_deref())
            }
            Method::PUT => {
                let view_mode = QueryParams::parse(query.as_deref())?.view_mode()?;
                let fields = write_body(&headers, &body)?;
                // The fields are the child's: checked against the child's component.
                sim.check_fields_exist(link.target, fields.iter().map(|(name, _)| name.as_str()), FieldUse::Write)?;
                let mut fields = fields;
                sim.store_date_times(&login, &mut fields)?;
                rules::check_write(link.target.1, &fields)?;
                let fault = match inject_write_fault(&sim).await {
                    Ok(fault) => fault,
                    Err(response) => return Ok(response),
                };
                let status = {
                    let mut store = sim.lock();
                    if !sees_if_there(&store, &component_key(&bo, &bc), &id, &login, view_mode) {
                        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {bc} record has Id '{id}'")));
                    }
                    let made = upsert_child(&mut store, (&bo, &bc), &id, link, &child_id, fields, &stamp_name(&login))?;
                    persist_or_error(&sim, &store)?;
                    if made { StatusCode::CREATED } else { StatusCode::OK }
                };
                tracing::debug!(bo, bc, id, child = link.name, child_id, ?fault, "Siebel emulator upserted a child record");
                Ok(finish_write(fault, &connection, || {
                    let href = format!("{}{DATA_PREFIX}/{bo}/{bc}/{id}/{}/{child_id}", origin(&headers), link.name);
                    write_reply(&sim, &login, link.target, &child_id, (href, link.name), status)
                }))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on a child record; use GET or PUT (upsert)"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Whether `login` sees record `id` of component `key` under `mode`, or it does not exist
/// (an upsert may make it). A write to a record the caller cannot see is answered as one to an
/// absent record: 404, as the query for it would find nothing.
fn sees_if_there(store: &Store, key: &str, id: &str, login: &str, mode: ViewMode) -> bool {
    match store.record(key, id) {
        None => true,
        Some(_) if mode == ViewMode::All => true,
        Some(record) => Viewer::resolve(store.components(), login).sees(record, mode, store.components()),
    }
}

/// Upserts child `child_id` of `link` and ties it to parent `parent_id`; returns whether a new
/// record or tie was made. The parent must exist.
fn upsert_child(
    store: &mut Store,
    (bo, bc): (&str, &str),
    parent_id: &str,
    link: &ChildLink,
    child_id: &str,
    fields: Vec<(String, String)>,
    user: &str,
) -> Result<bool, ApiError> {
    let parent_key = component_key(bo, bc);
    if !store.contains(&parent_key, parent_id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {bc} record has Id '{parent_id}'")));
    }
    let child_key = component_key(link.target.0, link.target.1);
    let created = apply_upsert(store, &child_key, child_id, fields, user);
    let lost = || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the upserted child record vanished");
    let mut child = store.remove(&child_key, child_id).ok_or_else(lost)?;
    let tied = store.update(&parent_key, parent_id, |parent| link.tie(parent_id, parent, child_id, &mut child)).unwrap_or(false);
    store.insert(&child_key, child_id, child);
    Ok(created || tied)
}

async fn fallback_route(State(sim): State<SiebelSim>, method: Method, headers: HeaderMap) -> Response {
    sim.inner.control.stats.record(method.as_str());
    if sim.authenticate(&headers).is_none() {
        return ApiError::new(StatusCode::UNAUTHORIZED, "SBL-UIF-00298: authentication failed").into_response();
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such resource; the data API is {DATA_PREFIX}/{{BusObject}}/{{BusComp}}[/{{Id}}[/{{ChildBusComp}}[/{{ChildId}}]]]"
        ),
    )
    .into_response()
}

/// Which records a GET reads.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    /// The records of the component in the URL (one, when `id` is set).
    Component { id: Option<&'a str> },
    /// The `link` children of a parent record of the component in the URL (one, when
    /// `child_id` is set).
    Children { parent_id: &'a str, link: &'static ChildLink, child_id: Option<&'a str> },
}

/// Which child links query replies carry (`childlinks`).
enum ChildLinksWanted {
    All,
    Named(Vec<String>),
}

impl ChildLinksWanted {
    fn parse(params: &QueryParams) -> Self {
        match params.get("childlinks").map(str::trim) {
            None | Some("") => Self::All,
            Some(list) => Self::Named(
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("none"))
                    .map(str::to_owned)
                    .collect(),
            ),
        }
    }

    fn wants(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Named(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// GET: a query over a component, one record, or a parent's children.
fn query_records(
    sim: &SiebelSim,
    headers: &HeaderMap,
    login: &str,
    (bo, bc): (&str, &str),
    scope: Scope<'_>,
    params: &QueryParams,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let page_size = params.number("PageSize", 10)?;
    // Oracle documents a maximum of 100. Whether a larger request is clamped or refused is
    // not documented: the emulator refuses it (the stricter reading), so a client that asks
    // for more fails here and not on a real server.
    if page_size == 0 || page_size > 100 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("PageSize must be between 1 and 100, not {page_size}")));
    }
    let page_size = page_size as usize;
    let start = usize::try_from(params.number("StartRowNum", 0)?).unwrap_or(usize::MAX);
    let zone = sim.zone_of(login);
    let spec = match params.get("searchspec").map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => {
            let mut spec = parse_searchspec(text)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("SBL-DAT-00190: {e}")))?;
            // A date-time compared with a date-time field is the user's, in their zone.
            spec.convert_literals(&|field, literal| {
                (time_zone::is_shown_in_zone(field) && parse_siebel_datetime(literal).is_some())
                    .then(|| time_zone::stored(literal, zone).ok())
                    .flatten()
            });
            Some(spec)
        }
        None => None,
    };
    let wanted: Option<Vec<String>> = params.get("fields").map(|list| {
        list.split(',').map(str::trim).filter(|f| !f.is_empty() && *f != "Id").map(str::to_owned).collect()
    });
    let sort_keys = match params.get("sortspec").map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => parse_sortspec(text)?,
        None => Vec::new(),
    };
    let view_mode = params.view_mode()?;
    let forward_only = params.get("ExecutionMode").is_some_and(|mode| mode.trim().eq_ignore_ascii_case("ForwardOnly"));
    let child_links = ChildLinksWanted::parse(params);
    let uniform = params.flag("uniformresponse", &["y", "yes", "true"]);
    let count_needed = params.flag("recordcountneeded", &["true", "y", "yes"]);

    let origin = origin(headers);
    let parent_href = format!("{origin}{DATA_PREFIX}/{bo}/{bc}");
    let (target, link_name) = match scope {
        Scope::Component { .. } => ((bo, bc), bc),
        Scope::Children { link, .. } => (link.target, link.name),
    };
    let component = component_fields(target.0, target.1).unwrap_or(&[]);
    sim.check_fields_exist(target, wanted.iter().flatten().map(String::as_str), FieldUse::FieldsParameter)?;
    let named = spec.iter().flat_map(|spec| spec.fields()).chain(sort_keys.iter().map(|(name, _)| name.as_str()));
    sim.check_fields_exist(target, named, FieldUse::SearchSpec)?;
    let target_key = component_key(target.0, target.1);
    let (total, page) = {
        let mut guard = sim.lock();
        if let Some(spec) = &spec {
            guard.prepare(&target_key, spec);
        }
        let store = &*guard;
        let viewer: OnceCell<Viewer> = OnceCell::new();
        let sees = |record: &Record| {
            view_mode == ViewMode::All
                || viewer.get_or_init(|| Viewer::resolve(store.components(), login)).sees(record, view_mode, store.components())
        };
        let empty = BTreeMap::new();
        let records_of = |(bo, bc): (&str, &str)| store.records(&component_key(bo, bc)).unwrap_or(&empty);
        let absent = |what: &str, id: &str| ApiError::new(StatusCode::NOT_FOUND, format!("no {what} record has Id '{id}'"));
        let candidates: Vec<&Record> = match scope {
            Scope::Component { id: Some(id) } => match records_of((bo, bc)).get(id) {
                Some(record) if sees(record) => vec![record],
                _ => return Err(absent(bc, id)),
            },
            // Only the records the indexes leave (all without a usable one); the searchspec is
            // still evaluated on each below.
            Scope::Component { id: None } => {
                store.candidates(&target_key, spec.as_ref()).into_iter().filter(|record| sees(record)).collect()
            }
            Scope::Children { parent_id, link, child_id } => {
                let parent = match records_of((bo, bc)).get(parent_id) {
                    Some(parent) if sees(parent) => parent,
                    _ => return Err(absent(bc, parent_id)),
                };
                let related: Vec<&Record> = match child_id {
                    Some(child_id) => records_of(link.target).get(child_id).into_iter().collect(),
                    None => store.candidates(&target_key, spec.as_ref()),
                };
                let related: Vec<&Record> = related
                    .into_iter()
                    .filter(|child| {
                        let child_id = child.get("Id").map(String::as_str).unwrap_or("");
                        // Visibility is the parent's: a parent the caller sees shows all
                        // its children, as a Siebel view of the parent does.
                        link.relates(parent_id, parent, child_id, child)
                    })
                    .collect();
                if let (Some(child_id), true) = (child_id, related.is_empty()) {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("{bc} record '{parent_id}' has no {} child with Id '{child_id}'", link.name),
                    ));
                }
                related
            }
        };
        let mut matching: Vec<&Record> = candidates
            .into_iter()
            .filter(|record| {
                spec.as_ref().is_none_or(|spec| spec.matches(&|name| record.get(name).map(String::as_str)))
            })
            .collect();
        if !sort_keys.is_empty() {
            // A stable sort: ties keep Id order.
            matching.sort_by(|a, b| {
                sort_keys
                    .iter()
                    .map(|(field, descending)| {
                        let left = a.get(field).map(String::as_str).unwrap_or("");
                        let right = b.get(field).map(String::as_str).unwrap_or("");
                        let ordering = searchspec::compare_values(left, right);
                        if *descending { ordering.reverse() } else { ordering }
                    })
                    .find(|ordering| ordering.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        let total = matching.len();
        if total > MAX_SCROLLABLE_ROWS && !forward_only {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the query selects {total} {} records, more than {MAX_SCROLLABLE_ROWS}; pass ExecutionMode=ForwardOnly to read them",
                    target.1
                ),
            ));
        }
        let page: Vec<Map<String, Json>> = matching
            .into_iter()
            .skip(start)
            .take(page_size)
            .map(|record| {
                let mut item = render_fields(record, component, wanted.as_deref(), zone);
                let id = record.get("Id").cloned().unwrap_or_default();
                let links = match scope {
                    Scope::Component { .. } => {
                        let href = format!("{parent_href}/{id}");
                        let mut links = vec![link("self", href.clone(), bc), link("canonical", href.clone(), bc)];
                        for child in children::links_of(bo, bc).filter(|child| child_links.wants(child.name)) {
                            links.push(link("child", format!("{href}/{}", child.name), child.name));
                        }
                        links
                    }
                    Scope::Children { parent_id, link: child, .. } => {
                        let (target_bo, target_bc) = child.target;
                        vec![
                            link("self", format!("{parent_href}/{parent_id}/{}/{id}", child.name), child.name),
                            link("canonical", format!("{origin}{DATA_PREFIX}/{target_bo}/{target_bc}/{id}"), child.name),
                            link("parent", format!("{parent_href}/{parent_id}"), bc),
                        ]
                    }
                };
                item.insert("Link".into(), Json::Array(links));
                item
            })
            .collect();
        (total, page)
    };

    let mut response = if page.is_empty() {
        // Documented: "an empty page may return 204".
        StatusCode::NO_CONTENT.into_response()
    } else {
        let items = if uniform || page.len() > 1 {
            Json::Array(page.into_iter().map(Json::Object).collect())
        } else {
            page.into_iter().next().map(Json::Object).unwrap_or(Json::Null)
        };
        let mut self_href = parent_href.clone();
        match scope {
            Scope::Component { id: Some(id) } => self_href.push_str(&format!("/{id}")),
            Scope::Component { id: None } => {}
            Scope::Children { parent_id, link, child_id } => {
                self_href.push_str(&format!("/{parent_id}/{}", link.name));
                if let Some(child_id) = child_id {
                    self_href.push_str(&format!("/{child_id}"));
                }
            }
        }
        if let Some(raw) = raw_query.filter(|q| !q.is_empty()) {
            self_href.push('?');
            self_href.push_str(raw);
        }
        let body = json!({ "items": items, "Link": [link("self", self_href, link_name)] });
        (StatusCode::OK, axum::Json(body)).into_response()
    };
    if count_needed {
        // Documented: the accessible records of the last business component in the URL.
        response.headers_mut().insert("Total-Record-Count", HeaderValue::from(total as u64));
    }
    Ok(response)
}
