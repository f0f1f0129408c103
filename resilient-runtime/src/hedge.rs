//! Hedging: when to send another attempt of a slow idempotent call.
//!
//! The wait before a hedged attempt is a percentile of the RPC's recent latencies (like
//! tower's `hedge`), read from two rotating histograms: the current period and the one
//! before it, so the estimate covers the last 10 to 20 s and forgets older traffic. Until
//! [`HedgeSpec::MIN_SAMPLES`] calls have been seen, the spec's fixed delay is used.
//! The executor that sends and cancels the attempts is in [`crate::call`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::spec::{CodeSet, HedgeSpec};

/// How long one histogram collects before it becomes the previous one.
const PERIOD: Duration = Duration::from_secs(10);
/// The upper bound of bucket 0; each bucket's bound is 20 % above the one before.
const FIRST_BOUND_US: f64 = 100.0;
const GROWTH: f64 = 1.2;
/// 100 µs · 1.2^90 ≈ 22 min: every useful latency has a bucket.
const BUCKETS: usize = 90;

/// The hedging policy of one RPC with its latency estimate. Clones share the estimate.
#[derive(Debug, Clone)]
pub struct Hedging {
    spec: HedgeSpec,
    non_fatal: CodeSet,
    latencies: Arc<Mutex<Latencies>>,
}

impl Hedging {
    /// Hedging by `spec`; a failed attempt whose code is in `non_fatal` lets the others
    /// (and the next hedge, sent at once) go on, any other failure ends the call.
    pub fn new(spec: HedgeSpec, non_fatal: CodeSet) -> Hedging {
        Hedging {
            spec,
            non_fatal,
            latencies: Arc::new(Mutex::new(Latencies::new(Instant::now()))),
        }
    }

    /// The policy.
    pub fn spec(&self) -> &HedgeSpec {
        &self.spec
    }

    /// The codes after which the call goes on.
    pub fn non_fatal(&self) -> CodeSet {
        self.non_fatal
    }

    /// The wait before the next hedged attempt.
    pub fn delay(&self) -> Duration {
        self.delay_at(Instant::now())
    }

    fn delay_at(&self, now: Instant) -> Duration {
        let Some(q) = self.spec.percentile else {
            return self.spec.delay;
        };
        let mut latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        latencies.rotate(now);
        latencies
            .quantile(q, HedgeSpec::MIN_SAMPLES)
            .unwrap_or(self.spec.delay)
    }

    /// Records the latency of a successful attempt.
    pub fn record(&self, latency: Duration) {
        self.record_at(Instant::now(), latency);
    }

    fn record_at(&self, now: Instant, latency: Duration) {
        if self.spec.percentile.is_none() {
            return;
        }
        let mut latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        latencies.rotate(now);
        latencies.current[bucket_of(latency)] += 1;
    }
}

/// Two periods of latency counts.
#[derive(Debug)]
struct Latencies {
    current: [u32; BUCKETS],
    previous: [u32; BUCKETS],
    period_started: Instant,
}

impl Latencies {
    fn new(now: Instant) -> Latencies {
        Latencies {
            current: [0; BUCKETS],
            previous: [0; BUCKETS],
            period_started: now,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.period_started);
        if age < PERIOD {
            return;
        }
        self.previous = if age < 2 * PERIOD {
            self.current
        } else {
            [0; BUCKETS]
        };
        self.current = [0; BUCKETS];
        self.period_started = now;
    }

    /// The upper bound of the bucket holding the `q` quantile, once `min` samples exist.
    fn quantile(&self, q: f64, min: u32) -> Option<Duration> {
        let counts = || self.current.iter().zip(&self.previous).map(|(a, b)| a + b);
        let total: u32 = counts().sum();
        if total < min.max(1) {
            return None;
        }
        let rank = (q * f64::from(total)).ceil().max(1.0);
        let mut seen = 0u32;
        for (i, n) in counts().enumerate() {
            seen += n;
            if f64::from(seen) >= rank {
                return Some(bound_of(i));
            }
        }
        Some(bound_of(BUCKETS - 1))
    }
}

fn bound_of(bucket: usize) -> Duration {
    Duration::from_secs_f64(FIRST_BOUND_US * GROWTH.powi(bucket as i32) / 1e6)
}

fn bucket_of(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_BOUND_US {
        return 0;
    }
    let i = ((us / FIRST_BOUND_US).ln() / GROWTH.ln()).ceil();
    (i as usize).min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn hedging(percentile: Option<f64>) -> Hedging {
        Hedging::new(
            HedgeSpec {
                max_attempts: 2,
                delay: ms(40),
                percentile,
            },
            CodeSet::UNAVAILABLE,
        )
    }

    #[test]
    fn buckets_hold_their_latency_within_twenty_percent() {
        for us in [1u64, 100, 101, 150, 999, 12_345, 2_000_000, 90_000_000] {
            let latency = Duration::from_micros(us);
            let bound = bound_of(bucket_of(latency));
            assert!(bound >= latency, "{latency:?} above its bound {bound:?}");
            if us > 100 {
                assert!(
                    bound.as_secs_f64() <= latency.as_secs_f64() * GROWTH + 1e-9,
                    "{latency:?} -> {bound:?}"
                );
            }
        }
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_fixed_delay_serves_until_enough_calls_are_seen() {
        let h = hedging(Some(0.9));
        let t0 = Instant::now();
        for _ in 0..HedgeSpec::MIN_SAMPLES - 1 {
            h.record_at(t0, ms(5));
        }
        assert_eq!(h.delay_at(t0), ms(40));
        h.record_at(t0, ms(5));
        let d = h.delay_at(t0);
        assert!(d >= ms(5) && d <= ms(6), "{d:?}");
    }

    #[test]
    fn the_percentile_follows_the_slow_tail() {
        let h = hedging(Some(0.9));
        let t0 = Instant::now();
        // 90 fast calls and 10 slow ones: the 90th percentile is still fast, the 95th slow.
        for i in 0..100 {
            h.record_at(t0, if i < 90 { ms(2) } else { ms(300) });
        }
        let p90 = h.delay_at(t0);
        assert!(p90 >= ms(2) && p90 < ms(3), "{p90:?}");
        let h95 = Hedging {
            spec: HedgeSpec {
                percentile: Some(0.95),
                ..*h.spec()
            },
            ..h.clone()
        };
        let p95 = h95.delay_at(t0);
        assert!(p95 >= ms(300) && p95 < ms(360), "{p95:?}");
    }

    #[test]
    fn old_latencies_are_forgotten_after_two_periods() {
        let h = hedging(Some(0.5));
        let t0 = Instant::now();
        for _ in 0..50 {
            h.record_at(t0, ms(100));
        }
        // one period later the old counts still count (as the previous period)
        let d = h.delay_at(t0 + PERIOD);
        assert!(d >= ms(100) && d < ms(121), "{d:?}");
        // two periods later they are gone: back to the fixed delay
        assert_eq!(h.delay_at(t0 + PERIOD * 3), ms(40));
    }

    #[test]
    fn without_a_percentile_the_delay_is_fixed_and_nothing_is_recorded() {
        let h = hedging(None);
        let t0 = Instant::now();
        for _ in 0..100 {
            h.record_at(t0, ms(1));
        }
        assert_eq!(h.delay_at(t0), ms(40));
        let latencies = h.latencies.lock().unwrap();
        assert_eq!(latencies.current.iter().sum::<u32>(), 0);
    }
}
