//! Breaker errors as gRPC statuses, and telling an open circuit from a server's own
//! UNAVAILABLE.

use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::breaker::error::last_error;
use crate::{CircuitBreaker, CircuitBreakerError};

/// Metadata key set on a status produced by an open circuit; its value is the breaker's
/// name (non-ASCII characters replaced by `?`).
pub const CIRCUIT_OPEN_METADATA: &str = "resilient-circuit-open";

/// Metadata key holding, in milliseconds, when an open circuit may let a probe through.
pub const RETRY_AFTER_METADATA: &str = "resilient-retry-after-ms";

fn ascii(s: &str) -> MetadataValue<tonic::metadata::Ascii> {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    MetadataValue::try_from(cleaned.as_str()).unwrap_or_else(|_| MetadataValue::from_static("?"))
}

/// The status an open circuit answers with: `UNAVAILABLE`, naming the breaker, with a
/// retry-after hint in metadata. [`is_circuit_open`] recognises it.
pub fn open_status(breaker: &str, retry_after: Option<Duration>) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(CIRCUIT_OPEN_METADATA, ascii(breaker));
    let message = match retry_after {
        Some(d) => {
            metadata.insert(
                RETRY_AFTER_METADATA,
                MetadataValue::from(d.as_millis() as u64),
            );
            format!(
                "circuit breaker `{breaker}` is open; retry after {} ms",
                d.as_millis()
            )
        }
        None => format!("circuit breaker `{breaker}` is open"),
    };
    Status::with_metadata(Code::Unavailable, message, metadata)
}

/// The status a call past its breaker's deadline answers with: `DEADLINE_EXCEEDED`.
pub(crate) fn timeout_status(breaker: &str, deadline: Option<Duration>) -> Status {
    match deadline {
        Some(d) => Status::deadline_exceeded(format!(
            "call through `{breaker}` timed out after {} ms",
            d.as_millis()
        )),
        None => Status::deadline_exceeded(format!("call through `{breaker}` timed out")),
    }
}

/// True when `status` came from an open circuit on this side, not from the server: retry
/// layers must not retry it.
pub fn is_circuit_open(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.metadata().contains_key(CIRCUIT_OPEN_METADATA)
}

/// `Open` becomes `UNAVAILABLE` ([`open_status`]), `Timeout` becomes `DEADLINE_EXCEEDED`,
/// `Inner` is the status itself.
///
/// The breaker's name and retry-after hint are those of the last breaker that rejected
/// or timed out a call on this thread, which is the one that produced the error when it
/// is converted where it is returned (`cb.call(..).await?`). An error carried to another
/// thread first converts without them.
impl From<CircuitBreakerError<Status>> for Status {
    fn from(err: CircuitBreakerError<Status>) -> Status {
        let last = last_error();
        let breaker_of = |open: bool| {
            last.filter(|l| l.open == open).and_then(|l| {
                crate::registry::by_id(l.breaker).map(|b| {
                    let hint = (l.nanos != u64::MAX).then(|| Duration::from_nanos(l.nanos));
                    (b, hint)
                })
            })
        };
        match err {
            CircuitBreakerError::Inner(status) => status,
            CircuitBreakerError::Open => match breaker_of(true) {
                Some((b, hint)) => open_status(b.name(), hint),
                None => open_status("circuit-breaker", None),
            },
            CircuitBreakerError::Timeout => match breaker_of(false) {
                Some((b, deadline)) => timeout_status(b.name(), deadline),
                None => timeout_status("circuit-breaker", None),
            },
        }
    }
}

impl CircuitBreaker {
    /// The status this breaker's rejections answer with right now.
    pub fn open_status(&self) -> Status {
        open_status(self.name(), self.retry_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CircuitBreakerConfig;

    #[tokio::test]
    async fn open_circuit_status_names_the_breaker_and_is_recognisable() {
        let cb = CircuitBreaker::named(
            "auth-service",
            CircuitBreakerConfig {
                failure_threshold: 1,
                ..Default::default()
            },
        );
        let _ = cb
            .call(|| async { Err::<(), _>(Status::unavailable("down")) })
            .await;
        let server_unavailable = Status::unavailable("down");
        assert!(!is_circuit_open(&server_unavailable));

        let err = cb
            .call(|| async { Ok::<(), Status>(()) })
            .await
            .unwrap_err();
        let status: Status = err.into();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(is_circuit_open(&status));
        assert!(
            status.message().contains("auth-service"),
            "{}",
            status.message()
        );
        assert_eq!(
            status.metadata().get(CIRCUIT_OPEN_METADATA).unwrap(),
            "auth-service"
        );
        let hint: u64 = status
            .metadata()
            .get(RETRY_AFTER_METADATA)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(hint > 29_000 && hint <= 30_000, "{hint}");
    }

    #[tokio::test]
    async fn timeout_becomes_deadline_exceeded_and_inner_passes_through() {
        let cb = CircuitBreaker::named(
            "slow",
            CircuitBreakerConfig {
                call_timeout: Some(Duration::from_millis(10)),
                ..Default::default()
            },
        );
        let err = cb
            .call(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<(), Status>(())
            })
            .await
            .unwrap_err();
        let status = Status::from(err);
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("slow"), "{}", status.message());

        let inner = Status::from(CircuitBreakerError::Inner(Status::not_found("nope")));
        assert_eq!(inner.code(), Code::NotFound);
        assert!(!is_circuit_open(&inner));
    }
}
