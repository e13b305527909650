//! Invocations (and process sends and calls) between nodes, multiplexed on one long-lived
//! link per pair of nodes.
//!
//! The stream is the invoke side of one end of the link ([`crate::link`]): a connection to the
//! peer's gRPC port, with the same mutual TLS, that carries length-prefixed protobuf frames
//! beside the link's HTTP/2 bytes ([`crate::framing`]; the opening is here and in
//! [`crate::server`], the reading in [`crate::end`]). A unary gRPC call costs headers both
//! ways and trailers; an HTTP/2 stream costs two extra task hops per message on each side.
//! Here the caller writes its frame to the socket itself, and the end's reader task hands each
//! result to its caller, matched by id. Either end has a [`Mux`]: the node that dialed the
//! link ([`Mux::open`]) and the node that accepted it ([`start`]). If the link breaks, every
//! waiting caller gets `UNAVAILABLE` (the call may have run), and the next call opens a new
//! one.

use crate::Credentials;
use crate::end::{self, Reading, Role, Serve, Waiting};
use crate::framing::{self, FrameReader, FrameWriter, Kind};
use crate::link::{H2Pipe, Hold, Users};
use crate::server::MAGIC;
use crate::tls::PeerInfo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use steinadler_proto::v1 as pb;
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// How an error message starts when the request cannot have reached the peer, so that the
/// caller may retry it even when it is not idempotent.
pub const NOT_SENT: &str = "not sent: ";

/// How long opening a stream may take, connecting included.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The calling side of one end of a link to a peer.
#[derive(Debug)]
pub struct Mux {
    writer: Arc<FrameWriter>,
    /// The kind this end's calls go out as.
    kind: Kind,
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

/// An opened link, before its end starts.
pub(crate) struct Opened {
    pub(crate) reader: FrameReader,
    pub(crate) writer: Arc<FrameWriter>,
    pub(crate) role: Role,
    pub(crate) peer: PeerInfo,
    pub(crate) name: String,
}

/// Starts one end of `link`: gives its calling side (the mux, and the pipe for its HTTP/2
/// client) and the end's reading, which [`end::read`] runs until the link closes.
pub(crate) fn start(
    link: Opened,
    serve: Option<Serve>,
    crashed: watch::Receiver<bool>,
) -> (Mux, H2Pipe, Reading) {
    let Opened {
        reader,
        writer,
        role,
        peer,
        name,
    } = link;
    let kinds = role.kinds();
    let done = CancellationToken::new();
    let (hold, hold_h2) = Users::pair(writer.clone(), done.clone());
    let h2_alive = Arc::new(AtomicBool::new(true));
    let h2_hold = H2Hold {
        _hold: hold_h2,
        alive: h2_alive.clone(),
    };
    let (pipe, client) = H2Pipe::new(writer.clone(), kinds.client, Box::new(h2_hold));
    let waiting: Waiting = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let token = serve.as_ref().map(|s| s.serving.tracker.token());
    let reading = Reading {
        reader,
        writer: writer.clone(),
        kinds,
        peer,
        name,
        waiting: waiting.clone(),
        alive: alive.clone(),
        client,
        done,
        serve,
        crashed,
        token,
    };
    let mux = Mux {
        writer,
        kind: kinds.calls,
        waiting,
        next: AtomicU64::new(1),
        alive,
        _hold: hold,
        h2_alive,
        used: AtomicBool::new(false),
    };
    (mux, pipe, reading)
}

impl Mux {
    /// Connects to the peer `peer` at `addr` and opens a link, signed for `peer`, as the node
    /// `me`, saying whether the peer may keep it for its own calls (`offer`); frames from it
    /// may be up to `max_frame` bytes. Gives the invoke side and the
    /// HTTP/2 side; the end's reader runs on its own task, serving the peer's calls with
    /// `serve` (refusing them without).
    pub(crate) async fn open(
        (creds, tunnel): (&dyn Credentials, Option<crate::tunnel::Opening>),
        (me, offer): (&str, bool),
        (addr, peer): (&str, &str),
        max_frame: usize,
        serve: Option<Serve>,
        crashed: watch::Receiver<bool>,
    ) -> Result<(Self, H2Pipe), Status> {
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            Self::open_now(
                (creds, tunnel),
                (me, offer),
                addr,
                peer,
                max_frame,
                serve.as_ref(),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Status::unavailable(format!(
                "no answer to the opening within {OPEN_TIMEOUT:?}"
            )))
        })?;
        let (mux, pipe, reading) = start(opened, serve, crashed);
        tokio::spawn(end::read(reading));
        Ok((mux, pipe))
    }

    async fn open_now(
        (creds, tunnel): (&dyn Credentials, Option<crate::tunnel::Opening>),
        (me, offer): (&str, bool),
        addr: &str,
        peer: &str,
        max_frame: usize,
        serve: Option<&Serve>,
    ) -> Result<Opened, Status> {
        let unavailable = |e: std::io::Error| Status::unavailable(e.to_string());
        let tls = creds.client_tls(peer);
        let tunnel = match tunnel {
            Some(opening) => opening.await.map_err(unavailable)?,
            None => None,
        };
        let dialed = match tunnel {
            Some(tunnel) => crate::tls::over_tunnel(tunnel, tls).await,
            None => crate::tls::dial_peer(addr, tls).await,
        };
        let (mut io, info) = dialed.map_err(unavailable)?;
        let mut opening = MAGIC.to_vec();
        framing::put_raw(&mut opening, &creds.opening_cookie(peer));
        framing::put_raw(&mut opening, me.as_bytes());
        framing::put_raw(&mut opening, &[u8::from(offer)]);
        io.write_all(&opening).await.map_err(unavailable)?;
        io.flush().await.map_err(unavailable)?;
        let (read, write) = tokio::io::split(io);
        let mut reader = FrameReader::new(Box::new(read), max_frame);
        let answer: pb::InvokeResult = reader
            .next()
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::unavailable("the peer closed the stream at its opening"))?;
        end::from_result(answer)?;
        // The peer's cookie, for the calls it makes on this link.
        let cookie = reader
            .next_raw()
            .await
            .map_err(unavailable)?
            .unwrap_or_default();
        if let Some(serve) = serve {
            let request = crate::server::opening_request(&cookie, &info)?;
            serve.handler.authorize_opening(&request).map_err(|s| {
                Status::new(
                    s.code(),
                    format!(
                        "{peer} answered with an opening this node refuses: {}",
                        s.message()
                    ),
                )
            })?;
        }
        let (writer, flusher) = FrameWriter::new(Box::new(write));
        tokio::spawn(flusher);
        Ok(Opened {
            reader,
            writer,
            role: Role::Dialer,
            peer: info,
            name: peer.to_owned(),
        })
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

    /// Sends one invocation and waits up to `timeout` for its result. `trace` is the caller's
    /// W3C `traceparent`, carried on the frame for the peer's spans to join (empty for none).
    ///
    /// # Errors
    ///
    /// The peer's refusal or failure as a `Status`; `UNAVAILABLE` when the stream broke
    /// (starting with [`NOT_SENT`] if the frame never left), `DEADLINE_EXCEEDED` after
    /// `timeout`.
    pub async fn call(
        &self,
        request: pb::InvokeRequest,
        trace: &str,
        timeout: Duration,
    ) -> Result<pb::InvokeReply, Status> {
        self.exchange(Body::Invoke(request), trace, timeout)
            .await?
            .reply
            .ok_or_else(|| Status::internal("a result frame without a reply"))
    }

    /// Delivers a message to a process on the peer.
    ///
    /// # Errors
    ///
    /// As [`Mux::call`].
    pub async fn send(
        &self,
        request: pb::SendRequest,
        trace: &str,
        timeout: Duration,
    ) -> Result<(), Status> {
        self.exchange(Body::Send(request), trace, timeout)
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
        trace: &str,
        timeout: Duration,
    ) -> Result<pb::CallReply, Status> {
        self.exchange(Body::Call(request), trace, timeout)
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
        trace: &str,
        timeout: Duration,
    ) -> Result<pb::RelayReply, Status> {
        self.exchange(Body::Relay(request), trace, timeout)
            .await?
            .relay_reply
            .ok_or_else(|| Status::internal("a result frame without a relay reply"))
    }

    /// One frame out, carrying `trace`, its result back, within `timeout`.
    async fn exchange(
        &self,
        body: Body,
        trace: &str,
        timeout: Duration,
    ) -> Result<pb::InvokeResult, Status> {
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
        // The end stops reading before it fails the callers waiting: one that came after that
        // sees it here, before its frame leaves.
        if !self.is_alive() {
            self.forget(id);
            return Err(Status::unavailable(format!(
                "{NOT_SENT}the stream is closed"
            )));
        }
        let mut frame = pb::InvokeFrame {
            id,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            traceparent: trace.to_owned(),
            ..Default::default()
        };
        match body {
            Body::Invoke(r) => frame.request = Some(r),
            Body::Send(r) => frame.send = Some(r),
            Body::Call(r) => frame.call = Some(r),
            Body::Relay(r) => frame.relay = Some(r),
        }
        // A lone call goes out at once; among many, the frames that are ready share a syscall.
        let encoded = framing::encode_as(self.kind, &frame);
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
