//! What the benchmarks share: a CPU-time measurement, and the ready futures they poll.
//!
//! Each bench includes this module and uses part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
#[cfg(not(unix))]
use std::time::Instant;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Thread CPU time as a criterion measurement. It leaves out the time the thread
/// spends descheduled, which wall time counts on a shared machine; on an idle machine
/// the two agree.
pub(crate) struct CpuTime;

/// Only for its formatter: CPU time is a duration like wall time.
static WALL: WallTime = WallTime;

/// This thread's CPU time so far.
#[cfg(unix)]
pub(crate) fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_THREAD_CPUTIME_ID is a valid
    // clock on every Unix this runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Elsewhere: wall time since the first call.
#[cfg(not(unix))]
pub(crate) fn thread_cpu_now() -> Duration {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

/// Polls a future once with a no-op waker; it must be ready.
#[inline(always)]
pub(crate) fn poll_once<F: Future>(fut: F) -> F::Output {
    let fut = pin!(fut);
    match fut.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a future that should be ready is pending"),
    }
}

/// The protected call: a future that is ready at once.
pub(crate) async fn ready_ok() -> Result<u64, Infallible> {
    Ok(black_box(1))
}

/// What a caller does with a closed call's result: looks inside. (`black_box` on the
/// whole `Result` would force it through memory and add a copy that no caller makes.)
#[inline(always)]
pub(crate) fn ok_value<E>(r: Result<u64, E>) -> u64 {
    match r {
        Ok(v) => v,
        Err(_) => panic!("a call through a closed breaker failed"),
    }
}

/// A call that fails, to trip the peers' breakers.
#[inline(always)]
pub(crate) fn sync_err() -> Result<u64, &'static str> {
    Err("down")
}
