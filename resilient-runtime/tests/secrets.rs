//! Secrets never leak: a Consul token, etcd credentials (and the token etcd gives for
//! them) and a TLS private key are searched for in everything a failing run produces:
//! every tracing event at TRACE level (ours and the libraries'), `Debug` and `Display` of
//! every option, builder, pool, error and status, and the metrics text. The registries
//! here are unreachable, or stand-ins that echo the secret back in their errors.
#![cfg(all(feature = "consul", feature = "etcd", feature = "tls"))]

mod discovery_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use discovery_support::free_port;
use resilient_runtime::Pool;
use resilient_runtime::discover::{
    Address, ConsulOptions, ConsulRegistration, EtcdOptions, EtcdRegistration, Secret,
};
use tonic::transport::{ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CONSUL_TOKEN: &str = "b1gs3cr3t-c0nsul-t0ken-4f2a";
const ETCD_PASSWORD: &str = "etcd-pa55w0rd-7e1c";
const ETCD_TOKEN: &str = "etcd-t0ken-from-auth-9b3d";

/// Everything tracing printed, at every level, from every crate.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A one-thread HTTP/1.1 stand-in: answers each request with `respond(request text)`.
fn stand_in(respond: impl Fn(&str) -> (u16, String) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as much body as Content-Length says.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let (status, body) = respond(&String::from_utf8_lossy(&request));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn header<'a>(request: &'a str, name: &str) -> &'a str {
    request
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

fn unreachable_addr() -> Address {
    Address::from_ip([127, 0, 0, 1].into(), free_port())
}

/// Collects the text of everything a run shows.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: &str, text: impl Into<String>) {
        self.0.push((what.to_string(), text.into()));
    }
    fn both<T: std::fmt::Debug + std::fmt::Display>(&mut self, what: &str, value: &T) {
        self.add(&format!("{what} (Display)"), value.to_string());
        self.add(&format!("{what} (Debug)"), format!("{value:?}"));
    }
}

fn assert_absent(seen: &Seen, needles: &[(&str, String)]) {
    let log = String::from_utf8_lossy(&captured().lock().unwrap()).to_string();
    let mut all = seen.0.clone();
    all.push(("tracing output".to_string(), log));
    for (name, needle) in needles {
        for (what, text) in &all {
            if let Some(i) = text.find(needle.as_str()) {
                let from = i.saturating_sub(200);
                panic!(
                    "{name} found in {what}: ...{}...",
                    &text[from..(i + needle.len() + 50).min(text.len())]
                );
            }
        }
    }
}

/// A PEM key's secret parts: each base64 line, and a stretch of its bytes as `Debug`
/// of a byte vector prints them.
fn key_needles(key_pem: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(|l| ("tls key (base64 line)", l.to_string()))
        .collect();
    let bytes = key_pem.as_bytes();
    let window = format!("{:?}", &bytes[60..76]);
    out.push((
        "tls key (bytes)",
        window.trim_matches(['[', ']']).to_string(),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_show_in_logs_messages_debug_or_metrics() {
    captured();
    let mut seen = Seen::default();
    let token = Secret::new(CONSUL_TOKEN);

    // --- Consul: an unreachable agent, and one that echoes the token in its errors.
    let consul = ConsulOptions::default()
        .agent(unreachable_addr())
        .token(token.clone())
        .timeout(Duration::from_millis(300));
    seen.add("ConsulOptions", format!("{consul:?}"));
    let builder = Pool::builder("consul:///auth-service?dc=eu1")
        .consul(consul.clone())
        .first_resolution_wait(Duration::from_secs(2));
    seen.add("PoolBuilder (consul)", format!("{builder:?}"));
    let e = builder.build_resolved().await.unwrap_err();
    seen.both("consul unreachable", &e);
    let e = ConsulRegistration::new("auth-service", "127.0.0.2:8083".parse().unwrap())
        .options(consul.clone())
        .register()
        .await
        .unwrap_err();
    seen.both("consul registration unreachable", &e);

    let echo = stand_in(|request| {
        let token = header(request, "x-consul-token");
        (
            403,
            format!("ACL not found: token {token} lacks permission"),
        )
    });
    let echoing = consul.clone().agent(Address::from(echo));
    let pool = Pool::builder("consul:///auth-service")
        .consul(echoing.clone())
        .build()
        .unwrap();
    pool.ready().await;
    let status = pool.resolution();
    seen.add("consul 403 resolution", format!("{status:?}"));
    let e = status.last_error.expect("the 403 is recorded");
    assert!(e.to_string().contains("403"), "{e}");
    assert!(e.to_string().contains("***"), "the echo is scrubbed: {e}");
    seen.both("consul 403", &e);
    let call = HealthClient::new(pool.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    seen.add("consul call status", format!("{call:?}"));
    seen.add("pool (consul)", format!("{pool:?} {:?}", pool.endpoints()));
    let e = ConsulRegistration::new("auth-service", "127.0.0.2:8083".parse().unwrap())
        .options(echoing)
        .register()
        .await
        .unwrap_err();
    seen.both("consul registration 403", &e);
    drop(pool);

    // --- etcd with credentials: unreachable, and a gateway that echoes them.
    let etcd = EtcdOptions::default()
        .endpoints([unreachable_addr()])
        .credentials("root", Secret::new(ETCD_PASSWORD))
        .timeout(Duration::from_millis(300));
    seen.add("EtcdOptions", format!("{etcd:?}"));
    let builder = Pool::builder("etcd:///nova/services/auth-service")
        .etcd(etcd.clone())
        .first_resolution_wait(Duration::from_secs(2));
    seen.add("PoolBuilder (etcd)", format!("{builder:?}"));
    let e = builder.build_resolved().await.unwrap_err();
    seen.both("etcd unreachable", &e);
    let registration = EtcdRegistration::new(
        "nova/services/auth-service",
        "127.0.0.2:8083".parse().unwrap(),
    )
    .options(etcd.clone());
    seen.add("EtcdRegistration", format!("{registration:?}"));
    let e = registration.register().await.unwrap_err();
    seen.both("etcd registration unreachable", &e);

    let echo = stand_in(|request| {
        if request.starts_with("POST /v3/auth/authenticate") {
            return (200, format!(r#"{{"header":{{}},"token":"{ETCD_TOKEN}"}}"#));
        }
        let token = header(request, "authorization");
        let body = request.split("\r\n\r\n").nth(1).unwrap_or("");
        (
            401,
            format!(
                r#"{{"error":"etcdserver: permission denied","code":7,"message":"permission denied for token {token}; request {}"}}"#,
                body.replace('"', "'")
            ),
        )
    });
    let echoing = etcd.clone().endpoints([Address::from(echo)]);
    let pool = Pool::builder("etcd:///nova/services/auth-service")
        .etcd(echoing.clone())
        .build()
        .unwrap();
    pool.ready().await;
    let e = pool.resolution().last_error.expect("the error is recorded");
    assert!(e.to_string().contains("permission denied"), "{e}");
    seen.both("etcd permission denied", &e);
    seen.add("pool (etcd)", format!("{pool:?}"));
    let e = EtcdRegistration::new(
        "nova/services/auth-service",
        "127.0.0.2:8083".parse().unwrap(),
    )
    .options(echoing)
    .register()
    .await
    .unwrap_err();
    seen.both("etcd registration permission denied", &e);
    drop(pool);

    // --- TLS with a client key: a failing connection, every printable piece.
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["auth-service.nova.svc.cluster.local".into()])
            .unwrap();
    let key_pem = signing_key.serialize_pem();
    let identity = Identity::from_pem(cert.pem(), &key_pem);
    let tls = ClientTlsConfig::new().identity(identity.clone());
    let dead = free_port();
    let builder = Pool::builder(&format!("static:///127.0.0.1:{dead}"))
        .tls(tls)
        .tls_identity(identity);
    seen.add("PoolBuilder (tls)", format!("{builder:?}"));
    let pool = builder.build_resolved().await.unwrap();
    let status = HealthClient::new(pool.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    seen.add("tls call status", format!("{status:?} {status}"));
    seen.add("pool (tls)", format!("{pool:?} {:?}", pool.endpoints()));
    seen.add("tls resolution", format!("{:?}", pool.resolution()));

    // --- Metrics text.
    #[cfg(feature = "metrics")]
    seen.add("metrics", resilient_runtime::Metrics::new().encode());

    // Let background tasks log what they log.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut needles = vec![
        ("consul token", CONSUL_TOKEN.to_string()),
        ("etcd password", ETCD_PASSWORD.to_string()),
        ("etcd token", ETCD_TOKEN.to_string()),
    ];
    needles.extend(key_needles(&key_pem));
    assert_absent(&seen, &needles);

    // The run did produce what is searched.
    let log = String::from_utf8_lossy(&captured().lock().unwrap()).to_string();
    assert!(log.contains("resolution failed"), "tracing was captured");
    assert!(seen.0.len() > 20);
}

/// A real etcd with authentication on: registration and a pool work with the right
/// credentials; a wrong password is an error that says so and shows neither password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: scripts/test-all.sh installs it"]
async fn etcd_with_authentication() {
    captured();
    let etcd = discovery_support::Etcd::start();
    let url = format!("http://{}", etcd.addr);
    let ctl = |args: &[&str]| {
        std::process::Command::new("etcdctl")
            .args(["--endpoints", &url])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl")
    };
    let user = format!("root:{ETCD_PASSWORD}");
    let out = ctl(&["user", "add", &user, "--interactive=false"]);
    assert!(out.status.success(), "{out:?}");
    let _ = ctl(&["role", "add", "root"]);
    let _ = ctl(&["user", "grant-role", "root", "root"]);
    let out = ctl(&["auth", "enable"]);
    assert!(out.status.success(), "{out:?}");

    let options = EtcdOptions::default()
        .endpoints([Address::from(etcd.addr)])
        .credentials("root", Secret::new(ETCD_PASSWORD));
    let registration = EtcdRegistration::new(
        "nova/services/auth-service",
        "127.0.0.2:8083".parse().unwrap(),
    )
    .options(options.clone())
    .register()
    .await
    .expect("registers with credentials");
    let pool = Pool::builder("etcd:///nova/services/auth-service")
        .etcd(options.clone())
        .build_resolved()
        .await
        .expect("lists with credentials");
    assert_eq!(discovery_support::addresses(&pool), ["127.0.0.2:8083"]);

    let wrong = "not-the-pa55word";
    let e = Pool::builder("etcd:///nova/services/auth-service")
        .etcd(options.clone().credentials("root", Secret::new(wrong)))
        .build_resolved()
        .await
        .unwrap_err();
    let m = e.to_string();
    println!("etcd wrong password: {m}");
    assert!(m.contains("refused the credentials of user `root`"), "{m}");
    assert!(!m.contains(wrong) && !m.contains(ETCD_PASSWORD), "{m}");
    registration.deregister().await.unwrap();

    let log = String::from_utf8_lossy(&captured().lock().unwrap()).to_string();
    assert!(!log.contains(ETCD_PASSWORD) && !log.contains(wrong));
}
