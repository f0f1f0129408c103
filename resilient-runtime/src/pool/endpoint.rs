//! One endpoint of a pool: its channel, its counters and its outlier state; the guard that
//! counts a call in flight; the response body that reports how the call ended.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::codegen::Bytes;
use tonic::transport::Channel;

use super::State;
use super::eject::Outlier;
use super::health::{Health, HealthCell};
use crate::deadline::{AttemptBudget, header_timeout};
use crate::discover::Address;

// The gRPC codes the pool reads from an endpoint's answers.
const CANCELLED: i32 = 1;
const DEADLINE_EXCEEDED: i32 = 4;
const UNAVAILABLE: i32 = 14;

pub(crate) struct Endpoint {
    /// Unique in the process, never reused: what a retry remembers of the endpoints its
    /// call tried (an address in memory could be a new endpoint's by then).
    pub(crate) id: u64,
    pub(crate) address: Address,
    pub(crate) channel: Channel,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// When it last answered a call (its response headers came back, whatever their
    /// status), in nanoseconds since the pool's epoch; 0: never.
    pub(crate) last_answer: AtomicU64,
    /// Nanoseconds since the pool's epoch when the current ejection ends; 0: never ejected.
    pub(crate) ejected_until: AtomicU64,
    pub(crate) outlier: Mutex<Outlier>,
    /// What the health checks last said ([`Health::NotChecked`] without them).
    pub(crate) health: Arc<HealthCell>,
    /// The health probe task, stopped with the endpoint.
    pub(crate) probe: Option<tokio::task::AbortHandle>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }
}

impl Endpoint {
    pub(crate) fn new(
        address: Address,
        channel: Channel,
        health: Arc<HealthCell>,
        probe: Option<tokio::task::AbortHandle>,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Endpoint {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            address,
            channel,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
            outlier: Mutex::new(Outlier::default()),
            health,
            probe,
        }
    }

    #[inline]
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Acquire) > now
    }

    pub(crate) fn outlier(&self) -> std::sync::MutexGuard<'_, Outlier> {
        self.outlier.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the pool tells about one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointInfo {
    /// Its address.
    pub address: Address,
    /// Whether it takes calls.
    pub state: EndpointState,
    /// What the health checks last said ([`Health::NotChecked`] without them).
    pub health: Health,
    /// Calls sent to it and not finished (response body included).
    pub in_flight: usize,
    /// Calls sent to it since it joined the pool.
    pub requests: u64,
    /// Of those, calls that failed to reach it or got `UNAVAILABLE`.
    pub failures: u64,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Ejections not yet forgiven.
    pub ejections: u32,
    /// When the current ejection ends.
    pub ejected_until: Option<Instant>,
}

/// Whether an endpoint takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointState {
    /// In rotation.
    Active,
    /// Out of rotation until `ejected_until` (used anyway in panic mode).
    Ejected,
    /// Out of rotation while its health check says it does not serve (used anyway in
    /// panic mode); see [`EndpointInfo::health`].
    Unhealthy,
}

impl EndpointInfo {
    pub(crate) fn of(endpoint: &Endpoint, epoch: Instant, now: u64) -> Self {
        let outlier = endpoint.outlier().clone();
        let until = endpoint.ejected_until.load(Ordering::Acquire);
        let ejected = until > now;
        let health = endpoint.health.get();
        EndpointInfo {
            address: endpoint.address.clone(),
            state: if ejected {
                EndpointState::Ejected
            } else if health.is_out() {
                EndpointState::Unhealthy
            } else {
                EndpointState::Active
            },
            health,
            in_flight: endpoint.in_flight.load(Ordering::Relaxed),
            requests: endpoint.requests.load(Ordering::Relaxed),
            failures: endpoint.failures.load(Ordering::Relaxed),
            consecutive_failures: outlier.consecutive,
            ejections: outlier.ejections,
            ejected_until: ejected.then(|| epoch + Duration::from_nanos(until)),
        }
    }
}

/// One call on one endpoint: counted in flight until dropped; reports its outcome once.
pub(crate) struct CallGuard {
    state: Arc<State>,
    endpoint: Arc<Endpoint>,
    /// Set while the call waits for its answer under a deadline the endpoint is held to.
    awaiting: Option<Awaiting>,
}

/// A call waiting for its answer under a deadline that, missed, counts against the
/// endpoint. Times in nanoseconds since the pool's epoch.
struct Awaiting {
    /// When the call was sent.
    sent: u64,
    /// When the deadline passes.
    deadline: u64,
}

/// How long before its deadline a call dropped by its caller still counts as having
/// reached it: the caller's timer was armed a little before the call reached the pool,
/// and fires on a millisecond tick.
const DEADLINE_SLACK: u64 = 2_000_000;

impl CallGuard {
    /// `deadline`: how long the endpoint has to answer before the call counts against
    /// it (see [`held_deadline`]).
    pub(crate) fn new(
        state: Arc<State>,
        endpoint: Arc<Endpoint>,
        deadline: Option<Duration>,
    ) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        let awaiting = deadline.map(|d| {
            let sent = state.now();
            Awaiting {
                sent,
                deadline: sent.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            }
        });
        CallGuard {
            state,
            endpoint,
            awaiting,
        }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The endpoint answered: the response headers came back.
    pub(crate) fn answered(&mut self) {
        self.awaiting = None;
        self.endpoint
            .last_answer
            .store(self.state.now().max(1), Ordering::Relaxed);
    }

    /// The call ended with this gRPC code (`None`: not given).
    pub(crate) fn finish(self, grpc_code: Option<i32>) {
        if grpc_code == Some(UNAVAILABLE) {
            self.failed();
        } else {
            self.succeeded();
        }
    }

    pub(crate) fn succeeded(mut self) {
        self.awaiting = None;
        self.state.on_success(&self.endpoint);
    }

    pub(crate) fn failed(mut self) {
        self.awaiting = None;
        self.state.on_failure(&self.endpoint);
    }

    /// The transport's own timer ended the call at its deadline, unanswered.
    pub(crate) fn missed_deadline(mut self) {
        if let Some(awaiting) = self.awaiting.take() {
            self.judge(&awaiting);
        }
    }

    /// A call left unanswered past its deadline fails on this endpoint only if another
    /// endpoint of the pool answered a call in the deadline's length before this one was
    /// sent, or since. When none did, the deadline was too short for any of them, or the
    /// whole service is slow: that says nothing against this one.
    fn judge(&self, awaiting: &Awaiting) {
        let since = awaiting
            .sent
            .saturating_sub(awaiting.deadline - awaiting.sent);
        let others_answer = self
            .state
            .snapshot()
            .iter()
            .any(|e| e.id != self.endpoint.id && e.last_answer.load(Ordering::Relaxed) > since);
        if others_answer {
            self.state.on_failure(&self.endpoint);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        // Dropped unanswered: by the caller's timer at the deadline, or cancelled before.
        if let Some(awaiting) = self.awaiting.take()
            && self.state.now().saturating_add(DEADLINE_SLACK) >= awaiting.deadline
        {
            self.judge(&awaiting);
        }
    }
}

/// The deadline an endpoint is held to for a request: the RPC's own, noted by the
/// generated client, or else the `grpc-timeout` header. None when the caller's deadline
/// (or what earlier attempts left of the RPC's) cut it short: missing a deadline that
/// short says nothing about the endpoint.
pub(crate) fn held_deadline<B>(request: &http::Request<B>) -> Option<Duration> {
    match request.extensions().get::<AttemptBudget>() {
        Some(AttemptBudget::Own(deadline)) => Some(*deadline),
        Some(AttemptBudget::Short) => None,
        None => header_timeout(request.headers()),
    }
}

/// The `grpc-status` in a header or trailer map, as it bears on the endpoint: an
/// `UNAVAILABLE` that carries `resilient-circuit-open` comes from a breaker inside the
/// endpoint's service (its own dependency is down), so it says nothing against the
/// endpoint and reads as no status.
pub(crate) fn grpc_code(headers: &http::HeaderMap) -> Option<i32> {
    if headers.contains_key(crate::CIRCUIT_OPEN_METADATA) {
        return None;
    }
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

/// Whether a status says the server gave up at the call's deadline: `DEADLINE_EXCEEDED`,
/// or the `CANCELLED` "Timeout expired" that a tonic server answers when the
/// `grpc-timeout` it was sent passes.
pub(crate) fn missed_at_server(grpc_code: i32, headers: &http::HeaderMap) -> bool {
    grpc_code == DEADLINE_EXCEEDED
        || grpc_code == CANCELLED
            && headers.get("grpc-message").is_some_and(|m| {
                m.as_bytes() == b"Timeout expired" || m.as_bytes() == b"Timeout%20expired"
            })
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call in flight until it ends and reports the
    /// status in its trailers.
    pub(crate) struct TrackedBody {
        #[pin]
        inner: tonic::body::Body,
        call: Option<CallGuard>,
    }
}

impl TrackedBody {
    pub(crate) fn new(inner: tonic::body::Body, call: CallGuard) -> Self {
        TrackedBody {
            inner,
            call: Some(call),
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = this.call.take()
                {
                    call.finish(grpc_code(trailers));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.failed();
                }
            }
            Poll::Ready(None) => {
                // Ended without trailers: says nothing about the endpoint.
                this.call.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;
    use crate::deadline::GRPC_TIMEOUT_NAME;

    #[test]
    fn an_upstream_open_circuit_is_not_the_endpoints_failure() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(grpc_code(&h), Some(UNAVAILABLE));
        h.insert(
            crate::CIRCUIT_OPEN_METADATA,
            http::HeaderValue::from_static("auth-service/ValidateToken"),
        );
        assert_eq!(grpc_code(&h), None);
    }

    #[test]
    fn a_server_that_gave_up_at_the_deadline_did_not_answer() {
        let with = |message: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-message", http::HeaderValue::from_static(message));
            h
        };
        assert!(missed_at_server(4, &http::HeaderMap::new()));
        assert!(missed_at_server(1, &with("Timeout expired")));
        assert!(missed_at_server(1, &with("Timeout%20expired")));
        assert!(!missed_at_server(1, &with("the client went away")));
        assert!(!missed_at_server(1, &http::HeaderMap::new()));
        assert!(!missed_at_server(14, &with("Timeout expired")));
    }

    #[test]
    fn the_deadline_held_is_the_rpcs_own_never_the_callers() {
        let request = |header: Option<&'static str>, budget: Option<AttemptBudget>| {
            let mut r = http::Request::new(());
            if let Some(h) = header {
                r.headers_mut()
                    .insert(GRPC_TIMEOUT_NAME.clone(), http::HeaderValue::from_static(h));
            }
            if let Some(b) = budget {
                r.extensions_mut().insert(b);
            }
            r
        };
        let ms = Duration::from_millis;
        assert_eq!(held_deadline(&request(None, None)), None);
        assert_eq!(held_deadline(&request(Some("150m"), None)), Some(ms(150)));
        assert_eq!(held_deadline(&request(Some("bad"), None)), None);
        assert_eq!(
            held_deadline(&request(None, Some(AttemptBudget::Own(ms(80))))),
            Some(ms(80))
        );
        assert_eq!(
            held_deadline(&request(Some("150m"), Some(AttemptBudget::Short))),
            None
        );
    }
}
