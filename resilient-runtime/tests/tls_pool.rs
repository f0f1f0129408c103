//! TLS and mTLS from a pool to replicas on 127.0.0.x, with certificates made in the test
//! (rcgen): each endpoint is dialled at its IP and verified against the target's host
//! name; a wrong CA, a wrong name or a refused client certificate is a connection
//! failure (UNAVAILABLE, counted against the endpoint) whose message says what failed.
#![cfg(all(feature = "tls", feature = "dns"))]

mod discovery_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use discovery_support::{Dns, ip};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use resilient_runtime::discover::{DnsOptions, IpFamily};
use resilient_runtime::pool::EndpointState;
use resilient_runtime::{Balance, Ejection, Pool};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const NAME: &str = "auth-service.nova.svc.cluster.local";

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn certificate(&self) -> Certificate {
        Certificate::from_pem(self.pem())
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl Leaf {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

/// A TLS replica serving the standard health service; counts the connections' calls.
struct TlsReplica {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Count<S> {
    inner: S,
    hits: Arc<AtomicU64>,
}

impl<S, R> tower::Service<R> for Count<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, r: R) -> S::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.inner.call(r)
    }
}

fn start(listener: std::net::TcpListener, tls: ServerTlsConfig) -> TlsReplica {
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .layer(tower::layer::layer_fn(move |inner| Count {
                inner,
                hits: counter.clone(),
            }))
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    TlsReplica { addr, hits, task }
}

/// TLS replicas at 127.0.0.`h` for each of `hosts`, one port, one server certificate.
fn replicas(hosts: &[u8], tls: &ServerTlsConfig) -> (u16, Vec<TlsReplica>) {
    for _ in 0..50 {
        let Ok(first) = std::net::TcpListener::bind(SocketAddr::new(ip(hosts[0]), 0)) else {
            continue;
        };
        let port = first.local_addr().unwrap().port();
        let rest: Result<Vec<_>, _> = hosts[1..]
            .iter()
            .map(|h| std::net::TcpListener::bind(SocketAddr::new(ip(*h), port)))
            .collect();
        if let Ok(rest) = rest {
            let all = std::iter::once(first)
                .chain(rest)
                .map(|l| start(l, tls.clone()))
                .collect();
            return (port, all);
        }
    }
    panic!("no port free on every replica address");
}

fn static_target(port: u16, hosts: &[u8]) -> String {
    let list: Vec<String> = hosts
        .iter()
        .map(|h| format!("127.0.0.{h}:{port}"))
        .collect();
    format!("static:///{}", list.join(","))
}

async fn check(pool: &Pool) -> Result<(), tonic::Status> {
    let mut client = HealthClient::new(pool.clone());
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(3));
    match tokio::time::timeout(Duration::from_secs(4), client.check(request)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(tonic::Status::deadline_exceeded("test timeout")),
    }
}

fn server_tls(leaf: &Leaf) -> ServerTlsConfig {
    ServerTlsConfig::new().identity(leaf.identity())
}

/// A DNS name resolving to pod IPs, certificates issued for the name only: the handshake
/// verifies the name, not the IP, on every endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_target_verifies_the_service_name_on_every_pod_ip() {
    let ca = Ca::new("nova test ca");
    let (port, reps) = replicas(&[2, 3], &server_tls(&ca.server(&[NAME])));
    let dns = Dns::start("nova.svc.cluster.local.").await;
    dns.set_a(&format!("{NAME}."), &[ip(2), ip(3)]).await;

    let pool = Pool::builder(&format!("dns://{}/{NAME}:{port}", dns.addr))
        .dns(DnsOptions::default().family(IpFamily::V4))
        .balance(Balance::RoundRobin)
        .tls(ClientTlsConfig::new().ca_certificate(ca.certificate()))
        .build_resolved()
        .await
        .unwrap();
    for _ in 0..20 {
        check(&pool)
            .await
            .expect("handshake against the service name");
    }
    for r in &reps {
        assert!(r.hits.load(Ordering::SeqCst) >= 10, "{} got calls", r.addr);
    }
}

/// SRV targets verify the service name without its `_grpc._tcp.` labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_target_verifies_the_name_without_its_service_labels() {
    let ca = Ca::new("nova test ca");
    let (port, _reps) = replicas(&[2], &server_tls(&ca.server(&[NAME])));
    let dns = Dns::start("nova.svc.cluster.local.").await;
    dns.set_a("pod-a.nova.svc.cluster.local.", &[ip(2)]).await;
    dns.set_srv(
        &format!("_grpc._tcp.{NAME}."),
        &[(0, 100, port, "pod-a.nova.svc.cluster.local.")],
    )
    .await;
    let pool = Pool::builder(&format!("dns://{}/_grpc._tcp.{NAME}", dns.addr))
        .dns(DnsOptions::default().family(IpFamily::V4))
        .tls(ClientTlsConfig::new().ca_certificate(ca.certificate()))
        .build_resolved()
        .await
        .unwrap();
    check(&pool)
        .await
        .expect("handshake against the service name");
}

/// Static targets verify each endpoint's own host (an IP SAN), or one name given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_target_verifies_the_ip_or_the_name_given() {
    let ca = Ca::new("nova test ca");
    let (port, _reps) = replicas(&[2], &server_tls(&ca.server(&["127.0.0.2", NAME])));
    let tls = ClientTlsConfig::new().ca_certificate(ca.certificate());
    let by_ip = Pool::builder(&static_target(port, &[2]))
        .tls(tls.clone())
        .build_resolved()
        .await
        .unwrap();
    check(&by_ip).await.expect("verified against the IP SAN");
    let by_name = Pool::builder(&static_target(port, &[2]))
        .tls(tls)
        .tls_server_name(NAME)
        .build_resolved()
        .await
        .unwrap();
    check(&by_name).await.expect("verified against the name");
}

/// `https://host:port` targets: allowed with TLS settings, refused without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_need_tls_and_work_with_it() {
    let e = Pool::builder("https://localhost:8443").build().unwrap_err();
    assert!(e.to_string().contains("PoolBuilder::tls"), "{e}");

    let ca = Ca::new("nova test ca");
    let (port, _reps) = replicas(&[1], &server_tls(&ca.server(&["localhost"])));
    let pool = Pool::builder(&format!("https://localhost:{port}"))
        .dns(DnsOptions::default().family(IpFamily::V4))
        .tls(ClientTlsConfig::new().ca_certificate(ca.certificate()))
        .build_resolved()
        .await
        .unwrap();
    check(&pool)
        .await
        .expect("https://localhost through /etc/hosts");
}

/// A certificate from another CA, or for another name: UNAVAILABLE, naming the endpoint
/// and the certificate problem; counted against the endpoint, which is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_name_is_a_connection_failure_with_a_clear_message() {
    let ca = Ca::new("nova test ca");
    let other = Ca::new("someone else's ca");
    let (port, _reps) = replicas(&[2, 3], &server_tls(&ca.server(&[NAME])));
    let target = static_target(port, &[2, 3]);

    let cases = [
        (
            "wrong ca",
            ClientTlsConfig::new().ca_certificate(other.certificate()),
            NAME,
            "UnknownIssuer",
        ),
        (
            "wrong name",
            ClientTlsConfig::new().ca_certificate(ca.certificate()),
            "billing-service.nova.svc.cluster.local",
            "not valid for name \"billing-service.nova.svc.cluster.local\"",
        ),
    ];
    for (case, tls, name, want) in cases {
        let pool = Pool::builder(&target)
            .balance(Balance::RoundRobin)
            .ejection(Ejection {
                consecutive_failures: 2,
                ..Ejection::default()
            })
            .tls(tls)
            .tls_server_name(name)
            .build_resolved()
            .await
            .unwrap();
        let status = check(&pool).await.unwrap_err();
        println!("TLS {case}: {:?}: {}", status.code(), status.message());
        assert_eq!(status.code(), Code::Unavailable, "{case}: {status:?}");
        let m = status.message();
        assert!(
            m.contains(&format!(":{port} of `static:///")),
            "{case}: {m}"
        );
        assert!(m.contains("invalid peer certificate"), "{case}: {m}");
        assert!(m.contains(want), "{case}: {m}");
        assert!(
            m.contains(&format!("(TLS, verifying `{name}`)")),
            "{case}: {m}"
        );
        for _ in 0..5 {
            assert_eq!(check(&pool).await.unwrap_err().code(), Code::Unavailable);
        }
        let endpoints = pool.endpoints();
        assert!(
            endpoints.iter().all(|e| e.failures >= 2),
            "{case}: {endpoints:?}"
        );
        assert!(
            endpoints.iter().any(|e| e.state == EndpointState::Ejected),
            "{case}: {endpoints:?}"
        );
    }
}

/// mTLS: a server that requires client certificates from its CA accepts the pool's
/// identity, and refuses a pool without one or with one from another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_certificates() {
    let ca = Ca::new("nova test ca");
    let clients = Ca::new("nova clients ca");
    let strangers = Ca::new("strangers ca");
    let tls = server_tls(&ca.server(&[NAME])).client_ca_root(clients.certificate());
    let (port, _reps) = replicas(&[2], &tls);
    let target = static_target(port, &[2]);
    let client_tls = ClientTlsConfig::new().ca_certificate(ca.certificate());

    let with_identity = Pool::builder(&target)
        .tls(client_tls.clone())
        .tls_server_name(NAME)
        .tls_identity(clients.client("web-gateway").identity())
        .build_resolved()
        .await
        .unwrap();
    check(&with_identity)
        .await
        .expect("the client certificate is accepted");

    // The identity can also come inside the tonic config.
    let in_config = Pool::builder(&target)
        .tls(
            client_tls
                .clone()
                .identity(clients.client("web-gateway").identity()),
        )
        .tls_server_name(NAME)
        .build_resolved()
        .await
        .unwrap();
    check(&in_config)
        .await
        .expect("identity in ClientTlsConfig");

    for (case, identity) in [
        ("no client certificate", None),
        (
            "a client certificate from another CA",
            Some(strangers.client("intruder").identity()),
        ),
    ] {
        let mut builder = Pool::builder(&target)
            .tls(client_tls.clone())
            .tls_server_name(NAME);
        if let Some(id) = identity {
            builder = builder.tls_identity(id);
        }
        let pool = builder.build_resolved().await.unwrap();
        let status = check(&pool).await.unwrap_err();
        println!("mTLS {case}: {:?}: {}", status.code(), status.message());
        assert_eq!(status.code(), Code::Unavailable, "{case}: {status:?}");
        assert!(
            status.message().contains(&format!("127.0.0.2:{port}")),
            "{case}: {status:?}"
        );
        assert_eq!(pool.endpoints()[0].failures, 1, "{case}");
    }
}

/// Health probes go over the same TLS channel: they pass against the right CA, and a
/// certificate problem makes them fail, keeping the endpoint out of rotation.
#[cfg(feature = "health")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_use_the_tls_channel() {
    use resilient_runtime::pool::{Health, HealthCheck};

    let ca = Ca::new("nova test ca");
    let other = Ca::new("someone else's ca");
    let (port, _reps) = replicas(&[2], &server_tls(&ca.server(&[NAME])));
    let check = HealthCheck {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        ..HealthCheck::default()
    };
    for (trusted, want) in [(&ca, Health::Serving), (&other, Health::ProbeFailed)] {
        let pool = Pool::builder(&static_target(port, &[2]))
            .tls(ClientTlsConfig::new().ca_certificate(trusted.certificate()))
            .tls_server_name(NAME)
            .health_check(check.clone())
            .build_resolved()
            .await
            .unwrap();
        assert_eq!(pool.endpoints()[0].health, want);
    }
}

/// TLS settings that no channel can be built with (an identity that is not PEM) make every
/// address found unusable: the pool reports that, at once, rather than an empty answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_no_channel_accepts_are_the_error() {
    let target = static_target(discovery_support::free_port(), &[1, 2]);
    let broken = ClientTlsConfig::new().identity(Identity::from_pem("not a cert", "not a key"));
    let started = std::time::Instant::now();
    let error = Pool::builder(&target)
        .tls(broken)
        .build_resolved()
        .await
        .unwrap_err();
    let message = error.to_string();
    println!("unusable TLS settings: {message}");
    assert!(
        message.contains("none of the 2 addresses found can be used: 127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("tls settings"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the pool waited for an answer it already had: {:?}",
        started.elapsed()
    );
}
