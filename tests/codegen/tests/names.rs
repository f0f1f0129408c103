//! RPCs named like Rust keywords or like methods of std traits (`Clone::clone`,
//! `Drop::drop`, `AsRef::as_ref`, `Into::into`) reach their own RPC on the server and their
//! own fallback method, not the trait method of the same name.

use std::net::SocketAddr;
use std::pin::Pin;

use codegen_tests::test::nested::deep::v1::keyword_service_resilient::{
    KeywordServiceFallback, KeywordServiceResilientClient,
};
use codegen_tests::test::nested::deep::v1::keyword_service_server::{
    KeywordService, KeywordServiceServer,
};
use codegen_tests::test::nested::deep::v1::{KeywordReply, KeywordRequest};
use resilient_runtime::FallbackCause;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type Replies = Pin<Box<dyn Stream<Item = Result<KeywordReply, Status>> + Send>>;

fn reply(rpc: &str) -> KeywordReply {
    KeywordReply {
        self_: rpc.to_owned(),
    }
}

/// Answers every RPC with its own name.
struct Named;

#[tonic::async_trait]
impl KeywordService for Named {
    async fn r#type(&self, _: Request<KeywordRequest>) -> Result<Response<KeywordReply>, Status> {
        Ok(Response::new(reply("Type")))
    }

    async fn r#match(&self, _: Request<KeywordRequest>) -> Result<Response<KeywordReply>, Status> {
        Ok(Response::new(reply("Match")))
    }

    type AsyncStream = Replies;

    async fn r#async(&self, _: Request<KeywordRequest>) -> Result<Response<Replies>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(reply(
            "Async",
        ))]))))
    }

    async fn clone(&self, _: Request<KeywordRequest>) -> Result<Response<KeywordReply>, Status> {
        Ok(Response::new(reply("Clone")))
    }

    async fn drop(&self, _: Request<KeywordRequest>) -> Result<Response<KeywordReply>, Status> {
        Ok(Response::new(reply("Drop")))
    }

    async fn as_ref(
        &self,
        request: Request<Streaming<KeywordRequest>>,
    ) -> Result<Response<KeywordReply>, Status> {
        let mut stream = request.into_inner();
        let mut count = 0;
        while stream.message().await?.is_some() {
            count += 1;
        }
        Ok(Response::new(reply(&format!("AsRef x{count}"))))
    }

    type IntoStream = Replies;

    async fn into(
        &self,
        request: Request<Streaming<KeywordRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let replies = request.into_inner().map(|r| r.map(|r| reply(&r.r#type)));
        Ok(Response::new(Box::pin(replies)))
    }
}

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KeywordServiceServer::new(Named))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn request(tag: &str) -> KeywordRequest {
    KeywordRequest {
        r#type: tag.to_owned(),
        ..Default::default()
    }
}

async fn text(
    response: Result<Response<resilient_runtime::ResilientStreaming<KeywordReply>>, Status>,
) -> Vec<String> {
    let mut stream = response.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(item) = stream.next().await {
        seen.push(item.unwrap().self_);
    }
    seen
}

#[tokio::test]
async fn every_rpc_reaches_its_own_method_on_the_server() {
    let addr = serve().await;
    let client = KeywordServiceResilientClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let single = |r: Result<Response<KeywordReply>, Status>| r.unwrap().into_inner().self_;

    assert_eq!(single(client.r#type(request("")).await), "Type");
    assert_eq!(single(client.r#match(request("")).await), "Match");
    assert_eq!(text(client.r#async(request("")).await).await, ["Async"]);
    assert_eq!(single(client.clone(request("")).await), "Clone");
    assert_eq!(single(client.drop(request("")).await), "Drop");
    let three = tokio_stream::iter([request("a"), request("b"), request("c")]);
    assert_eq!(single(client.as_ref(three).await), "AsRef x3");
    // Method syntax finds `Into::into(self)` before a method taking `&self`, as for any
    // type: the RPC is called by its path.
    let two = tokio_stream::iter([request("x"), request("y")]);
    let into = KeywordServiceResilientClient::into(&client, two).await;
    assert_eq!(text(into).await, ["x", "y"]);

    // The RPC shadows `Clone::clone` as a method; the client is still `Clone`.
    let copy = Clone::clone(&client);
    assert_eq!(single(copy.r#type(request("")).await), "Type");
}

/// Answers every RPC with its own name and the cause.
struct Degraded;

fn degraded(rpc: &str, cause: &FallbackCause) -> Result<Response<KeywordReply>, Status> {
    assert!(matches!(cause, FallbackCause::Open { .. }), "{cause:?}");
    Ok(Response::new(reply(&format!("fallback {rpc}"))))
}

impl KeywordServiceFallback for Degraded {
    async fn clone(
        &self,
        _: KeywordRequest,
        cause: FallbackCause,
    ) -> Result<Response<KeywordReply>, Status> {
        degraded("Clone", &cause)
    }

    async fn drop(
        &self,
        _: KeywordRequest,
        cause: FallbackCause,
    ) -> Result<Response<KeywordReply>, Status> {
        degraded("Drop", &cause)
    }

    async fn as_ref(&self, cause: FallbackCause) -> Result<Response<KeywordReply>, Status> {
        degraded("AsRef", &cause)
    }

    async fn r#type(
        &self,
        _: KeywordRequest,
        cause: FallbackCause,
    ) -> Result<Response<KeywordReply>, Status> {
        degraded("Type", &cause)
    }
}

#[tokio::test]
async fn an_open_circuit_asks_the_fallbacks_own_method() {
    let addr = serve().await;
    let client = KeywordServiceResilientClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .with_fallback(Degraded);
    for rpc in ["Type", "Clone", "Drop", "AsRef", "Match"] {
        client.breaker(rpc).unwrap().force_open();
    }
    let single = |r: Result<Response<KeywordReply>, Status>| r.map(|r| r.into_inner().self_);

    assert_eq!(
        single(client.r#type(request("")).await).unwrap(),
        "fallback Type"
    );
    assert_eq!(
        single(client.clone(request("")).await).unwrap(),
        "fallback Clone"
    );
    assert_eq!(
        single(client.drop(request("")).await).unwrap(),
        "fallback Drop"
    );
    let one = tokio_stream::iter([request("a")]);
    assert_eq!(single(client.as_ref(one).await).unwrap(), "fallback AsRef");
    // `Match` has no fallback of its own: the default passes the open circuit on.
    let status = single(client.r#match(request("")).await).unwrap_err();
    assert!(resilient_runtime::is_circuit_open(&status), "{status:?}");
}

/// A client built without access to tonic's client (raw clients hidden) still takes an
/// interceptor, as tonic's `with_interceptor` does.
#[tokio::test]
async fn a_hidden_raw_client_still_takes_an_interceptor() {
    let addr = serve().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = {
        let calls = calls.clone();
        move |request: Request<()>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(request)
        }
    };
    let client = KeywordServiceResilientClient::with_interceptor(channel, counted);
    let reply = client.r#match(request("")).await.unwrap().into_inner();
    assert_eq!(reply.self_, "Match");
    let three = tokio_stream::iter([request("a"), request("b"), request("c")]);
    let reply = client.as_ref(three).await.unwrap().into_inner();
    assert_eq!(reply.self_, "AsRef x3");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
