//! The admin API: JSON over HTTP, as `contract.md` defines it.
//!
//! Every `/api/v1` call needs `Authorization: Bearer TOKEN`; a missing or wrong token gets
//! 401 and changes nothing. Errors are `{"error": ..., "detail": ...}`.

mod listener;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::engine::{Engine, EngineError, RunReport};
use crate::scheduler::{RunError, Runner};
use crate::domain::{Domains, ExchangeBackend, User};
use crate::store::StoreError;
pub use listener::{AdminServer, AdminTlsError, AdminTlsFiles, server_tls};

use crate::metrics::Metrics;
use crate::secrets::{digests_equal, token_digest};

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    pub runner: Arc<Runner>,
    /// SHA-256 of the bearer token: the token itself is not kept.
    token_hash: [u8; 32],
}

impl AdminState {
    pub fn new(runner: Arc<Runner>, token: &str) -> Self {
        Self::with_token_digest(runner, token_digest(token))
    }

    /// An admin API that knows only the SHA-256 digest of its token.
    pub fn with_token_digest(runner: Arc<Runner>, token_hash: [u8; 32]) -> Self {
        Self { engine: runner.engine.clone(), metrics: runner.metrics.clone(), runner, token_hash }
    }

    /// Runs a sync of `login` now, under this node's lease.
    pub async fn sync(&self, login: &str) -> Result<RunReport, RunError> {
        self.runner.run_now(login).await
    }
}

/// An error answer: a status and the contract's error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> Self {
        Self { status, error: error.into(), detail: detail.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error, "detail": self.detail}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownUser(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown user", error.to_string()),
            StoreError::DuplicateUser(_) => ApiError::new(StatusCode::CONFLICT, "user exists", error.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "state store", other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Store(store) => store.into(),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "sync failed", other.to_string()),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::Busy { .. } => ApiError::new(StatusCode::CONFLICT, "busy", error.to_string()),
            RunError::Store(store) => store.into(),
            RunError::Engine(engine) => engine.into(),
        }
    }
}

/// The admin router: `/healthz` and `/metrics` open, `/api/v1` behind the bearer token.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/users", get(list_users).post(add_user))
        .route("/users/{login}", get(get_user).patch(patch_user))
        .route("/users/{login}/reset", post(reset_user))
        .route("/users/{login}/allow-mass-delete", post(allow_mass_delete))
        .route("/users/{login}/runs", get(user_runs))
        .route("/users/{login}/conflicts", get(user_conflicts))
        .route("/users/{login}/quarantine", get(user_quarantine))
        .route("/status", get(status))
        .route("/openapi.json", get(openapi))
        .route("/users/{login}/sync-list", get(sync_list).post(add_to_sync_list))
        .route("/users/{login}/sync-list/{siebel_id}", delete(remove_from_sync_list))
        .route("/users/{login}/sync", post(sync_now))
        .route("/plugins", get(list_plugins))
        .route("/plugins/reload", post(reload_plugins))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .with_state(state)
}

/// Serves the admin API on `addr` until the task is dropped.
/// `extra` is served beside the API, outside its bearer-token layer (the Graph webhook,
/// which Graph authenticates by clientState).
/// With `tls`, over HTTPS.
pub async fn serve(
    state: AdminState,
    addr: SocketAddr,
    extra: Option<Router>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> anyhow::Result<AdminServer> {
    let routes = match extra {
        Some(extra) => router(state).merge(extra),
        None => router(state),
    };
    AdminServer::start(routes, addr, tls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the admin API: {e}"))
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(token_digest);
    // Digests are compared, in constant time: the timing says nothing about the token.
    if !presented.is_some_and(|digest| digests_equal(&digest, &state.token_hash)) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as `Authorization: Bearer TOKEN`",
        )
        .into_response();
    }
    next.run(request).await
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let now = crate::store::now_ms();
    // Queue depth and lag come from the store; when it does not answer, the counters still do.
    let overview = match state.engine.store().sync_overview(now).await {
        Ok(overview) => Some(overview),
        Err(error) => {
            tracing::warn!(%error, "cannot read the schedule for /metrics");
            None
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(overview.as_ref(), now))
}

async fn list_users(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.engine.store();
    let mut users = Vec::new();
    for user in store.users().await? {
        let last_sync = store.last_run(&user.login).await?.map(|run| {
            json!({"started_at": run.started_at, "finished_at": run.finished_at, "status": run.status, "report": run.report})
        });
        let mut entry = user_summary(&user);
        entry["last_sync"] = last_sync.unwrap_or(serde_json::Value::Null);
        users.push(entry);
    }
    Ok(Json(serde_json::Value::Array(users)))
}

/// What every answer about a user says of it.
fn user_summary(user: &User) -> serde_json::Value {
    json!({
        "login": user.login,
        "mailbox": user.mailbox,
        "enabled": user.enabled,
        "domains": user.domains,
        "backend": user.backend,
        "extract_start_date": user.extract_start_date,
    })
}

/// A user's ExtractStartDate as given (`""` clears it), checked.
fn extract_start_date(given: Option<String>, context: &'static str) -> Result<Option<String>, ApiError> {
    match given.map(|text| text.trim().to_owned()).filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => match crate::domain::check_extract_start_date(&text) {
            Ok(()) => Ok(Some(text)),
            Err(why) => Err(ApiError::new(StatusCode::BAD_REQUEST, context, &format!("`extract_start_date`: {why}"))),
        },
    }
}

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    login: String,
    mailbox: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    domains: Domains,
    /// `ews` (default) or `graph`.
    #[serde(default)]
    backend: ExchangeBackend,
    /// The user's own ExtractStartDate (ISO date), over the filter plugin's global one.
    #[serde(default)]
    extract_start_date: Option<String>,
}

fn yes() -> bool {
    true
}

async fn add_user(
    State(state): State<AdminState>,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(new) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad user", e.body_text()))?;
    if new.login.trim().is_empty() || !new.mailbox.contains('@') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad user",
            "`login` must be a Siebel login and `mailbox` an SMTP address",
        ));
    }
    let user = User {
        login: new.login,
        mailbox: new.mailbox,
        enabled: new.enabled,
        domains: new.domains,
        backend: new.backend,
        extract_start_date: extract_start_date(new.extract_start_date, "bad user")?,
    };
    state.engine.store().add_user(&user).await?;
    state.runner.user_map_changed();
    let mut answer = user_summary(&user);
    answer["last_sync"] = serde_json::Value::Null;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The body of `POST /api/v1/users/{login}/sync-list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncListEntry {
    siebel_id: String,
}

async fn add_to_sync_list(
    State(state): State<AdminState>,
    Path(login): Path<String>,
    body: Result<Json<SyncListEntry>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(entry) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad sync-list entry", e.body_text()))?;
    if entry.siebel_id.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad sync-list entry", "`siebel_id` is empty"));
    }
    let added = state.engine.store().add_to_sync_list(&login, &entry.siebel_id).await?;
    if added {
        // A sync-list change is a change of the user's data: sync it soon, not at the next
        // safety-net poll.
        state.runner.wake_users(std::slice::from_ref(&login)).await?;
    }
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"siebel_id": entry.siebel_id}))))
}

async fn remove_from_sync_list(
    State(state): State<AdminState>,
    Path((login, siebel_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.engine.store().remove_from_sync_list(&login, &siebel_id).await? {
        state.runner.wake_users(std::slice::from_ref(&login)).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not on the sync list", format!("{siebel_id} is not on {login}'s sync list")))
    }
}

async fn sync_list(State(state): State<AdminState>, Path(login): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = state.engine.store().sync_list(&login).await?;
    Ok(Json(serde_json::Value::Array(
        entries.into_iter().map(|(siebel_id, added_at)| json!({"siebel_id": siebel_id, "added_at": added_at})).collect(),
    )))
}

#[derive(Debug, Deserialize)]
struct SyncQuery {
    #[serde(default)]
    wait: bool,
    /// Plan the run and answer the plan; nothing is written.
    #[serde(default)]
    dry_run: bool,
}

async fn sync_now(
    State(state): State<AdminState>,
    Path(login): Path<String>,
    Query(query): Query<SyncQuery>,
) -> Result<Response, ApiError> {
    state.engine.store().user(&login).await?;
    if query.dry_run {
        // A plan is always waited for: it is the answer.
        let report = state.engine.dry_run(&login).await?;
        return Ok(Json(report).into_response());
    }
    if query.wait {
        let report = state.sync(&login).await?;
        return Ok(Json(report).into_response());
    }
    tokio::spawn(async move {
        if let Err(error) = state.sync(&login).await {
            tracing::warn!(%error, user = %login, "requested sync failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "started"}))).into_response())
}

async fn list_plugins(State(state): State<AdminState>) -> Json<serde_json::Value> {
    Json(json!(state.engine.plugins().list()))
}

async fn reload_plugins(State(state): State<AdminState>) -> Json<serde_json::Value> {
    // Rescanning compiles new packages: off the async threads.
    let registry = state.engine.plugins().clone();
    match tokio::task::spawn_blocking(move || registry.reload()).await {
        Ok(list) => Json(json!(list)),
        Err(_) => Json(json!(state.engine.plugins().list())),
    }
}

/// A user as the API shows it: the contract's fields plus group, schedule and why Tandem
/// disabled it (when it did).
async fn user_json(state: &AdminState, user: &User) -> Result<serde_json::Value, ApiError> {
    let store = state.engine.store();
    let (group, disabled_reason) = store.user_extras(&user.login).await?;
    let last_sync = store.last_run(&user.login).await?.map(|run| {
        json!({"started_at": run.started_at, "finished_at": run.finished_at, "status": run.status, "report": run.report})
    });
    let schedule = store.schedule_entries().await?.into_iter().find(|e| e.login == user.login);
    let mut answer = user_summary(user);
    answer["group"] = json!(group);
    answer["disabled_reason"] = json!(disabled_reason);
    answer["schedule"] = json!(schedule);
    answer["last_sync"] = json!(last_sync);
    Ok(answer)
}

async fn get_user(State(state): State<AdminState>, Path(login): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let user = state.engine.store().user(&login).await?;
    Ok(Json(user_json(&state, &user).await?))
}

/// The body of `PATCH /api/v1/users/{login}`: any of these.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    mailbox: Option<String>,
    enabled: Option<bool>,
    domains: Option<Domains>,
    group: Option<String>,
    backend: Option<ExchangeBackend>,
    /// An ISO date; `""` clears it (the filter plugin's global one applies again).
    extract_start_date: Option<String>,
}

async fn patch_user(
    State(state): State<AdminState>,
    Path(login): Path<String>,
    body: Result<Json<UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(change) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad user change", e.body_text()))?;
    let store = state.engine.store();
    let mut user = store.user(&login).await?;
    let (mut group, _) = store.user_extras(&login).await?;
    if let Some(mailbox) = change.mailbox {
        if !mailbox.contains('@') {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad user change", "`mailbox` must be an SMTP address"));
        }
        user.mailbox = mailbox;
    }
    if let Some(enabled) = change.enabled {
        user.enabled = enabled;
    }
    if let Some(domains) = change.domains {
        user.domains = domains;
    }
    if let Some(new_group) = change.group {
        group = new_group;
    }
    if change.extract_start_date.is_some() {
        user.extract_start_date = extract_start_date(change.extract_start_date, "bad user change")?;
    }
    // A mailbox moved between EWS and Graph: what Tandem knew of its items (ids, cursors)
    // belongs to the old connector, so the next run re-extracts (matching keeps it free of
    // duplicates).
    let moved = change.backend.is_some_and(|backend| backend != user.backend);
    if let Some(backend) = change.backend {
        user.backend = backend;
    }
    store.update_user(&user, &group).await?;
    if moved {
        store.reset_user(&login).await?;
    }
    state.runner.user_map_changed();
    Ok(Json(user_json(&state, &user).await?))
}

/// Re-extract: forget links and cursors; the next run matches records again instead of
/// duplicating them. The sync list stays.
async fn reset_user(State(state): State<AdminState>, Path(login): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    state.engine.store().reset_user(&login).await?;
    state.runner.wake_users(std::slice::from_ref(&login)).await?;
    Ok(Json(json!({"login": login, "reset": true})))
}

/// Lets the user's next run past the mass-delete guard, once, and starts it.
async fn allow_mass_delete(State(state): State<AdminState>, Path(login): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    state.engine.store().user(&login).await?;
    state.engine.allow_mass_delete(&login);
    state.runner.wake_users(std::slice::from_ref(&login)).await?;
    Ok(Json(json!({"login": login, "mass_delete_allowed_once": true})))
}

#[derive(Debug, Deserialize)]
struct Limit {
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    50
}

async fn user_runs(
    State(state): State<AdminState>,
    Path(login): Path<String>,
    Query(limit): Query<Limit>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.engine.store();
    store.user(&login).await?;
    Ok(Json(json!(store.runs(&login, limit.limit.clamp(1, 1000)).await?)))
}

async fn user_conflicts(
    State(state): State<AdminState>,
    Path(login): Path<String>,
    Query(limit): Query<Limit>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.engine.store();
    store.user(&login).await?;
    Ok(Json(json!(store.conflicts(&login, limit.limit.clamp(1, 1000)).await?)))
}

async fn user_quarantine(State(state): State<AdminState>, Path(login): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.engine.store();
    store.user(&login).await?;
    Ok(Json(json!(store.quarantined(&login).await?)))
}

/// One row per user: last run, its result, and the lag since the last successful run; and
/// when the connectors' credentials expire, where that is known.
async fn status(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.engine.store();
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for user in store.users().await? {
        let runs = store.runs(&user.login, 50).await?;
        let last = runs.first();
        let last_ok = runs.iter().find(|r| r.status == "ok");
        let lag_seconds = last_ok
            .and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.finished_at).ok())
            .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds());
        rows.push(json!({
            "login": user.login,
            "mailbox": user.mailbox,
            "enabled": user.enabled,
            "last_sync": last.map(|r| r.finished_at.clone()),
            "result": last.map(|r| r.status.clone()),
            "lag_seconds": lag_seconds,
        }));
    }
    let credentials: Vec<serde_json::Value> = state
        .metrics
        .credential_expiries()
        .iter()
        .map(|credential| {
            json!({
                "endpoint": credential.endpoint,
                "kind": credential.kind,
                "expires_at": credential.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "expires_in_seconds": credential.seconds_left(now),
            })
        })
        .collect();
    Ok(Json(json!({"node": state.runner.settings.node, "users": rows, "credentials": credentials})))
}

/// Ready when the state store answers.
async fn readyz(State(state): State<AdminState>) -> Response {
    match state.engine.store().users().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("state store unavailable: {error}\n")).into_response(),
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The admin API's OpenAPI 3.1 description.
const OPENAPI: &str = include_str!("admin/openapi.json");
