//! Observers: callbacks on transitions, outcomes and rejections (metrics and tracing
//! plug in here, nothing is hard-wired).
//!
//! Callbacks run after the breaker's bookkeeping is done, outside any critical section,
//! on the task that made the call. Keep them short; they are on the call path.

use std::time::Duration;

use crate::breaker::{CircuitBreakerState, TransitionReason};
use crate::classify::Outcome;

#[cfg(feature = "metrics")]
pub mod dashboard;
#[cfg(feature = "http-endpoint")]
pub mod http;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "grpc")]
mod status_event;

#[cfg(feature = "grpc")]
pub use status_event::StatusEvent;

/// Who a breaker protects: its name and, for generated clients, the service and RPC.
#[derive(Debug, Clone, Copy)]
pub struct BreakerLabels<'a> {
    /// The breaker's name (`CircuitBreaker::name`).
    pub name: &'a str,
    /// The logical service (`auth-service`), empty when not set.
    pub service: &'a str,
    /// The RPC (`ValidateToken`), or `*` for a breaker shared by a whole service; empty
    /// when not set.
    pub rpc: &'a str,
}

/// A state change.
#[derive(Debug, Clone, Copy)]
pub struct TransitionEvent<'a> {
    /// The breaker.
    pub breaker: BreakerLabels<'a>,
    /// The state before.
    pub from: CircuitBreakerState,
    /// The state after.
    pub to: CircuitBreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// For a transition to open: how long it stays open.
    pub open_for: Option<Duration>,
}

/// The outcome of one admitted call.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeEvent<'a> {
    /// The breaker.
    pub breaker: BreakerLabels<'a>,
    /// How the call was classified.
    pub outcome: Outcome,
    /// The call's duration, when an observer asked for it ([`Observer::wants_latency`]).
    pub latency: Option<Duration>,
    /// The call hit its deadline (a failure).
    pub timed_out: bool,
    /// The call was longer than the configured slow-call duration.
    pub slow: bool,
}

/// A call rejected by an open circuit (or one metrics-only mode would have rejected).
#[derive(Debug, Clone, Copy)]
pub struct RejectionEvent<'a> {
    /// The breaker.
    pub breaker: BreakerLabels<'a>,
    /// When the circuit may let a probe through, if known.
    pub retry_after: Option<Duration>,
    /// The breaker is in metrics-only mode: the call went ahead anyway.
    pub shadow: bool,
}

/// A generated client served a fallback instead of an error.
#[derive(Debug, Clone, Copy)]
pub struct FallbackEvent<'a> {
    /// The breaker of the RPC.
    pub breaker: BreakerLabels<'a>,
    /// `"open"`, `"timeout"` or `"failure"`.
    pub cause: &'static str,
}

/// A call is about to be retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryEvent<'a> {
    /// The breaker of the RPC.
    pub breaker: BreakerLabels<'a>,
    /// The attempt that failed (1 = the first).
    pub attempt: u32,
    /// How long the call waits before the next attempt (for a hedge: how long it waited
    /// for an answer before sending it).
    pub backoff: Duration,
    /// Whether the next attempt is a hedge, sent while the earlier ones are still in
    /// flight, rather than a retry of a failed one.
    pub hedged: bool,
}

/// A call was rejected by a full bulkhead (it never reached the breaker).
#[derive(Debug, Clone, Copy)]
pub struct BulkheadEvent<'a> {
    /// The breaker of the RPC.
    pub breaker: BreakerLabels<'a>,
    /// The bulkhead's name.
    pub bulkhead: &'a str,
}

/// Receives breaker events. Every method has a no-op default.
///
/// ```
/// use resilient_runtime::observe::{Observer, TransitionEvent};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// #[derive(Default)]
/// struct CountOpens(AtomicU32);
///
/// impl Observer for CountOpens {
///     fn on_transition(&self, event: &TransitionEvent<'_>) {
///         if event.to == resilient_runtime::CircuitBreakerState::Open {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait Observer: Send + Sync + 'static {
    /// The breaker changed state.
    fn on_transition(&self, _event: &TransitionEvent<'_>) {}
    /// An admitted call finished.
    fn on_outcome(&self, _event: &OutcomeEvent<'_>) {}
    /// A call was rejected.
    fn on_rejection(&self, _event: &RejectionEvent<'_>) {}
    /// A fallback was served.
    fn on_fallback(&self, _event: &FallbackEvent<'_>) {}
    /// A call finished with a gRPC status (see [`CircuitBreaker::notify_status`](crate::CircuitBreaker::notify_status)).
    #[cfg(feature = "grpc")]
    fn on_status(&self, _event: &StatusEvent<'_>) {}
    /// A call is retried.
    fn on_retry(&self, _event: &RetryEvent<'_>) {}
    /// A full bulkhead rejected a call.
    fn on_bulkhead_rejection(&self, _event: &BulkheadEvent<'_>) {}
    /// Whether [`OutcomeEvent::latency`] should be measured (two clock reads per call).
    fn wants_latency(&self) -> bool {
        false
    }
}

/// The no-op observer.
impl Observer for () {}

/// Logs every transition with `tracing`: `warn` when a circuit opens, `info` when it
/// turns half-open or closes, with the breaker's name, service, RPC and the reason.
///
/// Every breaker does this already; this function is what it calls.
pub(crate) fn trace_transition(event: &TransitionEvent<'_>) {
    let b = event.breaker;
    let reason = tracing::field::display(event.reason);
    match event.to {
        CircuitBreakerState::Open => tracing::warn!(
            breaker = b.name,
            service = b.service,
            rpc = b.rpc,
            from = event.from.as_str(),
            %reason,
            open_for_ms = event.open_for.map(|d| d.as_millis() as u64),
            "circuit breaker OPEN"
        ),
        CircuitBreakerState::HalfOpen => tracing::info!(
            breaker = b.name,
            service = b.service,
            rpc = b.rpc,
            from = event.from.as_str(),
            %reason,
            "circuit breaker HALF-OPEN"
        ),
        CircuitBreakerState::Closed => tracing::info!(
            breaker = b.name,
            service = b.service,
            rpc = b.rpc,
            from = event.from.as_str(),
            %reason,
            "circuit breaker CLOSED"
        ),
    }
}
