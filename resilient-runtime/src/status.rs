//! Breaker errors as gRPC statuses, and telling an open circuit from a server's own
//! UNAVAILABLE.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::breaker::error::take_last_error;
use crate::{BreakerOpen, CircuitBreaker, CircuitBreakerError};

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
            // Rounded up: "retry after 0 ms" would invite a retry the circuit refuses.
            let ms = u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            metadata.insert(RETRY_AFTER_METADATA, MetadataValue::from(ms));
            format!("circuit breaker `{breaker}` is open; retry after {ms} ms")
        }
        None => format!("circuit breaker `{breaker}` is open"),
    };
    let mut status = Status::with_metadata(Code::Unavailable, message, metadata);
    // The mark that this status was made here: metadata alone also arrives from a server
    // whose own breaker refused the call.
    status.set_source(Arc::new(BreakerOpen { retry_after }));
    status
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
///
/// A server whose own breaker refused the call answers with the same code and metadata
/// (its dependency's circuit is open); that status is the server's answer, and this
/// returns false for it.
pub fn is_circuit_open(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && status.metadata().contains_key(CIRCUIT_OPEN_METADATA)
        && std::error::Error::source(status).is_some_and(|s| s.is::<BreakerOpen>())
}

/// `Open` becomes `UNAVAILABLE` ([`open_status`]), `Timeout` becomes `DEADLINE_EXCEEDED`,
/// `Inner` is the status itself.
///
/// The breaker's name and retry-after hint are those of the last breaker that rejected
/// or timed out a call in this task (on this thread, outside any task), which is the one
/// that produced the error when it is converted where it is returned
/// (`cb.call(..).await?`). An error carried to another task first, converted after its
/// task moved to another thread, or converted twice, converts without them
/// (`circuit-breaker`). Two breakers refusing calls in one task before either error is
/// converted (`join!`) can swap names.
impl From<CircuitBreakerError<Status>> for Status {
    fn from(err: CircuitBreakerError<Status>) -> Status {
        let last = take_last_error();
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

    #[test]
    fn an_open_circuit_relayed_by_a_server_is_not_this_sides() {
        let local = open_status("media-service/Upload", Some(Duration::from_secs(3)));
        assert!(is_circuit_open(&local));
        assert!(is_circuit_open(&local.clone()), "clones keep the mark");
        // What a caller receives when a server answers with its own breaker's status:
        // the same code and metadata, through the wire.
        let response = local.into_http::<tonic::body::Body>();
        let received = Status::from_header_map(response.headers()).expect("a grpc-status");
        assert_eq!(received.code(), Code::Unavailable);
        assert!(received.metadata().contains_key(CIRCUIT_OPEN_METADATA));
        assert!(!is_circuit_open(&received));
    }

    #[tokio::test]
    async fn an_error_from_elsewhere_never_takes_another_breakers_name() {
        let config = CircuitBreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        };
        let (here, there) = (
            CircuitBreaker::named("breaker-here", config.clone()),
            CircuitBreaker::named("breaker-there", config),
        );
        for cb in [&here, &there] {
            let _ = cb
                .call(|| async { Err::<(), _>(Status::unavailable("down")) })
                .await;
        }
        // A task (a request handler) whose breaker refuses a call handles the error
        // without converting it.
        let handled = here.clone();
        tokio::spawn(async move {
            let refused = handled.call(|| async { Ok::<(), Status>(()) }).await;
            assert!(matches!(refused, Err(CircuitBreakerError::Open)));
        })
        .await
        .unwrap();
        // Another task on this thread converts an error another breaker made on another
        // thread: it must not take the first task's breaker name.
        let from_elsewhere = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(there.call(|| async { Ok::<(), Status>(()) }))
        })
        .join()
        .unwrap()
        .unwrap_err();
        let status = tokio::spawn(async move { Status::from(from_elsewhere) })
            .await
            .unwrap();
        assert!(is_circuit_open(&status));
        assert!(
            !status.message().contains("breaker-here"),
            "{}",
            status.message()
        );
        // Converted in the task that made it, it names its breaker, once.
        let (first, second) = tokio::spawn(async move {
            let err = here
                .call(|| async { Ok::<(), Status>(()) })
                .await
                .unwrap_err();
            (
                Status::from(err),
                Status::from(CircuitBreakerError::<Status>::Open),
            )
        })
        .await
        .unwrap();
        assert!(
            first.message().contains("breaker-here"),
            "{}",
            first.message()
        );
        assert!(
            !second.message().contains("breaker-here"),
            "{}",
            second.message()
        );
    }

    #[test]
    fn a_retry_hint_under_a_millisecond_rounds_up() {
        for (left, ms) in [
            (Duration::from_micros(300), "1"),
            (Duration::from_micros(1001), "2"),
        ] {
            let status = open_status("x", Some(left));
            assert_eq!(status.metadata().get(RETRY_AFTER_METADATA).unwrap(), ms);
            assert!(status.message().ends_with(&format!("retry after {ms} ms")));
        }
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
