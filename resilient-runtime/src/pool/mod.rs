//! The balancing transport: one lazily connected tonic [`Channel`] per endpoint of a
//! target, behind a [`tower::Service`] that tonic clients and generated clients accept
//! as their transport.
//!
//! ```no_run
//! use resilient_runtime::Pool;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::from_target("dns:///auth-service.nova.svc.cluster.local:8083")?;
//! // AuthServiceResilientClient::new(AuthServiceClient::new(pool.clone()))
//! # let _ = pool; Ok(()) }
//! ```
//!
//! * **Balancing**: [`Balance::PowerOfTwoChoices`] on calls in flight (the default), or
//!   [`Balance::RoundRobin`].
//! * **No endpoints**: a call fails at once with `UNAVAILABLE` saying why (the resolver's
//!   last error, or an empty answer). Only before the first resolution has finished does
//!   a call wait for it, at most [`PoolBuilder::first_resolution_wait`].
//! * **Ejection**: consecutive connection failures, `UNAVAILABLE` answers, or calls left
//!   unanswered until the RPC's own deadline while other endpoints answered (a hung
//!   replica) take an endpoint out of rotation ([`Ejection`]); the breaker above sees
//!   only the failures the pool could not route around.
//! * **Re-resolution**: DNS every [`PoolBuilder::refresh_interval`] with jitter, and early
//!   (rate-limited) when an endpoint fails; Consul by blocking queries; etcd by a watch.
//!   A resolver error, or an empty answer, keeps the last good set.
//! * **Membership changes** never cut a call in flight: a removed endpoint's channel
//!   lives until its last call ends.
//! * **Health checks** (feature `health`, `PoolBuilder::health_check`): each endpoint
//!   is asked `grpc.health.v1.Health` on its own channel; one that does not answer
//!   `SERVING` leaves rotation before a user call finds out.
//! * **TLS** (feature `tls`, `PoolBuilder::tls`): every endpoint is dialled at its IP
//!   and verified against the target's host name.

mod balance;
mod eject;
mod endpoint;
mod health;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use balance::Balance;
pub use eject::Ejection;
pub use endpoint::{EndpointInfo, EndpointState};
pub use health::Health;
#[cfg(feature = "health")]
pub use health::{HealthCheck, HealthMode};

use balance::{Candidate, Rank};
use endpoint::{CallGuard, Endpoint, TrackedBody, grpc_code, held_deadline, missed_at_server};
use health::HealthCell;

use crate::discover::resolve::{
    Context as ResolveContext, Refresh, Report, Resolver, ResolverOptions,
};
use crate::discover::{Address, DiscoveryError, ErrorKind, Target, TargetKind};
use crate::retry::route::{AttemptRoute, EndpointKey};

/// The error type of the pool's service: a boxed [`Status`] (tonic returns it as is).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Configure =
    Arc<dyn Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint + Send + Sync>;

/// A balancing, self-updating transport for one target. Clones share everything; the
/// background resolution stops when the last clone is dropped.
///
/// `Pool` implements `tower::Service<http::Request<tonic::body::Body>>` with the same
/// response type as [`Channel`], so it is accepted wherever a `Channel` is:
/// `AuthServiceClient::new(pool)`, `AuthServiceResilientClient<Pool>`.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Options of a [`Pool`]; from [`Pool::builder`].
#[derive(Clone)]
pub struct PoolBuilder {
    target: String,
    balance: Balance,
    ejection: Ejection,
    refresh: Refresh,
    first_resolution_wait: Duration,
    connect_timeout: Duration,
    configure: Option<Configure>,
    resolver: ResolverOptions,
    #[cfg(feature = "health")]
    health_check: Option<HealthCheck>,
    #[cfg(feature = "tls")]
    tls: Option<TlsSettings>,
}

/// A pool's TLS settings. Never printed: the config may hold a private key.
#[cfg(feature = "tls")]
#[derive(Clone)]
struct TlsSettings {
    config: tonic::transport::ClientTlsConfig,
    identity: Option<tonic::transport::Identity>,
    server_name: Option<String>,
}

#[cfg(feature = "tls")]
impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("client_identity", &self.identity.as_ref().map(|_| "***"))
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("PoolBuilder");
        f.field("target", &crate::discover::target::redact(&self.target))
            .field("balance", &self.balance)
            .field("ejection", &self.ejection)
            .field("refresh_interval", &self.refresh.interval)
            .field("min_re_resolve_interval", &self.refresh.min_interval)
            .field("first_resolution_wait", &self.first_resolution_wait)
            .field("connect_timeout", &self.connect_timeout)
            .field("resolver", &self.resolver);
        #[cfg(feature = "health")]
        f.field("health_check", &self.health_check);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        f.finish_non_exhaustive()
    }
}

/// The default DNS re-resolution interval: Kubernetes' DNS TTL.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

impl PoolBuilder {
    fn new(target: &str) -> Self {
        PoolBuilder {
            target: target.to_string(),
            balance: Balance::default(),
            ejection: Ejection::default(),
            refresh: Refresh {
                interval: DEFAULT_REFRESH_INTERVAL,
                min_interval: Duration::from_secs(1),
            },
            first_resolution_wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            configure: None,
            resolver: ResolverOptions::default(),
            #[cfg(feature = "health")]
            health_check: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// How calls are spread. Default: [`Balance::PowerOfTwoChoices`].
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// When endpoints are ejected. Default: [`Ejection::default`] (3 failures in a row,
    /// 10 s growing per ejection up to 5 min, at most 50 % ejected).
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.ejection = ejection;
        self
    }

    /// How often a DNS target is resolved again (each wait is shortened by up to 20 %
    /// at random, so replicas do not resolve in step). Default: 30 s.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh.interval = interval;
        self
    }

    /// The least time between two resolutions when failures ask for early ones.
    /// Default: 1 s.
    pub fn min_re_resolve_interval(mut self, interval: Duration) -> Self {
        self.refresh.min_interval = interval;
        self
    }

    /// How long a call made before the first resolution has finished waits for it.
    /// Default: 5 s.
    pub fn first_resolution_wait(mut self, wait: Duration) -> Self {
        self.first_resolution_wait = wait;
        self
    }

    /// How long connecting to one endpoint may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Adjusts every endpoint's channel settings (keep-alive, window sizes, ...) before
    /// it is created. Default: tonic's, plus [`connect_timeout`](Self::connect_timeout).
    pub fn configure_endpoint(
        mut self,
        f: impl Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(f));
        self
    }

    /// Probes every endpoint with the standard gRPC health protocol and keeps those that
    /// do not answer `SERVING` out of rotation (see [`HealthCheck`]). Default: none; only
    /// failed calls take an endpoint out ([`Ejection`]).
    #[cfg(feature = "health")]
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// Connects to every endpoint with TLS (feature `tls`). Default: plain HTTP/2, except
    /// that an `https://` target needs this.
    ///
    /// Each endpoint is dialled at its own IP, but its certificate is verified against
    /// the target's host name, which is also sent as SNI:
    /// `dns:///auth-service.nova.svc.cluster.local:8083` verifies
    /// `auth-service.nova.svc.cluster.local` whatever pod IP it resolves to, and
    /// `dns:///_grpc._tcp.auth-service.nova.svc.cluster.local` verifies the name without
    /// its `_grpc._tcp.` labels. Static, Consul and etcd targets verify each endpoint's
    /// own host (an IP needs an IP SAN); [`tls_server_name`](Self::tls_server_name)
    /// sets one name for all. Any `domain_name` in `config` is replaced by that name.
    ///
    /// Trust roots come from `config` (`ca_certificate`, or tonic's `with_native_roots`
    /// / `with_webpki_roots` when their features are on). A client certificate for mTLS
    /// is `config.identity(...)` or [`tls_identity`](Self::tls_identity).
    ///
    /// A failed handshake (unknown issuer, wrong name, a client certificate refused) is a
    /// connection failure: the call gets `UNAVAILABLE` naming the endpoint and the TLS
    /// error, and the failure counts toward the endpoint's ejection.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: tonic::transport::ClientTlsConfig) -> Self {
        match &mut self.tls {
            Some(tls) => tls.config = config,
            None => {
                self.tls = Some(TlsSettings {
                    config,
                    identity: None,
                    server_name: None,
                })
            }
        }
        self
    }

    /// The client certificate and key presented to endpoints that ask for one (mTLS).
    /// Turns TLS on with an empty [`ClientTlsConfig`](tonic::transport::ClientTlsConfig)
    /// if [`tls`](Self::tls) was not called. Default: none. The key is never printed.
    #[cfg(feature = "tls")]
    pub fn tls_identity(mut self, identity: tonic::transport::Identity) -> Self {
        self.tls_settings().identity = Some(identity);
        self
    }

    /// The one name every endpoint's certificate is verified against (and sent as SNI).
    /// Turns TLS on like [`tls_identity`](Self::tls_identity). Default: the target's
    /// host name, as [`tls`](Self::tls) describes.
    #[cfg(feature = "tls")]
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_settings().server_name = Some(name.into());
        self
    }

    #[cfg(feature = "tls")]
    fn tls_settings(&mut self) -> &mut TlsSettings {
        self.tls.get_or_insert_with(|| TlsSettings {
            config: tonic::transport::ClientTlsConfig::new(),
            identity: None,
            server_name: None,
        })
    }

    /// DNS settings. Default: [`DnsOptions::default`](crate::discover::DnsOptions).
    #[cfg(feature = "dns")]
    pub fn dns(mut self, options: crate::discover::DnsOptions) -> Self {
        self.resolver.dns = options;
        self
    }

    /// Consul settings. Default: from `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN`.
    #[cfg(feature = "consul")]
    pub fn consul(mut self, options: crate::discover::ConsulOptions) -> Self {
        self.resolver.consul = options;
        self
    }

    /// etcd settings. Default: from `ETCD_ENDPOINTS`.
    #[cfg(feature = "etcd")]
    pub fn etcd(mut self, options: crate::discover::EtcdOptions) -> Self {
        self.resolver.etcd = options;
        self
    }

    /// Checks the target and options and starts resolving in the background. Must be
    /// called inside a tokio runtime; returns at once.
    pub fn build(self) -> Result<Pool, DiscoveryError> {
        let target = Target::parse(&self.target)?;
        let invalid = |m: String| DiscoveryError::new(ErrorKind::InvalidTarget, &self.target, m);
        self.ejection.validate().map_err(invalid)?;
        if self.refresh.interval.is_zero() {
            return Err(invalid("refresh_interval must be above zero".into()));
        }
        #[cfg(feature = "health")]
        if let Some(check) = &self.health_check {
            check.validate().map_err(invalid)?;
        }
        #[cfg(feature = "tls")]
        let tls_on = self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls_on = false;
        if target.uses_tls() && !tls_on {
            return Err(invalid(
                "`https://` targets need TLS settings: PoolBuilder::tls (feature `tls`)".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            DiscoveryError::new(
                ErrorKind::NoRuntime,
                &self.target,
                "a pool must be created inside a tokio runtime",
            )
        })?;
        let resolver = Resolver::new(&target, &self.resolver)?;
        let (reports, _) = watch::channel(0u64);
        let (generation, _) = watch::channel(0u64);
        let (health_changes, _) = watch::channel(0u64);
        let ejections = ejection_counter(&target);
        let state = Arc::new(State {
            target,
            balance: self.balance,
            ejection: self.ejection,
            first_resolution_wait: self.first_resolution_wait,
            connect_timeout: self.connect_timeout,
            configure: self.configure,
            epoch: Instant::now(),
            endpoints: RwLock::new(Arc::from(Vec::new())),
            resolution: Mutex::new(Resolution::default()),
            reports,
            generation,
            turn: AtomicUsize::new(0),
            re_resolve: Arc::new(Notify::new()),
            eject_lock: Mutex::new(()),
            ejections,
            health_changes: Arc::new(health_changes),
            runtime: runtime.clone(),
            #[cfg(feature = "health")]
            health_check: self.health_check.map(Arc::new),
            #[cfg(feature = "tls")]
            tls: self.tls,
        });
        let ctx = ResolveContext {
            sink: state.clone(),
            re_resolve: state.re_resolve.clone(),
            refresh: self.refresh,
        };
        let task = runtime.spawn(resolver.run(ctx)).abort_handle();
        register(&state);
        Ok(Pool {
            inner: Arc::new(Inner { state, task }),
        })
    }

    /// Like [`build`](Self::build), then waits for the first resolution: an error if it
    /// failed or found no endpoints (or took longer than
    /// [`first_resolution_wait`](Self::first_resolution_wait)). With health checks, it
    /// also waits (at most their timeout) for each endpoint's first answer.
    pub async fn build_resolved(self) -> Result<Pool, DiscoveryError> {
        let pool = self.build()?;
        pool.inner.state.wait_first_resolution().await;
        let state = &pool.inner.state;
        if state.snapshot().is_empty() {
            let r = state.resolution();
            return Err(match r.last_error {
                Some(e) => e,
                None => DiscoveryError::new(
                    ErrorKind::Unreachable,
                    state.target.as_str(),
                    format!(
                        "no answer within {} ms",
                        pool.inner.state.first_resolution_wait.as_millis()
                    ),
                ),
            });
        }
        state.wait_first_health().await;
        Ok(pool)
    }
}

impl Pool {
    /// A pool for `target` with default options (see [`PoolBuilder`]). Must be called
    /// inside a tokio runtime; resolution runs in the background.
    pub fn from_target(target: &str) -> Result<Pool, DiscoveryError> {
        Pool::builder(target).build()
    }

    /// A pool for the service of a generated client: its target from
    /// [`target_for`](crate::discover::target_for) (`AUTH_SERVICE_URL`, then
    /// `RESILIENT_CONFIG`).
    pub fn for_service(spec: &crate::spec::ServiceSpec) -> Result<Pool, DiscoveryError> {
        Pool::from_target(&crate::discover::target_for(spec)?)
    }

    /// Options for a pool of `target`.
    pub fn builder(target: &str) -> PoolBuilder {
        PoolBuilder::new(target)
    }

    /// The target, as written (any credentials replaced by `***`).
    pub fn target(&self) -> String {
        self.inner.state.target.to_string()
    }

    /// Every endpoint now in the pool, in address order.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        let state = &self.inner.state;
        let now = state.now();
        state
            .snapshot()
            .iter()
            .map(|e| EndpointInfo::of(e, state.epoch, now))
            .collect()
    }

    /// The addresses now in the pool, in order.
    pub fn addresses(&self) -> Vec<Address> {
        self.inner
            .state
            .snapshot()
            .iter()
            .map(|e| e.address.clone())
            .collect()
    }

    /// How resolution is going.
    pub fn resolution(&self) -> ResolutionStatus {
        let r = self.inner.state.resolution();
        ResolutionStatus {
            resolutions: *self.inner.state.reports.borrow(),
            generation: *self.inner.state.generation.borrow(),
            last_update: r.last_update,
            last_error: r.last_error,
        }
    }

    /// A receiver of the membership generation, bumped each time the set of endpoints
    /// changes (`changed().await` to wait for the next change).
    pub fn membership(&self) -> watch::Receiver<u64> {
        self.inner.state.generation.subscribe()
    }

    /// Waits until the first resolution has finished (at most
    /// [`PoolBuilder::first_resolution_wait`]).
    pub async fn ready(&self) {
        self.inner.state.wait_first_resolution().await;
    }

    /// A receiver of the health generation, bumped each time an endpoint's
    /// [`Health`] changes (`changed().await` to wait for the next change).
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.inner.state.health_changes.subscribe()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target())
            .field("endpoints", &self.addresses())
            .finish()
    }
}

/// What [`Pool::resolution`] tells.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolutionStatus {
    /// Results reported by the resolver so far (sets and errors).
    pub resolutions: u64,
    /// Membership changes so far.
    pub generation: u64,
    /// When the resolver last gave a usable set.
    pub last_update: Option<Instant>,
    /// The resolver's last error (or empty answer), cleared by the next usable set.
    pub last_error: Option<DiscoveryError>,
}

#[derive(Debug, Default, Clone)]
struct Resolution {
    last_update: Option<Instant>,
    last_error: Option<DiscoveryError>,
}

pub(crate) struct State {
    target: Target,
    balance: Balance,
    ejection: Ejection,
    first_resolution_wait: Duration,
    connect_timeout: Duration,
    configure: Option<Configure>,
    epoch: Instant,
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    resolution: Mutex<Resolution>,
    /// Results reported so far.
    reports: watch::Sender<u64>,
    /// Membership changes so far.
    generation: watch::Sender<u64>,
    turn: AtomicUsize,
    re_resolve: Arc<Notify>,
    /// Held while deciding an ejection, so that the share limit holds.
    eject_lock: Mutex<()>,
    /// Ejections so far, of every pool of this target (see [`ejection_counter`]).
    ejections: Arc<AtomicU64>,
    /// Health changes so far (every endpoint's cell bumps it).
    health_changes: Arc<watch::Sender<u64>>,
    /// Where probe tasks run.
    #[cfg_attr(not(feature = "health"), allow(dead_code))]
    runtime: tokio::runtime::Handle,
    #[cfg(feature = "health")]
    health_check: Option<Arc<HealthCheck>>,
    #[cfg(feature = "tls")]
    tls: Option<TlsSettings>,
}

impl Candidate for Arc<Endpoint> {
    fn rank(&self, now: u64) -> Rank {
        match self.health.get() {
            h if h.is_out() => Rank::Out,
            _ if self.is_ejected(now) => Rank::Ejected,
            Health::Pending => Rank::Pending,
            _ => Rank::Ready,
        }
    }
    fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// An endpoint as one call sees it: tried by an earlier attempt of the call, or not.
struct Routed<'a> {
    endpoint: &'a Arc<Endpoint>,
    tried: bool,
}

impl Candidate for Routed<'_> {
    fn rank(&self, now: u64) -> Rank {
        match self.endpoint.rank(now) {
            rank @ (Rank::Out | Rank::Ejected) => rank,
            _ if self.tried => Rank::Tried,
            rank => rank,
        }
    }
    fn load(&self) -> usize {
        self.endpoint.load()
    }
}

/// Every pool of the process that is still alive, for the metrics.
static POOLS: Mutex<Vec<Weak<State>>> = Mutex::new(Vec::new());

fn register(state: &Arc<State>) {
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(|p| p.strong_count() > 0);
    pools.push(Arc::downgrade(state));
}

/// Ejections by target (redacted), over the life of the process: a counter that a pool
/// going away does not take down.
static EJECTIONS: Mutex<std::collections::BTreeMap<String, Arc<AtomicU64>>> =
    Mutex::new(std::collections::BTreeMap::new());

fn ejection_counter(target: &Target) -> Arc<AtomicU64> {
    let mut all = EJECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    all.entry(target.to_string()).or_default().clone()
}

/// Every target's ejections so far, by target, sorted.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn ejections_by_target() -> Vec<(String, u64)> {
    EJECTIONS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(target, n)| (target.clone(), n.load(Ordering::Relaxed)))
        .collect()
}

/// The endpoints of the live pools of one target, each address counted once: several
/// clients of one target in a process have a pool each, over the same replicas.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PoolCounts {
    pub(crate) target: String,
    pub(crate) active: u64,
    pub(crate) ejected: u64,
    pub(crate) unhealthy: u64,
}

/// The live pools, by target (redacted), sorted. An address that pools of one target
/// see in different states counts in the best of them (active, then ejected, then
/// unhealthy): how many replicas the process can still call.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn live_pools() -> Vec<PoolCounts> {
    use std::collections::BTreeMap;
    let states: Vec<Arc<State>> = POOLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    // target -> address -> best state (0 active, 1 ejected, 2 unhealthy)
    let mut by_target: BTreeMap<String, BTreeMap<String, u8>> = BTreeMap::new();
    for state in &states {
        let addresses = by_target.entry(state.target.to_string()).or_default();
        let now = state.now();
        for endpoint in state.snapshot().iter() {
            let rank = match EndpointInfo::of(endpoint, state.epoch, now).state {
                EndpointState::Active => 0,
                EndpointState::Ejected => 1,
                EndpointState::Unhealthy => 2,
            };
            let best = addresses
                .entry(endpoint.address.to_string())
                .or_insert(rank);
            *best = (*best).min(rank);
        }
    }
    drop(states);
    by_target
        .into_iter()
        .map(|(target, addresses)| {
            let count = |rank: u8| addresses.values().filter(|r| **r == rank).count() as u64;
            PoolCounts {
                active: count(0),
                ejected: count(1),
                unhealthy: count(2),
                target,
            }
        })
        .collect()
}

fn endpoint_key(endpoint: &Arc<Endpoint>) -> EndpointKey {
    endpoint.id
}

impl State {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn snapshot(&self) -> Arc<[Arc<Endpoint>]> {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn resolution(&self) -> Resolution {
        self.resolution
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn resolved_once(&self) -> bool {
        *self.reports.borrow() > 0
    }

    async fn wait_first_resolution(&self) {
        let mut rx = self.reports.subscribe();
        let _ = tokio::time::timeout(self.first_resolution_wait, rx.wait_for(|n| *n > 0)).await;
    }

    /// With health checks: waits until every endpoint has answered once, at most the
    /// checks' timeout (and a little for the first connection).
    async fn wait_first_health(&self) {
        #[cfg(feature = "health")]
        if let Some(check) = &self.health_check {
            let mut rx = self.health_changes.subscribe();
            let pending = || {
                self.snapshot()
                    .iter()
                    .any(|e| e.health.get() == Health::Pending)
            };
            let limit = check.timeout.saturating_add(Duration::from_millis(200));
            let _ = tokio::time::timeout(limit, async {
                while pending() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
    }

    /// The endpoint for the next attempt; with a `route`, one the call has not tried
    /// while the pool has one in rotation, and the choice is noted in the route.
    fn pick(&self, route: Option<&AttemptRoute>) -> Result<Arc<Endpoint>, Status> {
        let endpoints = self.snapshot();
        let random = |n| fastrand::usize(..n);
        let now = self.now();
        let chosen = match route {
            None => balance::pick(&endpoints, now, self.balance, &self.turn, random),
            Some(route) => {
                let routed: Vec<Routed<'_>> = endpoints
                    .iter()
                    .map(|endpoint| Routed {
                        endpoint,
                        tried: route.tried(endpoint_key(endpoint)),
                    })
                    .collect();
                balance::pick(&routed, now, self.balance, &self.turn, random)
            }
        };
        match chosen {
            Some(i) => {
                if let Some(route) = route {
                    route.chose(endpoint_key(&endpoints[i]));
                }
                Ok(endpoints[i].clone())
            }
            None => Err(self.no_endpoints()),
        }
    }

    /// The error of a call that found no endpoint; asks the resolver to look again (at
    /// most once per `min_re_resolve_interval`), as a failed call does.
    fn no_endpoints(&self) -> Status {
        self.re_resolve.notify_one();
        let why = match self.resolution().last_error {
            Some(e) => e.message().to_string(),
            None if self.resolved_once() => "the resolver found no addresses".to_string(),
            None => format!(
                "the first resolution did not finish within {} ms",
                self.first_resolution_wait.as_millis()
            ),
        };
        Status::unavailable(format!("no endpoints for `{}`: {why}", self.target))
    }

    fn on_success(&self, endpoint: &Endpoint) {
        endpoint.outlier().on_success(self.now(), &self.ejection);
    }

    fn on_failure(&self, endpoint: &Endpoint) {
        endpoint.failures.fetch_add(1, Ordering::Relaxed);
        self.re_resolve.notify_one();
        let now = self.now();
        let _decide = self.eject_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut outlier = endpoint.outlier();
        let ejected = outlier.on_failure(now, &self.ejection, || {
            // Out of rotation already: ejected, or down by its health check. The limit
            // keeps a share of the pool serving whichever way the others left it.
            let endpoints = self.snapshot();
            let out = endpoints
                .iter()
                .filter(|e| e.is_ejected(now) || e.health.get().is_out())
                .count();
            out < self.ejection.max_ejected(endpoints.len())
        });
        if let Some(until) = ejected {
            endpoint.ejected_until.store(until, Ordering::Release);
            self.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target = %self.target,
                endpoint = %endpoint.address,
                ejections = outlier.ejections,
                for_ms = (until - now) / 1_000_000,
                "endpoint ejected"
            );
        }
    }

    /// ` (TLS, verifying `name`)` for messages about a TLS endpoint; empty otherwise.
    fn tls_note(&self, address: &Address) -> String {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return format!(" (TLS, verifying `{}`)", self.tls_server_name(tls, address));
        }
        let _ = address;
        String::new()
    }

    /// The name an endpoint's certificate is verified against.
    #[cfg(feature = "tls")]
    fn tls_server_name(&self, tls: &TlsSettings, address: &Address) -> String {
        if let Some(name) = &tls.server_name {
            return name.clone();
        }
        tls_name_of(&self.target, address)
    }

    fn channel_for(&self, address: &Address) -> Result<Channel, String> {
        #[cfg(feature = "tls")]
        let uri = match &self.tls {
            Some(_) => format!("https://{address}"),
            None => address.uri(),
        };
        #[cfg(not(feature = "tls"))]
        let uri = address.uri();
        let endpoint = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| format!("{address}: {e}"))?
            .connect_timeout(self.connect_timeout);
        #[cfg(feature = "tls")]
        let endpoint = match &self.tls {
            Some(tls) => {
                let mut config = tls
                    .config
                    .clone()
                    .domain_name(self.tls_server_name(tls, address));
                if let Some(identity) = &tls.identity {
                    config = config.identity(identity.clone());
                }
                endpoint
                    .tls_config(config)
                    .map_err(|e| format!("{address}: tls settings: {}", error_chain(&e)))?
            }
            None => endpoint,
        };
        let endpoint = match &self.configure {
            Some(f) => f(endpoint),
            None => endpoint,
        };
        Ok(endpoint.connect_lazy())
    }

    /// A new endpoint, with its health probe started when the pool has health checks.
    fn new_endpoint(&self, address: Address, channel: Channel) -> Endpoint {
        #[cfg(feature = "health")]
        if let Some(check) = &self.health_check {
            let cell = Arc::new(HealthCell::new(
                Health::Pending,
                self.health_changes.clone(),
            ));
            let probe = health::Probe {
                cell: cell.clone(),
                channel: channel.clone(),
                check: check.clone(),
                target: Arc::from(self.target.to_string()),
                endpoint: address.to_string(),
            };
            let task = self.runtime.spawn(health::run(probe)).abort_handle();
            return Endpoint::new(address, channel, cell, Some(task));
        }
        let cell = HealthCell::new(Health::NotChecked, self.health_changes.clone());
        Endpoint::new(address, channel, Arc::new(cell), None)
    }

    /// Makes `addresses` (not empty) the endpoint set. When not one of them can be used
    /// (no channel can be built: a bad TLS server name, say), the set is kept and the
    /// error says why.
    fn apply(&self, mut addresses: Vec<Address>) -> Result<(), DiscoveryError> {
        addresses.sort();
        addresses.dedup();
        let current = self.snapshot();
        if current.len() == addresses.len()
            && current.iter().zip(&addresses).all(|(e, a)| &e.address == a)
        {
            return Ok(());
        }
        let found = addresses.len();
        let mut next: Vec<Arc<Endpoint>> = Vec::with_capacity(found);
        let mut first_error = None;
        for address in addresses {
            if let Some(kept) = current.iter().find(|e| e.address == address) {
                next.push(kept.clone());
                continue;
            }
            match self.channel_for(&address) {
                Ok(channel) => next.push(Arc::new(self.new_endpoint(address, channel))),
                Err(e) => {
                    tracing::warn!(target = %self.target, error = %e, "endpoint skipped");
                    first_error.get_or_insert(e);
                }
            }
        }
        if next.is_empty() {
            return Err(DiscoveryError::new(
                ErrorKind::NoEndpoints,
                self.target.as_str(),
                format!(
                    "none of the {found} addresses found can be used: {}",
                    first_error.unwrap_or_default()
                ),
            ));
        }
        let added: Vec<String> = next
            .iter()
            .filter(|e| !current.iter().any(|c| c.address == e.address))
            .map(|e| e.address.to_string())
            .collect();
        let removed: Vec<String> = current
            .iter()
            .filter(|c| !next.iter().any(|e| c.address == e.address))
            .map(|e| e.address.to_string())
            .collect();
        *self.endpoints.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(next);
        self.generation.send_modify(|g| *g += 1);
        tracing::info!(target = %self.target, ?added, ?removed, "endpoints changed");
        Ok(())
    }
}

impl Report for State {
    fn report(&self, result: Result<Vec<Address>, DiscoveryError>) {
        let kept = self.snapshot().len();
        let error = match result {
            Ok(addresses) if !addresses.is_empty() => match self.apply(addresses) {
                Ok(()) => {
                    let mut r = self.resolution.lock().unwrap_or_else(|p| p.into_inner());
                    r.last_update = Some(Instant::now());
                    r.last_error = None;
                    None
                }
                Err(e) => Some(e),
            },
            Ok(_) => Some(DiscoveryError::new(
                ErrorKind::NoEndpoints,
                self.target.as_str(),
                "the resolver found no addresses",
            )),
            Err(e) => Some(e),
        };
        if let Some(error) = error {
            if kept > 0 {
                tracing::warn!(%error, kept, "resolution failed; keeping the last good endpoints");
            } else {
                tracing::warn!(%error, "resolution failed");
            }
            self.resolution
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_error = Some(error);
        }
        self.reports.send_modify(|n| *n += 1);
    }
}

/// The future of a call through a [`Pool`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl tower::Service<http::Request<Body>> for Pool {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: each call waits for its own endpoint's channel.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> ResponseFuture {
        let state = self.inner.state.clone();
        if !state.resolved_once() {
            return ResponseFuture {
                inner: Box::pin(async move {
                    state.wait_first_resolution().await;
                    let route = request.extensions().get::<AttemptRoute>();
                    let endpoint = state.pick(route).map_err(|s| Box::new(s) as BoxError)?;
                    send(state, endpoint, request).await
                }),
            };
        }
        match state.pick(request.extensions().get::<AttemptRoute>()) {
            Ok(endpoint) => ResponseFuture {
                inner: Box::pin(send(state, endpoint, request)),
            },
            Err(status) => ResponseFuture {
                inner: Box::pin(std::future::ready(Err(Box::new(status) as BoxError))),
            },
        }
    }
}

/// The name a TLS endpoint of `target` is verified against: a DNS target's name (an SRV
/// name without its `_service._proto.` labels), else the endpoint's own host.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn tls_name_of(target: &Target, address: &Address) -> String {
    match target.kind() {
        TargetKind::Dns(dns) => {
            let name = dns.name.trim_end_matches('.');
            if dns.is_srv() {
                let mut labels = name.split('.').peekable();
                while labels.peek().is_some_and(|l| l.starts_with('_')) {
                    labels.next();
                }
                labels.collect::<Vec<_>>().join(".")
            } else {
                name.to_string()
            }
        }
        _ => address.host().to_string(),
    }
}

/// A status's message and the causes behind it (tonic's message for a failed connection
/// is only "transport error").
#[cfg_attr(not(feature = "health"), allow(dead_code))]
pub(crate) fn status_detail(status: &Status) -> String {
    let mut out = status.message().to_string();
    if let Some(source) = std::error::Error::source(status) {
        let causes = error_chain(source);
        if !out.contains(&causes) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&causes);
        }
    }
    out
}

/// An error and its causes, `: `-separated, each said once (tonic's own message for a
/// failed connection is only "transport error").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

pub(crate) fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    crate::classify::in_chain::<tonic::TimeoutExpired>(error).is_some()
}

async fn send(
    state: Arc<State>,
    endpoint: Arc<Endpoint>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, BoxError> {
    let deadline = held_deadline(&request);
    let mut call = CallGuard::new(state.clone(), endpoint, deadline);
    let mut channel = call.endpoint().channel.clone();
    let result = async {
        std::future::poll_fn(|cx| tower::Service::poll_ready(&mut channel, cx)).await?;
        tower::Service::call(&mut channel, request).await
    }
    .await;
    match result {
        Ok(response) => {
            let http_status = response.status();
            let trailers_only = grpc_code(response.headers());
            if let Some(code) = trailers_only
                && missed_at_server(code, response.headers())
            {
                // Trailers-only: the server gave up at the deadline the call carried, as
                // the caller would have. Not an answer.
                call.missed_deadline();
                return Ok(response);
            }
            call.answered();
            if http_status != http::StatusCode::OK {
                // A proxy or a server that is not gRPC: 502/503/504 mean "not reachable".
                if matches!(http_status.as_u16(), 502..=504) {
                    call.failed();
                } else {
                    call.succeeded();
                }
                return Ok(response);
            }
            if let Some(code) = trailers_only {
                // Trailers-only: the status is already here.
                call.finish(Some(code));
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(TrackedBody::new(body, call))))
        }
        Err(error) => {
            let error: BoxError = error.into();
            if is_timeout(&*error) {
                // The deadline, enforced by the channel: the caller must still see tonic's
                // own timeout status. Held against the endpoint only as `held_deadline`
                // and `CallGuard::judge` say.
                call.missed_deadline();
                return Err(error);
            }
            if crate::classify::caused_by_local_reset(&*error) {
                // The request could not be sent (over the client's message size limit,
                // or failing to encode): the caller's doing, not the endpoint's. Passed
                // on as it is, so that tonic reports it as it does without a pool.
                return Err(error);
            }
            let address = call.endpoint().address.clone();
            call.failed();
            Err(Box::new(Status::new(
                Code::Unavailable,
                format!(
                    "endpoint {address} of `{}`{}: {}",
                    state.target,
                    state.tls_note(&address),
                    match error.downcast_ref::<Status>() {
                        Some(status) => status.message().to_string(),
                        None => error_chain(&*error),
                    }
                ),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_transport<T>()
    where
        T: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Future: Send,
    {
    }

    #[test]
    fn is_a_transport() {
        assert_transport::<Pool>();
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let e = Pool::from_target("static:///127.0.0.1:1").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoRuntime);
        assert!(e.to_string().contains("tokio runtime"), "{e}");
    }

    #[tokio::test]
    async fn bad_targets_fail_to_build() {
        let e = Pool::from_target("nope:///x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidTarget);
        let e = Pool::builder("static:///127.0.0.1:1")
            .refresh_interval(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("refresh_interval"), "{e}");
    }

    #[tokio::test]
    async fn static_targets_resolve_once() {
        let pool = Pool::builder("static:///127.0.0.3:1,127.0.0.2:1")
            .build_resolved()
            .await
            .unwrap();
        let a: Vec<String> = pool.addresses().iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["127.0.0.2:1", "127.0.0.3:1"]);
        assert_eq!(pool.resolution().generation, 1);
        assert!(pool.resolution().last_error.is_none());
    }
}
