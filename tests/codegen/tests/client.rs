//! The generated clients against a real tonic server on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use codegen_tests::test::echo::v1::echo_service_client::EchoServiceClient;
use codegen_tests::test::echo::v1::echo_service_resilient::{
    EchoServiceFallback, EchoServiceResilientClient,
};
use codegen_tests::test::echo::v1::{EchoReply, EchoRequest};
use common::{req, start};
use resilient_runtime::{CircuitBreakerState, FallbackCause, ResilientStreaming, is_circuit_open};
use tonic::{Code, Response, Status};

const UNAVAILABLE: i32 = Code::Unavailable as i32;
const NOT_FOUND: i32 = Code::NotFound as i32;

/// Serves cached answers, and remembers why it was asked.
#[derive(Default)]
struct Cached {
    causes: std::sync::Mutex<Vec<String>>,
    served: AtomicU32,
}

/// The fallback a client holds: a handle on the shared cache.
#[derive(Clone)]
struct Cache(Arc<Cached>);

impl EchoServiceFallback for Cache {
    async fn echo(
        &self,
        request: EchoRequest,
        cause: FallbackCause,
    ) -> Result<Response<EchoReply>, Status> {
        self.0.served.fetch_add(1, Ordering::SeqCst);
        self.0
            .causes
            .lock()
            .unwrap()
            .push(cause.as_str().to_string());
        Ok(Response::new(EchoReply {
            message: format!("cached {}", request.message),
            index: 0,
        }))
    }

    async fn expand(
        &self,
        request: EchoRequest,
        cause: FallbackCause,
    ) -> Result<Response<ResilientStreaming<EchoReply>>, Status> {
        self.0
            .causes
            .lock()
            .unwrap()
            .push(cause.as_str().to_string());
        Ok(Response::new(ResilientStreaming::from_iter([EchoReply {
            message: format!("cached {}", request.message),
            index: 0,
        }])))
    }
}

async fn client(url: String) -> EchoServiceResilientClient {
    EchoServiceResilientClient::connect(url).await.unwrap()
}

fn with(message: &str, f: impl FnOnce(&mut EchoRequest)) -> EchoRequest {
    let mut r = req(message);
    f(&mut r);
    r
}

#[tokio::test]
async fn answers_like_tonic_when_all_is_well() {
    let server = start().await;
    let c = client(server.url()).await;
    let reply = c.echo(req("hi")).await.unwrap().into_inner();
    assert_eq!(reply.message, "hi");
    assert_eq!(server.hits.echo(), 1);
    assert_eq!(
        c.breaker("Echo").unwrap().state(),
        CircuitBreakerState::Closed
    );
}

/// Like tonic's clients, the generated one is `Debug`, so a struct holding it can derive
/// `Debug`; its fallback need not be, and shows as its type name.
#[tokio::test]
async fn is_debug_like_tonic_s_client_whatever_its_fallback() {
    #[derive(Debug)]
    struct Deps {
        echo: EchoServiceResilientClient<tonic::transport::Channel, Cache>,
    }
    let server = start().await;
    let deps = Deps {
        echo: client(server.url())
            .await
            .with_fallback(Cache(Arc::default())),
    };
    deps.echo.echo(req("hi")).await.unwrap();
    let text = format!("{deps:?}");
    assert!(
        text.starts_with("Deps { echo: EchoServiceResilientClient { inner: EchoServiceClient {"),
        "{text}"
    );
    assert!(text.contains("fallback: \"client::Cache\""), "{text}");
    // the breakers, by name and state, and each RPC's effective policy
    for rpc in ["Echo", "Collect", "Expand", "Chat"] {
        assert!(
            text.contains(&format!(
                "MethodRuntime {{ rpc: \"{rpc}\", breaker: CircuitBreaker {{ name: \"echo-service/{rpc}\", state: Closed"
            )),
            "{text}"
        );
    }
    assert!(text.contains("timeout: 300ms"), "{text}");
}

/// tonic's message-size settings exist on the generated client too, and reach every call,
/// also one made after calls left copies of the unconfigured tonic client behind.
#[tokio::test]
async fn message_size_limits_apply_like_tonic_s() {
    let server = start().await;
    let big = "x".repeat(4096);
    let c = client(server.url()).await;
    c.echo(req(&big)).await.expect("no limit yet");
    let c = c.max_decoding_message_size(1024);
    let status = c
        .echo(req(&big))
        .await
        .expect_err("the reply is over 1 KiB");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(
        server.hits.echo(),
        2,
        "the request went out; its reply was refused"
    );
    c.echo(req("small")).await.expect("under the limit");

    // tonic fails an oversized request by resetting its stream: the same status from
    // its own client and from the generated one, and the server's handler never runs.
    // It is the caller's mistake, not the dependency's: more of them than the failure
    // threshold (3) leave the circuit closed, and the fallback is not asked.
    let cached = Arc::new(Cached::default());
    let c = client(server.url())
        .await
        .with_fallback(Cache(cached.clone()))
        .max_encoding_message_size(1024);
    let mut status = Status::ok("");
    for _ in 0..5 {
        status = c
            .echo(req(&big))
            .await
            .expect_err("the request is over 1 KiB");
        assert!(resilient_runtime::is_local_reset(&status), "{status:?}");
    }
    let breaker = c.breaker("Echo").unwrap();
    assert_eq!(breaker.state(), CircuitBreakerState::Closed);
    assert_eq!(breaker.consecutive_failures(), 0);
    assert_eq!(
        cached.served.load(Ordering::SeqCst),
        0,
        "the fallback was asked"
    );
    let mut raw = EchoServiceClient::connect(server.url())
        .await
        .unwrap()
        .max_encoding_message_size(1024);
    let raw_status = raw.echo(req(&big)).await.expect_err("over 1 KiB");
    assert_eq!(
        status.code(),
        raw_status.code(),
        "{status:?} / {raw_status:?}"
    );
    assert_eq!(
        server.hits.echo(),
        3,
        "an oversized request reached the handler"
    );
    c.echo(req("small")).await.expect("under the limit");
}

#[tokio::test]
async fn slow_server_times_out_into_the_fallback() {
    let server = start().await;
    let cached = Arc::new(Cached::default());
    let c = client(server.url())
        .await
        .with_fallback(Cache(cached.clone()));
    let started = Instant::now();
    let reply = c
        .echo(with("slow", |r| r.delay_ms = 2_000))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert_eq!(reply.message, "cached slow");
    assert_eq!(*cached.causes.lock().unwrap(), vec!["timeout"]);
    // the RPC's timeout is 300 ms: it gives up at its deadline, not the server's 2 s
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(1_000), "{took:?}");
}

#[tokio::test]
async fn without_a_fallback_a_timeout_is_deadline_exceeded() {
    let server = start().await;
    let c = client(server.url()).await;
    let err = c
        .echo(with("slow", |r| r.delay_ms = 2_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(c.breaker("Echo").unwrap().consecutive_failures(), 1);
}

#[tokio::test]
async fn circuit_opens_after_the_threshold_and_the_next_call_never_reaches_the_server() {
    let server = start().await;
    let c = client(server.url()).await;
    for _ in 0..3 {
        let err = c
            .echo(with("x", |r| r.fail_with = UNAVAILABLE))
            .await
            .unwrap_err();
        assert!(!is_circuit_open(&err), "the server's own UNAVAILABLE");
    }
    assert_eq!(server.hits.echo(), 3);
    assert_eq!(
        c.breaker("Echo").unwrap().state(),
        CircuitBreakerState::Open
    );

    let started = Instant::now();
    let err = c.echo(req("x")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "an open circuit answers at once"
    );
    assert!(is_circuit_open(&err), "{err:?}");
    assert!(err.message().contains("echo-service/Echo"), "{err:?}");
    assert_eq!(
        server.hits.echo(),
        3,
        "the rejected call never reached the server"
    );

    // other RPCs have their own breakers
    let mut s = c
        .expand(with("x", |r| r.count = 1))
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_some());
}

#[tokio::test]
async fn open_circuit_goes_to_the_fallback_without_calling() {
    let server = start().await;
    let cached = Arc::new(Cached::default());
    let c = client(server.url())
        .await
        .with_fallback(Cache(cached.clone()));
    for _ in 0..3 {
        // failures are not sent to the fallback by default: the caller sees them
        let err = c
            .echo(with("x", |r| r.fail_with = UNAVAILABLE))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    let reply = c.echo(req("y")).await.unwrap().into_inner();
    assert_eq!(reply.message, "cached y");
    assert_eq!(*cached.causes.lock().unwrap(), vec!["open"]);
    assert_eq!(server.hits.echo(), 3);
}

#[tokio::test]
async fn a_loop_on_an_open_circuit_does_not_starve_the_runtime() {
    // One thread: a task that never gives it back would keep every other task waiting.
    let server = start().await;
    let c = client(server.url()).await;
    c.breaker("Echo").unwrap().force_open();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    const CAP: u32 = 200_000;
    let spinner = tokio::spawn({
        let (c, stop) = (c.clone(), stop.clone());
        async move {
            let mut calls = 0;
            while calls < CAP && !stop.load(Ordering::SeqCst) {
                let err = c.echo(req("x")).await.unwrap_err();
                assert!(is_circuit_open(&err));
                calls += 1;
            }
            calls
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    stop.store(true, Ordering::SeqCst);
    let calls = spinner.await.unwrap();
    assert!(
        calls < CAP,
        "the rejecting loop never yielded: the timer task ran only after {calls} calls"
    );
    assert_eq!(server.hits.echo(), 0);
}

#[tokio::test]
async fn not_found_passes_through_and_does_not_count() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Echo").unwrap().clone();
    for _ in 0..2 {
        let _ = c.echo(with("x", |r| r.fail_with = UNAVAILABLE)).await;
    }
    assert_eq!(breaker.consecutive_failures(), 2);
    for _ in 0..5 {
        let err = c
            .echo(with("x", |r| r.fail_with = NOT_FOUND))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    // the server answered: a success, which ends the failure streak
    assert_eq!(breaker.consecutive_failures(), 0);
    assert_eq!(breaker.state(), CircuitBreakerState::Closed);
    assert_eq!(server.hits.echo(), 7);
}

#[tokio::test]
async fn recovers_after_the_open_time() {
    let server = start().await;
    let c = client(server.url()).await;
    for _ in 0..3 {
        let _ = c.echo(with("x", |r| r.fail_with = UNAVAILABLE)).await;
    }
    let breaker = c.breaker("Echo").unwrap();
    assert_eq!(breaker.state(), CircuitBreakerState::Open);
    // open_for_ms is 200 in the proto's service policy
    tokio::time::sleep(Duration::from_millis(260)).await;
    let reply = c.echo(req("back")).await.unwrap().into_inner();
    assert_eq!(reply.message, "back");
    assert_eq!(
        breaker.state(),
        CircuitBreakerState::Closed,
        "success_threshold is 1"
    );
}

#[tokio::test]
async fn server_streaming_records_its_terminal_status() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Expand").unwrap().clone();

    let mut s = c
        .expand(with("s", |r| {
            r.count = 5;
            r.fail_after = 2;
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().index, 0);
    assert_eq!(s.message().await.unwrap().unwrap().index, 1);
    assert_eq!(
        breaker.consecutive_failures(),
        0,
        "nothing recorded mid-stream"
    );
    let err = s.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        breaker.consecutive_failures(),
        1,
        "the mid-stream error is a failure"
    );

    // a complete stream is a success
    let mut s = c
        .expand(with("s", |r| r.count = 3))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(breaker.consecutive_failures(), 0);
}

#[tokio::test]
async fn a_stream_dropped_early_counts_neither_way() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Expand").unwrap().clone();
    for _ in 0..2 {
        let _ = c.expand(with("x", |r| r.fail_with = UNAVAILABLE)).await;
    }
    assert_eq!(breaker.consecutive_failures(), 2);
    let mut s = c
        .expand(with("s", |r| r.count = 10))
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_some());
    drop(s);
    assert_eq!(
        breaker.consecutive_failures(),
        2,
        "not a success, not a failure"
    );
}

#[tokio::test]
async fn a_dropped_stream_frees_the_half_open_slot() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Expand").unwrap().clone();
    for _ in 0..3 {
        let _ = c.expand(with("x", |r| r.fail_with = UNAVAILABLE)).await;
    }
    assert_eq!(breaker.state(), CircuitBreakerState::Open);
    tokio::time::sleep(Duration::from_millis(260)).await;

    let mut probe = c
        .expand(with("probe", |r| r.count = 100))
        .await
        .unwrap()
        .into_inner();
    assert!(probe.message().await.unwrap().is_some());
    assert_eq!(breaker.state(), CircuitBreakerState::HalfOpen);
    assert_eq!(breaker.probes_in_flight(), 1);
    let err = c.expand(req("second")).await.unwrap_err();
    assert!(is_circuit_open(&err), "the only probe slot is taken");

    drop(probe);
    assert_eq!(breaker.probes_in_flight(), 0);
    let mut s = c
        .expand(with("next", |r| r.count = 1))
        .await
        .expect("the slot was freed")
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    assert_eq!(breaker.state(), CircuitBreakerState::Closed);
}

#[tokio::test]
async fn server_streaming_fallback_serves_a_stream() {
    let server = start().await;
    let cached = Arc::new(Cached::default());
    let c = client(server.url())
        .await
        .with_fallback(Cache(cached.clone()));
    let mut s = c
        .expand(with("slow", |r| r.delay_ms = 2_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().message, "cached slow");
    assert!(s.message().await.unwrap().is_none());
    assert_eq!(*cached.causes.lock().unwrap(), vec!["timeout"]);
}

#[tokio::test]
async fn client_streaming_times_out_over_the_whole_call_and_records_failures() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Collect").unwrap().clone();

    let reply = c
        .collect(tokio_stream::iter(vec![req("a"), req("b"), req("c")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.message.as_str(), reply.index), ("c", 3));

    // the server fails after reading two messages
    let failing = vec![
        with("a", |r| r.fail_after = 2),
        with("b", |r| r.fail_after = 2),
        with("c", |r| r.fail_after = 2),
    ];
    let err = c.collect(tokio_stream::iter(failing)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(breaker.consecutive_failures(), 1);

    // slow as a whole: each message is quick to send, the server takes 150 ms per message
    let slow = vec![
        with("a", |r| r.delay_ms = 150),
        with("b", |r| r.delay_ms = 150),
        with("c", |r| r.delay_ms = 150),
    ];
    let started = Instant::now();
    let err = c.collect(tokio_stream::iter(slow)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(breaker.consecutive_failures(), 2);
}

#[tokio::test]
async fn bidi_streams_record_their_terminal_status() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Chat").unwrap().clone();

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    // the call resolves at the response headers, which the server sends after reading
    // the first message
    tx.send(with("one", |r| r.fail_after = 2)).await.unwrap();
    let mut s = c
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().message, "one");
    tx.send(req("two")).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().message, "two");
    tx.send(req("three")).await.unwrap();
    let err = s.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(breaker.consecutive_failures(), 1);
}

#[tokio::test]
async fn clones_share_breakers_and_breakers_are_registered_process_wide() {
    let server = start().await;
    let a = client(server.url()).await;
    let b = a.clone();
    assert!(
        a.breaker("Echo")
            .unwrap()
            .ptr_eq(b.breaker("Echo").unwrap())
    );
    assert!(
        !a.breaker("Echo")
            .unwrap()
            .ptr_eq(a.breaker("Expand").unwrap())
    );
    assert!(a.breaker("NoSuchRpc").is_none());
    let registered = resilient_runtime::registry::find("echo-service", "Echo");
    assert!(
        registered
            .iter()
            .any(|r| r.ptr_eq(a.breaker("Echo").unwrap()))
    );

    // built from tonic's client, as a drop-in
    let raw = EchoServiceClient::connect(server.url()).await.unwrap();
    let c = EchoServiceResilientClient::new(raw);
    assert_eq!(
        c.echo(req("raw")).await.unwrap().into_inner().message,
        "raw"
    );
}

/// A transport that counts its clones: the generated client clones tonic's client, and
/// with it this, only when no idle copy is left for a call.
struct CountingClones {
    channel: tonic::transport::Channel,
    clones: Arc<AtomicU32>,
}

impl Clone for CountingClones {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::Relaxed);
        CountingClones {
            channel: self.channel.clone(),
            clones: Arc::clone(&self.clones),
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for CountingClones {
    type Response =
        <tonic::transport::Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = tonic::transport::Error;
    type Future =
        <tonic::transport::Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.channel.call(request)
    }
}

#[tokio::test]
async fn calls_reuse_copies_of_tonic_s_client_instead_of_cloning_one_each() {
    let server = start().await;
    let clones = Arc::new(AtomicU32::new(0));
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let transport = CountingClones {
        channel,
        clones: Arc::clone(&clones),
    };
    let c = Arc::new(EchoServiceResilientClient::new(EchoServiceClient::new(
        transport,
    )));

    for _ in 0..20 {
        c.echo(req("one at a time")).await.unwrap();
    }
    for _ in 0..5 {
        // a client-streaming call takes its copy from the same spares
        let stream = tokio_stream::iter(vec![req("a"), req("b")]);
        c.collect(stream).await.unwrap();
    }
    assert_eq!(
        clones.load(Ordering::Relaxed),
        1,
        "calls one after another share one copy"
    );

    for _ in 0..5 {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.echo(req("eight at once")).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }
    let made = clones.load(Ordering::Relaxed);
    assert!(
        made <= 8,
        "at most one copy per call in flight, kept for later calls: {made} clones"
    );
    assert_eq!(server.hits.echo(), 60);
}

#[test]
fn build_time_policy_reaches_the_client() {
    use codegen_tests::nova::auth::v1::auth_service_resilient::AuthServiceResilientClient;
    use resilient_runtime::spec::RpcKind;

    let spec = AuthServiceResilientClient::<tonic::transport::Channel>::spec();
    assert_eq!(spec.path, ".nova.auth.v1.AuthService");
    let validate = spec.method("ValidateToken").unwrap();
    assert_eq!(validate.kind, RpcKind::Unary);
    assert!(validate.idempotent, "idempotency_level = NO_SIDE_EFFECTS");
    assert_eq!(validate.policy.failure_threshold, Some(3));
    assert_eq!(validate.policy.success_threshold, Some(3));
    assert_eq!(validate.policy.timeout, Some(Duration::from_secs(2)));

    let echo = EchoServiceResilientClient::<tonic::transport::Channel>::spec();
    for m in echo.methods {
        assert_eq!(m.policy.failure_threshold, Some(3), "{}", m.name);
        assert_eq!(
            m.policy.open_for,
            Some(Duration::from_millis(200)),
            "{}",
            m.name
        );
        assert_eq!(
            m.policy.timeout,
            Some(Duration::from_millis(300)),
            "{}",
            m.name
        );
    }
    let kinds: Vec<RpcKind> = echo.methods.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            RpcKind::Unary,
            RpcKind::ClientStreaming,
            RpcKind::ServerStreaming,
            RpcKind::BidiStreaming
        ]
    );
}

/// `with_interceptor` as on tonic's client: the interceptor sees every request, and a
/// status it returns reaches the caller, classified like a server's.
#[tokio::test]
async fn with_interceptor_wraps_the_transport_like_tonics() {
    let server = start().await;
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let interceptor = {
        let seen = seen.clone();
        move |request: tonic::Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            match request.metadata().get("authorization") {
                Some(_) => Ok(request),
                None => Err(Status::unauthenticated("no token")),
            }
        }
    };
    let client = EchoServiceResilientClient::with_interceptor(channel, interceptor);

    let mut authorized = tonic::Request::new(req("with a token"));
    authorized
        .metadata_mut()
        .insert("authorization", "Bearer t".parse().unwrap());
    let reply = client.echo(authorized).await.unwrap().into_inner();
    assert_eq!(reply.message, "with a token");

    for _ in 0..5 {
        let status = client.echo(req("no token")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "no token");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 6);
    assert_eq!(
        server.hits.echo(),
        1,
        "refused requests never left the client"
    );
    // UNAUTHENTICATED is the caller's problem, not the dependency's.
    let breaker = client.breaker("Echo").unwrap();
    assert_eq!(breaker.state(), CircuitBreakerState::Closed);
    assert_eq!(breaker.consecutive_failures(), 0);
}

/// `trailers()` reads what is left of the stream, as tonic's does; the stream's end, or
/// its error, is then recorded, as reading to the end would.
#[tokio::test]
async fn reading_the_trailers_records_the_streams_end() {
    let server = start().await;
    let c = client(server.url()).await;
    let breaker = c.breaker("Expand").unwrap().clone();

    let mut broken = c
        .expand(with("s", |r| {
            r.count = 5;
            r.fail_after = 2;
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(broken.message().await.unwrap().unwrap().index, 0);
    let status = broken.trailers().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(breaker.consecutive_failures(), 1, "the error is recorded");

    let mut whole = c
        .expand(with("s", |r| r.count = 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.message().await.unwrap().unwrap().index, 0);
    assert!(whole.trailers().await.is_ok());
    assert_eq!(
        breaker.consecutive_failures(),
        0,
        "the clean end is a success"
    );
}

/// Answers slowly, as a fallback that fetches from a cache far away.
struct SlowCache;

impl EchoServiceFallback for SlowCache {
    async fn echo(
        &self,
        request: EchoRequest,
        _cause: FallbackCause,
    ) -> Result<Response<EchoReply>, Status> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Response::new(EchoReply {
            message: format!("cached {}", request.message),
            index: 0,
        }))
    }
}

/// A fallback runs without the call's bulkhead slot: a slow fallback serving an open
/// circuit does not make later calls find the bulkhead full.
#[tokio::test]
async fn a_fallback_runs_without_the_bulkhead_slot() {
    let server = start().await;
    let config = resilient_runtime::config::RuntimeConfig::from_toml_str(
        "test.toml",
        "[\".test.echo.v1.EchoService.Echo\"]\nmax_concurrent = 1\n",
    )
    .unwrap();
    let spec = EchoServiceResilientClient::<tonic::transport::Channel>::spec();
    let runtime = resilient_runtime::client::ServiceRuntime::resolve(
        spec,
        resilient_runtime::Environment::Production,
        Some(&config),
    )
    .unwrap();
    let raw = EchoServiceClient::connect(server.url()).await.unwrap();
    let c = EchoServiceResilientClient::with_runtime(raw, runtime).with_fallback(SlowCache);
    c.breaker("Echo").unwrap().force_open();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.echo(req(&format!("m{i}"))).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = call.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.message, format!("cached m{i}"));
    }
    assert_eq!(server.hits.echo(), 0);
}
