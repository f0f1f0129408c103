//! The scripted failure scenario: what goes wrong, when, and what the system must do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use resilient_runtime::CircuitBreakerState;
use resilient_runtime::config::RuntimeConfig;

use crate::cluster::{ClientMode, Cluster, ClusterOptions, Service};
use crate::load::{Kind, Load, LoadOptions, Stats};
use crate::services::Fault;

/// Which failures to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every step below, in order.
    Full,
    /// auth-service hangs, then comes back.
    AuthOutage,
    /// media-service turns slow.
    SlowMedia,
    /// A content-service replica is killed while still listed in DNS.
    KillReplica,
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Scenario::Full),
            "auth-outage" => Ok(Scenario::AuthOutage),
            "slow-media" => Ok(Scenario::SlowMedia),
            "kill-replica" => Ok(Scenario::KillReplica),
            _ => Err(format!(
                "unknown scenario {s:?}; expected one of: full, auth-outage, slow-media, kill-replica"
            )),
        }
    }
}

/// Timings: the design's own (30 s and 60 s open times, 30 s uploads) or compressed so
/// that the whole scenario takes about a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Open times and upload deadline divided by about 6 (the default).
    Demo,
    /// The build-time policies as generated.
    Design,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which failures.
    pub scenario: Scenario,
    /// Requests per second.
    pub rate: u32,
    /// How long each steady phase lasts.
    pub phase: Duration,
    /// Timings.
    pub timing: Timing,
    /// Print the dashboard every this often (zero: never).
    pub dashboard_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: Scenario::Full,
            rate: 100,
            phase: Duration::from_secs(4),
            timing: Timing::Demo,
            dashboard_every: Duration::from_secs(5),
        }
    }
}

/// The runtime overrides of the demo timing, as an operator would write them.
pub const DEMO_CONFIG: &str = r#"
[".nova.auth.v1.AuthService"]
open_for_ms = 5000

[".nova.media.v1.MediaService"]
open_for_ms = 10000

[".nova.media.v1.MediaService.UploadMedia"]
timeout_ms = 3000

# a read is safe to repeat: a retry goes to another replica
[".nova.content.v1.ContentService.GetPosts"]
max_attempts = 2
initial_backoff_ms = 5
max_backoff_ms = 20
"#;

/// A check the scenario makes, and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was expected.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
}

/// What the run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Per-phase stats.
    pub stats: Stats,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    fn check(&mut self, what: impl Into<String>, passed: bool) {
        let what = what.into();
        println!("  [{}] {what}", if passed { "ok" } else { "FAILED" });
        self.checks.push(Check { what, passed });
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "phase                              requests   fresh  degraded  failed   p99 ms  worst ms\n",
        );
        for (phase, s) in &self.stats.phases {
            out.push_str(&format!(
                "{:<34} {:>8} {:>7} {:>9} {:>7} {:>8.1} {:>9.1}\n",
                phase,
                s.requests(),
                s.count(Kind::Ok),
                s.count(Kind::Degraded),
                s.count(Kind::Failed),
                s.quantile(0.99).as_secs_f64() * 1000.0,
                s.worst().as_secs_f64() * 1000.0,
            ));
        }
        out
    }
}

fn breakers(service: &str, rpc: &str) -> Vec<resilient_runtime::CircuitBreaker> {
    resilient_runtime::registry::find(service, rpc)
}

/// Waits until `pred` holds for every breaker of (service, rpc), or `limit` passes;
/// returns how long it took.
async fn wait_for(
    service: &str,
    rpc: &str,
    limit: Duration,
    pred: impl Fn(CircuitBreakerState) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let all = breakers(service, rpc);
        if !all.is_empty() && all.iter().all(|b| pred(b.state())) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn dashboard_task(every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            println!("\n{}", resilient_runtime::dashboard::render());
        }
    }))
}

/// Runs the scenario on a fresh cluster.
pub async fn run(options: Options) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let config = match options.timing {
        Timing::Demo => Some(Arc::new(RuntimeConfig::from_toml_str(
            "demo timing",
            DEMO_CONFIG,
        )?)),
        Timing::Design => None,
    };
    let (auth_open, media_open, upload_timeout) = match options.timing {
        Timing::Demo => (5, 10, 3),
        Timing::Design => (30, 60, 30),
    };
    println!(
        "nova on loopback: 3 replicas each of auth-, user-, content- and media-service,\n\
         found through an embedded DNS server; {} requests/s from a load generator.\n\
         auth-service: open after 3 failures for {auth_open} s, 2 s deadline, cached-claims fallback;\n\
         media-service: open after 5 failures for {media_open} s, {upload_timeout} s upload deadline.\n",
        options.rate
    );
    let mut cluster = Cluster::start(ClusterOptions {
        config,
        mode: ClientMode::Resilient,
        ..ClusterOptions::default()
    })
    .await?;
    let load = Load::start(
        &cluster.target(Service::User),
        &cluster.target(Service::Content),
        LoadOptions {
            rate: options.rate,
            ..LoadOptions::default()
        },
    )
    .await?;
    let dashboard = dashboard_task(options.dashboard_every);
    let mut report = Report::default();
    let phase = options.phase;
    let step = |load: &Load, name: &str| {
        println!("\n== {name}");
        load.phase(name);
    };

    step(&load, "healthy");
    tokio::time::sleep(phase).await;
    // every user-service replica has seen every user, as pods serving for a while have:
    // its cached-claims fallback can answer for any of them
    cluster.warm_user_caches().await?;

    if matches!(options.scenario, Scenario::Full | Scenario::AuthOutage) {
        step(&load, "auth-service hangs");
        for r in cluster.of(Service::Auth) {
            r.faults.set(Fault::Hang);
        }
        let opened = wait_for(
            "auth-service",
            "ValidateToken",
            Duration::from_secs(15),
            |s| s == CircuitBreakerState::Open,
        )
        .await;
        report.check(
            format!(
                "every user-service replica's auth-service breaker opened ({:.1} s)",
                opened.map_or(f64::NAN, |d| d.as_secs_f64())
            ),
            opened.is_some(),
        );
        step(&load, "auth-service down, circuit open");
        tokio::time::sleep(phase).await;

        step(&load, "auth-service back");
        for r in cluster.of(Service::Auth) {
            r.faults.set(Fault::Healthy);
        }
        let closed = wait_for(
            "auth-service",
            "ValidateToken",
            Duration::from_secs(auth_open + 15),
            |s| s == CircuitBreakerState::Closed,
        )
        .await;
        report.check(
            format!(
                "the breakers went half-open and closed again ({:.1} s)",
                closed.map_or(f64::NAN, |d| d.as_secs_f64())
            ),
            closed.is_some(),
        );
    }

    if matches!(options.scenario, Scenario::Full | Scenario::SlowMedia) {
        step(&load, "media-service slow");
        for r in cluster.of(Service::Media) {
            r.faults
                .set(Fault::Slow(Duration::from_secs(upload_timeout + 2)));
        }
        let opened = wait_for(
            "media-service",
            "UploadMedia",
            Duration::from_secs(upload_timeout * 3 + 10),
            |s| s == CircuitBreakerState::Open,
        )
        .await;
        report.check(
            format!(
                "uploads timed out and every media-service breaker opened ({:.1} s)",
                opened.map_or(f64::NAN, |d| d.as_secs_f64())
            ),
            opened.is_some(),
        );
        step(&load, "media-service slow, circuit open");
        tokio::time::sleep(phase).await;
        for r in cluster.of(Service::Media) {
            r.faults.set(Fault::Healthy);
        }
    }

    if matches!(options.scenario, Scenario::Full | Scenario::KillReplica) {
        step(&load, "content replica killed");
        if let Some(r) = cluster.of(Service::Content).next() {
            println!("  killing {} (still listed in DNS)", r.addr);
            r.kill();
        }
        tokio::time::sleep(phase).await;
        step(&load, "healthy again");
        tokio::time::sleep(phase).await;
    }

    if let Some(d) = dashboard {
        d.abort();
    }
    report.stats = load.stop(Duration::from_millis(2_500)).await;
    println!("\n{}", resilient_runtime::dashboard::render());

    let auth_timeout = Duration::from_secs(2);
    if let Some(s) = report
        .stats
        .phase("auth-service down, circuit open")
        .cloned()
    {
        report.check(
            format!(
                "with the circuit open, user-service kept answering from its fallback ({} of {} degraded, {} failed)",
                s.count(Kind::Degraded),
                s.requests(),
                s.count(Kind::Failed)
            ),
            // every replica knows every user's claims (warmed above)
            s.count(Kind::Failed) == 0,
        );
        report.check(
            format!(
                "no request hung: p99 {:.1} ms while auth-service was down",
                s.quantile(0.99).as_secs_f64() * 1000.0
            ),
            s.quantile(0.99) < auth_timeout,
        );
    }
    if let Some(s) = report.stats.phase("auth-service hangs").cloned() {
        report.check(
            format!(
                "while the breaker tripped, no request waited much past the 2 s auth deadline (worst {:.0} ms)",
                s.worst().as_secs_f64() * 1000.0
            ),
            s.worst() < auth_timeout + Duration::from_secs(1),
        );
    }
    if let Some(s) = report.stats.phase("content replica killed").cloned() {
        // every pool that routes to content-service (one per user-service replica, and
        // the load generator's) may lose up to 3 calls before it ejects the replica
        report.check(
            format!(
                "the killed replica was ejected and routed around ({} of {} requests failed; at most 3 per client pool)",
                s.count(Kind::Failed),
                s.requests()
            ),
            s.count(Kind::Failed) <= 3 * 4,
        );
    }
    drop(cluster);
    Ok(report)
}
