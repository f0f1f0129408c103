//! The breaker's hot paths and a call with no breaker, measured in alternation.
//!
//! On a shared virtual machine the speed of a core changes from one second to the next
//! (another guest on the same physical core, the host's clock frequency), by up to about
//! 2× for every instruction alike. Criterion measures one contender after another, so
//! two rows of one run can come from different phases. This bench alternates short
//! chunks of every row instead: each round measures each row on `CHUNK` calls, one row
//! after the other, so the rows of one round share a phase. A reference row does what a
//! breaker's admission and record do to memory (two loads from the heap) with no breaker
//! logic: when it slows down, the breaker's rows slow down with it. The bench prints
//! every round, then per row the median over all rounds, the median over the fast-phase
//! rounds (the reference within 15 % of its fastest), and the median ratio to the call
//! with no breaker measured in the same round.
//!
//! `cargo bench -p resilient-runtime --bench breaker_phases`
//! (`PHASES_ROUNDS`, default 40; `PHASES_CHUNK`, calls per row and round, default 2 000 000).
//! Without `--bench` (as `cargo test --benches` runs it) it makes one short round.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, Outcome};

mod common;
use common::{ok_value, poll_once, ready_ok, sync_err, thread_cpu_now};

/// One row: what one chunk of calls costs, in thread CPU time.
struct Row {
    name: &'static str,
    run: Box<dyn Fn(u64) -> Duration>,
}

fn row(name: &'static str, run: impl Fn(u64) -> Duration + 'static) -> Row {
    Row {
        name,
        run: Box::new(run),
    }
}

/// Times `n` calls of `f`.
#[inline(always)]
fn timed(n: u64, mut f: impl FnMut()) -> Duration {
    let start = thread_cpu_now();
    for _ in 0..n {
        f();
    }
    thread_cpu_now().saturating_sub(start)
}

fn rows() -> Vec<Row> {
    let long = Duration::from_secs(3600);
    let closed = CircuitBreaker::new(CircuitBreakerConfig::default());
    let tripped = CircuitBreaker::new(CircuitBreakerConfig {
        timeout: long,
        ..Default::default()
    });
    for _ in 0..tripped.config().failure_threshold {
        let _ = poll_once(tripped.call(|| async { sync_err() }));
    }
    assert!(tripped.try_acquire().is_err(), "the breaker did not open");
    let manual = CircuitBreaker::new(CircuitBreakerConfig::default());
    let forced = CircuitBreaker::new(CircuitBreakerConfig::default());
    forced.force_open();

    // Loads from the heap, as a breaker's admission and record make, with no breaker.
    let words: Arc<[AtomicU64; 2]> = Arc::default();
    vec![
        row("no breaker (future)", |n| {
            timed(n, || {
                black_box(ok_value(poll_once(ready_ok())));
            })
        }),
        row("two atomic loads + future", move |n| {
            timed(n, || {
                let w = words[0].load(Ordering::Acquire);
                if w & 0b11 == 0 {
                    black_box(words[1].load(Ordering::Acquire));
                }
                black_box(ok_value(poll_once(ready_ok())));
            })
        }),
        row("resilient call, closed", move |n| {
            timed(n, || {
                black_box(ok_value(poll_once(closed.call(ready_ok))));
            })
        }),
        row("resilient try_acquire + record", move |n| {
            timed(n, || match manual.try_acquire() {
                Ok(permit) => {
                    black_box(ok_value(poll_once(ready_ok())));
                    permit.record(Outcome::Success);
                }
                Err(_) => unreachable!("a closed breaker rejected a call"),
            })
        }),
        row("resilient call, tripped", move |n| {
            timed(n, || {
                black_box(poll_once(tripped.call(ready_ok)).is_err());
            })
        }),
        row("resilient call, force_open", move |n| {
            timed(n, || {
                black_box(poll_once(forced.call(ready_ok)).is_err());
            })
        }),
    ]
}

fn env_u64(key: &str, default: u64) -> u64 {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (rounds, chunk) = if benching {
        (
            env_u64("PHASES_ROUNDS", 40),
            env_u64("PHASES_CHUNK", 2_000_000),
        )
    } else {
        (1, 1_000)
    };
    assert!(
        rounds > 0 && chunk > 0,
        "PHASES_ROUNDS and PHASES_CHUNK must be > 0"
    );
    let rows = rows();

    // Warm up every row once.
    for r in &rows {
        (r.run)(chunk.min(100_000));
    }

    // ns per call, [round][row]
    let mut table: Vec<Vec<f64>> = Vec::new();
    println!(
        "round  {}",
        rows.iter().map(|r| r.name).collect::<Vec<_>>().join(" | ")
    );
    for round in 0..rounds {
        let ns: Vec<f64> = rows
            .iter()
            .map(|r| (r.run)(chunk).as_nanos() as f64 / chunk as f64)
            .collect();
        println!(
            "{round:>5}  {}",
            ns.iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        table.push(ns);
    }

    // The fast phase: rounds whose reference row (heap loads, no breaker) is within 15 %
    // of its fastest. The bare future barely moves between phases; code that touches
    // memory slows by up to 2×, with or without a breaker.
    let reference = 1;
    let ref_fastest = table
        .iter()
        .map(|round| round[reference])
        .fold(f64::INFINITY, f64::min);
    let fast: Vec<&Vec<f64>> = table
        .iter()
        .filter(|round| round[reference] <= ref_fastest * 1.15)
        .collect();
    println!();
    println!(
        "{} of {rounds} rounds in the fast phase ({} within 15 % of its fastest)",
        fast.len(),
        rows[reference].name
    );
    println!(
        "{:<30} {:>10} {:>16} {:>20}",
        "row", "median ns", "fast-phase ns", "median x no breaker"
    );
    for (i, r) in rows.iter().enumerate() {
        let ns: Vec<f64> = table.iter().map(|round| round[i]).collect();
        let fast_ns: Vec<f64> = fast.iter().map(|round| round[i]).collect();
        let ratio: Vec<f64> = table.iter().map(|round| round[i] / round[0]).collect();
        println!(
            "{:<30} {:>10.2} {:>16.2} {:>20.2}",
            r.name,
            median(ns),
            median(fast_ns),
            median(ratio)
        );
    }
}
