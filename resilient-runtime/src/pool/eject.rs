//! Outlier detection for one endpoint: a pure state machine, time passed in (nanoseconds
//! since the pool started), so that every transition is tested without sleeping.

use std::time::Duration;

/// When an endpoint is taken out of rotation.
///
/// An endpoint that fails `consecutive_failures` calls in a row (connection failures,
/// transport errors other than a stream this client reset itself, `UNAVAILABLE`, and
/// calls it left unanswered until the RPC's own deadline while other endpoints answered:
/// see the pool's documentation of ejection) is
/// ejected for `base_time × n`, where n counts its ejections (at most `max_time`). Back
/// in rotation it is on probation: one more failure ejects it again, for longer. Once it
/// has answered well for a whole `base_time` after coming back, its count returns to
/// zero.
///
/// An endpoint is ejected only while fewer than `max_ejected_percent` of the endpoints
/// are out of rotation, whether ejected or reported down by their health check (at
/// least one, when no other is out): failures seen by callers never take the last
/// healthy share of a pool away. If every endpoint is out, the pool uses the ejected ones
/// that their health check does not call down, else all of them (panic mode): better a
/// call that may fail than one refused for certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Failures in a row that eject an endpoint; 0 turns ejection off. Default: 3.
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long. Default: 10 s.
    pub base_time: Duration,
    /// The longest ejection. Default: 5 min.
    pub max_time: Duration,
    /// The largest share of endpoints out of rotation (ejected, or down by their health
    /// check) that still allows an ejection, in percent (one endpoint may always be
    /// ejected while no other is out). Default: 50.
    pub max_ejected_percent: u8,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            consecutive_failures: 3,
            base_time: Duration::from_secs(10),
            max_time: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

impl Ejection {
    /// Never eject.
    pub fn disabled() -> Self {
        Ejection {
            consecutive_failures: 0,
            ..Ejection::default()
        }
    }

    /// How many of `n` endpoints may be ejected at once.
    pub(crate) fn max_ejected(&self, n: usize) -> usize {
        (n * usize::from(self.max_ejected_percent.min(100)) / 100).max(1)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.consecutive_failures > 0 && self.base_time.is_zero() {
            return Err("ejection base_time must be above zero".to_string());
        }
        if self.max_time < self.base_time {
            return Err("ejection max_time must be at least base_time".to_string());
        }
        if self.max_ejected_percent > 100 {
            return Err("max_ejected_percent must be at most 100".to_string());
        }
        Ok(())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One endpoint's outlier state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outlier {
    /// Failures in a row since the last success or ejection.
    pub(crate) consecutive: u32,
    /// Ejections not yet forgiven.
    pub(crate) ejections: u32,
    /// When the current ejection ends.
    pub(crate) ejected_until: Option<u64>,
    /// When the last ejection ended.
    returned_at: Option<u64>,
}

impl Outlier {
    /// Ends an ejection whose time has passed.
    fn settle(&mut self, now: u64) {
        if let Some(until) = self.ejected_until
            && until <= now
        {
            self.ejected_until = None;
            self.returned_at = Some(until);
        }
    }

    /// Whether the endpoint is out of rotation at `now`.
    #[cfg(test)]
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.is_some_and(|u| u > now)
    }

    /// A call answered.
    pub(crate) fn on_success(&mut self, now: u64, config: &Ejection) {
        self.consecutive = 0;
        self.settle(now);
        if self.ejected_until.is_none()
            && self.ejections > 0
            && let Some(back) = self.returned_at
            && now.saturating_sub(back) >= nanos(config.base_time)
        {
            self.ejections = 0;
            self.returned_at = None;
        }
    }

    /// A call failed. `allowed` says whether one more endpoint may be ejected now; it is
    /// asked only when this failure would eject. Returns the end of a new ejection.
    pub(crate) fn on_failure(
        &mut self,
        now: u64,
        config: &Ejection,
        allowed: impl FnOnce() -> bool,
    ) -> Option<u64> {
        if config.consecutive_failures == 0 {
            return None;
        }
        self.settle(now);
        if self.ejected_until.is_some() {
            // A call sent before the ejection: already counted.
            return None;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        let threshold = if self.ejections > 0 {
            1
        } else {
            config.consecutive_failures
        };
        if self.consecutive < threshold || !allowed() {
            return None;
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = nanos(config.base_time)
            .saturating_mul(u64::from(self.ejections))
            .min(nanos(config.max_time));
        let until = now.saturating_add(length);
        self.ejected_until = Some(until);
        self.consecutive = 0;
        self.returned_at = None;
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn config() -> Ejection {
        Ejection {
            consecutive_failures: 3,
            base_time: Duration::from_secs(10),
            max_time: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_and_grows() {
        let c = config();
        let mut o = Outlier::default();
        assert_eq!(o.on_failure(0, &c, || true), None);
        o.on_success(1, &c); // a success breaks the run
        assert_eq!(o.on_failure(2, &c, || true), None);
        assert_eq!(o.on_failure(3, &c, || true), None);
        assert_eq!(o.on_failure(4, &c, || true), Some(4 + 10 * S));
        assert!(o.is_ejected(4 + 10 * S - 1));
        // late results of calls sent before the ejection change nothing
        assert_eq!(o.on_failure(5, &c, || true), None);
        assert_eq!(o.consecutive, 0);
        // back in rotation: on probation, one failure ejects for twice as long
        let back = 4 + 10 * S;
        assert!(!o.is_ejected(back));
        assert_eq!(o.on_failure(back + 1, &c, || true), Some(back + 1 + 20 * S));
        // the third ejection is capped at max_time
        let back = back + 1 + 20 * S;
        assert_eq!(o.on_failure(back, &c, || true), Some(back + 25 * S));
        assert_eq!(o.ejections, 3);
    }

    #[test]
    fn forgiven_after_a_good_base_time() {
        let c = config();
        let mut o = Outlier::default();
        for t in 0..3 {
            o.on_failure(t, &c, || true);
        }
        let back = 2 + 10 * S;
        o.on_success(back + 1, &c);
        assert_eq!(o.ejections, 1, "not yet forgiven");
        o.on_success(back + 10 * S, &c);
        assert_eq!(o.ejections, 0);
        // a fresh run of failures is needed again
        assert_eq!(o.on_failure(back + 11 * S, &c, || true), None);
    }

    #[test]
    fn refused_ejection_keeps_counting() {
        let c = config();
        let mut o = Outlier::default();
        let mut asked = 0;
        for t in 0..5 {
            assert_eq!(
                o.on_failure(t, &c, || {
                    asked += 1;
                    false
                }),
                None
            );
        }
        assert_eq!(asked, 3, "asked at the 3rd, 4th and 5th failure");
        assert_eq!(o.on_failure(5, &c, || true), Some(5 + 10 * S));
    }

    #[test]
    fn disabled_never_ejects() {
        let c = Ejection::disabled();
        let mut o = Outlier::default();
        for t in 0..100 {
            assert_eq!(o.on_failure(t, &c, || true), None);
        }
    }

    #[test]
    fn share_limits() {
        let c = config();
        assert_eq!(c.max_ejected(1), 1);
        assert_eq!(c.max_ejected(3), 1);
        assert_eq!(c.max_ejected(4), 2);
        assert_eq!(c.max_ejected(10), 5);
        let all = Ejection {
            max_ejected_percent: 100,
            ..c
        };
        assert_eq!(all.max_ejected(3), 3);
        assert!(c.validate().is_ok());
        assert!(
            Ejection {
                max_time: Duration::from_secs(1),
                ..c
            }
            .validate()
            .is_err()
        );
    }
}
