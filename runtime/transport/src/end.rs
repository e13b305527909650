//! One end of a link ([`crate::link`]): the task that reads the peer's frames, for the node
//! that dialed the link and for the node that accepted it alike.
//!
//! Both ends call and serve. An end's [`Role`] only says which frame kinds are its own
//! exchange ([`Kinds`]): results for its calls go to their callers ([`crate::Mux`]), the peer's
//! calls run on the node's [`Handler`](crate::Handler) (each as its own task unless it ends at
//! its first poll), and the bytes of the two HTTP/2 connections go to this end's client and to
//! the server it runs for the peer's client.
//!
//! An end closes the socket when:
//! - both ends are done calling ([`Kind::Done`]) and nothing is left to answer;
//! - the node stops, nothing is left to answer and this end is done calling (the peer's new
//!   calls meanwhile are refused as not run, [`NOT_SENT`]);
//! - the peer closed it, or sent what it must not: then its callers get `UNAVAILABLE`;
//! - the node crashes (tests): at once, calls in flight dropped.

use crate::NOT_SENT;
use crate::framing::{self, FrameReader, FrameWriter, Kind};
use crate::link::{H2Pipe, H2Sender};
use crate::server::{Handler, Serving, result_of};
use crate::tls::{PeerInfo, TlsConn};
use bytes::Bytes;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steinadler_proto::v1 as pb;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

/// The callers waiting for their results, by frame id.
pub(crate) type Waiting =
    Arc<Mutex<HashMap<u64, oneshot::Sender<Result<pb::InvokeResult, Status>>>>>;

/// Which end of a link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The node that opened the link.
    Dialer,
    /// The node that accepted it.
    Acceptor,
}

/// The frame kinds of one end's exchanges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kinds {
    /// This end's calls, and their results from the peer.
    pub(crate) calls: Kind,
    /// The peer's calls to this end, and the results it sends back.
    pub(crate) served: Kind,
    /// This end's HTTP/2 client: its bytes and its end.
    pub(crate) client: (Kind, Kind),
    /// The peer's HTTP/2 client, served here: its bytes and its end.
    pub(crate) server: (Kind, Kind),
}

impl Role {
    pub(crate) fn kinds(self) -> Kinds {
        let dialer = (Kind::Invoke, (Kind::H2, Kind::H2End));
        let acceptor = (Kind::Reverse, (Kind::ReverseH2, Kind::ReverseH2End));
        let (mine, theirs) = match self {
            Role::Dialer => (dialer, acceptor),
            Role::Acceptor => (acceptor, dialer),
        };
        Kinds {
            calls: mine.0,
            served: theirs.0,
            client: mine.1,
            server: theirs.1,
        }
    }
}

/// The object-safe face of a [`Handler`], shared by every end a node runs.
pub(crate) trait Answer: Send + Sync + 'static {
    /// As [`Handler::answer`].
    fn answer(
        &self,
        frame: pb::InvokeFrame,
    ) -> Pin<Box<dyn Future<Output = Result<pb::InvokeResult, Status>> + Send>>;

    /// As [`Handler::authorize_opening`].
    fn authorize_opening(&self, request: &tonic::Request<()>) -> Result<(), Status>;

    /// As [`Handler::server_config`].
    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>>;

    /// As [`Handler::refused_tls`].
    fn refused_tls(&self, reason: crate::TlsRefusal);
}

/// A [`Handler`] as an [`Answer`].
pub(crate) struct Answering<H>(pub(crate) Arc<H>);

impl<H: Handler> Answer for Answering<H> {
    fn answer(
        &self,
        frame: pb::InvokeFrame,
    ) -> Pin<Box<dyn Future<Output = Result<pb::InvokeResult, Status>> + Send>> {
        Box::pin(self.0.answer(frame))
    }

    fn authorize_opening(&self, request: &tonic::Request<()>) -> Result<(), Status> {
        self.0.authorize_opening(request)
    }

    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.0.server_config()
    }

    fn refused_tls(&self, reason: crate::TlsRefusal) {
        self.0.refused_tls(reason);
    }
}

/// What serving the peer's calls needs. An end without it (a link dialed before the node
/// serves) refuses them as not run.
#[derive(Clone)]
pub(crate) struct Serve {
    pub(crate) handler: Arc<dyn Answer>,
    pub(crate) serving: Serving,
    /// Whether links run TLS: what a tunnel's accepting side expects.
    pub(crate) secure: bool,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

/// One end of an opened link, ready to read.
pub(crate) struct Reading {
    pub(crate) reader: FrameReader,
    pub(crate) writer: Arc<FrameWriter>,
    pub(crate) kinds: Kinds,
    /// The peer, as what this end serves sees it.
    pub(crate) peer: PeerInfo,
    /// The peer's name, for logs and errors.
    pub(crate) name: String,
    pub(crate) waiting: Waiting,
    /// Turned false when the end stops reading: its mux takes no more calls.
    pub(crate) alive: Arc<AtomicBool>,
    /// Feeds this end's HTTP/2 client.
    pub(crate) client: H2Sender,
    /// Cancelled when this end's users are all done ([`crate::link::Users`]).
    pub(crate) done: CancellationToken,
    pub(crate) serve: Option<Serve>,
    pub(crate) crashed: watch::Receiver<bool>,
    /// Counts this end toward the node's drain on shutdown while it serves.
    pub(crate) token: Option<tokio_util::task::task_tracker::TaskTrackerToken>,
}

/// Reads the link until it closes (see the module docs for when).
pub(crate) async fn read(end: Reading) {
    let Reading {
        mut reader,
        writer,
        kinds,
        peer,
        name,
        waiting,
        alive,
        client,
        done: local_done,
        serve,
        mut crashed,
        mut token,
    } = end;
    let mut client = Some(client);
    let mut stopping = serve.as_ref().map(|s| s.serving.stopping.clone());
    let mut server = H2Side::default();
    let mut tasks = JoinSet::new();
    let (mut stopped, mut mine_done, mut theirs_done) = (false, false, false);
    // Results leave in groups, each half of the frames then buffered: of 16 frames read at
    // once, the results of 8, then 4, 2, 1 and 1. One write for all 16 saves syscalls, but then
    // the caller's node idles while this one runs every frame, and this one idles while the
    // caller wakes its callers and they send the next calls; in halves the two overlap, and the
    // writes grow only with the log of the frames. Remote invoke at 16 in flight, alternating
    // runs of `steinadler bench`: 76-82 k calls/s in one write, 80-88 k in halves; a write per
    // 8 frames was as fast at 16 but lost 20 % at 64 in flight.
    let (mut group, mut ran) = (0usize, 0usize);
    let why = loop {
        // Results pushed by calls that ended at once leave when the group is complete, or
        // when the next frame is not another call to run: a result or HTTP/2 bytes may be
        // the last frame for a while, and the results must not wait behind it.
        if ran > 0 && (ran == group || reader.next_kind() != Some(kinds.served)) {
            writer.flush_now();
            (group, ran) = (0, 0);
        }
        let quiet = tasks.is_empty() && server.is_done();
        if quiet && mine_done && (theirs_done || stopped) {
            break if stopped {
                "the node stops"
            } else {
                "neither end uses it"
            }
            .to_owned();
        }
        if quiet && stopped {
            // Served calls are over: the node's drain need not wait for this end.
            token = None;
        }
        let closing = stopped || (mine_done && theirs_done);
        tokio::select! {
            stop = async { stopping.as_mut()?.wait_for(|s| *s).await.ok().map(|_| ()) }, if !stopped && stopping.is_some() => {
                // A node whose stop signal is gone stops too.
                let _ = stop;
                stopped = true;
            }
            _ = async { crashed.wait_for(|c| *c).await.is_ok() } => {
                tasks.abort_all();
                alive.store(false, Ordering::Release);
                writer.close();
                return;
            }
            () = local_done.cancelled(), if !mine_done => mine_done = true,
            // In a block, so that the loop's other turns do not build its future.
            () = async { server.finished().await }, if closing && !server.is_done() => {}
            frame = reader.next_frame() => match frame {
                Ok(Some((kind, body))) if kind == kinds.calls => {
                    let result = match <pb::InvokeResult as prost::Message>::decode(body) {
                        Ok(result) => result,
                        Err(e) => break format!("a result that does not decode: {e}"),
                    };
                    let caller = crate::lock(&waiting).remove(&result.id);
                    if let Some(caller) = caller {
                        let _ = caller.send(from_result(result));
                    }
                }
                Ok(Some((kind, body))) if kind == kinds.served => {
                    let frame = match <pb::InvokeFrame as prost::Message>::decode(body) {
                        Ok(frame) => frame,
                        Err(e) => break format!("a frame that does not decode: {e}"),
                    };
                    let handler = serve.as_ref().map(|s| &s.handler).filter(|_| !stopped);
                    let Some(handler) = handler else {
                        let why = if stopped { "the node is stopping" } else { "the node does not serve yet" };
                        let refused = Status::unavailable(format!("{NOT_SENT}{why}"));
                        let _ = writer.write(&framing::encode_as(kinds.served, &result_of(frame.id, Err(refused))));
                        continue;
                    };
                    if group == 0 {
                        group = (1 + reader.buffered_frames()).div_ceil(2);
                    }
                    run(handler, frame, kinds.served, &writer, &mut tasks);
                    ran += 1;
                }
                Ok(Some((kind, chunk))) if kind == kinds.client.0 => {
                    if let Some(client) = &client {
                        // The client may be gone while its last bytes arrive.
                        let _ = client.send(chunk);
                    }
                }
                Ok(Some((kind, _))) if kind == kinds.client.1 => client = None,
                Ok(Some((kind, chunk))) if kind == kinds.server.0 => {
                    let Some(serve) = &serve else {
                        break "HTTP/2 bytes for a server this end does not run".to_owned();
                    };
                    if !server.feed(chunk, &writer, kinds.server, &peer, &serve.serving.h2) {
                        break "its HTTP/2 side restarted".to_owned();
                    }
                }
                Ok(Some((kind, _))) if kind == kinds.server.1 => server.end(),
                Ok(Some((Kind::Done, _))) => theirs_done = true,
                Ok(Some((kind, _))) => break format!("a frame of unexpected kind {kind:?}"),
                Ok(None) => break "the peer closed it".to_owned(),
                Err(e) => break e.to_string(),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    tracing::debug!(peer = %name, remote = %peer.remote, "link ended: {why}");
    alive.store(false, Ordering::Release);
    drop(client);
    let callers: Vec<_> = crate::lock(&waiting).drain().collect();
    for (_, caller) in callers {
        let _ = caller.send(Err(Status::unavailable(format!(
            "the stream to {name} broke ({why}); the call may have run"
        ))));
    }
    server.end();
    while tasks.join_next().await.is_some() {}
    // Let tonic write what it still has (its goaway, the last responses).
    let _ = tokio::time::timeout(Duration::from_secs(1), server.finished()).await;
    writer.close();
    drop(token);
}

/// The server side of the peer's HTTP/2 connection: started by its first bytes, handed to
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
        kinds: (Kind, Kind),
        peer: &PeerInfo,
        conns: &tokio::sync::mpsc::Sender<std::io::Result<TlsConn>>,
    ) -> bool {
        if self.done.is_none() {
            let done = CancellationToken::new();
            let ended = Box::new(done.clone().drop_guard());
            let (pipe, feed) = H2Pipe::new(writer.clone(), kinds, ended);
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
/// its own task, so that it does not hold up the frames behind it. Its result goes out as a
/// frame of `kind`.
fn run(
    handler: &Arc<dyn Answer>,
    frame: pb::InvokeFrame,
    kind: Kind,
    writer: &Arc<FrameWriter>,
    tasks: &mut JoinSet<()>,
) {
    let id = frame.id;
    let mut work = handler.answer(frame);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(result) = work.as_mut().poll(&mut cx) {
        let _ = writer.push(&framing::encode_as(kind, &result_of(id, result)));
        return;
    }
    let writer = writer.clone();
    tasks.spawn(async move {
        let result = work.await;
        let _ = writer.write(&framing::encode_as(kind, &result_of(id, result)));
    });
}

/// A result frame as the caller's outcome.
pub(crate) fn from_result(result: pb::InvokeResult) -> Result<pb::InvokeResult, Status> {
    if result.status_code == 0 {
        Ok(result)
    } else {
        Err(Status::new(
            Code::from(result.status_code),
            result.status_message,
        ))
    }
}

#[cfg(test)]
#[path = "end_tests.rs"]
mod tests;
