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
use crate::discover::Address;

/// The gRPC code UNAVAILABLE.
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
}

impl CallGuard {
    pub(crate) fn new(state: Arc<State>, endpoint: Arc<Endpoint>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        CallGuard { state, endpoint }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The call ended with this gRPC code (`None`: not given).
    pub(crate) fn finish(self, grpc_code: Option<i32>) {
        if grpc_code == Some(UNAVAILABLE) {
            self.failed();
        } else {
            self.succeeded();
        }
    }

    pub(crate) fn succeeded(self) {
        self.state.on_success(&self.endpoint);
    }

    pub(crate) fn failed(self) {
        self.state.on_failure(&self.endpoint);
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
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
}
