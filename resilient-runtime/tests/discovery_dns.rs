//! DNS targets against a real (in-process) authoritative DNS server whose records change
//! while replicas (tonic servers on 127.0.0.2, .3, ... at one port) take calls.
#![cfg(feature = "dns")]

mod discovery_support;

use std::time::{Duration, Instant};

use discovery_support::{Dns, Replica, addresses, check, eventually, ip, replicas};
use resilient_runtime::discover::{DnsOptions, ErrorKind, IpFamily};
use resilient_runtime::{Balance, Pool, PoolBuilder};
use tonic::Code;

const ZONE: &str = "nova.svc.cluster.local.";
const NAME: &str = "auth-service.nova.svc.cluster.local.";
const CALL: Duration = Duration::from_secs(2);

fn builder(dns: &Dns, name: &str, port: Option<u16>, refresh: Duration) -> PoolBuilder {
    let target = match port {
        Some(p) => format!("dns://{}/{name}:{p}", dns.addr),
        None => format!("dns://{}/{name}", dns.addr),
    };
    Pool::builder(&target)
        .refresh_interval(refresh)
        .min_re_resolve_interval(Duration::from_millis(50))
        .dns(
            DnsOptions::default()
                .family(IpFamily::V4)
                .timeout(Duration::from_millis(300))
                .attempts(1),
        )
}

fn at(port: u16, hosts: &[u8]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| format!("127.0.0.{h}:{port}"))
        .collect()
}

/// Calls until `replica` has had a call; how long that took.
async fn until_used(pool: &Pool, replica: &Replica, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let before = replica.hits();
    while started.elapsed() < limit {
        let _ = check(pool, CALL).await;
        if replica.hits() > before {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_scale_up_scale_down_and_a_replaced_replica() {
    let (port, reps) = replicas(&[2, 3, 4, 5]);
    let dns = Dns::start(ZONE).await;
    dns.set_a(NAME, &[ip(2), ip(3)]).await;
    let refresh = Duration::from_millis(300);
    let pool = builder(&dns, NAME, Some(port), refresh)
        .balance(Balance::RoundRobin)
        .build_resolved()
        .await
        .unwrap();
    assert_eq!(addresses(&pool), at(port, &[2, 3]));
    for _ in 0..20 {
        check(&pool, CALL).await.unwrap();
    }
    assert_eq!((reps[0].hits(), reps[1].hits()), (10, 10));

    // Scale up: the new pod is used within one refresh interval.
    dns.set_a(NAME, &[ip(2), ip(3), ip(4)]).await;
    let took = until_used(&pool, &reps[2], Duration::from_secs(3))
        .await
        .expect("new replica never used");
    assert!(took <= refresh + Duration::from_millis(200), "{took:?}");

    // Scale down: the removed pod gets no more calls.
    dns.set_a(NAME, &[ip(2), ip(4)]).await;
    eventually(Duration::from_secs(2), || {
        addresses(&pool) == at(port, &[2, 4])
    })
    .await
    .expect("scale down not seen");
    let before = reps[1].hits();
    for _ in 0..30 {
        check(&pool, CALL).await.unwrap();
    }
    assert_eq!(reps[1].hits(), before);

    // A replica replaced by another at a new address.
    dns.set_a(NAME, &[ip(4), ip(5)]).await;
    eventually(Duration::from_secs(2), || {
        addresses(&pool) == at(port, &[4, 5])
    })
    .await
    .expect("replacement not seen");
    let before = (reps[0].hits(), reps[3].hits());
    for _ in 0..20 {
        check(&pool, CALL).await.unwrap();
    }
    assert_eq!(reps[0].hits(), before.0);
    assert!(reps[3].hits() >= before.1 + 5);
    assert!(pool.resolution().generation >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_survive_a_membership_change() {
    let (port, reps) = replicas(&[2, 3]);
    reps[0].set_delay(Duration::from_millis(600));
    let dns = Dns::start(ZONE).await;
    dns.set_a(NAME, &[ip(2)]).await;
    let pool = builder(&dns, NAME, Some(port), Duration::from_millis(100))
        .build_resolved()
        .await
        .unwrap();

    let slow = tokio::spawn({
        let pool = pool.clone();
        async move { check(&pool, CALL).await }
    });
    eventually(Duration::from_secs(2), || reps[0].hits() == 1)
        .await
        .unwrap();
    dns.set_a(NAME, &[ip(3)]).await;
    eventually(Duration::from_secs(2), || {
        addresses(&pool) == at(port, &[3])
    })
    .await
    .expect("change not seen");
    assert!(
        !slow.is_finished(),
        "the slow call should still be in flight"
    );
    // The endpoint left the pool while its call was running; the call still succeeds.
    slow.await.unwrap().unwrap();
    check(&pool, CALL).await.unwrap();
    assert_eq!(reps[1].hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_without_records_is_a_clear_error_and_calls_fail_at_once() {
    let dns = Dns::start(ZONE).await;
    let missing = "nobody.nova.svc.cluster.local.";
    let e = builder(&dns, missing, Some(8083), Duration::from_secs(30))
        .build_resolved()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoEndpoints, "{e}");
    assert!(e.to_string().contains(missing), "{e}");
    assert!(
        e.to_string().contains(&dns.addr.to_string()),
        "names the target: {e}"
    );

    let pool = builder(&dns, missing, Some(8083), Duration::from_secs(30))
        .build()
        .unwrap();
    pool.ready().await;
    let mut took = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let status = check(&pool, CALL).await.unwrap_err();
        took.push(started.elapsed());
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("no endpoints for"), "{status:?}");
        assert!(status.message().contains(missing), "{status:?}");
    }
    took.sort();
    let (p50, p99, max) = (took[100], took[198], took[199]);
    println!("BENCH no-endpoints: 200 calls, p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p50 < Duration::from_millis(1), "p50 {p50:?}");
    // Generous: a busy 2-core machine may preempt a call or two.
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_errors_keep_the_last_good_endpoints() {
    let (port, _reps) = replicas(&[2]);
    let mut dns = Dns::start(ZONE).await;
    dns.set_a(NAME, &[ip(2)]).await;
    let pool = builder(&dns, NAME, Some(port), Duration::from_millis(100))
        .build_resolved()
        .await
        .unwrap();

    // The name loses its records: an error, the set stays.
    dns.set_a(NAME, &[]).await;
    eventually(Duration::from_secs(2), || {
        pool.resolution().last_error.is_some()
    })
    .await
    .expect("error not reported");
    let e = pool.resolution().last_error.unwrap();
    assert_eq!(e.kind(), ErrorKind::NoEndpoints, "{e}");
    assert_eq!(addresses(&pool), at(port, &[2]));
    check(&pool, CALL).await.unwrap();

    // The records come back, then the DNS server goes away.
    dns.set_a(NAME, &[ip(2)]).await;
    eventually(Duration::from_secs(2), || {
        pool.resolution().last_error.is_none()
    })
    .await
    .unwrap();
    dns.stop().await;
    eventually(Duration::from_secs(3), || {
        pool.resolution()
            .last_error
            .is_some_and(|e| e.kind() == ErrorKind::Unreachable)
    })
    .await
    .expect("dns outage not reported");
    assert_eq!(addresses(&pool), at(port, &[2]));
    check(&pool, CALL).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_name_targets_and_ports() {
    let (port, reps) = replicas(&[2, 3, 4]);
    let dns = Dns::start(ZONE).await;
    dns.set_a("pod-a.auth-service.nova.svc.cluster.local.", &[ip(2)])
        .await;
    dns.set_a("pod-b.auth-service.nova.svc.cluster.local.", &[ip(3)])
        .await;
    dns.set_a("pod-c.auth-service.nova.svc.cluster.local.", &[ip(4)])
        .await;
    dns.set_a("pod-d.auth-service.nova.svc.cluster.local.", &[ip(5)])
        .await;
    let srv = "_grpc._tcp.auth-service.nova.svc.cluster.local.";
    dns.set_srv(
        srv,
        &[
            (0, 100, port, "pod-a.auth-service.nova.svc.cluster.local."),
            (0, 100, port, "pod-b.auth-service.nova.svc.cluster.local."),
            // port 0 cannot be dialled: left out, whatever its priority
            (0, 100, 0, "pod-d.auth-service.nova.svc.cluster.local."),
            // a backup at a worse priority: not used while the others are listed
            (10, 100, port, "pod-c.auth-service.nova.svc.cluster.local."),
        ],
    )
    .await;
    let pool = builder(&dns, srv, None, Duration::from_millis(100))
        .build_resolved()
        .await
        .unwrap();
    assert_eq!(addresses(&pool), at(port, &[2, 3]));
    for _ in 0..10 {
        check(&pool, CALL).await.unwrap();
    }
    assert_eq!(reps[0].hits() + reps[1].hits(), 10);
    assert_eq!(reps[2].hits(), 0);
}

/// A pool whose name had no records yet (a headless Service before its first pod is
/// ready) does not wait a whole refresh interval once records appear: a call that finds
/// no endpoint asks for a re-resolution, and so does an empty answer, with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pool_looks_again_soon_with_or_without_calls() {
    let (port, reps) = replicas(&[2]);
    let dns = Dns::start(ZONE).await;
    let quiet = "quiet.nova.svc.cluster.local.";
    // A refresh interval far longer than the test.
    let called = builder(&dns, NAME, Some(port), Duration::from_secs(600))
        .build()
        .unwrap();
    let idle = builder(&dns, quiet, Some(port), Duration::from_secs(600))
        .build()
        .unwrap();
    called.ready().await;
    idle.ready().await;
    assert!(check(&called, CALL).await.is_err());
    dns.set_a(NAME, &[ip(2)]).await;
    dns.set_a(quiet, &[ip(2)]).await;

    let started = Instant::now();
    let mut failed = 0;
    while check(&called, CALL).await.is_err() {
        failed += 1;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{failed} calls failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reps[0].hits(), 1);
    // Nobody calls the other pool: its own backoff (1 s, 2 s, ...) finds the records.
    let seen = eventually(Duration::from_secs(8), || {
        addresses(&idle) == at(port, &[2])
    })
    .await;
    assert!(seen.is_some(), "the idle pool never resolved again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_triggers_an_early_re_resolution() {
    let (port, mut reps) = replicas(&[2, 3]);
    let dns = Dns::start(ZONE).await;
    dns.set_a(NAME, &[ip(2), ip(3)]).await;
    // A refresh interval far longer than the test: only an early re-resolution helps.
    let pool = builder(&dns, NAME, Some(port), Duration::from_secs(600))
        .build_resolved()
        .await
        .unwrap();
    reps[1].kill();
    dns.set_a(NAME, &[ip(2)]).await;
    let started = Instant::now();
    let mut failed = 0;
    while addresses(&pool) != at(port, &[2]) && started.elapsed() < Duration::from_secs(5) {
        if check(&pool, CALL).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(addresses(&pool), at(port, &[2]), "not re-resolved early");
    assert!((1..=3).contains(&failed), "{failed} failed calls");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_dns_membership_change_latency() {
    let (port, reps) = replicas(&[2, 3, 4]);
    let dns = Dns::start(ZONE).await;
    dns.set_a(NAME, &[ip(2)]).await;
    let refresh = Duration::from_millis(500);
    let pool = builder(&dns, NAME, Some(port), refresh)
        .build_resolved()
        .await
        .unwrap();
    let mut worst = Duration::ZERO;
    let mut all = Vec::new();
    for (i, set) in [vec![2, 3], vec![2, 3, 4], vec![3, 4], vec![2, 3, 4]]
        .into_iter()
        .enumerate()
    {
        // Changes land at varied points of the refresh cycle.
        tokio::time::sleep(Duration::from_millis(97 * i as u64)).await;
        let ips: Vec<_> = set.iter().map(|h| ip(*h)).collect();
        let want = at(port, &set);
        dns.set_a(NAME, &ips).await;
        let took = eventually(Duration::from_secs(3), || addresses(&pool) == want)
            .await
            .expect("change not seen");
        // ... and the new member takes calls right away.
        let newest = &reps[usize::from(*set.last().unwrap()) - 2];
        let used = until_used(&pool, newest, Duration::from_secs(1)).await;
        assert!(used.is_some());
        all.push(took);
        worst = worst.max(took);
    }
    println!("BENCH dns-membership: refresh {refresh:?}, seen after {all:?}, worst {worst:?}");
    assert!(worst <= refresh + Duration::from_millis(150), "{worst:?}");
}
