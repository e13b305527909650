//! Invocations (and process sends and calls) between nodes, multiplexed on one long-lived
//! stream per peer.
//!
//! The stream is a connection to the peer's gRPC port, with the same mutual TLS, that carries
//! length-prefixed protobuf frames instead of HTTP/2 ([`crate::framing`]; the receiving side
//! and the opening are in [`crate::server`]). A unary gRPC call costs headers both ways and
//! trailers; an HTTP/2 stream costs two extra task hops per message on each side. Here the
//! caller writes its frame to the socket itself, and one reader task hands each result to its
//! caller, matched by id. If the stream breaks, every waiting caller gets `UNAVAILABLE` (the
//! call may have run), and the next call opens a new stream.

use crate::Credentials;
use crate::framing::{self, FrameReader, FrameWriter};
use crate::server::MAGIC;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steinadler_proto::v1 as pb;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tonic::{Code, Status};

/// How an error message starts when the request cannot have reached the peer, so that the
/// caller may retry it even when it is not idempotent.
pub const NOT_SENT: &str = "not sent: ";

/// How long opening a stream may take, connecting included.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<pb::InvokeResult, Status>>>>>;

/// What one frame carries.
#[derive(Debug)]
pub enum Body {
    /// Run a function.
    Invoke(pb::InvokeRequest),
    /// Deliver a message to a process.
    Send(pb::SendRequest),
    /// Call a process.
    Call(pb::CallRequest),
    /// Run a call here and forward it to the rest of a group (a fan-out tree's hop).
    Relay(pb::RelayRequest),
}

/// The calling side of one peer's stream.
#[derive(Debug)]
pub struct Mux {
    writer: Arc<FrameWriter>,
    waiting: Waiting,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.writer.close();
    }
}

impl Mux {
    /// Connects to the peer `peer` at `addr` and opens the stream, signed for `peer`; frames
    /// from it may be up to `max_frame` bytes.
    pub(crate) async fn open(
        creds: &dyn Credentials,
        addr: &str,
        peer: &str,
        max_frame: usize,
    ) -> Result<Self, Status> {
        tokio::time::timeout(OPEN_TIMEOUT, Self::open_now(creds, addr, peer, max_frame))
            .await
            .unwrap_or_else(|_| {
                Err(Status::unavailable(format!(
                    "no answer to the opening within {OPEN_TIMEOUT:?}"
                )))
            })
    }

    async fn open_now(
        creds: &dyn Credentials,
        addr: &str,
        peer: &str,
        max_frame: usize,
    ) -> Result<Self, Status> {
        let unavailable = |e: std::io::Error| Status::unavailable(e.to_string());
        let mut io = crate::tls::dial(addr, creds.client_tls(peer))
            .await
            .map_err(unavailable)?;
        let cookie = creds.opening_cookie(peer);
        let mut opening = MAGIC.to_vec();
        opening.extend_from_slice(&u32::try_from(cookie.len()).unwrap_or(0).to_be_bytes());
        opening.extend_from_slice(&cookie);
        io.write_all(&opening).await.map_err(unavailable)?;
        io.flush().await.map_err(unavailable)?;
        let (read, write) = tokio::io::split(io);
        let mut results = FrameReader::new(Box::new(read), max_frame);
        let answer: pb::InvokeResult = results
            .next()
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::unavailable("the peer closed the stream at its opening"))?;
        from_result(answer)?;
        let (writer, flusher) = FrameWriter::new(Box::new(write));
        tokio::spawn(flusher);
        let waiting: Waiting = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(read_results(
            results,
            waiting.clone(),
            alive.clone(),
            writer.clone(),
            peer.to_owned(),
        ));
        Ok(Self {
            writer,
            waiting,
            next: AtomicU64::new(1),
            alive,
        })
    }

    /// Whether the stream still works; a broken one is replaced on the next call.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Sends one invocation and waits up to `timeout` for its result.
    ///
    /// # Errors
    ///
    /// The peer's refusal or failure as a `Status`; `UNAVAILABLE` when the stream broke
    /// (starting with [`NOT_SENT`] if the frame never left), `DEADLINE_EXCEEDED` after
    /// `timeout`.
    pub async fn call(
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
    ///
    /// # Errors
    ///
    /// As [`Mux::call`].
    pub async fn send(&self, request: pb::SendRequest, timeout: Duration) -> Result<(), Status> {
        self.exchange(Body::Send(request), timeout)
            .await
            .map(|_| ())
    }

    /// Calls a process on the peer.
    ///
    /// # Errors
    ///
    /// As [`Mux::call`].
    pub async fn call_process(
        &self,
        request: pb::CallRequest,
        timeout: Duration,
    ) -> Result<pb::CallReply, Status> {
        self.exchange(Body::Call(request), timeout)
            .await?
            .call_reply
            .ok_or_else(|| Status::internal("a result frame without a call reply"))
    }

    /// Sends a fan-out tree's hop to the peer, its relay, and waits for its group's replies.
    ///
    /// # Errors
    ///
    /// As [`Mux::call`].
    pub async fn relay(
        &self,
        request: pb::RelayRequest,
        timeout: Duration,
    ) -> Result<pb::RelayReply, Status> {
        self.exchange(Body::Relay(request), timeout)
            .await?
            .relay_reply
            .ok_or_else(|| Status::internal("a result frame without a relay reply"))
    }

    /// One frame out, its result back, within `timeout`.
    async fn exchange(&self, body: Body, timeout: Duration) -> Result<pb::InvokeResult, Status> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting.insert(id, tx);
            waiting.len() == 1
        };
        let mut frame = pb::InvokeFrame {
            id,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        match body {
            Body::Invoke(r) => frame.request = Some(r),
            Body::Send(r) => frame.send = Some(r),
            Body::Call(r) => frame.call = Some(r),
            Body::Relay(r) => frame.relay = Some(r),
        }
        // A lone call goes out at once; among many, the frames that are ready share a syscall.
        let encoded = framing::encode(&frame);
        let written = if alone {
            self.writer.write(&encoded)
        } else {
            self.writer.write_soon(&encoded)
        };
        if let Err(why) = written {
            self.forget(id);
            return Err(Status::unavailable(format!(
                "{NOT_SENT}the stream is closed ({why})"
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

/// Hands each result to its caller until the stream ends, then fails the callers still waiting.
async fn read_results(
    mut results: FrameReader,
    waiting: Waiting,
    alive: Arc<AtomicBool>,
    writer: Arc<FrameWriter>,
    peer: String,
) {
    let why = loop {
        match results.next::<pb::InvokeResult>().await {
            Ok(Some(result)) => {
                let caller = waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&result.id);
                if let Some(caller) = caller {
                    let _ = caller.send(from_result(result));
                }
            }
            Ok(None) => break "the peer closed it".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    alive.store(false, Ordering::Release);
    writer.close();
    tracing::debug!(peer = %peer, "invoke stream ended: {why}");
    let callers: Vec<_> = waiting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (_, caller) in callers {
        let _ = caller.send(Err(Status::unavailable(format!(
            "the stream to {peer} broke ({why}); the call may have run"
        ))));
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
