//! The circuit breaker against failsafe, recloser and tower-resilience, and against no
//! breaker at all. Results and how to read them: `BENCHMARKS.md` at the workspace root.
//!
//! Every group puts the contenders side by side in one run. Futures that are ready at
//! once are polled a single time with a no-op waker, so that no executor is measured;
//! the timeout group runs in a tokio current-thread runtime because a timer needs one.
//!
//! Single-thread groups measure this thread's CPU time, not wall time: the machine
//! these run on is shared, and wall time there also counts the time spent descheduled
//! while neighbours run. On an idle machine the two agree. The two-thread group must
//! measure wall time (it is about two threads running at once), so run it on an idle
//! machine.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use failsafe::backoff::{Constant, EqualJittered};
use failsafe::failure_policy::{ConsecutiveFailures, OrElse, SuccessRateOverTimeWindow};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{FailurePolicy, StateMachine, backoff, failure_policy};
use recloser::{AsyncRecloser, Recloser};
use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, Outcome};
use tower::{Layer, Service};
use tower_resilience::circuitbreaker::CircuitBreakerLayer;

mod common;
use common::{CpuTime, ok_value, poll_once, ready_ok, sync_err, thread_cpu_now};

/// Long enough that no open circuit turns half-open during a benchmark.
const LONG: Duration = Duration::from_secs(3600);

/// The same call, synchronous, for the sync APIs.
#[inline(always)]
fn sync_ok() -> Result<u64, Infallible> {
    Ok(black_box(1))
}

/// Polls a future that pends exactly once: pending, then ready.
#[inline(always)]
fn poll_twice<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "did not pend");
    match fut.poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("pended twice"),
    }
}

/// Polls a future with a no-op waker until it is ready. Only for tower-resilience, whose
/// call takes a `tokio::sync::Mutex` that another thread may hold: spinning stands in
/// for an executor (and is cheaper than a real one's park and wake).
#[inline(always)]
fn poll_spin<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::hint::spin_loop();
    }
}

/// `svc.ready().await?.call(()).await` without an executor: what a tower user writes.
#[inline(always)]
fn tower_call<S: Service<()>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => poll_spin(svc.call(())),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => panic!("service not ready"),
    }
}

/// A future that returns `Pending` once (waking itself) and then completes: the
/// smallest call that makes a timeout register its timer.
#[derive(Default)]
struct YieldOnce {
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = Result<u64, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.yielded {
            Poll::Ready(Ok(black_box(1)))
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

// ---- the contenders -------------------------------------------------------------------

fn ours() -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig::default())
}

/// Opened by failures (not forced), so that rejection takes the path that reads the clock.
fn ours_tripped() -> CircuitBreaker {
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        timeout: LONG,
        ..Default::default()
    });
    for _ in 0..cb.config().failure_threshold {
        let _ = poll_once(cb.call(|| async { sync_err() }));
    }
    assert!(cb.try_acquire().is_err(), "resilient breaker did not open");
    cb
}

type FailsafeDefault = StateMachine<
    OrElse<SuccessRateOverTimeWindow<EqualJittered>, ConsecutiveFailures<EqualJittered>>,
    (),
>;
type FailsafeConsecutive = StateMachine<ConsecutiveFailures<Constant>, ()>;

/// failsafe with `Config::new()`: success rate over a time window, or 5 consecutive
/// failures; opens for 5-10 s the first time.
fn failsafe_default() -> FailsafeDefault {
    failsafe::Config::new().build()
}

/// failsafe with only a consecutive-failures policy (the closest to ours).
fn failsafe_consecutive() -> FailsafeConsecutive {
    failsafe::Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            5,
            backoff::constant(LONG),
        ))
        .build()
}

/// Trips a failsafe breaker with failures until it rejects.
fn trip_failsafe<P: FailurePolicy + Send + Sync>(b: &StateMachine<P, ()>) {
    for _ in 0..1000 {
        if !b.is_call_permitted() {
            return;
        }
        let _ = failsafe::CircuitBreaker::call(b, sync_err);
    }
    panic!("failsafe breaker did not open");
}

fn recloser_default() -> Recloser {
    Recloser::default()
}

/// Trips a recloser with failures until it rejects (default: 100 calls, 50 % errors,
/// then open for 30 s).
fn trip_recloser(r: &Recloser) {
    for _ in 0..1000 {
        if let Err(recloser::Error::Rejected) = r.call(sync_err) {
            return;
        }
    }
    panic!("recloser did not open");
}

fn tower_breaker() -> impl Service<(), Response = u64> + Clone + Send + Sync {
    CircuitBreakerLayer::builder()
        .wait_duration_in_open(LONG)
        .build()
        .expect("valid tower-resilience config")
        .layer(tower::service_fn(|()| ready_ok()))
}

fn tower_plain() -> impl Service<(), Response = u64> + Clone + Send {
    tower::service_fn(|()| ready_ok())
}

// ---- 1. closed-state call ---------------------------------------------------------------

fn closed_call(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("closed_call");

    g.bench_function("no breaker (future)", |b| {
        b.iter(|| black_box(ok_value(poll_once(ready_ok()))))
    });
    g.bench_function("no breaker (closure)", |b| {
        b.iter(|| black_box(ok_value(sync_ok())))
    });
    g.bench_function("no breaker (tower service_fn)", |b| {
        let mut svc = tower_plain();
        b.iter(|| black_box(ok_value(tower_call(&mut svc))))
    });

    let cb = ours();
    g.bench_function("resilient call", |b| {
        b.iter(|| black_box(ok_value(poll_once(cb.call(ready_ok)))))
    });

    let fs = failsafe_default();
    g.bench_function("failsafe default (async)", |b| {
        b.iter(|| black_box(ok_value(poll_once(fs.call(ready_ok())))))
    });
    let fs = failsafe_default();
    g.bench_function("failsafe default (sync)", |b| {
        b.iter(|| black_box(ok_value(failsafe::CircuitBreaker::call(&fs, sync_ok))))
    });
    let fs = failsafe_consecutive();
    g.bench_function("failsafe consecutive (async)", |b| {
        b.iter(|| black_box(ok_value(poll_once(fs.call(ready_ok())))))
    });
    let fs = failsafe_consecutive();
    g.bench_function("failsafe consecutive (sync)", |b| {
        b.iter(|| black_box(ok_value(failsafe::CircuitBreaker::call(&fs, sync_ok))))
    });

    let rc = AsyncRecloser::from(recloser_default());
    g.bench_function("recloser (async)", |b| {
        b.iter(|| black_box(ok_value(poll_once(rc.call(ready_ok())))))
    });
    let rc = recloser_default();
    g.bench_function("recloser (sync)", |b| {
        b.iter(|| black_box(ok_value(rc.call(sync_ok))))
    });

    g.bench_function("tower-resilience", |b| {
        let mut svc = tower_breaker();
        b.iter(|| black_box(ok_value(tower_call(&mut svc))))
    });

    g.finish();
}

// ---- 2. open-state rejection --------------------------------------------------------------

fn open_reject(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("open_reject");

    // What the call costs when nothing rejects it.
    g.bench_function("no breaker (future runs)", |b| {
        b.iter(|| black_box(ok_value(poll_once(ready_ok()))))
    });

    let cb = ours();
    cb.force_open();
    g.bench_function("resilient call (force_open)", |b| {
        b.iter(|| black_box(poll_once(cb.call(ready_ok)).is_err()))
    });
    g.bench_function("resilient try_acquire (force_open)", |b| {
        b.iter(|| black_box(cb.try_acquire().is_err()))
    });
    let cb = ours_tripped();
    g.bench_function("resilient call (tripped)", |b| {
        b.iter(|| black_box(poll_once(cb.call(ready_ok)).is_err()))
    });
    assert!(
        cb.try_acquire().is_err(),
        "resilient breaker closed mid-run"
    );

    let fs = failsafe_default();
    trip_failsafe(&fs);
    g.bench_function("failsafe default (async)", |b| {
        b.iter(|| black_box(poll_once(fs.call(ready_ok())).is_err()))
    });
    // The default policy opens for only 5-10 s: make sure it was open throughout.
    assert!(!fs.is_call_permitted(), "failsafe default closed mid-run");
    let fs = failsafe_consecutive();
    trip_failsafe(&fs);
    g.bench_function("failsafe consecutive (async)", |b| {
        b.iter(|| black_box(poll_once(fs.call(ready_ok())).is_err()))
    });
    assert!(
        !fs.is_call_permitted(),
        "failsafe consecutive closed mid-run"
    );

    let rc = recloser_default();
    trip_recloser(&rc);
    let rc = AsyncRecloser::from(rc);
    g.bench_function("recloser (async)", |b| {
        b.iter(|| black_box(poll_once(rc.call(ready_ok())).is_err()))
    });
    assert!(
        matches!(
            poll_once(rc.call(ready_ok())),
            Err(recloser::Error::Rejected)
        ),
        "recloser closed mid-run"
    );

    let mut svc = CircuitBreakerLayer::builder()
        .wait_duration_in_open(LONG)
        .build()
        .expect("valid tower-resilience config")
        .layer(tower::service_fn(|()| ready_ok()));
    poll_once(svc.force_open());
    assert!(
        tower_call(&mut svc).is_err(),
        "tower-resilience did not open"
    );
    g.bench_function("tower-resilience", |b| {
        b.iter(|| black_box(tower_call(&mut svc).is_err()))
    });

    g.finish();
}

// ---- 3. two threads sharing one breaker ---------------------------------------------------

/// Runs `iters` calls on each of `threads` threads, started together; returns the time
/// the slowest thread took. Each thread makes its own caller with `make` (tower services
/// are `&mut`, so each thread needs a clone).
fn run_threads<M, F>(threads: usize, iters: u64, make: &M) -> Duration
where
    M: Fn() -> F + Sync,
    F: FnMut(),
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut call = make();
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        call();
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .max()
            .expect("at least one thread")
    })
}

fn shared_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_threads");
    // A threads-long sample is noisier than a single call: give it a little longer.
    g.measurement_time(Duration::from_secs(3));

    for threads in [1, 2] {
        // Per iteration every thread makes one call: criterion's elements/s is the
        // aggregate throughput.
        g.throughput(Throughput::Elements(threads as u64));
        let id = |name: &str| BenchmarkId::new(name, format!("{threads}t"));

        g.bench_function(id("no breaker"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    || {
                        black_box(ok_value(poll_once(ready_ok())));
                    }
                })
            })
        });

        let cb = ours();
        g.bench_function(id("resilient call"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    let cb = &cb;
                    move || {
                        black_box(ok_value(poll_once(cb.call(ready_ok))));
                    }
                })
            })
        });

        let fs = failsafe_default();
        g.bench_function(id("failsafe default (async)"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    let fs = &fs;
                    move || {
                        black_box(ok_value(poll_once(fs.call(ready_ok()))));
                    }
                })
            })
        });
        let fs = failsafe_consecutive();
        g.bench_function(id("failsafe consecutive (async)"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    let fs = &fs;
                    move || {
                        black_box(ok_value(poll_once(fs.call(ready_ok()))));
                    }
                })
            })
        });

        let rc = AsyncRecloser::from(recloser_default());
        g.bench_function(id("recloser (async)"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    let rc = &rc;
                    move || {
                        black_box(ok_value(poll_once(rc.call(ready_ok()))));
                    }
                })
            })
        });
        let rc = recloser_default();
        g.bench_function(id("recloser (sync)"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    let rc = &rc;
                    move || {
                        black_box(ok_value(rc.call(sync_ok)));
                    }
                })
            })
        });

        let svc = tower_breaker();
        g.bench_function(id("tower-resilience"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    let mut svc = svc.clone();
                    move || {
                        black_box(ok_value(tower_call(&mut svc)));
                    }
                })
            })
        });
    }

    g.finish();
}

// ---- 4. breaker + timeout -----------------------------------------------------------------

fn with_timeout(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("call_timeout");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let deadline = Duration::from_secs(1);
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        call_timeout: Some(deadline),
        ..Default::default()
    });

    // As an application runs them: awaited in `block_on`. Each sample runs all its calls
    // inside one `block_on`, so that entering the runtime is not measured. Every pending
    // poll costs the runtime a trip through its driver (a syscall), which is most of the
    // time here and varies by tens of nanoseconds between runs.
    g.bench_function("block_on: YieldOnce, no timeout", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_now();
                for _ in 0..iters {
                    black_box(ok_value(YieldOnce::default().await));
                }
                thread_cpu_now() - start
            })
        })
    });
    g.bench_function("block_on: tokio::time::timeout", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_now();
                for _ in 0..iters {
                    black_box(ok_value(
                        tokio::time::timeout(deadline, YieldOnce::default())
                            .await
                            .expect("deadline passed"),
                    ));
                }
                thread_cpu_now() - start
            })
        })
    });
    g.bench_function("block_on: resilient call (call_timeout)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_now();
                for _ in 0..iters {
                    black_box(ok_value(cb.call(YieldOnce::default).await));
                }
                thread_cpu_now() - start
            })
        })
    });

    // The same futures polled by hand inside the runtime's context (so the timer
    // registers with its driver): pending, then ready. Without the driver trip this
    // isolates what the breaker adds to the timeout.
    {
        let _runtime = rt.enter();
        g.bench_function("by hand: YieldOnce, no timeout", |b| {
            b.iter(|| black_box(ok_value(poll_twice(YieldOnce::default()))))
        });
        g.bench_function("by hand: tokio::time::timeout", |b| {
            b.iter(|| {
                black_box(ok_value(
                    poll_twice(tokio::time::timeout(deadline, YieldOnce::default()))
                        .expect("deadline passed"),
                ))
            })
        });
        g.bench_function("by hand: resilient call (call_timeout)", |b| {
            b.iter(|| black_box(ok_value(poll_twice(cb.call(YieldOnce::default)))))
        });
    }

    g.finish();
}

// ---- 5. the manual API --------------------------------------------------------------------

fn manual(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("acquire_record");

    g.bench_function("no breaker (closure)", |b| b.iter(|| black_box(sync_ok())));

    let cb = ours();
    g.bench_function("resilient try_acquire + record", |b| {
        b.iter(|| match cb.try_acquire() {
            Ok(permit) => {
                let r = black_box(sync_ok());
                permit.record(Outcome::Success);
                r
            }
            Err(_) => unreachable!("closed breaker rejected"),
        })
    });

    // failsafe's manual API: `is_call_permitted` then `on_success`.
    let fs = failsafe_default();
    g.bench_function("failsafe default is_call_permitted + on_success", |b| {
        b.iter(|| {
            assert!(fs.is_call_permitted());
            let r = black_box(sync_ok());
            fs.on_success();
            r
        })
    });
    let fs = failsafe_consecutive();
    g.bench_function("failsafe consecutive is_call_permitted + on_success", |b| {
        b.iter(|| {
            assert!(fs.is_call_permitted());
            let r = black_box(sync_ok());
            fs.on_success();
            r
        })
    });

    // recloser has no public acquire/record API; its sync `call` is the nearest thing.
    let rc = recloser_default();
    g.bench_function("recloser call (sync, no manual API)", |b| {
        b.iter(|| black_box(ok_value(rc.call(sync_ok))))
    });

    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! {
    name = single_thread;
    config = config().with_measurement(CpuTime);
    targets = closed_call, open_reject, with_timeout, manual
}
criterion_group! {
    name = two_threads;
    config = config();
    targets = shared_threads
}
criterion_main!(single_thread, two_threads);
