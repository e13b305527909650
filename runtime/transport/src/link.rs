//! A link: the one connection between two nodes, carrying both the invoke stream and HTTP/2,
//! both ways.
//!
//! One node opens the link (on the peer's gRPC port, with the same mutual TLS; the opening is
//! in [`crate::server`]), and then both nodes use it: either one calls the other on it, so a
//! pair of nodes needs one connection, whoever spoke first. Each end has a calling side (a
//! [`Mux`] for invoke frames, answered by id, and an HTTP/2 client, a tonic
//! [`Channel`](tonic::transport::Channel)) and a serving side (the node's handler for invoke
//! frames, tonic's server for HTTP/2). So every gRPC call between two nodes (registry sync,
//! module fetch, streams, the supervisor's calls) and every invoke frame go over one TCP
//! connection and one TLS session. The frames' [`Kind`] says which end's exchange they belong
//! to; [`crate::end`] reads them.
//!
//! Each HTTP/2 connection is an [`H2Pipe`] at each end: a byte stream whose writes become
//! frames on the link's writer, and whose reads are the peer's frames of that connection,
//! handed over by the end's reader task. HTTP/2's own flow control bounds what the reader
//! holds for it; the writer holds a pipe's writes back while the socket is backed up
//! ([`FrameWriter::poll_room`]), so a bulk transfer cannot queue without bound. A pipe's
//! shutdown sends its end frame, which the other end reads as the end of the stream.
//!
//! An end is done calling once both of its users are ([`Users`]): the [`Mux`] (when the pool
//! and every call dropped it) and the HTTP/2 client (when every clone of the channel is
//! dropped and its streams have finished). It says so to the peer ([`Kind::Done`]), and the
//! socket closes when both ends are done and neither has anything left to answer. Streams
//! that hold a channel therefore finish on their link after the pool let it go.
//!
//! [`Mux`]: crate::Mux

use crate::framing::{FrameWriter, Kind};
use crate::lock;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The largest chunk of HTTP/2 bytes in one frame.
const CHUNK: usize = 64 << 10;

/// Chunks of HTTP/2 bytes from the link's reader to its pipe. Unbounded: HTTP/2's flow
/// control windows bound what the peer may send ahead of this end's reading.
pub(crate) type H2Sender = mpsc::UnboundedSender<Bytes>;

/// One end of a link's HTTP/2 connection, as a byte stream.
pub(crate) struct H2Pipe {
    incoming: mpsc::UnboundedReceiver<Bytes>,
    current: Bytes,
    writer: Arc<FrameWriter>,
    /// The kinds its bytes and its end are sent as.
    kinds: (Kind, Kind),
    /// Dropped when this end is done writing: what it holds tells the link so.
    ended: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for H2Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pipe").finish_non_exhaustive()
    }
}

impl H2Pipe {
    /// A pipe writing to `writer` as frames of `kinds` (its bytes, its end), and the sender
    /// its reads come from. `ended` is dropped when the pipe is shut down or dropped.
    pub(crate) fn new(
        writer: Arc<FrameWriter>,
        kinds: (Kind, Kind),
        ended: Box<dyn std::any::Any + Send + Sync>,
    ) -> (Self, H2Sender) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pipe = Self {
            incoming: rx,
            current: Bytes::new(),
            writer,
            kinds,
            ended: Some(ended),
        };
        (pipe, tx)
    }

    /// Sends the end of this side's bytes, once.
    fn end(&mut self) {
        if let Some(ended) = self.ended.take() {
            let _ = self.writer.push_frame(self.kinds.1, &[]);
            self.writer.flush_now();
            drop(ended);
        }
    }
}

impl Drop for H2Pipe {
    fn drop(&mut self) {
        self.end();
    }
}

impl AsyncRead for H2Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.current.is_empty() {
            match ready!(self.incoming.poll_recv(cx)) {
                Some(chunk) => self.current = chunk,
                // The peer's end, or the link is gone: the end of the stream.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ended.is_none() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        ready!(self.writer.poll_room(cx));
        let n = buf.len().min(CHUNK);
        self.writer
            .push_frame(self.kinds.0, &buf[..n])
            .map_err(|why| io::Error::new(io::ErrorKind::BrokenPipe, why))?;
        self.writer.flush_now();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write went to the socket, or to the backlog the flusher writes out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.end();
        Poll::Ready(Ok(()))
    }
}

/// One end's users of a link (its mux and its HTTP/2 client): when the last one lets go, the
/// end tells the peer it starts no more calls ([`Kind::Done`]) and its reader task learns so
/// through `done`; the link closes once both ends are done and nothing is left to answer
/// ([`crate::end`]).
#[derive(Debug)]
pub(crate) struct Users {
    writer: Arc<FrameWriter>,
    count: AtomicUsize,
    done: CancellationToken,
}

/// One user's hold on a link; dropping it lets go.
#[derive(Debug)]
pub(crate) struct Hold(Arc<Users>);

impl Users {
    /// Two holds on `writer`; `done` is cancelled when both are dropped.
    pub(crate) fn pair(writer: Arc<FrameWriter>, done: CancellationToken) -> (Hold, Hold) {
        let users = Arc::new(Self {
            writer,
            count: AtomicUsize::new(2),
            done,
        });
        (Hold(users.clone()), Hold(users))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.0.writer.push_frame(Kind::Done, &[]);
            self.0.writer.flush_now();
            self.0.done.cancel();
        }
    }
}

/// The links a node serves, by the peer that opened them.
#[derive(Debug, Default)]
pub(crate) struct Served {
    links: std::sync::Mutex<std::collections::HashMap<u64, String>>,
    next: std::sync::atomic::AtomicU64,
}

/// One served link's entry in [`Served`], removed when dropped.
pub(crate) struct ServedLink(Arc<Served>, u64);

impl Served {
    /// Records a link from `peer` until the entry is dropped.
    pub(crate) fn add(self: &Arc<Self>, peer: String) -> ServedLink {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.links).insert(id, peer);
        ServedLink(self.clone(), id)
    }

    /// The peers whose links are served now, one entry per link, sorted.
    pub(crate) fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = lock(&self.links).values().cloned().collect();
        peers.sort();
        peers
    }
}

impl Drop for ServedLink {
    fn drop(&mut self) {
        lock(&self.0.links).remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::FrameReader;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn pipe_bytes_cross_as_frames_and_its_end_is_sent() {
        let (a, b) = tokio::io::duplex(1 << 10);
        let (_ra, wa) = tokio::io::split(a);
        let (rb, _wb) = tokio::io::split(b);
        let (writer, flusher) = FrameWriter::new(Box::new(wa));
        tokio::spawn(flusher);
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        let (mut pipe, feed) = H2Pipe::new(writer, (Kind::H2, Kind::H2End), Box::new(ended_tx));
        // Far more than the duplex holds: the backlog and the flusher carry it.
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let send = {
            let data = data.clone();
            tokio::spawn(async move {
                pipe.write_all(&data).await.unwrap();
                pipe.shutdown().await.unwrap();
                pipe
            })
        };
        let mut reader = FrameReader::new(Box::new(rb), 1 << 20);
        let mut got = Vec::new();
        loop {
            let (kind, body) = reader.next_frame().await.unwrap().unwrap();
            match kind {
                Kind::H2 => got.extend_from_slice(&body),
                Kind::H2End => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, data);
        assert!(
            ended_rx.await.is_err(),
            "the end guard is dropped at shutdown"
        );
        // Reads come from the feed, and end when it is dropped.
        let mut pipe = send.await.unwrap();
        feed.send(Bytes::from_static(b"hello")).unwrap();
        drop(feed);
        let mut read = Vec::new();
        pipe.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"hello");
    }
}
