//! The executors generated clients call, one per RPC kind.
//!
//! | kind | deadline covers | retried | outcome recorded |
//! |---|---|---|---|
//! | unary | the whole call | yes, when idempotent | its status |
//! | client streaming | the whole call | no (the stream is consumed) | its status |
//! | server streaming | the response headers | yes, until headers arrive | the stream's terminal status, when it ends |
//! | bidi streaming | the response headers | no | the stream's terminal status, when it ends |
//!
//! A stream dropped before its end records nothing.
//!
//! **Deadlines.** A call's deadline is the smallest of the RPC's timeout, the caller's own
//! (`Request::set_timeout`) and the deadline inherited from the request being served
//! ([`crate::deadline::DeadlinePropagationLayer`], minus its margin). One deadline spans
//! all attempts; each attempt gets the smaller of its own timeout and what is left.
//! Unary and client-streaming calls send it to the server as `grpc-timeout`. When the
//! deadline that passed was the caller's rather than the RPC's own, the attempt's outcome
//! is *ignored*: the caller ran out of time; the dependency did not fail. So is a retry's
//! that got only what earlier attempts left of the deadline.
//!
//! Every attempt carries the caller's metadata and request extensions.
//!
//! **Retries** (idempotent RPCs with a retry policy): a failed attempt whose code is
//! retryable is retried after a backoff with full jitter (or the server's
//! `grpc-retry-pushback-ms`; a negative pushback stops retrying), while the service's
//! retry budget allows and time is left. An open circuit is never retried, nor a request
//! too large to send ([`is_local_reset`](crate::is_local_reset)). Over a
//! `Pool`, a retry goes to an endpoint the call has not tried while
//! one is in rotation.
//!
//! **Hedging** (idempotent unary RPCs with a hedge policy, instead of retries): when the
//! first attempt has not answered after the hedge delay (a percentile of recent
//! latencies), another is sent, to an endpoint not tried yet over a `Pool`; the first
//! success wins and the others are cancelled. Hedges draw on the retry budget.
//!
//! **Bulkheads**: a call over the RPC's concurrency limit waits up to its `max_wait`,
//! then fails at once with `RESOURCE_EXHAUSTED` naming the bulkhead. The wait counts
//! against the call's deadline and never outlasts it. The slot is given back before a
//! fallback runs.
//!
//! **Fallbacks**: when the call is rejected by an open circuit, times out, or fails, and
//! the policy sends that cause to the fallback (`FallbackMode`), the fallback's answer is
//! returned instead of the error. Unary and server-streaming fallbacks receive the
//! request message; the executor keeps a copy only when a retry, a timeout or a failure
//! could need it.

mod hedged;
mod streaming;

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

pub use streaming::ResilientStreaming;

use crate::breaker::{BreakerOpen, CircuitBreaker, OwnedPermit};
use crate::bulkhead::BulkheadPermit;
use crate::classify::{Outcome, is_client_timeout};
use crate::client::MethodRuntime;
use crate::deadline::{AttemptBudget, request_timeout};
use crate::fallback::FallbackCause;
use crate::retry::route::AttemptRoute;
use crate::retry::{Pushback, backoff, pushback};
use crate::spec::FallbackMode;

fn fallback_mode(method: &MethodRuntime, fallback_enabled: bool) -> FallbackMode {
    if fallback_enabled {
        method.fallback()
    } else {
        FallbackMode::OFF
    }
}

/// A call's deadline, and whether it is the caller's rather than the RPC's own.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    total: Duration,
    set_by_caller: bool,
}

impl Deadline {
    fn of(method: &MethodRuntime, metadata: &MetadataMap) -> Deadline {
        let mut d = Deadline {
            total: method.timeout(),
            set_by_caller: false,
        };
        for caller in [request_timeout(metadata), crate::deadline::remaining()]
            .into_iter()
            .flatten()
        {
            if caller < d.total {
                d = Deadline {
                    total: caller,
                    set_by_caller: true,
                };
            }
        }
        d
    }

    /// The deadline of a call about to start, or how it ends when the caller's deadline
    /// has already passed. `queued`: what was left of it after a wait in the bulkhead.
    fn for_call<M>(
        method: &MethodRuntime,
        metadata: &MetadataMap,
        queued: Option<Duration>,
    ) -> Result<Deadline, Ended<M>> {
        let mut deadline = Deadline::of(method, metadata);
        if let Some(left) = queued {
            // A full bulkhead is most often the dependency's slowness: a deadline cut by
            // the wait is still the dependency's to miss.
            deadline.total = deadline.total.min(left);
        }
        if deadline.total.is_zero() {
            return Err(Ended::Other(Status::deadline_exceeded(
                "the caller's deadline passed before the call could be made",
            )));
        }
        Ok(deadline)
    }
}

/// The value for one attempt: a copy while a later attempt (or a fallback, `keep`) may
/// still need it, else the value itself.
fn for_attempt<T: Clone>(slot: &mut Option<T>, keep: bool) -> T {
    if keep {
        slot.clone().expect("kept")
    } else {
        slot.take().expect("kept")
    }
}

fn open_cause(breaker: &CircuitBreaker, open: BreakerOpen) -> FallbackCause {
    breaker.remember_open(open.retry_after());
    FallbackCause::Open {
        breaker: breaker.name_arc(),
        retry_after: open.retry_after(),
    }
}

fn timeout_cause(breaker: &CircuitBreaker, deadline: Duration) -> FallbackCause {
    FallbackCause::Timeout {
        breaker: breaker.name_arc(),
        deadline,
    }
}

/// A slot in the RPC's bulkhead (`None` when it has none), and, when the call had to
/// wait for it, what was left of its deadline: the wait counts against the deadline.
struct Slot {
    permit: Option<BulkheadPermit>,
    left: Option<Duration>,
}

async fn enter_bulkhead(method: &MethodRuntime, metadata: &MetadataMap) -> Result<Slot, Status> {
    let Some(bulkhead) = method.bulkhead() else {
        return Ok(Slot {
            permit: None,
            left: None,
        });
    };
    if let Some(permit) = bulkhead.try_acquire() {
        return Ok(Slot {
            permit: Some(permit),
            left: None,
        });
    }
    let deadline = Deadline::of(method, metadata).total;
    let started = Instant::now();
    match bulkhead.acquire_within(deadline).await {
        Ok(permit) => Ok(Slot {
            permit: Some(permit),
            left: Some(deadline.saturating_sub(started.elapsed())),
        }),
        Err(full) => {
            tokio::task::coop::consume_budget().await;
            method.breaker().notify_bulkhead_rejection(full.name());
            Err(full.into_status())
        }
    }
}

/// How a call that did not succeed ended.
enum Ended<M> {
    /// Rejected by the open circuit (on the first attempt or a retry).
    Open(FallbackCause, M),
    /// Its deadline passed.
    Timeout(FallbackCause, Option<M>),
    /// A failure-classified status.
    Failure(Status, Option<M>),
    /// Any other status: passed to the caller as it is.
    Other(Status),
}

/// Runs the attempts of a call whose request message can be sent again.
///
/// Not an `async fn`: the request is split before the future is made, so that the future
/// holds its parts only, not the request beside them.
fn attempts<M, T, C, CF>(
    method: &MethodRuntime,
    request: Request<M>,
    queued: Option<Duration>,
    keep_message: bool,
    headers_only: bool,
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
        let retry = method.retry();
        if retry.is_some() {
            method.retry_budget().deposit();
        }
        // Without retries the only attempt gets the whole deadline: no clock read needed.
        let started = retry.is_some().then(Instant::now);
        let max_attempts = retry.map_or(1, |r| r.max_attempts);
        let mut message = Some(message);
        let mut metadata = Some(metadata);
        let mut extensions = Some(extensions);
        // Which endpoints the attempts went to, so that a pool sends a retry elsewhere.
        let route = (max_attempts > 1).then(AttemptRoute::default);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let permit = match breaker.try_acquire_owned() {
                Ok(permit) => permit,
                Err(open) => {
                    let cause = open_cause(breaker, open);
                    return Err(Ended::Open(cause, message.take().expect("kept")));
                }
            };
            let left = started.map_or(deadline.total, |s| {
                deadline.total.saturating_sub(s.elapsed())
            });
            let attempt_deadline = retry
                .and_then(|r| r.attempt_timeout)
                .map_or(left, |t| t.min(left));
            // the last attempt, or the deadline's own end, is where the caller's budget binds
            let binding = attempt_deadline == left;
            // An attempt cut short by the deadline is not judged on a deadline it misses:
            // the caller's budget, or what earlier attempts left of the RPC's own.
            let short_budget = binding && (deadline.set_by_caller || attempt > 1);
            let may_retry = attempt < max_attempts;
            let mut req = Request::from_parts(
                for_attempt(&mut metadata, may_retry),
                for_attempt(&mut extensions, may_retry),
                for_attempt(&mut message, may_retry || keep_message),
            );
            set_timeout(
                method,
                &mut req,
                attempt_deadline,
                short_budget,
                headers_only,
            );
            if let Some(route) = &route {
                req.extensions_mut().insert(route.clone());
            }
            let status = match tokio::time::timeout(attempt_deadline, call(req)).await {
                Ok(Ok(response)) => return Ok((response, permit)),
                Ok(Err(status)) if !is_client_timeout(&status) => status,
                _elapsed => {
                    record_timeout(method, permit, short_budget);
                    let code_retryable =
                        retry.is_some_and(|r| r.retryable.contains(Code::DeadlineExceeded));
                    if !binding
                        && may_retry
                        && code_retryable
                        && let Some(wait) = retry_wait(method, attempt, None, started, deadline)
                    {
                        breaker.notify_retry(attempt, wait);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    // the attempt's own timeout, when that is what passed
                    let passed = if binding {
                        deadline.total
                    } else {
                        attempt_deadline
                    };
                    let cause = timeout_cause(breaker, passed);
                    return Err(Ended::Timeout(cause, message.take()));
                }
            };
            let outcome = record_status(method, permit, &status, short_budget);
            let retryable = retry.is_some_and(|r| r.retryable.contains(status.code()))
                && another_attempt_may_differ(&status);
            if may_retry
                && retryable
                && let Some(wait) = retry_wait(method, attempt, Some(&status), started, deadline)
            {
                breaker.notify_retry(attempt, wait);
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(Ended::after(status, outcome, message.take()));
        }
    }
}

impl<M> Ended<M> {
    /// How a call ends on `status`: a failure (which may go to the fallback, with the
    /// request `message`), or any other status, passed on as it is.
    fn after(status: Status, outcome: Outcome, message: Option<M>) -> Ended<M> {
        if outcome == Outcome::Failure {
            Ended::Failure(status, message)
        } else {
            Ended::Other(status)
        }
    }
}

/// Records an attempt that answered `status` and returns its outcome. A
/// `DEADLINE_EXCEEDED` under `callers_budget` (the dependency was given only what was left
/// of the caller's time) says nothing about the dependency: ignored.
fn record_status(
    method: &MethodRuntime,
    permit: OwnedPermit,
    status: &Status,
    callers_budget: bool,
) -> Outcome {
    let outcome = if callers_budget && status.code() == Code::DeadlineExceeded {
        Outcome::Ignored
    } else {
        method.classifier().classify_status(status)
    };
    method.breaker().notify_status(status.code());
    permit.record(outcome);
    outcome
}

/// Records an attempt whose deadline passed: a timeout, or nothing when the deadline was
/// the caller's (`callers_budget`).
fn record_timeout(method: &MethodRuntime, permit: OwnedPermit, callers_budget: bool) {
    method.breaker().notify_status(Code::DeadlineExceeded);
    if callers_budget {
        permit.record(Outcome::Ignored);
    } else {
        permit.timed_out();
    }
}

/// False when another attempt would fail the same way, whatever its code: the circuit is
/// open, or the request could not be sent (too large, or failing to encode).
fn another_attempt_may_differ(status: &Status) -> bool {
    !crate::is_circuit_open(status) && !crate::is_local_reset(status)
}

/// Sends `deadline` as the request's `grpc-timeout`, unless the RPC does not propagate
/// its deadline or the call is a stream (`headers_only`); the RPC's own deadline, the
/// usual case, uses the header value formatted when the client was built. `short_budget`:
/// the deadline is the caller's, or what earlier attempts left, so a transport must not
/// hold it against the endpoint (see [`AttemptBudget`]).
fn set_timeout<M>(
    method: &MethodRuntime,
    request: &mut Request<M>,
    deadline: Duration,
    short_budget: bool,
    headers_only: bool,
) {
    let own = method.timeout_header().filter(|_| !headers_only);
    if let Some(own) = own {
        let value = if deadline == method.timeout() {
            own.clone()
        } else {
            crate::deadline::grpc_timeout_header(deadline)
        };
        crate::deadline::set_grpc_timeout(request, value);
    }
    // For a pool judging its endpoints by the deadlines they miss: noted only where the
    // header does not already say it, so that the common call carries no extension.
    if short_budget {
        request.extensions_mut().insert(AttemptBudget::Short);
    } else if own.is_none() {
        request
            .extensions_mut()
            .insert(AttemptBudget::Own(deadline));
    }
}

/// How long to wait before retrying, or `None` when the call must not be retried:
/// the server pushed back with a negative value, the wait would outlast the deadline, or
/// the retry budget is spent.
fn retry_wait(
    method: &MethodRuntime,
    attempt: u32,
    status: Option<&Status>,
    started: Option<Instant>,
    deadline: Deadline,
) -> Option<Duration> {
    let spec = method.retry()?;
    let started = started?;
    let wait = match status.map(pushback) {
        Some(Pushback::Stop) => return None,
        Some(Pushback::After(d)) => d,
        Some(Pushback::None) | None => backoff(spec, attempt),
    };
    if started.elapsed() + wait >= deadline.total {
        return None;
    }
    method.retry_budget().try_withdraw().then_some(wait)
}

/// Runs a unary call: bulkhead, breaker, deadline, retries, classification, fallback.
pub async fn unary<M, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    request: Request<M>,
    fallback_enabled: bool,
    call: C,
    fallback: FB,
) -> Result<Response<R>, Status>
where
    M: Clone,
    C: FnMut(Request<M>) -> CF,
    CF: Future<Output = Result<Response<R>, Status>>,
    FB: FnOnce(M, FallbackCause) -> FF,
    FF: Future<Output = Result<Response<R>, Status>>,
{
    let mode = fallback_mode(method, fallback_enabled);
    let slot = enter_bulkhead(method, request.metadata()).await?;
    let keep = mode.timeout || mode.failure;
    let ended = match method.hedge() {
        Some(hedging) => hedged::hedged(method, hedging, request, slot.left, call).await,
        None => attempts(method, request, slot.left, keep, false, call).await,
    };
    match ended {
        Ok((response, permit)) => {
            method.breaker().notify_status(Code::Ok);
            permit.record(Outcome::Success);
            Ok(response)
        }
        Err(ended) => {
            drop(slot);
            settle(method.breaker(), mode, ended, fallback).await
        }
    }
}

/// Runs a server-streaming call: the deadline covers the response headers (retries
/// happen only before them); the stream records its terminal status when it ends.
pub async fn server_streaming<M, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    request: Request<M>,
    fallback_enabled: bool,
    call: C,
    fallback: FB,
) -> Result<Response<ResilientStreaming<R>>, Status>
where
    M: Clone,
    C: FnMut(Request<M>) -> CF,
    CF: Future<Output = Result<Response<tonic::Streaming<R>>, Status>>,
    FB: FnOnce(M, FallbackCause) -> FF,
    FF: Future<Output = Result<Response<ResilientStreaming<R>>, Status>>,
{
    let mode = fallback_mode(method, fallback_enabled);
    let slot = enter_bulkhead(method, request.metadata()).await?;
    let keep = mode.timeout || mode.failure;
    match attempts(method, request, slot.left, keep, true, call).await {
        Ok((response, permit)) => {
            let classifier = *method.classifier();
            let slot = slot.permit;
            Ok(response.map(|s| ResilientStreaming::tracked(s, permit, classifier, slot)))
        }
        Err(ended) => {
            drop(slot);
            settle(method.breaker(), mode, ended, fallback).await
        }
    }
}

/// Turns how a call ended into its answer: the fallback's, or the error.
async fn settle<M, T, FB, FF>(
    breaker: &CircuitBreaker,
    mode: FallbackMode,
    ended: Ended<M>,
    fallback: FB,
) -> Result<T, Status>
where
    FB: FnOnce(M, FallbackCause) -> FF,
    FF: Future<Output = Result<T, Status>>,
{
    match ended {
        Ended::Open(cause, message) => {
            // A rejection never waits, so a loop that calls an open circuit would never
            // give the runtime back: spend tokio's cooperative budget, which yields now
            // and then, as a socket read would.
            tokio::task::coop::consume_budget().await;
            serve(breaker, mode.open, cause, |c| fallback(message, c)).await
        }
        Ended::Timeout(cause, Some(message)) if mode.timeout => {
            serve(breaker, true, cause, |c| fallback(message, c)).await
        }
        Ended::Timeout(cause, _) => Err(cause.into_status()),
        Ended::Failure(status, Some(message)) if mode.failure => {
            serve(breaker, true, FallbackCause::Failure(status), |c| {
                fallback(message, c)
            })
            .await
        }
        Ended::Failure(status, _) | Ended::Other(status) => Err(status),
    }
}

/// Runs the single attempt of a call whose request is a stream.
async fn single<S, T, C, CF>(
    method: &MethodRuntime,
    mut request: Request<S>,
    queued: Option<Duration>,
    headers_only: bool,
    call: C,
) -> Result<(Response<T>, OwnedPermit), Ended<()>>
where
    C: FnOnce(Request<S>) -> CF,
    CF: Future<Output = Result<Response<T>, Status>>,
{
    let breaker = method.breaker();
    let deadline = Deadline::for_call(method, request.metadata(), queued)?;
    let permit = match breaker.try_acquire_owned() {
        Ok(permit) => permit,
        Err(open) => return Err(Ended::Open(open_cause(breaker, open), ())),
    };
    set_timeout(
        method,
        &mut request,
        deadline.total,
        deadline.set_by_caller,
        headers_only,
    );
    let status = match tokio::time::timeout(deadline.total, call(request)).await {
        Ok(Ok(response)) => return Ok((response, permit)),
        Ok(Err(status)) if !is_client_timeout(&status) => status,
        _elapsed => {
            record_timeout(method, permit, deadline.set_by_caller);
            return Err(Ended::Timeout(
                timeout_cause(breaker, deadline.total),
                Some(()),
            ));
        }
    };
    let outcome = record_status(method, permit, &status, deadline.set_by_caller);
    Err(Ended::after(status, outcome, Some(())))
}

/// Runs a client-streaming call. The fallback receives only the cause: the request
/// stream has been consumed.
pub async fn client_streaming<S, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    request: Request<S>,
    fallback_enabled: bool,
    call: C,
    fallback: FB,
) -> Result<Response<R>, Status>
where
    C: FnOnce(Request<S>) -> CF,
    CF: Future<Output = Result<Response<R>, Status>>,
    FB: FnOnce(FallbackCause) -> FF,
    FF: Future<Output = Result<Response<R>, Status>>,
{
    let mode = fallback_mode(method, fallback_enabled);
    let slot = enter_bulkhead(method, request.metadata()).await?;
    match single(method, request, slot.left, false, call).await {
        Ok((response, permit)) => {
            method.breaker().notify_status(Code::Ok);
            permit.record(Outcome::Success);
            Ok(response)
        }
        Err(ended) => {
            drop(slot);
            settle(method.breaker(), mode, ended, |(), c| fallback(c)).await
        }
    }
}

/// Runs a bidi-streaming call: like server streaming, without retries; the fallback
/// receives only the cause.
pub async fn bidi_streaming<S, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    request: Request<S>,
    fallback_enabled: bool,
    call: C,
    fallback: FB,
) -> Result<Response<ResilientStreaming<R>>, Status>
where
    C: FnOnce(Request<S>) -> CF,
    CF: Future<Output = Result<Response<tonic::Streaming<R>>, Status>>,
    FB: FnOnce(FallbackCause) -> FF,
    FF: Future<Output = Result<Response<ResilientStreaming<R>>, Status>>,
{
    let mode = fallback_mode(method, fallback_enabled);
    let slot = enter_bulkhead(method, request.metadata()).await?;
    match single(method, request, slot.left, true, call).await {
        Ok((response, permit)) => {
            let classifier = *method.classifier();
            let slot = slot.permit;
            Ok(response.map(|s| ResilientStreaming::tracked(s, permit, classifier, slot)))
        }
        Err(ended) => {
            drop(slot);
            settle(method.breaker(), mode, ended, |(), c| fallback(c)).await
        }
    }
}

/// Serves `cause` from the fallback when `enabled`, else returns its error.
async fn serve<T, FB, FF>(
    breaker: &CircuitBreaker,
    enabled: bool,
    cause: FallbackCause,
    fallback: FB,
) -> Result<T, Status>
where
    FB: FnOnce(FallbackCause) -> FF,
    FF: Future<Output = Result<T, Status>>,
{
    if !enabled {
        return Err(cause.into_status());
    }
    breaker.notify_fallback(cause.as_str());
    fallback(cause).await
}
