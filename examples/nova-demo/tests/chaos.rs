//! The chaos suite: the nova system on loopback under a steady load from the demo's
//! generator, one fault per test, each bounded in time and stopping by itself.
//!
//! Every test checks, where it applies:
//!
//! * no call a breaker admitted ran past its deadline by more than 50 ms, beyond the delay
//!   with which its runtime ran due timers at all (an observer times every outcome; see
//!   `support::deadlines` for the deadline of each RPC and `TimerLateness` for the delay);
//! * while a circuit is open, a caller gets the fallback's answer or the open error in
//!   under 1 ms (timed with resilient clients built in the test process);
//! * the breakers close again within the open time plus the probes' time once the fault
//!   clears, and none is left half-open (or open) at the end;
//! * no cascade: with auth-service hung, user-service answers within its own SLO (the
//!   2 s auth deadline plus a margin), where the same topology on raw tonic clients hangs
//!   until the edge gives up.
//!
//! The tests share the process-wide breaker registry and observer, so they run one at a
//! time (`support::serialize`). `cargo test -p nova-demo --test chaos -- --nocapture`
//! shows what each saw.

mod support;

use std::time::Duration;

use nova_demo::cluster::{ClientMode, Cluster, REFRESH_INTERVAL, Service};
use nova_demo::load::Kind;
use nova_demo::proto::auth::auth_service_client::AuthServiceClient;
use nova_demo::proto::auth::auth_service_resilient::{
    AuthServiceFallback, AuthServiceResilientClient,
};
use nova_demo::proto::auth::{Claims, ValidateTokenRequest};
use nova_demo::proto::media::UploadChunk;
use nova_demo::proto::media::media_service_client::MediaServiceClient;
use nova_demo::proto::media::media_service_resilient::MediaServiceResilientClient;
use nova_demo::services::{Fault, token_for};
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerState, Environment, FallbackCause, Pool, is_circuit_open,
};
use tonic::{Response, Status};

use support::{
    Run, SUMMARY_HEADER, Serial, all_in, check_open_answers, policy, recovery_bound, summary,
    time_calls, wait_until,
};

/// auth-service's deadline (build time).
const AUTH_DEADLINE: Duration = Duration::from_secs(2);

/// media-service's upload deadline (`CHAOS_CONFIG`).
const UPLOAD_DEADLINE: Duration = Duration::from_secs(3);

/// user-service's SLO while auth-service is down: it waits at most the auth deadline,
/// then answers from its cached claims. The margin covers the rest of the request
/// (content-service, for GetUserPosts) and the edge's round trip, in a debug build on a
/// busy machine.
const USER_SLO: Duration = Duration::from_millis(2_300);

/// Healthy traffic before the fault: connections are up and the breakers have seen
/// calls succeed.
const WARM_UP: Duration = Duration::from_secs(5);

/// The healthy start of a test whose fault is on auth-service: the load runs for
/// [`WARM_UP`], and every user-service replica has seen every user, so its
/// cached-claims fallback knows every token the load sends.
async fn warm_up(run: &Run) {
    tokio::time::sleep(WARM_UP).await;
    run.cluster
        .warm_user_caches()
        .await
        .expect("every user-service replica serves every user while all is healthy");
}

/// Answers timed with the circuit open, per client.
const OPEN_CALLS: usize = 500;

/// auth-service's policy, checked against the constants the SLO is written with.
fn auth_policy(run: &Run) -> support::Policy {
    let auth = policy(&run.config, Service::Auth, "ValidateToken");
    assert_eq!(
        auth.deadline, AUTH_DEADLINE,
        "auth-service's build-time deadline"
    );
    auth
}

/// user-service requests per second reaching each of the three replicas.
fn user_rate_per_replica() -> f64 {
    f64::from(support::RATE) * 0.9 / 3.0
}

// ---------------------------------------------------------------------------------------
// Clients in the test process, to time what callers get from an open circuit

/// A fallback that always has an answer.
struct AnyClaims;

impl AuthServiceFallback for AnyClaims {
    async fn validate_token(
        &self,
        request: ValidateTokenRequest,
        _cause: FallbackCause,
    ) -> Result<Response<Claims>, Status> {
        Ok(Response::new(Claims {
            user_id: request.token.trim_start_matches("t-").to_string(),
            roles: Vec::new(),
            expires_at: 0,
        }))
    }
}

/// Two auth-service clients sharing one breaker: one with a fallback, one without.
struct AuthProbe {
    plain: AuthServiceResilientClient<Pool>,
    with_fallback: AuthServiceResilientClient<Pool, AnyClaims>,
}

fn probe_pool(cluster: &Cluster, service: Service) -> Pool {
    Pool::builder(&cluster.target(service))
        .refresh_interval(REFRESH_INTERVAL)
        .build()
        .expect("a valid target")
}

fn probe_runtime(
    spec: &'static resilient_runtime::spec::ServiceSpec,
    config: &RuntimeConfig,
) -> std::sync::Arc<ServiceRuntime> {
    let env = Environment::from_env().unwrap_or(Environment::Production);
    ServiceRuntime::resolve(spec, env, Some(config)).expect("the chaos config")
}

fn token() -> ValidateTokenRequest {
    ValidateTokenRequest {
        token: token_for("probe"),
    }
}

impl AuthProbe {
    /// Connected, with one call answered.
    async fn start(cluster: &Cluster, config: &RuntimeConfig) -> AuthProbe {
        let pool = probe_pool(cluster, Service::Auth);
        let runtime = probe_runtime(AuthServiceResilientClient::<Pool>::spec(), config);
        let plain = AuthServiceResilientClient::with_runtime(
            AuthServiceClient::new(pool.clone()),
            runtime.clone(),
        );
        let with_fallback =
            AuthServiceResilientClient::with_runtime(AuthServiceClient::new(pool), runtime)
                .with_fallback(AnyClaims);
        plain
            .validate_token(token())
            .await
            .expect("auth-service answers");
        AuthProbe {
            plain,
            with_fallback,
        }
    }

    fn breaker(&self) -> &CircuitBreaker {
        self.plain.breaker("ValidateToken").expect("an RPC of auth")
    }

    /// Makes as many calls at once as open the breaker, in the background.
    fn trip(&self) -> tokio::task::JoinSet<()> {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..self.breaker().config().failure_threshold {
            let client = self.plain.clone();
            calls.spawn(async move {
                let _ = client.validate_token(token()).await;
            });
        }
        calls
    }

    /// Times answers from the open circuit: the fallback's, and the open error.
    async fn check_open(&self, name: &str) {
        assert_eq!(self.breaker().state(), CircuitBreakerState::Open, "{name}");
        let fallback = time_calls(OPEN_CALLS, self.with_fallback.clone(), |c| {
            let c = c.clone();
            async move {
                match c.validate_token(token()).await {
                    Ok(claims) if claims.get_ref().user_id == "probe" => Ok(()),
                    other => Err(format!("expected the fallback's claims, got {other:?}")),
                }
            }
        })
        .await;
        let error = time_calls(OPEN_CALLS, self.plain.clone(), |c| {
            let c = c.clone();
            async move {
                match c.validate_token(token()).await {
                    Err(status) if is_circuit_open(&status) => Ok(()),
                    other => Err(format!("expected the open-circuit error, got {other:?}")),
                }
            }
        })
        .await;
        // still open: every call above was answered by the open circuit
        assert_eq!(self.breaker().state(), CircuitBreakerState::Open, "{name}");
        check_open_answers(name, "auth-service fallback", &fallback);
        check_open_answers(name, "auth-service open error", &error);
    }
}

async fn trip_done(mut calls: tokio::task::JoinSet<()>) {
    while calls.join_next().await.is_some() {}
}

// ---------------------------------------------------------------------------------------
// dependency hangs

/// What a hang run saw of user-service while auth-service hung.
struct HangOutcome {
    user: nova_demo::load::PhaseStats,
}

async fn auth_hangs_resilient(turn: &Serial) -> HangOutcome {
    let name = "auth-service hangs";
    let mut run = Run::start(turn, name, ClientMode::Resilient).await;
    let auth = auth_policy(&run);
    let probe = AuthProbe::start(&run.cluster, &run.config).await;
    warm_up(&run).await;

    run.phase("auth-service hangs");
    run.cluster.set_fault(Service::Auth, Fault::Hang);
    let tripping = probe.trip();
    let opened = wait_until(AUTH_DEADLINE * 4, || {
        all_in(
            &run.cluster.breakers(Service::Auth),
            CircuitBreakerState::Open,
        )
    })
    .await;
    let opened = opened.expect("every user-service replica's auth breaker opened");
    let all_open = tokio::time::Instant::now();
    println!(
        "  every auth breaker opened {:.2} s after the hang",
        opened.as_secs_f64()
    );
    trip_done(tripping).await;

    run.phase("auth-service hung, circuit open");
    probe.check_open(name).await;
    // the fault clears while every circuit is still open: no probe is on its way to a
    // hung replica, each breaker closes within what is left of its open time + probes
    tokio::time::sleep_until(all_open + auth.open_for * 2 / 3).await;

    run.phase("auth-service back");
    run.cluster.set_fault(Service::Auth, Fault::Healthy);
    let bound = recovery_bound(auth, user_rate_per_replica());
    let closed = wait_until(bound * 2, || {
        all_in(
            &run.cluster.breakers(Service::Auth),
            CircuitBreakerState::Closed,
        )
    })
    .await;
    report_recovery(name, closed, bound);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let finished = run.finish(Duration::from_secs(3)).await;
    HangOutcome {
        user: finished.of(
            Service::User,
            &["auth-service hangs", "auth-service hung, circuit open"],
        ),
    }
}

async fn auth_hangs_raw(turn: &Serial) -> HangOutcome {
    let name = "auth-service hangs, raw tonic clients";
    let mut run = Run::start(turn, name, ClientMode::Raw).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.phase("auth-service hangs");
    run.cluster.set_fault(Service::Auth, Fault::Hang);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // every request sent while auth hung waits for the edge's own timeout
    let finished = run
        .finish(support::EDGE_TIMEOUT + Duration::from_secs(1))
        .await;
    HangOutcome {
        user: finished.of(Service::User, &["auth-service hangs"]),
    }
}

fn report_recovery(name: &str, closed: Option<Duration>, bound: Duration) {
    let closed = closed.unwrap_or_else(|| panic!("{name}: the breakers did not close"));
    println!(
        "  every breaker closed {:.2} s after the fault cleared (bound: open time + probes = {:.2} s)",
        closed.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(
        closed <= bound,
        "{name}: the breakers took {closed:?} to close, more than {bound:?}"
    );
}

/// auth-service hangs: user-service's breakers open, it answers from cached claims
/// within its SLO; on raw tonic clients the same topology hangs until the edge's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_hangs_without_cascade() {
    let turn = support::serialize().await;
    let resilient = auth_hangs_resilient(&turn).await;
    let raw = auth_hangs_raw(&turn).await;

    println!(
        "\n  no cascade: user-service while auth-service hangs (auth deadline {} ms, SLO {} ms, edge timeout {} ms)",
        AUTH_DEADLINE.as_millis(),
        USER_SLO.as_millis(),
        support::EDGE_TIMEOUT.as_millis()
    );
    println!("  {SUMMARY_HEADER}");
    println!("  {}", summary("resilient clients", &resilient.user));
    println!("  {}", summary("raw tonic clients", &raw.user));

    let p99 = resilient.user.quantile(0.99);
    assert!(
        p99 < USER_SLO,
        "user-service p99 {p99:?} with auth-service hung, over its {USER_SLO:?} SLO"
    );
    // a timed-out or rejected call goes to the fallback, which knows every token
    assert_eq!(
        resilient.user.count(Kind::Failed),
        0,
        "user-service requests failed with auth-service hung, where its fallback had their claims"
    );
    let raw_p99 = raw.user.quantile(0.99);
    assert!(
        raw_p99 >= support::EDGE_TIMEOUT - Duration::from_millis(50),
        "raw tonic clients: p99 {raw_p99:?}, expected the edge's {:?} timeout",
        support::EDGE_TIMEOUT
    );
    assert!(
        raw.user.count(Kind::Failed) * 2 >= raw.user.requests(),
        "raw tonic clients: most requests should have hung until the edge gave up"
    );
}

// ---------------------------------------------------------------------------------------
// dependency killed

/// Every auth-service replica is killed and removed from DNS (the pools keep the last
/// good set when DNS answers nothing, so they still try the dead addresses): connections
/// are refused, the breakers open after 3 failures, user-service answers from cached
/// claims at once; after a restart the breakers close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_killed() {
    let name = "auth-service killed";
    let turn = support::serialize().await;
    let mut run = Run::start(&turn, name, ClientMode::Resilient).await;
    let auth = auth_policy(&run);
    let probe = AuthProbe::start(&run.cluster, &run.config).await;
    warm_up(&run).await;

    run.phase("auth-service killed");
    for i in 0..3 {
        run.cluster.kill(Service::Auth, i);
    }
    run.cluster.publish(Service::Auth).await;
    trip_done(probe.trip()).await;
    let opened = wait_until(Duration::from_secs(5), || {
        all_in(
            &run.cluster.breakers(Service::Auth),
            CircuitBreakerState::Open,
        )
    })
    .await
    .expect("every user-service replica's auth breaker opened");
    println!(
        "  every auth breaker opened {:.2} s after the kill",
        opened.as_secs_f64()
    );

    run.phase("auth-service down, circuit open");
    probe.check_open(name).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    run.phase("auth-service restarted");
    for i in 0..3 {
        run.cluster
            .restart(Service::Auth, i)
            .expect("the replica restarts on its address");
    }
    run.cluster.publish(Service::Auth).await;
    let bound = recovery_bound(auth, user_rate_per_replica());
    let closed = wait_until(bound * 2, || {
        all_in(
            &run.cluster.breakers(Service::Auth),
            CircuitBreakerState::Closed,
        )
    })
    .await;
    report_recovery(name, closed, bound);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let finished = run.finish(Duration::from_secs(3)).await;
    let down = finished.of(
        Service::User,
        &["auth-service killed", "auth-service down, circuit open"],
    );
    println!("  {SUMMARY_HEADER}");
    println!("  {}", summary("user-service, auth down", &down));
    assert!(
        down.quantile(0.99) < USER_SLO,
        "{name}: user-service p99 {:?} over its SLO",
        down.quantile(0.99)
    );
    // Connections are refused at once, and a failure (unlike an open circuit or a
    // timeout) is not sent to the fallback: each of the three replicas loses the calls
    // that open its breaker, and at most one more that was under way when it opened.
    // Then the fallback, which knows every token, answers everything.
    let threshold = u64::from(probe.breaker().config().failure_threshold);
    assert!(
        down.count(Kind::Failed) <= 3 * (threshold + 1),
        "{name}: {} of {} user-service requests failed",
        down.count(Kind::Failed),
        down.requests()
    );
}

// ---------------------------------------------------------------------------------------
// dependency flapping

/// auth-service goes down and up every second (all replicas killed, then restarted, DNS
/// following) for six seconds: no request waits past user-service's SLO, and once it
/// stays up every breaker closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_flapping() {
    let name = "auth-service flapping";
    let turn = support::serialize().await;
    let mut run = Run::start(&turn, name, ClientMode::Resilient).await;
    let auth = auth_policy(&run);
    warm_up(&run).await;

    run.phase("auth-service flapping");
    for _ in 0..3 {
        for i in 0..3 {
            run.cluster.kill(Service::Auth, i);
        }
        run.cluster.publish(Service::Auth).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 0..3 {
            run.cluster
                .restart(Service::Auth, i)
                .expect("the replica restarts on its address");
        }
        run.cluster.publish(Service::Auth).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    run.phase("auth-service stable");
    let bound = recovery_bound(auth, user_rate_per_replica());
    let closed = wait_until(bound * 2, || {
        all_in(
            &run.cluster.breakers(Service::Auth),
            CircuitBreakerState::Closed,
        )
    })
    .await;
    report_recovery(name, closed, bound);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let finished = run.finish(Duration::from_secs(3)).await;
    let flapping = finished.of(Service::User, &["auth-service flapping"]);
    println!("  {SUMMARY_HEADER}");
    println!("  {}", summary("user-service, flapping", &flapping));
    let validate = finished.call("auth-service", "ValidateToken");
    assert!(
        validate.opened > 0,
        "{name}: the outages never opened a breaker"
    );
    assert!(
        flapping.quantile(0.99) < USER_SLO,
        "{name}: user-service p99 {:?} over its SLO",
        flapping.quantile(0.99)
    );
}

// ---------------------------------------------------------------------------------------
// slow dependency

/// One 1 KiB chunk.
fn probe_upload() -> tokio_stream::Iter<std::vec::IntoIter<UploadChunk>> {
    tokio_stream::iter(vec![UploadChunk {
        user_id: "probe".to_string(),
        data: vec![7u8; 1024],
    }])
}

/// media-service answers after 5 s, beyond the 3 s upload deadline: uploads time out at
/// 3 s, content-service's media breakers open, posts are created without their media
/// (degraded, not failed) and the open circuit answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_dependency() {
    let name = "media-service slow";
    let turn = support::serialize().await;
    let mut run = Run::start(&turn, name, ClientMode::Resilient).await;
    let upload = policy(&run.config, Service::Media, "UploadMedia");
    assert_eq!(
        upload.deadline, UPLOAD_DEADLINE,
        "the chaos config's upload deadline"
    );
    let media = MediaServiceResilientClient::with_runtime(
        MediaServiceClient::new(probe_pool(&run.cluster, Service::Media)),
        probe_runtime(MediaServiceResilientClient::<Pool>::spec(), &run.config),
    );
    media
        .upload_media(probe_upload())
        .await
        .expect("media-service answers");
    let probe_breaker = media
        .breaker("UploadMedia")
        .expect("an RPC of media")
        .clone();
    let uploads = |cluster: &Cluster| -> Vec<CircuitBreaker> {
        cluster
            .breakers(Service::Media)
            .into_iter()
            .filter(|b| b.rpc() == "UploadMedia")
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    run.phase("media-service slow");
    run.cluster.set_fault(
        Service::Media,
        Fault::Slow(UPLOAD_DEADLINE + Duration::from_secs(2)),
    );
    let mut tripping = tokio::task::JoinSet::new();
    for _ in 0..probe_breaker.config().failure_threshold {
        let client = media.clone();
        tripping.spawn(async move {
            let _ = client.upload_media(probe_upload()).await;
        });
    }
    let opened = wait_until(UPLOAD_DEADLINE * 4, || {
        all_in(&uploads(&run.cluster), CircuitBreakerState::Open)
    })
    .await
    .expect("every content-service replica's upload breaker opened");
    println!(
        "  every upload breaker opened {:.2} s after the slowdown",
        opened.as_secs_f64()
    );
    trip_done(tripping).await;

    run.phase("media-service slow, circuit open");
    assert_eq!(probe_breaker.state(), CircuitBreakerState::Open, "{name}");
    let error = time_calls(OPEN_CALLS, media.clone(), |c| {
        let c = c.clone();
        async move {
            match c.upload_media(probe_upload()).await {
                Err(status) if is_circuit_open(&status) => Ok(()),
                other => Err(format!("expected the open-circuit error, got {other:?}")),
            }
        }
    })
    .await;
    assert_eq!(probe_breaker.state(), CircuitBreakerState::Open, "{name}");
    check_open_answers(name, "media-service open error", &error);
    tokio::time::sleep(Duration::from_secs(1)).await;

    run.phase("media-service back");
    run.cluster.set_fault(Service::Media, Fault::Healthy);
    // uploads are one request in ten, over three content-service replicas
    let per_replica = f64::from(support::RATE) * 0.1 / 3.0;
    let bound = recovery_bound(upload, per_replica);
    let closed = wait_until(bound * 2, || {
        all_in(&uploads(&run.cluster), CircuitBreakerState::Closed)
    })
    .await;
    report_recovery(name, closed, bound);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let finished = run.finish(Duration::from_secs(4)).await;
    let slow = &["media-service slow", "media-service slow, circuit open"];
    let posts = finished.of(Service::Content, slow);
    let users = finished.of(Service::User, slow);
    println!("  {SUMMARY_HEADER}");
    println!("  {}", summary("CreatePost, media slow", &posts));
    println!("  {}", summary("user-service, media slow", &users));
    assert_eq!(
        posts.count(Kind::Failed),
        0,
        "{name}: a post failed instead of being created without its media"
    );
    assert!(
        posts.count(Kind::Degraded) > 0,
        "{name}: no post was created without its media"
    );
    assert!(
        posts.worst() < UPLOAD_DEADLINE + Duration::from_millis(300),
        "{name}: CreatePost took {:?}, past the upload deadline",
        posts.worst()
    );
    assert_eq!(
        users.count(Kind::Failed),
        0,
        "{name}: user-service, which does not call media-service, failed"
    );
    let upload_calls = finished.call("media-service", "UploadMedia");
    assert!(upload_calls.timeouts > 0, "{name}: no upload timed out");
}

// ---------------------------------------------------------------------------------------
// rolling restart

/// Each content-service replica in turn is killed, removed from DNS, restarted and
/// published again (one unavailable at a time, as a Deployment rolls): few requests are
/// lost (at most the ejection threshold per client pool and killed replica), no breaker
/// opens, every restarted replica takes traffic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart() {
    let name = "rolling restart of content-service";
    let turn = support::serialize().await;
    let mut run = Run::start(&turn, name, ClientMode::Resilient).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    run.phase("rolling restart");
    for i in 0..3 {
        run.cluster.kill(Service::Content, i);
        run.cluster.publish(Service::Content).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        run.cluster
            .restart(Service::Content, i)
            .expect("the replica restarts on its address");
        run.cluster.publish(Service::Content).await;
        // ready again in every pool before the next one goes
        tokio::time::sleep(REFRESH_INTERVAL + Duration::from_millis(500)).await;
    }

    run.phase("rolled");
    let before = hits(&mut run.cluster, Service::Content);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = hits(&mut run.cluster, Service::Content);
    println!(
        "  content-service calls per replica in 2 s after the roll: {:?}",
        delta(&before, &after)
    );
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "{name}: restarted replica {i} takes no traffic");
    }

    let finished = run.finish(Duration::from_secs(3)).await;
    let rolling = finished.of(Service::User, &["rolling restart"]);
    let posts = finished.of(Service::Content, &["rolling restart"]);
    println!("  {SUMMARY_HEADER}");
    println!("  {}", summary("user-service, rolling", &rolling));
    println!("  {}", summary("CreatePost, rolling", &posts));
    // pools that send to content-service: one per user-service replica, the edge's
    let pools = 4;
    let lost = rolling.count(Kind::Failed) + posts.count(Kind::Failed);
    assert!(
        lost <= 3 * pools * 3,
        "{name}: {lost} requests failed; at most 3 per pool and killed replica"
    );
    let rolled = finished.of(Service::User, &["rolled"]);
    assert_eq!(
        rolled.count(Kind::Failed),
        0,
        "{name}: failures after the roll"
    );
    // one replica down at a time is the pools' business (ejection, re-resolution, a
    // retry on another replica), not the breakers'
    let get_posts = finished.call("content-service", "GetPosts");
    assert_eq!(
        get_posts.opened, 0,
        "{name}: a content-service breaker opened while two replicas served"
    );
}

fn hits(cluster: &mut Cluster, service: Service) -> Vec<u64> {
    cluster.of(service).map(|r| r.faults.hits()).collect()
}

fn delta(before: &[u64], after: &[u64]) -> Vec<u64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

// ---------------------------------------------------------------------------------------
// DNS record changes

/// content-service's records go from three replicas to one and back to three while the
/// replicas stay up: within a refresh interval every pool follows (the unlisted replicas
/// get no more calls, then get calls again), and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_changes_mid_load() {
    let name = "content-service DNS 3 -> 1 -> 3";
    let turn = support::serialize().await;
    let mut run = Run::start(&turn, name, ClientMode::Resilient).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // every pool asks again within one interval (the jitter only shortens it)
    let settle = REFRESH_INTERVAL + Duration::from_secs(1);

    run.phase("records: 1 replica");
    run.cluster.publish_only(Service::Content, &[0]).await;
    tokio::time::sleep(settle).await;
    let before = hits(&mut run.cluster, Service::Content);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = hits(&mut run.cluster, Service::Content);
    let one = delta(&before, &after);
    println!("  calls per replica in 2 s with 1 record: {one:?}");
    assert!(one[0] > 0, "{name}: the listed replica takes no traffic");
    assert_eq!(
        &one[1..],
        &[0, 0],
        "{name}: unlisted replicas still called {settle:?} after the change"
    );

    run.phase("records: 3 replicas");
    run.cluster.publish(Service::Content).await;
    tokio::time::sleep(settle).await;
    let before = hits(&mut run.cluster, Service::Content);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = hits(&mut run.cluster, Service::Content);
    let three = delta(&before, &after);
    println!("  calls per replica in 2 s with 3 records: {three:?}");
    assert!(
        three.iter().all(|&n| n > 0),
        "{name}: a re-listed replica takes no traffic"
    );

    let finished = run.finish(Duration::from_secs(3)).await;
    for (phase, s) in &finished.stats.phases {
        assert_eq!(s.count(Kind::Failed), 0, "{name}: failures in {phase:?}");
    }
}
