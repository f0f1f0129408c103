//! Breaker configuration, the per-environment presets and validation.

use std::fmt;
use std::time::Duration;

/// How a circuit breaker decides to open, and how it recovers.
///
/// `Default` is the production preset: open after 5 consecutive failures, close after
/// 3 consecutive successful probes, stay open 30 s.
///
/// ```
/// use resilient_runtime::CircuitBreakerConfig;
/// use std::time::Duration;
///
/// let config = CircuitBreakerConfig {
///     failure_threshold: 3,
///     call_timeout: Some(Duration::from_secs(2)),
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open a closed circuit. At least 1.
    pub failure_threshold: u32,
    /// Consecutive successful probes that close a half-open circuit. At least 1.
    pub success_threshold: u32,
    /// How long the circuit stays open before it lets a probe through. Above zero.
    pub timeout: Duration,
    /// A deadline for each call; an elapsed deadline is
    /// [`CircuitBreakerError::Timeout`](crate::CircuitBreakerError::Timeout) and counts as a
    /// failure. Default: none.
    pub call_timeout: Option<Duration>,
    /// Probes a half-open circuit admits at the same time. Default 1; at most 65 535.
    pub half_open_max_calls: u32,
    /// The window over which failure and slow-call rates are computed. Default: none, so
    /// only consecutive failures open the circuit.
    pub sliding_window: Option<SlidingWindow>,
    /// Open when the share of failures in the window reaches this, in (0, 1].
    /// Needs `sliding_window`.
    pub failure_rate_threshold: Option<f64>,
    /// Open when the share of calls slower than `slow_call_duration` reaches this, in (0, 1].
    /// Needs `sliding_window` and `slow_call_duration`.
    pub slow_call_rate_threshold: Option<f64>,
    /// A call that takes longer than this is slow (whatever its outcome).
    pub slow_call_duration: Option<Duration>,
    /// Calls the window must hold before a rate can open the circuit. Default 10.
    pub minimum_calls: u32,
    /// Makes each re-open after a failed probe last longer. Default: none (every open lasts
    /// `timeout`).
    pub open_backoff: Option<OpenBackoff>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self::for_environment(Environment::Production)
    }
}

/// The window that failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last N calls (1 ..= 100 000).
    Count(u32),
    /// The calls of the last duration, in one-second buckets: a whole number of seconds,
    /// 1 s ..= 1 h.
    Time(Duration),
}

/// Exponential growth of the open time after failed probes, capped, with jitter.
///
/// The k-th consecutive re-open lasts `min(timeout × multiplier^k, max)`, then a random
/// share up to `jitter` of it is taken off so that many clients do not probe at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenBackoff {
    /// Growth per failed probe; at least 1.
    pub multiplier: f64,
    /// The longest an open period may last.
    pub max: Duration,
    /// Share of the open time taken off at random, in [0, 1).
    pub jitter: f64,
}

impl Default for OpenBackoff {
    fn default() -> Self {
        Self {
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

/// A deployment environment, each with its preset breaker tuning.
///
/// | Environment | failure_threshold | success_threshold | timeout |
/// |-------------|-------------------|-------------------|---------|
/// | Development | 1 | 1 | 5 s |
/// | Staging     | 3 | 2 | 10 s |
/// | Production  | 5 | 3 | 30 s |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Trip at the first failure, recover quickly.
    Development,
    /// In between.
    Staging,
    /// Tolerate brief failures, give a failed dependency time.
    Production,
}

impl Environment {
    /// Every environment, in order.
    pub const ALL: [Environment; 3] = [
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ];

    /// The name accepted by [`Environment::from_env`] and `FromStr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// Reads `RESILIENT_ENV`. Unset means production; an unknown value is an error that
    /// lists the accepted ones.
    pub fn from_env() -> Result<Environment, ConfigError> {
        match std::env::var("RESILIENT_ENV") {
            Ok(value) => value
                .parse()
                .map_err(|e: ConfigError| e.in_source("RESILIENT_ENV")),
            Err(std::env::VarError::NotPresent) => Ok(Environment::Production),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::new(
                "RESILIENT_ENV",
                "is not valid UTF-8; expected one of: development, staging, production",
            )),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Environment {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "staging" | "stage" => Ok(Environment::Staging),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err(ConfigError::new(
                "environment",
                format!(
                    "unknown environment {s:?}; expected one of: development, staging, production"
                ),
            )),
        }
    }
}

impl CircuitBreakerConfig {
    /// The preset for `env` (see [`Environment`]); every other field at its default.
    pub fn for_environment(env: Environment) -> Self {
        let (failure_threshold, success_threshold, secs) = match env {
            Environment::Development => (1, 1, 5),
            Environment::Staging => (3, 2, 10),
            Environment::Production => (5, 3, 30),
        };
        Self {
            failure_threshold,
            success_threshold,
            timeout: Duration::from_secs(secs),
            call_timeout: None,
            half_open_max_calls: 1,
            sliding_window: None,
            failure_rate_threshold: None,
            slow_call_rate_threshold: None,
            slow_call_duration: None,
            minimum_calls: 10,
            open_backoff: None,
        }
    }

    /// Checks every field; the error names the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::new(
                "failure_threshold",
                "must be at least 1 (0 would open the circuit before any call)",
            ));
        }
        if self.success_threshold == 0 {
            return Err(ConfigError::new(
                "success_threshold",
                "must be at least 1 (0 would close the circuit without a probe)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                "must be above zero (how long the circuit stays open)",
            ));
        }
        if self.call_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "call_timeout",
                "must be above zero, or None for no deadline",
            ));
        }
        if self.half_open_max_calls == 0 || self.half_open_max_calls > MAX_PROBES {
            return Err(ConfigError::new(
                "half_open_max_calls",
                format!("must be between 1 and {MAX_PROBES}"),
            ));
        }
        match self.sliding_window {
            Some(SlidingWindow::Count(n)) if n == 0 || n > 100_000 => {
                return Err(ConfigError::new(
                    "sliding_window",
                    "a count window holds between 1 and 100000 calls",
                ));
            }
            Some(SlidingWindow::Time(d))
                if d < Duration::from_secs(1)
                    || d > Duration::from_secs(3600)
                    || d.subsec_nanos() != 0 =>
            {
                return Err(ConfigError::new(
                    "sliding_window",
                    format!(
                        "a time window lasts a whole number of seconds between 1 s and 1 h \
                         (it counts in one-second buckets), got {d:?}"
                    ),
                ));
            }
            _ => {}
        }
        let rates =
            self.failure_rate_threshold.is_some() || self.slow_call_rate_threshold.is_some();
        if rates
            && let Some(SlidingWindow::Count(n)) = self.sliding_window
            && self.minimum_calls > n
        {
            return Err(ConfigError::new(
                "minimum_calls",
                format!(
                    "is {}, more than the {n} calls the count window holds: the rate would \
                     never be checked; lower it to {n} or less, or widen the window",
                    self.minimum_calls
                ),
            ));
        }
        for (field, rate) in [
            ("failure_rate_threshold", self.failure_rate_threshold),
            ("slow_call_rate_threshold", self.slow_call_rate_threshold),
        ] {
            if let Some(rate) = rate {
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(ConfigError::new(
                        field,
                        format!("must be in (0, 1], got {rate}"),
                    ));
                }
                if self.sliding_window.is_none() {
                    return Err(ConfigError::new(
                        field,
                        "needs sliding_window to say which calls the rate is over",
                    ));
                }
            }
        }
        if self.slow_call_rate_threshold.is_some() && self.slow_call_duration.is_none() {
            return Err(ConfigError::new(
                "slow_call_duration",
                "must be set when slow_call_rate_threshold is",
            ));
        }
        if self.slow_call_duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("slow_call_duration", "must be above zero"));
        }
        if self.slow_call_rate_threshold.is_some()
            && let (Some(slow), Some(deadline)) = (self.slow_call_duration, self.call_timeout)
            && slow >= deadline
        {
            return Err(ConfigError::new(
                "slow_call_duration",
                format!(
                    "is {slow:?}, not below call_timeout ({deadline:?}): a call ends at its \
                     deadline, so none would count as slow; set it below call_timeout"
                ),
            ));
        }
        if let Some(b) = self.open_backoff {
            if !(b.multiplier >= 1.0 && b.multiplier.is_finite()) {
                return Err(ConfigError::new(
                    "open_backoff.multiplier",
                    format!(
                        "must be a finite number of at least 1, got {}",
                        b.multiplier
                    ),
                ));
            }
            if !(0.0..1.0).contains(&b.jitter) {
                return Err(ConfigError::new(
                    "open_backoff.jitter",
                    format!("must be in [0, 1), got {}", b.jitter),
                ));
            }
            if b.max < self.timeout {
                return Err(ConfigError::new(
                    "open_backoff.max",
                    "must be at least timeout",
                ));
            }
        }
        Ok(())
    }

    /// The nearest valid configuration: each wrong field replaced by its nearest valid
    /// value (thresholds of 0 become 1, a zero time becomes the default, a rate outside
    /// (0, 1] is dropped).
    pub(crate) fn sanitized(&self) -> Self {
        let preset = Self::default();
        let mut c = self.clone();
        c.failure_threshold = c.failure_threshold.max(1);
        c.success_threshold = c.success_threshold.max(1);
        if c.timeout.is_zero() {
            c.timeout = preset.timeout;
        }
        c.call_timeout = c.call_timeout.filter(|d| !d.is_zero());
        c.half_open_max_calls = c.half_open_max_calls.clamp(1, MAX_PROBES);
        c.sliding_window = match c.sliding_window {
            Some(SlidingWindow::Count(n)) => Some(SlidingWindow::Count(n.clamp(1, 100_000))),
            Some(SlidingWindow::Time(d)) => {
                let whole = Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0));
                Some(SlidingWindow::Time(
                    whole.clamp(Duration::from_secs(1), Duration::from_secs(3600)),
                ))
            }
            None => None,
        };
        let ok_rate = |r: &f64| *r > 0.0 && *r <= 1.0;
        c.failure_rate_threshold = c.failure_rate_threshold.filter(ok_rate);
        c.slow_call_rate_threshold = c.slow_call_rate_threshold.filter(ok_rate);
        c.slow_call_duration = c.slow_call_duration.filter(|d| !d.is_zero());
        if c.sliding_window.is_none() {
            c.failure_rate_threshold = None;
            c.slow_call_rate_threshold = None;
        }
        if c.slow_call_duration.is_none()
            || c.slow_call_duration
                .zip(c.call_timeout)
                .is_some_and(|(s, t)| s >= t)
        {
            // No call could ever count as slow: the same as no slow-call rate.
            c.slow_call_rate_threshold = None;
        }
        if let Some(SlidingWindow::Count(n)) = c.sliding_window {
            c.minimum_calls = c.minimum_calls.min(n);
        }
        if let Some(b) = &mut c.open_backoff {
            if !(b.multiplier >= 1.0 && b.multiplier.is_finite()) {
                b.multiplier = 1.0;
            }
            if !(0.0..1.0).contains(&b.jitter) {
                b.jitter = 0.0;
            }
            b.max = b.max.max(c.timeout);
        }
        c
    }
}

pub(crate) const MAX_PROBES: u32 = 0xFFFF;

/// A configuration value that is wrong, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key (field, environment variable or config path) that is wrong.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, with the key prefixed by where it was read (`RESILIENT_ENV`,
    /// `config.toml: [".nova.auth.v1.AuthService"]`).
    pub fn in_source(mut self, source: &str) -> Self {
        if self.key == "environment" {
            self.key = source.to_string();
        } else {
            self.key = format!("{source}.{}", self.key);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_tuning_table() {
        let table = [
            (Environment::Development, 1, 1, 5),
            (Environment::Staging, 3, 2, 10),
            (Environment::Production, 5, 3, 30),
        ];
        for (env, f, s, t) in table {
            let c = CircuitBreakerConfig::for_environment(env);
            assert_eq!(
                (c.failure_threshold, c.success_threshold, c.timeout),
                (f, s, Duration::from_secs(t)),
                "{env}"
            );
            assert!(c.validate().is_ok());
        }
        assert_eq!(
            CircuitBreakerConfig::default(),
            CircuitBreakerConfig::for_environment(Environment::Production)
        );
    }

    #[test]
    fn environment_parse_lists_accepted_values() {
        assert_eq!("Staging".parse::<Environment>(), Ok(Environment::Staging));
        let err = "qa".parse::<Environment>().unwrap_err();
        let text = err.to_string();
        for name in ["development", "staging", "production", "\"qa\""] {
            assert!(text.contains(name), "{text}");
        }
    }

    fn rejected(c: CircuitBreakerConfig) -> String {
        let err = c.validate().expect_err("config should be rejected");
        assert!(
            c.sanitized().validate().is_ok(),
            "sanitized config still invalid: {:?}",
            c.sanitized()
        );
        err.key().to_string()
    }

    #[test]
    fn bad_configs_name_the_field() {
        let base = CircuitBreakerConfig::default;
        let cases: Vec<(CircuitBreakerConfig, &str)> = vec![
            (
                CircuitBreakerConfig {
                    failure_threshold: 0,
                    ..base()
                },
                "failure_threshold",
            ),
            (
                CircuitBreakerConfig {
                    success_threshold: 0,
                    ..base()
                },
                "success_threshold",
            ),
            (
                CircuitBreakerConfig {
                    timeout: Duration::ZERO,
                    ..base()
                },
                "timeout",
            ),
            (
                CircuitBreakerConfig {
                    half_open_max_calls: 0,
                    ..base()
                },
                "half_open_max_calls",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(10)),
                    failure_rate_threshold: Some(0.0),
                    ..base()
                },
                "failure_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(10)),
                    failure_rate_threshold: Some(1.5),
                    ..base()
                },
                "failure_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(10)),
                    failure_rate_threshold: Some(f64::NAN),
                    ..base()
                },
                "failure_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate_threshold: Some(0.5),
                    ..base()
                },
                "failure_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(10)),
                    slow_call_rate_threshold: Some(0.5),
                    ..base()
                },
                "slow_call_duration",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(0)),
                    ..base()
                },
                "sliding_window",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Time(Duration::from_millis(1500))),
                    ..base()
                },
                "sliding_window",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(5)),
                    failure_rate_threshold: Some(0.5),
                    minimum_calls: 10,
                    ..base()
                },
                "minimum_calls",
            ),
            (
                CircuitBreakerConfig {
                    sliding_window: Some(SlidingWindow::Count(10)),
                    slow_call_rate_threshold: Some(0.5),
                    slow_call_duration: Some(Duration::from_secs(2)),
                    call_timeout: Some(Duration::from_secs(2)),
                    ..base()
                },
                "slow_call_duration",
            ),
            (
                CircuitBreakerConfig {
                    call_timeout: Some(Duration::ZERO),
                    ..base()
                },
                "call_timeout",
            ),
            (
                CircuitBreakerConfig {
                    open_backoff: Some(OpenBackoff {
                        jitter: 1.0,
                        ..Default::default()
                    }),
                    ..base()
                },
                "open_backoff.jitter",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(rejected(config), field);
        }
        // exactly 1.0 is a valid rate
        let ok = CircuitBreakerConfig {
            sliding_window: Some(SlidingWindow::Count(10)),
            failure_rate_threshold: Some(1.0),
            ..base()
        };
        assert!(ok.validate().is_ok());
    }
}
