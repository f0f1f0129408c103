//! Active health checks over real tonic servers on 127.0.0.x: a replica that reports
//! NOT_SERVING under load leaves rotation within one probe interval and gets no user call
//! after that; it comes back when it reports SERVING. Probe failures and servers without
//! a health service. User calls and probes are counted apart at each server.
#![cfg(all(feature = "health", feature = "discovery"))]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use resilient_runtime::Pool;
use resilient_runtime::pool::{EndpointState, Health, HealthCheck, HealthMode};
use tonic::Status;
use tonic::body::Body;
use tonic_health::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;

/// The user service of the test replicas, and the name their health reports on.
const SERVICE: &str = "test.Load";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `test.Load/Call`: a unary call (health messages reused as payload) that counts its
/// calls, apart from the health probes, and answers UNAVAILABLE while told to fail.
#[derive(Clone)]
struct Load {
    hits: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
}

impl tonic::server::NamedService for Load {
    const NAME: &'static str = SERVICE;
}

struct Call;

impl tonic::server::UnaryService<HealthCheckRequest> for Call {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<Result<tonic::Response<HealthCheckResponse>, Status>>;
    fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
        Box::pin(async { Ok(tonic::Response::new(HealthCheckResponse { status: 1 })) })
    }
}

impl tower::Service<http::Request<Body>> for Load {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            let refused = Status::unavailable("told to fail").into_http();
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Call, request).await)
        })
    }
}

/// A replica: `test.Load` plus (optionally) the standard health service.
struct Replica {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
    reporter: Option<HealthReporter>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    fn start(listener: std::net::TcpListener, with_health: bool) -> Replica {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let load = Load {
            hits: hits.clone(),
            fail: fail.clone(),
        };
        let (reporter, health) = tonic_health::server::health_reporter();
        let task = tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let mut server = tonic::transport::Server::builder();
            let router = if with_health {
                server.add_service(health).add_service(load)
            } else {
                server.add_service(load)
            };
            let _ = router.serve_with_incoming(incoming).await;
        });
        Replica {
            addr,
            hits,
            fail,
            reporter: with_health.then_some(reporter),
            task,
        }
    }

    async fn set(&self, status: ServingStatus) {
        if let Some(r) = &self.reporter {
            r.set_service_status(SERVICE, status).await;
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Listeners on 127.0.0.`h` for each of `hosts`, all at one port (pods of one Service).
fn listeners(hosts: &[u8]) -> (u16, Vec<std::net::TcpListener>) {
    for _ in 0..50 {
        let Ok(first) = std::net::TcpListener::bind(SocketAddr::new(ip(hosts[0]), 0)) else {
            continue;
        };
        let port = first.local_addr().unwrap().port();
        let rest: Result<Vec<_>, _> = hosts[1..]
            .iter()
            .map(|h| std::net::TcpListener::bind(SocketAddr::new(ip(*h), port)))
            .collect();
        if let Ok(mut rest) = rest {
            rest.insert(0, first);
            return (port, rest);
        }
    }
    panic!("no port free on every replica address");
}

async fn replicas(hosts: &[u8]) -> (String, Vec<Replica>) {
    let (port, ls) = listeners(hosts);
    let reps: Vec<Replica> = ls.into_iter().map(|l| Replica::start(l, true)).collect();
    for r in &reps {
        r.set(ServingStatus::Serving).await;
    }
    let list: Vec<String> = hosts
        .iter()
        .map(|h| format!("127.0.0.{h}:{port}"))
        .collect();
    (format!("static:///{}", list.join(",")), reps)
}

/// One user call through the pool.
async fn call(pool: &Pool) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(pool.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(2));
    let path = PathAndQuery::from_static("/test.Load/Call");
    grpc.unary::<_, HealthCheckResponse, _>(request, path, tonic_prost::ProstCodec::default())
        .await
        .map(|_| ())
}

/// Calls from `workers` tasks in a loop until stopped; counts failures.
struct LoadGen {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LoadGen {
    fn start(pool: &Pool, workers: usize) -> LoadGen {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (pool, stop, failed, sent) =
                    (pool.clone(), stop.clone(), failed.clone(), sent.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        if call(&pool).await.is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        // A little pause keeps two cores free for the servers and probes.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        LoadGen {
            stop,
            failed,
            sent,
            tasks,
        }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

fn state_of(pool: &Pool, addr: SocketAddr) -> (EndpointState, Health) {
    let e = pool
        .endpoints()
        .into_iter()
        .find(|e| e.address.to_string() == addr.to_string())
        .expect("endpoint listed");
    (e.state, e.health)
}

/// Polls `condition` every millisecond for at most `limit`; how long it took.
async fn within(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The flip under load, for one mode. Returns (ms to leave rotation, calls the replica
/// got after the flip, calls after it left rotation).
async fn flip_under_load(mode: HealthMode, interval: Duration) -> (u128, u64, u64) {
    let timeout = Duration::from_millis(100);
    let (target, reps) = replicas(&[2, 3, 4]).await;
    let pool = Pool::builder(&target)
        .health_check(HealthCheck {
            service: SERVICE.into(),
            interval,
            timeout,
            mode,
        })
        .build_resolved()
        .await
        .unwrap();
    for r in &reps {
        assert_eq!(
            state_of(&pool, r.addr),
            (EndpointState::Active, Health::Serving)
        );
    }
    let load = LoadGen::start(&pool, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flipped = &reps[1];
    assert!(flipped.hits() > 0, "it took calls before the flip");

    let at_flip = flipped.hits();
    flipped.set(ServingStatus::NotServing).await;
    let left = within(interval + timeout + Duration::from_millis(500), || {
        state_of(&pool, flipped.addr) == (EndpointState::Unhealthy, Health::NotServing)
    })
    .await
    .expect("the NOT_SERVING replica leaves rotation");
    // One probe interval (plus the probe's own time) bounds when it leaves.
    assert!(
        left <= interval + timeout + Duration::from_millis(50),
        "left after {left:?}"
    );
    // Calls already on their way when it left still land; give them 20 ms.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after_leaving = flipped.hits();
    let others_before: u64 = reps[0].hits() + reps[2].hits();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        flipped.hits(),
        after_leaving,
        "no user call reaches a NOT_SERVING replica once it is out of rotation"
    );
    assert!(
        reps[0].hits() + reps[2].hits() > others_before + 100,
        "the others take the load"
    );

    // Back to SERVING: back in rotation, takes calls again.
    let back_from = flipped.hits();
    flipped.set(ServingStatus::Serving).await;
    within(interval + timeout + Duration::from_millis(500), || {
        state_of(&pool, flipped.addr) == (EndpointState::Active, Health::Serving)
    })
    .await
    .expect("the replica returns to rotation");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failed) = load.stop().await;
    assert!(
        flipped.hits() > back_from + 5,
        "calls again: {} -> {}",
        back_from,
        flipped.hits()
    );
    assert_eq!(failed, 0, "no user call failed ({sent} sent)");
    (
        left.as_millis(),
        after_leaving - at_flip,
        back_from - after_leaving,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_mode_takes_a_not_serving_replica_out_within_one_interval() {
    let interval = Duration::from_millis(200);
    let (left_ms, before_out, after_out) = flip_under_load(HealthMode::Check, interval).await;
    println!(
        "BENCH health check (Check every {} ms): NOT_SERVING replica out of rotation after \
         {left_ms} ms, {before_out} calls reached it meanwhile, {after_out} after",
        interval.as_millis()
    );
    assert_eq!(after_out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_mode_takes_a_not_serving_replica_out_at_once() {
    let interval = Duration::from_secs(1);
    let (left_ms, before_out, after_out) = flip_under_load(HealthMode::Watch, interval).await;
    println!(
        "BENCH health check (Watch): NOT_SERVING replica out of rotation after {left_ms} ms, \
         {before_out} calls reached it meanwhile, {after_out} after"
    );
    assert!(left_ms < 200, "a watch pushes the change: {left_ms} ms");
    assert_eq!(after_out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_never_gets_a_user_call_and_no_health_service_means_serving() {
    let (port, mut ls) = listeners(&[2, 3, 4]);
    let healthy = Replica::start(ls.remove(0), true);
    healthy.set(ServingStatus::Serving).await;
    let without_health = Replica::start(ls.remove(0), false);
    let dead = ls.remove(0).local_addr().unwrap(); // listener dropped: connections refused
    drop(ls);
    let target = format!("static:///127.0.0.2:{port},127.0.0.3:{port},127.0.0.4:{port}");
    for mode in [HealthMode::Check, HealthMode::Watch] {
        let pool = Pool::builder(&target)
            .health_check(HealthCheck {
                service: SERVICE.into(),
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(200),
                mode,
            })
            .build_resolved()
            .await
            .unwrap();
        assert_eq!(
            state_of(&pool, dead),
            (EndpointState::Unhealthy, Health::ProbeFailed),
            "{mode:?}"
        );
        assert_eq!(
            state_of(&pool, without_health.addr),
            (EndpointState::Active, Health::Serving),
            "UNIMPLEMENTED is taken as serving ({mode:?})"
        );
        for _ in 0..100 {
            call(&pool)
                .await
                .expect("no call is sent to the dead endpoint");
        }
        let dead_info = pool
            .endpoints()
            .into_iter()
            .find(|e| e.address.to_string() == dead.to_string())
            .unwrap();
        assert_eq!(dead_info.requests, 0, "{mode:?}");
    }
    assert!(healthy.hits() >= 50 && without_health.hits() >= 50);
}

/// A TCP relay in front of a replica that can freeze: it then keeps every connection
/// open and passes nothing on, like a server process that was stopped (SIGSTOP) while
/// its kernel still holds the connections.
struct Relay {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(host: u8, backend: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip(host), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pipes.spawn(pipe(client_read, server_write, flag.clone()));
                pipes.spawn(pipe(server_read, client_write, flag.clone()));
            }
        });
        Relay { addr, frozen, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Watch mode and a server that freezes with its stream open: the watch says nothing,
/// as it would with nothing to report, but the replica leaves rotation within one
/// interval plus one probe timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_mode_takes_a_frozen_replica_out() {
    let (_, mut ls) = listeners(&[3]);
    let replica = Replica::start(ls.remove(0), true);
    replica.set(ServingStatus::Serving).await;
    let relay = Relay::start(2, replica.addr).await;
    let interval = Duration::from_millis(300);
    let pool = Pool::builder(&format!("static:///{}", relay.addr))
        .health_check(HealthCheck {
            service: SERVICE.into(),
            interval,
            timeout: Duration::from_secs(1),
            mode: HealthMode::Watch,
        })
        .build_resolved()
        .await
        .unwrap();
    assert_eq!(
        state_of(&pool, relay.addr),
        (EndpointState::Active, Health::Serving)
    );
    // A quiet, healthy watch stays serving across several intervals.
    tokio::time::sleep(interval * 3).await;
    assert_eq!(state_of(&pool, relay.addr).1, Health::Serving);
    relay.frozen.store(true, Ordering::SeqCst);
    within(Duration::from_secs(5), || {
        state_of(&pool, relay.addr).1 == Health::ProbeFailed
    })
    .await
    .expect("a frozen replica leaves rotation");
}

/// The ejection limit counts endpoints that their health check took out: when the only
/// serving replica answers UNAVAILABLE for a moment, it is not ejected (which would put
/// the pool in panic mode and send calls to the dead one), and once it answers again
/// every call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_never_takes_the_last_healthy_endpoint_away() {
    let (port, mut ls) = listeners(&[2, 3]);
    let good = Replica::start(ls.remove(0), true);
    good.set(ServingStatus::Serving).await;
    let dead = ls.remove(0).local_addr().unwrap(); // listener dropped: connections refused
    let target = format!("static:///127.0.0.2:{port},127.0.0.3:{port}");
    let pool = Pool::builder(&target)
        .health_check(HealthCheck {
            service: SERVICE.into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            mode: HealthMode::Check,
        })
        .build_resolved()
        .await
        .unwrap();
    assert_eq!(
        state_of(&pool, dead),
        (EndpointState::Unhealthy, Health::ProbeFailed)
    );
    good.fail.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let status = call(&pool).await.expect_err("told to fail");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    assert_eq!(
        state_of(&pool, good.addr),
        (EndpointState::Active, Health::Serving),
        "half of two endpoints is already out of rotation: no ejection"
    );
    good.fail.store(false, Ordering::SeqCst);
    for _ in 0..20 {
        call(&pool)
            .await
            .expect("every call goes to the serving replica");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_unhealthy_is_panic_mode_not_a_refusal() {
    let (target, reps) = replicas(&[2, 3]).await;
    for r in &reps {
        r.set(ServingStatus::NotServing).await;
    }
    let pool = Pool::builder(&target)
        .health_check(HealthCheck {
            service: SERVICE.into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
            mode: HealthMode::Check,
        })
        .build_resolved()
        .await
        .unwrap();
    assert!(
        pool.endpoints()
            .iter()
            .all(|e| e.health == Health::NotServing)
    );
    for _ in 0..20 {
        call(&pool).await.expect("panic mode uses every endpoint");
    }
    // A new health answer is seen through the change counter too.
    let mut changes = pool.health_changes();
    changes.borrow_and_update();
    reps[0].set(ServingStatus::Serving).await;
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .unwrap()
        .unwrap();
    let before = reps[1].hits();
    for _ in 0..20 {
        call(&pool).await.unwrap();
    }
    assert_eq!(reps[1].hits(), before, "only the serving one now");
}

/// Health checks set to "never" (`Duration::MAX` for the probe's timeout and interval)
/// build a pool and probe it once, without a panic: the waits are capped, not added up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_durations_are_capped_not_a_panic() {
    let (target, reps) = replicas(&[2]).await;
    let built = tokio::time::timeout(
        Duration::from_secs(10),
        Pool::builder(&target)
            .health_check(HealthCheck {
                service: SERVICE.into(),
                interval: Duration::MAX,
                timeout: Duration::MAX,
                mode: HealthMode::Check,
            })
            .min_re_resolve_interval(Duration::MAX)
            .build_resolved(),
    )
    .await
    .expect("built within 10 s")
    .unwrap();
    assert_eq!(
        state_of(&built, reps[0].addr),
        (EndpointState::Active, Health::Serving)
    );
    // the probe task is still alive after its first probe: a flip is not seen for now,
    // as the interval says, but nothing has crashed
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        state_of(&built, reps[0].addr),
        (EndpointState::Active, Health::Serving)
    );
}
