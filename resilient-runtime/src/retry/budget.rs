//! A retry budget per service, after Finagle's RetryBudget: retries may add at most a
//! percentage of the recent requests, plus a small floor per second.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, ClockSource};
use crate::sync::{Mutex, lock};

/// How much retrying a budget allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per request in the window (0.2: at most 20% extra load).
    pub percent: f64,
    /// Retries allowed per second whatever the load, so that a quiet service can still
    /// retry.
    pub min_per_second: u32,
    /// How long a deposit counts (1 s ..= 60 s).
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            percent: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// A retry budget: every request deposits `percent` of a retry, every retry withdraws
/// one; deposits expire after `ttl`; `min_per_second × ttl` retries are always allowed.
///
/// ```
/// use resilient_runtime::retry::{RetryBudget, RetryBudgetConfig};
/// use std::time::Duration;
///
/// let budget = RetryBudget::new(RetryBudgetConfig { percent: 0.5, min_per_second: 0, ttl: Duration::from_secs(10) });
/// for _ in 0..4 { budget.deposit(); }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw()); // 4 requests × 50% = 2 retries
/// ```
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Mutex<Ledger>>,
    clock: ClockSource,
    config: RetryBudgetConfig,
}

#[derive(Debug)]
struct Ledger {
    /// One slot per second of the window: (second, deposits, withdrawals).
    slots: Vec<(u64, u64, u64)>,
}

impl RetryBudget {
    /// A budget on the system clock.
    pub fn new(config: RetryBudgetConfig) -> Self {
        Self::with_clock_source(config, ClockSource::System)
    }

    /// A budget on `clock` (tests).
    pub fn with_clock(config: RetryBudgetConfig, clock: impl Clock) -> Self {
        Self::with_clock_source(config, ClockSource::Custom(Arc::new(clock)))
    }

    fn with_clock_source(config: RetryBudgetConfig, clock: ClockSource) -> Self {
        let secs = config.ttl.as_secs().clamp(1, 60) as usize;
        let config = RetryBudgetConfig {
            percent: if config.percent.is_finite() {
                config.percent.clamp(0.0, 10.0)
            } else {
                0.0
            },
            ttl: Duration::from_secs(secs as u64),
            ..config
        };
        Self {
            inner: Arc::new(Mutex::new(Ledger {
                slots: vec![(u64::MAX, 0, 0); secs],
            })),
            clock,
            config,
        }
    }

    fn second(&self) -> u64 {
        self.clock.now_nanos() / 1_000_000_000
    }

    fn slot(slots: &mut [(u64, u64, u64)], second: u64) -> &mut (u64, u64, u64) {
        let n = slots.len();
        let slot = &mut slots[(second % n as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot
    }

    /// Records a request (every first attempt).
    pub fn deposit(&self) {
        let second = self.second();
        let mut ledger = lock(&self.inner);
        Self::slot(&mut ledger.slots, second).1 += 1;
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_withdraw(&self) -> bool {
        let second = self.second();
        let mut ledger = lock(&self.inner);
        let window = ledger.slots.len() as u64;
        let (mut deposits, mut withdrawals) = (0u64, 0u64);
        for &(s, d, w) in ledger.slots.iter() {
            if s != u64::MAX && s + window > second {
                deposits += d;
                withdrawals += w;
            }
        }
        let allowed = (deposits as f64) * self.config.percent
            + f64::from(self.config.min_per_second) * window as f64;
        if (withdrawals as f64) + 1.0 > allowed {
            return false;
        }
        Self::slot(&mut ledger.slots, second).2 += 1;
        true
    }

    /// The configuration in force.
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeClock;

    #[test]
    fn retries_stay_within_the_percentage_plus_the_floor() {
        let clock = FakeClock::new();
        let budget = RetryBudget::with_clock(
            RetryBudgetConfig {
                percent: 0.2,
                min_per_second: 1,
                ttl: Duration::from_secs(10),
            },
            clock.clone(),
        );
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.try_withdraw() {
                retries += 1;
            }
        }
        // 20% of 1000 plus 1/s × 10 s
        assert_eq!(retries, 210);
    }

    #[test]
    fn deposits_expire_after_the_ttl() {
        let clock = FakeClock::new();
        let budget = RetryBudget::with_clock(
            RetryBudgetConfig {
                percent: 1.0,
                min_per_second: 0,
                ttl: Duration::from_secs(2),
            },
            clock.clone(),
        );
        for _ in 0..5 {
            budget.deposit();
        }
        clock.advance(Duration::from_secs(3));
        assert!(
            !budget.try_withdraw(),
            "the old requests no longer pay for retries"
        );
        budget.deposit();
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }
}
