//! Outlier ejection over real tonic servers: a killed replica still listed, UNAVAILABLE
//! answers, the share limit, panic mode, return after the ejection, missed deadlines.
#![cfg(feature = "discovery")]

mod discovery_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use discovery_support::{Replica, check, eventually, ip, replicas};
use resilient_runtime::pool::EndpointState;
use resilient_runtime::{Balance, Ejection, Pool, is_client_timeout, is_local_reset};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CALL: Duration = Duration::from_secs(2);

fn static_target(port: u16, hosts: &[u8]) -> String {
    let list: Vec<String> = hosts
        .iter()
        .map(|h| format!("127.0.0.{h}:{port}"))
        .collect();
    format!("static:///{}", list.join(","))
}

fn ejected(pool: &Pool) -> usize {
    pool.endpoints()
        .iter()
        .filter(|e| e.state == EndpointState::Ejected)
        .count()
}

/// 100 sequential calls over three replicas; one is killed after the 10th call and stays
/// listed. Returns the failed calls.
async fn failures_after_a_kill(balance: Balance) -> usize {
    let (port, mut reps) = replicas(&[2, 3, 4]);
    let pool = Pool::builder(&static_target(port, &[2, 3, 4]))
        .balance(balance)
        .build_resolved()
        .await
        .unwrap();
    let mut failed = 0;
    for i in 0..100 {
        if i == 10 {
            reps[1].kill();
        }
        if let Err(status) = check(&pool, CALL).await {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(
                status.message().contains(&format!("127.0.0.3:{port}")),
                "names the endpoint: {status:?}"
            );
            failed += 1;
        }
    }
    assert_eq!(ejected(&pool), 1);
    failed
}

/// The same with tonic's own balancer (`Channel::balance_list`), for comparison; each
/// call bounded, the whole run bounded.
async fn tonic_balance_failures() -> usize {
    let (port, mut reps) = replicas(&[2, 3, 4]);
    let endpoints = [2u8, 3, 4].map(|h| {
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.{h}:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
    });
    let channel = tonic::transport::Channel::balance_list(endpoints.into_iter());
    let mut client = HealthClient::new(channel);
    let started = Instant::now();
    let mut failed = 0;
    for i in 0..100 {
        if i == 10 {
            reps[1].kill();
        }
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        request.set_timeout(Duration::from_millis(500));
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(1), client.check(request)).await,
            Ok(Ok(_))
        );
        if !ok {
            failed += 1;
        }
        if started.elapsed() > Duration::from_secs(20) {
            failed += 99 - i;
            break;
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_ejection_cost_of_a_killed_replica() {
    let rr = failures_after_a_kill(Balance::RoundRobin).await;
    let p2c = failures_after_a_kill(Balance::PowerOfTwoChoices).await;
    let tonic = tonic_balance_failures().await;
    println!(
        "BENCH ejection: replica killed while listed, 100 calls: round-robin {rr} failed, \
         p2c {p2c} failed, tonic balance_list {tonic} failed"
    );
    assert!(rr <= 3, "round robin: {rr}");
    assert!(p2c <= 3, "p2c: {p2c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_answers_eject_other_codes_do_not() {
    let (port, reps) = replicas(&[2, 3]);
    let pool = Pool::builder(&static_target(port, &[2, 3]))
        .balance(Balance::RoundRobin)
        .build_resolved()
        .await
        .unwrap();

    // A status that is the caller's problem says nothing about the endpoint.
    let mut client = HealthClient::new(pool.clone());
    for _ in 0..10 {
        let status = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    assert_eq!(ejected(&pool), 0);

    reps[1].set_unavailable(true);
    let mut failed = 0;
    for _ in 0..30 {
        if let Err(s) = check(&pool, CALL).await {
            assert_eq!(s.code(), Code::Unavailable);
            failed += 1;
        }
    }
    assert_eq!(failed, 3, "three UNAVAILABLE answers, then ejected");
    let e = pool.endpoints();
    assert_eq!(e[1].state, EndpointState::Ejected);
    assert_eq!(e[1].failures, 3);
    assert!(e[1].ejected_until.is_some());
    assert_eq!(e[0].state, EndpointState::Active);

    // The metrics show the pool as it stands, and count the ejection.
    #[cfg(feature = "metrics")]
    {
        let text = resilient_runtime::Metrics::new().encode();
        let target = static_target(port, &[2, 3]);
        let line = |series: String| {
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.strip_prefix(' '))
                .map(str::to_owned)
        };
        for (state, n) in [("active", "1"), ("ejected", "1"), ("unhealthy", "0")] {
            let series = format!(r#"pool_endpoints{{target="{target}",state="{state}"}}"#);
            assert_eq!(line(series).as_deref(), Some(n), "{state}:\n{text}");
        }
        let series = format!(r#"pool_ejections_total{{target="{target}"}}"#);
        assert_eq!(line(series).as_deref(), Some("1"), "{text}");
        // So does the dashboard.
        let page = resilient_runtime::dashboard::render();
        assert!(
            page.contains(&format!("{target}: 1 active, 1 ejected\n")),
            "{page}"
        );
        drop((pool, client));
        // The resolver task lets go of the pool once the runtime has dropped it; its
        // endpoints leave the gauges, its ejections stay counted.
        let endpoints = format!(r#"pool_endpoints{{target="{target}""#);
        eventually(Duration::from_secs(5), || {
            !resilient_runtime::Metrics::new()
                .encode()
                .contains(&endpoints)
        })
        .await
        .expect("a dropped pool leaves the gauges");
        let text = resilient_runtime::Metrics::new().encode();
        let series = format!(r#"pool_ejections_total{{target="{target}"}} 1"#);
        assert!(text.lines().any(|l| l == series), "{text}");
    }
}

/// Two clients of one target have a pool each over the same replicas: the endpoint
/// gauge counts each replica once, in the best state a pool sees it in.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_gauge_counts_each_replica_once() {
    let (port, reps) = replicas(&[2, 3]);
    let target = static_target(port, &[2, 3]);
    let build = || {
        Pool::builder(&target)
            .balance(Balance::RoundRobin)
            .build_resolved()
    };
    let (ejecting, other) = (build().await.unwrap(), build().await.unwrap());
    reps[1].set_unavailable(true);
    for _ in 0..10 {
        let _ = check(&ejecting, CALL).await;
    }
    assert_eq!(ejected(&ejecting), 1);
    assert_eq!(ejected(&other), 0);
    let gauge = |state: &str| {
        let series = format!(r#"pool_endpoints{{target="{target}",state="{state}"}} "#);
        resilient_runtime::Metrics::new()
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()).map(str::to_owned))
    };
    assert_eq!(
        gauge("active").as_deref(),
        Some("2"),
        "the other pool still calls it"
    );
    assert_eq!(gauge("ejected").as_deref(), Some("0"));
    drop(other);
    eventually(Duration::from_secs(5), || {
        gauge("ejected").as_deref() == Some("1")
    })
    .await
    .expect("with the other pool gone, the ejected replica shows");
    assert_eq!(gauge("active").as_deref(), Some("1"));
}

/// A request the client cannot send (over its `max_encoding_message_size`) is the
/// caller's mistake: it ejects no endpoint, and the caller gets the status tonic gives
/// without a pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_too_large_to_send_eject_nothing() {
    let (port, _reps) = replicas(&[2, 3]);
    let pool = Pool::builder(&static_target(port, &[2, 3]))
        .balance(Balance::RoundRobin)
        .build_resolved()
        .await
        .unwrap();
    let mut client = HealthClient::new(pool.clone()).max_encoding_message_size(1024);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.2:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut direct = HealthClient::new(channel).max_encoding_message_size(1024);
    let big = || HealthCheckRequest {
        service: "x".repeat(4096),
    };
    let unpooled = direct.check(big()).await.unwrap_err();
    for _ in 0..10 {
        let status = client.check(big()).await.unwrap_err();
        assert_eq!(status.code(), unpooled.code(), "{status:?} / {unpooled:?}");
        assert!(is_local_reset(&status), "{status:?}");
    }
    let e = pool.endpoints();
    assert_eq!(ejected(&pool), 0, "{e:?}");
    assert!(e.iter().all(|e| e.failures == 0), "{e:?}");
    client
        .check(HealthCheckRequest::default())
        .await
        .expect("a request under the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_ends_grows_and_forgives() {
    let (port, mut reps) = replicas(&[2, 3]);
    let base = Duration::from_millis(200);
    let pool = Pool::builder(&static_target(port, &[2, 3]))
        .balance(Balance::RoundRobin)
        .ejection(Ejection {
            base_time: base,
            ..Ejection::default()
        })
        .build_resolved()
        .await
        .unwrap();
    reps[1].kill();
    for _ in 0..10 {
        let _ = check(&pool, CALL).await;
    }
    let first = pool.endpoints()[1].clone();
    assert_eq!(first.state, EndpointState::Ejected);
    assert_eq!((first.failures, first.ejections), (3, 1));

    // Back after the base time, still dead: one call re-ejects it, for twice as long.
    eventually(Duration::from_secs(2), || ejected(&pool) == 0)
        .await
        .unwrap();
    for _ in 0..4 {
        let _ = check(&pool, CALL).await;
    }
    let second = pool.endpoints()[1].clone();
    assert_eq!((second.failures, second.ejections), (4, 2));
    let length = second.ejected_until.unwrap() - Instant::now();
    assert!(length > base + base / 2, "{length:?}");

    // Restarted at the same address: back in rotation after the ejection, and forgiven
    // once it has answered well for a base time.
    let _back = Replica::start(SocketAddr::new(ip(3), port)).unwrap();
    eventually(Duration::from_secs(3), || ejected(&pool) == 0)
        .await
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < base * 2 {
        check(&pool, CALL).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pool.endpoints()[1].ejections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_set_share_is_ejected() {
    let (port, mut reps) = replicas(&[2, 3, 4, 5]);
    let pool = Pool::builder(&static_target(port, &[2, 3, 4, 5]))
        .balance(Balance::RoundRobin)
        .build_resolved()
        .await
        .unwrap();
    for r in &mut reps[1..] {
        r.kill();
    }
    let mut most = 0;
    for _ in 0..60 {
        let _ = check(&pool, CALL).await;
        most = most.max(ejected(&pool));
    }
    assert_eq!(most, 2, "50 % of 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_uses_every_endpoint_when_all_are_ejected() {
    let (port, mut reps) = replicas(&[2, 3]);
    let pool = Pool::builder(&static_target(port, &[2, 3]))
        .balance(Balance::RoundRobin)
        .ejection(Ejection {
            max_ejected_percent: 100,
            ..Ejection::default()
        })
        .build_resolved()
        .await
        .unwrap();
    for r in &mut reps {
        r.kill();
    }
    for _ in 0..6 {
        let _ = check(&pool, CALL).await;
    }
    assert_eq!(ejected(&pool), 2);
    let before: Vec<u64> = pool.endpoints().iter().map(|e| e.requests).collect();
    for _ in 0..10 {
        let status = check(&pool, CALL).await.unwrap_err();
        // Tried, not refused: the error is the endpoint's, not "no endpoints".
        assert!(status.message().contains("endpoint 127.0.0."), "{status:?}");
    }
    let after: Vec<u64> = pool.endpoints().iter().map(|e| e.requests).collect();
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "{before:?} {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_no_endpoint_meets_is_held_against_none() {
    // One replica, then three: all slower than the caller's deadline.
    for hosts in [&[2][..], &[2, 3, 4]] {
        let (port, reps) = replicas(hosts);
        for r in &reps {
            r.set_delay(Duration::from_millis(400));
        }
        let pool = Pool::builder(&static_target(port, hosts))
            .balance(Balance::RoundRobin)
            .build_resolved()
            .await
            .unwrap();
        for _ in 0..6 {
            let status = check(&pool, Duration::from_millis(50)).await.unwrap_err();
            assert!(is_client_timeout(&status), "{status:?}");
        }
        for e in pool.endpoints() {
            assert_eq!((e.failures, e.consecutive_failures), (0, 0), "{e:?}");
            assert_eq!(e.state, EndpointState::Active);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_that_lets_deadlines_pass_while_others_answer_is_ejected() {
    let (port, reps) = replicas(&[2, 3, 4]);
    reps[1].set_delay(Duration::from_secs(5));
    let pool = Pool::builder(&static_target(port, &[2, 3, 4]))
        .balance(Balance::RoundRobin)
        .build_resolved()
        .await
        .unwrap();
    let mut timed_out = 0;
    for _ in 0..15 {
        // tonic's channel enforces the `grpc-timeout` deadline: the pool sees it expire.
        if let Err(status) = check(&pool, Duration::from_millis(100)).await {
            assert!(is_client_timeout(&status), "tonic's own status: {status:?}");
            timed_out += 1;
        }
    }
    // The first miss goes uncounted if no other replica had answered yet.
    assert!(
        (3..=4).contains(&timed_out),
        "{timed_out} timed out: {:?}",
        pool.endpoints()
    );
    let hung = pool
        .endpoints()
        .into_iter()
        .find(|e| e.address.host() == "127.0.0.3")
        .unwrap();
    assert_eq!((hung.state, hung.failures), (EndpointState::Ejected, 3));
    assert_eq!(hung.requests, timed_out);
}
