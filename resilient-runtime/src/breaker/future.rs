//! The future of [`CircuitBreaker::call`](super::CircuitBreaker::call): admission, the
//! call and its outcome in one inlinable `poll`.
//!
//! Written by hand rather than as an `async fn` so that a call whose future is ready at
//! once is admitted, run and recorded in a single straight-line poll, without a
//! generator's state machine (whose poll and drop the compiler would not inline), and
//! so that a rejected call never calls the closure at all.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Timeout;

use super::{CallAdmission, CircuitBreakerError, Inner, Permit};
use crate::classify::Classifier;

pin_project! {
    /// A call through a breaker: not started until first polled.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub(crate) struct CallFuture<'a, 'c, C: ?Sized, F, Fut> {
        // Declared first so that a cancelled call drops its future before its permit.
        #[pin]
        run: Run<Fut>,
        // Held only while the call is pending; a ready call keeps it in a local.
        permit: Option<Permit<'a>>,
        // Taken by the first poll.
        f: Option<F>,
        inner: &'a Inner,
        classifier: &'c C,
    }
}

pin_project! {
    /// The call's own future, with the breaker's deadline when `call_timeout` is set.
    /// The untimed variant holds no timer, and none is created for it.
    #[project = RunProj]
    enum Run<Fut> {
        /// Not started, rejected, or a timed call that finished (its timer released).
        Idle,
        /// No `call_timeout`.
        Plain {
            #[pin]
            fut: Fut,
        },
        /// With `call_timeout`.
        Timed {
            #[pin]
            fut: Timed<Fut>,
        },
    }
}

impl<'a, 'c, C: ?Sized, F, Fut> CallFuture<'a, 'c, C, F, Fut> {
    #[inline]
    pub(crate) fn new(inner: &'a Inner, classifier: &'c C, f: F) -> Self {
        Self {
            run: Run::Idle,
            permit: None,
            f: Some(f),
            inner,
            classifier,
        }
    }
}

impl<T, E, C, F, Fut> Future for CallFuture<'_, '_, C, F, Fut>
where
    C: Classifier<T, E> + ?Sized,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, CircuitBreakerError<E>>;

    // Always inlined: at the call site the starting state is known (not started, no
    // permit), so the compiler drops the dead branches, and with the drop glue inlined
    // too a ready call leaves almost nothing in memory. What an untimed call does not
    // need is out of line.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner: &Inner = this.inner;
        let permit = match this.f.take() {
            // The two common cases are decided inline by one load of the breaker's word:
            // a closed circuit with nothing to time runs the call on a path of its own,
            // and an open one rejects it after reading the coarse clock and its
            // deadline. Everything else (timing, timers, transitions) is out of line.
            Some(f) => match inner.admit_call() {
                CallAdmission::Plain(permit) => {
                    this.run.set(Run::Plain { fut: f() });
                    let RunProj::Plain { fut } = this.run.as_mut().project() else {
                        unreachable!("just set")
                    };
                    return match fut.poll(cx) {
                        Poll::Pending => {
                            *this.permit = Some(permit);
                            Poll::Pending
                        }
                        Poll::Ready(result) => {
                            permit.record(this.classifier.classify(&result));
                            Poll::Ready(result.map_err(CircuitBreakerError::Inner))
                        }
                    };
                }
                CallAdmission::Rejected(retry_after_nanos) => {
                    return rejected(inner, retry_after_nanos);
                }
                CallAdmission::Other => {
                    let permit = match inner.acquire_other() {
                        Ok(permit) => permit,
                        Err(retry_after_nanos) => return rejected(inner, retry_after_nanos),
                    };
                    match inner.config.call_timeout {
                        None => this.run.set(Run::Plain { fut: f() }),
                        Some(limit) => start_timed(this.run.as_mut(), limit, f),
                    }
                    permit
                }
            },
            None => match this.permit.take() {
                Some(permit) => permit,
                None => panic!("a `CircuitBreaker::call` future was polled after it completed"),
            },
        };
        let polled = match this.run.as_mut().project() {
            RunProj::Plain { fut } => fut.poll(cx),
            RunProj::Timed { fut } => match fut.timeout().poll(cx) {
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                Poll::Ready(Err(_elapsed)) => {
                    this.run.set(Run::Idle);
                    return timed_out(permit);
                }
                Poll::Pending => Poll::Pending,
            },
            // `f` is taken and a permit held only while the call's future is in `run`.
            RunProj::Idle => unreachable!("a started call holds its future"),
        };
        match polled {
            Poll::Pending => {
                *this.permit = Some(permit);
                Poll::Pending
            }
            Poll::Ready(result) => {
                // A finished untimed future stays until this one is dropped (an `.await`
                // drops it at once): resetting it here would cost a check and a store.
                // A finished timer is released now.
                if matches!(this.run.as_mut().project(), RunProj::Timed { .. }) {
                    this.run.set(Run::Idle);
                }
                permit.record(this.classifier.classify(&result));
                Poll::Ready(result.map_err(CircuitBreakerError::Inner))
            }
        }
    }
}

/// Starts the call under the breaker's deadline. Out of line: it reads the time and
/// sets up a timer, code that every inlined untimed call would otherwise carry.
#[inline(never)]
fn start_timed<F, Fut>(mut run: Pin<&mut Run<Fut>>, limit: Duration, f: F)
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    run.set(Run::Timed {
        fut: Timed {
            timeout: ManuallyDrop::new(tokio::time::timeout(limit, f())),
        },
    });
}

/// A call under the breaker's deadline, with its drop out of line.
///
/// The timer's drop (deregistering it, releasing the runtime handle) is large; left in
/// [`Run`]'s drop glue, it stops the compiler from inlining the drop of every
/// [`CallFuture`], timed or not, and then the untimed future cannot stay in registers.
struct Timed<Fut> {
    timeout: ManuallyDrop<Timeout<Fut>>,
}

impl<Fut> Timed<Fut> {
    #[inline]
    fn timeout(self: Pin<&mut Self>) -> Pin<&mut Timeout<Fut>> {
        // SAFETY: structural pinning. `timeout` is never moved out of a pinned `Timed`:
        // it is only reached through this projection, and dropped in place by `Drop`.
        // `Timed` is `Unpin` only when `Timeout<Fut>` is.
        unsafe { self.map_unchecked_mut(|t| &mut *t.timeout) }
    }
}

impl<Fut> Drop for Timed<Fut> {
    #[inline(never)]
    fn drop(&mut self) {
        // SAFETY: dropped once, here, in place, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.timeout) }
    }
}

#[cold]
#[inline(never)]
fn timed_out<T, E>(permit: Permit<'_>) -> Poll<Result<T, CircuitBreakerError<E>>> {
    let inner = permit.inner;
    permit.timed_out();
    if let Some(limit) = inner.config.call_timeout {
        inner.remember_timeout(limit);
    }
    Poll::Ready(Err(CircuitBreakerError::Timeout))
}

#[inline]
fn rejected<T, E>(
    inner: &Inner,
    retry_after_nanos: u64,
) -> Poll<Result<T, CircuitBreakerError<E>>> {
    inner.remember_open(retry_after_nanos);
    Poll::Ready(Err(CircuitBreakerError::Open))
}
