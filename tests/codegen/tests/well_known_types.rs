//! A package whose RPCs take and return well-known types that the crate generates itself
//! (`compile_well_known_types`): the resilient client, its fallback trait and tonic's code
//! all name `crate::google::protobuf` types, and calls go through to a real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use codegen_tests::google::protobuf::{BoolValue, Empty, Timestamp};
use codegen_tests::test::wkt::v1::clock_service_client::ClockServiceClient;
use codegen_tests::test::wkt::v1::clock_service_resilient::{
    ClockServiceFallback, ClockServiceResilientClient,
};
use codegen_tests::test::wkt::v1::clock_service_server::{ClockService, ClockServiceServer};
use resilient_runtime::client::ServiceRuntime;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::{Environment, FallbackCause};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const SERVER_TIME: i64 = 1_800_000_000;

struct Clock {
    hang: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl ClockService for Clock {
    async fn now(&self, _: Request<Empty>) -> Result<Response<Timestamp>, Status> {
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok(Response::new(Timestamp {
            seconds: SERVER_TIME,
            nanos: 0,
        }))
    }
    async fn flip(&self, r: Request<BoolValue>) -> Result<Response<BoolValue>, Status> {
        Ok(Response::new(BoolValue {
            value: !r.into_inner().value,
        }))
    }
}

/// Answers `Now` with the epoch when the server cannot.
struct Epoch;

impl ClockServiceFallback for Epoch {
    async fn now(
        &self,
        _request: Empty,
        _cause: FallbackCause,
    ) -> Result<Response<Timestamp>, Status> {
        Ok(Response::new(Timestamp::default()))
    }
}

#[tokio::test]
async fn well_known_types_compiled_into_the_crate_go_through_and_fall_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hang = Arc::new(AtomicBool::new(false));
    let clock = Clock { hang: hang.clone() };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ClockServiceServer::new(clock))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let config = RuntimeConfig::from_toml_str(
        "test.toml",
        "[\".test.wkt.v1.ClockService\"]\ntimeout_ms = 200\n",
    )
    .unwrap();
    let spec = ClockServiceResilientClient::<Channel>::spec();
    let runtime = ServiceRuntime::resolve(spec, Environment::Production, Some(&config)).unwrap();
    let client =
        ClockServiceResilientClient::with_runtime(ClockServiceClient::new(channel), runtime)
            .with_fallback(Epoch);

    let now = client.now(Empty {}).await.unwrap().into_inner();
    assert_eq!(now.seconds, SERVER_TIME);
    let flipped = client.flip(BoolValue { value: true }).await.unwrap();
    assert!(!flipped.get_ref().value);

    // The server hangs past the 200 ms deadline: the fallback answers with its own type.
    hang.store(true, Ordering::SeqCst);
    let degraded = client.now(Empty {}).await.unwrap().into_inner();
    assert_eq!(degraded, Timestamp::default());
}
