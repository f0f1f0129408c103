//! Deadline propagation over three hops on loopback (user-service → content-service →
//! media-service): each hop sees a smaller `grpc-timeout`, and when the first caller
//! gives up, no hop keeps working past its deadline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codegen_tests::test::hops::v1::hop_service_client::HopServiceClient;
use codegen_tests::test::hops::v1::hop_service_resilient::HopServiceResilientClient;
use codegen_tests::test::hops::v1::hop_service_server::{HopService, HopServiceServer};
use codegen_tests::test::hops::v1::{RelayReply, RelayRequest};
use resilient_runtime::Environment;
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::deadline::{DeadlinePropagationLayer, request_timeout};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// What a hop's handler did.
#[derive(Debug, Clone)]
struct Ended {
    hop: &'static str,
    /// How long after its deadline the handler ended (negative: before).
    after_deadline_ms: f64,
    completed: bool,
}

/// Records when a handler ends, whether it completes or is dropped.
struct Guard {
    hop: &'static str,
    deadline: Instant,
    completed: bool,
    log: Arc<Mutex<Vec<Ended>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let now = Instant::now();
        let after = if now >= self.deadline {
            (now - self.deadline).as_secs_f64() * 1000.0
        } else {
            -((self.deadline - now).as_secs_f64() * 1000.0)
        };
        self.log.lock().unwrap().push(Ended {
            hop: self.hop,
            after_deadline_ms: after,
            completed: self.completed,
        });
    }
}

struct Hop {
    name: &'static str,
    log: Arc<Mutex<Vec<Ended>>>,
    next: tokio::sync::OnceCell<HopServiceResilientClient>,
}

#[tonic::async_trait]
impl HopService for Hop {
    async fn relay(&self, request: Request<RelayRequest>) -> Result<Response<RelayReply>, Status> {
        let seen = request_timeout(request.metadata()).expect("every hop gets a deadline");
        let mut guard = Guard {
            hop: self.name,
            deadline: Instant::now() + seen,
            completed: false,
            log: self.log.clone(),
        };
        let req = request.into_inner();
        let mut seen_ms = vec![seen.as_millis() as u64];
        if let Some((next, rest)) = req.next.split_first() {
            let client = self
                .next
                .get_or_try_init(|| HopServiceResilientClient::connect(format!("http://{next}")))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            let reply = client
                .relay(RelayRequest {
                    next: rest.to_vec(),
                    work_ms: req.work_ms,
                })
                .await?;
            seen_ms.extend(reply.into_inner().seen_timeout_ms);
        } else {
            tokio::time::sleep(Duration::from_millis(req.work_ms.into())).await;
        }
        guard.completed = true;
        Ok(Response::new(RelayReply {
            seen_timeout_ms: seen_ms,
        }))
    }
}

struct Chain {
    addrs: Vec<String>,
    log: Arc<Mutex<Vec<Ended>>>,
    hops: Vec<Arc<Hop>>,
}

async fn chain() -> Chain {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut addrs = Vec::new();
    let mut hops = Vec::new();
    for name in ["user-service", "content-service", "media-service"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let hop = Arc::new(Hop {
            name,
            log: log.clone(),
            next: tokio::sync::OnceCell::new(),
        });
        hops.push(hop.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .layer(DeadlinePropagationLayer::new())
                .add_service(HopServiceServer::from_arc(hop))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    }
    Chain { addrs, log, hops }
}

fn relay(chain: &Chain, work_ms: u32, timeout: Duration) -> Request<RelayRequest> {
    let mut request = Request::new(RelayRequest {
        next: chain.addrs[1..].to_vec(),
        work_ms,
    });
    request.set_timeout(timeout);
    request
}

#[tokio::test]
async fn each_hop_sees_a_smaller_deadline() {
    let chain = chain().await;
    let client = HopServiceResilientClient::connect(format!("http://{}", chain.addrs[0]))
        .await
        .unwrap();
    let reply = client
        .relay(relay(&chain, 0, Duration::from_millis(1_000)))
        .await
        .unwrap()
        .into_inner();
    let seen = reply.seen_timeout_ms;
    println!("grpc-timeout seen by each hop (ms): {seen:?}");
    assert_eq!(seen.len(), 3);
    assert!(seen[0] <= 1_000, "{seen:?}");
    assert!(seen[1] < seen[0] && seen[2] < seen[1], "{seen:?}");
    // each hop keeps back at least the 5 ms margin
    assert!(seen[0] - seen[1] >= 5 && seen[1] - seen[2] >= 5, "{seen:?}");
}

#[tokio::test]
async fn when_the_first_caller_gives_up_no_hop_works_past_its_deadline() {
    let chain = chain().await;
    let client = HopServiceResilientClient::connect(format!("http://{}", chain.addrs[0]))
        .await
        .unwrap();
    let started = Instant::now();
    let err = client
        .relay(relay(&chain, 5_000, Duration::from_millis(300)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        took < Duration::from_millis(350),
        "gave up at its deadline: {took:?}"
    );

    // give every hop time to notice; none may still be working
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = chain.log.lock().unwrap().clone();
    println!("hops ended: {log:?}");
    assert_eq!(log.len(), 3, "every hop's handler ended: {log:?}");
    for ended in &log {
        assert!(
            !ended.completed,
            "{} finished its work after all",
            ended.hop
        );
        assert!(
            ended.after_deadline_ms <= 50.0,
            "{} worked {:.1} ms past its deadline",
            ended.hop,
            ended.after_deadline_ms
        );
    }

    // the inner hops timed out on a deadline their caller set: not the dependency's
    // failure, so their breakers did not count it
    for hop in &chain.hops[..2] {
        if let Some(next) = hop.next.get() {
            let breaker = next.breaker("Relay").unwrap();
            assert_eq!(breaker.consecutive_failures(), 0, "{}", hop.name);
        }
    }
    assert_eq!(client.breaker("Relay").unwrap().consecutive_failures(), 0);
}

/// One hop that reports the `grpc-timeout` it received (none: an empty list) after
/// working `work_ms`.
struct LastHop;

#[tonic::async_trait]
impl HopService for LastHop {
    async fn relay(&self, request: Request<RelayRequest>) -> Result<Response<RelayReply>, Status> {
        let seen = request_timeout(request.metadata());
        tokio::time::sleep(Duration::from_millis(request.into_inner().work_ms.into())).await;
        Ok(Response::new(RelayReply {
            seen_timeout_ms: seen.map(|d| d.as_millis() as u64).into_iter().collect(),
        }))
    }
}

/// A client of a fresh [`LastHop`] whose policies come from `config`.
async fn last_hop_client(config: &str) -> HopServiceResilientClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(HopServiceServer::new(LastHop))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let config = RuntimeConfig::from_toml_str("test.toml", config).unwrap();
    let spec = HopServiceResilientClient::<Channel>::spec();
    let runtime = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HopServiceResilientClient::with_runtime(HopServiceClient::new(channel), runtime)
}

fn work(work_ms: u32) -> RelayRequest {
    RelayRequest {
        next: Vec::new(),
        work_ms,
    }
}

#[tokio::test]
async fn the_deadline_is_sent_by_default_and_not_when_propagation_is_off() {
    let on = last_hop_client(
        r#"[".test.hops.v1.HopService"]
timeout_ms = 800
"#,
    )
    .await;
    assert!(on.runtime().method(0).propagates_deadline());
    let seen = on
        .relay(work(0))
        .await
        .unwrap()
        .into_inner()
        .seen_timeout_ms;
    assert_eq!(seen.len(), 1, "the server got a grpc-timeout: {seen:?}");
    assert!((700..=800).contains(&seen[0]), "{seen:?}");

    let off = last_hop_client(
        r#"[".test.hops.v1.HopService"]
timeout_ms = 800
[".test.hops.v1.HopService.Relay"]
propagate_deadline = false
"#,
    )
    .await;
    assert!(!off.runtime().method(0).propagates_deadline());
    let seen = off
        .relay(work(0))
        .await
        .unwrap()
        .into_inner()
        .seen_timeout_ms;
    assert!(
        seen.is_empty(),
        "no grpc-timeout reached the server: {seen:?}"
    );
}

#[tokio::test]
async fn without_propagation_the_client_still_gives_up_at_its_deadline() {
    let client = last_hop_client(
        r#"[".test.hops.v1.HopService"]
timeout_ms = 200
propagate_deadline = false
"#,
    )
    .await;
    let started = Instant::now();
    let err = client.relay(work(5_000)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1_000),
        "gave up at its 200 ms deadline: {took:?}"
    );
    // the dependency was too slow: a failure, as with propagation on
    assert_eq!(client.breaker("Relay").unwrap().consecutive_failures(), 1);
}
