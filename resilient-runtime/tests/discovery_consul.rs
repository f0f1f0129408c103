//! Consul targets and registration against a stand-in agent that follows Consul's
//! documented HTTP API (no real Consul can be had here): `GET /v1/health/service/<name>`
//! with `passing`, `dc`, `tag` and blocking queries (`index`, `wait`, `X-Consul-Index`),
//! `PUT /v1/agent/service/register` and `/deregister/<id>`, ACL tokens in
//! `X-Consul-Token`.
#![cfg(feature = "consul")]

mod discovery_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use discovery_support::{addresses, check, eventually, replicas};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use resilient_runtime::Pool;
use resilient_runtime::discover::{ConsulOptions, ConsulRegistration, ErrorKind, Secret};
use serde_json::{Value, json};
use tokio::sync::watch;

const CALL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Logged {
    path: String,
    token: Option<String>,
    at: Instant,
}

#[derive(Default)]
struct Agent {
    index: u64,
    /// Test hook: the next answers carry this index instead of the real one.
    forced_index: Option<u64>,
    services: BTreeMap<String, Value>,
    critical: Vec<String>,
    token: Option<String>,
    log: Vec<Logged>,
}

/// The stand-in agent.
struct StandIn {
    addr: SocketAddr,
    state: Arc<Mutex<Agent>>,
    changed: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

fn query(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A Go duration as Consul reads `wait`: `10s`, `5m`, `1500ms`.
fn go_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

fn reply(status: u16, index: Option<u64>, body: String) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(i) = index {
        r = r.header("X-Consul-Index", i.to_string());
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

impl StandIn {
    async fn start(token: Option<&str>) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Agent {
            index: 1,
            token: token.map(str::to_string),
            ..Agent::default()
        }));
        let (changed, _) = watch::channel(1u64);
        let task = tokio::spawn({
            let (state, changed) = (state.clone(), changed.clone());
            async move {
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (state, changed) = (state.clone(), changed.clone());
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let (state, changed) = (state.clone(), changed.clone());
                            async move { Ok::<_, Infallible>(handle(req, state, changed).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        StandIn {
            addr,
            state,
            changed,
            task,
        }
    }

    fn options(&self) -> ConsulOptions {
        ConsulOptions::default()
            .agent(self.addr.into())
            .wait(Duration::from_secs(2))
    }

    fn target(&self, rest: &str) -> String {
        format!("consul://{}/{rest}", self.addr)
    }

    fn bump(&self, agent: &mut Agent) {
        agent.index += 1;
        self.changed.send_replace(agent.index);
    }

    fn force_index(&self, index: Option<u64>) {
        let mut a = self.state.lock().unwrap();
        a.forced_index = index;
        // wake blocked queries so that they answer with it
        a.index += 1;
        self.changed.send_replace(a.index);
    }

    fn set_critical(&self, id: &str) {
        let mut a = self.state.lock().unwrap();
        a.critical.push(id.to_string());
        self.bump(&mut a);
    }

    fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    fn service(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().services.get(id).cloned()
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: http::Request<Incoming>,
    state: Arc<Mutex<Agent>>,
    changed: watch::Sender<u64>,
) -> http::Response<Full<Bytes>> {
    let token = req
        .headers()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = req.uri().path().to_string();
    let params = query(req.uri());
    let method = req.method().clone();
    {
        let mut a = state.lock().unwrap();
        a.log.push(Logged {
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            token: token.clone(),
            at: Instant::now(),
        });
        if let Some(want) = &a.token
            && token.as_ref() != Some(want)
        {
            return reply(403, None, "ACL not found".to_string());
        }
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();

    if method == http::Method::GET
        && let Some(name) = path.strip_prefix("/v1/health/service/")
    {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let index: u64 = get("index").and_then(|v| v.parse().ok()).unwrap_or(0);
        let wait = get("wait")
            .map(|w| go_duration(&w).expect("wait must be a duration like 10s"))
            .unwrap_or(Duration::from_secs(300));
        let current = state.lock().unwrap().index;
        if index > 0 && index >= current {
            // Blocking query: until a change or the wait (plus up to wait/16) passes.
            let mut rx = changed.subscribe();
            let jitter = wait / 16 * fastrand::u32(0..100) / 100;
            let _ = tokio::time::timeout(wait + jitter, rx.wait_for(|i| *i > index)).await;
        }
        let a = state.lock().unwrap();
        let passing = params.iter().any(|(k, v)| k == "passing" && v != "false");
        let tags: Vec<&String> = params
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v)
            .collect();
        let entries: Vec<Value> = a
            .services
            .iter()
            .filter(|(id, s)| {
                s["Service"] == name
                    && !(passing && a.critical.contains(id))
                    && tags
                        .iter()
                        .all(|t| s["Tags"].as_array().unwrap().iter().any(|x| x == t.as_str()))
            })
            .map(|(id, s)| {
                json!({
                    "Node": {"ID": "n-1", "Node": "node-1", "Address": "127.0.0.1", "Datacenter": "dc1"},
                    "Service": s,
                    "Checks": [{"CheckID": format!("service:{id}"), "Status":
                        if a.critical.contains(id) { "critical" } else { "passing" }}],
                })
            })
            .collect();
        let index = a.forced_index.unwrap_or(a.index);
        return reply(200, Some(index), Value::Array(entries).to_string());
    }
    if method == http::Method::PUT && path == "/v1/agent/service/register" {
        let def: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return reply(400, None, format!("Request decode failed: {e}")),
        };
        let Some(name) = def["Name"].as_str() else {
            return reply(400, None, "Missing service name".to_string());
        };
        let check = &def["Check"];
        if check["GRPC"].as_str().is_none()
            || check["Interval"].as_str().and_then(go_duration).is_none()
            || check["DeregisterCriticalServiceAfter"]
                .as_str()
                .and_then(go_duration)
                .is_none()
        {
            return reply(400, None, "Invalid check".to_string());
        }
        let id = def["ID"].as_str().unwrap_or(name).to_string();
        let service = json!({
            "ID": id,
            "Service": name,
            "Tags": def["Tags"].as_array().cloned().unwrap_or_default(),
            "Address": def["Address"].as_str().unwrap_or(""),
            "Port": def["Port"].as_u64().unwrap_or(0),
            "Check": check,
        });
        let mut a = state.lock().unwrap();
        a.services.insert(id, service);
        a.index += 1;
        changed.send_replace(a.index);
        return reply(200, None, String::new());
    }
    if method == http::Method::PUT
        && let Some(id) = path.strip_prefix("/v1/agent/service/deregister/")
    {
        let mut a = state.lock().unwrap();
        if a.services.remove(id).is_none() {
            return reply(404, None, format!("Unknown service ID {id:?}"));
        }
        a.index += 1;
        changed.send_replace(a.index);
        return reply(200, None, String::new());
    }
    reply(404, None, "not found".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_discovery_follow_changes_with_blocking_queries() {
    let (port, reps) = replicas(&[2, 3, 4]);
    let agent = StandIn::start(Some("s3cret-token")).await;
    let options = agent.options().token(Secret::new("s3cret-token"));
    let register = |host: u8| {
        ConsulRegistration::new(
            "auth-service",
            format!("127.0.0.{host}:{port}").parse().unwrap(),
        )
        .tags(["v1"])
        .options(options.clone())
        .register()
    };
    let first = register(2).await.unwrap();
    let _second = register(3).await.unwrap();
    assert_eq!(first.id(), format!("auth-service-127.0.0.2-{port}"));
    let s = agent.service(first.id()).unwrap();
    assert_eq!(s["Check"]["GRPC"], format!("127.0.0.2:{port}"));
    assert_eq!(s["Check"]["DeregisterCriticalServiceAfter"], "60s");

    let pool = Pool::builder(&agent.target("auth-service"))
        .consul(options.clone())
        .build_resolved()
        .await
        .unwrap();
    assert_eq!(
        addresses(&pool),
        [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")]
    );
    for _ in 0..10 {
        check(&pool, CALL).await.unwrap();
    }
    assert_eq!(reps[0].hits() + reps[1].hits(), 10);

    // A new instance is seen as soon as Consul answers the blocking query.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let _third = register(4).await.unwrap();
    let registered = started.elapsed();
    eventually(Duration::from_secs(2), || addresses(&pool).len() == 3)
        .await
        .expect("new instance not seen");
    let seen = started.elapsed();
    println!(
        "BENCH consul-membership: registration answered after {registered:?}, \
         new instance in the pool after {seen:?} (blocking query)"
    );
    assert!(seen < Duration::from_secs(1), "{seen:?}");

    // A failing check removes it from the passing set.
    agent.set_critical(&format!("auth-service-127.0.0.4-{port}"));
    eventually(Duration::from_secs(2), || addresses(&pool).len() == 2)
        .await
        .expect("critical instance still used");

    // Dropping the guard deregisters.
    drop(first);
    eventually(Duration::from_secs(2), || {
        addresses(&pool) == [format!("127.0.0.3:{port}")]
    })
    .await
    .expect("deregistration not seen");

    // Blocking queries carried the index and wait, and every request the token.
    let log = agent.log();
    assert!(
        log.iter()
            .any(|l| l.path.contains("index=") && l.path.contains("wait=2s")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .all(|l| l.token.as_deref() == Some("s3cret-token"))
    );
    assert!(log.iter().all(|l| !l.path.contains("s3cret")));
    assert!(!format!("{options:?} {pool:?}").contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_going_backwards_restarts_the_loop() {
    let agent = StandIn::start(None).await;
    let (port, _reps) = replicas(&[2]);
    ConsulRegistration::new("auth-service", format!("127.0.0.2:{port}").parse().unwrap())
        .options(agent.options())
        .register()
        .await
        .map(std::mem::forget)
        .unwrap();
    let pool = Pool::builder(&agent.target("auth-service"))
        .consul(agent.options())
        .build_resolved()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = agent.log();
    assert!(before.last().unwrap().path.contains("index="), "{before:?}");
    // The agent's index goes backwards (e.g. after a snapshot restore).
    let forced = Instant::now();
    agent.force_index(Some(1));
    eventually(Duration::from_secs(2), || {
        agent.log().iter().filter(|l| l.at > forced).count() >= 2
    })
    .await
    .unwrap();
    let log = agent.log();
    let after: Vec<&str> = log
        .iter()
        .filter(|l| l.at > forced)
        .map(|l| l.path.as_str())
        .collect();
    // The blocked query came back with index 1, below the previous one: the next query
    // starts over without an index.
    assert!(!after[0].contains("index="), "{after:?}");
    agent.force_index(None);
    check(&pool, CALL).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_loop_is_rate_limited() {
    let agent = StandIn::start(None).await;
    // A misbehaving agent: index 0 on every answer, so no query ever blocks.
    agent.force_index(Some(0));
    let _pool = Pool::builder(&agent.target("auth-service"))
        .consul(agent.options().min_interval(Duration::from_millis(100)))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let log = agent.log();
    let span = log.last().unwrap().at - log[0].at;
    println!(
        "BENCH consul-rate-limit: {} queries in {span:?} against a non-blocking agent",
        log.len()
    );
    assert!(log.len() <= 12, "{} queries", log.len());
    assert!(log.len() >= 5, "{} queries", log.len());
    // index 0 is treated as 1, never sent as 0
    assert!(log.iter().all(|l| !l.path.contains("index=0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_datacenter_are_sent() {
    let agent = StandIn::start(None).await;
    let (port, _reps) = replicas(&[2, 3]);
    for (host, tags) in [(2u8, vec!["v2"]), (3, vec!["v1"])] {
        std::mem::forget(
            ConsulRegistration::new(
                "auth-service",
                format!("127.0.0.{host}:{port}").parse().unwrap(),
            )
            .tags(tags)
            .options(agent.options())
            .register()
            .await
            .unwrap(),
        );
    }
    let pool = Pool::builder(&agent.target("auth-service?dc=eu1&tag=v2"))
        .consul(agent.options())
        .build_resolved()
        .await
        .unwrap();
    assert_eq!(addresses(&pool), [format!("127.0.0.2:{port}")]);
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.path.contains("dc=eu1") && l.path.contains("tag=v2"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_is_a_clear_error() {
    // Nothing listens on port 1.
    let target = "consul://127.0.0.1:1/auth-service";
    let e = Pool::builder(target).build_resolved().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains(target), "{e}");
    assert!(e.to_string().contains("consul agent at 127.0.0.1:1"), "{e}");

    let pool = Pool::from_target(target).unwrap();
    pool.ready().await;
    let status = check(&pool, CALL).await.unwrap_err();
    assert!(
        status.message().contains("consul agent at 127.0.0.1:1"),
        "{status:?}"
    );

    let e = ConsulRegistration::new("auth-service", "127.0.0.2:8083".parse().unwrap())
        .options(ConsulOptions::default().agent("127.0.0.1:1".parse().unwrap()))
        .register()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_reported_without_showing_it() {
    let agent = StandIn::start(Some("right")).await;
    let e = Pool::builder(&agent.target("auth-service"))
        .consul(agent.options().token(Secret::new("wrong-token-value")))
        .build_resolved()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(e.to_string().contains("403"), "{e}");
    assert!(e.to_string().contains("CONSUL_HTTP_TOKEN"), "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong-token-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_outage_keeps_the_last_good_endpoints() {
    let agent = StandIn::start(None).await;
    let (port, _reps) = replicas(&[2]);
    let registration =
        ConsulRegistration::new("auth-service", format!("127.0.0.2:{port}").parse().unwrap())
            .options(agent.options())
            .register()
            .await
            .unwrap();
    let pool = Pool::builder(&agent.target("auth-service"))
        .consul(agent.options())
        .build_resolved()
        .await
        .unwrap();
    agent.stop();
    eventually(Duration::from_secs(5), || {
        pool.resolution().last_error.is_some()
    })
    .await
    .expect("outage not reported");
    assert_eq!(addresses(&pool), [format!("127.0.0.2:{port}")]);
    check(&pool, CALL).await.unwrap();
    // Deregistering against a dead agent is an error, not a panic.
    assert!(registration.deregister().await.is_err());
}
