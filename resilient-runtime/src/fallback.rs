//! Why a fallback was asked for, and the "no fallback" marker.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

/// Why a generated client called its fallback instead of returning an error.
///
/// Its `Debug` names the cause; [`into_status`](FallbackCause::into_status) gives the
/// error the caller would have seen without a fallback.
pub enum FallbackCause {
    /// The circuit is open: the call was not made.
    Open {
        /// The breaker's name.
        breaker: Arc<str>,
        /// When the circuit may let a probe through, if known.
        retry_after: Option<Duration>,
    },
    /// The call's deadline passed.
    Timeout {
        /// The breaker's name.
        breaker: Arc<str>,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The dependency answered with a status classified as a failure.
    Failure(Status),
}

impl FallbackCause {
    /// The error the caller would have seen without a fallback.
    pub fn into_status(self) -> Status {
        match self {
            FallbackCause::Open {
                breaker,
                retry_after,
            } => crate::open_status(&breaker, retry_after),
            FallbackCause::Timeout { breaker, deadline } => {
                crate::status::timeout_status(&breaker, Some(deadline))
            }
            FallbackCause::Failure(status) => status,
        }
    }

    /// `"open"`, `"timeout"` or `"failure"`: the value of the `cause` metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            FallbackCause::Open { .. } => "open",
            FallbackCause::Timeout { .. } => "timeout",
            FallbackCause::Failure(_) => "failure",
        }
    }

    /// True when the circuit was open (the dependency was not called).
    pub fn is_open(&self) -> bool {
        matches!(self, FallbackCause::Open { .. })
    }

    /// True when the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FallbackCause::Timeout { .. })
    }
}

impl fmt::Debug for FallbackCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackCause::Open {
                breaker,
                retry_after,
            } => f
                .debug_struct("Open")
                .field("breaker", breaker)
                .field("retry_after", retry_after)
                .finish(),
            FallbackCause::Timeout { breaker, deadline } => f
                .debug_struct("Timeout")
                .field("breaker", breaker)
                .field("deadline", deadline)
                .finish(),
            FallbackCause::Failure(status) => f
                .debug_tuple("Failure")
                .field(&status.code())
                .field(&status.message())
                .finish(),
        }
    }
}

impl fmt::Display for FallbackCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackCause::Open { breaker, .. } => write!(f, "circuit breaker `{breaker}` is open"),
            FallbackCause::Timeout { breaker, deadline } => write!(
                f,
                "call through `{breaker}` timed out after {} ms",
                deadline.as_millis()
            ),
            FallbackCause::Failure(status) => {
                write!(f, "failed with {:?}: {}", status.code(), status.message())
            }
        }
    }
}

/// The fallback of a client built without one: every cause returns its error unchanged.
/// Generated clients skip the work a fallback needs (keeping a copy of the request) when
/// their fallback is `NoFallback`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoFallback;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_convert_to_what_the_caller_would_have_seen() {
        let open = FallbackCause::Open {
            breaker: "auth".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(format!("{open:?}").starts_with("Open"));
        assert_eq!(open.as_str(), "open");
        let s = open.into_status();
        assert!(crate::is_circuit_open(&s));

        let timeout = FallbackCause::Timeout {
            breaker: "auth".into(),
            deadline: Duration::from_secs(2),
        };
        assert!(format!("{timeout:?}").starts_with("Timeout"));
        assert_eq!(timeout.into_status().code(), tonic::Code::DeadlineExceeded);

        let failure = FallbackCause::Failure(Status::internal("boom"));
        assert!(format!("{failure:?}").contains("Internal"));
        let s = failure.into_status();
        assert_eq!((s.code(), s.message()), (tonic::Code::Internal, "boom"));
    }
}
