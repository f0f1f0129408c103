//! Errors of a call made through a breaker.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

/// Why a call through a [`CircuitBreaker`](crate::CircuitBreaker) did not return its own result.
///
/// `Open` and `Timeout` are unit variants so that the usual match reads naturally:
///
/// ```
/// # use resilient_runtime::CircuitBreakerError;
/// # fn cached() -> Result<Vec<u32>, CircuitBreakerError<String>> { Ok(vec![]) }
/// # let result: Result<Vec<u32>, CircuitBreakerError<String>> = Err(CircuitBreakerError::Open);
/// let posts = match result {
///     Ok(posts) => Ok(posts),
///     Err(CircuitBreakerError::Open) => cached(), // serve stale data
///     Err(e) => Err(e),
/// };
/// # assert!(posts.is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CircuitBreakerError<E> {
    /// The circuit is open: the call was rejected without being made.
    Open,
    /// The call's own deadline (`call_timeout`) passed; it counted as a failure.
    Timeout,
    /// The call ran and returned this error.
    Inner(E),
}

impl<E> CircuitBreakerError<E> {
    /// True for [`CircuitBreakerError::Open`].
    pub fn is_open(&self) -> bool {
        matches!(self, CircuitBreakerError::Open)
    }

    /// True for [`CircuitBreakerError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, CircuitBreakerError::Timeout)
    }

    /// The call's own error, if it ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CircuitBreakerError::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Maps the call's own error.
    pub fn map_inner<F, G: FnOnce(E) -> F>(self, f: G) -> CircuitBreakerError<F> {
        match self {
            CircuitBreakerError::Open => CircuitBreakerError::Open,
            CircuitBreakerError::Timeout => CircuitBreakerError::Timeout,
            CircuitBreakerError::Inner(e) => CircuitBreakerError::Inner(f(e)),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CircuitBreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CircuitBreakerError::Open => f.write_str("circuit breaker is open"),
            CircuitBreakerError::Timeout => f.write_str("call timed out"),
            CircuitBreakerError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CircuitBreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CircuitBreakerError::Inner(e) => Some(e),
            _ => None,
        }
    }
}

/// Returned by [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire) when
/// the circuit rejects a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    pub(crate) retry_after: Option<Duration>,
}

impl BreakerOpen {
    /// When the circuit may let a probe through, if known (not known when it is forced
    /// open or when the half-open probe slots are taken).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(
                f,
                "circuit breaker is open; retry after {} ms",
                d.as_millis()
            ),
            None => f.write_str("circuit breaker is open"),
        }
    }
}

impl std::error::Error for BreakerOpen {}

/// What the last `Open` or `Timeout` error produced on this thread was about, so that
/// converting it to a `tonic::Status` right away (the `?` after `.await`) can name the
/// breaker. Kept as plain integers: writing it costs no atomic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastError {
    /// `Inner::id` of the breaker.
    pub(crate) breaker: u64,
    /// Retry-after (open) or the deadline (timeout), in nanoseconds; `u64::MAX` = unknown.
    pub(crate) nanos: u64,
    pub(crate) open: bool,
}

/// A [`LastError`] and the tokio task that produced it (`None` outside a task).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
struct Record {
    error: LastError,
    #[cfg(feature = "grpc")]
    task: Option<tokio::task::Id>,
}

thread_local! {
    static LAST_ERROR: Cell<Option<Record>> = const { Cell::new(None) };
}

#[inline]
pub(crate) fn set_last_error(error: LastError) {
    let record = Record {
        error,
        #[cfg(feature = "grpc")]
        task: tokio::task::try_id(),
    };
    LAST_ERROR.with(|c| c.set(Some(record)));
}

/// The last error recorded on this thread, once, if the task converting it is the one
/// that produced it. A task that moved to another thread between the error and its
/// conversion, an error carried to another task, or one converted twice gets `None`
/// (and a status that does not name the breaker) rather than another breaker's name.
#[cfg(feature = "grpc")]
pub(crate) fn take_last_error() -> Option<LastError> {
    let record = LAST_ERROR.with(|c| c.take())?;
    (record.task == tokio::task::try_id()).then_some(record.error)
}
