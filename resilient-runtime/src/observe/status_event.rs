//! The final gRPC status of a call, reported to observers (`service_errors_total` needs
//! the code, which the breaker's three-valued outcome does not carry).

use tonic::Code;

use crate::breaker::CircuitBreaker;
use crate::observe::BreakerLabels;

/// A call through a breaker finished with a gRPC status (`OK` included).
///
/// Generated clients report one per completed call or stream, with its final code; a
/// call the client timed out reports `DEADLINE_EXCEEDED`. Calls rejected by an open
/// circuit report none: they are counted as rejections.
#[derive(Debug, Clone, Copy)]
pub struct StatusEvent<'a> {
    /// The breaker of the RPC.
    pub breaker: BreakerLabels<'a>,
    /// The final status code.
    pub code: Code,
}

impl StatusEvent<'_> {
    /// The code's canonical name, as gRPC spells it (`UNAVAILABLE`, `DEADLINE_EXCEEDED`):
    /// the value of the `code` metric label.
    pub fn code_name(&self) -> &'static str {
        code_name(self.code)
    }
}

/// The canonical upper-case name of a gRPC status code.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl CircuitBreaker {
    /// Tells observers the final gRPC status of a call through this breaker.
    ///
    /// Generated clients call it once per completed call (for a stream, when it ends),
    /// `OK` included, so that error ratios have the right denominator. Call it yourself
    /// when you drive a breaker by hand around tonic calls. A [disabled](Self::disable)
    /// breaker records nothing, statuses included, so that errors are never counted
    /// against requests that were not.
    ///
    /// ```
    /// use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig};
    ///
    /// let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
    ///     .labels("auth-service", "ValidateToken")
    ///     .build()
    ///     .expect("valid config");
    /// cb.notify_status(tonic::Code::Unavailable);
    /// ```
    pub fn notify_status(&self, code: Code) {
        let observers = self.observers();
        if observers.is_empty() || self.mode() == crate::breaker::Mode::Disabled {
            return;
        }
        let event = StatusEvent {
            breaker: self.labels(),
            code,
        };
        for o in observers {
            o.on_status(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_canonical_name() {
        let names: Vec<&str> = (0..=16).map(|i| code_name(Code::from_i32(i))).collect();
        assert_eq!(
            names,
            [
                "OK",
                "CANCELLED",
                "UNKNOWN",
                "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS",
                "UNAUTHENTICATED",
            ]
        );
    }
}
