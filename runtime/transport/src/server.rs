//! The receiving side of the invoke streams between nodes ([`crate::Mux`]).
//!
//! A peer opens a stream on the node's gRPC port: over TLS (the same mutual-TLS handshake as
//! gRPC) or plain TCP, it sends [`MAGIC`] instead of the HTTP/2 preface, so the accept loop
//! ([`crate::tls`]) hands the connection here rather than to tonic. Next comes the opening: one
//! frame holding the cluster cookie, signed for [`INVOKE_STREAM`] exactly as the gRPC stream
//! was, which the node's [`Handler::authorize_opening`] checks with the same rules (node
//! certificate, cookie, anti-replay). The answer is an [`pb::InvokeResult`] of id 0: status 0,
//! or the refusal.
//!
//! Then frames flow (the connection is a link, [`crate::link`]): each [`pb::InvokeFrame`] runs
//! as its own task, so a slow call never holds up the ones behind it, and each task writes its
//! result straight to the socket; the HTTP/2 bytes go to an [`H2Pipe`] that tonic serves like
//! any accepted connection, with the link's [`PeerInfo`]. When the node stops, frames that
//! arrive are refused as not run ([`NOT_SENT`](crate::NOT_SENT)); the calls in flight finish
//! and answer, tonic winds the HTTP/2 side down, then the link closes.

use crate::framing::{self, FrameReader, FrameWriter, Kind};
use crate::link::{H2Pipe, H2Sender};
use crate::tls::{Conn, PeerInfo, TlsConn};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use steinadler_proto::v1 as pb;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// What a peer sends first instead of the HTTP/2 preface. Its first byte differs from the
/// preface's `P`, which is all the accept loop looks at.
/// The last byte is the version: 2 is the link (invoke frames and HTTP/2 on one connection).
pub const MAGIC: &[u8; 8] = b"STNDLR\x00\x02";

/// The method the opening's cookie is signed for.
pub const INVOKE_STREAM: &str = "/steinadler.v1.Node/InvokeStream";

/// What a node does with the connections and frames that arrive: the serving side's handle on
/// the node.
pub trait Handler: Send + Sync + 'static {
    /// The current TLS server configuration, asked for each connection so that reloaded
    /// certificates apply to the next one; `None` refuses the connection.
    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>>;

    /// Counts a connection refused during or right after its TLS handshake.
    fn refused_tls(&self);

    /// Checks an invoke stream's opening: `request` carries the cookie in its metadata and
    /// the caller's [`PeerInfo`] in its extensions.
    ///
    /// # Errors
    ///
    /// The refusal, sent back to the peer before the stream closes.
    fn authorize_opening(&self, request: &tonic::Request<()>) -> Result<(), Status>;

    /// Runs what one frame asks for. The future owns what it needs: it may outlive the call.
    fn answer(
        self: &Arc<Self>,
        frame: pb::InvokeFrame,
    ) -> impl Future<Output = Result<pb::InvokeResult, Status>> + Send + 'static;
}

/// How long a peer may take to send its opening.
const OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// What every served stream shares: the tracker that drains them on shutdown, the node's
/// stop and crash signals, and the frame limit.
#[derive(Debug, Clone)]
pub(crate) struct Serving {
    pub(crate) tracker: tokio_util::task::TaskTracker,
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) crashed: watch::Receiver<bool>,
    pub(crate) max_frame: usize,
    /// Where the HTTP/2 sides of links go: tonic's incoming connections.
    pub(crate) h2: tokio::sync::mpsc::Sender<std::io::Result<TlsConn>>,
    /// The links being served, by peer.
    pub(crate) served: Arc<crate::link::Served>,
}

/// Serves one accepted stream until the peer closes it or the node stops (then the calls in
/// flight finish first) or crashes (then they are dropped); `prefix` holds bytes the accept
/// loop already read from it.
pub(crate) async fn serve_conn<H: Handler>(
    handler: Arc<H>,
    io: Box<dyn Conn>,
    prefix: Bytes,
    peer: PeerInfo,
    serve: Serving,
) {
    let Serving {
        mut stopping,
        mut crashed,
        max_frame: max,
        h2: h2_conns,
        served,
        ..
    } = serve;
    let (read, write) = tokio::io::split(io);
    let mut reader = FrameReader::with_prefix(Box::new(read), max, &prefix);
    let (writer, flusher) = FrameWriter::new(Box::new(write));
    tokio::spawn(flusher);
    let opened = tokio::time::timeout(OPENING_TIMEOUT, open(&*handler, &mut reader, &peer)).await;
    let refusal = match opened {
        Ok(Ok(())) => None,
        Ok(Err(status)) => Some(status),
        Err(_) => Some(Status::deadline_exceeded(
            "no opening within the time limit",
        )),
    };
    let opening = match &refusal {
        None => pb::InvokeResult::default(),
        Some(s) => result_of(0, Err(s.clone())),
    };
    let _ = writer.write(&framing::encode(&opening));
    if let Some(status) = refusal {
        tracing::debug!(peer = %peer.remote, "refused an invoke stream: {}", status.message());
        writer.close();
        return;
    }
    let name = peer.identity.as_ref().map_or("", |i| i.name.as_str());
    let _served = served.add(name.to_owned());
    let mut tasks = JoinSet::new();
    let mut h2 = H2Side::default();
    let mut stopped = false;
    // Results leave in groups, each half of the frames then buffered: of 16 frames read at
    // once, the results of 8, then 4, 2, 1 and 1. One write for all 16 saves syscalls, but then
    // the caller's node idles while this one runs every frame, and this one idles while the
    // caller wakes its callers and they send the next calls; in halves the two overlap, and the
    // writes grow only with the log of the frames. Remote invoke at 16 in flight, alternating
    // runs of `steinadler bench`: 76-82 k calls/s in one write, 80-88 k in halves; a write per
    // 8 frames was as fast at 16 but lost 20 % at 64 in flight.
    let (mut group, mut done) = (0usize, 0usize);
    let why = loop {
        if stopped && tasks.is_empty() && h2.is_done() {
            break "the node stops".to_owned();
        }
        tokio::select! {
            _ = async { stopping.wait_for(|s| *s).await.is_ok() }, if !stopped => stopped = true,
            _ = async { crashed.wait_for(|c| *c).await.is_ok() } => {
                tasks.abort_all();
                writer.close();
                return;
            }
            // In a block, so that the loop's other turns do not build its future.
            () = async { h2.finished().await }, if stopped && !h2.is_done() => {}
            frame = reader.next_frame() => match frame {
                Ok(Some((Kind::Invoke, body))) => {
                    let frame = match <pb::InvokeFrame as prost::Message>::decode(body) {
                        Ok(frame) => frame,
                        Err(e) => break format!("a frame that does not decode: {e}"),
                    };
                    if stopped {
                        let refused = Status::unavailable(format!("{}the node is stopping", crate::NOT_SENT));
                        let _ = writer.write(&framing::encode(&result_of(frame.id, Err(refused))));
                        continue;
                    }
                    if group == 0 {
                        group = (1 + reader.buffered_frames()).div_ceil(2);
                    }
                    run(&handler, frame, &writer, &mut tasks);
                    done += 1;
                    if done == group || !reader.has_frame() {
                        writer.flush_now();
                        (group, done) = (0, 0);
                    }
                }
                Ok(Some((Kind::H2, chunk))) => {
                    if !h2.feed(chunk, &writer, &peer, &h2_conns) {
                        break "its HTTP/2 side restarted".to_owned();
                    }
                }
                Ok(Some((Kind::H2End, _))) => h2.end(),
                Ok(Some((Kind::Unknown(k), _))) => break format!("a frame of unknown kind {k}"),
                Ok(None) => break "the peer closed it".to_owned(),
                Err(e) => break e.to_string(),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    tracing::debug!(peer = %peer.remote, "invoke stream ended: {why}");
    h2.end();
    while tasks.join_next().await.is_some() {}
    // Let tonic write what it still has (its goaway, the last responses).
    let _ = tokio::time::timeout(Duration::from_secs(1), h2.finished()).await;
    writer.close();
}

/// The serving side of a link's HTTP/2 connection: started by its first bytes, handed to
/// tonic, and done when tonic has dropped or shut down its pipe.
#[derive(Default)]
struct H2Side {
    /// Feeds the pipe while the peer's HTTP/2 client writes.
    feed: Option<H2Sender>,
    /// Cancelled when the pipe is done; `None` until it starts.
    done: Option<CancellationToken>,
}

impl H2Side {
    /// Hands `chunk` to tonic, starting its connection on the first; false if the peer starts
    /// a second one, which a link does not carry.
    fn feed(
        &mut self,
        chunk: Bytes,
        writer: &Arc<FrameWriter>,
        peer: &PeerInfo,
        conns: &tokio::sync::mpsc::Sender<std::io::Result<TlsConn>>,
    ) -> bool {
        if self.done.is_none() {
            let done = CancellationToken::new();
            let ended = Box::new(done.clone().drop_guard());
            let (pipe, feed) = H2Pipe::new(writer.clone(), ended);
            self.done = Some(done);
            let conn = TlsConn::new(Box::new(pipe), peer.clone(), Bytes::new());
            if conns.try_send(Ok(conn)).is_err() {
                // tonic no longer takes connections (the node stops), or has 64 waiting; the
                // pipe has ended, and the peer's client sees its connection close.
                return true;
            }
            self.feed = Some(feed);
        } else if self.feed.is_none() {
            return false;
        }
        if let Some(feed) = &self.feed {
            let _ = feed.send(chunk);
        }
        true
    }

    /// The peer's client is done writing: tonic reads the end of its stream.
    fn end(&mut self) {
        self.feed = None;
    }

    /// Whether tonic is done with the pipe (or never had one).
    fn is_done(&self) -> bool {
        self.done
            .as_ref()
            .is_none_or(CancellationToken::is_cancelled)
    }

    /// Resolves when tonic is done with the pipe (at once if it never had one).
    fn finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let done = self.done.clone();
        async move {
            if let Some(done) = done {
                done.cancelled_owned().await;
            }
        }
    }
}

/// Runs one frame: on this task if it finishes at its first poll (most calls do: the guest
/// runs until it ends or its first deadline-clock tick), which saves a task per frame; else as
/// its own task, so that it does not hold up the frames behind it.
fn run<H: Handler>(
    handler: &Arc<H>,
    frame: pb::InvokeFrame,
    writer: &Arc<FrameWriter>,
    tasks: &mut JoinSet<()>,
) {
    let id = frame.id;
    let mut work = Box::pin(handler.answer(frame));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(result) = work.as_mut().poll(&mut cx) {
        let _ = writer.push(&framing::encode(&result_of(id, result)));
        return;
    }
    let writer = writer.clone();
    tasks.spawn(async move {
        let result = work.await;
        let _ = writer.write(&framing::encode(&result_of(id, result)));
    });
}

/// Reads and checks the opening.
async fn open<H: Handler>(
    handler: &H,
    reader: &mut FrameReader,
    peer: &PeerInfo,
) -> Result<(), Status> {
    let bad = |e: std::io::Error| Status::invalid_argument(format!("a bad opening: {e}"));
    if reader.take(MAGIC.len()).await.map_err(bad)?[..] != MAGIC[..] {
        return Err(Status::invalid_argument("not an invoke stream"));
    }
    let cookie = reader.next_raw().await.map_err(bad)?.unwrap_or_default();
    let mut request = tonic::Request::new(());
    if !cookie.is_empty() {
        let value = std::str::from_utf8(&cookie)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Status::unauthenticated("the cookie is not a valid header value"))?;
        request
            .metadata_mut()
            .insert(steinadler_security::COOKIE_HEADER, value);
    }
    request.extensions_mut().insert(peer.clone());
    handler.authorize_opening(&request)
}

/// The frame that answers frame `id`.
pub fn result_of(id: u64, result: Result<pb::InvokeResult, Status>) -> pb::InvokeResult {
    match result {
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
    }
}
