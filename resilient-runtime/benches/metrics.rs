//! What the Prometheus metrics observer adds to a call on the closed-state path: the same
//! breaker call with no observer, with the metrics (latency histogram included, the
//! default), and with the metrics without the histogram. Results: `docs/bench-metrics.md`.
//!
//! Futures that are ready at once are polled a single time with a no-op waker, so that
//! no executor is measured (as in `benches/breaker.rs`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use resilient_runtime::metrics::Metrics;
use resilient_runtime::observe::{BreakerLabels, Observer, OutcomeEvent};
use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, Outcome};

mod common;
use common::{poll_once, ready_ok};

fn breaker(observer: Option<Arc<dyn Observer>>) -> CircuitBreaker {
    let builder = CircuitBreaker::builder(CircuitBreakerConfig::default())
        .labels("auth-service", "ValidateToken");
    match observer {
        Some(o) => builder.observer(o),
        None => builder,
    }
    .build()
    .expect("valid config")
}

/// An observer that does nothing.
struct Noop;

impl Observer for Noop {}

fn closed_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics/closed_call");
    let plain = breaker(None);
    group.bench_function("no observer", |b| {
        b.iter(|| poll_once(plain.call(ready_ok)))
    });
    // What any observer costs the breaker (building the event, one dynamic call): not
    // the metrics' doing.
    let noop = breaker(Some(Arc::new(Noop)));
    group.bench_function("no-op observer", |b| {
        b.iter(|| poll_once(noop.call(ready_ok)))
    });
    let counted = breaker(Some(Metrics::builder().latency(false).build().observer()));
    group.bench_function("metrics, no latency", |b| {
        b.iter(|| poll_once(counted.call(ready_ok)))
    });
    let timed = breaker(Some(Metrics::new().observer()));
    group.bench_function("metrics + latency histogram", |b| {
        b.iter(|| poll_once(timed.call(ready_ok)))
    });
    // What the histogram's timing costs by itself: the breaker reads Instant::now twice
    // per call when any observer wants latency.
    group.bench_function("two Instant::now", |b| {
        b.iter(|| {
            let start = Instant::now();
            black_box(start.elapsed())
        })
    });
    group.finish();
}

/// The observer alone, on one thread and with the table holding 200 series.
fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics/record");
    let metrics = Metrics::new();
    let observer = metrics.observer();
    let names: Vec<String> = (0..200).map(|i| format!("Rpc{i}")).collect();
    for rpc in &names {
        observer.on_outcome(&OutcomeEvent {
            breaker: BreakerLabels {
                name: "x",
                service: "auth-service",
                rpc,
            },
            outcome: Outcome::Success,
            latency: None,
            timed_out: false,
            slow: false,
        });
    }
    let event = OutcomeEvent {
        breaker: BreakerLabels {
            name: "auth-service/ValidateToken",
            service: "auth-service",
            rpc: "ValidateToken",
        },
        outcome: Outcome::Success,
        latency: Some(Duration::from_micros(850)),
        timed_out: false,
        slow: false,
    };
    group.bench_function("on_outcome with latency", |b| {
        b.iter(|| observer.on_outcome(black_box(&event)))
    });
    let status = resilient_runtime::observe::StatusEvent {
        breaker: event.breaker,
        code: tonic::Code::Unavailable,
    };
    group.bench_function("on_status UNAVAILABLE", |b| {
        b.iter(|| observer.on_status(black_box(&status)))
    });
    let ok = resilient_runtime::observe::StatusEvent {
        breaker: event.breaker,
        code: tonic::Code::Ok,
    };
    group.bench_function("on_status OK (nothing to count)", |b| {
        b.iter(|| observer.on_status(black_box(&ok)))
    });
    let no_latency = OutcomeEvent {
        latency: None,
        ..event
    };
    group.bench_function("on_outcome without latency", |b| {
        b.iter(|| observer.on_outcome(black_box(&no_latency)))
    });
    group.finish();
}

criterion_group!(benches, closed_call, record);
criterion_main!(benches);
