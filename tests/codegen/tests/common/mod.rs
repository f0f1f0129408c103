//! A real tonic server on 127.0.0.1 whose answers each request controls, and that counts
//! the calls it receives.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use codegen_tests::test::echo::v1::echo_service_server::{EchoService, EchoServiceServer};
use codegen_tests::test::echo::v1::{EchoReply, EchoRequest};
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// Calls received per RPC.
#[derive(Debug, Default)]
pub struct Hits {
    pub echo: AtomicU32,
    pub collect: AtomicU32,
    pub expand: AtomicU32,
    pub chat: AtomicU32,
}

impl Hits {
    pub fn echo(&self) -> u32 {
        self.echo.load(Ordering::SeqCst)
    }
    pub fn expand(&self) -> u32 {
        self.expand.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Default)]
struct Echo {
    hits: Arc<Hits>,
}

fn fail(code: i32) -> Result<(), Status> {
    if code == 0 {
        Ok(())
    } else {
        Err(Status::new(Code::from_i32(code), "told to fail"))
    }
}

async fn delay(ms: u32) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
    }
}

fn replies(req: EchoRequest) -> ReplyStream {
    let count = req.count;
    let fail_after = req.fail_after;
    let message = req.message;
    Box::pin(
        tokio_stream::iter(0..count)
            .map(move |i| {
                if fail_after > 0 && i >= fail_after {
                    Err(Status::unavailable("stream broke"))
                } else {
                    Ok(EchoReply {
                        message: message.clone(),
                        index: i,
                    })
                }
            })
            .take_while_inclusive(),
    )
}

/// Stops a stream after its first error (tonic ends the call there anyway).
trait TakeWhileInclusive: Stream<Item = Result<EchoReply, Status>> + Sized + Send + 'static {
    fn take_while_inclusive(self) -> ReplyStream {
        let mut done = false;
        Box::pin(self.take_while(move |item| {
            if done {
                return false;
            }
            done = item.is_err();
            true
        }))
    }
}

impl<S: Stream<Item = Result<EchoReply, Status>> + Send + 'static> TakeWhileInclusive for S {}

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.hits.echo.fetch_add(1, Ordering::SeqCst);
        let req = request.into_inner();
        delay(req.delay_ms).await;
        fail(req.fail_with)?;
        Ok(Response::new(EchoReply {
            message: req.message,
            index: 0,
        }))
    }

    async fn collect(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        self.hits.collect.fetch_add(1, Ordering::SeqCst);
        let mut stream = request.into_inner();
        let mut last = EchoRequest::default();
        let mut n = 0;
        while let Some(req) = stream.message().await? {
            n += 1;
            delay(req.delay_ms).await;
            if req.fail_after > 0 && n > req.fail_after {
                return Err(Status::unavailable("collect broke"));
            }
            last = req;
        }
        fail(last.fail_with)?;
        Ok(Response::new(EchoReply {
            message: last.message,
            index: n,
        }))
    }

    type ExpandStream = ReplyStream;

    async fn expand(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ExpandStream>, Status> {
        self.hits.expand.fetch_add(1, Ordering::SeqCst);
        let req = request.into_inner();
        delay(req.delay_ms).await;
        fail(req.fail_with)?;
        Ok(Response::new(replies(req)))
    }

    type ChatStream = ReplyStream;

    async fn chat(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        self.hits.chat.fetch_add(1, Ordering::SeqCst);
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.unwrap_or_default();
        delay(first.delay_ms).await;
        fail(first.fail_with)?;
        let fail_after = first.fail_after;
        let head = tokio_stream::once(first);
        let rest = incoming.filter_map(|r| r.ok());
        let mut i = 0;
        let out = head.chain(rest).map(move |req| {
            i += 1;
            if fail_after > 0 && i > fail_after {
                Err(Status::unavailable("chat broke"))
            } else {
                Ok(EchoReply {
                    message: req.message,
                    index: i - 1,
                })
            }
        });
        Ok(Response::new(out.take_while_inclusive()))
    }
}

/// A running echo server.
pub struct Server {
    pub addr: SocketAddr,
    pub hits: Arc<Hits>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts an echo server on 127.0.0.1 on a free port.
pub async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = Echo::default();
    let hits = echo.hits.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(EchoServiceServer::new(echo))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
    });
    Server {
        addr,
        hits,
        shutdown: Some(tx),
    }
}

pub fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}
