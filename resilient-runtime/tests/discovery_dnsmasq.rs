//! End to end against dnsmasq, as a cluster's DNS would serve a headless Service: A
//! records for the Service name, SRV for its port, replicas coming and going through a
//! watched hosts directory.
#![cfg(feature = "dns")]

mod discovery_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use discovery_support::{addresses, check, eventually, free_port, replicas};
use resilient_runtime::discover::{DnsOptions, IpFamily};
use resilient_runtime::{Balance, Pool};

const NAME: &str = "auth-service.nova.svc.cluster.local";
const CALL: Duration = Duration::from_secs(2);

struct Dnsmasq {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Dnsmasq {
    fn start(replica_port: u16) -> Dnsmasq {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("resilient-dnsmasq-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("hosts.d")).unwrap();
        let conf = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             keep-in-foreground\nlog-facility=-\npid-file=\nuser=root\n\
             host-record={NAME},127.0.0.2\nhost-record={NAME},127.0.0.3\n\
             srv-host=_grpc._tcp.{NAME},pod-a.{NAME},{replica_port},0,100\n\
             host-record=pod-a.{NAME},127.0.0.2\n\
             hostsdir={}\nlocal=/cluster.local/\n",
            dir.join("hosts.d").display()
        );
        let file = dir.join("dnsmasq.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new("dnsmasq")
            .arg(format!("--conf-file={}", file.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dnsmasq: is it installed? (scripts/install-deps.sh)");
        Dnsmasq { port, dir, child }
    }

    fn target(&self, rest: &str) -> String {
        format!("dns://127.0.0.1:{}/{rest}", self.port)
    }

    /// A replica joins through the hosts directory (written aside, then moved in, so
    /// that dnsmasq reads it whole).
    fn add_host(&self, file: &str, line: &str) {
        let aside = self.dir.join(file);
        std::fs::write(&aside, format!("{line}\n")).unwrap();
        std::fs::rename(&aside, self.dir.join("hosts.d").join(file)).unwrap();
    }

    fn remove_host(&self, file: &str) {
        std::fs::remove_file(self.dir.join("hosts.d").join(file)).unwrap();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn pool(target: &str, refresh: Duration) -> Pool {
    let started = Instant::now();
    loop {
        let built = Pool::builder(target)
            .refresh_interval(refresh)
            .balance(Balance::RoundRobin)
            .dns(
                DnsOptions::default()
                    .family(IpFamily::V4)
                    .timeout(Duration::from_millis(300)),
            )
            .build_resolved()
            .await;
        match built {
            Ok(p) => return p,
            Err(e) if started.elapsed() > Duration::from_secs(5) => {
                panic!("dnsmasq not answering: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dnsmasq: scripts/test-all.sh installs it"]
async fn a_headless_service_served_by_dnsmasq() {
    let (port, reps) = replicas(&[2, 3, 4]);
    let dns = Dnsmasq::start(port);
    let refresh = Duration::from_millis(300);
    let pool = pool(&dns.target(&format!("{NAME}:{port}")), refresh).await;
    let at = |hosts: &[u8]| -> Vec<String> {
        hosts
            .iter()
            .map(|h| format!("127.0.0.{h}:{port}"))
            .collect()
    };
    assert_eq!(addresses(&pool), at(&[2, 3]));
    for _ in 0..20 {
        check(&pool, CALL).await.unwrap();
    }
    assert_eq!((reps[0].hits(), reps[1].hits()), (10, 10));

    // Scale up: a third pod's record appears.
    let started = Instant::now();
    dns.add_host("pod-c", &format!("127.0.0.4 {NAME}"));
    eventually(Duration::from_secs(3), || {
        addresses(&pool) == at(&[2, 3, 4])
    })
    .await
    .expect("scale up not seen");
    let took = started.elapsed();
    println!("BENCH dnsmasq-membership: refresh {refresh:?}, new pod in the pool after {took:?}");
    // inotify adds a little to the refresh interval
    assert!(took <= refresh + Duration::from_millis(500), "{took:?}");
    let before = reps[2].hits();
    for _ in 0..9 {
        check(&pool, CALL).await.unwrap();
    }
    assert!(reps[2].hits() > before);

    // Scale down: the record goes away.
    dns.remove_host("pod-c");
    eventually(Duration::from_secs(3), || addresses(&pool) == at(&[2, 3]))
        .await
        .expect("scale down not seen");

    // SRV: the record's port, its target's address.
    let srv = pool_srv(&dns, refresh).await;
    assert_eq!(addresses(&srv), at(&[2]));
    check(&srv, CALL).await.unwrap();
}

async fn pool_srv(dns: &Dnsmasq, refresh: Duration) -> Pool {
    pool(&dns.target(&format!("_grpc._tcp.{NAME}")), refresh).await
}
