//! The metrics endpoint over real HTTP on 127.0.0.1: paths, content types, the bearer
//! token, shutdown; `promtool check metrics` on a live scrape; the HTML page in a real
//! headless Chromium, screenshot included.
#![cfg(feature = "http-endpoint")]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use resilient_runtime::metrics::Metrics;
use resilient_runtime::observe::http::DEFAULT_ADDR;
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState, FakeClock, MetricsServer,
    MetricsServerError, OwnedPermit,
};
use tonic::Code;

const TOKEN: &str = "tok-7f3a9c1e5b";

/// Tests whose pages list every live breaker run one at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Every log line of this test binary (once `capture_logs` ran), to search for secrets.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

fn logs() -> MutexGuard<'static, Vec<u8>> {
    LOGS.lock().unwrap_or_else(|p| p.into_inner())
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        logs().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection, read to the end (blocking I/O, off the
/// runtime's threads).
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8(raw).expect("utf-8 reply");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete reply");
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    })
    .await
    .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[]).await
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Breakers in the three states, reporting to `metrics`.
struct Fleet {
    _clock: FakeClock,
    _probe: OwnedPermit,
    _breakers: Vec<CircuitBreaker>,
}

fn fleet(metrics: &Metrics) -> Fleet {
    let clock = FakeClock::new();
    let make = |service: &str, rpc: &str| {
        CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold: 3,
            timeout: Duration::from_secs(30),
            ..Default::default()
        })
        .labels(service, rpc)
        .clock(clock.clone())
        .observer(metrics.observer())
        .build()
        .unwrap()
    };
    let call = |cb: &CircuitBreaker, code: Code| {
        if let Ok(permit) = cb.try_acquire() {
            if code == Code::Ok {
                permit.success()
            } else {
                permit.failure()
            }
            cb.notify_status(code);
        }
    };
    let auth = make("auth-service", "ValidateToken");
    let user = make("user-service", "GetUser");
    let content = make("content-service", "GetPost");
    let media = make("media-service", "Upload");
    let search = make("search-service", "Search");
    for i in 0..200 {
        call(
            &auth,
            if i % 500 == 7 {
                Code::Unavailable
            } else {
                Code::Ok
            },
        );
        call(&user, Code::Ok);
        call(
            &content,
            if i % 100 == 3 {
                Code::Internal
            } else {
                Code::Ok
            },
        );
        call(
            &media,
            if i % 20 == 5 {
                Code::Unavailable
            } else {
                Code::Ok
            },
        );
        call(
            &search,
            if i % 10 == 1 {
                Code::DeadlineExceeded
            } else {
                Code::Ok
            },
        );
    }
    for _ in 0..3 {
        call(&media, Code::Unavailable);
        call(&search, Code::Unavailable);
    }
    let _ = search.try_acquire();
    search.notify_fallback("open");
    clock.advance(Duration::from_secs(30));
    // A probe in flight keeps media-service half-open; search-service stays open.
    let probe = media.try_acquire_owned().unwrap();
    assert_eq!(media.state(), CircuitBreakerState::HalfOpen);
    let _ = search.try_acquire().map(|p| p.failure());
    assert_eq!(search.state(), CircuitBreakerState::Open);
    Fleet {
        _clock: clock,
        _probe: probe,
        _breakers: vec![auth, user, content, media, search],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_the_text_dashboard_and_the_page() {
    let _serial = serial().await;
    let metrics = Metrics::new();
    let fleet = fleet(&metrics);
    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(metrics)
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());

    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        reply.body.contains(
            r#"circuit_breaker_state{service="search-service",rpc="Search",state="open"} 1"#
        ),
        "{}",
        reply.body
    );
    assert!(reply.body.contains(
        r#"service_errors_total{service="search-service",rpc="Search",code="DEADLINE_EXCEEDED"} 20"#
    ));
    assert!(!reply.body.contains("# EOF"));

    let reply = request(
        addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(reply.body.ends_with("# EOF\n"));

    let reply = get(addr, "/resilience").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        reply.body.starts_with("Circuit Breaker State:\n"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("── search-service: OPEN ❌ (probe failed, retry in 30s)"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("── media-service: HALF-OPEN ⚠️ (recovering from failure)"),
        "{}",
        reply.body
    );

    let reply = get(addr, "/resilience.html").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        reply
            .header("content-security-policy")
            .is_some_and(|v| v.contains("default-src 'none'"))
    );
    assert!(
        reply
            .body
            .contains(r#"data-service="media-service" data-state="half_open""#)
    );

    let reply = request(addr, "HEAD", "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());

    let reply = get(addr, "/nope").await;
    assert_eq!((reply.status, reply.body.as_str()), (404, ""));
    let reply = request(addr, "POST", "/metrics", &[("Content-Length", "0")]).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));

    server.shutdown().await;
    drop(fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_every_path_and_never_leaks() {
    capture_logs();
    let metrics = Metrics::new();
    let builder = MetricsServer::builder()
        .bind(loopback())
        .bearer_token(TOKEN)
        .metrics(metrics);
    assert!(!format!("{builder:?}").contains(TOKEN));
    let server = builder.start().await.unwrap();
    assert!(!format!("{server:?}").contains(TOKEN));
    let addr = server.local_addr();

    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}x", TOKEN);
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    for path in [
        "/metrics",
        "/resilience",
        "/resilience.html",
        "/",
        "/no-such-path",
    ] {
        for headers in [
            vec![],
            vec![("Authorization", wrong.as_str())],
            vec![("Authorization", short.as_str())],
            vec![("Authorization", "Basic dXNlcjpwYXNz")],
            vec![("Authorization", TOKEN)],
        ] {
            let reply = request(addr, "GET", path, &headers).await;
            assert_eq!(reply.status, 401, "{path} {headers:?}");
            assert_eq!(reply.body, "", "a refusal says nothing");
            assert_eq!(reply.header("content-type"), None);
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    let reply = request(addr, "GET", "/metrics", &[("Authorization", &bearer)]).await;
    assert_eq!(reply.status, 200);
    let reply = request(
        addr,
        "GET",
        "/nope",
        &[("authorization", &format!("bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(reply.status, 404, "authorized, then not found");
    server.shutdown().await;

    let logs = String::from_utf8_lossy(&logs()).into_owned();
    assert!(
        logs.contains("metrics endpoint listening"),
        "logs are captured: {logs}"
    );
    assert!(!logs.contains(TOKEN), "the token was logged:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_users_registry_when_given_one() {
    let metrics = Metrics::new();
    let mut registry = Registry::default();
    let logins: prometheus_client::metrics::counter::Counter = Default::default();
    registry.register("app_logins", "Logins", logins.clone());
    logins.inc_by(7);
    metrics.register(&mut registry);
    // a live breaker, so that the state families have samples (empty families are omitted)
    let _breaker = resilient_runtime::CircuitBreaker::builder(Default::default())
        .labels("app-service", "Login")
        .build()
        .unwrap();
    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(metrics)
        .registry(Arc::new(registry))
        .start()
        .await
        .unwrap();
    let reply = get(server.local_addr(), "/metrics").await;
    assert!(
        reply.body.contains("app_logins_total 7\n"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("# TYPE circuit_breaker_state gauge"),
        "{}",
        reply.body
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_drop_stop_the_server() {
    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(Metrics::new())
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics").await.status, 200);
    server.shutdown().await;
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );

    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(Metrics::new())
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Clients that connect and say nothing hold at most `max_connections`; past the cap a
/// scrape waits in the backlog, and is served once the oldest connections reach their
/// age and are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_and_closed_at_their_age() {
    let _serial = serial().await;
    let age = Duration::from_secs(1);
    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(Metrics::new())
        .max_connections(2)
        .max_connection_age(age)
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    let connected = Instant::now();
    let silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let scrape = tokio::spawn(get(addr, "/metrics"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !scrape.is_finished(),
        "a third connection was served while two were open"
    );
    let reply = tokio::time::timeout(Duration::from_secs(10), scrape)
        .await
        .expect("served once the silent connections aged out")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        connected.elapsed() >= age,
        "served before any connection aged out"
    );
    for mut stream in silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::task::spawn_blocking(move || stream.read(&mut buf))
            .await
            .unwrap()
            .expect("closed, not timed out");
        assert_eq!(n, 0, "the server closed the silent connection");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_with_errors_not_panics() {
    assert_eq!(DEFAULT_ADDR, "127.0.0.1:9464".parse().unwrap());
    assert!(format!("{:?}", MetricsServer::builder()).contains("127.0.0.1:9464"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = MetricsServer::builder()
        .bind(addr)
        .metrics(Metrics::new())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, MetricsServerError::Bind { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot bind the metrics endpoint to {addr}: ")),
        "{err}"
    );

    let err = MetricsServer::builder()
        .bind(loopback())
        .bearer_token("")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, MetricsServerError::EmptyToken), "{err:?}");
}

#[test]
fn start_outside_a_tokio_runtime_is_an_error() {
    let fut = MetricsServer::builder().bind(loopback()).start();
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(MetricsServerError::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {:?}", other.map(|r| r.map(|_| ()))),
    }
}

#[test]
fn from_env_reads_the_address_and_token() {
    // The only test of this binary that touches these variables.
    // SAFETY: no other thread of this test binary reads or writes them.
    unsafe {
        std::env::set_var("RESILIENT_METRICS_ADDR", "0.0.0.0:9999");
        std::env::set_var("RESILIENT_METRICS_TOKEN", TOKEN);
    }
    let b = MetricsServer::builder().from_env().unwrap();
    let shown = format!("{b:?}");
    assert!(shown.contains("0.0.0.0:9999"), "{shown}");
    assert!(
        shown.contains("<redacted>") && !shown.contains(TOKEN),
        "{shown}"
    );

    unsafe { std::env::set_var("RESILIENT_METRICS_ADDR", "localhost:abc") };
    let err = MetricsServer::builder().from_env().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"RESILIENT_METRICS_ADDR: "localhost:abc" is not an address like 127.0.0.1:9464"#
    );
    unsafe {
        std::env::remove_var("RESILIENT_METRICS_ADDR");
        std::env::set_var("RESILIENT_METRICS_TOKEN", "  ");
    }
    let shown = format!("{:?}", MetricsServer::builder().from_env().unwrap());
    assert!(
        shown.contains("127.0.0.1:9464") && shown.contains("token: None"),
        "{shown}"
    );
    unsafe { std::env::remove_var("RESILIENT_METRICS_TOKEN") };
}

// ---------------------------------------------------------------------------------------
// Real tools: promtool and Chromium (scripts/install-deps.sh installs both).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool: scripts/test-all.sh installs it (Debian package prometheus)"]
async fn a_live_scrape_passes_promtool_check_metrics() {
    let _serial = serial().await;
    let metrics = Metrics::new();
    let fleet = fleet(&metrics);
    // A pool, so that its families are checked too.
    let pool = resilient_runtime::Pool::builder("static:///127.0.0.1:9,127.0.0.2:9")
        .build()
        .unwrap();
    pool.ready().await;
    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(metrics)
        .start()
        .await
        .unwrap();
    let reply = get(server.local_addr(), "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("pool_endpoints{") && reply.body.contains("pool_ejections_total{"),
        "{}",
        reply.body
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(reply.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{said}\n---\n{}",
        reply.body
    );
    assert!(said.trim().is_empty(), "promtool has remarks:\n{said}");
    server.shutdown().await;
    drop((fleet, pool));
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let path = PathBuf::from(path.to_string_lossy().replace([' ', '{', '}', ':'], ""));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs Chromium headless with `extra` arguments on `url`; its stdout.
fn chromium(profile: &Path, extra: &[String], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium on PATH");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().unwrap() {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish in 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: scripts/test-all.sh installs it (Debian package chromium)"]
async fn the_page_renders_in_a_real_browser() {
    let _serial = serial().await;
    let metrics = Metrics::new();
    let fleet = fleet(&metrics);
    let server = MetricsServer::builder()
        .bind(loopback())
        .metrics(metrics)
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/resilience.html", server.local_addr());
    let dir = TempDir::new("resilience-page");

    let dom = {
        let profile = dir.0.join("profile-dom");
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&profile, &["--dump-dom".into()], &url))
            .await
            .unwrap()
    };
    for (service, state) in [
        ("auth-service", "closed"),
        ("user-service", "closed"),
        ("content-service", "closed"),
        ("media-service", "half_open"),
        ("search-service", "open"),
    ] {
        let card = format!(r#"data-service="{service}" data-state="{state}""#);
        assert!(
            dom.contains(&card),
            "{card} not in the rendered DOM:\n{dom}"
        );
    }
    assert!(
        dom.contains("HALF-OPEN") && dom.contains("← CRITICAL"),
        "{dom}"
    );

    let shot = dir.0.join("resilience.png");
    {
        let profile = dir.0.join("profile-shot");
        let args = vec![
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".into(),
        ];
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&profile, &args, &url))
            .await
            .unwrap();
    }
    let png = std::fs::read(&shot).expect("a screenshot");
    let decoder = png::Decoder::new(std::io::Cursor::new(png.as_slice()));
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
    let frame = reader.next_frame(&mut pixels).expect("PNG data");
    assert_eq!((frame.width, frame.height), (1200, 800));
    let channels = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..frame.buffer_size()].chunks(channels).collect();
    assert!(
        colours.len() > 50,
        "a blank page? {} colours",
        colours.len()
    );
    // The state colours are on the page: green (closed), red (open).
    let has = |r: u8, g: u8, b: u8| colours.iter().any(|c| c[0] == r && c[1] == g && c[2] == b);
    assert!(has(0x1a, 0x7f, 0x37), "no closed-state green");
    assert!(has(0xcf, 0x22, 0x2e), "no open-state red");

    if let Ok(keep) = std::env::var("RESILIENCE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    server.shutdown().await;
    drop(fleet);
}
