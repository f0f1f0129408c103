//! Exhaustive interleavings of concurrent probes and outcomes, with loom:
//! `RUSTFLAGS="--cfg resilient_loom" cargo test -p resilient-runtime --no-default-features --test loom --release`
#![cfg(resilient_loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState, FakeClock, OpenBackoff, Outcome,
};

fn half_open(max: u32) -> CircuitBreaker {
    let clock = FakeClock::new();
    let cb = CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 1,
        success_threshold: 2,
        half_open_max_calls: max,
        timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .clock(clock.clone())
    .build()
    .unwrap();
    cb.try_acquire().unwrap().record(Outcome::Failure);
    clock.advance(Duration::from_secs(1));
    cb
}

#[test]
fn half_open_admits_no_more_than_max_concurrent_probes() {
    loom::model(|| {
        let cb = half_open(2);
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let cb = cb.clone();
                let admitted = admitted.clone();
                loom::thread::spawn(move || {
                    if let Ok(p) = cb.try_acquire_owned() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        std::mem::forget(p); // keep the slot
                    }
                })
            })
            .collect();
        if let Ok(p) = cb.try_acquire_owned() {
            admitted.fetch_add(1, Ordering::SeqCst);
            std::mem::forget(p);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 2);
        assert_eq!(cb.probes_in_flight(), 2);
    });
}

#[test]
fn releases_and_verdicts_racing_admissions_never_exceed_the_limit() {
    loom::model(|| {
        let cb = half_open(1);
        let first = cb.try_acquire_owned().expect("first probe");
        let in_flight = Arc::new(AtomicUsize::new(1));
        let max_seen = Arc::new(AtomicUsize::new(1));
        let t = {
            let cb = cb.clone();
            let in_flight = in_flight.clone();
            let max_seen = max_seen.clone();
            loom::thread::spawn(move || {
                if let Ok(p) = cb.try_acquire_owned() {
                    let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(n, Ordering::SeqCst);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    p.record(Outcome::Success);
                }
            })
        };
        // the first probe is dropped (cancelled) while the other thread tries to get in
        in_flight.fetch_sub(1, Ordering::SeqCst);
        drop(first);
        t.join().unwrap();
        assert_eq!(max_seen.load(Ordering::SeqCst), 1);
        assert_eq!(cb.state(), CircuitBreakerState::HalfOpen);
        assert_eq!(cb.probes_in_flight(), 0);
    });
}

/// A closed breaker with a streak of two failures (threshold 4): one thread records a
/// success while another records a failure, then one more failure follows. Every order
/// of the racing pair leaves the streak at two at most, so the circuit stays closed; a
/// success that loses its race to a failure must not be dropped.
#[test]
fn a_success_racing_a_failure_is_never_lost() {
    loom::model(|| {
        let cb = CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold: 4,
            ..Default::default()
        })
        .clock(FakeClock::new())
        .build()
        .unwrap();
        cb.try_acquire().unwrap().record(Outcome::Failure);
        cb.try_acquire().unwrap().record(Outcome::Failure);
        let other = cb.clone();
        let t = loom::thread::spawn(move || other.try_acquire().unwrap().record(Outcome::Success));
        cb.try_acquire().unwrap().record(Outcome::Failure);
        t.join().unwrap();
        cb.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(cb.state(), CircuitBreakerState::Closed);
    });
}

/// A failure that opens the circuit races another that does, while the circuit goes on
/// to a failed probe and a longer, backed-off open period. Whichever failure loses its
/// race must not write its (shorter) deadline over that period's: after the failed probe,
/// the circuit stays open for the whole backed-off time.
#[test]
fn a_late_opener_never_shortens_a_later_open_period() {
    loom::model(|| {
        let clock = FakeClock::new();
        let cb = CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold: 1,
            timeout: Duration::from_secs(10),
            open_backoff: Some(OpenBackoff {
                multiplier: 10.0,
                max: Duration::from_secs(1000),
                jitter: 0.0,
            }),
            ..Default::default()
        })
        .clock(clock.clone())
        .build()
        .unwrap();
        let late = cb.try_acquire_owned().unwrap();
        let t = loom::thread::spawn(move || late.record(Outcome::Failure));
        cb.try_acquire().map(|p| p.record(Outcome::Failure)).ok();
        clock.advance(Duration::from_secs(10));
        let probed = match cb.try_acquire() {
            Ok(probe) => {
                probe.record(Outcome::Failure);
                true
            }
            Err(_) => false,
        };
        t.join().unwrap();
        if probed {
            assert_eq!(cb.state(), CircuitBreakerState::Open);
            assert_eq!(cb.retry_after(), Some(Duration::from_secs(100)));
        }
    });
}
