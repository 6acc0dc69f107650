//! The EWS connector's HTTP connections, held one by one (hyper's HTTP/1.1 client
//! connection over `transport::Route`) because NTLM and Negotiate sign in a TCP connection,
//! not a request: the handshake's legs must share one connection, and the signed-in
//! connection is then reused, which a pooled client cannot promise.
//!
//! A new connection under NTLM or Negotiate sends the first token with an empty body, gets
//! the server's challenge in a 401, and sends the answer with the real request. Idle
//! connections wait in a bounded pool; one the server closed, or whose sign-in it dropped (a
//! 401 on a signed-in connection), is discarded and the request goes once more over a fresh
//! connection with a new handshake. Basic and OAuth bearer tokens travel with every request over
//! the same pool; a 401 to a bearer token gets one fresh token and one more try.
//! Certificates are verified by `transport` exactly as for every other client.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::auth::{self, EwsAuth, Handshake, HandshakeError, Step};
use crate::transport::{ConnectError, Route, TlsError};

/// Idle connections kept for reuse, at most (the account's concurrency cap is the most that
/// can be busy at once).
pub const MAX_IDLE: usize = 32;
/// An idle connection older than this is closed rather than reused (IIS closes idle
/// connections after 120 s).
pub const IDLE_LIMIT: Duration = Duration::from_secs(90);
/// Longest wait for TCP, the proxy tunnel and TLS.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server's certificate was refused.
    #[error(transparent)]
    Tls(TlsError),
    /// No connection, or it broke: the request may or may not have been carried out.
    #[error("{0}")]
    Transport(String),
    /// The server refused the credentials (401 after they were sent).
    #[error("the server refused the credentials of {user} ({scheme})")]
    Unauthorized { user: String, scheme: EwsAuth },
    /// The server does not offer the configured scheme.
    #[error("the server does not offer {configured} sign-in; it offers {}", offered.join(", "))]
    SchemeNotOffered { configured: EwsAuth, offered: Vec<String> },
    /// The handshake could not go on (a token sspi or the server would not take).
    #[error("the {scheme} sign-in failed: {reason}")]
    SignIn { scheme: EwsAuth, reason: String },
    /// No OAuth token (`auth = "oauth"`): the token endpoint refused or could not be reached.
    #[error("{reason}")]
    Token { reason: String, transient: bool },
}

impl HttpError {
    /// Whether the request certainly did not reach the service (sign-in refused, no
    /// connection): safe to send again even when not idempotent.
    pub fn not_sent(&self) -> bool {
        !matches!(self, HttpError::Transport(_))
    }
}

/// An answer read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An answer whose body is still arriving (GetStreamingEvents), on a connection of its own.
#[derive(Debug)]
pub struct StreamingReply {
    pub status: StatusCode,
    pub body: Incoming,
}

/// Counters of one client's connections, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections opened.
    pub opened: u64,
    /// Windows sign-ins completed (one per NTLM/Negotiate connection).
    pub handshakes: u64,
    /// Requests sent with a body (handshake legs without one are not counted).
    pub requests: u64,
    /// Requests that went over a connection taken from the pool.
    pub reused: u64,
    /// Signed-in connections the server stopped honouring (a 401), replaced by a fresh one.
    pub sign_ins_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    handshakes: AtomicU64,
    requests: AtomicU64,
    reused: AtomicU64,
    sign_ins_dropped: AtomicU64,
}

/// One open connection.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// Finished its Windows sign-in (always true under Basic).
    signed_in: bool,
    idle_since: Instant,
}

/// The credentials, shown nowhere.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The connections of one EWS client (shared by its clones).
pub struct Connections {
    route: Route,
    /// `POST` target: path and query of the endpoint.
    path: String,
    /// `Host` header.
    authority: HeaderValue,
    /// Host name for the SPN (`HTTP/host`).
    host: String,
    scheme: EwsAuth,
    user: String,
    password: Secret,
    /// Where bearer tokens come from (`auth = "oauth"`), set once by the client.
    tokens: std::sync::OnceLock<std::sync::Arc<crate::oauth::TokenSource>>,
    idle: Mutex<Vec<Connection>>,
    counters: Counters,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("route", &self.route)
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// A failed request on a connection: whether the request is known not to have been sent.
enum SendFailure {
    /// The connection was closed before the request went out: try another connection.
    NotSent,
    Failed(HttpError),
}

fn describe(error: &hyper::Error) -> String {
    crate::transport::describe(error)
}

impl Connections {
    /// For `endpoint` (an `http(s)://` URL) as `user`, reached through `route`.
    pub fn new(route: Route, endpoint: &str, scheme: EwsAuth, user: &str, password: &str) -> Result<Self, String> {
        let uri: hyper::Uri = endpoint.parse().map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("`{endpoint}` has no host"))?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let authority = uri.authority().map(|a| a.as_str().to_owned()).ok_or_else(|| format!("`{endpoint}` has no host"))?;
        let authority = HeaderValue::from_str(&authority).map_err(|e| format!("`{endpoint}`: {e}"))?;
        let path = uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        if scheme.is_connection_bound() {
            auth::check_windows_user(user).map_err(|e| e.to_string())?;
        }
        Ok(Self {
            route,
            path,
            authority,
            host,
            scheme,
            user: user.to_owned(),
            password: Secret(password.to_owned()),
            tokens: std::sync::OnceLock::new(),
            idle: Mutex::new(Vec::new()),
            counters: Counters::default(),
        })
    }

    /// Takes bearer tokens from `tokens` (for `auth = "oauth"`); the first call wins.
    pub fn use_tokens(&self, tokens: std::sync::Arc<crate::oauth::TokenSource>) {
        let _ = self.tokens.set(tokens);
    }

    /// A bearer token as an `Authorization` value: the cached one, or a fresh one with `force`.
    async fn bearer(&self, force: bool) -> Result<HeaderValue, HttpError> {
        let unusable = |reason: String, transient: bool| HttpError::Token { reason, transient };
        let tokens = self.tokens.get().ok_or_else(|| {
            unusable("[exchange] auth = \"oauth\" needs [exchange.oauth] with token_url, client_id and a client secret".into(), false)
        })?;
        let token = tokens.token(force).await.map_err(|error| unusable(error.to_string(), error.is_transient()))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| unusable("the token endpoint answered a token that cannot go in a header".into(), false))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The `Authorization` of a request that carries its credentials itself (Basic, OAuth).
    async fn per_request_authorization(&self) -> Result<Option<HeaderValue>, HttpError> {
        match self.scheme {
            EwsAuth::Basic => Ok(self.basic()),
            EwsAuth::OAuth => self.bearer(false).await.map(Some),
            _ => Ok(None),
        }
    }

    /// The scheme in use.
    pub fn scheme(&self) -> EwsAuth {
        self.scheme
    }

    /// The counters so far.
    pub fn stats(&self) -> ConnectionStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConnectionStats {
            opened: read(&self.counters.opened),
            handshakes: read(&self.counters.handshakes),
            requests: read(&self.counters.requests),
            reused: read(&self.counters.reused),
            sign_ins_dropped: read(&self.counters.sign_ins_dropped),
        }
    }

    /// Idle connections right now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    fn request(&self, headers: &[(HeaderName, HeaderValue)], authorization: Option<HeaderValue>, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::post(self.path.as_str());
        if let Some(map) = request.headers_mut() {
            map.insert(header::HOST, self.authority.clone());
            for (name, value) in headers {
                map.insert(name.clone(), value.clone());
            }
            map.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            if let Some(value) = authorization {
                map.insert(header::AUTHORIZATION, value);
            }
        }
        request.body(Full::new(body)).unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    fn basic(&self) -> Option<HeaderValue> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password.0));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    fn token_header(&self, token: &[u8]) -> Option<HeaderValue> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(token);
        let mut value = HeaderValue::from_str(&format!("{} {encoded}", self.scheme.http_name())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// An idle connection still open and not too old, if any.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(connection) = idle.pop() {
            if !connection.sender.is_closed() && connection.idle_since.elapsed() < IDLE_LIMIT {
                return Some(connection);
            }
        }
        None
    }

    fn put_idle(&self, mut connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        connection.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|c| !c.sender.is_closed());
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }

    /// Opens a connection and starts hyper on it.
    async fn open(&self) -> Result<Connection, HttpError> {
        let stream = self.route.connect("exchange", CONNECT_LIMIT).await.map_err(|error| match error {
            ConnectError::Tls(tls) => HttpError::Tls(tls),
            other => HttpError::Transport(other.to_string()),
        })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Transport(format!("{}: {}", self.route.endpoint(), describe(&e))))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %crate::transport::describe(&error), "EWS connection closed");
            }
        });
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(endpoint = %self.route.endpoint(), proxy = ?self.route.proxy(), "EWS connection opened");
        Ok(Connection { sender, signed_in: !self.scheme.is_connection_bound(), idle_since: Instant::now() })
    }

    /// Sends one request on a connection and returns the response head.
    async fn send_head(&self, connection: &mut Connection, request: Request<Full<Bytes>>) -> Result<hyper::Response<Incoming>, SendFailure> {
        if connection.sender.ready().await.is_err() {
            return Err(SendFailure::NotSent);
        }
        match connection.sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(error) if error.message().is_some() => Err(SendFailure::NotSent),
            Err(error) => Err(SendFailure::Failed(HttpError::Transport(format!(
                "{}: {}",
                self.route.endpoint(),
                describe(error.error())
            )))),
        }
    }

    /// Sends one request and reads the whole answer.
    async fn send(&self, connection: &mut Connection, request: Request<Full<Bytes>>) -> Result<Reply, SendFailure> {
        let response = self.send_head(connection, request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| {
            SendFailure::Failed(HttpError::Transport(format!("{}: the answer broke off: {}", self.route.endpoint(), describe(&e))))
        })?;
        Ok(Reply { status: parts.status, headers: parts.headers, body: body.to_bytes() })
    }

    /// What a 401 means: the configured scheme is not offered, or the credentials are wrong.
    fn refusal(&self, headers: &HeaderMap) -> HttpError {
        let offers = offers_of(headers);
        if !offers.is_empty() && !auth::is_offered(&offers, self.scheme) {
            return HttpError::SchemeNotOffered { configured: self.scheme, offered: offers.into_iter().map(|o| o.scheme).collect() };
        }
        HttpError::Unauthorized { user: self.user.clone(), scheme: self.scheme }
    }

    /// POSTs `body` with `headers` and reads the whole answer. A 401 becomes an error.
    pub async fn post(&self, headers: &[(HeaderName, HeaderValue)], body: Bytes) -> Result<Reply, HttpError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let authorization = self.per_request_authorization().await?;
        if self.scheme != EwsAuth::OAuth {
            return self.post_as(headers, body, authorization).await;
        }
        // A 401 to a cached token (revoked, or expired early): one fresh token, one more try.
        match self.post_as(headers, body.clone(), authorization).await {
            Err(HttpError::Unauthorized { .. }) => self.post_as(headers, body, Some(self.bearer(true).await?)).await,
            other => other,
        }
    }

    /// [`Self::post`] with `authorization` on every request (None: a Windows sign-in).
    async fn post_as(&self, headers: &[(HeaderName, HeaderValue)], body: Bytes, authorization: Option<HeaderValue>) -> Result<Reply, HttpError> {
        // Idle connections first; a stale one is dropped and the next one tried.
        while let Some(mut connection) = self.take_idle() {
            self.counters.reused.fetch_add(1, Ordering::Relaxed);
            match self.send(&mut connection, self.request(headers, authorization.clone(), body.clone())).await {
                Ok(reply) if reply.status == StatusCode::UNAUTHORIZED && self.scheme.is_connection_bound() => {
                    // The server dropped this connection's sign-in: a fresh one signs in again.
                    self.counters.sign_ins_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("EWS answered 401 on a signed-in connection; signing in on a new one");
                    break;
                }
                Ok(reply) if reply.status == StatusCode::UNAUTHORIZED => return Err(self.refusal(&reply.headers)),
                Ok(reply) => {
                    self.put_idle(connection);
                    return Ok(reply);
                }
                Err(SendFailure::NotSent) => continue,
                Err(SendFailure::Failed(error)) => return Err(error),
            }
        }
        let mut connection = self.open().await?;
        let reply = if self.scheme.is_connection_bound() {
            self.sign_in(&mut connection, headers, body).await?
        } else {
            match self.send(&mut connection, self.request(headers, authorization, body)).await {
                Ok(reply) => reply,
                Err(SendFailure::NotSent) => return Err(HttpError::Transport(format!("{}: the connection closed at once", self.route.endpoint()))),
                Err(SendFailure::Failed(error)) => return Err(error),
            }
        };
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(self.refusal(&reply.headers));
        }
        self.put_idle(connection);
        Ok(reply)
    }

    /// Signs a fresh connection in and sends the request as the handshake's last leg.
    async fn sign_in(&self, connection: &mut Connection, headers: &[(HeaderName, HeaderValue)], body: Bytes) -> Result<Reply, HttpError> {
        let (handshake, reply) = self.handshake(connection, headers, body, |response| async move {
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| HttpError::Transport(format!("the answer broke off: {}", describe(&e))))?;
            Ok(Reply { status: parts.status, headers: parts.headers, body: body.to_bytes() })
        })
        .await?;
        if let Some(mut handshake) = handshake {
            if reply.status != StatusCode::UNAUTHORIZED {
                self.finish(&mut handshake, &reply.headers)?;
                connection.signed_in = true;
                self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            connection.signed_in = true;
        }
        Ok(reply)
    }

    /// Checks the server's last Negotiate token, when it sent one.
    fn finish(&self, handshake: &mut Handshake, headers: &HeaderMap) -> Result<(), HttpError> {
        let offers = offers_of(headers);
        let last = auth::token_for(&offers, self.scheme).map(decode).transpose().map_err(|reason| self.sign_in_error(reason))?;
        handshake.finish(last.as_deref()).map_err(|e| self.sign_in_error(e.0))
    }

    fn sign_in_error(&self, reason: impl Into<String>) -> HttpError {
        HttpError::SignIn { scheme: self.scheme, reason: reason.into() }
    }

    /// The NTLM/Negotiate legs on `connection`: the first token with an empty body, then
    /// the answer to the challenge with the real request, whose response `read` takes.
    /// Returns the handshake (None when the server let the empty request through without
    /// asking anything) and what `read` made of the last response.
    async fn handshake<T, F, Fut>(
        &self,
        connection: &mut Connection,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        read: F,
    ) -> Result<(Option<Handshake>, T), HttpError>
    where
        F: FnOnce(hyper::Response<Incoming>) -> Fut,
        Fut: std::future::Future<Output = Result<T, HttpError>>,
    {
        let sspi_error = |e: HandshakeError| self.sign_in_error(e.0);
        let password = self.password.0.clone();
        let mut handshake = Handshake::new(self.scheme, &self.user, &password, &self.host).map_err(sspi_error)?;
        let mut token = handshake.first().map_err(sspi_error)?;
        let not_sent = || HttpError::Transport(format!("{}: the connection closed during the sign-in", self.route.endpoint()));
        // At most a few challenge rounds (NTLM needs one).
        for _ in 0..4 {
            let leg = self.request(headers, self.token_header(&token), Bytes::new());
            let reply = match self.send(connection, leg).await {
                Ok(reply) => reply,
                Err(SendFailure::NotSent) => return Err(not_sent()),
                Err(SendFailure::Failed(error)) => return Err(error),
            };
            if reply.status != StatusCode::UNAUTHORIZED {
                // No sign-in asked for: the server serves this connection as it is.
                let response = self.send_head(connection, self.request(headers, None, body)).await.map_err(|failure| match failure {
                    SendFailure::NotSent => not_sent(),
                    SendFailure::Failed(error) => error,
                })?;
                return Ok((None, read(response).await?));
            }
            let offers = offers_of(&reply.headers);
            let Some(challenge) = auth::token_for(&offers, self.scheme) else {
                return Err(if auth::is_offered(&offers, self.scheme) || offers.is_empty() {
                    self.sign_in_error("the server answered the first message without a challenge")
                } else {
                    HttpError::SchemeNotOffered { configured: self.scheme, offered: offers.into_iter().map(|o| o.scheme).collect() }
                });
            };
            let challenge = decode(challenge).map_err(|reason| self.sign_in_error(reason))?;
            match handshake.answer(&challenge).map_err(sspi_error)? {
                Step::Continue(next) => token = next,
                Step::Last(last) => {
                    let request = self.request(headers, self.token_header(&last), body);
                    let response = self.send_head(connection, request).await.map_err(|failure| match failure {
                        SendFailure::NotSent => not_sent(),
                        SendFailure::Failed(error) => error,
                    })?;
                    return Ok((Some(handshake), read(response).await?));
                }
            }
        }
        Err(self.sign_in_error("the server kept challenging"))
    }

    /// POSTs on a fresh connection of its own (signed in first) and returns as soon as the
    /// response head is in; the body streams (GetStreamingEvents). A 401 becomes an error.
    pub async fn post_streaming(&self, headers: &[(HeaderName, HeaderValue)], body: Bytes) -> Result<StreamingReply, HttpError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut connection = self.open().await?;
        let response = if self.scheme.is_connection_bound() {
            let (handshake, response) = self.handshake(&mut connection, headers, body, |response| async move { Ok(response) }).await?;
            if let Some(mut handshake) = handshake
                && response.status() != StatusCode::UNAUTHORIZED
            {
                self.finish(&mut handshake, response.headers())?;
                self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
            }
            response
        } else {
            let request = self.request(headers, self.per_request_authorization().await?, body);
            self.send_head(&mut connection, request).await.map_err(|failure| match failure {
                SendFailure::NotSent => HttpError::Transport(format!("{}: the connection closed at once", self.route.endpoint())),
                SendFailure::Failed(error) => error,
            })?
        };
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(self.refusal(response.headers()));
        }
        let (parts, body) = response.into_parts();
        // The connection lives as long as the body is read: hyper keeps it with the body.
        drop(connection);
        Ok(StreamingReply { status: parts.status, body })
    }
}

/// The offers in a response's `WWW-Authenticate` headers.
fn offers_of(headers: &HeaderMap) -> Vec<auth::Offer> {
    auth::offers(headers.get_all(header::WWW_AUTHENTICATE).iter().filter_map(|value| value.to_str().ok()))
}

fn decode(token: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(token.trim()).map_err(|e| format!("the server's token is not base64: {e}"))
}
