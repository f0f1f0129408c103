//! Real parts for the discovery and pool tests: replicas (tonic health servers on
//! 127.0.0.x, each on its own runtime so that it can be killed like a crashed process),
//! an in-process authoritative DNS server whose records change during a test, and small
//! helpers.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use resilient_runtime::Pool;
use tonic::Status;
use tonic::body::Body;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Loopback address 127.0.0.`n`.
pub fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// What a replica's layer does with each call.
#[derive(Default)]
pub struct Control {
    hits: AtomicU64,
    unavailable: AtomicBool,
    delay_ms: AtomicU64,
}

#[derive(Clone)]
struct ControlLayer(Arc<Control>);

impl<S> tower::Layer<S> for ControlLayer {
    type Service = Controlled<S>;
    fn layer(&self, inner: S) -> Controlled<S> {
        Controlled {
            inner,
            control: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Controlled<S> {
    inner: S,
    control: Arc<Control>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Controlled<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.control.hits.fetch_add(1, Ordering::SeqCst);
        let delay = Duration::from_millis(self.control.delay_ms.load(Ordering::SeqCst));
        let unavailable = self.control.unavailable.load(Ordering::SeqCst);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if unavailable {
                return Ok(Status::unavailable("replica is draining").into_http());
            }
            inner.call(request).await
        })
    }
}

/// A tonic server (the standard health service) at one loopback address, on a thread and
/// runtime of its own: [`kill`](Self::kill) drops that runtime, closing the listener and
/// every connection at once, as a crash would.
pub struct Replica {
    pub addr: SocketAddr,
    control: Arc<Control>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    /// Starts a replica at `addr` (port 0: any free one).
    pub fn start(addr: SocketAddr) -> std::io::Result<Replica> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control::default());
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let layer = ControlLayer(control.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("replica runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let (reporter, health) = tonic_health::server::health_reporter();
                reporter
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let serve = tonic::transport::Server::builder()
                    .layer(layer)
                    .add_service(health)
                    .serve_with_incoming(incoming);
                tokio::select! {
                    _ = serve => {}
                    _ = killed => {}
                }
            });
            // Dropping the runtime here drops every connection task with it.
            drop(rt);
        });
        Ok(Replica {
            addr,
            control,
            kill: Some(kill),
            thread: Some(thread),
        })
    }

    /// Calls it has received.
    pub fn hits(&self) -> u64 {
        self.control.hits.load(Ordering::SeqCst)
    }

    /// Answer every call with UNAVAILABLE (`true`) or normally.
    pub fn set_unavailable(&self, on: bool) {
        self.control.unavailable.store(on, Ordering::SeqCst);
    }

    /// Delay every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.control
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Crashes it: listener and connections gone at once.
    pub fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replicas on 127.0.0.`first`.. at one common port (as pods of one Service).
pub fn replicas(hosts: &[u8]) -> (u16, Vec<Replica>) {
    for _ in 0..50 {
        let first = match Replica::start(SocketAddr::new(ip(hosts[0]), 0)) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let port = first.addr.port();
        let mut all = vec![first];
        let mut ok = true;
        for &h in &hosts[1..] {
            match Replica::start(SocketAddr::new(ip(h), port)) {
                Ok(r) => all.push(r),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return (port, all);
        }
    }
    panic!("no port free on every replica address");
}

/// One health check through `pool`, bounded by `timeout`.
pub async fn check(pool: &Pool, timeout: Duration) -> Result<(), Status> {
    let mut client = HealthClient::new(pool.clone());
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout + Duration::from_millis(500), client.check(request)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(Status::deadline_exceeded("test timeout")),
    }
}

/// Polls `condition` every millisecond until it holds or `limit` passes; returns how long
/// it took.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    condition().then(|| started.elapsed())
}

/// The pool's addresses as strings.
pub fn addresses(pool: &Pool) -> Vec<String> {
    pool.addresses().iter().map(|a| a.to_string()).collect()
}

/// An authoritative DNS server for one zone on 127.0.0.1 (UDP and TCP, one port), whose
/// records can be changed while it runs.
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    origin: Name,
    serial: AtomicU64,
    server: Option<Server<Catalog>>,
}

impl Dns {
    pub async fn start(origin: &str) -> Dns {
        let origin = Name::from_str(origin).unwrap();
        let zone = Arc::new(InMemoryZoneHandler::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(
            Name::from_str(&format!("ns.{origin}")).unwrap(),
            Name::from_str(&format!("admin.{origin}")).unwrap(),
            1,
            3600,
            600,
            86400,
            0,
        );
        zone.upsert(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1)
            .await;
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let mut server = Server::new(catalog);
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Dns {
            addr,
            zone,
            origin,
            serial: AtomicU64::new(1),
            server: Some(server),
        }
    }

    fn name(&self, name: &str) -> Name {
        Name::from_str(name).unwrap()
    }

    fn next_serial(&self) -> u32 {
        self.serial.fetch_add(1, Ordering::SeqCst) as u32 + 1
    }

    /// Replaces the A records of `name` (empty: removes them).
    pub async fn set_a(&self, name: &str, ips: &[IpAddr]) {
        let n = self.name(name);
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&n), RecordType::A));
        let serial = self.next_serial();
        for ip in ips {
            let IpAddr::V4(v4) = ip else { continue };
            self.zone
                .upsert(Record::from_rdata(n.clone(), 0, RData::A(A(*v4))), serial)
                .await;
        }
    }

    /// Replaces the SRV records of `name`: (priority, weight, port, target).
    pub async fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let n = self.name(name);
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&n), RecordType::SRV));
        let serial = self.next_serial();
        for (priority, weight, port, target) in records {
            let srv = SRV::new(*priority, *weight, *port, self.name(target));
            self.zone
                .upsert(Record::from_rdata(n.clone(), 0, RData::SRV(srv)), serial)
                .await;
        }
    }

    /// Stops answering.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.shutdown_gracefully().await;
        }
    }

    /// The zone's origin.
    pub fn origin(&self) -> &Name {
        &self.origin
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET over plain HTTP/1.0; the whole answer, or `None` if nothing answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A real etcd (Debian's etcd-server) on free loopback ports with a data dir of its own;
/// killed and removed on drop.
pub struct Etcd {
    pub addr: SocketAddr,
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
}

impl Etcd {
    pub fn start() -> Etcd {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let client = free_port();
        let peer = free_port();
        let dir = std::env::temp_dir().join(format!(
            "resilient-etcd-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let child = std::process::Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("test={p}")])
            .args([
                "--initial-cluster-state",
                "new",
                "--log-level",
                "error",
                "--logger",
                "zap",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "cannot start etcd: is Debian's etcd-server installed? (scripts/install-deps.sh)",
            );
        let addr: SocketAddr = ([127, 0, 0, 1], client).into();
        let mut etcd = Etcd {
            addr,
            child: Some(child),
            dir,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if http_get(addr, "/health").is_some_and(|r| r.contains("\"true\"")) {
                return etcd;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd.kill();
        panic!("etcd did not become healthy within 15 s");
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
