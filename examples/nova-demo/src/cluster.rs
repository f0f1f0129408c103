//! The nova system on loopback: replicas of each service on their own 127.x.y.z address
//! (as pods have their own IPs), found through the cluster DNS as a headless Service.
//!
//! Each replica runs on its own tokio runtime, so that killing it drops its listener and
//! every connection at once, as a crashed pod would.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_runtime::deadline::DeadlinePropagationLayer;
use tonic::transport::server::Router;
use tower::layer::util::{Identity, Stack};

/// A server with deadline propagation.
type NovaRouter = Router<Stack<DeadlinePropagationLayer, Identity>>;

use crate::dns::ClusterDns;
use crate::load::{USERS, user_id};
use crate::proto::auth::auth_service_client::AuthServiceClient;
use crate::proto::auth::auth_service_resilient::AuthServiceResilientClient;
use crate::proto::auth::auth_service_server::AuthServiceServer;
use crate::proto::content::content_service_client::ContentServiceClient;
use crate::proto::content::content_service_resilient::ContentServiceResilientClient;
use crate::proto::content::content_service_server::ContentServiceServer;
use crate::proto::media::media_service_client::MediaServiceClient;
use crate::proto::media::media_service_resilient::MediaServiceResilientClient;
use crate::proto::media::media_service_server::MediaServiceServer;
use crate::proto::user::user_service_client::UserServiceClient;
use crate::proto::user::user_service_server::UserServiceServer;
use crate::proto::user::{GetUserPostsRequest, GetUserRequest};
use crate::services::{
    Auth, CachedClaims, Content, Fault, Faults, Media, MediaDep, PostsCache, UserDeps, Users,
    token_for,
};
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::spec::ServiceSpec;
use resilient_runtime::{CircuitBreaker, Environment, Pool};

/// The four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// auth-service.
    Auth,
    /// user-service.
    User,
    /// content-service.
    Content,
    /// media-service.
    Media,
}

impl Service {
    /// Every service, callers last.
    pub const ALL: [Service; 4] = [
        Service::Media,
        Service::Content,
        Service::Auth,
        Service::User,
    ];

    /// The Kubernetes Service name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth-service",
            Service::User => "user-service",
            Service::Content => "content-service",
            Service::Media => "media-service",
        }
    }

    fn index(self) -> u8 {
        match self {
            Service::Auth => 0,
            Service::User => 1,
            Service::Content => 2,
            Service::Media => 3,
        }
    }
}

/// How the services call each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// Generated resilient clients over discovery pools, with fallbacks.
    Resilient,
    /// Raw tonic clients over a static list: no timeout, no breaker.
    Raw,
}

/// The shape of the system.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Replicas per service.
    pub replicas: u8,
    /// How services call each other.
    pub mode: ClientMode,
    /// The operator's runtime overrides of the build-time policies (what
    /// `RESILIENT_CONFIG` would hold), if any.
    pub config: Option<Arc<RuntimeConfig>>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            replicas: 3,
            mode: ClientMode::Resilient,
            config: None,
        }
    }
}

/// What a replica calls its dependencies with (resilient mode only), set once it has
/// started: what an operator would look at on a pod's dashboard.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    /// The breakers and policies of each resilient client, by dependency.
    pub runtimes: Vec<(Service, Arc<ServiceRuntime>)>,
    /// The discovery pool under each resilient client, by dependency.
    pub pools: Vec<(Service, Pool)>,
}

/// One replica ("pod") of a service.
pub struct Replica {
    /// Which service.
    pub service: Service,
    /// Its address.
    pub addr: SocketAddr,
    /// Its fault switch.
    pub faults: Arc<Faults>,
    clients: Arc<Mutex<Clients>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("service", &self.service)
            .field("addr", &self.addr)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Replica {
    /// Whether it is running.
    pub fn is_up(&self) -> bool {
        self.runtime.is_some()
    }

    /// Kills it: its listener and every connection close at once.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        // its clients die with it: no breaker of a dead replica stays visible
        *self.clients.lock().unwrap_or_else(|p| p.into_inner()) = Clients::default();
    }

    /// Its clients of its dependencies: none while it is starting, when it is down, or
    /// in [`ClientMode::Raw`].
    pub fn clients(&self) -> Clients {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The breakers of its clients of `dependency` (one per RPC, or one shared).
    pub fn breakers(&self, dependency: Service) -> Vec<CircuitBreaker> {
        let mut found: Vec<CircuitBreaker> = Vec::new();
        for (_, runtime) in self
            .clients()
            .runtimes
            .iter()
            .filter(|(s, _)| *s == dependency)
        {
            for method in runtime.methods() {
                if !found.iter().any(|b| b.ptr_eq(method.breaker())) {
                    found.push(method.breaker().clone());
                }
            }
        }
        found
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The worst delay with which some runtimes ran timers that were due.
///
/// A timeout can end a call no sooner than its runtime gets to run the timer: on a busy
/// machine that is later than the deadline, whatever the timeout does. A task that sleeps
/// in a loop and records how late it wakes measures that delay, so that a call's overshoot
/// can be told apart from the machine's.
#[derive(Debug, Clone, Default)]
pub struct TimerLateness {
    worst_nanos: Arc<AtomicU64>,
}

impl TimerLateness {
    /// How often the watcher wakes.
    const EVERY: Duration = Duration::from_millis(10);

    /// Watches the current runtime until it shuts down (or the task is aborted).
    pub fn watch(&self) -> tokio::task::JoinHandle<()> {
        let worst = self.worst_nanos.clone();
        tokio::spawn(async move {
            loop {
                let due = tokio::time::Instant::now() + Self::EVERY;
                tokio::time::sleep_until(due).await;
                let late = u64::try_from(due.elapsed().as_nanos()).unwrap_or(u64::MAX);
                worst.fetch_max(late, Ordering::Relaxed);
            }
        })
    }

    /// The worst delay seen so far.
    pub fn worst(&self) -> Duration {
        Duration::from_nanos(self.worst_nanos.load(Ordering::Relaxed))
    }
}

/// Distinct loopback networks for clusters running side by side in one process.
static NEXT_NET: AtomicU8 = AtomicU8::new(1);

/// The running system.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster DNS.
    pub dns: ClusterDns,
    /// Replicas, by service.
    pub replicas: Vec<Replica>,
    /// The port every replica of a service listens on (as a container port).
    pub ports: [u16; 4],
    /// How late the replicas' runtimes (every one started so far) ran their timers.
    pub timer_lateness: TimerLateness,
    net: u8,
    options: ClusterOptions,
}

fn ip(net: u8, service: Service, replica: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 77, net, 10 + service.index() * 20 + replica)
}

impl Cluster {
    /// Starts DNS and every replica; returns when all listen.
    pub async fn start(options: ClusterOptions) -> std::io::Result<Cluster> {
        let net = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let dns = ClusterDns::start("nova.svc.cluster.local.").await?;
        let mut ports = [0u16; 4];
        for service in Service::ALL {
            // one free port per service, the same on every replica's address
            let probe = std::net::TcpListener::bind((ip(net, service, 0), 0))?;
            ports[service.index() as usize] = probe.local_addr()?.port();
        }
        let mut cluster = Cluster {
            dns,
            replicas: Vec::new(),
            ports,
            timer_lateness: TimerLateness::default(),
            net,
            options,
        };
        for service in Service::ALL {
            for r in 0..cluster.options.replicas {
                let replica = cluster.spawn(service, r)?;
                cluster.replicas.push(replica);
            }
            cluster.publish(service).await;
        }
        Ok(cluster)
    }

    /// The target string of `service`, as an operator would configure it.
    pub fn target(&self, service: Service) -> String {
        format!(
            "dns://{}/{}:{}",
            self.dns.addr(),
            self.dns.fqdn(service.name()).trim_end_matches('.'),
            self.ports[service.index() as usize]
        )
    }

    /// The addresses of every replica of `service`, up or not.
    pub fn addresses(&self, service: Service) -> Vec<SocketAddr> {
        (0..self.options.replicas)
            .map(|r| {
                SocketAddr::from((
                    ip(self.net, service, r),
                    self.ports[service.index() as usize],
                ))
            })
            .collect()
    }

    /// The replicas of `service`.
    pub fn of(&mut self, service: Service) -> impl Iterator<Item = &mut Replica> {
        self.replicas
            .iter_mut()
            .filter(move |r| r.service == service)
    }

    /// Sets the DNS records of `service` to its replicas that are up (as the endpoints
    /// controller does with ready pods).
    pub async fn publish(&self, service: Service) {
        let ips: Vec<Ipv4Addr> = self
            .replicas
            .iter()
            .filter(|r| r.service == service && r.is_up())
            .filter_map(|r| match r.addr.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        self.dns.set(service.name(), &ips).await;
    }

    /// Sets the DNS records of `service` to exactly `replicas` (indices), up or not: a
    /// scale-down before the pods stop, or records gone stale.
    pub async fn publish_only(&self, service: Service, replicas: &[u8]) {
        let ips: Vec<Ipv4Addr> = replicas.iter().map(|&r| ip(self.net, service, r)).collect();
        self.dns.set(service.name(), &ips).await;
    }

    /// Sets the fault of every replica of `service`, up or not (a restarted replica
    /// starts healthy).
    pub fn set_fault(&mut self, service: Service, fault: Fault) {
        for r in self.of(service) {
            r.faults.set(fault);
        }
    }

    /// Replica number `replica` of `service`.
    pub fn replica(&mut self, service: Service, replica: u8) -> Option<&mut Replica> {
        let wanted = std::net::IpAddr::V4(ip(self.net, service, replica));
        self.replicas
            .iter_mut()
            .find(|r| r.service == service && r.addr.ip() == wanted)
    }

    /// Kills replica number `replica` of `service` (its DNS records stay until
    /// [`publish`](Self::publish)).
    pub fn kill(&mut self, service: Service, replica: u8) {
        if let Some(r) = self.replica(service, replica) {
            r.kill();
        }
    }

    /// The breakers of every live replica's clients of `dependency`: with three
    /// user-service replicas, `breakers(Service::Auth)` holds three `ValidateToken`
    /// breakers.
    pub fn breakers(&self, dependency: Service) -> Vec<CircuitBreaker> {
        self.replicas
            .iter()
            .filter(|r| r.is_up())
            .flat_map(|r| r.breakers(dependency))
            .collect()
    }

    /// Has every live user-service replica serve each of the load's users once, checking
    /// the token with auth-service and reading the user's posts from content-service, so
    /// that each replica's cached claims and posts hold every user: the state of pods
    /// that have served their users for a while. Left to the load alone, which replica
    /// sees which user is chance, and a replica can meet a user for the first time while
    /// auth-service is down.
    ///
    /// Fails if a replica answers from a cache instead: the dependencies must be healthy.
    pub async fn warm_user_caches(&self) -> Result<(), tonic::Status> {
        for replica in self
            .replicas
            .iter()
            .filter(|r| r.service == Service::User && r.is_up())
        {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", replica.addr))
                    .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
                    .connect_lazy();
            let mut client = UserServiceClient::new(channel);
            for n in 0..USERS {
                let user_id = user_id(n);
                let token = token_for(&user_id);
                let user = client
                    .get_user(GetUserRequest {
                        token: token.clone(),
                        user_id: user_id.clone(),
                    })
                    .await?
                    .into_inner();
                let posts = client
                    .get_user_posts(GetUserPostsRequest { token, user_id })
                    .await?
                    .into_inner();
                if user.auth_degraded || posts.stale {
                    return Err(tonic::Status::failed_precondition(format!(
                        "{} answered {} from its cache: a dependency is unhealthy",
                        replica.addr, user.user_id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Restarts a killed replica (same address).
    pub fn restart(&mut self, service: Service, replica: u8) -> std::io::Result<()> {
        let fresh = self.spawn(service, replica)?;
        if let Some(slot) = self
            .replicas
            .iter_mut()
            .find(|r| r.service == service && r.addr == fresh.addr)
        {
            slot.kill();
            *slot = fresh;
        }
        Ok(())
    }

    fn spawn(&self, service: Service, replica: u8) -> std::io::Result<Replica> {
        let addr = SocketAddr::from((
            ip(self.net, service, replica),
            self.ports[service.index() as usize],
        ));
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{}-{replica}", service.name()))
            .enable_all()
            .build()?;
        let faults = Arc::new(Faults::default());
        let targets = Targets {
            auth: self.target(Service::Auth),
            content: self.target(Service::Content),
            media: self.target(Service::Media),
            auth_addrs: self.addresses(Service::Auth),
            content_addrs: self.addresses(Service::Content),
            media_addrs: self.addresses(Service::Media),
        };
        let mode = self.options.mode;
        let config = self.options.config.clone();
        let switch = faults.clone();
        let clients = Arc::new(Mutex::new(Clients::default()));
        let recorded = clients.clone();
        let lateness = self.timer_lateness.clone();
        runtime.spawn(async move {
            lateness.watch();
            let router = match router(service, mode, targets, config, switch, recorded).await {
                Ok(router) => router,
                Err(e) => {
                    tracing::error!(service = service.name(), error = %e, "replica failed to start");
                    return;
                }
            };
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = router.serve_with_incoming(incoming).await {
                tracing::error!(service = service.name(), error = %e, "replica stopped");
            }
        });
        Ok(Replica {
            service,
            addr,
            faults,
            clients,
            runtime: Some(runtime),
        })
    }
}

/// Where each dependency is.
struct Targets {
    auth: String,
    content: String,
    media: String,
    auth_addrs: Vec<SocketAddr>,
    content_addrs: Vec<SocketAddr>,
    media_addrs: Vec<SocketAddr>,
}

/// A static, lazily connected balancing channel over `addrs`: what a tonic user without
/// discovery writes.
fn raw_channel(addrs: &[SocketAddr]) -> tonic::transport::Channel {
    let endpoints = addrs
        .iter()
        .filter_map(|a| tonic::transport::Endpoint::from_shared(format!("http://{a}")).ok());
    tonic::transport::Channel::balance_list(endpoints)
}

/// How often every pool in the system (the services' and the load generator's) asks the
/// cluster DNS again: short, so that scaling shows within seconds.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

async fn pool(target: &str) -> Result<Pool, BoxError> {
    Ok(Pool::builder(target)
        .refresh_interval(REFRESH_INTERVAL)
        .build()?)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Breakers and policies for a client of `spec`: build time, overlaid by `config`.
fn policies(
    spec: &'static ServiceSpec,
    config: Option<&RuntimeConfig>,
) -> Result<Arc<ServiceRuntime>, BoxError> {
    let env = Environment::from_env()?;
    Ok(ServiceRuntime::resolve(spec, env, config)?)
}

/// A pool and policies for a client of `dependency`, recorded in `clients`.
async fn dependency(
    dependency: Service,
    target: &str,
    spec: &'static ServiceSpec,
    config: Option<&RuntimeConfig>,
    clients: &Mutex<Clients>,
) -> Result<(Pool, Arc<ServiceRuntime>), BoxError> {
    let pool = pool(target).await?;
    let runtime = policies(spec, config)?;
    let mut recorded = clients.lock().unwrap_or_else(|p| p.into_inner());
    recorded.pools.push((dependency, pool.clone()));
    recorded.runtimes.push((dependency, runtime.clone()));
    Ok((pool, runtime))
}

async fn router(
    service: Service,
    mode: ClientMode,
    targets: Targets,
    config: Option<Arc<RuntimeConfig>>,
    faults: Arc<Faults>,
    clients: Arc<Mutex<Clients>>,
) -> Result<NovaRouter, BoxError> {
    let config = config.as_deref();
    let mut server = tonic::transport::Server::builder().layer(DeadlinePropagationLayer::new());
    Ok(match service {
        Service::Auth => server.add_service(AuthServiceServer::new(Auth { faults })),
        Service::Media => {
            let mut media = Media::default();
            media.faults = faults;
            server.add_service(MediaServiceServer::new(media))
        }
        Service::Content => {
            let media = match mode {
                ClientMode::Resilient => {
                    let spec = MediaServiceResilientClient::<Pool>::spec();
                    let (pool, runtime) =
                        dependency(Service::Media, &targets.media, spec, config, &clients).await?;
                    MediaDep::Resilient(MediaServiceResilientClient::with_runtime(
                        MediaServiceClient::new(pool),
                        runtime,
                    ))
                }
                ClientMode::Raw => {
                    MediaDep::Raw(MediaServiceClient::new(raw_channel(&targets.media_addrs)))
                }
            };
            let mut content = Content::new(media);
            content.faults = faults;
            server.add_service(ContentServiceServer::new(content))
        }
        Service::User => {
            let deps = match mode {
                ClientMode::Resilient => {
                    let claims = CachedClaims::default();
                    let posts = PostsCache::default();
                    let auth_spec = AuthServiceResilientClient::<Pool>::spec();
                    let (auth_pool, auth_runtime) =
                        dependency(Service::Auth, &targets.auth, auth_spec, config, &clients)
                            .await?;
                    let content_spec = ContentServiceResilientClient::<Pool>::spec();
                    let (content_pool, content_runtime) = dependency(
                        Service::Content,
                        &targets.content,
                        content_spec,
                        config,
                        &clients,
                    )
                    .await?;
                    UserDeps::Resilient {
                        auth: AuthServiceResilientClient::with_runtime(
                            AuthServiceClient::new(auth_pool),
                            auth_runtime,
                        )
                        .with_fallback(claims.clone()),
                        claims,
                        content: ContentServiceResilientClient::with_runtime(
                            ContentServiceClient::new(content_pool),
                            content_runtime,
                        )
                        .with_fallback(posts.clone()),
                        posts,
                    }
                }
                ClientMode::Raw => UserDeps::Raw {
                    auth: AuthServiceClient::new(raw_channel(&targets.auth_addrs)),
                    content: ContentServiceClient::new(raw_channel(&targets.content_addrs)),
                },
            };
            let mut users = Users::new(deps);
            users.faults = faults;
            server.add_service(UserServiceServer::new(users))
        }
    })
}
