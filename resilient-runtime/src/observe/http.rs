//! An opt-in HTTP endpoint: `/metrics` for Prometheus, `/resilience` (the text
//! dashboard) and `/resilience.html` (the same as a page that reloads itself).
//!
//! ```no_run
//! use resilient_runtime::MetricsServer;
//!
//! # async fn run() -> Result<(), resilient_runtime::MetricsServerError> {
//! // 127.0.0.1:9464 unless told otherwise; the process-wide metrics.
//! let server = MetricsServer::builder()
//!     .bearer_token(std::env::var("METRICS_TOKEN").unwrap_or_default())
//!     .start()
//!     .await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! // ...
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! It binds `127.0.0.1:9464` unless given another address: expose it to a Prometheus
//! outside the host on purpose (`bind` or `RESILIENT_METRICS_ADDR`), never by default.
//! With a bearer token, every request without `Authorization: Bearer <token>` gets `401`
//! with an empty body, whatever its path; the token is compared in constant time and
//! never appears in `Debug` output or logs.

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::observe::dashboard::Dashboard;
use crate::observe::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};

/// The default address: loopback only, port 9464 (the port OpenTelemetry's Prometheus
/// exporter uses).
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);
/// The variable [`MetricsServerBuilder::from_env`] reads the address from.
pub const ADDR_ENV: &str = "RESILIENT_METRICS_ADDR";
/// The variable [`MetricsServerBuilder::from_env`] reads the bearer token from.
pub const TOKEN_ENV: &str = "RESILIENT_METRICS_TOKEN";

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown, or the end of a connection's age, waits for a response in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections served at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// How long a connection (keep-alive included) lives, by default.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);
/// Pause after a failed `accept` (out of file descriptors), so as not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why the endpoint could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum MetricsServerError {
    /// `start` was called outside a tokio runtime.
    NoRuntime,
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bearer token is empty (it would let anyone in).
    EmptyToken,
    /// An environment variable holds a value that cannot be used.
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong (never the token's value).
        message: String,
    },
}

impl fmt::Display for MetricsServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsServerError::NoRuntime => {
                f.write_str("the metrics endpoint must be started inside a tokio runtime")
            }
            MetricsServerError::Bind { addr, source } => {
                write!(f, "cannot bind the metrics endpoint to {addr}: {source}")
            }
            MetricsServerError::EmptyToken => f.write_str(
                "the metrics endpoint's bearer token is empty; set a token or none at all",
            ),
            MetricsServerError::Env { var, message } => write!(f, "{var}: {message}"),
        }
    }
}

impl std::error::Error for MetricsServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MetricsServerError::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
struct BearerToken(Arc<[u8]>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl BearerToken {
    /// Whether `offered` is the token, in time that depends only on the token's length.
    fn matches(&self, offered: &[u8]) -> bool {
        let expected = &*self.0;
        let mut diff = u8::from(offered.len() != expected.len());
        for (i, e) in expected.iter().enumerate() {
            let o = offered.get(i).copied().unwrap_or(!*e);
            diff |= std::hint::black_box(o ^ e);
        }
        diff == 0
    }
}

/// Builds a [`MetricsServer`].
#[derive(Debug, Clone)]
pub struct MetricsServerBuilder {
    addr: SocketAddr,
    token: Option<BearerToken>,
    metrics: Option<Metrics>,
    registry: Option<Arc<Registry>>,
    dashboard: Option<Dashboard>,
    limits: Limits,
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    max_connection_age: Duration,
}

impl MetricsServerBuilder {
    /// At most this many connections are served at once; past it, new ones wait in the
    /// listen backlog until one closes, so that clients which connect and never finish
    /// cannot exhaust the process. Default: [`DEFAULT_MAX_CONNECTIONS`] (64). 0 counts
    /// as 1.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections.max(1);
        self
    }

    /// A connection is closed this long after it was accepted, keep-alive or not: a
    /// response in flight then gets 5 more seconds to finish (a client that stops
    /// reading loses it). Prometheus simply reconnects for its next scrape. Default:
    /// [`DEFAULT_MAX_CONNECTION_AGE`] (2 minutes); less than a second counts as one
    /// (a connection must live long enough to be answered).
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.limits.max_connection_age = age.max(Duration::from_secs(1));
        self
    }

    /// The address to listen on. Default: [`DEFAULT_ADDR`] (`127.0.0.1:9464`); port 0
    /// picks a free port ([`MetricsServer::local_addr`] tells which).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request. Default: none.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(BearerToken(token.into().into_bytes().into()));
        self
    }

    /// Serves these metrics. Default: the process-wide ones
    /// ([`Metrics::install_global`], installed when the server starts if need be).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves this registry on `/metrics` instead: yours, with the breakers' metrics
    /// merged into it by [`Metrics::register`]. The dashboard still reads the metrics.
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The dashboard to serve (its window and thresholds). Default: one over the
    /// served metrics with the default settings.
    pub fn dashboard(mut self, dashboard: Dashboard) -> Self {
        self.dashboard = Some(dashboard);
        self
    }

    /// Takes the address from `RESILIENT_METRICS_ADDR` (`0.0.0.0:9464` in a pod that
    /// Prometheus scrapes) and the bearer token from `RESILIENT_METRICS_TOKEN`, when
    /// they are set and not empty; the builder's values otherwise. An address that does
    /// not parse is an error naming the variable.
    pub fn from_env(mut self) -> Result<Self, MetricsServerError> {
        if let Some(addr) = env_var(ADDR_ENV)? {
            self.addr = addr.trim().parse().map_err(|_| MetricsServerError::Env {
                var: ADDR_ENV,
                message: format!("{addr:?} is not an address like 127.0.0.1:9464"),
            })?;
        }
        if let Some(token) = env_var(TOKEN_ENV)? {
            self = self.bearer_token(token);
        }
        Ok(self)
    }

    /// Binds the address and serves on the current tokio runtime.
    pub async fn start(self) -> Result<MetricsServer, MetricsServerError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MetricsServerError::NoRuntime);
        }
        if self.token.as_ref().is_some_and(|t| t.0.is_empty()) {
            return Err(MetricsServerError::EmptyToken);
        }
        let bind_error = |source| MetricsServerError::Bind {
            addr: self.addr,
            source,
        };
        let listener = TcpListener::bind(self.addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let metrics = self.metrics.unwrap_or_else(Metrics::install_global);
        let dashboard = self.dashboard.unwrap_or_default().metrics(metrics.clone());
        let state = Arc::new(Endpoint {
            metrics,
            registry: self.registry,
            dashboard,
            token: self.token,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, state, self.limits, stopped));
        tracing::info!(%addr, "metrics endpoint listening");
        Ok(MetricsServer {
            addr,
            stop,
            task: Some(task),
        })
    }
}

fn env_var(var: &'static str) -> Result<Option<String>, MetricsServerError> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(MetricsServerError::Env {
            var,
            message: "not valid UTF-8".into(),
        }),
    }
}

/// The running endpoint. Dropping it stops the server; [`shutdown`](Self::shutdown)
/// also waits for requests in flight.
#[must_use = "dropping the handle stops the server"]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// A builder: `127.0.0.1:9464`, no token, the process-wide metrics.
    pub fn builder() -> MetricsServerBuilder {
        MetricsServerBuilder {
            addr: DEFAULT_ADDR,
            token: None,
            metrics: None,
            registry: None,
            dashboard: None,
            limits: Limits {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            },
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets requests in flight finish (up to 5 s), and
    /// returns when the server is gone.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What every connection serves.
struct Endpoint {
    metrics: Metrics,
    registry: Option<Arc<Registry>>,
    dashboard: Dashboard,
    token: Option<BearerToken>,
}

/// Resolves when the server is told to stop (or its handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

enum Event<T> {
    Ready(T),
    Stop,
}

/// Polls `fut` until it is ready or the server is told to stop.
async fn or_stop<F: Future>(fut: F, rx: &mut watch::Receiver<bool>) -> Event<F::Output> {
    let mut fut = pin!(fut);
    let mut stop = pin!(stopped(rx));
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Event::Ready(out));
        }
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Stop);
        }
        Poll::Pending
    })
    .await
}

async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    limits: Limits,
    mut rx: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    'accept: loop {
        while connections.try_join_next().is_some() {}
        while connections.len() >= limits.max_connections {
            // At the cap: the next connection waits in the backlog until one ends.
            if let Event::Stop = or_stop(connections.join_next(), &mut rx).await {
                break 'accept;
            }
        }
        let stream = match or_stop(listener.accept(), &mut rx).await {
            Event::Stop => break,
            Event::Ready(Ok((stream, _peer))) => stream,
            Event::Ready(Err(error)) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let endpoint = endpoint.clone();
        let mut rx = rx.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&endpoint, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut conn = pin!(
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
            );
            let served = tokio::time::timeout(limits.max_connection_age, conn.as_mut());
            let ended = matches!(or_stop(served, &mut rx).await, Event::Ready(Ok(_)));
            if !ended {
                // Stopping, or too old: no new request, and the one in flight gets a
                // grace period to finish.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    tracing::info!("metrics endpoint stopped");
}

fn authorized(headers: &HeaderMap, token: &BearerToken) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let scheme = b"bearer ";
    if value.len() < scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return false;
    }
    token.matches(value[scheme.len()..].trim_ascii())
}

fn respond(endpoint: &Endpoint, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(token) = &endpoint.token
        && !authorized(req.headers(), token)
    {
        let mut response = empty(StatusCode::UNAUTHORIZED);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req.headers().get_all(header::ACCEPT).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.contains("application/openmetrics-text"))
            });
            let (body, content_type) = match (&endpoint.registry, openmetrics) {
                (Some(registry), true) => (encode_openmetrics(registry), OPENMETRICS_CONTENT_TYPE),
                (Some(registry), false) => (encode_text(registry), TEXT_CONTENT_TYPE),
                (None, true) => (
                    endpoint.metrics.encode_openmetrics(),
                    OPENMETRICS_CONTENT_TYPE,
                ),
                (None, false) => (endpoint.metrics.encode(), TEXT_CONTENT_TYPE),
            };
            ok(body, content_type)
        }
        "/resilience" => ok(endpoint.dashboard.render(), "text/plain; charset=utf-8"),
        "/resilience.html" => {
            let mut response = ok(endpoint.dashboard.render_html(), "text/html; charset=utf-8");
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            response
        }
        "/" => ok(
            "/metrics\n/resilience\n/resilience.html\n".to_owned(),
            "text/plain; charset=utf-8",
        ),
        _ => empty(StatusCode::NOT_FOUND),
    }
}

fn encode_text(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

fn encode_openmetrics(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

fn ok(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let t = BearerToken(b"s3cret".to_vec().into());
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cres"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3crett"));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "\"<redacted>\"");
    }

    #[test]
    fn authorization_header() {
        let t = BearerToken(b"abc".to_vec().into());
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &t));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(authorized(&h, &t));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert!(authorized(&h, &t));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!authorized(&h, &t));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert!(!authorized(&h, &t));
    }

    #[test]
    fn builder_debug_hides_the_token() {
        let b = MetricsServer::builder().bearer_token("hunter2-secret");
        let shown = format!("{b:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
