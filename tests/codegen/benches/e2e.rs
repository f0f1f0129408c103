//! End-to-end cost of the generated resilient client over a real tonic server on
//! 127.0.0.1: the raw tonic client, the generated `EchoServiceResilientClient`, and the
//! same protection built from tower layers (tower's `TimeoutLayer` inside
//! tower-resilience's `CircuitBreakerLayer`), in one run against one server. Results and
//! how to read them: `docs/bench-e2e.md`.
//!
//! Two passes in one process:
//!
//! 1. criterion, `iter_custom`: `N` tasks (1 or 64 calls in flight) share the `iters`
//!    calls of a sample, so the reported time per iteration is the time per call under
//!    that concurrency, the inverse of throughput.
//! 2. a latency pass that times every call for `E2E_LATENCY_SECS` (default 3) per
//!    contender and configuration, in rounds that rotate the contenders (so that a change
//!    in background load hits all of them alike), and prints throughput, p50, p99, the
//!    process CPU time per call (client and server, steadier than throughput when other
//!    processes compete for the cores) and the ratios to raw tonic. `E2E_PROFILE=1` adds
//!    the pieces of the resilient executor, put one by one on the raw client, to see where
//!    its overhead goes. For a profiler, `E2E_ONLY=<text>` keeps the contenders whose name
//!    contains the text, and `E2E_CONFIG=<text>` the configurations whose criterion group
//!    name (`unary/1_in_flight`, ...) contains it. `E2E_ROUNDS` (default 10) sets the
//!    rounds, and `E2E_WORKERS` the runtime's worker threads (default: one per core;
//!    `1` keeps every wake-up on one thread).
//!
//! `E2E_CALLS=<n>` replaces all passes with exactly `n` unary calls, one at a time, of the
//! contender named `E2E_ONLY` (its whole name), for counting instructions under callgrind:
//! the difference between two runs with different `n`, over the difference in `n`, is the
//! instructions per call of client and server, set-up cancelled out. `E2E_IN_FLIGHT=<k>`
//! makes them `k` at a time; under callgrind, calls then wait far longer than the echo
//! policy's 300 ms, so give the generated client a longer deadline through
//! `RESILIENT_CONFIG` (the other contenders' deadlines are fixed at 300 ms).
//!
//! 3. a failover pass (`e2e/failover.rs`): three replicas under load, one killed; the
//!    calls that failed and the time to fail over, for the resilient client over a `Pool`
//!    and raw tonic over `Channel::balance_list`. `E2E_FAILOVER_RUNS` sets the runs
//!    (default 5; 0 skips it).

#[path = "e2e/failover.rs"]
mod failover;

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codegen_tests::test::echo::v1::echo_service_client::EchoServiceClient;
use codegen_tests::test::echo::v1::echo_service_resilient::EchoServiceResilientClient;
use codegen_tests::test::echo::v1::echo_service_server::{EchoService, EchoServiceServer};
use codegen_tests::test::echo::v1::{EchoReply, EchoRequest};
use criterion::{Criterion, Throughput};
use resilient_runtime::Environment;
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use tokio::runtime::Runtime;
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tower::ServiceBuilder;
use tower::timeout::{Timeout, TimeoutLayer};
use tower_resilience::circuitbreaker::{CircuitBreaker, CircuitBreakerLayer, FailureClassifier};

/// The echo proto's policy: 300 ms per RPC, open after 3 consecutive failures for 200 ms.
const TIMEOUT: Duration = Duration::from_millis(300);
const FAILURE_THRESHOLD: usize = 3;
const OPEN_FOR: Duration = Duration::from_millis(200);

/// Messages per `Expand` call.
const STREAM_LEN: u32 = 10;

// ---- the server --------------------------------------------------------------------------

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// Echo answers at once; Expand streams `count` replies.
struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            message: request.into_inner().message,
            index: 0,
        }))
    }

    async fn collect(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        Err(Status::unimplemented("not benchmarked"))
    }

    type ExpandStream = ReplyStream;

    async fn expand(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ExpandStream>, Status> {
        let req = request.into_inner();
        let message = req.message;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            (0..req.count).map(move |index| {
                Ok(EchoReply {
                    message: message.clone(),
                    index,
                })
            }),
        ))))
    }

    type ChatStream = ReplyStream;

    async fn chat(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        Err(Status::unimplemented("not benchmarked"))
    }
}

/// Starts the echo server on 127.0.0.1, on the current runtime; it runs until the
/// process ends.
async fn start_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(EchoServiceServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("echo server");
    });
    addr
}

// ---- the contenders ----------------------------------------------------------------------

/// A gRPC-aware failure classifier for tower-resilience: a transport error, a timeout, or
/// a trailers-only response whose `grpc-status` is not OK. (A status sent in trailers
/// after a body is invisible to a tower layer; our executor sees it.)
#[derive(Clone, Copy)]
struct GrpcStatusClassifier;

impl<B, E> FailureClassifier<http::Response<B>, E> for GrpcStatusClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> bool {
        match result {
            Err(_) => true,
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .is_some_and(|code| code.as_bytes() != b"0"),
        }
    }
}

type TowerStack = CircuitBreaker<Timeout<Channel>, GrpcStatusClassifier>;

/// tonic's `Channel` behind `TimeoutLayer` and `CircuitBreakerLayer`, with the echo
/// proto's policy. One stack per RPC, as the generated client has one breaker per RPC.
fn tower_stack(channel: Channel) -> TowerStack {
    let breaker = CircuitBreakerLayer::builder()
        .name("EchoService")
        .consecutive_failures(FAILURE_THRESHOLD)
        .wait_duration_in_open(OPEN_FOR)
        .permitted_calls_in_half_open(1)
        .failure_classifier_type(GrpcStatusClassifier)
        .build()
        .expect("valid tower-resilience config");
    ServiceBuilder::new()
        .layer(breaker)
        .layer(TimeoutLayer::new(TIMEOUT))
        .service(channel)
}

/// What is measured: one way of calling the same server.
#[derive(Clone)]
enum Contender {
    /// tonic's generated client on a `Channel`.
    Raw(EchoServiceClient<Channel>),
    /// The client resilient-build generated.
    Resilient(EchoServiceResilientClient),
    /// The same, with `propagate_deadline = false`: no `grpc-timeout` sent.
    ResilientLocalDeadline(EchoServiceResilientClient),
    /// tonic's client on a `Channel` behind tower layers.
    Tower(EchoServiceClient<TowerStack>),
    /// Raw tonic with one piece of the resilient executor added (`E2E_PROFILE=1`).
    Piece(EchoServiceClient<Channel>, Piece),
}

/// The pieces of `resilient_runtime::call::unary`, put one by one on the raw client.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Piece {
    /// `Request::set_timeout`: the `grpc-timeout` header, and the server's own timer.
    GrpcTimeout,
    /// `tokio::time::timeout` around the call: a timer entry per call.
    TokioTimeout,
    /// Both, plus a client clone per call, as the generated method does.
    All,
}

impl Contender {
    fn name(&self) -> &'static str {
        match self {
            Contender::Raw(_) => "raw tonic",
            Contender::Resilient(_) => "resilient",
            Contender::ResilientLocalDeadline(_) => "resilient, propagate_deadline off",
            Contender::Tower(_) => "tower layers",
            Contender::Piece(_, Piece::GrpcTimeout) => "raw + grpc-timeout",
            Contender::Piece(_, Piece::TokioTimeout) => "raw + tokio timeout",
            Contender::Piece(_, Piece::All) => "raw + both + clone",
        }
    }

    /// Makes one call of `rpc` and reads all of its answer.
    async fn call(&mut self, rpc: Rpc) -> Result<(), Status> {
        let request = rpc.request();
        match (self, rpc) {
            (Contender::Raw(c), Rpc::Unary) => c.echo(request).await.map(drop),
            (Contender::Raw(c), Rpc::ServerStreaming) => {
                drain(c.expand(request).await?.into_inner()).await
            }
            (Contender::Resilient(c) | Contender::ResilientLocalDeadline(c), Rpc::Unary) => {
                c.echo(request).await.map(drop)
            }
            (
                Contender::Resilient(c) | Contender::ResilientLocalDeadline(c),
                Rpc::ServerStreaming,
            ) => {
                let mut stream = c.expand(request).await?.into_inner();
                let mut n = 0;
                while stream.message().await?.is_some() {
                    n += 1;
                }
                check_len(n)
            }
            (Contender::Tower(c), Rpc::Unary) => c.echo(request).await.map(drop),
            (Contender::Tower(c), Rpc::ServerStreaming) => {
                drain(c.expand(request).await?.into_inner()).await
            }
            (Contender::Piece(c, piece), Rpc::Unary) => {
                let mut request = Request::new(request);
                if *piece != Piece::TokioTimeout {
                    request.set_timeout(TIMEOUT);
                }
                match piece {
                    Piece::GrpcTimeout => c.echo(request).await.map(drop),
                    Piece::TokioTimeout => timed(c.echo(request)).await,
                    Piece::All => {
                        let mut c = c.clone();
                        timed(async move { c.echo(request).await }).await
                    }
                }
            }
            (Contender::Piece(..), Rpc::ServerStreaming) => {
                unreachable!("pieces are measured on unary only")
            }
        }
    }
}

async fn timed<T>(call: impl Future<Output = Result<T, Status>>) -> Result<(), Status> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(result) => result.map(drop),
        Err(_) => Err(Status::deadline_exceeded("timed out")),
    }
}

async fn drain(mut stream: Streaming<EchoReply>) -> Result<(), Status> {
    let mut n = 0;
    while stream.message().await?.is_some() {
        n += 1;
    }
    check_len(n)
}

fn check_len(n: u32) -> Result<(), Status> {
    if n == STREAM_LEN {
        Ok(())
    } else {
        Err(Status::data_loss(format!(
            "{n} messages, expected {STREAM_LEN}"
        )))
    }
}

#[derive(Clone, Copy, Debug)]
enum Rpc {
    Unary,
    ServerStreaming,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Unary => "unary Echo",
            Rpc::ServerStreaming => "server-streaming Expand",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Rpc::Unary => "unary",
            Rpc::ServerStreaming => "server_streaming",
        }
    }

    fn request(self) -> EchoRequest {
        EchoRequest {
            message: "hello".into(),
            count: match self {
                Rpc::Unary => 0,
                Rpc::ServerStreaming => STREAM_LEN,
            },
            ..Default::default()
        }
    }
}

/// Opens its own HTTP/2 connection to `addr`.
async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid url")
        .connect()
        .await
        .expect("connect to the echo server")
}

/// Every contender, each on its own connection to the same server.
struct Contenders {
    unary: Vec<Contender>,
    streaming: Vec<Contender>,
}

impl Contenders {
    async fn connect(addr: SocketAddr, profile: bool) -> Contenders {
        let raw = EchoServiceClient::new(channel(addr).await);
        // One generated client for the process: its breakers are registered
        // process-wide by (service, RPC).
        let resilient =
            EchoServiceResilientClient::new(EchoServiceClient::new(channel(addr).await));
        // The same generated client with deadline propagation turned off by the operator.
        let config = RuntimeConfig::from_toml_str(
            "e2e.toml",
            "[\".test.echo.v1.EchoService\"]\npropagate_deadline = false\n",
        )
        .expect("valid config");
        let runtime = ServiceRuntime::resolve(
            EchoServiceResilientClient::<Channel>::spec(),
            Environment::Production,
            Some(&config),
        )
        .expect("valid runtime");
        let local_deadline = EchoServiceResilientClient::with_runtime(
            EchoServiceClient::new(channel(addr).await),
            runtime,
        );
        let tower_unary = EchoServiceClient::new(tower_stack(channel(addr).await));
        let tower_streaming = EchoServiceClient::new(tower_stack(channel(addr).await));
        let mut unary = vec![
            Contender::Raw(raw.clone()),
            Contender::Resilient(resilient.clone()),
            Contender::ResilientLocalDeadline(local_deadline),
            Contender::Tower(tower_unary),
        ];
        if profile {
            for piece in [Piece::GrpcTimeout, Piece::TokioTimeout, Piece::All] {
                let client = EchoServiceClient::new(channel(addr).await);
                unary.push(Contender::Piece(client, piece));
            }
        }
        Contenders {
            unary,
            streaming: vec![
                Contender::Raw(raw),
                Contender::Resilient(resilient),
                Contender::Tower(tower_streaming),
            ],
        }
    }

    fn of(&self, rpc: Rpc) -> &[Contender] {
        match rpc {
            Rpc::Unary => &self.unary,
            Rpc::ServerStreaming => &self.streaming,
        }
    }
}

// ---- pass 1: criterion -------------------------------------------------------------------

const IN_FLIGHT: [usize; 2] = [1, 64];

/// Calls that failed, in either pass: any is a broken measurement and is reported.
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Makes `iters` calls with `in_flight` tasks sharing them; returns the wall time.
async fn run_calls(contender: &Contender, rpc: Rpc, in_flight: usize, iters: u64) -> Duration {
    let left = Arc::new(AtomicU64::new(iters));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let mut contender = contender.clone();
            let left = Arc::clone(&left);
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    if black_box(contender.call(rpc).await).is_err() {
                        ERRORS.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("bench task");
    }
    started.elapsed()
}

fn group_name(rpc: Rpc, in_flight: usize) -> String {
    format!("{}/{in_flight}_in_flight", rpc.short())
}

fn criterion_pass(c: &mut Criterion, rt: &Runtime, contenders: &Contenders) {
    for rpc in [Rpc::Unary, Rpc::ServerStreaming] {
        for in_flight in IN_FLIGHT {
            let mut group = c.benchmark_group(group_name(rpc, in_flight));
            group.throughput(Throughput::Elements(1));
            // the profiling pieces belong to the latency pass only
            for contender in contenders.of(rpc).iter().take(3) {
                group.bench_function(contender.name(), |b| {
                    b.iter_custom(|iters| rt.block_on(run_calls(contender, rpc, in_flight, iters)))
                });
            }
            group.finish();
        }
    }
}

// ---- pass 2: latency distribution --------------------------------------------------------

/// Latencies and throughput of one contender in one configuration.
#[derive(Default)]
struct Sample {
    /// Every call's latency, in nanoseconds.
    latencies: Vec<u64>,
    /// Wall time of the slices in which the calls were made.
    wall: Duration,
    /// CPU time the process (client and server) used in those slices.
    cpu: Duration,
    errors: u64,
    /// Per slice: calls, wall time, CPU time; for ratios paired by round.
    slices: Vec<(u64, Duration, Duration)>,
}

impl Sample {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// Process CPU time per call, in microseconds: client and server together. Steadier
    /// than throughput when other processes compete for the cores.
    fn cpu_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.latencies.len() as f64
    }

    /// Throughput and CPU per call of slice `i`.
    fn slice(&self, i: usize) -> (f64, f64) {
        let (calls, wall, cpu) = self.slices[i];
        (
            calls as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() / calls as f64,
        )
    }

    /// Nearest-rank percentile, in microseconds; the latencies must be sorted.
    fn percentile(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1] as f64 / 1000.0
    }
}

/// Calls `rpc` from `in_flight` tasks for `slice`, recording each call's latency.
async fn timed_slice(
    contender: &Contender,
    rpc: Rpc,
    in_flight: usize,
    slice: Duration,
    into: &mut Sample,
) {
    let (cpu, calls) = (process_cpu(), into.latencies.len());
    let started = Instant::now();
    let end = started + slice;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let mut contender = contender.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut errors = 0;
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    let result = contender.call(rpc).await;
                    latencies.push(t.elapsed().as_nanos() as u64);
                    errors += u64::from(result.is_err());
                }
                (latencies, errors)
            })
        })
        .collect();
    for task in tasks {
        let (latencies, errors) = task.await.expect("latency task");
        into.latencies.extend(latencies);
        into.errors += errors;
    }
    let (wall, cpu) = (started.elapsed(), process_cpu().saturating_sub(cpu));
    into.wall += wall;
    into.cpu += cpu;
    let calls = (into.latencies.len() - calls) as u64;
    into.slices.push((calls, wall, cpu));
}

/// User plus system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes the struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(
            libc::getrusage(libc::RUSAGE_SELF, &mut usage),
            0,
            "getrusage"
        );
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Rounds per configuration by default (`E2E_ROUNDS`); each runs every contender for
/// `secs / rounds`.
const ROUNDS: u32 = 10;

/// Which contenders and configurations the latency pass runs.
struct Filter {
    /// Contenders whose name contains this.
    contender: String,
    /// Configurations whose group name contains this.
    config: String,
    /// Rounds per configuration: more, shorter rounds pair the contenders more closely
    /// in time.
    rounds: u32,
}

/// Runs the latency pass on what `filter` keeps; ratios are to the first contender kept.
fn latency_pass(rt: &Runtime, contenders: &Contenders, secs: f64, filter: &Filter) {
    let rounds = filter.rounds;
    let slice = Duration::from_secs_f64(secs / f64::from(rounds));
    let warm_up = slice.min(Duration::from_millis(300));
    println!();
    println!(
        "latency pass: {secs} s per contender and configuration, in {rounds} rotating rounds; \
         ratios are to the first row (throughput: higher is better; latency and CPU: lower \
         is better); \"by round\": median [min, max] of the ratios taken round by round"
    );
    for rpc in [Rpc::Unary, Rpc::ServerStreaming] {
        for in_flight in IN_FLIGHT {
            let list: Vec<&Contender> = contenders
                .of(rpc)
                .iter()
                .filter(|c| c.name().contains(&filter.contender))
                .collect();
            if list.is_empty() || !group_name(rpc, in_flight).contains(&filter.config) {
                continue;
            }
            let mut samples: Vec<Sample> = list.iter().map(|_| Sample::default()).collect();
            rt.block_on(async {
                for contender in &list {
                    timed_slice(contender, rpc, in_flight, warm_up, &mut Sample::default()).await;
                }
                for round in 0..rounds as usize {
                    for k in 0..list.len() {
                        let i = (round + k) % list.len();
                        timed_slice(list[i], rpc, in_flight, slice, &mut samples[i]).await;
                    }
                }
            });
            for s in &mut samples {
                s.latencies.sort_unstable();
            }
            print_table(rpc, in_flight, &list, &samples);
        }
    }
}

/// Prints one configuration as a markdown table; ratios are to the first contender.
fn print_table(rpc: Rpc, in_flight: usize, list: &[&Contender], samples: &[Sample]) {
    let base = &samples[0];
    println!();
    println!("{}, {in_flight} in flight", rpc.name());
    println!(
        "| client | calls | calls/s | tput/raw | by round | p50 µs | p50/raw | p99 µs | p99/raw \
         | CPU µs/call | CPU/raw | by round | errors |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (contender, s) in list.iter().zip(samples) {
        let (p50, p99) = (s.percentile(50.0), s.percentile(99.0));
        let (tput_rounds, cpu_rounds): (Vec<f64>, Vec<f64>) = (0..s.slices.len())
            .map(|i| {
                let ((tput, cpu), (base_tput, base_cpu)) = (s.slice(i), base.slice(i));
                (tput / base_tput, cpu / base_cpu)
            })
            .unzip();
        println!(
            "| {} | {} | {:.0} | {:.3} | {} | {:.1} | {:.3} | {:.1} | {:.3} | {:.1} | {:.3} | {} | {} |",
            contender.name(),
            s.latencies.len(),
            s.throughput(),
            s.throughput() / base.throughput(),
            spread(tput_rounds),
            p50,
            p50 / base.percentile(50.0),
            p99,
            p99 / base.percentile(99.0),
            s.cpu_per_call(),
            s.cpu_per_call() / base.cpu_per_call(),
            spread(cpu_rounds),
            s.errors
        );
    }
}

/// `median [min, max]` of some ratios.
fn spread(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    format!("{median:.3} [{:.2}, {:.2}]", ratios[0], ratios[n - 1])
}

// ---- instruction counting --------------------------------------------------------------

/// Makes exactly `calls` unary calls, `in_flight` at a time, with the contender named
/// `E2E_ONLY`.
fn count_pass(rt: &Runtime, contenders: &Contenders, calls: u64, in_flight: usize) {
    let name = std::env::var("E2E_ONLY").unwrap_or_default();
    let list = contenders.of(Rpc::Unary);
    let Some(contender) = list.iter().find(|c| c.name() == name) else {
        let names: Vec<_> = list.iter().map(Contender::name).collect();
        panic!("E2E_CALLS needs E2E_ONLY set to one of {names:?}, got {name:?}");
    };
    // Under an instrumenting tool, code runs slowly the first time it is reached, and the
    // first calls can pass their deadline: warm up first, and count only what follows.
    rt.block_on(run_calls(contender, Rpc::Unary, in_flight, 100));
    ERRORS.store(0, Ordering::Relaxed);
    rt.block_on(run_calls(contender, Rpc::Unary, in_flight, calls));
    let errors = ERRORS.load(Ordering::Relaxed);
    assert_eq!(errors, 0, "{errors} of {calls} calls failed");
    println!("{name}: {calls} unary calls, {in_flight} in flight");
}

// ---- main --------------------------------------------------------------------------------

/// The number in the environment variable `key`, or `None` when it is not set; a value
/// that is not `what` stops the bench with a message that says so.
fn env_value<T: std::str::FromStr>(key: &str, what: &str) -> Option<T> {
    let v = std::env::var(key).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{key}: {what}, got {v:?}")),
    )
}

/// [`env_value`], or `default` when the variable is not set.
fn env_number<T: std::str::FromStr>(key: &str, what: &str, default: T) -> T {
    env_value(key, what).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and criterion then
    // runs each benchmark once as a test. The latency pass follows suit with short slices.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs: f64 = env_number(
        "E2E_LATENCY_SECS",
        "a number of seconds",
        if benching { 3.0 } else { 0.06 },
    );
    let profile = std::env::var_os("E2E_PROFILE").is_some_and(|v| v == "1");

    // `E2E_WORKERS=1` runs clients and server on one worker thread: no wake-ups between
    // cores, so a call's time is the CPU work of both sides and the ratios are steady.
    let workers: usize = env_number(
        "E2E_WORKERS",
        "a number of worker threads",
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let addr = rt.block_on(start_server());
    let contenders = rt.block_on(Contenders::connect(addr, profile));
    if let Some(calls) = env_value("E2E_CALLS", "a number of calls") {
        let in_flight = env_number("E2E_IN_FLIGHT", "a number of calls in flight", 1);
        assert!(
            in_flight > 0,
            "E2E_IN_FLIGHT: a number of calls in flight above 0"
        );
        count_pass(&rt, &contenders, calls, in_flight);
        return;
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    criterion_pass(&mut c, &rt, &contenders);
    c.final_summary();

    if secs > 0.0 {
        let filter = Filter {
            contender: std::env::var("E2E_ONLY").unwrap_or_default(),
            config: std::env::var("E2E_CONFIG").unwrap_or_default(),
            rounds: env_number("E2E_ROUNDS", "a number of rounds above 0", ROUNDS),
        };
        assert!(filter.rounds > 0, "E2E_ROUNDS: a number of rounds above 0");
        latency_pass(&rt, &contenders, secs, &filter);
    }
    let runs: usize = env_number(
        "E2E_FAILOVER_RUNS",
        "a number of runs",
        if benching { 5 } else { 1 },
    );
    if runs > 0 {
        let window = if benching {
            Duration::from_secs(3)
        } else {
            Duration::from_millis(600)
        };
        failover::failover_pass(&rt, runs, window);
    }
    let errors = ERRORS.load(Ordering::Relaxed);
    if errors > 0 {
        println!(
            "\nWARNING: {errors} calls failed during the criterion pass; its numbers are not valid"
        );
    }
}
