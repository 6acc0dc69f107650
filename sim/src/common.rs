//! What every emulator shares: credentials, request counting, fault injection (including
//! closing a connection without a reply), serving over HTTP or HTTPS.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Json;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A user name and password accepted by an emulator's Basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self { user: user.into(), password: password.into() }
    }

    /// `USER:PASSWORD`, as the contract prints it.
    pub fn display(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// True when the request's `Authorization: Basic …` header carries these credentials.
    pub fn check_basic(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return false;
        };
        let Ok(value) = value.to_str() else { return false };
        let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        decoded == format!("{}:{}", self.user, self.password).into_bytes()
    }
}

/// Counts requests by operation, and sign-ins by scheme, for `GET /_sim/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    requests: Mutex<BTreeMap<String, u64>>,
    sign_ins: Mutex<BTreeMap<String, u64>>,
}

/// The body of `GET /_sim/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatsReport {
    pub requests: BTreeMap<String, u64>,
    /// Connections signed in, by scheme (`ntlm`, `negotiate`), and sign-ins `refused`; only
    /// emulators with connection sign-in report them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sign_ins: BTreeMap<String, u64>,
}

impl Stats {
    pub fn record(&self, operation: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *requests.entry(operation.to_owned()).or_default() += 1;
    }

    /// Counts a completed handshake (`ntlm`, `negotiate`) or a refused sign-in (`refused`).
    pub fn record_sign_in(&self, outcome: &str) {
        let mut sign_ins = self.sign_ins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *sign_ins.entry(outcome.to_owned()).or_default() += 1;
    }

    pub fn report(&self) -> StatsReport {
        let requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let sign_ins = self.sign_ins.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        StatsReport { requests, sign_ins }
    }
}

/// Fault injection settings, as `POST /_sim/faults` takes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultSettings {
    /// Share of requests (0.0–1.0) that get a fault instead of their normal answer.
    #[serde(default)]
    pub rate: f64,
    /// Which faults to draw from; each emulator documents its kinds. Empty means all.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// The fault injector: settings plus a seeded random source, so a run can be repeated.
#[derive(Debug)]
pub struct Faults {
    settings: Mutex<FaultSettings>,
    rng: Mutex<StdRng>,
}

impl Faults {
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            settings: Mutex::new(FaultSettings { rate, kinds: Vec::new() }),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    pub fn set(&self, settings: FaultSettings) {
        *self.settings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = settings;
    }

    pub fn settings(&self) -> FaultSettings {
        self.settings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Draws whether this request gets a fault and, if so, which of `available` kinds
    /// (restricted to the configured kinds when any are set).
    pub fn draw(&self, available: &[&'static str]) -> Option<&'static str> {
        let settings = self.settings();
        if settings.rate <= 0.0 {
            return None;
        }
        let candidates: Vec<&'static str> = available
            .iter()
            .copied()
            .filter(|kind| settings.kinds.is_empty() || settings.kinds.iter().any(|k| k == kind))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if rng.random::<f64>() >= settings.rate {
            return None;
        }
        Some(candidates[rng.random_range(0..candidates.len())])
    }
}

/// State every emulator keeps for the shared `/_sim` endpoints.
#[derive(Debug)]
pub struct SimControl {
    pub stats: Stats,
    pub faults: Faults,
}

impl SimControl {
    pub fn new(fault_rate: f64, seed: u64) -> Arc<Self> {
        Arc::new(Self { stats: Stats::default(), faults: Faults::new(fault_rate, seed) })
    }
}

/// The `/_sim/stats` and `/_sim/faults` routes, to merge into an emulator's router.
pub fn control_routes(control: Arc<SimControl>) -> Router {
    async fn stats(State(control): State<Arc<SimControl>>) -> Json<StatsReport> {
        Json(control.stats.report())
    }
    async fn faults(
        State(control): State<Arc<SimControl>>,
        Json(settings): Json<FaultSettings>,
    ) -> impl IntoResponse {
        if !(0.0..=1.0).contains(&settings.rate) {
            return (StatusCode::BAD_REQUEST, "rate must be between 0 and 1").into_response();
        }
        control.faults.set(settings.clone());
        Json(settings).into_response()
    }
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", post(faults).get(|State(c): State<Arc<SimControl>>| async move { Json(c.faults.settings()) }))
        .with_state(control)
}

/// The connection a request arrived on, so a handler can close it without any reply (the
/// `drop` fault: the client sees the connection end where the answer should be), and keep
/// state for as long as the connection lives (NTLM signs in a connection, not a request).
/// Use it as an extractor; outside [`RunningServer`] (e.g. a router driven in-process) it
/// can neither drop nor keep anything.
#[derive(Debug, Clone, Default)]
pub struct ConnectionControl {
    dropped: Option<Arc<AtomicBool>>,
    kept: Option<Arc<Mutex<axum::http::Extensions>>>,
}

impl ConnectionControl {
    /// The connection's value of type `T` (made with `T::default()` on first use): every
    /// request on the same connection gets the same one (make `T` an `Arc` to share it).
    /// None outside a server.
    pub fn kept<T: Default + Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let mut kept = self.kept.as_ref()?.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(value) = kept.get::<T>() {
            return Some(value.clone());
        }
        let value = T::default();
        kept.insert(value.clone());
        Some(value)
    }

    /// Makes the connection fail every further read and write, so the server closes it
    /// without writing the reply. Returns false when this request has no connection to drop.
    pub fn drop_connection(&self) -> bool {
        match &self.dropped {
            Some(flag) => {
                flag.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionControl {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ConnectInfo<ConnectionControl>>().map(|info| info.0.clone()).unwrap_or_default())
    }
}

/// What a connection runs over: plain TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection (plain or TLS) that can be cut from inside a handler (see
/// [`ConnectionControl`]).
pub struct DroppableStream {
    inner: Box<dyn Io>,
    dropped: Arc<AtomicBool>,
}

impl std::fmt::Debug for DroppableStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DroppableStream").field("dropped", &self.dropped).finish_non_exhaustive()
    }
}

impl DroppableStream {
    fn new(inner: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) -> Self {
        Self { inner: Box::new(inner), dropped: Arc::new(AtomicBool::new(false)) }
    }

    fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn dropped_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection dropped by an injected fault")
}

impl AsyncRead for DroppableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.is_dropped() {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DroppableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.is_dropped() {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_dropped() {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dropped() {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Longest a client may take over its TLS handshake before the connection is closed.
const HANDSHAKE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A listener whose connections are [`DroppableStream`]s: plain TCP, or TLS, where each
/// handshake runs in its own task so a slow or refusing client holds up no other.
#[derive(Debug)]
pub struct DroppableListener {
    addr: SocketAddr,
    incoming: Incoming,
}

#[derive(Debug)]
enum Incoming {
    Plain(TcpListener),
    Tls { handshaken: tokio::sync::mpsc::Receiver<(DroppableStream, SocketAddr)>, _accepting: AbortOnDrop },
}

/// Stops the TLS accept loop with its listener.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl DroppableListener {
    fn plain(listener: TcpListener) -> io::Result<Self> {
        Ok(Self { addr: listener.local_addr()?, incoming: Incoming::Plain(listener) })
    }

    fn tls(listener: TcpListener, tls: &crate::tls::SimTls) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let acceptor = tls.acceptor();
        let (sender, handshaken) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            let mut listener = listener;
            loop {
                let (stream, peer) = axum::serve::Listener::accept(&mut listener).await;
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((DroppableStream::new(stream), peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { addr, incoming: Incoming::Tls { handshaken, _accepting: AbortOnDrop(accepting) } })
    }
}

impl axum::serve::Listener for DroppableListener {
    type Io = DroppableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.incoming {
            Incoming::Plain(listener) => {
                let (stream, addr) = axum::serve::Listener::accept(listener).await;
                (DroppableStream::new(stream), addr)
            }
            Incoming::Tls { handshaken, .. } => match handshaken.recv().await {
                Some(accepted) => accepted,
                // The accept loop ended: no connection will come.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

impl Connected<axum::serve::IncomingStream<'_, DroppableListener>> for ConnectionControl {
    fn connect_info(stream: axum::serve::IncomingStream<'_, DroppableListener>) -> Self {
        Self { dropped: Some(stream.io().dropped.clone()), kept: Some(Arc::default()) }
    }
}

/// Says, to [`origin`], that a request came over TLS (as a TLS-terminating proxy says it).
const FORWARDED_PROTO: &str = "x-forwarded-proto";

async fn mark_https(mut request: axum::extract::Request) -> axum::extract::Request {
    request.headers_mut().insert(FORWARDED_PROTO, axum::http::HeaderValue::from_static("https"));
    request
}

/// `http://HOST` or `https://HOST` of a request, for the absolute links an emulator writes
/// (Siebel's `Link` hrefs, Graph's nextLink and deltaLink).
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let https = headers.get(FORWARDED_PROTO).is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// An emulator serving on a loopback port; dropping it (or calling `stop`) shuts it down.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Served over TLS (`https://`).
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free one) and serves `router` until stopped.
    pub async fn start(router: Router, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(router, DroppableListener::plain(listener)?, false)
    }

    /// Like [`start`](Self::start), over TLS with `tls`'s certificate.
    pub async fn start_tls(router: Router, addr: SocketAddr, tls: &crate::tls::SimTls) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(router, DroppableListener::tls(listener, tls)?, true)
    }

    fn serve(router: Router, listener: DroppableListener, tls: bool) -> std::io::Result<Self> {
        // Clients of the emulators in the same process (tests) need a rustls provider.
        crate::tls::install_crypto_provider();
        let router = if tls { router.layer(axum::middleware::map_request(mark_https)) } else { router };
        let addr = listener.addr;
        let service = router.into_make_service_with_connect_info::<ConnectionControl>();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, service).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "emulator stopped with an error");
            }
        });
        Ok(Self { addr, tls, shutdown: Some(shutdown), task: Some(task) })
    }

    /// `http://ADDR` or `https://ADDR`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_rate_and_kinds() {
        let faults = Faults::new(0.0, 7);
        assert_eq!(faults.draw(&["a", "b"]), None);
        faults.set(FaultSettings { rate: 1.0, kinds: vec!["b".into()] });
        for _ in 0..20 {
            assert_eq!(faults.draw(&["a", "b"]), Some("b"));
        }
        faults.set(FaultSettings { rate: 1.0, kinds: vec!["zzz".into()] });
        assert_eq!(faults.draw(&["a", "b"]), None);
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let creds = Credentials::new("sadmin", "secret");
        let mut headers = HeaderMap::new();
        assert!(!creds.check_basic(&headers));
        let good = base64::engine::general_purpose::STANDARD.encode("sadmin:secret");
        headers.insert("authorization", format!("Basic {good}").parse().unwrap());
        assert!(creds.check_basic(&headers));
        let bad = base64::engine::general_purpose::STANDARD.encode("sadmin:wrong");
        headers.insert("authorization", format!("Basic {bad}").parse().unwrap());
        assert!(!creds.check_basic(&headers));
    }
}
