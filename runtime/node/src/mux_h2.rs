//! Invocations (and process sends and calls) between nodes, multiplexed on one long-lived
//! bidirectional stream per peer.
//!
//! A unary gRPC call opens an HTTP/2 stream, sends headers both ways and trailers back for every
//! invocation; a frame on an open stream is one DATA frame each way. The caller side
//! ([`Mux`]) numbers each request, keeps a table of the callers waiting, and a reader task hands
//! each result to its caller. The receiving side ([`serve`]) runs each frame as its own task, so
//! a slow call never holds up the ones behind it. If the stream breaks, every waiting caller
//! gets `UNAVAILABLE` (the call may have run), and the next call opens a new stream.

use crate::node::Inner;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_client::NodeClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// The gRPC path, which the cookie's MAC covers when the stream opens.
pub(crate) const INVOKE_STREAM: &str = "/steinadler.v1.Node/InvokeStream";

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<pb::InvokeResult, Status>>>>>;

/// What one frame carries.
#[derive(Debug)]
pub(crate) enum Body {
    Invoke(pb::InvokeRequest),
    Send(pb::SendRequest),
    Call(pb::CallRequest),
}

/// The calling side of one peer's stream.
#[derive(Debug)]
pub(crate) struct Mux {
    tx: mpsc::UnboundedSender<pb::InvokeFrame>,
    waiting: Waiting,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl Mux {
    /// Opens the stream on `client`, signed for `peer`.
    pub(crate) async fn open(
        inner: &Inner,
        mut client: NodeClient<Channel>,
        peer: &str,
    ) -> Result<Self, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        inner
            .security
            .sign_opening(&mut request, INVOKE_STREAM, peer);
        let mut results = client.invoke_stream(request).await?.into_inner();
        let waiting: Waiting = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (reader_waiting, reader_alive) = (waiting.clone(), alive.clone());
        let peer = peer.to_owned();
        tokio::spawn(async move {
            let why = loop {
                match results.message().await {
                    Ok(Some(result)) => {
                        let caller = reader_waiting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&result.id);
                        if let Some(caller) = caller {
                            let _ = caller.send(from_result(result));
                        }
                    }
                    Ok(None) => break "the peer closed it".to_owned(),
                    Err(s) => break s.message().to_owned(),
                }
            };
            reader_alive.store(false, Ordering::Release);
            tracing::debug!(peer = %peer, "invoke stream ended: {why}");
            let callers: Vec<_> = reader_waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            for (_, caller) in callers {
                let _ = caller.send(Err(Status::unavailable(format!(
                    "the stream to {peer} broke ({why}); the call may have run"
                ))));
            }
        });
        Ok(Self {
            tx,
            waiting,
            next: AtomicU64::new(1),
            alive,
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Sends one invocation and waits up to `timeout` for its result.
    pub(crate) async fn call(
        &self,
        request: pb::InvokeRequest,
        timeout: Duration,
    ) -> Result<pb::InvokeReply, Status> {
        self.exchange(Body::Invoke(request), timeout)
            .await?
            .reply
            .ok_or_else(|| Status::internal("a result frame without a reply"))
    }

    /// Delivers a message to a process on the peer.
    pub(crate) async fn send(
        &self,
        request: pb::SendRequest,
        timeout: Duration,
    ) -> Result<(), Status> {
        self.exchange(Body::Send(request), timeout)
            .await
            .map(|_| ())
    }

    /// Calls a process on the peer.
    pub(crate) async fn call_process(
        &self,
        request: pb::CallRequest,
        timeout: Duration,
    ) -> Result<pb::CallReply, Status> {
        self.exchange(Body::Call(request), timeout)
            .await?
            .call_reply
            .ok_or_else(|| Status::internal("a result frame without a call reply"))
    }

    /// One frame out, its result back, within `timeout`.
    async fn exchange(&self, body: Body, timeout: Duration) -> Result<pb::InvokeResult, Status> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let mut frame = pb::InvokeFrame {
            id,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        match body {
            Body::Invoke(r) => frame.request = Some(r),
            Body::Send(r) => frame.send = Some(r),
            Body::Call(r) => frame.call = Some(r),
        }
        if self.tx.send(frame).is_err() {
            self.forget(id);
            return Err(Status::unavailable(format!(
                "{}the stream is closed",
                crate::coordinator::NOT_SENT
            )));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::unavailable(
                "the stream closed; the call may have run",
            )),
            Err(_) => {
                self.forget(id);
                Err(Status::deadline_exceeded(format!(
                    "no answer within {timeout:?}"
                )))
            }
        }
    }

    fn forget(&self, id: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

fn from_result(result: pb::InvokeResult) -> Result<pb::InvokeResult, Status> {
    if result.status_code == 0 {
        Ok(result)
    } else {
        Err(Status::new(
            Code::from(result.status_code),
            result.status_message,
        ))
    }
}

pub(crate) type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::InvokeResult, Status>> + Send>>;

/// The receiving side: each frame runs as its own task; results go back as they finish.
/// The stream ends when the node stops, so that a graceful shutdown is not held up by it.
pub(crate) fn serve(inner: Arc<Inner>, mut frames: Streaming<pb::InvokeFrame>) -> ResultStream {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stopping = inner.stopping.clone();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = async { stopping.wait_for(|s| *s).await.is_ok() } => break,
                frame = frames.message() => match frame {
                    Ok(Some(frame)) => frame,
                    _ => break,
                },
            };
            let (inner, tx) = (inner.clone(), tx.clone());
            tokio::spawn(async move {
                let id = frame.id;
                let limit = Duration::from_millis(frame.timeout_ms.max(1));
                let work = async {
                    if let Some(request) = frame.request {
                        inner
                            .invoke_local(request)
                            .await
                            .map(|reply| pb::InvokeResult {
                                reply: Some(reply),
                                ..Default::default()
                            })
                    } else if let Some(send) = frame.send {
                        crate::process_api::send(&inner, send)
                            .await
                            .map(|_| pb::InvokeResult::default())
                    } else if let Some(call) = frame.call {
                        crate::process_api::call(&inner, call)
                            .await
                            .map(|reply| pb::InvokeResult {
                                call_reply: Some(reply),
                                ..Default::default()
                            })
                    } else {
                        Err(Status::invalid_argument("an empty frame"))
                    }
                };
                let result = match tokio::time::timeout(limit, work).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::deadline_exceeded("the caller's deadline passed")),
                };
                let frame = match result {
                    Ok(mut ok) => {
                        ok.id = id;
                        ok
                    }
                    Err(s) => pb::InvokeResult {
                        id,
                        status_code: s.code() as i32,
                        status_message: s.message().to_owned(),
                        ..Default::default()
                    },
                };
                let _ = tx.send(Ok(frame));
            });
        }
    });
    // In-flight calls still hold senders; the stream ends once they have answered.
    Box::pin(UnboundedReceiverStream::new(rx))
}
