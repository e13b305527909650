//! Length-prefixed protobuf frames on a byte stream (plain TCP or TLS), for the invoke streams
//! between nodes (`crate::mux`).
//!
//! A frame is a 4-byte big-endian header and that many bytes of payload. The header's top three
//! bits are the frame's [`Kind`] and the rest its length: one connection between two nodes (a
//! link, [`crate::link`]) carries invoke frames and HTTP/2 bytes side by side. Writes
//! are synchronous and go straight to the socket from the task that makes them: there is no
//! writer task in the common case, so a frame costs no extra wake-up, and frames written at
//! the same time share a syscall. Only when the socket would block does the rest wait in a
//! backlog, which a per-connection flusher task writes out when the socket is writable again;
//! frames written meanwhile queue behind it, in order.

use crate::lock;
use bytes::{Buf, Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Notify;

/// A stream's read half.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// A stream's write half.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// What a frame carries, from the header's top three bits.
///
/// A link is used both ways ([`crate::end`]): the node that dialed it (the dialer) calls the
/// node that accepted it (the acceptor) with [`Kind::Invoke`] frames and runs an HTTP/2 client
/// on [`Kind::H2`]; the acceptor calls back with [`Kind::Reverse`] frames and runs its own
/// HTTP/2 client on [`Kind::ReverseH2`]. A kind names one exchange, whose two directions carry
/// the calls and their results, or the client's and the server's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The dialer's calls: an invoke frame to the acceptor, a result back.
    Invoke,
    /// Bytes of the dialer's HTTP/2 connection (its client, the acceptor's server).
    H2,
    /// The sender's side of the dialer's HTTP/2 connection is done writing (its half-close).
    H2End,
    /// The acceptor's calls: an invoke frame to the dialer, a result back.
    Reverse,
    /// Bytes of the acceptor's HTTP/2 connection (its client, the dialer's server).
    ReverseH2,
    /// The sender's side of the acceptor's HTTP/2 connection is done writing.
    ReverseH2End,
    /// The sender will start no more calls on the link: its pool and its callers let it go.
    Done,
    /// A kind this version does not know.
    Unknown(u8),
}

const KIND_SHIFT: u32 = 29;
const LEN_MASK: u32 = (1 << KIND_SHIFT) - 1;

impl Kind {
    fn from_bits(bits: u8) -> Self {
        match bits {
            0 => Kind::Invoke,
            1 => Kind::H2,
            2 => Kind::H2End,
            3 => Kind::Reverse,
            4 => Kind::ReverseH2,
            5 => Kind::ReverseH2End,
            6 => Kind::Done,
            other => Kind::Unknown(other),
        }
    }

    fn bits(self) -> u32 {
        match self {
            Kind::Invoke => 0,
            Kind::H2 => 1,
            Kind::H2End => 2,
            Kind::Reverse => 3,
            Kind::ReverseH2 => 4,
            Kind::ReverseH2End => 5,
            Kind::Done => 6,
            Kind::Unknown(b) => u32::from(b & 7),
        }
    }
}

/// The header of a frame of `kind` with `len` bytes of payload (`len` below 512 MiB).
pub(crate) fn header(kind: Kind, len: usize) -> [u8; 4] {
    let len = u32::try_from(len).unwrap_or(LEN_MASK).min(LEN_MASK);
    ((kind.bits() << KIND_SHIFT) | len).to_be_bytes()
}

/// Reads frames of at most `max` bytes.
pub(crate) struct FrameReader {
    io: ReadHalf,
    buf: BytesMut,
    max: usize,
}

impl FrameReader {
    pub(crate) fn new(io: ReadHalf, max: usize) -> Self {
        Self::with_prefix(io, max, &[])
    }

    /// A reader that first yields `prefix`, bytes already read from the stream.
    pub(crate) fn with_prefix(io: ReadHalf, max: usize, prefix: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(16 << 10);
        buf.extend_from_slice(prefix);
        Self { io, buf, max }
    }

    /// The next message; `None` when the peer closed the stream between frames.
    pub(crate) async fn next<M: prost::Message + Default>(&mut self) -> io::Result<Option<M>> {
        match self.next_raw().await? {
            None => Ok(None),
            Some(body) => M::decode(body)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    /// The next frame's bytes, whatever its kind; `None` when the peer closed the stream
    /// between frames.
    pub(crate) async fn next_raw(&mut self) -> io::Result<Option<Bytes>> {
        Ok(self.next_frame().await?.map(|(_, body)| body))
    }

    /// The next frame, its kind and its bytes; `None` when the peer closed the stream between
    /// frames.
    pub(crate) async fn next_frame(&mut self) -> io::Result<Option<(Kind, Bytes)>> {
        loop {
            if let Some((kind, len)) = self.head_at(0) {
                if len > self.max {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a frame of {len} bytes is over the limit of {}", self.max),
                    ));
                }
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Ok(Some((kind, self.buf.split_to(len).freeze())));
                }
                self.buf.reserve(4 + len - self.buf.len());
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// The kind of the next frame, if all of it is buffered.
    pub(crate) fn next_kind(&self) -> Option<Kind> {
        let (kind, len) = self.head_at(0)?;
        (self.buf.len() >= 4 + len).then_some(kind)
    }

    /// How many whole frames are buffered, ready for `next` without reading.
    pub(crate) fn buffered_frames(&self) -> usize {
        let (mut at, mut n) = (0, 0);
        while let Some(len) = self.len_at(at) {
            at += 4 + len;
            if at > self.buf.len() {
                break;
            }
            n += 1;
        }
        n
    }

    /// The length of the frame that starts `at` bytes into the buffer, if buffered.
    fn len_at(&self, at: usize) -> Option<usize> {
        self.head_at(at).map(|(_, len)| len)
    }

    /// The kind and length of the frame that starts `at` bytes into the buffer, if buffered.
    fn head_at(&self, at: usize) -> Option<(Kind, usize)> {
        let head = self.buf.get(at..at + 4)?;
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = Kind::from_bits(u8::try_from(word >> KIND_SHIFT).unwrap_or(7));
        Some((kind, (word & LEN_MASK) as usize))
    }

    /// The next `n` bytes, unframed.
    pub(crate) async fn take(&mut self, n: usize) -> io::Result<Bytes> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 << 10);
        }
        Ok(self.io.read_buf(&mut self.buf).await? > 0)
    }
}

/// Appends `bytes` to `out` as one unframed chunk, length first, as [`FrameReader::next_raw`]
/// reads it: the fields of a link's opening.
pub(crate) fn put_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes `message` as one frame of [`Kind::Invoke`].
pub(crate) fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    encode_as(Kind::Invoke, message)
}

/// Encodes `message` as one frame of `kind`.
pub(crate) fn encode_as<M: prost::Message>(kind: Kind, message: &M) -> Vec<u8> {
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&header(kind, len));
    // Cannot fail: the buffer has room for the message.
    let _ = message.encode(&mut out);
    out
}

/// The write half of a stream, shared by every task that answers or calls on it.
///
/// A writer appends its frame to a queue, then writes the queue out itself unless another task
/// is writing already; that one picks the frame up before it lets go. So concurrent frames
/// leave in one syscall, and nobody waits on a lock held across a syscall.
pub(crate) struct FrameWriter {
    queue: Mutex<Queue>,
    /// The bytes in the socket's backlog, as last seen by whoever wrote; with the queue's,
    /// what [`FrameWriter::poll_room`] bounds.
    backlogged: AtomicUsize,
    /// Held while writing to the socket.
    out: Mutex<Out>,
    /// Wakes the flusher when the socket would block, or to close.
    wake: Notify,
}

struct Queue {
    bytes: BytesMut,
    /// Why the stream can no longer be written; set once.
    broken: Option<String>,
    /// Set by [`FrameWriter::close`]: the flusher ends once the queue is out.
    closing: bool,
    /// A writer waiting in [`FrameWriter::poll_room`] for the queue and backlog to drain.
    room: Option<Waker>,
}

/// Past this many bytes queued or backlogged, [`FrameWriter::poll_room`] waits: a byte
/// stream's writer (HTTP/2 on a link) is held back while the socket is backed up.
const ROOM: usize = 1 << 20;

struct Out {
    io: WriteHalf,
    /// Bytes the socket did not take yet; only the flusher writes them.
    backlog: BytesMut,
    unflushed: bool,
    /// An empty buffer to swap with the queue's.
    spare: BytesMut,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// The writer, and the flusher task's future, which ends when the stream breaks or the
    /// writer is closed and its queue written.
    pub(crate) fn new(io: WriteHalf) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let writer = Arc::new(Self {
            queue: Mutex::new(Queue {
                bytes: BytesMut::with_capacity(8 << 10),
                broken: None,
                closing: false,
                room: None,
            }),
            backlogged: AtomicUsize::new(0),
            out: Mutex::new(Out {
                io,
                backlog: BytesMut::new(),
                unflushed: false,
                spare: BytesMut::with_capacity(8 << 10),
            }),
            wake: Notify::new(),
        });
        let flusher = writer.clone();
        (writer, async move { flusher.flush_loop().await })
    }

    /// Writes one encoded frame now, or queues it behind the frames being written. Never waits.
    pub(crate) fn write(&self, frame: &[u8]) -> Result<(), String> {
        self.push(frame)?;
        self.flush_now();
        Ok(())
    }

    /// Queues one frame for the flusher, which writes it with the others queued by then.
    /// Cheaper than [`FrameWriter::write`] when many frames are going out at once.
    pub(crate) fn write_soon(&self, frame: &[u8]) -> Result<(), String> {
        self.push(frame)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queues one frame; [`FrameWriter::flush_now`] writes it.
    pub(crate) fn push(&self, frame: &[u8]) -> Result<(), String> {
        let mut queue = lock(&self.queue);
        if let Some(why) = &queue.broken {
            return Err(why.clone());
        }
        queue.bytes.extend_from_slice(frame);
        Ok(())
    }

    /// Queues one frame of `kind` holding `body`; [`FrameWriter::flush_now`] writes it.
    pub(crate) fn push_frame(&self, kind: Kind, body: &[u8]) -> Result<(), String> {
        let mut queue = lock(&self.queue);
        if let Some(why) = &queue.broken {
            return Err(why.clone());
        }
        queue.bytes.extend_from_slice(&header(kind, body.len()));
        queue.bytes.extend_from_slice(body);
        Ok(())
    }

    /// Ready when fewer than [`ROOM`] bytes wait to be written (or the stream broke, which
    /// the next push reports); else pending until the flusher has written them out.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut queue = lock(&self.queue);
        let waiting = queue.bytes.len() + self.backlogged.load(Ordering::Acquire);
        if waiting < ROOM || queue.broken.is_some() {
            return Poll::Ready(());
        }
        queue.room = Some(cx.waker().clone());
        drop(queue);
        self.wake.notify_one();
        Poll::Pending
    }

    /// Wakes a writer waiting for room.
    fn wake_room(&self) {
        let waker = lock(&self.queue).room.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Writes what is queued, unless another task is writing (it takes what is queued before
    /// it lets go) or the socket is backed up (the flusher has it then).
    pub(crate) fn flush_now(&self) {
        // Pairs with the fence in `pump`: either the task writing sees the queued frames after
        // it lets go, or this task sees that nobody is writing.
        fence(Ordering::SeqCst);
        self.pump();
    }

    /// Writes the queue out until it is empty, unless another task is writing or the socket
    /// is backed up (then the flusher has it).
    fn pump(&self) {
        loop {
            let mut out = match self.out.try_lock() {
                Ok(out) => out,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            if !out.backlog.is_empty() || out.unflushed {
                drop(out);
                self.wake.notify_one();
                return;
            }
            let mut batch = std::mem::take(&mut out.spare);
            std::mem::swap(&mut batch, &mut lock(&self.queue).bytes);
            if !batch.is_empty() {
                if let Err(e) = out.write_now(&batch) {
                    lock(&self.queue).broken.get_or_insert(e.to_string());
                    return;
                }
                if !out.backlog.is_empty() {
                    self.backlogged.store(out.backlog.len(), Ordering::Release);
                }
                if !out.backlog.is_empty() || out.unflushed {
                    self.wake.notify_one();
                }
            }
            batch.clear();
            out.spare = batch;
            drop(out);
            fence(Ordering::SeqCst);
            if lock(&self.queue).bytes.is_empty() {
                return;
            }
        }
    }

    /// Ends the flusher once what is queued has been written, and shuts the stream down.
    pub(crate) fn close(&self) {
        lock(&self.queue).closing = true;
        self.wake.notify_one();
    }

    async fn flush_loop(&self) {
        loop {
            self.wake.notified().await;
            loop {
                // Let the tasks that are ready now queue their frames too: one syscall for all.
                tokio::task::yield_now().await;
                if let Err(e) = poll_fn(|cx| self.poll_drain(cx)).await {
                    lock(&self.queue).broken.get_or_insert(e.to_string());
                    self.wake_room();
                    return;
                }
                self.wake_room();
                fence(Ordering::SeqCst);
                let mut queue = lock(&self.queue);
                if queue.closing && queue.bytes.is_empty() {
                    queue.broken.get_or_insert("the stream was closed".into());
                    let room = queue.room.take();
                    drop(queue);
                    if let Some(w) = room {
                        w.wake();
                    }
                    let mut out = lock(&self.out);
                    let mut cx = Context::from_waker(Waker::noop());
                    let _ = Pin::new(&mut out.io).poll_shutdown(&mut cx);
                    return;
                }
                if queue.bytes.is_empty() {
                    break;
                }
            }
        }
    }

    /// Writes the queue and the backlog out; pending while the socket is backed up.
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = lock(&self.out);
        loop {
            if out.backlog.is_empty() {
                let mut queue = lock(&self.queue);
                std::mem::swap(&mut out.backlog, &mut queue.bytes);
            }
            if out.backlog.is_empty() && !out.unflushed {
                return Poll::Ready(Ok(()));
            }
            let drained = out.poll_drain(cx);
            self.backlogged.store(out.backlog.len(), Ordering::Release);
            if let Poll::Ready(Err(e)) = drained {
                return Poll::Ready(Err(e));
            }
            if !out.backlog.is_empty() || out.unflushed {
                return Poll::Pending;
            }
        }
    }
}

impl Out {
    /// Writes what the socket takes now; the rest goes to the backlog.
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<()> {
        // A waker that does nothing is enough: whatever does not go out now is left to the
        // flusher, which polls with its own.
        let mut cx = Context::from_waker(Waker::noop());
        let mut rest = bytes;
        while !rest.is_empty() {
            match Pin::new(&mut self.io).poll_write(&mut cx, rest) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => rest = &rest[n..],
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    self.backlog.extend_from_slice(rest);
                    return Ok(());
                }
            }
        }
        match Pin::new(&mut self.io).poll_flush(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                self.unflushed = true;
                Ok(())
            }
        }
    }

    /// Writes the backlog out and flushes; pending while the socket is backed up.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.backlog.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.backlog) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.backlog.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.unflushed = true;
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_frames_counts_only_whole_frames() {
        let frame = |id| {
            encode(&steinadler_proto::v1::InvokeResult {
                id,
                ..Default::default()
            })
        };
        let mut bytes = [frame(1), frame(2), frame(3)].concat();
        // Then the first 3 bytes of a fourth frame: not even its whole length.
        bytes.extend_from_slice(&frame(400)[..3]);
        let reader = |b: &[u8]| FrameReader::with_prefix(Box::new(tokio::io::empty()), 1 << 20, b);
        assert_eq!(reader(&bytes).buffered_frames(), 3);
        assert_eq!(reader(&bytes[..2]).buffered_frames(), 0);
        assert_eq!(reader(&[]).buffered_frames(), 0);
        let whole = frame(9).len();
        assert_eq!(reader(&bytes[..whole * 2]).buffered_frames(), 2);
        assert_eq!(reader(&bytes[..whole * 2 - 1]).buffered_frames(), 1);
    }

    #[tokio::test]
    async fn frames_cross_a_small_pipe_in_order() {
        // A pipe far smaller than what is written forces the backlog and the flusher.
        let (a, b) = tokio::io::duplex(64);
        let (ra, wa) = tokio::io::split(a);
        let (rb, _wb) = tokio::io::split(b);
        drop(ra);
        let (writer, flusher) = FrameWriter::new(Box::new(wa));
        tokio::spawn(flusher);
        let mut reader = FrameReader::new(Box::new(rb), 1 << 20);
        for i in 0..200u64 {
            let msg = steinadler_proto::v1::InvokeResult {
                id: i,
                status_message: "x".repeat(i as usize),
                ..Default::default()
            };
            writer.write(&encode(&msg)).unwrap();
        }
        for i in 0..200u64 {
            let got: steinadler_proto::v1::InvokeResult = reader.next().await.unwrap().unwrap();
            assert_eq!(got.id, i);
            assert_eq!(got.status_message.len(), i as usize);
        }
        writer.close();
        assert!(
            reader
                .next::<steinadler_proto::v1::InvokeResult>()
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (_ra, wa) = tokio::io::split(a);
        let (rb, _wb) = tokio::io::split(b);
        let (writer, flusher) = FrameWriter::new(Box::new(wa));
        tokio::spawn(flusher);
        let msg = steinadler_proto::v1::InvokeResult {
            status_message: "x".repeat(100),
            ..Default::default()
        };
        writer.write(&encode(&msg)).unwrap();
        let mut reader = FrameReader::new(Box::new(rb), 50);
        let err = reader
            .next::<steinadler_proto::v1::InvokeResult>()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
