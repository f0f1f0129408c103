//! Circuit breakers, timeouts, outcome classification and fallbacks for gRPC clients.
//!
//! This is the runtime half of `resilient`: the code that `resilient-build` generates
//! for each proto service is a thin typed shell that calls into this crate, so that the
//! behaviour is written, tested and benchmarked once, here.
//!
//! # The breaker
//!
//! ```
//! use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError, CircuitBreakerState};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let cb = CircuitBreaker::new(CircuitBreakerConfig {
//!     failure_threshold: 2,
//!     success_threshold: 3,
//!     timeout: Duration::from_secs(1),   // how long the circuit stays open
//!     ..Default::default()
//! });
//! for _ in 0..2 {
//!     let r: Result<(), CircuitBreakerError<&str>> =
//!         cb.call(|| async { Err::<(), _>("Service error") }).await;
//!     match r {
//!         Err(CircuitBreakerError::Open) => { /* rejected without calling */ }
//!         Err(CircuitBreakerError::Timeout) => { /* the call's own deadline passed */ }
//!         Err(CircuitBreakerError::Inner(e)) => { /* the call's error */ }
//!         _ => {}
//!     }
//! }
//! assert_eq!(cb.state(), CircuitBreakerState::Open);   // synchronous: no .await
//! # }
//! ```
//!
//! * **Closed → Open** after `failure_threshold` consecutive failures, or when a failure
//!   rate or slow-call rate over a [`SlidingWindow`] reaches its threshold.
//! * **Open → HalfOpen** once `timeout` has passed, decided at the next call (no timer
//!   task). With [`OpenBackoff`], each re-open after a failed probe lasts longer.
//! * **HalfOpen** admits `half_open_max_calls` probes at once; `success_threshold`
//!   consecutive successes close it, any failure re-opens it. A probe that is dropped, or
//!   whose outcome is [`Outcome::Ignored`], frees its slot: the breaker cannot get stuck
//!   half-open. Results from before a transition are discarded.
//! * Rejection is immediate: no lock, no allocation, no await, and on the default clock
//!   no precise clock read.
//!
//! Outcomes are three-valued ([`Outcome`]); [`GrpcClassifier`] maps each gRPC code.
//! Time comes from a [`Clock`]; tests drive breakers with [`FakeClock`].
//!
//! # Features
//!
//! * `grpc` (default): tonic integration — [`GrpcClassifier`], `Status` conversion,
//!   fallbacks and the executors generated clients call.
//! * `discovery`: `Pool`, the balancing transport with per-endpoint ejection, and
//!   `static:` targets; `dns`, `consul`, `etcd`: those targets, and registration for the
//!   last two (see the `discover` and `pool` modules).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod classify;
mod clock;
pub mod observe;
pub mod registry;
mod sync;

#[cfg(feature = "grpc")]
pub mod bulkhead;
#[cfg(feature = "grpc")]
pub mod call;
#[cfg(feature = "grpc")]
pub mod client;
#[cfg(feature = "grpc")]
pub mod config;
#[cfg(feature = "grpc")]
pub mod deadline;
#[cfg(feature = "discovery")]
pub mod discover;
#[cfg(feature = "grpc")]
mod fallback;
#[cfg(feature = "grpc")]
pub mod hedge;
#[cfg(feature = "discovery")]
pub mod pool;
#[cfg(feature = "grpc")]
pub mod retry;
#[cfg(feature = "grpc")]
pub mod spares;
#[cfg(feature = "grpc")]
pub mod spec;
#[cfg(feature = "grpc")]
mod status;

pub use breaker::{
    BreakerOpen, CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerConfig, CircuitBreakerError,
    CircuitBreakerState, ConfigError, Environment, Mode, OpenBackoff, OwnedPermit, Permit,
    SlidingWindow, TransitionReason,
};
#[cfg(feature = "grpc")]
pub use call::ResilientStreaming;
pub use classify::{Classifier, ErrorIsFailure, Outcome};
#[cfg(feature = "grpc")]
pub use classify::{GrpcClassifier, is_client_timeout, is_local_reset};
pub use clock::{Clock, FakeClock, SystemClock};
#[cfg(feature = "discovery")]
pub use discover::{DiscoveryError, Target};
#[cfg(feature = "grpc")]
pub use fallback::{FallbackCause, NoFallback};
#[cfg(feature = "http-endpoint")]
pub use observe::http::{MetricsServer, MetricsServerBuilder, MetricsServerError};
#[cfg(feature = "metrics")]
pub use observe::metrics::Metrics;
#[cfg(feature = "metrics")]
pub use observe::{dashboard, metrics};
#[cfg(feature = "discovery")]
pub use pool::{Balance, Ejection, Pool, PoolBuilder};
#[cfg(feature = "grpc")]
pub use status::{CIRCUIT_OPEN_METADATA, RETRY_AFTER_METADATA, is_circuit_open, open_status};
