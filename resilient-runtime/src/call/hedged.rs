//! The attempts of a hedged unary call: the first attempt, then another each time the
//! hedge delay passes with no answer (up to the policy's attempts, while the breaker
//! admits them and the retry budget allows). The first success wins; the attempts still
//! in flight are dropped, which cancels their HTTP/2 streams and frees their breaker
//! permits without a verdict. A failure with a non-fatal code lets the others go on and
//! sends the next hedge at once; any other failure is the call's answer. One deadline
//! covers every attempt.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::{Deadline, Ended, open_cause, record_status, record_timeout, timeout_cause};
use crate::breaker::OwnedPermit;
use crate::classify::{Outcome, is_client_timeout};
use crate::client::MethodRuntime;
use crate::hedge::Hedging;
use crate::retry::route::AttemptRoute;

/// One attempt in flight.
struct Attempt<CF> {
    response: Pin<Box<CF>>,
    permit: OwnedPermit,
    sent: Instant,
}

/// What woke the call up.
enum Event<T> {
    /// Attempt `i` answered.
    Answered(usize, Result<Response<T>, Status>),
    /// The hedge delay passed.
    Hedge,
    /// The call's deadline passed.
    Deadline,
}

/// Runs a hedged call.
///
/// Not an `async fn`, for the same reason as `attempts`: the future holds the request's
/// parts only.
pub(super) fn hedged<M, T, C, CF>(
    method: &MethodRuntime,
    hedging: &Hedging,
    request: Request<M>,
    queued: Option<Duration>,
    mut call: C,
) -> impl Future<Output = Result<(Response<T>, OwnedPermit), Ended<M>>>
where
    M: Clone,
    C: FnMut(Request<M>) -> CF,
    CF: Future<Output = Result<Response<T>, Status>>,
{
    let (metadata, extensions, message) = request.into_parts();
    async move {
        let breaker = method.breaker();
        let deadline = Deadline::for_call(method, &metadata, queued)?;
        method.retry_budget().deposit();
        let started = tokio::time::Instant::now();
        let deadline_at = crate::clock::later(started, deadline.total);
        let route = AttemptRoute::default();
        let mut send = |permit: OwnedPermit| {
            let mut req =
                Request::from_parts(metadata.clone(), extensions.clone(), message.clone());
            let left = deadline_at.saturating_duration_since(tokio::time::Instant::now());
            super::set_timeout(method, &mut req, left, deadline.set_by_caller, false);
            req.extensions_mut().insert(route.clone());
            Attempt {
                response: Box::pin(call(req)),
                permit,
                sent: Instant::now(),
            }
        };

        let first = match breaker.try_acquire_owned() {
            Ok(permit) => permit,
            Err(open) => return Err(Ended::Open(open_cause(breaker, open), message)),
        };
        let max_attempts = hedging.spec().max_attempts;
        let mut in_flight = vec![send(first)];
        let mut sent = 1u32;
        let mut hedging_on = true;
        let hedge_timer = tokio::time::sleep(hedging.delay());
        let deadline_timer = tokio::time::sleep_until(deadline_at);
        tokio::pin!(hedge_timer, deadline_timer);
        let mut last_failure: Option<(Status, Outcome)> = None;

        loop {
            let event = std::future::poll_fn(|cx| {
                for (i, attempt) in in_flight.iter_mut().enumerate() {
                    if let Poll::Ready(result) = attempt.response.as_mut().poll(cx) {
                        return Poll::Ready(Event::Answered(i, result));
                    }
                }
                if hedging_on && sent < max_attempts && hedge_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Hedge);
                }
                if deadline_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Deadline);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Answered(i, Ok(response)) => {
                    let attempt = in_flight.swap_remove(i);
                    hedging.record(attempt.sent.elapsed());
                    return Ok((response, attempt.permit));
                }
                Event::Answered(i, Err(status)) if !is_client_timeout(&status) => {
                    let attempt = in_flight.swap_remove(i);
                    let outcome =
                        record_status(method, attempt.permit, &status, deadline.set_by_caller);
                    let non_fatal = hedging.non_fatal().contains(status.code())
                        && super::another_attempt_may_differ(&status);
                    if !non_fatal {
                        // A definite answer: the attempts still in flight are cancelled.
                        return Err(Ended::after(status, outcome, Some(message)));
                    }
                    last_failure = Some((status, outcome));
                    if hedging_on && sent < max_attempts {
                        // Send the next hedge now rather than after the delay.
                        hedge_timer.as_mut().reset(tokio::time::Instant::now());
                    } else if in_flight.is_empty() {
                        break;
                    }
                }
                // tonic's own deadline (the grpc-timeout it was given) fired for this one,
                // or the call's: one timeout for the call, carried by the attempt whose
                // deadline fired (the first sent, for the call's), the others ignored.
                event @ (Event::Answered(..) | Event::Deadline) => {
                    let i = match event {
                        Event::Answered(i, _) => i,
                        _ => 0,
                    };
                    if i < in_flight.len() {
                        let timed_out = in_flight.swap_remove(i);
                        record_timeout(method, timed_out.permit, deadline.set_by_caller);
                    }
                    for other in in_flight.drain(..) {
                        other.permit.record(Outcome::Ignored);
                    }
                    let cause = timeout_cause(breaker, deadline.total);
                    return Err(Ended::Timeout(cause, Some(message)));
                }
                Event::Hedge => {
                    let left = deadline_at.saturating_duration_since(tokio::time::Instant::now());
                    // The breaker first: a token is spent only on a hedge that is sent.
                    let permit = if left.is_zero() {
                        None
                    } else {
                        breaker
                            .try_acquire_owned()
                            .ok()
                            .filter(|_| method.retry_budget().try_withdraw())
                    };
                    match permit {
                        Some(permit) => {
                            sent += 1;
                            let delay = hedging.delay();
                            breaker.notify_hedge(sent, delay);
                            in_flight.push(send(permit));
                            hedge_timer
                                .as_mut()
                                .reset(crate::clock::later(tokio::time::Instant::now(), delay));
                        }
                        // The budget is spent or the circuit opened: no more hedges.
                        None => {
                            hedging_on = false;
                            if in_flight.is_empty() {
                                break;
                            }
                        }
                    }
                }
            }
        }
        // Every attempt failed with a non-fatal code and no hedge is left.
        // Its outcome is the one recorded for it (a caller's budget included).
        let (status, outcome) = last_failure.unwrap_or_else(|| {
            let status = Status::unavailable("no attempt was made");
            let outcome = method.classifier().classify_status(&status);
            (status, outcome)
        });
        Err(Ended::after(status, outcome, Some(message)))
    }
}
