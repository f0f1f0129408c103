//! Retries: exponential backoff with full jitter, server pushback, and a per-service
//! budget that bounds the extra load retries can add.

mod budget;
pub(crate) mod route;

use std::time::Duration;

use tonic::Status;

pub use budget::{RetryBudget, RetryBudgetConfig};

use crate::spec::RetrySpec;

/// The trailer a server sends to say when (or whether) to retry.
pub const PUSHBACK_TRAILER: &str = "grpc-retry-pushback-ms";

/// What the server's pushback says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// No pushback: use the backoff.
    None,
    /// Retry after exactly this long.
    After(Duration),
    /// Do not retry (a negative or malformed value).
    Stop,
}

/// Reads `grpc-retry-pushback-ms` from a status's metadata (trailers).
pub fn pushback(status: &Status) -> Pushback {
    let Some(value) = status.metadata().get(PUSHBACK_TRAILER) else {
        return Pushback::None;
    };
    match value
        .to_str()
        .ok()
        .map(str::trim)
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms as u64)),
        _ => Pushback::Stop,
    }
}

/// The cap of the backoff before attempt `attempt + 1` (`attempt` ≥ 1 attempts done):
/// `min(max_backoff, initial × multiplier^(attempt-1))`.
pub fn backoff_cap(spec: &RetrySpec, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30) as i32;
    let cap = spec.initial_backoff.as_secs_f64() * spec.multiplier.max(1.0).powi(exp);
    Duration::try_from_secs_f64(cap.min(spec.max_backoff.as_secs_f64()).max(0.0))
        .unwrap_or(spec.max_backoff)
}

/// The backoff before attempt `attempt + 1`: uniformly random in `[0, cap]` ("full
/// jitter"), so that clients that failed together do not retry together.
pub fn backoff(spec: &RetrySpec, attempt: u32) -> Duration {
    let cap = backoff_cap(spec, attempt);
    Duration::try_from_secs_f64(cap.as_secs_f64() * fastrand::f64()).unwrap_or(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn backoff_caps_grow_and_stop_at_the_max() {
        let spec = RetrySpec {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(70),
            multiplier: 2.0,
            ..RetrySpec::DEFAULT
        };
        let caps: Vec<u128> = (1..=5).map(|a| backoff_cap(&spec, a).as_millis()).collect();
        assert_eq!(caps, [10, 20, 40, 70, 70]);
        for attempt in 1..=5 {
            for _ in 0..200 {
                let b = backoff(&spec, attempt);
                assert!(b <= backoff_cap(&spec, attempt), "{b:?}");
            }
        }
        // full jitter: the draws spread over the whole range
        let draws: Vec<Duration> = (0..500).map(|_| backoff(&spec, 4)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(10)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(60)));
    }

    #[test]
    fn a_backoff_of_the_largest_duration_is_capped_not_a_panic() {
        let spec = RetrySpec {
            initial_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            ..RetrySpec::DEFAULT
        };
        assert_eq!(backoff_cap(&spec, 1), Duration::MAX);
        assert!(backoff(&spec, 3) <= Duration::MAX);
    }

    #[test]
    fn pushback_is_read_from_the_trailer() {
        let mut s = Status::unavailable("busy");
        assert_eq!(pushback(&s), Pushback::None);
        s.metadata_mut()
            .insert(PUSHBACK_TRAILER, MetadataValue::from_static("250"));
        assert_eq!(pushback(&s), Pushback::After(Duration::from_millis(250)));
        s.metadata_mut()
            .insert(PUSHBACK_TRAILER, MetadataValue::from_static("-1"));
        assert_eq!(pushback(&s), Pushback::Stop);
        s.metadata_mut()
            .insert(PUSHBACK_TRAILER, MetadataValue::from_static("soon"));
        assert_eq!(pushback(&s), Pushback::Stop);
    }
}
