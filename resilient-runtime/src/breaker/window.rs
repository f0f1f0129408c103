//! Sliding windows of recent outcomes, for failure-rate and slow-call-rate thresholds.

use super::config::SlidingWindow;
use super::state::TransitionReason;

/// Outcome counts over the last N calls or the last N seconds.
#[derive(Debug)]
pub(crate) struct Window {
    /// Generation the counts belong to; a record from another generation starts afresh.
    generation: u64,
    kind: Kind,
    calls: u64,
    failures: u64,
    slow: u64,
}

#[derive(Debug)]
enum Kind {
    /// A ring of the last `slots.len()` calls: bit 0 failure, bit 1 slow, bit 2 used.
    Count { slots: Vec<u8>, next: usize },
    /// One bucket per second.
    Time { buckets: Vec<Bucket>, last_sec: u64 },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    calls: u64,
    failures: u64,
    slow: u64,
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;
const USED: u8 = 4;

impl Window {
    pub(crate) fn new(window: SlidingWindow) -> Self {
        let kind = match window {
            SlidingWindow::Count(n) => Kind::Count {
                slots: vec![0; n.max(1) as usize],
                next: 0,
            },
            SlidingWindow::Time(d) => Kind::Time {
                buckets: vec![Bucket::default(); d.as_secs().max(1) as usize],
                last_sec: 0,
            },
        };
        Self {
            generation: 0,
            kind,
            calls: 0,
            failures: 0,
            slow: 0,
        }
    }

    fn clear(&mut self) {
        self.calls = 0;
        self.failures = 0;
        self.slow = 0;
        match &mut self.kind {
            Kind::Count { slots, next } => {
                slots.fill(0);
                *next = 0;
            }
            Kind::Time { buckets, last_sec } => {
                buckets.fill(Bucket::default());
                *last_sec = 0;
            }
        }
    }

    pub(crate) fn record(
        &mut self,
        generation: u64,
        failed: bool,
        slow: bool,
        now: &impl Fn() -> u64,
    ) {
        if generation < self.generation {
            // A call admitted before the circuit last changed state, ending after a
            // call of the new period was counted: not part of this period.
            return;
        }
        if generation > self.generation {
            self.clear();
            self.generation = generation;
        }
        match &mut self.kind {
            Kind::Count { slots, next } => {
                let old = slots[*next];
                if old & USED != 0 {
                    self.calls -= 1;
                    self.failures -= u64::from(old & FAILED != 0);
                    self.slow -= u64::from(old & SLOW != 0);
                }
                slots[*next] = USED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
                *next = (*next + 1) % slots.len();
            }
            Kind::Time { buckets, last_sec } => {
                let sec = now() / 1_000_000_000;
                let n = buckets.len() as u64;
                if *last_sec == 0 {
                    *last_sec = sec;
                }
                if sec > *last_sec {
                    // expire every bucket the clock moved past (at most the whole ring)
                    let from = *last_sec + 1;
                    let to = sec.min(*last_sec + n);
                    for s in from..=to {
                        let b = &mut buckets[(s % n) as usize];
                        self.calls -= b.calls;
                        self.failures -= b.failures;
                        self.slow -= b.slow;
                        *b = Bucket::default();
                    }
                    *last_sec = sec;
                }
                let b = &mut buckets[(*last_sec % n) as usize];
                b.calls += 1;
                b.failures += u64::from(failed);
                b.slow += u64::from(slow);
            }
        }
        self.calls += 1;
        self.failures += u64::from(failed);
        self.slow += u64::from(slow);
    }

    /// The threshold the window has crossed, if any.
    pub(crate) fn verdict(
        &self,
        failure_rate: Option<f64>,
        slow_rate: Option<f64>,
        minimum_calls: u32,
    ) -> Option<TransitionReason> {
        if self.calls == 0 || self.calls < u64::from(minimum_calls) {
            return None;
        }
        let calls = self.calls as f64;
        let failures = self.failures as f64 / calls;
        if failure_rate.is_some_and(|t| failures >= t) {
            return Some(TransitionReason::FailureRate(failures));
        }
        let slow = self.slow as f64 / calls;
        if slow_rate.is_some_and(|t| slow >= t) {
            return Some(TransitionReason::SlowCallRate(slow));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    #[test]
    fn count_window_forgets_the_oldest_call() {
        let mut w = Window::new(SlidingWindow::Count(4));
        let t = || 0;
        for failed in [true, true, false, false] {
            w.record(1, failed, false, &t);
        }
        assert_eq!(
            w.verdict(Some(0.5), None, 4),
            Some(TransitionReason::FailureRate(0.5))
        );
        w.record(1, false, false, &t); // pushes out the first failure
        assert_eq!(w.verdict(Some(0.5), None, 4), None);
        assert_eq!((w.calls, w.failures), (4, 1));
    }

    #[test]
    fn minimum_calls_guards_the_rate() {
        let mut w = Window::new(SlidingWindow::Count(10));
        w.record(1, true, false, &|| 0);
        assert_eq!(w.verdict(Some(0.5), None, 2), None);
        w.record(1, true, false, &|| 0);
        assert!(w.verdict(Some(0.5), None, 2).is_some());
    }

    #[test]
    fn time_window_expires_old_seconds() {
        let mut w = Window::new(SlidingWindow::Time(Duration::from_secs(3)));
        w.record(1, true, true, &|| 10 * S);
        w.record(1, false, false, &|| 11 * S);
        assert_eq!((w.calls, w.failures, w.slow), (2, 1, 1));
        w.record(1, false, false, &|| 13 * S); // second 10 has left the window
        assert_eq!((w.calls, w.failures, w.slow), (2, 0, 0));
        w.record(1, false, false, &|| 100 * S); // a long gap empties it
        assert_eq!((w.calls, w.failures), (1, 0));
        assert_eq!(
            w.verdict(None, Some(0.1), 1),
            None,
            "no slow calls left in the window"
        );
    }

    #[test]
    fn a_late_call_of_an_older_period_wipes_nothing() {
        let mut w = Window::new(SlidingWindow::Count(10));
        w.record(2, true, false, &|| 0);
        w.record(2, true, false, &|| 0);
        w.record(1, false, false, &|| 0); // admitted before the state change
        assert_eq!((w.generation, w.calls, w.failures), (2, 2, 2));
        assert!(w.verdict(Some(0.5), None, 2).is_some());
    }

    #[test]
    fn a_new_generation_starts_empty() {
        let mut w = Window::new(SlidingWindow::Count(4));
        w.record(1, true, false, &|| 0);
        w.record(2, false, false, &|| 0);
        assert_eq!((w.calls, w.failures), (1, 0));
    }
}
