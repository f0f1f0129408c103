//! The response stream of server-streaming and bidi calls: it records the call's
//! terminal status with the breaker when it ends.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tonic::Status;

use crate::breaker::OwnedPermit;
use crate::bulkhead::BulkheadPermit;
use crate::classify::{GrpcClassifier, Outcome, is_client_timeout};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream of response messages, in place of `tonic::Streaming<T>`.
///
/// Read it like tonic's: `while let Some(m) = stream.message().await? { .. }`, or as a
/// [`Stream`]. When it ends, its terminal status is recorded with the RPC's breaker: the
/// end of the stream is a success, an error is classified like any status. A stream
/// dropped before its end records nothing (and frees a half-open probe slot).
///
/// Fallbacks build one from data they have: [`ResilientStreaming::from_iter`] or
/// [`ResilientStreaming::from_stream`].
pub struct ResilientStreaming<T> {
    source: Source<T>,
    permit: Option<OwnedPermit>,
    classifier: GrpcClassifier,
    /// The bulkhead slot of the call, held until the stream ends or is dropped.
    slot: Option<BulkheadPermit>,
}

enum Source<T> {
    Tonic(tonic::Streaming<T>),
    Boxed(BoxStream<T>),
    Items(VecDeque<T>),
}

impl<T> ResilientStreaming<T> {
    pub(crate) fn tracked(
        stream: tonic::Streaming<T>,
        permit: OwnedPermit,
        classifier: GrpcClassifier,
        slot: Option<BulkheadPermit>,
    ) -> Self {
        Self {
            source: Source::Tonic(stream),
            permit: Some(permit),
            classifier,
            slot,
        }
    }

    /// A stream of `items`, then the end (for fallbacks serving cached data).
    #[allow(clippy::should_implement_trait)] // also offered as FromIterator
    pub fn from_iter(items: impl IntoIterator<Item = T>) -> Self {
        Self {
            source: Source::Items(items.into_iter().collect()),
            permit: None,
            classifier: GrpcClassifier::default(),
            slot: None,
        }
    }

    /// Any stream of messages (for fallbacks).
    pub fn from_stream(stream: impl Stream<Item = Result<T, Status>> + Send + 'static) -> Self {
        Self {
            source: Source::Boxed(Box::pin(stream)),
            permit: None,
            classifier: GrpcClassifier::default(),
            slot: None,
        }
    }

    /// The next message, `Ok(None)` at the end, or the stream's error.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        match std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// The trailers (tonic streams only; `None` otherwise). Like tonic's, it reads and
    /// drops the messages left first; the stream's terminal status is then recorded, as
    /// at its end.
    pub async fn trailers(&mut self) -> Result<Option<tonic::metadata::MetadataMap>, Status> {
        let Source::Tonic(s) = &mut self.source else {
            return Ok(None);
        };
        let trailers = s.trailers().await;
        match &trailers {
            Ok(_) => self.finish(None),
            Err(status) => self.finish(Some(status)),
        }
        trailers
    }

    fn finish(&mut self, outcome: Option<&Status>) {
        self.slot = None;
        let Some(permit) = self.permit.take() else {
            return;
        };
        let breaker = permit.breaker();
        match outcome {
            None => {
                breaker.notify_status(tonic::Code::Ok);
                permit.record(Outcome::Success)
            }
            Some(status) if is_client_timeout(status) => {
                breaker.notify_status(tonic::Code::DeadlineExceeded);
                permit.timed_out()
            }
            Some(status) => {
                breaker.notify_status(status.code());
                permit.record(self.classifier.classify_status(status))
            }
        }
    }
}

impl<T> FromIterator<T> for ResilientStreaming<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        ResilientStreaming::from_iter(iter)
    }
}

impl<T> Stream for ResilientStreaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (tonic::Streaming is, the boxed stream is pinned on the heap).
        let this = self.get_mut();
        let item = match &mut this.source {
            Source::Tonic(s) => Pin::new(s).poll_next(cx),
            Source::Boxed(s) => s.as_mut().poll_next(cx),
            Source::Items(items) => Poll::Ready(items.pop_front().map(Ok)),
        };
        match &item {
            Poll::Ready(None) => this.finish(None),
            Poll::Ready(Some(Err(status))) => this.finish(Some(status)),
            _ => {}
        }
        item
    }
}

impl<T> Unpin for ResilientStreaming<T> {}

impl<T> fmt::Debug for ResilientStreaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Tonic(_) => "tonic",
            Source::Boxed(_) => "stream",
            Source::Items(_) => "items",
        };
        f.debug_struct("ResilientStreaming")
            .field("source", &source)
            .field("tracked", &self.permit.is_some())
            .finish()
    }
}
