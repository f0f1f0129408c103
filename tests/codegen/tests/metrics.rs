//! A scripted sequence of failures and recoveries against a real tonic server gives
//! exact metric values. (One test in its own binary: it installs metrics process-wide.)

mod common;

use std::time::Duration;

use codegen_tests::test::echo::v1::echo_service_resilient::{
    EchoServiceFallback, EchoServiceResilientClient,
};
use codegen_tests::test::echo::v1::{EchoReply, EchoRequest};
use common::{req, start};
use resilient_runtime::{FallbackCause, Metrics};
use tonic::{Code, Response, Status};

struct Cached;

impl EchoServiceFallback for Cached {
    async fn echo(
        &self,
        request: EchoRequest,
        _cause: FallbackCause,
    ) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            message: format!("cached {}", request.message),
            index: 0,
        }))
    }
}

/// The value of the series of `name` whose labels include every `labels` pair.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "one series {name}{labels:?} in:\n{text}");
    found[0]
}

#[tokio::test]
async fn a_scripted_outage_gives_exact_metric_values() {
    let metrics = Metrics::install_global();
    let server = start().await;
    let client = EchoServiceResilientClient::connect(server.url())
        .await
        .unwrap();
    let with_fallback = client.clone().with_fallback(Cached);
    let echo = [("service", "echo-service"), ("rpc", "Echo")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = echo.to_vec();
        l.push(extra);
        l
    };
    let fail = |code: Code| {
        let mut r = req("x");
        r.fail_with = code as i32;
        r
    };

    // healthy: 2 successes
    for _ in 0..2 {
        client.echo(req("ok")).await.unwrap();
    }
    // the server answers NOT_FOUND: an error code, but a success for the breaker
    client.echo(fail(Code::NotFound)).await.unwrap_err();
    // 3 UNAVAILABLE: the circuit opens
    for _ in 0..3 {
        client.echo(fail(Code::Unavailable)).await.unwrap_err();
    }
    // 2 calls while open: one rejected outright, one served by the fallback
    let rejected = client.echo(req("y")).await.unwrap_err();
    assert!(resilient_runtime::is_circuit_open(&rejected));
    let served = with_fallback.echo(req("y")).await.unwrap().into_inner();
    assert_eq!(served.message, "cached y");

    let text = metrics.encode();
    assert_eq!(
        value(&text, "circuit_breaker_state", &with(("state", "open"))),
        1.0
    );
    assert_eq!(
        value(&text, "circuit_breaker_state", &with(("state", "closed"))),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "service_requests_total",
            &with(("outcome", "success"))
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "service_requests_total",
            &with(("outcome", "failure"))
        ),
        3.0
    );
    assert_eq!(
        value(&text, "service_errors_total", &with(("code", "NOT_FOUND"))),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "service_errors_total",
            &with(("code", "UNAVAILABLE"))
        ),
        3.0
    );
    assert_eq!(
        value(&text, "circuit_breaker_rejected_calls_total", &echo),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "circuit_breaker_fallbacks_total",
            &with(("cause", "open"))
        ),
        1.0
    );
    let opened = [("from", "closed"), ("to", "open")];
    let mut l = echo.to_vec();
    l.extend(opened);
    assert_eq!(value(&text, "circuit_breaker_transitions_total", &l), 1.0);
    assert_eq!(
        server.hits.echo(),
        6,
        "rejected calls never reached the server"
    );

    // recovery: after the open time (200 ms) one probe closes it (success_threshold 1)
    tokio::time::sleep(Duration::from_millis(260)).await;
    client.echo(req("back")).await.unwrap();
    let text = metrics.encode();
    assert_eq!(
        value(&text, "circuit_breaker_state", &with(("state", "closed"))),
        1.0
    );
    assert_eq!(
        value(&text, "circuit_breaker_state", &with(("state", "open"))),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "service_requests_total",
            &with(("outcome", "success"))
        ),
        4.0
    );
    for (from, to) in [("open", "half_open"), ("half_open", "closed")] {
        let mut l = echo.to_vec();
        l.extend([("from", from), ("to", to)]);
        assert_eq!(
            value(&text, "circuit_breaker_transitions_total", &l),
            1.0,
            "{from} -> {to}"
        );
    }
}
