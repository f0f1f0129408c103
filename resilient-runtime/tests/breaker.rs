//! Behaviour of the circuit breaker through its public API.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use resilient_runtime::observe::{
    FallbackEvent, Observer, OutcomeEvent, RejectionEvent, TransitionEvent,
};
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError, CircuitBreakerState, FakeClock,
    Mode, OpenBackoff, Outcome, SlidingWindow, TransitionReason,
};

// ---------------------------------------------------------------------------------------
// The three tests of the design document, as users write them.
// (`state()` is synchronous; `Ok::<(), &str>` names the error type the design's sample
// leaves for inference; `..Default::default()` fills the fields added since.)

#[tokio::test]
async fn test_circuit_breaker_opens_on_failures() {
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 2,
        timeout: Duration::from_secs(1),
        ..Default::default()
    });

    // Trigger 2 failures
    let _ = cb.call(|| async { Err::<(), _>("Service error") }).await;

    let _ = cb.call(|| async { Err::<(), _>("Service error") }).await;

    // 3rd call should be rejected immediately (circuit open)
    let start = Instant::now();
    let result = cb.call(|| async { Ok::<(), &str>(()) }).await;

    assert!(result.is_err());
    assert!(start.elapsed() < Duration::from_millis(100)); // No hang
}

#[tokio::test]
async fn test_circuit_breaker_recovers() {
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        success_threshold: 2,
        timeout: Duration::from_millis(100),
        ..Default::default()
    });

    // Open the circuit
    let _ = cb.call(|| async { Err::<(), _>("error") }).await;

    assert_eq!(cb.state(), CircuitBreakerState::Open);

    // Wait for timeout
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Half-open: successful call should close circuit
    let _ = cb.call(|| async { Ok::<(), &str>(()) }).await;
    let _ = cb.call(|| async { Ok::<(), &str>(()) }).await;

    assert_eq!(cb.state(), CircuitBreakerState::Closed);
}

#[derive(Debug, Clone, PartialEq)]
struct User {
    name: String,
}

struct Cache;

impl Cache {
    async fn get_cached_user(&self) -> Result<User, CircuitBreakerError<String>> {
        Ok(User {
            name: "cached".into(),
        })
    }
}

async fn create_open_circuit_breaker() -> CircuitBreaker {
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        ..Default::default()
    });
    let _ = cb
        .call(|| async { Err::<(), _>("auth-service down".to_string()) })
        .await;
    cb
}

async fn user_service_call(cb: &CircuitBreaker) -> Result<User, CircuitBreakerError<String>> {
    cb.call(|| async {
        Ok::<_, String>(User {
            name: "fresh".into(),
        })
    })
    .await
}

#[tokio::test]
async fn test_fallback_on_circuit_open() {
    // When auth-service is down, should return cached user data
    let cb = create_open_circuit_breaker().await;
    let cache = Cache;

    let result = match user_service_call(&cb).await {
        Err(CircuitBreakerError::Open) => {
            cache.get_cached_user().await // Fallback
        }
        other => other,
    };

    assert!(result.is_ok());
    assert_eq!(result.unwrap().name, "cached");
}

// ---------------------------------------------------------------------------------------
// Helpers

#[derive(Default)]
struct Recorder {
    transitions: Mutex<Vec<(CircuitBreakerState, CircuitBreakerState, TransitionReason)>>,
    outcomes: Mutex<Vec<(Outcome, bool, Option<Duration>)>>,
    rejections: Mutex<Vec<bool>>,
    fallbacks: Mutex<Vec<&'static str>>,
    latency: bool,
}

impl Observer for Recorder {
    fn on_transition(&self, e: &TransitionEvent<'_>) {
        self.transitions
            .lock()
            .unwrap()
            .push((e.from, e.to, e.reason));
    }
    fn on_outcome(&self, e: &OutcomeEvent<'_>) {
        self.outcomes
            .lock()
            .unwrap()
            .push((e.outcome, e.timed_out, e.latency));
    }
    fn on_rejection(&self, e: &RejectionEvent<'_>) {
        self.rejections.lock().unwrap().push(e.shadow);
    }
    fn on_fallback(&self, e: &FallbackEvent<'_>) {
        self.fallbacks.lock().unwrap().push(e.cause);
    }
    fn wants_latency(&self) -> bool {
        self.latency
    }
}

impl Recorder {
    fn take_transitions(
        &self,
    ) -> Vec<(CircuitBreakerState, CircuitBreakerState, TransitionReason)> {
        std::mem::take(&mut *self.transitions.lock().unwrap())
    }
}

fn breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, FakeClock, Arc<Recorder>) {
    let clock = FakeClock::new();
    let rec = Arc::new(Recorder::default());
    let cb = CircuitBreaker::builder(config)
        .name("test")
        .clock(clock.clone())
        .observer(rec.clone())
        .build()
        .unwrap();
    (cb, clock, rec)
}

fn run(cb: &CircuitBreaker, outcome: Outcome) -> bool {
    match cb.try_acquire() {
        Ok(p) => {
            p.record(outcome);
            true
        }
        Err(_) => false,
    }
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

use CircuitBreakerState::{Closed, HalfOpen, Open};

// ---------------------------------------------------------------------------------------

#[test]
fn walks_every_transition_with_a_fake_clock() {
    let (cb, clock, rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 3,
        success_threshold: 2,
        timeout: Duration::from_secs(30),
        open_backoff: Some(OpenBackoff {
            multiplier: 2.0,
            max: Duration::from_secs(100),
            jitter: 0.0,
        }),
        ..Default::default()
    });

    // Closed: failures below the threshold, a success clears the streak.
    assert!(run(&cb, Outcome::Failure));
    assert!(run(&cb, Outcome::Failure));
    assert_eq!(cb.consecutive_failures(), 2);
    assert!(run(&cb, Outcome::Success));
    assert_eq!(cb.consecutive_failures(), 0);
    // ignored outcomes neither count nor clear
    assert!(run(&cb, Outcome::Failure));
    assert!(run(&cb, Outcome::Ignored));
    assert_eq!(cb.consecutive_failures(), 1);
    assert!(run(&cb, Outcome::Failure));
    assert_eq!(cb.state(), Closed);

    // Closed -> Open on the third consecutive failure
    assert!(run(&cb, Outcome::Failure));
    assert_eq!(cb.state(), Open);
    assert_eq!(
        rec.take_transitions(),
        vec![(Closed, Open, TransitionReason::ConsecutiveFailures(3))]
    );

    // Open: rejected until the open time has passed
    assert!(!run(&cb, Outcome::Success));
    clock.advance(Duration::from_secs(29));
    let open = cb.try_acquire().unwrap_err();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(rec.rejections.lock().unwrap().len(), 2);

    // Open -> HalfOpen, lazily, at the next call
    clock.advance(Duration::from_secs(1));
    assert_eq!(cb.state(), Open);
    let probe = cb.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(cb.state(), HalfOpen);
    // only one probe at a time by default
    assert!(cb.try_acquire().is_err());

    // HalfOpen -> Open when the probe fails; the re-open lasts twice as long
    probe.record(Outcome::Failure);
    assert_eq!(cb.state(), Open);
    assert_eq!(cb.retry_after(), Some(Duration::from_secs(60)));
    clock.advance(Duration::from_secs(59));
    assert!(!run(&cb, Outcome::Success));
    clock.advance(Duration::from_secs(1));

    // HalfOpen -> Closed after success_threshold consecutive successful probes
    assert!(run(&cb, Outcome::Success));
    assert_eq!(cb.state(), HalfOpen);
    assert!(run(&cb, Outcome::Success));
    assert_eq!(cb.state(), Closed);
    assert_eq!(
        rec.take_transitions(),
        vec![
            (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed),
            (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded(2)),
        ]
    );

    // After closing, the backoff starts again from the base open time.
    for _ in 0..3 {
        run(&cb, Outcome::Failure);
    }
    assert_eq!(cb.retry_after(), Some(Duration::from_secs(30)));

    // Manual control
    cb.reset();
    assert_eq!((cb.state(), cb.mode()), (Closed, Mode::Normal));
    cb.force_open();
    assert_eq!((cb.state(), cb.mode()), (Open, Mode::ForcedOpen));
    clock.advance(Duration::from_secs(3600));
    assert!(!run(&cb, Outcome::Success), "forced open stays open");
    cb.force_closed();
    assert_eq!((cb.state(), cb.mode()), (Closed, Mode::ForcedClosed));
    for _ in 0..10 {
        assert!(run(&cb, Outcome::Failure), "forced closed never rejects");
    }
    assert_eq!(cb.state(), Closed);
    cb.disable();
    let before = rec.outcomes.lock().unwrap().len();
    for _ in 0..10 {
        assert!(run(&cb, Outcome::Failure));
    }
    assert_eq!(
        rec.outcomes.lock().unwrap().len(),
        before,
        "disabled records nothing"
    );
    cb.reset();
    assert_eq!(cb.mode(), Mode::Normal);
    let reasons: Vec<_> = rec.take_transitions().into_iter().map(|t| t.2).collect();
    assert!(reasons.contains(&TransitionReason::ModeChanged(Mode::ForcedOpen)));
    assert!(reasons.contains(&TransitionReason::Reset));
}

#[test]
fn metrics_only_mode_runs_the_machine_but_never_rejects() {
    let (cb, clock, rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 2,
        ..Default::default()
    });
    cb.metrics_only();
    rec.take_transitions();
    run(&cb, Outcome::Failure);
    run(&cb, Outcome::Failure);
    assert_eq!(cb.state(), Open, "the state says what would happen");
    for _ in 0..5 {
        assert!(run(&cb, Outcome::Failure), "but nothing is rejected");
    }
    assert_eq!(
        *rec.rejections.lock().unwrap(),
        vec![true; 5],
        "shadow rejections reported"
    );
    clock.advance(Duration::from_secs(30));
    assert!(run(&cb, Outcome::Success));
    assert_eq!(cb.state(), HalfOpen);
}

#[test]
fn failure_rate_over_a_count_window_opens() {
    let (cb, _clock, rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 100,
        sliding_window: Some(SlidingWindow::Count(10)),
        failure_rate_threshold: Some(0.5),
        minimum_calls: 10,
        ..Default::default()
    });
    // alternating: never two failures in a row, but a 50% failure rate
    for i in 0..9 {
        run(
            &cb,
            if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
    }
    assert_eq!(cb.state(), Closed, "9 calls < minimum_calls");
    run(&cb, Outcome::Success); // 10 calls, 5 failures
    assert_eq!(cb.state(), Open);
    let t = rec.take_transitions();
    assert!(
        matches!(t[0].2, TransitionReason::FailureRate(r) if (r - 0.5).abs() < 1e-9),
        "{t:?}"
    );
}

#[test]
fn failure_rate_over_a_time_window_forgets_old_seconds() {
    let (cb, clock, _rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 100,
        sliding_window: Some(SlidingWindow::Time(Duration::from_secs(10))),
        failure_rate_threshold: Some(0.5),
        minimum_calls: 4,
        ..Default::default()
    });
    run(&cb, Outcome::Failure);
    run(&cb, Outcome::Failure);
    run(&cb, Outcome::Success);
    clock.advance(Duration::from_secs(11)); // the failures leave the window
    run(&cb, Outcome::Success);
    run(&cb, Outcome::Failure);
    run(&cb, Outcome::Success);
    run(&cb, Outcome::Success);
    assert_eq!(cb.state(), Closed, "1 failure in 4 recent calls");
    run(&cb, Outcome::Failure);
    run(&cb, Outcome::Failure);
    run(&cb, Outcome::Failure);
    assert_eq!(cb.state(), Open, "4 of 7 recent calls failed");
}

#[tokio::test]
async fn slow_call_rate_opens() {
    let rec = Arc::new(Recorder::default());
    let cb = CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 100,
        sliding_window: Some(SlidingWindow::Count(4)),
        slow_call_rate_threshold: Some(0.5),
        slow_call_duration: Some(Duration::from_millis(20)),
        minimum_calls: 4,
        ..Default::default()
    })
    .observer(rec.clone())
    .build()
    .unwrap();
    for slow in [true, false, true, false] {
        let _ = cb
            .call(|| async move {
                if slow {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                Ok::<(), ()>(())
            })
            .await;
    }
    assert_eq!(cb.state(), Open);
    assert!(matches!(
        rec.take_transitions()[0].2,
        TransitionReason::SlowCallRate(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn call_timeout_is_a_failure() {
    let (cb, _clock, rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 2,
        call_timeout: Some(Duration::from_millis(50)),
        ..Default::default()
    });
    for _ in 0..2 {
        let r = cb
            .call(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<(), &str>(())
            })
            .await;
        assert_eq!(r, Err(CircuitBreakerError::Timeout));
    }
    assert_eq!(cb.state(), Open);
    let outcomes = rec.outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes
            .iter()
            .all(|(o, timed_out, _)| *o == Outcome::Failure && *timed_out)
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_call_in_time_succeeds_and_a_dropped_one_records_nothing() {
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        call_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    });
    let r = cb
        .call(|| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<u32, &str>(7)
        })
        .await;
    assert_eq!(r, Ok(7));
    {
        // dropped while pending, its timer registered
        let mut fut = pin!(cb.call(std::future::pending::<Result<u32, &str>>));
        assert!(poll_once(fut.as_mut()).is_pending());
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cb.state(), Closed, "a dropped call counted as a failure");
    assert_eq!(cb.call(|| async { Ok::<u32, &str>(8) }).await, Ok(8));
}

#[tokio::test]
async fn the_design_documents_timeout_inside_call_also_works() {
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        ..Default::default()
    });
    let r = cb
        .call(|| async {
            tokio::time::timeout(Duration::from_millis(5), std::future::pending::<()>()).await
        })
        .await;
    assert!(matches!(r, Err(CircuitBreakerError::Inner(_))));
    assert_eq!(cb.state(), Open);
}

#[test]
fn a_dropped_probe_frees_its_slot() {
    let (cb, clock, _rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 1,
        ..Default::default()
    });
    run(&cb, Outcome::Failure);
    clock.advance(Duration::from_secs(30));

    // A probe whose future is dropped mid-flight (the caller gave up)
    {
        let mut fut = pin!(cb.call(std::future::pending::<Result<(), ()>>));
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(cb.state(), HalfOpen);
        assert_eq!(cb.probes_in_flight(), 1);
        assert!(cb.try_acquire().is_err(), "the slot is taken");
    }
    assert_eq!(cb.probes_in_flight(), 0);
    let probe = cb.try_acquire().expect("the slot was freed");
    assert!(probe.is_probe());
    // an ignored outcome also frees it without a verdict
    probe.record(Outcome::Ignored);
    assert_eq!(cb.state(), HalfOpen);
    assert!(run(&cb, Outcome::Success));
    assert_eq!(cb.state(), HalfOpen, "success_threshold is 3");
}

#[test]
fn a_call_starts_at_its_first_poll_and_a_rejected_call_never_runs_its_closure() {
    let (cb, clock, rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 1,
        ..Default::default()
    });
    let calls = std::cell::Cell::new(0);
    let failing = cb.call(|| {
        calls.set(calls.get() + 1);
        async { Err::<(), &str>("down") }
    });
    assert_eq!(calls.get(), 0, "the closure ran before the first poll");
    let mut failing = pin!(failing);
    assert_eq!(
        poll_once(failing.as_mut()),
        Poll::Ready(Err(CircuitBreakerError::Inner("down")))
    );
    assert_eq!((calls.get(), cb.state()), (1, Open));

    let mut rejected = pin!(cb.call(|| {
        calls.set(calls.get() + 1);
        async { Ok::<(), &str>(()) }
    }));
    assert_eq!(
        poll_once(rejected.as_mut()),
        Poll::Ready(Err(CircuitBreakerError::Open))
    );
    assert_eq!(calls.get(), 1, "a rejected call ran its closure");
    assert_eq!(*rec.rejections.lock().unwrap(), [false]);
    let retry_after = cb.try_acquire().unwrap_err().retry_after();
    assert_eq!(retry_after, Some(Duration::from_secs(30)));

    // once the open time has passed, the next call is the probe, and it runs
    clock.advance(Duration::from_secs(30));
    let mut probe = pin!(cb.call(|| {
        calls.set(calls.get() + 1);
        async { Ok::<(), &str>(()) }
    }));
    assert_eq!(poll_once(probe.as_mut()), Poll::Ready(Ok(())));
    assert_eq!((calls.get(), cb.state()), (2, HalfOpen));
}

#[test]
fn results_from_before_a_transition_are_discarded() {
    let (cb, clock, _rec) = breaker(CircuitBreakerConfig {
        failure_threshold: 1,
        success_threshold: 1,
        ..Default::default()
    });
    let slow_success = cb.try_acquire().unwrap();
    run(&cb, Outcome::Failure); // opens
    slow_success.record(Outcome::Success); // arrives late: must not close it
    assert_eq!(cb.state(), Open);

    clock.advance(Duration::from_secs(30));
    let probe = cb.try_acquire().unwrap();
    let slow_failure_from_closed = {
        // a failure admitted in an earlier closed period, after closing again
        probe.record(Outcome::Success);
        assert_eq!(cb.state(), Closed);
        cb.try_acquire().unwrap()
    };
    run(&cb, Outcome::Failure);
    assert_eq!(cb.state(), Open);
    clock.advance(Duration::from_secs(30));
    run(&cb, Outcome::Success);
    assert_eq!(cb.state(), Closed);
    slow_failure_from_closed.record(Outcome::Failure);
    assert_eq!(
        cb.state(),
        Closed,
        "a failure from an older generation is dropped"
    );
}

#[test]
fn half_open_admits_at_most_max_calls_under_threads() {
    for _ in 0..50 {
        let (cb, clock, _rec) = breaker(CircuitBreakerConfig {
            failure_threshold: 1,
            half_open_max_calls: 3,
            ..Default::default()
        });
        run(&cb, Outcome::Failure);
        clock.advance(Duration::from_secs(30));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let cb = cb.clone();
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        barrier.wait();
                        match cb.try_acquire_owned() {
                            Ok(p) => {
                                std::mem::forget(p); // hold the slot
                                1
                            }
                            Err(_) => 0,
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 3);
    }
}

#[test]
fn observers_get_latency_only_when_they_ask() {
    let rec = Arc::new(Recorder {
        latency: true,
        ..Default::default()
    });
    let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
        .observer(rec.clone())
        .build()
        .unwrap();
    run(&cb, Outcome::Success);
    let (cb2, _, rec2) = breaker(CircuitBreakerConfig::default());
    run(&cb2, Outcome::Success);
    assert!(rec.outcomes.lock().unwrap()[0].2.is_some());
    assert!(rec2.outcomes.lock().unwrap()[0].2.is_none());
}

#[test]
fn bad_configs_are_rejected_naming_the_field_and_new_does_not_panic() {
    for (config, field) in [
        (
            CircuitBreakerConfig {
                failure_threshold: 0,
                ..Default::default()
            },
            "failure_threshold",
        ),
        (
            CircuitBreakerConfig {
                success_threshold: 0,
                ..Default::default()
            },
            "success_threshold",
        ),
        (
            CircuitBreakerConfig {
                sliding_window: Some(SlidingWindow::Count(10)),
                failure_rate_threshold: Some(1.01),
                ..Default::default()
            },
            "failure_rate_threshold",
        ),
        (
            CircuitBreakerConfig {
                sliding_window: Some(SlidingWindow::Count(10)),
                failure_rate_threshold: Some(0.0),
                ..Default::default()
            },
            "failure_rate_threshold",
        ),
    ] {
        let err = CircuitBreaker::try_new(config.clone()).unwrap_err();
        assert_eq!(err.key(), field);
        assert!(err.to_string().contains(field));
        // `new` repairs instead of panicking
        let cb = CircuitBreaker::new(config);
        assert!(cb.config().validate().is_ok());
    }
}

#[test]
fn breaker_is_clone_send_sync_and_clones_share_state() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<CircuitBreaker>();
    let a = CircuitBreaker::named(
        "shared",
        CircuitBreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
    );
    let b = a.clone();
    run(&a, Outcome::Failure);
    assert_eq!(b.state(), Open);
    assert_eq!(b.name(), "shared");
    assert!(a.ptr_eq(&b));
}

#[test]
fn transitions_are_traced_with_name_and_reason() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
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
        let (cb, clock, _) = breaker(CircuitBreakerConfig {
            failure_threshold: 2,
            success_threshold: 1,
            ..Default::default()
        });
        run(&cb, Outcome::Failure);
        run(&cb, Outcome::Failure);
        clock.advance(Duration::from_secs(30));
        run(&cb, Outcome::Success);
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("OPEN"),
        "{out}"
    );
    assert!(
        lines[0].contains("2 consecutive failures") && lines[0].contains("breaker=\"test\""),
        "{out}"
    );
    assert!(
        lines[1].contains("INFO") && lines[1].contains("HALF-OPEN"),
        "{out}"
    );
    assert!(
        lines[2].contains("INFO") && lines[2].contains("CLOSED"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// The process-wide registry.

/// `registry::find` upgrades every live breaker; when the owner drops one meanwhile, the
/// finder holds the last handle, and dropping it unregisters. That must not happen while
/// the registry is locked (it used to hang the process). Bounded: 2 s of churn, and the
/// watchdog fails the test if either thread makes no progress for 5 s.
#[test]
fn finding_breakers_while_others_are_dropped_never_hangs() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let finds = Arc::new(AtomicU64::new(0));
    let drops = Arc::new(AtomicU64::new(0));
    let finder = {
        let (stop, finds) = (stop.clone(), finds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = resilient_runtime::registry::find("registry-churn", "none");
                finds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let dropper = {
        let (stop, drops) = (stop.clone(), drops.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
                    .labels("registry-churn", "rpc")
                    .build()
                    .unwrap();
                drop(cb);
                drops.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let start = Instant::now();
    let (mut last, mut since) = ((0, 0), Instant::now());
    while start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        let now = (finds.load(Ordering::Relaxed), drops.load(Ordering::Relaxed));
        if now.0 != last.0 && now.1 != last.1 {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "registry stuck after {now:?} (finds, drops)"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(finder.is_finished() && dropper.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "registry stuck: a thread did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    finder.join().unwrap();
    dropper.join().unwrap();
}
