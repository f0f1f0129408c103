//! What the chaos tests share: one test at a time, the cluster under load, an observer
//! that times every call a breaker admits, the deadline each call had, and clients built
//! in the test process to time what a caller gets from an open circuit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use nova_demo::cluster::{ClientMode, Cluster, ClusterOptions, Service, TimerLateness};
use nova_demo::load::{Kind, Load, LoadOptions, PhaseStats, Stats};
use nova_demo::proto::auth::auth_service_resilient::AuthServiceResilientClient;
use nova_demo::proto::content::content_service_resilient::ContentServiceResilientClient;
use nova_demo::proto::media::media_service_resilient::MediaServiceResilientClient;
use nova_demo::scenario::Report;
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::observe::{Observer, OutcomeEvent, TransitionEvent};
use resilient_runtime::{CircuitBreaker, CircuitBreakerState, Environment, Pool};

/// The demo's runtime overrides (`scenario::DEMO_CONFIG`) with shorter open times, so
/// that a circuit opened by a test closes again within seconds. The deadlines are the
/// demo's: ValidateToken 2 s (build time), UploadMedia 3 s, every other RPC the default
/// 10 s, or less when the request being served leaves less.
pub(crate) const CHAOS_CONFIG: &str = r#"
[".nova.auth.v1.AuthService"]
open_for_ms = 3000

[".nova.content.v1.ContentService"]
open_for_ms = 3000

[".nova.media.v1.MediaService"]
open_for_ms = 4000

[".nova.media.v1.MediaService.UploadMedia"]
timeout_ms = 3000

[".nova.content.v1.ContentService.GetPosts"]
max_attempts = 2
initial_backoff_ms = 5
max_backoff_ms = 20
"#;

/// Requests per second of every test's load.
pub(crate) const RATE: u32 = 60;

/// The edge's own deadline. Shorter than the 10 s default of content-service's RPCs, so
/// that the services' calls to content- and media-service inherit it.
pub(crate) const EDGE_TIMEOUT: Duration = Duration::from_secs(5);

/// How far past its deadline a call may end, beyond the delay with which its runtime ran
/// timers at all (`TimerLateness`): on an idle machine that delay is a millisecond or
/// two; on two cores shared with compilers it can reach a tenth of a second, and no
/// timeout can fire before its runtime gets a core.
pub(crate) const DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// What a caller may wait for an open circuit's answer (the fallback's or the error).
pub(crate) const OPEN_ANSWER_LIMIT: Duration = Duration::from_millis(1);

/// What one open-circuit answer may take when the guest cannot tell why it was slow: a
/// virtual CPU the host paused (steal time) shows no context switch in the thread.
pub(crate) const OPEN_ANSWER_CEILING: Duration = Duration::from_millis(20);

/// Tests in a binary run on parallel threads; their loads, clusters and the records of
/// the global observer must not mix, so each holds this for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// The observer

/// What the observer saw of one (service, RPC).
#[derive(Debug, Clone, Default)]
pub(crate) struct CallRecord {
    /// Calls that ended with an outcome (dropped calls record none).
    pub(crate) calls: u64,
    /// Of which hit their deadline.
    pub(crate) timeouts: u64,
    /// The longest, from the breaker's admission to its outcome.
    pub(crate) worst: Duration,
    /// Transitions to open.
    pub(crate) opened: u32,
    /// Transitions to half-open.
    pub(crate) half_opened: u32,
    /// Transitions to closed.
    pub(crate) closed: u32,
}

static RECORDS: Mutex<BTreeMap<(String, String), CallRecord>> = Mutex::new(BTreeMap::new());

fn records() -> std::sync::MutexGuard<'static, BTreeMap<(String, String), CallRecord>> {
    RECORDS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Times every admitted call of every breaker built after it was installed (all of them:
/// it is installed before the first cluster starts).
///
/// An outcome's latency runs from the breaker's admission of the attempt to its outcome,
/// and the executor starts an attempt's deadline just before admission, so an attempt
/// that ends later than its deadline plus [`DEADLINE_SLACK`] is one the timeout did not
/// stop in time. Calls cancelled by their caller record nothing, which is why the edge's
/// latencies are checked as well.
struct Recorder;

impl Observer for Recorder {
    fn on_outcome(&self, event: &OutcomeEvent<'_>) {
        let Some(latency) = event.latency else {
            return;
        };
        let key = (
            event.breaker.service.to_string(),
            event.breaker.rpc.to_string(),
        );
        let mut all = records();
        let r = all.entry(key).or_default();
        r.calls += 1;
        r.timeouts += u64::from(event.timed_out);
        r.worst = r.worst.max(latency);
    }

    fn on_transition(&self, event: &TransitionEvent<'_>) {
        let key = (
            event.breaker.service.to_string(),
            event.breaker.rpc.to_string(),
        );
        let mut all = records();
        let r = all.entry(key).or_default();
        match event.to {
            CircuitBreakerState::Open => r.opened += 1,
            CircuitBreakerState::HalfOpen => r.half_opened += 1,
            CircuitBreakerState::Closed => r.closed += 1,
        }
    }

    fn wants_latency(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------
// Deadlines

/// The deadline of each (service, RPC) the system calls, resolved from the same specs
/// and config as the replicas' clients.
///
/// An attempt's deadline is the smallest of the RPC's own, the caller's and the one
/// inherited from the request being served. Every call the replicas make serves an edge
/// request sent with [`EDGE_TIMEOUT`], so the RPC's deadline capped at the edge timeout
/// bounds every attempt (the test process's own clients call auth- and media-service,
/// whose deadlines are below it anyway). Server-streaming calls are left out: their
/// deadline covers the response headers, their outcome comes at the stream's end.
pub(crate) fn deadlines(config: &RuntimeConfig) -> BTreeMap<(String, String), Duration> {
    let specs = [
        AuthServiceResilientClient::<Pool>::spec(),
        ContentServiceResilientClient::<Pool>::spec(),
        MediaServiceResilientClient::<Pool>::spec(),
    ];
    let env = Environment::from_env().unwrap_or(Environment::Production);
    let mut out = BTreeMap::new();
    for spec in specs {
        let runtime = ServiceRuntime::resolve(spec, env, Some(config)).expect("the chaos config");
        for m in runtime.methods() {
            if matches!(
                m.spec().kind,
                resilient_runtime::spec::RpcKind::ServerStreaming
                    | resilient_runtime::spec::RpcKind::BidiStreaming
            ) {
                continue;
            }
            let key = (spec.logical_name(), m.spec().name.to_string());
            out.insert(key, m.timeout().min(EDGE_TIMEOUT));
        }
    }
    out
}

/// The effective policy of one RPC, as the replicas resolve it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// How long its circuit stays open.
    pub(crate) open_for: Duration,
    /// Probes that must succeed to close it.
    pub(crate) success_threshold: u32,
    /// Its own deadline.
    pub(crate) deadline: Duration,
}

/// The policy of `rpc` of `dependency` under `config`.
pub(crate) fn policy(config: &RuntimeConfig, dependency: Service, rpc: &str) -> Policy {
    let spec = match dependency {
        Service::Auth => AuthServiceResilientClient::<Pool>::spec(),
        Service::Content => ContentServiceResilientClient::<Pool>::spec(),
        Service::Media => MediaServiceResilientClient::<Pool>::spec(),
        Service::User => panic!("nothing calls user-service but the edge"),
    };
    let env = Environment::from_env().unwrap_or(Environment::Production);
    let runtime = ServiceRuntime::resolve(spec, env, Some(config)).expect("the chaos config");
    let method = runtime
        .methods()
        .iter()
        .find(|m| m.spec().name == rpc)
        .unwrap_or_else(|| panic!("{} has no RPC {rpc}", spec.path));
    let c = method.breaker().config();
    Policy {
        open_for: c.timeout,
        success_threshold: c.success_threshold,
        deadline: method.timeout(),
    }
}

// ---------------------------------------------------------------------------------------
// A run

/// A test's turn: no other test runs until it is dropped.
pub(crate) struct Serial {
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

/// Waits for the other tests to finish, and installs the observer (once).
pub(crate) async fn serialize() -> Serial {
    let guard = SERIAL.lock().await;
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| resilient_runtime::registry::add_global_observer(Arc::new(Recorder)));
    Serial { _guard: guard }
}

/// One system under load.
pub(crate) struct Run {
    pub(crate) name: &'static str,
    pub(crate) cluster: Cluster,
    pub(crate) load: Load,
    pub(crate) config: Arc<RuntimeConfig>,
    pub(crate) started: Instant,
    mode: ClientMode,
    /// How late the test's own runtime (the load, the test's clients) ran its timers.
    lateness: TimerLateness,
    watcher: tokio::task::JoinHandle<()>,
}

/// The chaos config, parsed.
pub(crate) fn chaos_config() -> Arc<RuntimeConfig> {
    Arc::new(RuntimeConfig::from_toml_str("chaos timing", CHAOS_CONFIG).expect("valid TOML"))
}

impl Run {
    /// Starts three replicas of each service calling each other in `mode`, and the load
    /// (phase "healthy"); returns once every replica's clients are built. Only one runs
    /// at a time (`_turn`); the observer's records start afresh.
    pub(crate) async fn start(_turn: &Serial, name: &'static str, mode: ClientMode) -> Run {
        records().clear();
        println!("\n=== {name} ({mode:?} clients, {RATE} requests/s)");
        let config = chaos_config();
        let cluster = Cluster::start(ClusterOptions {
            replicas: 3,
            mode,
            config: Some(config.clone()),
        })
        .await
        .expect("the cluster starts on loopback");
        if mode == ClientMode::Resilient {
            // 3 user-service replicas with auth and content clients, 3 content-service
            // replicas with media clients
            let built = wait_until(Duration::from_secs(10), || {
                cluster.breakers(Service::Auth).len() == 3
                    && cluster.breakers(Service::Content).len() == 6
                    && cluster.breakers(Service::Media).len() == 6
            })
            .await;
            assert!(built.is_some(), "{name}: the replicas built their clients");
        }
        let lateness = TimerLateness::default();
        let load = Load::start(
            &cluster.target(Service::User),
            &cluster.target(Service::Content),
            LoadOptions {
                rate: RATE,
                edge_timeout: EDGE_TIMEOUT,
                max_in_flight: 1024,
            },
        )
        .await
        .expect("the load generator resolves the targets");
        Run {
            name,
            cluster,
            load,
            config,
            started: Instant::now(),
            mode,
            watcher: lateness.watch(),
            lateness,
        }
    }

    /// Attributes the requests sent from now on to `phase`.
    pub(crate) fn phase(&self, phase: &str) {
        println!("  {:>5.1} s  {phase}", self.started.elapsed().as_secs_f64());
        self.load.phase(phase);
    }

    /// Stops the load, waits up to `drain` for the answers in flight, prints the phases
    /// and the calls the observer timed, checks every call against its deadline, and
    /// checks that every breaker of the live replicas is closed.
    pub(crate) async fn finish(self, drain: Duration) -> Finished {
        let Run {
            name,
            cluster,
            load,
            config,
            started,
            mode,
            lateness,
            watcher,
        } = self;
        watcher.abort();
        let stats = load.stop(drain).await;
        // a request missing from the stats would be missing from every quantile
        assert_eq!(
            stats.unanswered, 0,
            "{name}: requests still unanswered {drain:?} after the load stopped"
        );
        let report = Report {
            stats,
            ..Report::default()
        };
        println!("\n{}", report.table());
        let calls = records().clone();
        if mode == ClientMode::Raw {
            // no breaker, nothing to observe
            return Finished {
                stats: report.stats,
                calls,
            };
        }
        let late = lateness.worst().max(cluster.timer_lateness.worst());
        check_deadlines(name, &config, &calls, late);
        // a breaker left half-open, or open, after the fault cleared would stay so
        for dependency in [Service::Auth, Service::Content, Service::Media] {
            for b in cluster.breakers(dependency) {
                assert_eq!(
                    b.state(),
                    CircuitBreakerState::Closed,
                    "{name}: {} of a live replica ended {:?}",
                    b.name(),
                    b.state()
                );
            }
        }
        println!(
            "  every breaker of every live replica is closed; {:.1} s in all",
            started.elapsed().as_secs_f64(),
        );
        drop(cluster);
        Finished {
            stats: report.stats,
            calls,
        }
    }
}

/// What a run saw.
pub(crate) struct Finished {
    /// The edge's view, by phase.
    pub(crate) stats: Stats,
    /// The observer's view, by (service, RPC).
    pub(crate) calls: BTreeMap<(String, String), CallRecord>,
}

impl Finished {
    /// The answers of `service` in `phases`, together.
    pub(crate) fn of(&self, service: Service, phases: &[&str]) -> PhaseStats {
        let mut all = PhaseStats::default();
        for phase in phases {
            let Some(s) = self.stats.phase(phase) else {
                continue;
            };
            let s = s.of(service);
            for (kind, n) in &s.by_kind {
                *all.by_kind.entry(*kind).or_insert(0) += n;
            }
            all.latencies.extend(&s.latencies);
            all.samples.extend(&s.samples);
        }
        all
    }

    /// What the observer saw of (`service`, `rpc`).
    pub(crate) fn call(&self, service: &str, rpc: &str) -> CallRecord {
        self.calls
            .get(&(service.to_string(), rpc.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

fn check_deadlines(
    name: &str,
    config: &RuntimeConfig,
    calls: &BTreeMap<(String, String), CallRecord>,
    timer_lateness: Duration,
) {
    let deadlines = deadlines(config);
    let slack = DEADLINE_SLACK + timer_lateness;
    println!(
        "  calls timed by the observer         calls timeouts    worst ms deadline ms  opened/half-open/closed"
    );
    for ((service, rpc), r) in calls {
        let key = (service.clone(), rpc.clone());
        let deadline = deadlines.get(&key);
        println!(
            "  {:<34} {:>6} {:>8} {:>11.1} {:>11}  {}/{}/{}",
            format!("{service}/{rpc}"),
            r.calls,
            r.timeouts,
            r.worst.as_secs_f64() * 1000.0,
            deadline.map_or("-".to_string(), |d| d.as_millis().to_string()),
            r.opened,
            r.half_opened,
            r.closed,
        );
        if let Some(deadline) = deadline {
            assert!(
                r.worst <= *deadline + slack,
                "{name}: a {service}/{rpc} call took {:?}, past its {deadline:?} deadline by \
                 more than {DEADLINE_SLACK:?} + the runtimes' timer lateness {timer_lateness:?}",
                r.worst,
            );
        }
    }
    println!(
        "  no call ran past its deadline by more than {} ms + {:.1} ms (the worst delay of a due timer in any runtime)",
        DEADLINE_SLACK.as_millis(),
        timer_lateness.as_secs_f64() * 1000.0
    );
}

// ---------------------------------------------------------------------------------------
// Waiting and timing

/// Polls `done` every 10 ms for up to `limit`; how long it took, or `None`.
pub(crate) async fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if done() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True when there are breakers and all of them are in `state`.
pub(crate) fn all_in(breakers: &[CircuitBreaker], state: CircuitBreakerState) -> bool {
    !breakers.is_empty() && breakers.iter().all(|b| b.state() == state)
}

/// How long after a fault clears a breaker may take to close: open time + probe time.
///
/// An open circuit lets a probe through within `open_for`. A probe already on its way
/// when the fault cleared may still fail, at its deadline at the latest, and open the
/// circuit again; then `success_threshold` probes must arrive, one at a time, at
/// `per_breaker_rate` calls a second (counted twice, for an uneven balance); and the test
/// polls and schedules (half a second).
pub(crate) fn recovery_bound(policy: Policy, per_breaker_rate: f64) -> Duration {
    let arrivals = 2.0 * f64::from(policy.success_threshold) / per_breaker_rate;
    policy.open_for
        + policy.deadline
        + Duration::from_secs_f64(arrivals)
        + Duration::from_millis(500)
}

/// One answer timed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    /// How long the call took.
    pub(crate) latency: Duration,
    /// The OS took the thread off its core during the call (Linux tells; elsewhere this
    /// is never set).
    pub(crate) preempted: bool,
}

/// Involuntary context switches of the calling thread so far, where the OS tells.
fn preemptions() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Times `n` calls made one after another with `call(&client)`, each of which must return
/// `Ok(())` (it checks the answer itself).
///
/// They run on a thread of their own, on a runtime with no other task, so that a call
/// that is slow is slow itself, not waiting for the load's tasks. What the thread cannot
/// avoid on a shared machine is the OS giving its core to another thread mid-call: such
/// calls are marked, so that they can be told apart from a slow open path.
pub(crate) async fn time_calls<C, F, Fut>(n: usize, client: C, call: F) -> Vec<Timed>
where
    C: Send + 'static,
    F: Fn(&C) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the timed calls");
        runtime.block_on(async {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let switches = preemptions();
                let started = Instant::now();
                let answer = call(&client).await;
                let latency = started.elapsed();
                let preempted = match (switches, preemptions()) {
                    (Some(before), Some(after)) => after > before,
                    _ => false,
                };
                if let Err(e) = answer {
                    panic!("call {i} with the circuit open: {e}");
                }
                out.push(Timed { latency, preempted });
            }
            out
        })
    })
    .await
    .expect("the timed calls ran")
}

/// Checks and prints the latencies of answers from an open circuit: the p99 is under
/// [`OPEN_ANSWER_LIMIT`], and so is every call, except calls during which the OS gave
/// the thread's core to another thread (at most one in ten) and, at most one in a
/// hundred, calls slowed where the guest cannot see it (each under
/// [`OPEN_ANSWER_CEILING`]).
pub(crate) fn check_open_answers(name: &str, what: &str, timed: &[Timed]) {
    let mut sorted: Vec<Duration> = timed.iter().map(|t| t.latency).collect();
    sorted.sort_unstable();
    let q = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    let slow = |t: &&Timed| t.latency >= OPEN_ANSWER_LIMIT;
    let excused = timed.iter().filter(slow).filter(|t| t.preempted).count();
    let worst_run = timed
        .iter()
        .filter(|t| !t.preempted)
        .map(|t| t.latency)
        .max()
        .unwrap_or_default();
    println!(
        "  open circuit, {what}: {} calls, p50 {:.1} µs, p99 {:.1} µs, worst {:.1} µs; \
         {excused} over {} ms, each preempted by the OS; worst of the calls not preempted {:.1} µs",
        sorted.len(),
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
        q(1.0).as_secs_f64() * 1e6,
        OPEN_ANSWER_LIMIT.as_millis(),
        worst_run.as_secs_f64() * 1e6,
    );
    assert!(
        q(0.99) < OPEN_ANSWER_LIMIT,
        "{name}: with the circuit open, {what} took {:?} at p99 (limit {OPEN_ANSWER_LIMIT:?})",
        q(0.99)
    );
    let unexplained: Vec<Duration> = timed
        .iter()
        .filter(slow)
        .filter(|t| !t.preempted)
        .map(|t| t.latency)
        .collect();
    assert!(
        unexplained.len() * 100 <= timed.len()
            && unexplained.iter().all(|l| *l < OPEN_ANSWER_CEILING),
        "{name}: with the circuit open, {what} took {unexplained:?} in calls the OS did not \
         preempt (limit {OPEN_ANSWER_LIMIT:?}; one in a hundred may reach \
         {OPEN_ANSWER_CEILING:?})"
    );
    // a check of the open path, not of the scheduler: most calls must have run through
    assert!(
        excused * 10 <= timed.len(),
        "{name}: the OS interrupted {excused} of {} calls past {OPEN_ANSWER_LIMIT:?}: too \
         busy a machine to time them",
        timed.len()
    );
}

/// Prints the answers of one service in some phases.
pub(crate) fn summary(label: &str, s: &PhaseStats) -> String {
    format!(
        "{label:<22} {:>8} {:>7} {:>9} {:>7} {:>8.1} {:>8.1} {:>9.1}",
        s.requests(),
        s.count(Kind::Ok),
        s.count(Kind::Degraded),
        s.count(Kind::Failed),
        s.quantile(0.5).as_secs_f64() * 1000.0,
        s.quantile(0.99).as_secs_f64() * 1000.0,
        s.worst().as_secs_f64() * 1000.0,
    )
}

/// The header of [`summary`] lines.
pub(crate) const SUMMARY_HEADER: &str =
    "                       requests   fresh  degraded  failed   p50 ms   p99 ms  worst ms";
