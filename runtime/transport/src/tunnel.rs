//! Tunnels: links to and from a peer that accepts no connections (`--no-inbound`), over a
//! byte stream that a third node relays.
//!
//! A node behind NAT without a port-forward, or behind a firewall that lets nothing in, can
//! still dial out. It keeps connections open to one or more reachable members, its relays, and
//! a peer that wants a link to it asks one of them for a byte stream to it instead of dialing
//! its address. How that stream is made (the relay's gRPC service, who the relays are) is the
//! node's business, behind [`Tunnels`]; this module runs links over it:
//! - on the dialing side, [`crate::Transport`] asks its [`Tunnels`] before it dials a peer, and
//!   runs the link's TLS handshake and opening over the tunnel instead of TCP;
//! - on the accepting side, [`crate::Transport::accept_tunnel`] takes a tunnel as if the
//!   node's listener had accepted it: the same TLS handshake, the same opening.
//!
//! The TLS session runs end to end, between the two nodes: the relay forwards ciphertext and
//! cannot read or change a byte, and each end checks the other's certificate as on a direct
//! link. [`ChunkConn`] makes a byte stream of chunks, as a gRPC stream carries them.

use crate::admit::HANDSHAKE_TIMEOUT;
use crate::end::Serve;
use crate::tls::{Conn, PeerInfo, TlsRefusal, identity_in};
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::PollSender;

/// A byte stream to a peer through a relay, and the relay's address (what the peer's end
/// sees as the remote address).
pub struct Tunnel {
    /// The byte stream.
    pub conn: Box<dyn Conn>,
    /// The relay's address.
    pub via: SocketAddr,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

/// A tunnel being opened: `None` when the peer is dialed directly at its address.
pub type Opening = Pin<Box<dyn Future<Output = io::Result<Option<Tunnel>>> + Send>>;

/// How a node reaches the peers it cannot dial: the transport's handle on the node's relays.
pub trait Tunnels: Send + Sync + std::fmt::Debug + 'static {
    /// A byte stream to `peer` through one of its relays, or `None` if `peer` accepts
    /// connections and is dialed at its address.
    fn tunnel(&self, peer: &str) -> Opening;
}

/// The largest chunk one write sends.
const MAX_CHUNK: usize = 32 << 10;

/// A byte stream made of chunks: reads are the chunks of `incoming`, writes become chunks on
/// `outgoing`. Shutting it down (or dropping it) ends `outgoing`, which the other end reads as
/// the end of the stream.
pub struct ChunkConn {
    incoming: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    current: Bytes,
    outgoing: PollSender<Bytes>,
    /// Held as long as the stream: what carries it (a channel, say).
    _keep: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for ChunkConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkConn").finish_non_exhaustive()
    }
}

impl ChunkConn {
    /// A byte stream reading `incoming` and writing to `outgoing`, holding `keep` until it is
    /// dropped.
    pub fn new(
        incoming: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
        outgoing: mpsc::Sender<Bytes>,
        keep: impl std::any::Any + Send,
    ) -> Self {
        Self {
            incoming: Box::pin(incoming),
            current: Bytes::new(),
            outgoing: PollSender::new(outgoing),
            _keep: Box::new(keep),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the tunnel closed")
}

impl AsyncRead for ChunkConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            match ready!(self.incoming.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.current.len().min(buf.remaining());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChunkConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.outgoing.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_CHUNK);
        self.outgoing
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.close();
        Poll::Ready(Ok(()))
    }
}

/// Serves `tunnel` as [`crate::tls`]'s accept loop serves a connection: the TLS handshake on
/// a secure node, then by its first bytes a peer's link, or a client's HTTP/2 for tonic
/// ([`crate::tls::dispatch`]).
pub(crate) async fn serve(tunnel: Tunnel, serve: Serve) {
    let remote = tunnel.via;
    let (io, identity): (Box<dyn Conn>, _) = if serve.secure {
        let Some(config) = serve.handler.server_config() else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let io = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tunnel.conn)).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                serve.handler.refused_tls(TlsRefusal::of(&e));
                tracing::debug!(via = %remote, "refused a tunnel's TLS handshake: {e}");
                return;
            }
            Err(_) => {
                serve.handler.refused_tls(TlsRefusal::Timeout);
                return;
            }
        };
        let identity = match identity_in(io.get_ref().1.peer_certificates()) {
            Ok(identity) => identity,
            Err(e) => {
                serve.handler.refused_tls(TlsRefusal::UnusableCertificate);
                tracing::debug!(via = %remote, "refused a tunnel: unusable certificate: {e}");
                return;
            }
        };
        (Box::new(io), identity)
    } else {
        (tunnel.conn, None)
    };
    crate::tls::dispatch(io, PeerInfo { remote, identity }, serve).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;

    /// Two ends of a tunnel, as two chunk streams crossed over.
    fn pair() -> (ChunkConn, ChunkConn) {
        let (a_tx, a_rx) = mpsc::channel(4);
        let (b_tx, b_rx) = mpsc::channel(4);
        let a = ChunkConn::new(ReceiverStream::new(b_rx).map(Ok), a_tx, ());
        let b = ChunkConn::new(ReceiverStream::new(a_rx).map(Ok), b_tx, ());
        (a, b)
    }

    #[tokio::test]
    async fn bytes_cross_in_order_and_shutdown_ends_the_stream() {
        let (mut a, mut b) = pair();
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                a.write_all(&sent).await.unwrap();
                a.shutdown().await.unwrap();
                a
            })
        };
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, sent);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn writing_to_a_dropped_end_fails() {
        let (mut a, b) = pair();
        drop(b);
        let err = a.write_all(&[1; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
