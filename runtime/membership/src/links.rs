//! The memberlist [`Transport`] of the one-port mode: packets and streams go through the
//! node's [`GossipLinks`], and what peers send arrives through the [`GossipInbox`]
//! (`crate::wire`).
//!
//! Packets are fire-and-forget, as on UDP: [`Transport::send_to`] hands the packet to a task
//! and returns, so a probe of a peer that does not answer never holds up memberlist's loops
//! for the length of a connect. The links are reliable, so memberlist adds no checksums, and
//! with mutual TLS they are secure, so it adds no encryption either.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use memberlist::agnostic::RuntimeLite;
use memberlist::proto::{Payload, ProtoReader, ProtoWriter};
use memberlist::transport::{
    Connection, PacketSubscriber, StreamSubscriber, Transport, TransportError, packet_stream,
    promised_stream,
};
use smol_str::SmolStr;
use tokio::sync::mpsc;

use crate::wire::{GossipInbox, GossipLinks, GossipStream, Names};

/// The async runtime memberlist runs on.
pub(crate) type Runtime = memberlist::agnostic::tokio::TokioRuntime;
/// memberlist's clock.
pub(crate) type Instant = <Runtime as RuntimeLite>::Instant;

/// The largest packet memberlist builds: a compound of gossip messages. The links carry any
/// size; this keeps one packet's delivery short.
const MAX_PACKET: usize = 16 << 10;

/// How long a packet's delivery may take, connect included, before it is dropped.
const PACKET_TIMEOUT: Duration = Duration::from_secs(5);

/// How many received packets wait for memberlist before more are dropped.
const PACKET_QUEUE: usize = 1024;

/// What [`LinkTransport::new`] takes.
pub(crate) struct LinkOptions {
    pub(crate) id: SmolStr,
    pub(crate) addr: SocketAddr,
    pub(crate) links: Arc<dyn GossipLinks>,
    pub(crate) names: Arc<Names>,
    pub(crate) packets: PacketSubscriber<SocketAddr, Instant>,
    pub(crate) streams: StreamSubscriber<SocketAddr, LinkConn>,
}

impl LinkOptions {
    /// Options for the node `id` at `addr`, and the inbox its peers' gossip goes into.
    pub(crate) fn new(
        id: SmolStr,
        addr: SocketAddr,
        links: Arc<dyn GossipLinks>,
    ) -> (Self, GossipInbox) {
        let (packets_in, packets) = packet_stream::<LinkTransport>(PACKET_QUEUE);
        let (streams_in, streams) = promised_stream::<LinkTransport>();
        let names = Arc::new(Names::default());
        let inbox = GossipInbox {
            packets: packets_in,
            streams: streams_in,
            names: names.clone(),
        };
        let options = Self {
            id,
            addr,
            links,
            names,
            packets,
            streams,
        };
        (options, inbox)
    }
}

/// Gossip on the node's links.
pub(crate) struct LinkTransport {
    options: LinkOptions,
    stopped: AtomicBool,
}

/// A failure to deliver gossip.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0}")]
    Custom(Cow<'static, str>),
}

impl TransportError for LinkError {
    fn is_remote_failure(&self) -> bool {
        matches!(self, Self::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::TimedOut
                | io::ErrorKind::NotConnected
        ))
    }

    fn custom(err: Cow<'static, str>) -> Self {
        Self::Custom(err)
    }
}

impl LinkTransport {
    fn check_running(&self) -> Result<(), LinkError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "gossip stopped").into());
        }
        Ok(())
    }
}

impl Transport for LinkTransport {
    type Error = LinkError;
    type Id = SmolStr;
    type Address = SocketAddr;
    type ResolvedAddress = SocketAddr;
    type Resolver = memberlist::tokio::TokioSocketAddrResolver;
    type Connection = LinkConn;
    type Runtime = Runtime;
    type Options = LinkOptions;

    async fn new(options: Self::Options) -> Result<Self, Self::Error> {
        Ok(Self {
            options,
            stopped: AtomicBool::new(false),
        })
    }

    async fn resolve(&self, addr: &SocketAddr) -> Result<SocketAddr, Self::Error> {
        Ok(*addr)
    }

    fn local_id(&self) -> &SmolStr {
        &self.options.id
    }

    fn local_address(&self) -> &SocketAddr {
        &self.options.addr
    }

    fn advertise_address(&self) -> &SocketAddr {
        &self.options.addr
    }

    fn max_packet_size(&self) -> usize {
        MAX_PACKET
    }

    fn header_overhead(&self) -> usize {
        0
    }

    fn blocked_address(&self, _addr: &SocketAddr) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn send_to(
        &self,
        addr: &SocketAddr,
        packet: Payload,
    ) -> Result<(usize, Instant), Self::Error> {
        self.check_running()?;
        let now = Runtime::now();
        let payload = packet.into_bytes();
        let len = payload.len();
        let (to, name) = (*addr, self.options.names.get(addr));
        let sending = self.options.links.send_packet(to, name, payload);
        tokio::spawn(async move {
            match tokio::time::timeout(PACKET_TIMEOUT, sending).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::trace!(%to, error = %e, "gossip packet not delivered"),
                Err(_) => tracing::trace!(%to, "gossip packet timed out"),
            }
        });
        Ok((len, now))
    }

    async fn open(&self, addr: &SocketAddr, deadline: Instant) -> Result<LinkConn, Self::Error> {
        self.check_running()?;
        let opening = self
            .options
            .links
            .open_stream(*addr, self.options.names.get(addr));
        match Runtime::timeout_at(deadline, opening).await {
            Ok(Ok(stream)) => Ok(LinkConn::new(stream)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("opening a gossip stream to {addr} timed out"),
            )
            .into()),
        }
    }

    fn packet(&self) -> PacketSubscriber<SocketAddr, Instant> {
        self.options.packets.clone()
    }

    fn stream(&self) -> StreamSubscriber<SocketAddr, LinkConn> {
        self.options.streams.clone()
    }

    fn packet_reliable(&self) -> bool {
        true
    }

    fn packet_secure(&self) -> bool {
        self.options.links.secure()
    }

    fn stream_secure(&self) -> bool {
        self.options.links.secure()
    }

    async fn shutdown(&self) -> Result<(), Self::Error> {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            self.options.packets.close();
            self.options.streams.close();
        }
        Ok(())
    }
}

/// A gossip stream as memberlist sees it.
#[derive(Debug)]
pub struct LinkConn {
    reader: LinkReader,
    writer: LinkWriter,
}

impl LinkConn {
    pub(crate) fn new(stream: GossipStream) -> Self {
        Self {
            reader: LinkReader {
                incoming: stream.incoming,
                buffered: BytesMut::new(),
                ended: false,
            },
            writer: LinkWriter {
                outgoing: Some(stream.outgoing),
            },
        }
    }
}

impl Connection for LinkConn {
    type Reader = LinkReader;
    type Writer = LinkWriter;

    fn split(self) -> (LinkReader, LinkWriter) {
        (self.reader, self.writer)
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf).await
    }

    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.peek(buf).await
    }

    async fn peek_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.peek_exact(buf).await
    }

    async fn write_all(&mut self, payload: &[u8]) -> io::Result<()> {
        self.writer.write_all(payload).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.writer.close().await
    }
}

/// The reading half of a [`LinkConn`]: the peer's chunks, with what was peeked kept.
#[derive(Debug)]
pub struct LinkReader {
    incoming: mpsc::Receiver<io::Result<Bytes>>,
    buffered: BytesMut,
    ended: bool,
}

impl LinkReader {
    /// Reads chunks until `want` bytes are buffered or the stream ends.
    async fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.buffered.len() < want && !self.ended {
            match self.incoming.recv().await {
                Some(Ok(chunk)) => self.buffered.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
        Ok(())
    }

    /// Fills `buf` from the buffer; `UnexpectedEof` if the stream ended before.
    async fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.fill(buf.len()).await?;
        if self.buffered.len() < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the gossip stream ended early",
            ));
        }
        buf.copy_from_slice(&self.buffered[..buf.len()]);
        Ok(())
    }
}

impl ProtoReader for LinkReader {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.peek(buf).await?;
        self.buffered.advance(n);
        Ok(n)
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.exact(buf).await?;
        self.buffered.advance(buf.len());
        Ok(())
    }

    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.fill(1).await?;
        let n = buf.len().min(self.buffered.len());
        buf[..n].copy_from_slice(&self.buffered[..n]);
        Ok(n)
    }

    async fn peek_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.exact(buf).await
    }
}

/// The writing half of a [`LinkConn`].
#[derive(Debug)]
pub struct LinkWriter {
    outgoing: Option<mpsc::Sender<Bytes>>,
}

impl ProtoWriter for LinkWriter {
    async fn close(&mut self) -> io::Result<()> {
        self.outgoing = None;
        Ok(())
    }

    async fn write_all(&mut self, payload: &[u8]) -> io::Result<()> {
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the gossip stream is closed");
        let outgoing = self.outgoing.as_ref().ok_or_else(closed)?;
        outgoing
            .send(Bytes::copy_from_slice(payload))
            .await
            .map_err(|_| closed())
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: &[&[u8]]) -> LinkReader {
        let (tx, rx) = mpsc::channel(8);
        for c in chunks {
            tx.try_send(Ok(Bytes::copy_from_slice(c))).unwrap();
        }
        LinkConn::new(GossipStream {
            incoming: rx,
            outgoing: mpsc::channel(1).0,
        })
        .reader
    }

    #[tokio::test]
    async fn peeks_and_reads_across_chunks_then_reports_the_end() {
        let mut r = reader(&[b"ab", b"cde", b"f"]);
        let mut four = [0u8; 4];
        r.peek_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"abcd");
        r.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"abcd");
        // A read gives what one chunk left, as a socket read gives what arrived.
        let mut rest = [0u8; 8];
        assert_eq!(r.read(&mut rest).await.unwrap(), 1);
        assert_eq!(&rest[..1], b"e");
        assert_eq!(r.read(&mut rest).await.unwrap(), 1);
        assert_eq!(&rest[..1], b"f");
        assert_eq!(r.read(&mut rest).await.unwrap(), 0);
        let err = r.read_exact(&mut four).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
