//! Time sources for the breaker: a cheap monotonic clock and a fake clock for tests.
//!
//! The breaker never reads the time on the closed-state path. It reads it when it must
//! decide whether an open circuit may let a probe through, and for time-based windows.
//! Those decisions are measured in seconds, so [`SystemClock`] reads the kernel's
//! coarse monotonic clock (a few milliseconds of resolution, a fraction of the cost of
//! [`std::time::Instant::now`]). Latencies reported to observers use [`Instant`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source, in nanoseconds from an arbitrary fixed origin.
///
/// Implement it to drive a breaker from your own notion of time; tests use
/// [`FakeClock`].
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin. Must never go backwards.
    fn now_nanos(&self) -> u64;
}

/// The default clock: the kernel's coarse monotonic clock where there is one
/// (`CLOCK_MONOTONIC_COARSE` on Linux), [`Instant`] elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        coarse_now_nanos()
    }
}

#[cfg(target_os = "linux")]
#[inline]
fn coarse_now_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on every
    // Linux since 2.6.32 and the call cannot fail with a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return instant_now_nanos();
    }
    // Seconds since boot: no overflow for 584 years, so no saturating arithmetic (and
    // its overflow branch) on the rejection path.
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn coarse_now_nanos() -> u64 {
    instant_now_nanos()
}

#[cfg_attr(target_os = "linux", allow(dead_code))]
fn instant_now_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    // +1 s so that "0" never means "now" for a fresh process.
    u64::try_from(origin.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1_000_000_000)
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use resilient_runtime::{Clock, FakeClock};
/// use std::time::Duration;
///
/// let clock = FakeClock::new();
/// let t0 = clock.now_nanos();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now_nanos() - t0, 30_000_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock standing at an arbitrary origin.
    pub fn new() -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(1_000_000_000)),
        }
    }

    /// Moves the clock forward by `by`; it stops at its largest value rather than wrap
    /// around (a clock must never go backwards).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for FakeClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// The clock a breaker holds: the system clock, inlined, or any [`Clock`].
#[derive(Clone)]
pub(crate) enum ClockSource {
    System,
    Custom(Arc<dyn Clock>),
}

impl ClockSource {
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        match self {
            ClockSource::System => coarse_now_nanos(),
            ClockSource::Custom(clock) => clock.now_nanos(),
        }
    }
}

impl std::fmt::Debug for ClockSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClockSource::System => f.write_str("SystemClock"),
            ClockSource::Custom(_) => f.write_str("CustomClock"),
        }
    }
}

/// `t + d`, or, when that is beyond what an `Instant` can hold, about 30 years after `t`
/// (as tokio's own timers do): a wait set far too long by a caller never panics.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn later(t: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    t.checked_add(d)
        .unwrap_or_else(|| t.checked_add(FAR).unwrap_or(t))
}

/// Converts a duration to nanoseconds, saturating.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_too_long_for_an_instant_ends_decades_later_without_a_panic() {
        let now = tokio::time::Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = later(now, Duration::MAX);
        assert!(
            far > now + Duration::from_secs(86_400 * 365 * 29),
            "{:?}",
            far - now
        );
    }

    #[test]
    fn system_clock_is_monotonic_and_moves() {
        let a = SystemClock.now_nanos();
        std::thread::sleep(Duration::from_millis(20));
        let b = SystemClock.now_nanos();
        assert!(b > a, "{b} should be after {a}");
        // coarse, but not coarser than 20 ms
        assert!(b - a >= 5_000_000, "moved only {} ns in 20 ms", b - a);
    }

    #[test]
    fn fake_clock_stops_at_its_end_instead_of_wrapping() {
        let c = FakeClock::new();
        c.advance(Duration::MAX);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_nanos(), u64::MAX);
    }

    #[test]
    fn fake_clock_clones_share_time() {
        let a = FakeClock::new();
        let b = a.clone();
        let t0 = b.now_nanos();
        a.advance(Duration::from_millis(5));
        assert_eq!(b.now_nanos() - t0, 5_000_000);
    }
}
