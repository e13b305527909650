//! Invocations (and process sends and calls) between nodes, multiplexed on one long-lived
//! stream per peer.
//!
//! The stream is the invoke side of the link to the peer ([`crate::link`]): a connection to the
//! peer's gRPC port, with the same mutual TLS, that carries length-prefixed protobuf frames
//! beside the link's HTTP/2 bytes ([`crate::framing`]; the receiving side and the opening are
//! in [`crate::server`]). A unary gRPC call costs headers both ways and
//! trailers; an HTTP/2 stream costs two extra task hops per message on each side. Here the
//! caller writes its frame to the socket itself, and one reader task hands each result to its
//! caller, matched by id. If the stream breaks, every waiting caller gets `UNAVAILABLE` (the
//! call may have run), and the next call opens a new stream.

use crate::Credentials;
use crate::framing::{self, FrameReader, FrameWriter, Kind};
use crate::link::{H2Pipe, H2Sender, Hold, Users};
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
    /// This stream's hold on the link: the socket closes when it and the HTTP/2 side are done.
    _hold: Hold,
    /// False once the link's HTTP/2 client has ended (its pipe dropped or shut down).
    h2_alive: Arc<AtomicBool>,
    /// Whether a frame was ever sent: the link carries invoke traffic, not only gRPC.
    used: AtomicBool,
}

/// The HTTP/2 client's hold on the link; marks it ended when dropped.
struct H2Hold {
    _hold: Hold,
    alive: Arc<AtomicBool>,
}

impl Drop for H2Hold {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
    }
}

impl Mux {
    /// Connects to the peer `peer` at `addr` and opens the link, signed for `peer`; frames
    /// from it may be up to `max_frame` bytes. Gives the invoke side and the HTTP/2 side.
    pub(crate) async fn open(
        creds: &dyn Credentials,
        addr: &str,
        peer: &str,
        max_frame: usize,
    ) -> Result<(Self, H2Pipe), Status> {
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
    ) -> Result<(Self, H2Pipe), Status> {
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
        let (hold, hold_h2) = Users::pair(writer.clone());
        let h2_alive = Arc::new(AtomicBool::new(true));
        let h2_hold = H2Hold {
            _hold: hold_h2,
            alive: h2_alive.clone(),
        };
        let (pipe, h2) = H2Pipe::new(writer.clone(), Box::new(h2_hold));
        tokio::spawn(read_results(
            results,
            waiting.clone(),
            alive.clone(),
            writer.clone(),
            h2,
            peer.to_owned(),
        ));
        let mux = Self {
            writer,
            waiting,
            next: AtomicU64::new(1),
            alive,
            _hold: hold,
            h2_alive,
            used: AtomicBool::new(false),
        };
        Ok((mux, pipe))
    }

    /// Whether the stream still works; a broken one is replaced on the next call.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Whether a frame was ever sent on this stream.
    pub(crate) fn was_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the link's HTTP/2 client still runs (it ends after a failed keep-alive, or the
    /// peer's goaway); the pool replaces a link whose client has ended.
    pub(crate) fn h2_alive(&self) -> bool {
        self.h2_alive.load(Ordering::Acquire)
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
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
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

/// Hands each result to its caller, and the HTTP/2 bytes to the link's client, until the link
/// ends; then fails the callers still waiting.
async fn read_results(
    mut results: FrameReader,
    waiting: Waiting,
    alive: Arc<AtomicBool>,
    writer: Arc<FrameWriter>,
    h2: H2Sender,
    peer: String,
) {
    let mut h2 = Some(h2);
    let why = loop {
        match results.next_frame().await {
            Ok(Some((Kind::Invoke, body))) => {
                let result = match <pb::InvokeResult as prost::Message>::decode(body) {
                    Ok(result) => result,
                    Err(e) => break format!("a result that does not decode: {e}"),
                };
                let caller = waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&result.id);
                if let Some(caller) = caller {
                    let _ = caller.send(from_result(result));
                }
            }
            Ok(Some((Kind::H2, chunk))) => {
                if let Some(h2) = &h2 {
                    // The client may be gone while its last bytes arrive.
                    let _ = h2.send(chunk);
                }
            }
            Ok(Some((Kind::H2End, _))) => h2 = None,
            Ok(Some((Kind::Unknown(k), _))) => break format!("a frame of unknown kind {k}"),
            Ok(None) => break "the peer closed it".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    drop(h2);
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
