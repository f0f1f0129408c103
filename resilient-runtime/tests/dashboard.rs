//! The dashboard, from live breakers and metrics: the design document's example, to the
//! character.
#![cfg(feature = "metrics")]

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use resilient_runtime::dashboard::Dashboard;
use resilient_runtime::metrics::Metrics;
use resilient_runtime::observe::{BreakerLabels, Observer, OutcomeEvent, StatusEvent};
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState, FakeClock, Outcome,
};
use tonic::Code;

/// The dashboard shows every live breaker of the process: one test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn metrics() -> Metrics {
    Metrics::builder()
        .latency_buckets([0.008, 0.010, 0.012, 0.1, 1.0])
        .build()
}

fn breaker(
    metrics: &Metrics,
    clock: &FakeClock,
    service: &str,
    rpc: &str,
    threshold: u32,
) -> CircuitBreaker {
    CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: threshold,
        timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .labels(service, rpc)
    .clock(clock.clone())
    .observer(metrics.observer())
    .build()
    .unwrap()
}

/// `calls` calls of `latency` to `service`, `errors` of which ended UNAVAILABLE, as the
/// observer would see them.
fn traffic(
    observer: &Arc<dyn Observer>,
    service: &str,
    rpc: &str,
    calls: u32,
    errors: u32,
    latency: Duration,
) {
    let breaker = BreakerLabels {
        name: "traffic",
        service,
        rpc,
    };
    for i in 0..calls {
        observer.on_outcome(&OutcomeEvent {
            breaker,
            outcome: if i < errors {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            latency: Some(latency),
            timed_out: false,
            slow: false,
        });
    }
    for _ in 0..errors {
        observer.on_status(&StatusEvent {
            breaker,
            code: Code::Unavailable,
        });
    }
}

fn fail(cb: &CircuitBreaker) {
    cb.try_acquire().unwrap().failure();
    cb.notify_status(Code::Unavailable);
}

#[test]
fn renders_the_design_documents_dashboard_from_live_state() {
    let _serial = serial();
    let metrics = metrics();
    let o = metrics.observer();
    let clock = FakeClock::new();
    let ms = Duration::from_millis;

    let auth = breaker(&metrics, &clock, "auth-service", "ValidateToken", 5);
    let content = breaker(&metrics, &clock, "content-service", "GetPost", 5);
    let user = breaker(&metrics, &clock, "user-service", "GetUser", 5);
    traffic(&o, "auth-service", "ValidateToken", 1000, 1, ms(5));
    traffic(&o, "content-service", "GetPost", 1000, 2, ms(12));
    traffic(&o, "user-service", "GetUser", 1000, 0, ms(10));

    // media-service: opened on one failure, then its open time passed and a probe is
    // in flight.
    let media = breaker(&metrics, &clock, "media-service", "Upload", 1);
    fail(&media);
    traffic(&o, "media-service", "Upload", 999, 20, ms(40));
    clock.advance(Duration::from_secs(30));
    let probe = media.try_acquire().unwrap();
    assert_eq!(media.state(), CircuitBreakerState::HalfOpen);

    // search-service: five failures in a row opened it.
    let search = breaker(&metrics, &clock, "search-service", "Search", 5);
    for _ in 0..5 {
        fail(&search);
    }
    traffic(&o, "search-service", "Search", 995, 53, ms(300));
    assert_eq!(search.state(), CircuitBreakerState::Open);

    let text = Dashboard::new().metrics(metrics.clone()).render();
    assert_eq!(
        text,
        "\
Circuit Breaker State:
├── auth-service: CLOSED ✓ (0 failures, p99: 8ms)
├── content-service: CLOSED ✓ (0 failures, p99: 12ms)
├── user-service: CLOSED ✓ (0 failures, p99: 10ms)
├── media-service: HALF-OPEN ⚠️ (recovering from failure)
└── search-service: OPEN ❌ (5 consecutive failures, retry in 30s)

Service Error Rates (since start):
├── auth-service: 0.1%
├── content-service: 0.2%
├── media-service: 2.1% ← HIGH
├── search-service: 5.8% ← CRITICAL
└── user-service: 0.0%
"
    );

    // Thresholds are the dashboard's to choose.
    let strict = Dashboard::new()
        .metrics(metrics)
        .thresholds(0.001, 0.002)
        .render();
    assert!(
        strict.contains("├── auth-service: 0.1% ← HIGH\n"),
        "{strict}"
    );
    assert!(
        strict.contains("├── content-service: 0.2% ← CRITICAL\n"),
        "{strict}"
    );

    drop(probe);
    drop((auth, content, user, media, search));
}

#[test]
fn a_service_whose_rpcs_differ_shows_each_rpc() {
    let _serial = serial();
    let metrics = metrics();
    let clock = FakeClock::new();
    let get = breaker(&metrics, &clock, "catalog-service", "Get", 2);
    let list = breaker(&metrics, &clock, "catalog-service", "List", 2);
    let put = breaker(&metrics, &clock, "catalog-service", "Put", 2);
    fail(&put);
    fail(&put);
    fail(&list);
    get.try_acquire().unwrap().success();

    let text = Dashboard::new().metrics(metrics).render();
    assert!(
        text.starts_with(
            "\
Circuit Breaker State:
└── catalog-service: OPEN ❌ (Put: 2 consecutive failures, retry in 30s)
    ├── Get: CLOSED ✓ (0 failures, p99: "
        ),
        "{text}"
    );
    assert!(
        text.contains("\n    ├── List: CLOSED ✓ (1 failure, p99: 8ms)\n"),
        "{text}"
    );
    assert!(
        text.contains("\n    └── Put: OPEN ❌ (2 consecutive failures, retry in 30s)\n"),
        "{text}"
    );
    // Three UNAVAILABLE of four calls.
    assert!(
        text.contains("└── catalog-service: 75.0% ← CRITICAL\n"),
        "{text}"
    );
    drop((get, list, put));
}

#[test]
fn operator_modes_are_shown() {
    let _serial = serial();
    let metrics = metrics();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "ops-service", "Get", 5);
    cb.force_open();
    let text = Dashboard::new().metrics(metrics.clone()).render();
    assert!(
        text.contains("└── ops-service: OPEN ❌ (forced open)\n"),
        "{text}"
    );
    cb.metrics_only();
    let text = Dashboard::new().metrics(metrics).render();
    assert!(
        text.contains("└── ops-service: CLOSED ✓ (metrics only, 0 failures, p99: n/a)\n"),
        "{text}"
    );
}

#[test]
fn without_metrics_it_shows_states_only() {
    let _serial = serial();
    let clock = FakeClock::new();
    let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
        .labels("bare-service", "Get")
        .clock(clock)
        .build()
        .unwrap();
    // Built without a metrics observer, and no global metrics in this test binary.
    assert!(Metrics::global().is_none());
    let text = resilient_runtime::dashboard::render();
    assert_eq!(
        text,
        "\
Circuit Breaker State:
└── bare-service: CLOSED ✓ (0 failures)

Service Error Rates:
└── (no metrics: call resilient_runtime::metrics::Metrics::install_global())
"
    );
    drop(cb);
    let text = resilient_runtime::dashboard::render();
    assert!(
        text.starts_with("Circuit Breaker State:\n└── (no circuit breaker)\n"),
        "{text}"
    );
}

#[test]
fn the_html_page_is_self_contained_and_escapes_names() {
    let _serial = serial();
    let metrics = metrics();
    let clock = FakeClock::new();
    let ok = breaker(&metrics, &clock, "auth-service", "ValidateToken", 1);
    let bad = breaker(&metrics, &clock, "<script>alert(1)</script>", "Get", 1);
    fail(&bad);
    ok.try_acquire().unwrap().success();
    let html = Dashboard::new().metrics(metrics).render_html();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(
        html.contains(r#"data-service="auth-service" data-state="closed""#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-service="&lt;script&gt;alert(1)&lt;/script&gt;" data-state="open""#),
        "{html}"
    );
    assert!(
        !html.contains("<script"),
        "no script, and names are escaped"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external asset"
    );
    assert!(
        html.contains(r#"<span class="pill open">1 open</span>"#),
        "{html}"
    );
    drop((ok, bad));
}
