//! The Prometheus metrics: exact values after scripted sequences of calls, failures,
//! rejections, fallbacks and recoveries on breakers driven by a fake clock.
#![cfg(feature = "metrics")]

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use resilient_runtime::metrics::{Metrics, TEXT_CONTENT_TYPE};
use resilient_runtime::observe::{BreakerLabels, OutcomeEvent};
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState, FakeClock, Outcome, registry,
};
use tonic::Code;

/// The value of the sample written exactly `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[track_caller]
fn assert_sample(text: &str, series: &str, expected: f64) {
    match sample(text, series) {
        Some(v) => assert_eq!(v, expected, "{series}\n--- exposition:\n{text}"),
        None => panic!("no sample {series}\n--- exposition:\n{text}"),
    }
}

fn breaker(metrics: &Metrics, clock: &FakeClock, service: &str, rpc: &str) -> CircuitBreaker {
    CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 3,
        success_threshold: 2,
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .labels(service, rpc)
    .clock(clock.clone())
    .observer(metrics.observer())
    .build()
    .expect("valid config")
}

/// One call that ends with `code`, as a generated client reports it.
fn call(cb: &CircuitBreaker, code: Code) -> Result<(), ()> {
    let permit = cb.try_acquire().map_err(|_| ())?;
    match code {
        Code::Ok | Code::NotFound | Code::InvalidArgument => permit.success(),
        Code::DeadlineExceeded => permit.timed_out(),
        Code::Cancelled => permit.record(Outcome::Ignored),
        _ => permit.failure(),
    }
    cb.notify_status(code);
    Ok(())
}

fn state_gauges(text: &str, service: &str, rpc: &str) -> [f64; 3] {
    ["closed", "open", "half_open"].map(|state| {
        let series =
            format!(r#"circuit_breaker_state{{service="{service}",rpc="{rpc}",state="{state}"}}"#);
        sample(text, &series).unwrap_or(f64::NAN)
    })
}

#[test]
fn a_scripted_outage_and_recovery_gives_exact_values() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "billing-svc", "Charge");

    // Two good calls.
    call(&cb, Code::Ok).unwrap();
    call(&cb, Code::Ok).unwrap();
    assert_eq!(
        state_gauges(&metrics.encode(), "billing-svc", "Charge"),
        [1.0, 0.0, 0.0]
    );

    // Three failures in a row open the circuit: two UNAVAILABLE, one timeout.
    call(&cb, Code::Unavailable).unwrap();
    call(&cb, Code::DeadlineExceeded).unwrap();
    call(&cb, Code::Unavailable).unwrap();
    assert_eq!(cb.state(), CircuitBreakerState::Open);
    let text = metrics.encode();
    assert_eq!(
        state_gauges(&text, "billing-svc", "Charge"),
        [0.0, 1.0, 0.0]
    );
    // The consecutive-failure count belongs to the closed period that ended.
    assert_sample(
        &text,
        r#"circuit_breaker_consecutive_failures{service="billing-svc",rpc="Charge"}"#,
        0.0,
    );

    // Two calls rejected, each served by a fallback.
    for _ in 0..2 {
        assert!(call(&cb, Code::Ok).is_err());
        cb.notify_fallback("open");
    }

    // The open time passes: one probe, which fails and re-opens the circuit.
    clock.advance(Duration::from_secs(10));
    call(&cb, Code::Internal).unwrap();
    assert_eq!(cb.state(), CircuitBreakerState::Open);
    assert!(call(&cb, Code::Ok).is_err());
    cb.notify_fallback("open");

    // Open again for 10 s (no backoff configured); two probes succeed and close it.
    clock.advance(Duration::from_secs(10));
    call(&cb, Code::Ok).unwrap();
    assert_eq!(cb.state(), CircuitBreakerState::HalfOpen);
    assert_eq!(
        state_gauges(&metrics.encode(), "billing-svc", "Charge"),
        [0.0, 0.0, 1.0]
    );
    call(&cb, Code::Ok).unwrap();
    assert_eq!(cb.state(), CircuitBreakerState::Closed);

    // Answers the classifier counts as successes still count as errors by code; a failure
    // served by a fallback; a cancelled call.
    call(&cb, Code::NotFound).unwrap();
    call(&cb, Code::Unavailable).unwrap();
    cb.notify_fallback("failure");
    call(&cb, Code::Cancelled).unwrap();

    let text = metrics.encode();
    let l = r#"service="billing-svc",rpc="Charge""#;
    assert_eq!(
        state_gauges(&text, "billing-svc", "Charge"),
        [1.0, 0.0, 0.0]
    );
    assert_sample(
        &text,
        &format!("circuit_breaker_consecutive_failures{{{l}}}"),
        1.0,
    );

    // Requests: 2 + 2 probes + NOT_FOUND = 5 successes; 3 + 1 probe + 1 = 5 failures.
    assert_sample(
        &text,
        &format!(r#"service_requests_total{{{l},outcome="success"}}"#),
        5.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_requests_total{{{l},outcome="failure"}}"#),
        5.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_requests_total{{{l},outcome="ignored"}}"#),
        1.0,
    );

    assert_sample(
        &text,
        &format!(r#"service_errors_total{{{l},code="UNAVAILABLE"}}"#),
        3.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_errors_total{{{l},code="DEADLINE_EXCEEDED"}}"#),
        1.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_errors_total{{{l},code="INTERNAL"}}"#),
        1.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_errors_total{{{l},code="NOT_FOUND"}}"#),
        1.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_errors_total{{{l},code="CANCELLED"}}"#),
        1.0,
    );
    assert_eq!(
        sample(&text, &format!(r#"service_errors_total{{{l},code="OK"}}"#)),
        None
    );
    let errors = text
        .lines()
        .filter(|line| line.starts_with(&format!("service_errors_total{{{l}")))
        .count();
    assert_eq!(errors, 5, "only the codes seen:\n{text}");

    assert_sample(
        &text,
        &format!("circuit_breaker_rejected_calls_total{{{l}}}"),
        3.0,
    );
    assert_sample(
        &text,
        &format!(r#"circuit_breaker_fallbacks_total{{{l},cause="open"}}"#),
        3.0,
    );
    assert_sample(
        &text,
        &format!(r#"circuit_breaker_fallbacks_total{{{l},cause="timeout"}}"#),
        0.0,
    );
    assert_sample(
        &text,
        &format!(r#"circuit_breaker_fallbacks_total{{{l},cause="failure"}}"#),
        1.0,
    );

    let transition = |from: &str, to: &str| {
        format!(r#"circuit_breaker_transitions_total{{{l},from="{from}",to="{to}"}}"#)
    };
    assert_sample(&text, &transition("closed", "open"), 1.0);
    assert_sample(&text, &transition("open", "half_open"), 2.0);
    assert_sample(&text, &transition("half_open", "open"), 1.0);
    assert_sample(&text, &transition("half_open", "closed"), 1.0);
    assert_sample(&text, &transition("closed", "half_open"), 0.0);
    assert_eq!(sample(&text, &transition("closed", "closed")), None);

    // Every admitted call was timed: 11, all well under the last bound.
    assert_sample(
        &text,
        &format!("service_request_duration_seconds_count{{{l}}}"),
        11.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_request_duration_seconds_bucket{{{l},le="30"}}"#),
        11.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_request_duration_seconds_bucket{{{l},le="+Inf"}}"#),
        11.0,
    );
}

#[test]
fn latency_buckets_get_exact_counts() {
    let metrics = Metrics::builder().latency_buckets([0.01, 0.1, 1.0]).build();
    let observer = metrics.observer();
    let labels = BreakerLabels {
        name: "lat/Get",
        service: "lat-svc",
        rpc: "Get",
    };
    for ms in [1, 5, 10, 50, 200, 2000] {
        observer.on_outcome(&OutcomeEvent {
            breaker: labels,
            outcome: Outcome::Success,
            latency: Some(Duration::from_millis(ms)),
            timed_out: false,
            slow: false,
        });
    }
    let text = metrics.encode();
    let l = r#"service="lat-svc",rpc="Get""#;
    let bucket = |le: &str| format!(r#"service_request_duration_seconds_bucket{{{l},le="{le}"}}"#);
    assert_sample(&text, &bucket("0.01"), 3.0);
    assert_sample(&text, &bucket("0.1"), 4.0);
    assert_sample(&text, &bucket("1"), 5.0);
    assert_sample(&text, &bucket("+Inf"), 6.0);
    assert_sample(
        &text,
        &format!("service_request_duration_seconds_count{{{l}}}"),
        6.0,
    );
    assert_sample(
        &text,
        &format!("service_request_duration_seconds_sum{{{l}}}"),
        2.266,
    );
}

#[test]
fn without_latency_there_is_no_histogram_and_no_timing() {
    let metrics = Metrics::builder().latency(false).build();
    assert!(!metrics.observer().wants_latency());
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "nolat-svc", "Get");
    call(&cb, Code::Ok).unwrap();
    let text = metrics.encode();
    assert!(!text.contains("service_request_duration_seconds"), "{text}");
    assert_sample(
        &text,
        r#"service_requests_total{service="nolat-svc",rpc="Get",outcome="success"}"#,
        1.0,
    );
}

#[test]
fn state_gauges_cover_breakers_built_before_the_metrics() {
    let early = CircuitBreaker::builder(CircuitBreakerConfig::default())
        .labels("early-svc", "Get")
        .build()
        .unwrap();
    early.force_open();
    let metrics = Metrics::new();
    let text = metrics.encode();
    assert_eq!(state_gauges(&text, "early-svc", "Get"), [0.0, 1.0, 0.0]);
    // It does not carry the observer: no counters pretend it had no calls.
    assert!(
        !text.contains(r#"service_requests_total{service="early-svc""#),
        "{text}"
    );

    // Counters of a breaker that carries the observer exist from the first scrape, at 0.
    let clock = FakeClock::new();
    let _cb = breaker(&metrics, &clock, "fresh-svc", "Get");
    let text = metrics.encode();
    assert_sample(
        &text,
        r#"service_requests_total{service="fresh-svc",rpc="Get",outcome="success"}"#,
        0.0,
    );
    assert_sample(
        &text,
        r#"circuit_breaker_rejected_calls_total{service="fresh-svc",rpc="Get"}"#,
        0.0,
    );

    // A dropped breaker leaves the gauges; its counters stay (they never go back).
    drop(early);
    drop(_cb);
    let text = metrics.encode();
    assert!(
        !text.contains(r#"circuit_breaker_state{service="early-svc""#),
        "{text}"
    );
    assert!(
        !text.contains(r#"circuit_breaker_state{service="fresh-svc""#),
        "{text}"
    );
    assert_sample(
        &text,
        r#"service_requests_total{service="fresh-svc",rpc="Get",outcome="success"}"#,
        0.0,
    );
}

#[test]
fn breakers_sharing_labels_share_counters_and_show_the_worst_state() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let a = breaker(&metrics, &clock, "shared-svc", "Get");
    let b = breaker(&metrics, &clock, "shared-svc", "Get");
    call(&a, Code::Ok).unwrap();
    call(&b, Code::Ok).unwrap();
    for _ in 0..3 {
        call(&b, Code::Unavailable).unwrap();
    }
    assert_eq!(a.state(), CircuitBreakerState::Closed);
    assert_eq!(b.state(), CircuitBreakerState::Open);
    let text = metrics.encode();
    assert_eq!(state_gauges(&text, "shared-svc", "Get"), [0.0, 1.0, 0.0]);
    let states = text
        .lines()
        .filter(|l| l.starts_with(r#"circuit_breaker_state{service="shared-svc",rpc="Get""#))
        .count();
    assert_eq!(states, 3, "one series per state, no duplicates:\n{text}");
    assert_sample(
        &text,
        r#"service_requests_total{service="shared-svc",rpc="Get",outcome="success"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"service_errors_total{service="shared-svc",rpc="Get",code="UNAVAILABLE"}"#,
        3.0,
    );
}

#[test]
fn an_unlabelled_breaker_reports_its_name_as_service() {
    let metrics = Metrics::new();
    let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
        .name("payments-db")
        .observer(metrics.observer())
        .build()
        .unwrap();
    let permit = cb.try_acquire().unwrap();
    permit.failure();
    let text = metrics.encode();
    assert_sample(
        &text,
        r#"service_requests_total{service="payments-db",rpc="",outcome="failure"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"circuit_breaker_state{service="payments-db",rpc="",state="closed"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"circuit_breaker_consecutive_failures{service="payments-db",rpc=""}"#,
        1.0,
    );
}

#[test]
fn modes_have_a_gauge_and_are_not_transitions_nor_resets() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "mode-svc", "Get");
    let l = r#"service="mode-svc",rpc="Get""#;
    let mode = |text: &str| {
        [
            "normal",
            "forced_open",
            "forced_closed",
            "disabled",
            "metrics_only",
        ]
        .map(|m| sample(text, &format!(r#"circuit_breaker_mode{{{l},mode="{m}"}}"#)))
    };
    let transition = |text: &str, from: &str, to: &str| {
        sample(
            text,
            &format!(r#"circuit_breaker_transitions_total{{{l},from="{from}",to="{to}"}}"#),
        )
    };
    // Before anything happened: normal, every change of state at 0.
    let text = metrics.encode();
    assert_eq!(mode(&text), [1.0, 0.0, 0.0, 0.0, 0.0].map(Some));
    assert_eq!(transition(&text, "closed", "open"), Some(0.0));

    // Metrics-only on a closed breaker: a mode, not a transition.
    cb.metrics_only();
    let text = metrics.encode();
    assert_eq!(mode(&text), [0.0, 0.0, 0.0, 0.0, 1.0].map(Some));
    assert_eq!(transition(&text, "closed", "closed"), None);
    assert_eq!(transition(&text, "closed", "open"), Some(0.0));

    // The shadow state machine opens; setting the same mode again keeps it open.
    for _ in 0..3 {
        call(&cb, Code::Unavailable).unwrap();
    }
    assert_eq!(cb.state(), CircuitBreakerState::Open);
    cb.metrics_only();
    assert_eq!(
        cb.state(),
        CircuitBreakerState::Open,
        "a mode set again resets nothing"
    );
    assert_eq!(transition(&metrics.encode(), "closed", "open"), Some(1.0));

    // Forced open: the mode gauge says so; no probe is ever due.
    cb.force_open();
    clock.advance(Duration::from_secs(40));
    cb.force_open();
    assert_eq!(cb.state(), CircuitBreakerState::Open);
    assert_eq!(cb.retry_after(), None);
    assert!(
        call(&cb, Code::Ok).is_err(),
        "forced open refuses past its open time"
    );
    assert_eq!(mode(&metrics.encode()), [0.0, 1.0, 0.0, 0.0, 0.0].map(Some));

    // Disabled: statuses are not counted either (errors without requests would make an
    // infinite error ratio).
    cb.disable();
    let errors = format!(r#"service_errors_total{{{l},code="UNAVAILABLE"}}"#);
    let before = sample(&metrics.encode(), &errors).unwrap();
    call(&cb, Code::Unavailable).unwrap();
    let text = metrics.encode();
    assert_eq!(sample(&text, &errors), Some(before));
    assert_eq!(mode(&text), [0.0, 0.0, 0.0, 1.0, 0.0].map(Some));

    cb.reset();
    assert_eq!(mode(&metrics.encode()), [1.0, 0.0, 0.0, 0.0, 0.0].map(Some));
}

#[test]
fn retries_hedges_and_bulkhead_rejections_are_counted() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "extra-svc", "Get");
    let l = r#"service="extra-svc",rpc="Get""#;
    let retries = format!(r#"service_retries_total{{{l},kind="retry"}}"#);
    let hedges = format!(r#"service_retries_total{{{l},kind="hedge"}}"#);
    let bulkhead = format!("bulkhead_rejected_calls_total{{{l}}}");
    let text = metrics.encode();
    for series in [&retries, &hedges, &bulkhead] {
        assert_sample(&text, series, 0.0);
    }
    cb.notify_retry(1, Duration::from_millis(50));
    cb.notify_retry(2, Duration::from_millis(100));
    cb.notify_hedge(1, Duration::from_millis(20));
    for _ in 0..3 {
        cb.notify_bulkhead_rejection("extra-svc/Get");
    }
    let text = metrics.encode();
    assert_sample(&text, &retries, 2.0);
    assert_sample(&text, &hedges, 1.0);
    assert_sample(&text, &bulkhead, 3.0);
}

#[test]
fn shadow_rejections_are_counted_apart() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "shadow-svc", "Get");
    cb.metrics_only();
    for _ in 0..3 {
        call(&cb, Code::Unavailable).unwrap();
    }
    // Would be open: the next call goes ahead and is counted as a shadow rejection.
    call(&cb, Code::Ok).unwrap();
    let text = metrics.encode();
    assert_sample(
        &text,
        r#"circuit_breaker_shadow_rejected_calls_total{service="shadow-svc",rpc="Get"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"circuit_breaker_rejected_calls_total{service="shadow-svc",rpc="Get"}"#,
        0.0,
    );
}

#[test]
fn unknown_fallback_causes_and_odd_label_values_are_encoded_not_dropped() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "odd\"svc\\\n", "Get");
    cb.notify_fallback("cache-miss");
    let text = metrics.encode();
    assert_sample(
        &text,
        r#"circuit_breaker_fallbacks_total{service="odd\"svc\\\n",rpc="Get",cause="cache-miss"}"#,
        1.0,
    );
}

#[test]
fn merges_into_the_users_registry() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "merged-svc", "Get");
    call(&cb, Code::Ok).unwrap();

    let mut registry = Registry::default();
    let mine: Counter = Counter::default();
    registry.register("app_logins", "Logins", mine.clone());
    mine.inc();
    metrics.register(&mut registry);

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    assert_sample(&text, "app_logins_total", 1.0);
    assert_sample(
        &text,
        r#"service_requests_total{service="merged-svc",rpc="Get",outcome="success"}"#,
        1.0,
    );
    assert_eq!(
        TEXT_CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn openmetrics_encoding_has_types_and_eof() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "om-svc", "Get");
    call(&cb, Code::Unavailable).unwrap();
    let text = metrics.encode_openmetrics();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE service_requests counter\n"), "{text}");
    assert!(
        text.contains("# TYPE circuit_breaker_state gauge\n"),
        "{text}"
    );
    assert_sample(
        &text,
        r#"service_errors_total{service="om-svc",rpc="Get",code="UNAVAILABLE"}"#,
        1.0,
    );
}

#[test]
fn text_exposition_declares_every_family_once() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = breaker(&metrics, &clock, "fam-svc", "Get");
    for _ in 0..3 {
        call(&cb, Code::Unavailable).unwrap();
    }
    assert!(call(&cb, Code::Ok).is_err());
    cb.notify_fallback("open");
    let text = metrics.encode();
    for (name, kind) in [
        ("circuit_breaker_state", "gauge"),
        ("circuit_breaker_mode", "gauge"),
        ("circuit_breaker_consecutive_failures", "gauge"),
        ("circuit_breaker_transitions_total", "counter"),
        ("circuit_breaker_rejected_calls_total", "counter"),
        ("circuit_breaker_fallbacks_total", "counter"),
        ("service_requests_total", "counter"),
        ("service_errors_total", "counter"),
        ("service_retries_total", "counter"),
        ("bulkhead_rejected_calls_total", "counter"),
        ("service_request_duration_seconds", "histogram"),
    ] {
        let decl = format!("# TYPE {name} {kind}\n");
        assert_eq!(text.matches(&decl).count(), 1, "{decl}in:\n{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
    }
}

#[test]
fn install_global_reaches_breakers_built_afterwards_and_is_idempotent() {
    let first = Metrics::install_global();
    let second = Metrics::install_global();
    let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
        .labels("global-svc", "Get")
        .build()
        .unwrap();
    cb.try_acquire().unwrap().success();
    let line = r#"service_requests_total{service="global-svc",rpc="Get",outcome="success"}"#;
    // Both handles are the same metrics: one observer was added, not two.
    assert_sample(&first.encode(), line, 1.0);
    assert_sample(&second.encode(), line, 1.0);
    assert_sample(&Metrics::global().unwrap().encode(), line, 1.0);
    assert!(registry::find("global-svc", "Get").len() == 1);
}

#[test]
fn recording_from_many_threads_loses_nothing() {
    let metrics = Metrics::new();
    let clock = FakeClock::new();
    let cb = Arc::new(
        CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold: u32::MAX,
            ..Default::default()
        })
        .labels("threads-svc", "Get")
        .clock(clock)
        .observer(metrics.observer())
        .build()
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let cb = cb.clone();
            std::thread::spawn(move || {
                for _ in 0..2_500 {
                    let code = if i % 2 == 0 {
                        Code::Ok
                    } else {
                        Code::Unavailable
                    };
                    call(&cb, code).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = metrics.encode();
    let l = r#"service="threads-svc",rpc="Get""#;
    assert_sample(
        &text,
        &format!(r#"service_requests_total{{{l},outcome="success"}}"#),
        5000.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_requests_total{{{l},outcome="failure"}}"#),
        5000.0,
    );
    assert_sample(
        &text,
        &format!(r#"service_errors_total{{{l},code="UNAVAILABLE"}}"#),
        5000.0,
    );
    assert_sample(
        &text,
        &format!("service_request_duration_seconds_count{{{l}}}"),
        10000.0,
    );
}

/// Transitions are logged by every breaker, metrics or not: warn on open, info on
/// half-open and closed, with the service, the RPC and the reason.
#[test]
fn transitions_are_traced_with_service_rpc_and_reason() {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let metrics = Metrics::new();
        let clock = FakeClock::new();
        let cb = breaker(&metrics, &clock, "traced-svc", "Get");
        for _ in 0..3 {
            call(&cb, Code::Unavailable).unwrap();
        }
        clock.advance(Duration::from_secs(10));
        call(&cb, Code::Ok).unwrap();
        call(&cb, Code::Ok).unwrap();
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let fields = r#"service="traced-svc" rpc="Get""#;
    for (line, level, what, reason) in [
        (
            lines[0],
            "WARN",
            "circuit breaker OPEN",
            "reason=3 consecutive failures",
        ),
        (
            lines[1],
            "INFO",
            "circuit breaker HALF-OPEN",
            "reason=open time elapsed",
        ),
        (
            lines[2],
            "INFO",
            "circuit breaker CLOSED",
            "reason=2 probes succeeded",
        ),
    ] {
        assert!(line.contains(level) && line.contains(what), "{line}");
        assert!(line.contains(fields) && line.contains(reason), "{line}");
    }
}
