//! The executors generated clients call, one per RPC kind.
//!
//! | kind | deadline covers | outcome recorded |
//! |---|---|---|
//! | unary | the whole call | its status |
//! | client streaming | the whole call | its status |
//! | server streaming | the response headers | the stream's terminal status, when it ends |
//! | bidi streaming | the response headers | the stream's terminal status, when it ends |
//!
//! A stream dropped before its end records nothing. The deadline is the RPC's timeout,
//! or the caller's own (`Request::set_timeout`) when that is shorter. Unary and
//! client-streaming calls send it to the server as `grpc-timeout`.
//!
//! When the call is rejected by an open circuit, times out, or fails, and the policy
//! sends that cause to the fallback (`FallbackMode`), the fallback's answer is returned
//! instead of the error. Unary and server-streaming fallbacks receive the request
//! message; the executor keeps a copy of it only when a timeout or failure could need it.

mod streaming;

use std::future::Future;
use std::time::Duration;

use tonic::{Request, Response, Status};

pub use streaming::ResilientStreaming;

use crate::breaker::{BreakerOpen, CircuitBreaker, Permit};
use crate::classify::{Outcome, is_client_timeout};
use crate::client::MethodRuntime;
use crate::deadline::request_timeout;
use crate::fallback::FallbackCause;
use crate::spec::FallbackMode;

fn fallback_mode(method: &MethodRuntime, fallback_enabled: bool) -> FallbackMode {
    if fallback_enabled {
        method.fallback()
    } else {
        FallbackMode::OFF
    }
}

fn deadline_of<T>(method: &MethodRuntime, request: &Request<T>) -> Duration {
    match request_timeout(request.metadata()) {
        Some(caller) => caller.min(method.timeout()),
        None => method.timeout(),
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

/// What became of a call that returned a status.
enum Failed {
    Timeout,
    Failure(Status),
    Other(Status),
}

fn record_error(method: &MethodRuntime, permit: Permit<'_>, status: Status) -> Failed {
    if is_client_timeout(&status) {
        permit.timed_out();
        return Failed::Timeout;
    }
    let outcome = method.classifier().classify_status(&status);
    permit.record(outcome);
    if outcome == Outcome::Failure {
        Failed::Failure(status)
    } else {
        Failed::Other(status)
    }
}

/// Runs a unary call: breaker, deadline, classification, fallback.
pub async fn unary<M, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    mut request: Request<M>,
    fallback_enabled: bool,
    call: C,
    fallback: FB,
) -> Result<Response<R>, Status>
where
    M: Clone,
    C: FnOnce(Request<M>) -> CF,
    CF: Future<Output = Result<Response<R>, Status>>,
    FB: FnOnce(M, FallbackCause) -> FF,
    FF: Future<Output = Result<Response<R>, Status>>,
{
    let mode = fallback_mode(method, fallback_enabled);
    let breaker = method.breaker();
    let permit = match breaker.try_acquire() {
        Ok(permit) => permit,
        Err(open) => {
            let cause = open_cause(breaker, open);
            return serve(breaker, mode.open, cause, |c| {
                fallback(request.into_inner(), c)
            })
            .await;
        }
    };
    let deadline = deadline_of(method, &request);
    request.set_timeout(deadline);
    let kept = (mode.timeout || mode.failure).then(|| request.get_ref().clone());
    let failed = match tokio::time::timeout(deadline, call(request)).await {
        Ok(Ok(response)) => {
            permit.success();
            return Ok(response);
        }
        Ok(Err(status)) => record_error(method, permit, status),
        Err(_elapsed) => {
            permit.timed_out();
            Failed::Timeout
        }
    };
    match (failed, kept) {
        (Failed::Timeout, Some(message)) if mode.timeout => {
            let cause = timeout_cause(breaker, deadline);
            serve(breaker, true, cause, |c| fallback(message, c)).await
        }
        (Failed::Timeout, _) => Err(timeout_cause(breaker, deadline).into_status()),
        (Failed::Failure(status), Some(message)) if mode.failure => {
            serve(breaker, true, FallbackCause::Failure(status), |c| {
                fallback(message, c)
            })
            .await
        }
        (Failed::Failure(status) | Failed::Other(status), _) => Err(status),
    }
}

/// Runs a client-streaming call. The fallback receives only the cause: the request
/// stream has been consumed.
pub async fn client_streaming<S, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    mut request: Request<S>,
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
    let breaker = method.breaker();
    let permit = match breaker.try_acquire() {
        Ok(permit) => permit,
        Err(open) => return serve(breaker, mode.open, open_cause(breaker, open), fallback).await,
    };
    let deadline = deadline_of(method, &request);
    request.set_timeout(deadline);
    let failed = match tokio::time::timeout(deadline, call(request)).await {
        Ok(Ok(response)) => {
            permit.success();
            return Ok(response);
        }
        Ok(Err(status)) => record_error(method, permit, status),
        Err(_elapsed) => {
            permit.timed_out();
            Failed::Timeout
        }
    };
    match failed {
        Failed::Timeout => {
            serve(
                breaker,
                mode.timeout,
                timeout_cause(breaker, deadline),
                fallback,
            )
            .await
        }
        Failed::Failure(status) => {
            serve(
                breaker,
                mode.failure,
                FallbackCause::Failure(status),
                fallback,
            )
            .await
        }
        Failed::Other(status) => Err(status),
    }
}

/// Runs a server-streaming call: the deadline covers the response headers; the stream
/// records its terminal status when it ends.
pub async fn server_streaming<M, R, C, CF, FB, FF>(
    method: &MethodRuntime,
    request: Request<M>,
    fallback_enabled: bool,
    call: C,
    fallback: FB,
) -> Result<Response<ResilientStreaming<R>>, Status>
where
    M: Clone,
    C: FnOnce(Request<M>) -> CF,
    CF: Future<Output = Result<Response<tonic::Streaming<R>>, Status>>,
    FB: FnOnce(M, FallbackCause) -> FF,
    FF: Future<Output = Result<Response<ResilientStreaming<R>>, Status>>,
{
    let mode = fallback_mode(method, fallback_enabled);
    let breaker = method.breaker();
    let permit = match breaker.try_acquire_owned() {
        Ok(permit) => permit,
        Err(open) => {
            let cause = open_cause(breaker, open);
            return serve(breaker, mode.open, cause, |c| {
                fallback(request.into_inner(), c)
            })
            .await;
        }
    };
    let deadline = deadline_of(method, &request);
    let kept = (mode.timeout || mode.failure).then(|| request.get_ref().clone());
    let outcome = tokio::time::timeout(deadline, call(request)).await;
    let failed = match outcome {
        Ok(Ok(response)) => {
            let classifier = *method.classifier();
            return Ok(response.map(|s| ResilientStreaming::tracked(s, permit, classifier)));
        }
        Ok(Err(status)) if is_client_timeout(&status) => {
            permit.timed_out();
            Failed::Timeout
        }
        Ok(Err(status)) => {
            let outcome = method.classifier().classify_status(&status);
            permit.record(outcome);
            if outcome == Outcome::Failure {
                Failed::Failure(status)
            } else {
                Failed::Other(status)
            }
        }
        Err(_elapsed) => {
            permit.timed_out();
            Failed::Timeout
        }
    };
    match (failed, kept) {
        (Failed::Timeout, Some(message)) if mode.timeout => {
            let cause = timeout_cause(breaker, deadline);
            serve(breaker, true, cause, |c| fallback(message, c)).await
        }
        (Failed::Timeout, _) => Err(timeout_cause(breaker, deadline).into_status()),
        (Failed::Failure(status), Some(message)) if mode.failure => {
            serve(breaker, true, FallbackCause::Failure(status), |c| {
                fallback(message, c)
            })
            .await
        }
        (Failed::Failure(status) | Failed::Other(status), _) => Err(status),
    }
}

/// Runs a bidi-streaming call: like server streaming; the fallback receives only the
/// cause.
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
    let breaker = method.breaker();
    let permit = match breaker.try_acquire_owned() {
        Ok(permit) => permit,
        Err(open) => return serve(breaker, mode.open, open_cause(breaker, open), fallback).await,
    };
    let deadline = deadline_of(method, &request);
    match tokio::time::timeout(deadline, call(request)).await {
        Ok(Ok(response)) => {
            let classifier = *method.classifier();
            Ok(response.map(|s| ResilientStreaming::tracked(s, permit, classifier)))
        }
        Ok(Err(status)) if is_client_timeout(&status) => {
            permit.timed_out();
            serve(
                breaker,
                mode.timeout,
                timeout_cause(breaker, deadline),
                fallback,
            )
            .await
        }
        Ok(Err(status)) => {
            let outcome = method.classifier().classify_status(&status);
            permit.record(outcome);
            if outcome == Outcome::Failure {
                serve(
                    breaker,
                    mode.failure,
                    FallbackCause::Failure(status),
                    fallback,
                )
                .await
            } else {
                Err(status)
            }
        }
        Err(_elapsed) => {
            permit.timed_out();
            serve(
                breaker,
                mode.timeout,
                timeout_cause(breaker, deadline),
                fallback,
            )
            .await
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
