//! Outcome classification: did a call fail the dependency, succeed, or neither?
//!
//! Three values, not two: a call the caller cancelled says nothing about the
//! dependency's health, and must neither trip nor close a circuit.

/// What one call says about the dependency's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency answered (even if the answer was "no").
    Success,
    /// The dependency failed, or did not answer in time.
    Failure,
    /// Says nothing either way (cancelled by the caller, not implemented).
    Ignored,
}

impl Outcome {
    /// `"success"`, `"failure"` or `"ignored"`: the value of the `outcome` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Any `Fn(&Result<T, E>) -> Outcome` is a classifier:
///
/// ```
/// use resilient_runtime::{Classifier, Outcome};
///
/// let only_timeouts = |r: &Result<u32, String>| match r {
///     Err(e) if e.contains("timeout") => Outcome::Failure,
///     Err(_) => Outcome::Success,
///     Ok(_) => Outcome::Success,
/// };
/// assert_eq!(only_timeouts.classify(&Err("bad input".into())), Outcome::Success);
/// ```
pub trait Classifier<T, E> {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classifier<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// The classifier of [`CircuitBreaker::call`](crate::CircuitBreaker::call): every `Err` is a
/// failure, every `Ok` a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorIsFailure;

impl<T, E> Classifier<T, E> for ErrorIsFailure {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

#[cfg(feature = "grpc")]
pub use grpc::{GrpcClassifier, is_client_timeout, is_local_reset};
#[cfg(feature = "discovery")]
pub(crate) use grpc::{caused_by_local_reset, in_chain};

#[cfg(feature = "grpc")]
mod grpc {
    use super::{Classifier, Outcome};
    use tonic::{Code, Status};

    /// Classifies gRPC statuses.
    ///
    /// | outcome | codes |
    /// |---|---|
    /// | failure | `UNAVAILABLE`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS`, `DEADLINE_EXCEEDED`, tonic's own client-side timeout (`CANCELLED` "Timeout expired"), and `RESOURCE_EXHAUSTED` when `resource_exhausted_is_failure` |
    /// | success | `OK`, `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `ABORTED`, `OUT_OF_RANGE`, and `RESOURCE_EXHAUSTED` by default: the server answered; the request was refused |
    /// | ignored | `CANCELLED` (by the caller), `UNIMPLEMENTED`, and `INTERNAL` for a stream this client reset itself ([`is_local_reset`]: the request could not be sent) |
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GrpcClassifier {
        /// Count `RESOURCE_EXHAUSTED` (quota, overload) as a failure. Default: false.
        pub resource_exhausted_is_failure: bool,
    }

    impl GrpcClassifier {
        /// The outcome of a call that ended with `status` (which may be `OK`).
        pub fn classify_status(&self, status: &Status) -> Outcome {
            match status.code() {
                Code::Ok => Outcome::Success,
                Code::Internal if is_local_reset(status) => Outcome::Ignored,
                Code::Unavailable
                | Code::Internal
                | Code::Unknown
                | Code::DataLoss
                | Code::DeadlineExceeded => Outcome::Failure,
                Code::ResourceExhausted if self.resource_exhausted_is_failure => Outcome::Failure,
                Code::ResourceExhausted
                | Code::InvalidArgument
                | Code::NotFound
                | Code::AlreadyExists
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::FailedPrecondition
                | Code::Aborted
                | Code::OutOfRange => Outcome::Success,
                Code::Cancelled if is_client_timeout(status) => Outcome::Failure,
                Code::Cancelled | Code::Unimplemented => Outcome::Ignored,
            }
        }
    }

    impl<T> Classifier<T, Status> for GrpcClassifier {
        fn classify(&self, result: &Result<T, Status>) -> Outcome {
            match result {
                Ok(_) => Outcome::Success,
                Err(status) => self.classify_status(status),
            }
        }
    }

    /// True when `status` is tonic's own client-side deadline (`Request::set_timeout`,
    /// `Endpoint::timeout`): tonic reports it as `CANCELLED` "Timeout expired", but it is a
    /// timeout, not a cancellation.
    pub fn is_client_timeout(status: &Status) -> bool {
        if status.code() != Code::Cancelled {
            return false;
        }
        std::error::Error::source(status)
            .and_then(in_chain::<tonic::TimeoutExpired>)
            .is_some()
            || status.message() == "Timeout expired"
    }

    /// True when `status` is an HTTP/2 stream that this client reset itself, which tonic
    /// reports as `INTERNAL` ("h2 protocol error"). That happens when the request could
    /// not be sent: it is over the client's `max_encoding_message_size`, or failed to
    /// encode. The dependency never saw the request, so the outcome is ignored: a caller's
    /// oversized requests must not open the circuit for every other call.
    ///
    /// A reset sent by the server, or one that HTTP/2 itself makes on a protocol error,
    /// is not local, and stays a failure.
    pub fn is_local_reset(status: &Status) -> bool {
        std::error::Error::source(status).is_some_and(caused_by_local_reset)
    }

    /// True when `error`, or an error behind it, is an HTTP/2 stream reset by this side
    /// (not by the peer, not by HTTP/2 on a protocol error).
    pub(crate) fn caused_by_local_reset(error: &(dyn std::error::Error + 'static)) -> bool {
        in_chain::<h2::Error>(error)
            .is_some_and(|h2| h2.is_reset() && !h2.is_remote() && !h2.is_library())
    }

    /// The first error of type `E` among `error` and the errors behind it.
    pub(crate) fn in_chain<'a, E: std::error::Error + 'static>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a E> {
        let mut source = Some(error);
        while let Some(err) = source {
            if let Some(found) = err.downcast_ref::<E>() {
                return Some(found);
            }
            source = err.source();
        }
        None
    }
}

#[cfg(all(test, feature = "grpc"))]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn every_grpc_code_has_its_outcome() {
        use Outcome::*;
        let table = [
            (Code::Ok, Success, Success),
            (Code::Cancelled, Ignored, Ignored),
            (Code::Unknown, Failure, Failure),
            (Code::InvalidArgument, Success, Success),
            (Code::DeadlineExceeded, Failure, Failure),
            (Code::NotFound, Success, Success),
            (Code::AlreadyExists, Success, Success),
            (Code::PermissionDenied, Success, Success),
            (Code::ResourceExhausted, Success, Failure),
            (Code::FailedPrecondition, Success, Success),
            (Code::Aborted, Success, Success),
            (Code::OutOfRange, Success, Success),
            (Code::Unimplemented, Ignored, Ignored),
            (Code::Internal, Failure, Failure),
            (Code::Unavailable, Failure, Failure),
            (Code::DataLoss, Failure, Failure),
            (Code::Unauthenticated, Success, Success),
        ];
        assert_eq!(table.len(), 17);
        let default = GrpcClassifier::default();
        let strict = GrpcClassifier {
            resource_exhausted_is_failure: true,
        };
        for (code, by_default, when_strict) in table {
            let status = Status::new(code, "x");
            assert_eq!(default.classify_status(&status), by_default, "{code:?}");
            assert_eq!(strict.classify_status(&status), when_strict, "{code:?}");
            let r: Result<(), Status> = Err(Status::new(code, "x"));
            if code != Code::Ok {
                assert_eq!(default.classify(&r), by_default, "{code:?} via Classifier");
            }
        }
        assert_eq!(default.classify(&Ok::<_, Status>(())), Success);
    }

    #[test]
    fn only_a_reset_made_by_the_client_itself_is_local() {
        let classifier = GrpcClassifier::default();
        let plain = Status::internal("h2 protocol error: http2 error");
        assert!(!is_local_reset(&plain));
        assert_eq!(classifier.classify_status(&plain), Outcome::Failure);
        // an h2 reason with no reset behind it (how tonic picks the code of a reset it
        // asks for) is not a reset this client made
        let mut reason = Status::internal("h2 protocol error");
        reason.set_source(std::sync::Arc::new(h2::Error::from(
            h2::Reason::INTERNAL_ERROR,
        )));
        assert!(!is_local_reset(&reason));
        assert_eq!(classifier.classify_status(&reason), Outcome::Failure);
    }

    #[test]
    fn tonic_client_timeout_is_a_failure_not_a_cancellation() {
        let mut status = Status::cancelled("Timeout expired");
        status.set_source(std::sync::Arc::new(tonic::TimeoutExpired(())));
        assert!(is_client_timeout(&status));
        assert_eq!(
            GrpcClassifier::default().classify_status(&status),
            Outcome::Failure
        );
        // what tonic actually builds from the error it raises
        let from_tonic = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(from_tonic.code(), Code::Cancelled);
        assert!(is_client_timeout(&from_tonic));
        // a caller's cancellation stays ignored
        let cancelled = Status::cancelled("operation was canceled");
        assert!(!is_client_timeout(&cancelled));
        assert_eq!(
            GrpcClassifier::default().classify_status(&cancelled),
            Outcome::Ignored
        );
    }
}
