//! EWS emulator: `POST /EWS/Exchange.asmx` (SOAP 1.1, `ExchangeImpersonation`) over an
//! in-memory store of contacts, calendar items and tasks, so Tandem's tests and demo run
//! without an Exchange server. Replies validate against `shared/spec/ews`. Callers sign in
//! with the schemes `auth` names (`signin`): Basic by default, NTLM and Negotiate as a fresh
//! Exchange 2016/2019 offers them.
//!
//! Operations: SyncFolderHierarchy, SyncFolderItems, GetItem, CreateItem, UpdateItem,
//! DeleteItem, FindItem (IndexedPageItemView and CalendarView), GetFolder, Subscribe
//! (streaming), Unsubscribe and GetStreamingEvents (a chunked reply that stays open).
//! `RequestServerVersion` is checked (`ErrorInvalidServerVersion`) and echoed in
//! `t:ServerVersionInfo`.
//! Recurring calendar series (`calendar`, `recurrence`): the store keeps masters only, which
//! is all SyncFolderItems reports; CalendarView expands them into occurrences and exceptions;
//! occurrences have ids of their own and can be read (also by `t:OccurrenceItemId` and
//! `t:RecurringMasterItemId`), changed (they become exceptions) and deleted.
//! Fault kinds for `POST /_sim/faults`: `server-busy` (HTTP 500 SOAP fault `ErrorServerBusy`
//! with `BackOffMilliseconds`) and `http503`, which change nothing; and, only when named in
//! `kinds`, `slow` (the reply comes [`SLOW_REPLY_DELAY`] late) and `drop` (the request IS
//! carried out, then the connection is closed without a reply, like a lost answer).

mod calendar;
mod folders;
mod notify;
pub mod ntlm;
pub mod oauth;
mod ops;
mod recurrence;
pub mod schema_check;
mod signin;
pub mod spnego;
mod store;
mod version;
pub use signin::AuthScheme;
pub use tandem_ews_wire as wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::common::{self, ConnectionControl, Credentials, RunningServer, SimControl};
use ops::Fault;
use store::Store;
use wire::{Element, ExtendedKey, ItemKind, WireItem, WireValue, XmlOut};

/// The fault kinds this emulator injects by default.
pub const FAULT_KINDS: &[&str] = &["server-busy", "http503"];
/// Fault kinds injected only when `POST /_sim/faults` names them in `kinds`.
pub const OPT_IN_FAULT_KINDS: &[&str] = &["slow", "drop"];
/// How late a reply comes under the `slow` fault.
pub const SLOW_REPLY_DELAY: std::time::Duration = std::time::Duration::from_millis(250);
/// The `ServerVersionInfo` `Version` of replies to requests that could not be read.
const UNVERSIONED_REPLY: &str = "V2017_07_11";
/// The `BackOffMilliseconds` hint sent with injected `ErrorServerBusy` faults.
pub const SERVER_BUSY_BACK_OFF_MS: u64 = 200;
/// The extended property Tandem keeps its sync id in (`PublicStrings`, `String`).
pub const SYNC_ID_PROPERTY: &str = "TandemSyncId";

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct EwsSimConfig {
    /// The one service account: `user` may be `DOMAIN\user` or a UPN (see
    /// [`ntlm::Account::from_login`] for the domain NTLM gives a bare name).
    pub credentials: Credentials,
    /// The sign-in schemes offered and accepted (`--auth`); Basic by default.
    pub auth: Vec<AuthScheme>,
    /// Share of requests that get an injected fault at start (0.0–1.0).
    pub fault_rate: f64,
    /// Seed for fault injection, so runs repeat.
    pub seed: u64,
    /// When set, only these mailboxes exist (others get `ErrorNonExistentMailbox`);
    /// otherwise a mailbox is created on first use.
    pub mailboxes: Option<Vec<String>>,
    /// When set, every request and reply body is written here as
    /// `NNNNNN-<Operation>-request.xml` / `-response.xml`. Bodies that are not XML (an
    /// unparseable request, a 503 text reply) get a `.txt` extension instead.
    pub capture_dir: Option<PathBuf>,
    /// When set, the store is loaded from this JSON file (if present) and saved after writes.
    pub data_file: Option<PathBuf>,
    /// When set, GetStreamingEvents connections close (`ConnectionStatus` `Closed`) after
    /// this long even if the client asked for longer (tests of reconnecting).
    pub streaming_connection_limit: Option<std::time::Duration>,
    /// The app (client id and secret) the token endpoint `POST /oauth2/v2.0/token` knows,
    /// for `--auth oauth`.
    pub oauth_app: Credentials,
    /// How long an issued token is valid.
    pub token_lifetime: std::time::Duration,
}

impl Default for EwsSimConfig {
    fn default() -> Self {
        Self {
            credentials: Credentials::new("svc-tandem", "ews-sim"),
            auth: vec![AuthScheme::Basic],
            fault_rate: 0.0,
            seed: 0,
            mailboxes: None,
            capture_dir: None,
            data_file: None,
            streaming_connection_limit: None,
            oauth_app: Credentials::new("tandem-ews-app", "ews-app-secret"),
            token_lifetime: std::time::Duration::from_secs(3599),
        }
    }
}

/// The EWS emulator; clones share one store.
#[derive(Clone)]
pub struct EwsSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EwsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EwsSim")
            .field("user", &self.inner.config.credentials.user)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: EwsSimConfig,
    sign_in: signin::SignIn,
    control: Arc<SimControl>,
    store: Mutex<Store>,
    capture_seq: AtomicU64,
    /// Signalled after every change, to wake open GetStreamingEvents connections.
    changed: tokio::sync::broadcast::Sender<()>,
}

impl EwsSim {
    pub fn new(config: EwsSimConfig) -> anyhow::Result<Self> {
        let store = match &config.data_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading EWS data file {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing EWS data file {}", path.display()))?
            }
            _ => Store::default(),
        };
        if let Some(dir) = &config.capture_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating capture folder {}", dir.display()))?;
        }
        let control = SimControl::new(config.fault_rate, config.seed);
        let schemes = if config.auth.is_empty() { vec![AuthScheme::Basic] } else { config.auth.clone() };
        let tokens = oauth::TokenIssuer::new(config.oauth_app.clone(), config.token_lifetime);
        let sign_in = signin::SignIn::new(schemes, config.credentials.clone(), tokens);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sign_in,
                control,
                store: Mutex::new(store),
                capture_seq: AtomicU64::new(0),
                changed: tokio::sync::broadcast::channel(256).0,
            }),
        })
    }

    /// `POST /EWS/Exchange.asmx` plus the shared `/_sim` routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/EWS/Exchange.asmx", post(handle))
            .route("/ews/exchange.asmx", post(handle))
            .route(oauth::TOKEN_PATH, post(token_route))
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

    /// The service account's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.config.credentials
    }

    /// The sign-in schemes offered, in the order of the `WWW-Authenticate` headers.
    pub fn auth_schemes(&self) -> &[AuthScheme] {
        &self.inner.sign_in.schemes
    }

    /// The app the token endpoint (`{base}/oauth2/v2.0/token`) issues bearer tokens to.
    pub fn oauth_app(&self) -> &Credentials {
        self.inner.sign_in.tokens.app()
    }

    /// Forgets every issued bearer token: the next request with one gets a 401.
    pub fn revoke_tokens(&self) {
        self.inner.sign_in.tokens.revoke_all();
    }

    /// Forgets the NTLM/Negotiate sign-in of every open connection, as a recycled IIS
    /// application pool does: the next request on one is answered 401.
    pub fn forget_sign_ins(&self) {
        self.inner.sign_in.forget_sign_ins();
    }

    /// Creates a contact directly (no HTTP); `fields` are flat names as the connector uses
    /// them (`GivenName`, `EmailAddress1`, `BusinessCity`; `Categories` comma-separated;
    /// `TandemSyncId` sets the sync-id extended property).
    pub fn create_contact(&self, mailbox: &str, fields: &[(&str, &str)]) -> anyhow::Result<String> {
        self.create_item(mailbox, "contacts", fields)
    }

    /// Creates an item directly in `folder` (`contacts`, `calendar` or `tasks`).
    pub fn create_item(
        &self,
        mailbox: &str,
        folder: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let kind = ItemKind::from_folder_id(folder)
            .with_context(|| format!("unknown folder '{folder}'"))?;
        let mut item = WireItem::new(kind);
        for (name, value) in fields {
            if *name == SYNC_ID_PROPERTY {
                item.extended.push((
                    ExtendedKey::public_string(SYNC_ID_PROPERTY),
                    (*value).to_owned(),
                ));
            } else {
                item.fields
                    .insert((*name).to_owned(), direct_value(kind, name, value)?);
            }
        }
        let mailbox = mailbox.to_ascii_lowercase();
        if kind == ItemKind::CalendarItem {
            // As in Exchange, the mailbox owner organizes what is created in it.
            item.fields.insert(
                "Organizer".into(),
                WireValue::Text(ops::organizer_markup(&mailbox)),
            );
        }
        let mut store = self.store();
        let (id, _) = store.create(&mailbox, kind, item);
        drop(store);
        self.save();
        self.notify_changed();
        Ok(id)
    }

    /// Sets (or, with an empty value, removes) fields of an item directly, as a user editing
    /// it in Outlook would (`TandemSyncId` included); the item gets a new ChangeKey, which is
    /// returned.
    pub fn update_item_fields(
        &self,
        mailbox: &str,
        item_id: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mailbox = mailbox.to_ascii_lowercase();
        let mut store = self.store();
        let (kind, current) = store
            .mailboxes
            .get(&mailbox)
            .and_then(|m| m.item(item_id))
            .map(|(kind, item)| (kind, item.clone()))
            .with_context(|| format!("no item {item_id} in {mailbox}"))?;
        let mut updated = current;
        for (name, value) in fields {
            if *name == SYNC_ID_PROPERTY {
                let key = ExtendedKey::public_string(SYNC_ID_PROPERTY);
                updated.extended.retain(|(k, _)| *k != key);
                if !value.is_empty() {
                    updated.extended.push((key, (*value).to_owned()));
                }
            } else if value.is_empty() {
                updated.fields.remove(*name);
            } else {
                updated
                    .fields
                    .insert((*name).to_owned(), direct_value(kind, name, value)?);
            }
        }
        if let Some((_, before)) = store.mailboxes.get(&mailbox).and_then(|m| m.item(item_id)) {
            calendar::reset_edits_if_series_changed(before, &mut updated);
        }
        let change_key = store
            .replace(&mailbox, kind, updated)
            .context("item vanished")?;
        drop(store);
        self.save();
        self.notify_changed();
        Ok(change_key)
    }

    /// Deletes an item directly; false when it does not exist.
    pub fn delete_item(&self, mailbox: &str, item_id: &str) -> bool {
        let deleted = self.store().delete(&mailbox.to_ascii_lowercase(), item_id);
        if deleted {
            self.save();
            self.notify_changed();
        }
        deleted
    }

    /// A contact's fields as text (lists joined with `, `), or `None` when it does not exist.
    pub fn contact_fields(&self, mailbox: &str, item_id: &str) -> Option<BTreeMap<String, String>> {
        let store = self.store();
        let (kind, item) = store
            .mailboxes
            .get(&mailbox.to_ascii_lowercase())?
            .item(item_id)?;
        (kind == ItemKind::Contact).then(|| ops::text_fields(item))
    }

    /// The `TandemSyncId` extended property of an item, if set.
    pub fn sync_id(&self, mailbox: &str, item_id: &str) -> Option<String> {
        let key = ExtendedKey::public_string(SYNC_ID_PROPERTY);
        let store = self.store();
        let (_, item) = store
            .mailboxes
            .get(&mailbox.to_ascii_lowercase())?
            .item(item_id)?;
        item.extended
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// Number of items in a mailbox folder (`contacts`, `calendar` or `tasks`).
    pub fn item_count(&self, mailbox: &str, folder: &str) -> usize {
        let Some(kind) = ItemKind::from_folder_id(folder) else {
            return 0;
        };
        let store = self.store();
        store
            .mailboxes
            .get(&mailbox.to_ascii_lowercase())
            .and_then(|m| m.folders.get(&kind))
            .map_or(0, |f| f.items.len())
    }

    /// The ids of the items in a mailbox folder (`contacts`, `calendar` or `tasks`).
    pub fn item_ids(&self, mailbox: &str, folder: &str) -> Vec<String> {
        let Some(kind) = ItemKind::from_folder_id(folder) else {
            return Vec::new();
        };
        let store = self.store();
        store
            .mailboxes
            .get(&mailbox.to_ascii_lowercase())
            .and_then(|m| m.folders.get(&kind))
            .map(|f| f.items.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> common::StatsReport {
        self.inner.control.stats.report()
    }

    /// Sets fault injection, as `POST /_sim/faults` does.
    pub fn set_faults(&self, settings: common::FaultSettings) {
        self.inner.control.faults.set(settings);
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.inner
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the store to the data file, if one is configured (best effort, logged).
    fn save(&self) {
        let Some(path) = &self.inner.config.data_file else {
            return;
        };
        let json = match serde_json::to_string(&*self.store()) {
            Ok(json) => json,
            Err(error) => {
                tracing::warn!(%error, "could not serialise the EWS emulator store");
                return;
            }
        };
        if let Err(error) = write_atomically(path, json.as_bytes()) {
            tracing::warn!(%error, path = %path.display(), "could not save the EWS emulator store");
        }
    }

    fn capture(&self, seq: u64, operation: &str, direction: &str, body: &[u8], xml: bool) {
        let Some(dir) = &self.inner.config.capture_dir else {
            return;
        };
        let extension = if xml { "xml" } else { "txt" };
        let path = dir.join(format!("{seq:06}-{operation}-{direction}.{extension}"));
        if let Err(error) = write_atomically(&path, body) {
            tracing::warn!(%error, path = %path.display(), "could not write EWS capture file");
        }
    }

    /// The mailbox a request acts on, or the fault to answer when it does not exist.
    fn mailbox_for(&self, envelope: &Element) -> Result<String, Fault> {
        let sid = envelope.path(&["Header", "ExchangeImpersonation", "ConnectingSID"]);
        let address = sid.and_then(|sid| {
            ["PrimarySmtpAddress", "SmtpAddress", "PrincipalName"]
                .iter()
                .find_map(|name| sid.child_text(name))
        });
        let mailbox = match address {
            Some(address) => address.to_ascii_lowercase(),
            None if sid.is_some() => {
                return Err(Fault {
                    code: "ErrorInvalidExchangeImpersonationHeaderData",
                    message:
                        "ConnectingSID needs a PrimarySmtpAddress, SmtpAddress or PrincipalName."
                            .into(),
                });
            }
            None => return Ok(self.inner.config.credentials.user.to_ascii_lowercase()),
        };
        if let Some(allowed) = &self.inner.config.mailboxes
            && !allowed.iter().any(|m| m.eq_ignore_ascii_case(&mailbox))
        {
            return Err(Fault {
                code: "ErrorNonExistentMailbox",
                message: format!("The SMTP address has no mailbox associated with it: {mailbox}"),
            });
        }
        Ok(mailbox)
    }
}

fn direct_value(kind: ItemKind, name: &str, value: &str) -> anyhow::Result<WireValue> {
    let slot = wire::field_slot(kind, name)
        .with_context(|| format!("'{name}' is not a supported {} field", kind.element()))?;
    Ok(match slot.value_kind() {
        wire::ValueKind::Strings => WireValue::List(
            value
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        _ => WireValue::Text(value.to_owned()),
    })
}

fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// The SOAP envelope of replies that answer no particular schema version.
fn open_envelope() -> XmlOut {
    open_envelope_for(UNVERSIONED_REPLY)
}

/// The SOAP envelope every reply uses, with `t:ServerVersionInfo` in the header reporting
/// the schema version the request was processed under.
fn open_envelope_for(version: &str) -> XmlOut {
    let mut out = XmlOut::new();
    out.open(
        "s:Envelope",
        &[
            ("xmlns:s", wire::NS_SOAP),
            ("xmlns:m", wire::NS_MESSAGES),
            ("xmlns:t", wire::NS_TYPES),
        ],
    );
    out.open("s:Header", &[]);
    out.empty(
        "t:ServerVersionInfo",
        &[
            ("MajorVersion", "15"),
            ("MinorVersion", "1"),
            ("MajorBuildNumber", "2507"),
            ("MinorBuildNumber", "6"),
            ("Version", version),
        ],
    );
    out.close("s:Header");
    out.open("s:Body", &[]);
    out
}

fn close_envelope(mut out: XmlOut) -> String {
    out.close("s:Body");
    out.close("s:Envelope");
    out.finish()
}

/// A SOAP fault in Exchange's shape (see `samples/12-serverbusy-fault-response.xml`).
fn fault_body(fault: &Fault, back_off_ms: Option<u64>) -> String {
    fault_body_for(UNVERSIONED_REPLY, fault, back_off_ms)
}

fn fault_body_for(version: &str, fault: &Fault, back_off_ms: Option<u64>) -> String {
    let mut out = open_envelope_for(version);
    out.open("s:Fault", &[]);
    out.text_element(
        "faultcode",
        &[("xmlns:a", wire::NS_TYPES)],
        &format!("a:{}", fault.code),
    );
    out.text_element("faultstring", &[("xml:lang", "en-US")], &fault.message);
    out.open("detail", &[]);
    out.text_element(
        "e:ResponseCode",
        &[("xmlns:e", wire::NS_ERRORS)],
        fault.code,
    );
    out.text_element("e:Message", &[("xmlns:e", wire::NS_ERRORS)], &fault.message);
    if let Some(ms) = back_off_ms {
        out.open("t:MessageXml", &[]);
        out.text_element(
            "t:Value",
            &[("Name", "BackOffMilliseconds")],
            &ms.to_string(),
        );
        out.close("t:MessageXml");
    }
    out.close("detail");
    out.close("s:Fault");
    close_envelope(out)
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The operation element inside `soap:Body`, when the envelope has one.
fn operation_of(envelope: &Element) -> Option<&Element> {
    if envelope.name != "Envelope" {
        return None;
    }
    envelope.child("Body")?.children.first()
}

/// `POST /oauth2/v2.0/token`: the identity platform's client credentials grant (`oauth.rs`).
async fn token_route(State(sim): State<EwsSim>, body: axum::body::Bytes) -> Response {
    sim.inner.control.stats.record("TOKEN");
    sim.inner.sign_in.tokens.answer(&String::from_utf8_lossy(&body))
}

async fn handle(
    State(sim): State<EwsSim>,
    connection: ConnectionControl,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let parsed = wire::parse_document(&text);
    let operation = parsed
        .as_ref()
        .ok()
        .and_then(operation_of)
        .map(|op| op.name.clone());
    let op_name = operation.clone().unwrap_or_else(|| "Unknown".to_owned());
    // An empty body is a sign-in leg (an NTLM NEGOTIATE sent ahead of the request), not an
    // operation; it shows in the sign-in counts only.
    if !body.is_empty() {
        sim.inner.control.stats.record(&op_name);
    }

    let sign_in_header = match sim.inner.sign_in.check(&connection, &headers, &sim.inner.control) {
        signin::Outcome::Serve { header } => header,
        signin::Outcome::Answer(response) => return response,
    };
    let mut response = serve(&sim, &connection, body, parsed, operation, op_name).await;
    if let Some(value) = sign_in_header {
        response.headers_mut().append(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Answers a signed-in request.
async fn serve(
    sim: &EwsSim,
    connection: &ConnectionControl,
    body: Bytes,
    parsed: Result<Element, String>,
    operation: Option<String>,
    op_name: String,
) -> Response {
    let seq = sim.inner.capture_seq.fetch_add(1, Ordering::SeqCst) + 1;
    sim.capture(seq, &op_name, "request", &body, parsed.is_ok());

    let fault = sim.draw_fault();
    let drop_reply = fault == Some("drop");
    match fault {
        Some("http503") => {
            let message = "Service Unavailable (injected by the EWS emulator)";
            sim.capture(seq, &op_name, "response", message.as_bytes(), false);
            return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        }
        Some("server-busy") => {
            let fault = Fault {
                code: "ErrorServerBusy",
                message: "The server cannot service this request right now. Try again later."
                    .into(),
            };
            let reply = fault_body(&fault, Some(SERVER_BUSY_BACK_OFF_MS));
            sim.capture(seq, &op_name, "response", reply.as_bytes(), true);
            return xml_response(StatusCode::INTERNAL_SERVER_ERROR, reply);
        }
        Some("slow") => tokio::time::sleep(SLOW_REPLY_DELAY).await,
        _ => {}
    }
    if let Ok(envelope) = parsed.as_ref()
        && op_name == "GetStreamingEvents"
    {
        if drop_reply && connection.drop_connection() {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        return sim.get_streaming_events(envelope, seq);
    }
    let (status, reply, mutated) = sim.answer(parsed.as_ref(), operation.is_some());
    if mutated {
        sim.save();
        sim.notify_changed();
    }
    if drop_reply && connection.drop_connection() {
        // The work is done; the client never hears of it (a lost reply).
        let note = "(connection dropped by an injected fault; the request was carried out)";
        sim.capture(seq, &op_name, "response", note.as_bytes(), false);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    sim.capture(seq, &op_name, "response", reply.as_bytes(), true);
    xml_response(status, reply)
}

impl EwsSim {
    /// Draws this request's injected fault, if any (opt-in kinds only when named).
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

    /// Answers a parsed request: `(status, body, store changed)`.
    fn answer(
        &self,
        parsed: Result<&Element, &String>,
        has_operation: bool,
    ) -> (StatusCode, String, bool) {
        let envelope = match parsed {
            Ok(envelope) if has_operation => envelope,
            Ok(_) => {
                let fault = Fault::schema(
                    "The request is not a SOAP envelope with an operation in its Body.",
                );
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    fault_body(&fault, None),
                    false,
                );
            }
            Err(error) => {
                let fault = Fault::schema(format!("The request failed schema validation: {error}"));
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    fault_body(&fault, None),
                    false,
                );
            }
        };
        let Some(op) = operation_of(envelope) else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                fault_body(&Fault::schema("missing operation"), None),
                false,
            );
        };
        let version = match version::requested(envelope) {
            Ok(version) => version,
            Err(fault) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    fault_body(&fault, None),
                    false,
                );
            }
        };
        let mailbox = match self.mailbox_for(envelope) {
            Ok(mailbox) => mailbox,
            Err(fault) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    fault_body_for(&version.name, &fault, None),
                    false,
                );
            }
        };
        let mut out = open_envelope_for(&version.name);
        let result = ops::dispatch(&mut self.store(), &mailbox, &version, op, &mut out);
        match result {
            Ok(mutated) => (StatusCode::OK, close_envelope(out), mutated),
            Err(fault) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                fault_body_for(&version.name, &fault, None),
                false,
            ),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_recurring;
