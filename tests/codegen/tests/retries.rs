//! Retries, hedging, the retry budget, pushback, bulkheads and a pool's ejection of a
//! replica that lets deadlines pass, against real tonic servers on 127.0.0.1 that count the
//! attempts they receive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codegen_tests::test::flaky::v1::flaky_service_client::FlakyServiceClient;
use codegen_tests::test::flaky::v1::flaky_service_resilient::FlakyServiceResilientClient;
use codegen_tests::test::flaky::v1::flaky_service_server::{FlakyService, FlakyServiceServer};
use codegen_tests::test::flaky::v1::hedged_service_client::HedgedServiceClient;
use codegen_tests::test::flaky::v1::hedged_service_resilient::HedgedServiceResilientClient;
use codegen_tests::test::flaky::v1::hedged_service_server::{HedgedService, HedgedServiceServer};
use codegen_tests::test::flaky::v1::{FlakyReply, FlakyRequest};
use resilient_runtime::bulkhead::is_bulkhead_rejection;
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::pool::EndpointState;
use resilient_runtime::spec::HedgeSpec;
use resilient_runtime::{Balance, Ejection, Environment, Pool, is_circuit_open};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

#[derive(Default)]
struct Flaky {
    by_key: Mutex<HashMap<String, u32>>,
    total: AtomicU32,
    /// Added to every answer's delay: a slow replica.
    slow_ms: AtomicU32,
    /// Answers that got to the end (a cancelled call's handler is dropped before).
    finished: AtomicU32,
}

impl Flaky {
    async fn answer(&self, req: FlakyRequest) -> Result<Response<FlakyReply>, Status> {
        self.total.fetch_add(1, Ordering::SeqCst);
        let hits = {
            let mut by_key = self.by_key.lock().unwrap();
            let n = by_key.entry(req.key.clone()).or_default();
            *n += 1;
            *n
        };
        let delay = req.delay_ms + self.slow_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay.into())).await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        if req.always_fail || hits <= req.fail_times {
            let code = if req.code == 0 {
                Code::Unavailable
            } else {
                Code::from_i32(req.code)
            };
            let mut status = Status::new(code, format!("failing call {hits}"));
            if req.send_pushback {
                status.metadata_mut().insert(
                    "grpc-retry-pushback-ms",
                    MetadataValue::try_from(req.pushback_ms.to_string()).unwrap(),
                );
            }
            return Err(status);
        }
        Ok(Response::new(FlakyReply { hits }))
    }
}

/// The server's handle on the shared state.
struct Svc(Arc<Flaky>);

#[tonic::async_trait]
impl FlakyService for Svc {
    async fn lookup(&self, r: Request<FlakyRequest>) -> Result<Response<FlakyReply>, Status> {
        self.0.answer(r.into_inner()).await
    }
    async fn create(&self, r: Request<FlakyRequest>) -> Result<Response<FlakyReply>, Status> {
        self.0.answer(r.into_inner()).await
    }
}

#[tonic::async_trait]
impl HedgedService for Svc {
    async fn read(&self, r: Request<FlakyRequest>) -> Result<Response<FlakyReply>, Status> {
        self.0.answer(r.into_inner()).await
    }
    async fn write(&self, r: Request<FlakyRequest>) -> Result<Response<FlakyReply>, Status> {
        self.0.answer(r.into_inner()).await
    }
}

async fn server() -> (Arc<Flaky>, Channel) {
    let (flaky, addr) = bare_server().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (flaky, channel)
}

/// A client whose policies come from `config` (TOML keyed by proto path).
fn client(channel: Channel, config: &str) -> FlakyServiceResilientClient {
    let config = RuntimeConfig::from_toml_str("test.toml", config).unwrap();
    let spec = FlakyServiceResilientClient::<Channel>::spec();
    let runtime = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
    FlakyServiceResilientClient::with_runtime(FlakyServiceClient::new(channel), runtime)
}

fn req(key: &str, f: impl FnOnce(&mut FlakyRequest)) -> FlakyRequest {
    let mut r = FlakyRequest {
        key: key.into(),
        ..Default::default()
    };
    f(&mut r);
    r
}

const RETRY_FAST: &str = r#"
[".test.flaky.v1.FlakyService"]
failure_threshold = 1000
max_attempts = 3
initial_backoff_ms = 1
max_backoff_ms = 5
"#;

#[tokio::test]
async fn an_idempotent_rpc_is_retried_until_it_succeeds() {
    let (flaky, channel) = server().await;
    let c = client(channel, RETRY_FAST);
    let reply = c
        .lookup(req("a", |r| r.fail_times = 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.hits, 3,
        "two failed attempts, then the third succeeded"
    );
    assert_eq!(flaky.total.load(Ordering::SeqCst), 3);
    assert_eq!(c.runtime().method(0).retry().unwrap().max_attempts, 3);

    // at most max_attempts
    let err = c
        .lookup(req("b", |r| r.always_fail = true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(flaky.total.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_non_idempotent_rpc_is_never_retried_whatever_the_config_says() {
    let (flaky, channel) = server().await;
    let c = client(channel, RETRY_FAST);
    assert!(c.runtime().method(1).retry().is_none());
    let err = c.create(req("w", |r| r.fail_times = 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(flaky.total.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn only_retryable_codes_are_retried() {
    let (flaky, channel) = server().await;
    let c = client(channel, RETRY_FAST);
    let err = c
        .lookup(req("nf", |r| {
            r.fail_times = 1;
            r.code = Code::NotFound as i32;
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        flaky.total.load(Ordering::SeqCst),
        1,
        "NOT_FOUND is not retryable"
    );

    let (flaky2, channel2) = server().await;
    let c2 = client(
        channel2,
        &format!("{RETRY_FAST}retryable_codes = [\"NOT_FOUND\"]\n"),
    );
    let reply = c2
        .lookup(req("nf2", |r| {
            r.fail_times = 1;
            r.code = Code::NotFound as i32;
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.hits, 2, "retried once configured retryable");
    assert_eq!(flaky2.total.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pushback_sets_the_wait_and_a_negative_one_stops_retrying() {
    let (flaky, channel) = server().await;
    let c = client(channel, RETRY_FAST);
    let started = Instant::now();
    let reply = c
        .lookup(req("p", |r| {
            r.fail_times = 1;
            r.send_pushback = true;
            r.pushback_ms = 150;
        }))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert_eq!(reply.hits, 2);
    assert!(
        took >= Duration::from_millis(150),
        "waited the pushback: {took:?}"
    );
    assert!(took < Duration::from_millis(1_000), "{took:?}");

    let before = flaky.total.load(Ordering::SeqCst);
    let err = c
        .lookup(req("neg", |r| {
            r.fail_times = 1;
            r.send_pushback = true;
            r.pushback_ms = -1;
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        flaky.total.load(Ordering::SeqCst) - before,
        1,
        "no retry after negative pushback"
    );
}

#[tokio::test]
async fn an_open_circuit_is_never_retried() {
    let (flaky, channel) = server().await;
    let c = client(
        channel,
        r#"
[".test.flaky.v1.FlakyService"]
failure_threshold = 2
max_attempts = 5
initial_backoff_ms = 1
max_backoff_ms = 2
"#,
    );
    let err = c
        .lookup(req("o", |r| r.always_fail = true))
        .await
        .unwrap_err();
    assert_eq!(
        flaky.total.load(Ordering::SeqCst),
        2,
        "the circuit opened after 2 attempts"
    );
    assert!(is_circuit_open(&err), "{err:?}");
    let err = c
        .lookup(req("o", |r| r.always_fail = true))
        .await
        .unwrap_err();
    assert!(is_circuit_open(&err));
    assert_eq!(flaky.total.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_budget_bounds_the_extra_load_of_retries_during_an_outage() {
    const CALLS: u32 = 400;
    let config_off = r#"
[".test.flaky.v1.FlakyService"]
failure_threshold = 100000
max_attempts = 1
"#;
    let config_on = r#"
[".test.flaky.v1.FlakyService"]
failure_threshold = 100000
max_attempts = 3
initial_backoff_ms = 1
max_backoff_ms = 1
retry_budget_percent = 0.2
retry_budget_min_per_second = 1
"#;
    let mut load = Vec::new();
    for config in [config_off, config_on] {
        let (flaky, channel) = server().await;
        let c = client(channel, config);
        for i in 0..CALLS {
            let _ = c
                .lookup(req(&i.to_string(), |r| r.always_fail = true))
                .await;
        }
        load.push(flaky.total.load(Ordering::SeqCst));
    }
    let ratio = f64::from(load[1]) / f64::from(load[0]);
    println!(
        "dependency load during an outage: {} calls without retries, {} with (ratio {ratio:.3})",
        load[0], load[1]
    );
    assert_eq!(load[0], CALLS);
    assert!(load[1] > CALLS, "some retries were allowed");
    assert!(ratio <= 1.25, "retries added {ratio:.3}x the load");
}

/// Starts a server and returns its state and address.
async fn bare_server() -> (Arc<Flaky>, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flaky = Arc::new(Flaky::default());
    let svc = flaky.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(FlakyServiceServer::new(Svc(svc.clone())))
            .add_service(HedgedServiceServer::new(Svc(svc)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (flaky, addr)
}

#[tokio::test]
async fn over_a_pool_each_retry_goes_to_an_endpoint_the_call_has_not_tried() {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(bare_server().await);
    }
    // Ejection off: every replica stays in rotation although each fails every call.
    let c = pool_client(
        &replicas,
        &format!("{RETRY_FAST}retry_budget_min_per_second = 1000\n"),
    )
    .await;

    const CALLS: usize = 30;
    for i in 0..CALLS {
        let status = c
            .lookup(req(&format!("r{i}"), |r| r.always_fail = true))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    // Three attempts per call, one on each replica: never two on the same one.
    for i in 0..CALLS {
        let key = format!("r{i}");
        let hits: Vec<u32> = replicas
            .iter()
            .map(|(f, _)| f.by_key.lock().unwrap().get(&key).copied().unwrap_or(0))
            .collect();
        assert_eq!(hits, [1, 1, 1], "call {key}: attempts per replica");
    }
}

const HEDGE_30MS: &str = r#"
[".test.flaky.v1.FlakyService"]
failure_threshold = 1000
retry_budget_min_per_second = 1000
# build.rs gives the service retries; hedging replaces them
max_attempts = 1
hedge_max_attempts = 2
hedge_delay_ms = 30
hedge_percentile = 0
"#;

/// A pool over `replicas` with ejection off: every replica stays in rotation, failing or
/// slow.
async fn replica_pool(replicas: &[(Arc<Flaky>, std::net::SocketAddr)]) -> Pool {
    let list: Vec<String> = replicas.iter().map(|(_, a)| a.to_string()).collect();
    Pool::builder(&format!("static:///{}", list.join(",")))
        .ejection(Ejection::disabled())
        .build_resolved()
        .await
        .unwrap()
}

/// A client over a pool of `replicas` (ejection off) with the policies in `config`.
async fn pool_client(
    replicas: &[(Arc<Flaky>, std::net::SocketAddr)],
    config: &str,
) -> FlakyServiceResilientClient<Pool> {
    client_over(replica_pool(replicas).await, config)
}

/// A client over `pool` with the policies in `config`.
fn client_over(pool: Pool, config: &str) -> FlakyServiceResilientClient<Pool> {
    let config = RuntimeConfig::from_toml_str("test.toml", config).unwrap();
    let spec = FlakyServiceResilientClient::<Pool>::spec();
    let runtime = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
    FlakyServiceResilientClient::with_runtime(FlakyServiceClient::new(pool), runtime)
}

#[tokio::test]
async fn a_hedge_goes_to_another_replica_wins_and_cancels_the_slow_attempt() {
    let slow = bare_server().await;
    let fast = bare_server().await;
    slow.0.slow_ms.store(1_000, Ordering::SeqCst);
    let c = pool_client(&[slow.clone(), fast.clone()], HEDGE_30MS).await;
    assert!(c.runtime().method(0).hedge().is_some(), "Lookup is hedged");
    assert!(
        c.runtime().method(1).hedge().is_none(),
        "Create is not idempotent: never hedged"
    );

    const CALLS: u32 = 20;
    let mut worst = Duration::ZERO;
    for i in 0..CALLS {
        let started = Instant::now();
        let reply = c.lookup(req(&format!("h{i}"), |_| {})).await.unwrap();
        assert_eq!(reply.get_ref().hits, 1);
        worst = worst.max(started.elapsed());
    }
    let to_slow = slow.0.total.load(Ordering::SeqCst);
    let to_fast = fast.0.total.load(Ordering::SeqCst);
    println!(
        "hedging: {CALLS} calls, {to_slow} first sent to the 1 s replica, worst call {worst:?}"
    );
    // Every call was answered by the fast replica, the slow one's attempts were hedged.
    assert_eq!(to_fast, CALLS);
    assert!(to_slow > 0, "the balancer never picked the slow replica");
    assert!(
        worst < Duration::from_millis(500),
        "a call waited for the slow replica: {worst:?}"
    );
    // The losers were cancelled: no slow handler ran to its end.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(slow.0.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_attempt_sends_the_hedge_at_once_and_a_fatal_code_ends_the_call() {
    let failing = bare_server().await;
    let fast = bare_server().await;
    // hedge_delay_ms = 10 s: any hedge seen here was sent because an attempt failed.
    let config = HEDGE_30MS.replace("hedge_delay_ms = 30", "hedge_delay_ms = 10000");
    let c = pool_client(&[failing.clone(), fast.clone()], &config).await;
    for i in 0..10 {
        let started = Instant::now();
        // Each replica fails the first attempt it gets for a key: UNAVAILABLE is
        // non-fatal, so the second attempt goes to the other replica at once.
        let reply = c.lookup(req(&format!("u{i}"), |r| r.fail_times = 1)).await;
        let status = reply.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "both attempts failed");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(
        failing.0.total.load(Ordering::SeqCst) + fast.0.total.load(Ordering::SeqCst),
        20,
        "two attempts per call, no more (hedge_max_attempts = 2)"
    );
    // INVALID_ARGUMENT is fatal: one attempt, its answer is the call's.
    let status = c
        .lookup(req("fatal", |r| {
            r.always_fail = true;
            r.code = Code::InvalidArgument as i32;
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        failing.0.total.load(Ordering::SeqCst) + fast.0.total.load(Ordering::SeqCst),
        21
    );
}

#[test]
fn hedging_and_retries_exclude_each_other() {
    let config = RuntimeConfig::from_toml_str(
        "test.toml",
        "[\".test.flaky.v1.FlakyService.Lookup\"]\nmax_attempts = 3\nhedge_max_attempts = 2\n",
    )
    .unwrap();
    let spec = FlakyServiceResilientClient::<Channel>::spec();
    let error = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(".test.flaky.v1.FlakyService.Lookup.hedge_max_attempts"),
        "{error}"
    );
    assert!(error.to_string().contains("exclude each other"), "{error}");
}

#[tokio::test]
async fn a_bulkhead_rejects_a_burst_over_its_limit_at_once() {
    let (flaky, channel) = server().await;
    let c = client(
        channel,
        r#"
[".test.flaky.v1.FlakyService.Lookup"]
max_concurrent = 4
"#,
    );
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = c.lookup(req(&format!("b{i}"), |r| r.delay_ms = 300)).await;
                (r, t.elapsed())
            })
        })
        .collect();
    let mut ok = 0;
    let mut rejected = 0;
    for call in calls {
        let (result, took) = call.await.unwrap();
        match result {
            Ok(_) => ok += 1,
            Err(status) => {
                assert!(is_bulkhead_rejection(&status), "{status:?}");
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    status.message().contains("flaky-service/Lookup"),
                    "{status:?}"
                );
                assert!(
                    took < Duration::from_millis(100),
                    "rejected at once: {took:?}"
                );
                rejected += 1;
            }
        }
    }
    assert_eq!((ok, rejected), (4, 16));
    assert_eq!(
        flaky.total.load(Ordering::SeqCst),
        4,
        "rejected calls never left"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // the breaker saw none of the rejections
    assert_eq!(c.breaker("Lookup").unwrap().consecutive_failures(), 0);
}

#[test]
fn a_build_time_retry_policy_reaches_only_idempotent_rpcs() {
    let spec = FlakyServiceResilientClient::<Channel>::spec();
    let lookup = spec.method("Lookup").unwrap();
    assert!(lookup.idempotent);
    let retry = lookup.policy.retry.expect("Lookup is retried");
    assert_eq!(retry.max_attempts, 2);
    assert_eq!(retry.initial_backoff, Duration::from_millis(1));
    let create = spec.method("Create").unwrap();
    assert!(!create.idempotent);
    assert!(create.policy.retry.is_none(), "Create is never retried");
}

#[test]
fn a_build_time_hedge_policy_reaches_only_idempotent_unary_rpcs() {
    let spec = HedgedServiceResilientClient::<Channel>::spec();
    let read = spec.method("Read").unwrap();
    assert!(read.idempotent);
    // build.rs: hedging with a fixed delay; proto: 30 ms (service), 3 attempts (RPC).
    assert_eq!(
        read.policy.hedge,
        Some(HedgeSpec {
            max_attempts: 3,
            delay: Duration::from_millis(30),
            percentile: None,
        })
    );
    assert!(read.policy.retry.is_none());
    let write = spec.method("Write").unwrap();
    assert!(!write.idempotent);
    assert!(write.policy.hedge.is_none(), "Write is never hedged");
    // The FlakyService retries of build.rs stop at their service.
    let lookup = FlakyServiceResilientClient::<Channel>::spec()
        .method("Lookup")
        .unwrap();
    assert!(lookup.policy.hedge.is_none());
}

#[tokio::test]
async fn a_build_time_hedge_policy_hedges_a_slow_replica_with_no_runtime_config() {
    let slow = bare_server().await;
    let fast = bare_server().await;
    slow.0.slow_ms.store(1_000, Ordering::SeqCst);
    let pool = replica_pool(&[slow.clone(), fast.clone()]).await;
    // Only the retry budget is raised, so that no hedge is refused; every hedging value
    // comes from the build.
    let config = RuntimeConfig::from_toml_str(
        "test.toml",
        "[\".test.flaky.v1.HedgedService\"]\nretry_budget_min_per_second = 1000\n",
    )
    .unwrap();
    let spec = HedgedServiceResilientClient::<Pool>::spec();
    let runtime = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
    let c = HedgedServiceResilientClient::with_runtime(HedgedServiceClient::new(pool), runtime);
    assert_eq!(
        c.runtime().method(0).hedge().map(|h| *h.spec()),
        spec.methods[0].policy.hedge
    );
    assert!(c.runtime().method(1).hedge().is_none());

    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let reply = c.read(req(&format!("r{i}"), |_| {})).await.unwrap();
        assert_eq!(reply.get_ref().hits, 1);
        worst = worst.max(started.elapsed());
    }
    assert!(
        slow.0.total.load(Ordering::SeqCst) > 0,
        "the balancer never picked the slow replica"
    );
    assert!(
        worst < Duration::from_millis(500),
        "a call waited for the slow replica: {worst:?}"
    );
}

/// A request too large to send fails the same way on every attempt: not retried, even
/// with its code (`INTERNAL`) configured retryable, and no replica is blamed.
#[tokio::test]
async fn a_request_too_large_to_send_is_not_retried() {
    let replicas = [bare_server().await, bare_server().await];
    let pool = replica_pool(&replicas).await;
    let config = RuntimeConfig::from_toml_str(
        "test.toml",
        &format!("{RETRY_FAST}retryable_codes = [\"UNAVAILABLE\", \"INTERNAL\"]\n"),
    )
    .unwrap();
    let spec = FlakyServiceResilientClient::<Pool>::spec();
    let runtime = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
    let c =
        FlakyServiceResilientClient::with_runtime(FlakyServiceClient::new(pool.clone()), runtime)
            .max_encoding_message_size(1024);
    let status = c.lookup(req(&"k".repeat(4096), |_| {})).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let sent: u64 = pool.endpoints().iter().map(|e| e.requests).sum();
    assert_eq!(sent, 1, "attempts sent to the pool");
    assert!(pool.endpoints().iter().all(|e| e.failures == 0));
    assert_eq!(c.breaker("Lookup").unwrap().consecutive_failures(), 0);
    let total: u32 = replicas
        .iter()
        .map(|(f, _)| f.total.load(Ordering::SeqCst))
        .sum();
    assert_eq!(total, 0, "no replica saw the request");
}

/// A timeout longer than `grpc-timeout` can carry (an operator's "never") is sent capped
/// at the protocol's largest value; tonic's own `set_timeout` would panic on it.
#[tokio::test]
async fn a_timeout_beyond_what_the_header_can_carry_is_capped() {
    let (flaky, channel) = server().await;
    let c = client(
        channel,
        &format!("{RETRY_FAST}timeout_ms = 18446744073709551615\n"),
    );
    let reply = c
        .lookup(req("never", |r| r.fail_times = 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.hits, 2, "one failure, then a retry that succeeded");
    assert_eq!(flaky.total.load(Ordering::SeqCst), 2);
}

/// What an interceptor finds in a request's extensions.
#[derive(Clone, Debug, PartialEq)]
struct Tenant(&'static str);

/// Every attempt, retry or hedge, carries the caller's request extensions, which
/// interceptors read (auth, tenant, tracing context), as the first attempt does.
#[tokio::test]
async fn every_attempt_carries_the_callers_extensions() {
    let (flaky, channel) = server().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        move |request: Request<()>| {
            let tenant = request.extensions().get::<Tenant>().cloned();
            seen.lock().unwrap().push(tenant);
            Ok(request)
        }
    };
    let tagged = |key: &str, fail_times: u32| {
        let mut request = Request::new(req(key, |r| r.fail_times = fail_times));
        request.extensions_mut().insert(Tenant("acme"));
        request
    };
    let spec = FlakyServiceResilientClient::<Channel>::spec();
    for (config, what) in [
        (RETRY_FAST, "retries"),
        (
            &*HEDGE_30MS.replace("hedge_delay_ms = 30", "hedge_delay_ms = 10000"),
            "hedges",
        ),
    ] {
        seen.lock().unwrap().clear();
        let config = RuntimeConfig::from_toml_str("test.toml", config).unwrap();
        let runtime =
            ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
        let inner = FlakyServiceClient::with_interceptor(channel.clone(), record.clone());
        let c = FlakyServiceResilientClient::with_runtime(inner, runtime);
        let reply = c.lookup(tagged(what, 1)).await.unwrap().into_inner();
        assert_eq!(
            reply.hits, 2,
            "{what}: the first attempt failed, the second answered"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [Some(Tenant("acme")), Some(Tenant("acme"))],
            "{what}"
        );
    }
    assert_eq!(flaky.total.load(Ordering::SeqCst), 4);
}

/// Time spent waiting for a bulkhead slot counts against the call's deadline: a caller's
/// `set_timeout` bounds the whole call, queue included.
#[tokio::test]
async fn a_wait_in_the_bulkhead_counts_against_the_deadline() {
    let (flaky, channel) = server().await;
    let c = client(
        channel,
        r#"
[".test.flaky.v1.FlakyService.Lookup"]
max_concurrent = 1
max_wait_ms = 5000
timeout_ms = 5000
"#,
    );
    // One call holds the only slot for 1 s.
    let holder = tokio::spawn({
        let c = c.clone();
        async move { c.lookup(req("holder", |r| r.delay_ms = 1_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    // 300 ms of deadline, all of it spent in the queue: refused when it runs out, not
    // after max_wait_ms.
    let mut short = Request::new(req("short", |_| {}));
    short.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = c.lookup(short).await.unwrap_err();
    let took = started.elapsed();
    assert!(is_bulkhead_rejection(&status), "{status:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1_500),
        "waited {took:?} for a 300 ms deadline"
    );

    // 900 ms of deadline: about 650 ms in the queue, the rest for a 1 s answer; the call
    // ends at its deadline, not 900 ms after it got the slot.
    let mut long = Request::new(req("long", |r| r.delay_ms = 1_000));
    long.set_timeout(Duration::from_millis(900));
    let started = Instant::now();
    let status = c.lookup(long).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_millis(1_300),
        "ended {took:?} after the start of a 900 ms deadline"
    );
    holder.await.unwrap().unwrap();
    // The caller's budget ran out, not the dependency: nothing counted against it.
    assert_eq!(c.breaker("Lookup").unwrap().consecutive_failures(), 0);
    assert_eq!(flaky.total.load(Ordering::SeqCst), 2, "holder and long");
}

/// A retry that gets only what the first attempt left of the RPC's deadline is not
/// judged on missing it: the first attempt's failure counts, the squeezed retry does not.
#[tokio::test]
async fn a_retry_cut_short_by_the_deadline_is_not_counted_when_it_times_out() {
    let (flaky, channel) = server().await;
    let c = client(
        channel,
        r#"
[".test.flaky.v1.FlakyService"]
failure_threshold = 1000
max_attempts = 3
initial_backoff_ms = 1
max_backoff_ms = 1
timeout_ms = 400
"#,
    );
    // Each attempt answers after 300 ms; the first with UNAVAILABLE. The retry has about
    // 100 ms left of the 400 ms deadline.
    let status = c
        .lookup(req("squeezed", |r| {
            r.fail_times = 1;
            r.delay_ms = 300;
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(flaky.total.load(Ordering::SeqCst), 2);
    assert_eq!(
        c.breaker("Lookup").unwrap().consecutive_failures(),
        1,
        "the UNAVAILABLE only"
    );
}

/// Three replicas taken in turn, the second one hung (it answers after 5 s); the pool
/// ejects after 3 failures in a row (the default). Returns the pool and the calls that
/// timed out out of 15, each with a 150 ms deadline, the RPC's own or the caller's.
async fn calls_past_a_hung_replica(
    config: &str,
    callers_deadline: Option<Duration>,
) -> (Pool, Vec<(Arc<Flaky>, std::net::SocketAddr)>, u32) {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(bare_server().await);
    }
    replicas[1].0.slow_ms.store(5_000, Ordering::SeqCst);
    let list: Vec<String> = replicas.iter().map(|(_, a)| a.to_string()).collect();
    let pool = Pool::builder(&format!("static:///{}", list.join(",")))
        .balance(Balance::RoundRobin)
        .build_resolved()
        .await
        .unwrap();
    let c = client_over(pool.clone(), config);
    let mut timed_out = 0;
    for i in 0..15 {
        let mut request = Request::new(req(&format!("d{i}"), |_| {}));
        if let Some(deadline) = callers_deadline {
            request.set_timeout(deadline);
        }
        let started = Instant::now();
        match c.lookup(request).await {
            Ok(reply) => assert_eq!(reply.get_ref().hits, 1),
            Err(status) => {
                assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "gave up at the deadline"
                );
                timed_out += 1;
            }
        }
    }
    (pool, replicas, timed_out)
}

fn state_of(pool: &Pool, addr: std::net::SocketAddr) -> (EndpointState, u64) {
    let e = pool
        .endpoints()
        .into_iter()
        .find(|e| e.address.to_string() == addr.to_string())
        .expect("listed");
    (e.state, e.failures)
}

#[tokio::test]
async fn a_hung_replica_that_lets_the_deadline_pass_is_ejected_with_or_without_propagation() {
    for propagate in [true, false] {
        let config = format!(
            "[\".test.flaky.v1.FlakyService\"]\nfailure_threshold = 1000\nmax_attempts = 1\n\
             timeout_ms = 150\npropagate_deadline = {propagate}\n"
        );
        let (pool, replicas, timed_out) = calls_past_a_hung_replica(&config, None).await;
        // Every third call goes to the hung replica. Each miss counts once another replica
        // has answered (so not when the very first call is the hung replica's), the third
        // ejects it, and no later call is sent there.
        assert!(
            (3..=4).contains(&timed_out),
            "propagate_deadline = {propagate}: {timed_out} timed out"
        );
        assert_eq!(
            state_of(&pool, replicas[1].1),
            (EndpointState::Ejected, 3),
            "propagate_deadline = {propagate}"
        );
        assert_eq!(replicas[1].0.total.load(Ordering::SeqCst), timed_out);
        for (flaky, addr) in [&replicas[0], &replicas[2]] {
            assert_eq!(state_of(&pool, *addr), (EndpointState::Active, 0));
            assert_eq!(
                flaky.finished.load(Ordering::SeqCst),
                flaky.total.load(Ordering::SeqCst)
            );
        }
    }
}

#[tokio::test]
async fn a_callers_deadline_shorter_than_the_rpcs_never_ejects_a_replica() {
    let config = "[\".test.flaky.v1.FlakyService\"]\nfailure_threshold = 1000\nmax_attempts = 1\ntimeout_ms = 10000\n";
    let (pool, replicas, timed_out) =
        calls_past_a_hung_replica(config, Some(Duration::from_millis(150))).await;
    // Every third call waits out the caller's 150 ms at the hung replica: the caller's
    // budget, not the endpoint's failure.
    assert_eq!(timed_out, 5);
    assert_eq!(state_of(&pool, replicas[1].1), (EndpointState::Active, 0));
}
