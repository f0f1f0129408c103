//! A load generator standing in for the API gateway: a steady rate of requests to
//! user-service and content-service, with every answer's latency and kind recorded by
//! phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tonic::Request;

use crate::cluster::{REFRESH_INTERVAL, Service};
use crate::proto::content::CreatePostRequest;
use crate::proto::content::content_service_client::ContentServiceClient;
use crate::proto::user::user_service_client::UserServiceClient;
use crate::proto::user::{GetUserPostsRequest, GetUserRequest};
use crate::services::token_for;
use resilient_runtime::Pool;

/// How an answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Fresh data.
    Ok,
    /// Served, degraded (cached claims, stale posts, a post without its media).
    Degraded,
    /// An error.
    Failed,
}

/// Which request the edge sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    /// content-service's CreatePost, with 32 KiB of media (one request in ten).
    CreatePost,
    /// user-service's GetUser (half of the others).
    GetUser,
    /// user-service's GetUserPosts (the rest).
    GetUserPosts,
}

impl Call {
    /// The `n`-th request of the load.
    fn nth(n: u64) -> Call {
        match n % 10 {
            0 => Call::CreatePost,
            n if n % 2 == 1 => Call::GetUser,
            _ => Call::GetUserPosts,
        }
    }

    /// The service it is sent to.
    pub fn service(self) -> Service {
        match self {
            Call::CreatePost => Service::Content,
            Call::GetUser | Call::GetUserPosts => Service::User,
        }
    }
}

/// One answer.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What was asked.
    pub call: Call,
    /// How it came back.
    pub kind: Kind,
    /// How long it took, as the edge saw it.
    pub latency: Duration,
}

/// What one phase of the scenario saw.
#[derive(Debug, Clone, Default)]
pub struct PhaseStats {
    /// Answers by kind.
    pub by_kind: BTreeMap<Kind, u64>,
    /// Every answer's latency.
    pub latencies: Vec<Duration>,
    /// Every answer, in the order they came.
    pub samples: Vec<Sample>,
}

impl PhaseStats {
    fn add(&mut self, sample: Sample) {
        *self.by_kind.entry(sample.kind).or_insert(0) += 1;
        self.latencies.push(sample.latency);
        self.samples.push(sample);
    }

    /// The answers of `service` only.
    pub fn of(&self, service: Service) -> PhaseStats {
        let mut only = PhaseStats::default();
        for sample in self.samples.iter().filter(|s| s.call.service() == service) {
            only.add(*sample);
        }
        only
    }

    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Answers of `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort_unstable();
        let i = ((l.len() as f64 - 1.0) * q).round() as usize;
        l[i.min(l.len() - 1)]
    }

    /// The slowest answer.
    pub fn worst(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// Stats of every phase, in the order phases began.
#[derive(Debug, Default)]
pub struct Stats {
    /// (phase, stats).
    pub phases: Vec<(String, PhaseStats)>,
    /// Requests still unanswered when the stats were taken (not in any phase).
    pub unanswered: u64,
}

impl Stats {
    fn record(&mut self, phase: &str, sample: Sample) {
        let i = match self.phases.iter().rposition(|(p, _)| p == phase) {
            Some(i) => i,
            None => {
                self.phases.push((phase.to_string(), PhaseStats::default()));
                self.phases.len() - 1
            }
        };
        self.phases[i].1.add(sample);
    }

    /// The stats of `phase`.
    pub fn phase(&self, phase: &str) -> Option<&PhaseStats> {
        self.phases.iter().find(|(p, _)| p == phase).map(|(_, s)| s)
    }
}

/// The load: requests per second and the edge's own deadline.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Requests per second.
    pub rate: u32,
    /// The edge's deadline on each request (what a gateway would wait at most).
    pub edge_timeout: Duration,
    /// Requests in flight at most; beyond it, a request is not sent (counted as failed).
    pub max_in_flight: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            rate: 100,
            edge_timeout: Duration::from_secs(10),
            max_in_flight: 512,
        }
    }
}

/// A running load generator.
#[derive(Debug)]
pub struct Load {
    /// What it saw.
    pub stats: Arc<Mutex<Stats>>,
    phase: watch::Sender<String>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    sent: Arc<AtomicU64>,
    slots: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Load {
    /// Starts sending to user-service and content-service at `user_target` and
    /// `content_target` (discovery targets).
    pub async fn start(
        user_target: &str,
        content_target: &str,
        options: LoadOptions,
    ) -> Result<Load, resilient_runtime::discover::DiscoveryError> {
        let user_pool = Pool::builder(user_target)
            .refresh_interval(REFRESH_INTERVAL)
            .build()?;
        let content_pool = Pool::builder(content_target)
            .refresh_interval(REFRESH_INTERVAL)
            .build()?;
        // wait (briefly) for the first resolution, as a gateway does before taking traffic
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            user_pool.ready().await;
            content_pool.ready().await;
        })
        .await;
        let users = UserServiceClient::new(user_pool);
        let content = ContentServiceClient::new(content_pool);
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (phase, phase_rx) = watch::channel(String::from("healthy"));
        let (stop, mut stop_rx) = watch::channel(false);
        let sent = Arc::new(AtomicU64::new(0));
        let slots = Arc::new(Semaphore::new(options.max_in_flight));
        let task = {
            let stats = stats.clone();
            let sent = sent.clone();
            let slots = slots.clone();
            tokio::spawn(async move {
                let period = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: u64 = 0;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop_rx.changed() => break,
                    }
                    n += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                    let phase_now = phase_rx.borrow().clone();
                    let call = Call::nth(n);
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        stats.lock().unwrap_or_else(|p| p.into_inner()).record(
                            &phase_now,
                            Sample {
                                call,
                                kind: Kind::Failed,
                                latency: Duration::ZERO,
                            },
                        );
                        continue;
                    };
                    let (users, content, stats) = (users.clone(), content.clone(), stats.clone());
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let kind = one_request(n, users, content, options.edge_timeout).await;
                        let latency = started.elapsed();
                        stats.lock().unwrap_or_else(|p| p.into_inner()).record(
                            &phase_now,
                            Sample {
                                call,
                                kind,
                                latency,
                            },
                        );
                        drop(slot);
                    });
                }
            })
        };
        Ok(Load {
            stats,
            phase,
            stop,
            task,
            sent,
            slots,
            max_in_flight: options.max_in_flight,
        })
    }

    /// Attributes the requests sent from now on to `phase`.
    pub fn phase(&self, phase: &str) {
        let _ = self.phase.send(phase.to_string());
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.slots.available_permits()
    }

    /// Stops sending, waits up to `drain` for the answers in flight, returns the stats
    /// (without the answers still missing after `drain`).
    pub async fn stop(self, drain: Duration) -> Stats {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(drain, self.slots.acquire_many(all)).await;
        let unanswered = (self.max_in_flight - self.slots.available_permits()) as u64;
        let mut stats = std::mem::take(&mut *self.stats.lock().unwrap_or_else(|p| p.into_inner()));
        stats.unanswered = unanswered;
        stats
    }
}

/// Distinct users the load acts for.
pub const USERS: u64 = 20;

/// The user the load's `n`th request acts for: `u0` to `u19`, in turn.
pub fn user_id(n: u64) -> String {
    format!("u{}", n % USERS)
}

async fn one_request(
    n: u64,
    users: UserServiceClient<Pool>,
    content: ContentServiceClient<Pool>,
    edge_timeout: Duration,
) -> Kind {
    let user = user_id(n);
    let token = token_for(&user);
    let call = async {
        match Call::nth(n) {
            Call::CreatePost => {
                let mut request = Request::new(CreatePostRequest {
                    user_id: user.clone(),
                    body: format!("post {n}"),
                    media: vec![1u8; 32 * 1024],
                });
                request.set_timeout(edge_timeout);
                content.clone().create_post(request).await.map(|r| {
                    if r.into_inner().media_id.is_empty() {
                        Kind::Degraded
                    } else {
                        Kind::Ok
                    }
                })
            }
            Call::GetUser => {
                let mut request = Request::new(GetUserRequest {
                    token,
                    user_id: user.clone(),
                });
                request.set_timeout(edge_timeout);
                users.clone().get_user(request).await.map(|r| {
                    if r.into_inner().auth_degraded {
                        Kind::Degraded
                    } else {
                        Kind::Ok
                    }
                })
            }
            Call::GetUserPosts => {
                let mut request = Request::new(GetUserPostsRequest {
                    token,
                    user_id: user.clone(),
                });
                request.set_timeout(edge_timeout);
                users.clone().get_user_posts(request).await.map(|r| {
                    if r.into_inner().stale {
                        Kind::Degraded
                    } else {
                        Kind::Ok
                    }
                })
            }
        }
    };
    match tokio::time::timeout(edge_timeout, call).await {
        Ok(Ok(kind)) => kind,
        _ => Kind::Failed,
    }
}
