//! The time to fail over when a replica dies under load.
//!
//! Three echo replicas on 127.0.0.1, each on its own tokio runtime, so that killing one
//! (shutting its runtime down) closes its listener and every connection at once, as a
//! crashed process would. Eight tasks call `Echo` in a closed loop; one replica is killed
//! a third of the way through the window. For each client: the calls that failed, and
//! the failover time, from the kill to the end of the last failed call (calls still
//! failing at the end of the window mean it never failed over).
//!
//! Contenders: the generated resilient client over a `resilient_runtime::Pool` (static
//! list, default ejection), and raw tonic over `Channel::balance_list` with the same three
//! endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codegen_tests::test::echo::v1::EchoRequest;
use codegen_tests::test::echo::v1::echo_service_client::EchoServiceClient;
use codegen_tests::test::echo::v1::echo_service_resilient::EchoServiceResilientClient;
use codegen_tests::test::echo::v1::echo_service_server::EchoServiceServer;
use resilient_runtime::Pool;
use tokio::runtime::Runtime;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use super::Echo;

const REPLICAS: usize = 3;
const TASKS: usize = 8;
const OPEN: &str = "open circuit";

/// One replica on its own runtime.
struct Replica {
    addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl Replica {
    fn start() -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("replica runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local addr");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            // Ends when the runtime is shut down: that is the crash.
            let _ = tonic::transport::Server::builder()
                .add_service(EchoServiceServer::new(Echo))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Replica {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Drops every task, listener and connection of the replica at once.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client under test: one `Echo` call.
#[derive(Clone)]
enum Client {
    Resilient(EchoServiceResilientClient<Pool>),
    Raw(EchoServiceClient<Channel>),
}

impl Client {
    async fn echo(&self) -> Result<(), Status> {
        let request = EchoRequest {
            message: "failover".into(),
            ..Default::default()
        };
        match self {
            Client::Resilient(c) => c.echo(request).await.map(drop),
            Client::Raw(c) => c.clone().echo(request).await.map(drop),
        }
    }
}

/// When a call ended, and its error (`OPEN` for an open-circuit rejection).
type Ended = (Instant, Result<(), String>);

/// What one run saw.
pub(crate) struct Run {
    calls: usize,
    /// Calls that reached a replica (or tried to) and failed.
    failed: usize,
    /// Calls an open circuit rejected without trying.
    rejected: usize,
    /// From the kill to the end of the last failed call; `None` when none failed.
    failover: Option<Duration>,
    /// Whether calls were still failing in the last fifth of the window.
    still_failing: bool,
    codes: Vec<String>,
}

async fn connect(kind: &str, replicas: &[Replica]) -> Client {
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.to_string()).collect();
    match kind {
        "resilient" => {
            let pool = Pool::builder(&format!("static:///{}", addrs.join(",")))
                .build_resolved()
                .await
                .expect("pool");
            Client::Resilient(EchoServiceResilientClient::new(EchoServiceClient::new(
                pool,
            )))
        }
        _ => {
            let endpoints = addrs.iter().map(|a| {
                Endpoint::from_shared(format!("http://{a}"))
                    .expect("valid url")
                    .timeout(super::TIMEOUT)
            });
            Client::Raw(EchoServiceClient::new(Channel::balance_list(endpoints)))
        }
    }
}

/// One run: fresh replicas, `window` of load, a kill at a third of it.
async fn run(kind: &str, window: Duration) -> Run {
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|_| Replica::start()).collect();
    let client = connect(kind, &replicas).await;
    // Warm every connection up.
    for _ in 0..REPLICAS * 4 {
        let _ = client.echo().await;
    }
    let start = Instant::now();
    let kill_at = start + window / 3;
    let end = start + window;
    let results: Arc<Mutex<Vec<Ended>>> = Arc::default();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let client = client.clone();
            let results = results.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let r = client.echo().await.map_err(|s| {
                        if resilient_runtime::is_circuit_open(&s) {
                            OPEN.to_string()
                        } else {
                            format!("{:?}", s.code())
                        }
                    });
                    results.lock().unwrap().push((Instant::now(), r));
                }
            })
        })
        .collect();
    tokio::time::sleep_until(kill_at.into()).await;
    let killed = Instant::now();
    replicas[0].kill();
    for t in tasks {
        t.await.expect("load task");
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    let failures: Vec<(Instant, &str)> = results
        .iter()
        .filter_map(|(t, r)| r.as_ref().err().map(|c| (*t, c.as_str())))
        .collect();
    let mut codes: Vec<String> = failures.iter().map(|(_, c)| c.to_string()).collect();
    codes.sort();
    codes.dedup();
    let last_fifth = end - window / 5;
    Run {
        calls: results.len(),
        failed: failures.iter().filter(|(_, c)| *c != OPEN).count(),
        rejected: failures.iter().filter(|(_, c)| *c == OPEN).count(),
        failover: failures
            .iter()
            .map(|(t, _)| t.saturating_duration_since(killed))
            .max(),
        still_failing: failures.iter().any(|(t, _)| *t >= last_fifth),
        codes,
    }
}

/// Runs `rounds` runs per client and prints them with their median.
pub(crate) fn failover_pass(rt: &tokio::runtime::Runtime, rounds: usize, window: Duration) {
    println!(
        "\nfailover: {REPLICAS} replicas, {TASKS} calls in flight, one replica killed at {:?} of a {:?} window, {rounds} runs",
        window / 3,
        window
    );
    println!(
        "| client | calls per run | failed calls | open-circuit rejections | failover time | runs still failing at the end | errors seen |"
    );
    println!("|---|--:|--:|--:|--:|--:|---|");
    for kind in ["resilient", "raw tonic"] {
        let runs: Vec<Run> = (0..rounds)
            .map(|_| rt.block_on(run(kind, window)))
            .collect();
        let calls = runs.iter().map(|r| r.calls).sum::<usize>() / runs.len();
        let failed = spread(runs.iter().map(|r| r.failed as f64).collect(), "");
        let rejected = spread(runs.iter().map(|r| r.rejected as f64).collect(), "");
        let failover = spread(
            runs.iter()
                .map(|r| r.failover.map_or(0.0, |d| d.as_secs_f64() * 1e3))
                .collect(),
            " ms",
        );
        let stuck = runs.iter().filter(|r| r.still_failing).count();
        let mut codes: Vec<String> = runs.iter().flat_map(|r| r.codes.clone()).collect();
        codes.sort();
        codes.dedup();
        println!(
            "| {kind} | {calls} | {failed} | {rejected} | {failover} | {stuck} of {rounds} | {} |",
            codes.join(", ")
        );
    }
}

/// `median [min, max]` of `values`.
fn spread(mut values: Vec<f64>, unit: &str) -> String {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    format!(
        "{:.0}{unit} [{:.0}, {:.0}]",
        values[n / 2],
        values[0],
        values[n - 1]
    )
}
