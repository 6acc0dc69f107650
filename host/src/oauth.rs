//! OAuth 2.0 client-credentials tokens (RFC 6749 §4.4), written once for every connector
//! that signs in with a bearer token: Microsoft Graph, a Siebel behind an OAuth server, and
//! EWS with `auth = "oauth"`.
//!
//! **API.** [`TokenSource::new`]`(`[`TokenEndpoint`]`, client, counters)`, then
//! [`TokenSource::token`]`(force)` before each request: the cached token while it is fresh,
//! a new one [`REFRESH_MARGIN`] before it expires (or half-way through a shorter lifetime),
//! and a new one at once with `force` — after the server answered 401 to the cached one.
//! Concurrent callers share one request to the token endpoint.
//!
//! **Credentials** ([`ClientCredential`]): a client secret, sent in the form body
//! (`client_secret_post`, as Microsoft's identity platform documents it) or as HTTP Basic
//! (`client_secret_basic`, RFC 6749 §2.3.1) as the endpoint asks ([`SecretPlacement`]); or a
//! certificate ([`CertificateCredential`]), sent as a signed client assertion
//! (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, RFC 7523
//! and Microsoft's "certificate credentials"). When the credential's expiry is known (a
//! certificate's `notAfter`, a secret's configured date) [`TokenSource::expiry`] gives it and
//! a warning is logged once when fewer than [`EXPIRY_WARNING`] remain.
//!
//! Secrets, assertions and tokens are never logged and `Debug` hides them. Errors
//! ([`TokenError`]) say which configuration section to fix and how.

mod certificate;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

pub use certificate::{ASSERTION_ALGORITHM, ASSERTION_LIFETIME, CertificateCredential, CredentialError};

use crate::telemetry::RemoteRequests;
use crate::transport::TlsError;

/// A token is fetched again this long before it expires (or half-way through its lifetime,
/// when that is shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A credential expiring within this long is warned about (once per token source).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The lifetime assumed when the token endpoint names none (`expires_in` is RECOMMENDED only).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest lifetime believed (Entra ID's tokens live at most a day).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A client secret; `Debug` hides it.
#[derive(Clone)]
pub struct ClientSecret {
    value: String,
    expires_at: Option<DateTime<Utc>>,
}

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), expires_at: None }
    }

    /// With the date the secret stops working (the app registration shows it), so its
    /// expiry can be watched.
    pub fn expiring_at(mut self, expires_at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = expires_at;
        self
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecret").field("value", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

/// How the client proves who it is to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    Secret(ClientSecret),
    /// A certificate and its key: a signed client assertion per token request.
    Certificate(Arc<CertificateCredential>),
}

impl ClientCredential {
    /// `secret` or `certificate`: the `kind` label of the expiry gauge.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientCredential::Secret(_) => "secret",
            ClientCredential::Certificate(_) => "certificate",
        }
    }

    /// When the credential stops working, when known.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            ClientCredential::Secret(secret) => secret.expires_at,
            ClientCredential::Certificate(certificate) => Some(certificate.not_after()),
        }
    }
}

impl From<&str> for ClientCredential {
    fn from(secret: &str) -> Self {
        ClientCredential::Secret(ClientSecret::new(secret))
    }
}

impl From<String> for ClientCredential {
    fn from(secret: String) -> Self {
        ClientCredential::Secret(ClientSecret::new(secret))
    }
}

/// Where a client secret goes in the token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPlacement {
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Body,
    /// `Authorization: Basic client_id:client_secret` (`client_secret_basic`).
    BasicHeader,
}

/// One client at one token endpoint.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    /// The configuration section the settings come from (`graph`, `siebel`, `exchange`): errors
    /// and the expiry gauge name it.
    pub section: &'static str,
    /// Where tokens are asked for; also the `aud` of client assertions.
    pub token_url: String,
    pub client_id: String,
    pub credential: ClientCredential,
    /// The `scope` parameter, when the server wants one (Entra ID: `RESOURCE/.default`).
    pub scope: Option<String>,
    /// Where a secret goes; certificates always go in the body.
    pub secret_placement: SecretPlacement,
}

/// When a credential stops working, for `/metrics` and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialExpiry {
    /// The configuration section (`graph`, …).
    pub endpoint: &'static str,
    /// `certificate` or `secret`.
    pub kind: &'static str,
    pub expires_at: DateTime<Utc>,
}

impl CredentialExpiry {
    /// Seconds from `now` until it expires (negative once expired).
    pub fn seconds_left(&self, now: DateTime<Utc>) -> i64 {
        (self.expires_at - now).num_seconds()
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The endpoint refused the client (wrong id, secret or certificate; an expired one).
    #[error(
        "the token endpoint {url} refused client '{client_id}' (HTTP {status}, {code}): {description}; {hint}"
    )]
    Refused {
        url: String,
        client_id: String,
        status: u16,
        /// The OAuth `error` code (`invalid_client`, …).
        code: String,
        description: String,
        hint: String,
    },
    /// A 5xx or 429: the endpoint may answer later.
    #[error("the token endpoint {url} is unavailable (HTTP {status}): {body}; try again later")]
    Unavailable { url: String, status: u16, body: String },
    /// No answer (connection refused, timeout, reset).
    #[error("could not reach the token endpoint {url}: {detail}; check [{section}] token_url and the network")]
    Unreachable { section: &'static str, url: String, detail: String },
    /// The endpoint's certificate was not accepted: no request was sent.
    #[error("could not reach the token endpoint: {0}")]
    Tls(TlsError),
    /// An answer OAuth 2.0 does not define.
    #[error("the token endpoint {url} answered what OAuth 2.0 does not define: {detail}; check [{section}] token_url")]
    BadReply { section: &'static str, url: String, detail: String },
    /// The settings cannot work (a token URL that is not a URL, no client id).
    #[error("{detail}")]
    Settings { detail: String },
    /// The client assertion could not be made.
    #[error("[{section}] {source}; {}", source.hint())]
    Credential {
        section: &'static str,
        #[source]
        source: CredentialError,
    },
}

impl TokenError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. } | TokenError::Unreachable { .. })
    }

    /// The HTTP status the token endpoint answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenError::Refused { status, .. } | TokenError::Unavailable { status, .. } => Some(*status),
            _ => None,
        }
    }
}

struct Cached {
    value: String,
    refresh_at: Instant,
}

/// Tokens for one client at one endpoint, cached; cheap to share behind an `Arc`.
pub struct TokenSource {
    endpoint: TokenEndpoint,
    http: reqwest::Client,
    /// Counts `token` requests for `/metrics`.
    requests: Arc<RemoteRequests>,
    cached: tokio::sync::Mutex<Option<Cached>>,
    expiry_warned: AtomicBool,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl TokenSource {
    /// `http` comes from [`crate::transport::client_builder`] with the section's settings;
    /// `requests` counts the token requests. Checks the token URL; sends nothing yet.
    pub fn new(endpoint: TokenEndpoint, http: reqwest::Client, requests: Arc<RemoteRequests>) -> Result<Self, TokenError> {
        let settings = |detail: String| TokenError::Settings { detail };
        let url = reqwest::Url::parse(&endpoint.token_url)
            .map_err(|e| settings(format!("[{}] token_url '{}' is not a URL: {e}", endpoint.section, endpoint.token_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(settings(format!("[{}] token_url '{}' must be http or https", endpoint.section, endpoint.token_url)));
        }
        if endpoint.client_id.trim().is_empty() {
            return Err(settings(format!("[{}] client_id is empty", endpoint.section)));
        }
        let source = Self { endpoint, http, requests, cached: tokio::sync::Mutex::new(None), expiry_warned: AtomicBool::new(false) };
        source.warn_if_expiring(Utc::now());
        Ok(source)
    }

    /// When the credential stops working, when known.
    pub fn expiry(&self) -> Option<CredentialExpiry> {
        Some(CredentialExpiry {
            endpoint: self.endpoint.section,
            kind: self.endpoint.credential.kind(),
            expires_at: self.endpoint.credential.expires_at()?,
        })
    }

    /// A bearer token: the cached one while fresh; a new one when it is near expiry, or at
    /// once with `force` (the server refused the cached one).
    pub async fn token(&self, force: bool) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if !force && let Some(token) = cached.as_ref().filter(|t| t.refresh_at > Instant::now()) {
            return Ok(token.value.clone());
        }
        self.warn_if_expiring(Utc::now());
        let (value, lifetime) = self.fetch().await?;
        let refresh_in = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
        tracing::debug!(endpoint = self.endpoint.section, lifetime_s = lifetime.as_secs(), "fetched an access token");
        *cached = Some(Cached { value: value.clone(), refresh_at: Instant::now() + refresh_in });
        Ok(value)
    }

    /// One token request: the token and its lifetime.
    async fn fetch(&self) -> Result<(String, Duration), TokenError> {
        let endpoint = &self.endpoint;
        let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
        if let Some(scope) = &endpoint.scope {
            form.push(("scope", scope.clone()));
        }
        let mut request = self.http.post(&endpoint.token_url);
        match (&endpoint.credential, endpoint.secret_placement) {
            (ClientCredential::Secret(secret), SecretPlacement::Body) => {
                form.push(("client_id", endpoint.client_id.clone()));
                form.push(("client_secret", secret.value.clone()));
            }
            (ClientCredential::Secret(secret), SecretPlacement::BasicHeader) => {
                request = request.basic_auth(&endpoint.client_id, Some(&secret.value));
            }
            (ClientCredential::Certificate(certificate), _) => {
                let assertion = certificate
                    .assertion(&endpoint.client_id, &endpoint.token_url, Utc::now())
                    .map_err(|source| TokenError::Credential { section: endpoint.section, source })?;
                form.push(("client_id", endpoint.client_id.clone()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
            }
        }
        let body = serde_urlencoded::to_string(&form).map_err(|e| TokenError::BadReply {
            section: endpoint.section,
            url: endpoint.token_url.clone(),
            detail: format!("the request cannot be encoded: {e}"),
        })?;
        self.requests.count("token");
        let reply = request
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|error| self.unreachable(&error))?;
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status.is_success() {
            return parse_token(&json).map_err(|detail| TokenError::BadReply {
                section: endpoint.section,
                url: endpoint.token_url.clone(),
                detail,
            });
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable {
                url: endpoint.token_url.clone(),
                status: status.as_u16(),
                body: shortened(&text),
            });
        }
        let field = |name: &str| json.get(name).and_then(Json::as_str).map(str::to_owned);
        let code = field("error").unwrap_or_else(|| "no error code".into());
        let description = field("error_description")
            .map(|text| first_line(&text))
            .unwrap_or_else(|| shortened(&text));
        let hint = self.refusal_hint(&description);
        Err(TokenError::Refused {
            url: endpoint.token_url.clone(),
            client_id: endpoint.client_id.clone(),
            status: status.as_u16(),
            code,
            description,
            hint,
        })
    }

    fn unreachable(&self, error: &reqwest::Error) -> TokenError {
        match crate::transport::tls_error(error, self.endpoint.section) {
            Some(tls) => TokenError::Tls(tls),
            None => TokenError::Unreachable {
                section: self.endpoint.section,
                url: self.endpoint.token_url.clone(),
                detail: crate::transport::describe(error),
            },
        }
    }

    /// What to check after a refusal, by credential (and Entra ID's code for an expired secret).
    fn refusal_hint(&self, description: &str) -> String {
        let section = self.endpoint.section;
        match &self.endpoint.credential {
            ClientCredential::Secret(_) if description.starts_with("AADSTS7000222") => {
                format!("the client secret has expired: make a new one in the app registration and set it in [{section}]")
            }
            ClientCredential::Secret(_) => {
                format!("check [{section}] client_id, the client secret and token_url against the app registration")
            }
            ClientCredential::Certificate(certificate) => format!(
                "check that the certificate of [{section}] certificate_file (thumbprint {}) is uploaded to the app registration, that private_key_file is its key, and [{section}] client_id and token_url",
                certificate.thumbprint_sha1_hex()
            ),
        }
    }

    /// Logs a warning the first time the credential is found to expire within [`EXPIRY_WARNING`].
    fn warn_if_expiring(&self, now: DateTime<Utc>) {
        let Some(expiry) = self.expiry() else { return };
        let left = expiry.seconds_left(now);
        if left >= EXPIRY_WARNING.as_secs() as i64 || self.expiry_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let (endpoint, kind, expires_at) = (expiry.endpoint, expiry.kind, expiry.expires_at.to_rfc3339());
        if left <= 0 {
            tracing::warn!(endpoint, kind, %expires_at, "the {kind} Tandem signs in to [{endpoint}] with has expired; renew it in the app registration and in the configuration");
        } else {
            let days = left / 86_400;
            tracing::warn!(endpoint, kind, %expires_at, days, "the {kind} Tandem signs in to [{endpoint}] with expires in {days} days; renew it in the app registration and in the configuration before then");
        }
    }
}

/// `{"access_token": "...", "expires_in": 3599}` → token and lifetime. `expires_in` may be
/// a number or a string of digits (older servers); absent, an hour is assumed; more than a
/// day is taken as a day.
fn parse_token(json: &Json) -> Result<(String, Duration), String> {
    if !json.is_object() {
        return Err("the reply is not a JSON object".into());
    }
    let token = json
        .get("access_token")
        .and_then(Json::as_str)
        .filter(|token| !token.is_empty())
        .ok_or("the reply has no access_token")?;
    let lifetime = match json.get("expires_in") {
        None | Some(Json::Null) => DEFAULT_LIFETIME,
        Some(Json::Number(n)) => Duration::from_secs(n.as_u64().ok_or("expires_in is not a number of seconds")?),
        Some(Json::String(s)) => Duration::from_secs(s.trim().parse().map_err(|_| "expires_in is not a number of seconds")?),
        Some(_) => return Err("expires_in is not a number of seconds".into()),
    };
    Ok((token.to_owned(), lifetime.min(MAX_LIFETIME)))
}

/// The first line of Entra ID's descriptions (the rest is trace and correlation ids).
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

fn shortened(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
