//! Gossip on the node's TLS port (`--gossip-wire tls`): the one-port mode.
//!
//! The membership crate's memberlist runs on [`steinadler_membership::GossipWire::Links`]:
//! its packets and streams are gRPC calls of the `Gossip` service on this node's peer links,
//! the same connections (from [`steinadler_transport::Transport`]) that carry calls, under
//! mutual TLS and the cluster cookie. [`Wire`] is the sending side, handed to the membership
//! before the node exists and bound to it by [`Wire::bind`]; [`GossipService`] is the
//! receiving side, which hands what arrives to the membership's
//! [`GossipInbox`](steinadler_membership::GossipInbox).
//!
//! A peer that gossip names is dialed as background traffic
//! ([`steinadler_transport::Transport::background_channel`]): on its pooled link if there is
//! one, else on a new link kept while the pool has room. A seed, whose name gossip does not
//! know yet, is dialed once, accepting any node certificate of the cluster.

use crate::node::Inner;
use crate::security::Access;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use steinadler_membership::{GossipLinks, GossipStream};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::gossip_client::GossipClient;
use steinadler_proto::v1::gossip_server::{Gossip, GossipServer};
use steinadler_transport::Credentials;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// gRPC paths of the service, which the cookie's MAC covers.
const PACKET: &str = "/steinadler.v1.Gossip/Packet";
const STREAM: &str = "/steinadler.v1.Gossip/Stream";

/// How long a packet's call may take once connected.
const PACKET_TIMEOUT: Duration = Duration::from_secs(2);

/// Chunks buffered each way on a gossip stream.
const STREAM_BUFFER: usize = 16;

/// The sending side: how memberlist reaches peers on this node's links.
#[derive(Debug)]
pub(crate) struct Wire {
    node: OnceLock<Weak<Inner>>,
    secure: bool,
}

impl Wire {
    /// A wire for a node that is secure (mutual TLS) or not; it sends nothing until bound.
    pub(crate) fn new(secure: bool) -> Arc<Self> {
        Arc::new(Self {
            node: OnceLock::new(),
            secure,
        })
    }

    /// Binds the wire to its node, once the node exists.
    pub(crate) fn bind(&self, inner: &Arc<Inner>) {
        let _ = self.node.set(Arc::downgrade(inner));
    }

    fn node(&self) -> io::Result<Arc<Inner>> {
        self.node.get().and_then(Weak::upgrade).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the node is not serving yet")
        })
    }
}

/// A channel to the peer at `to`: pooled when gossip knows its name, else a one-off
/// connection that accepts any node of the cluster.
async fn channel(inner: &Inner, to: SocketAddr, name: Option<&str>) -> io::Result<Channel> {
    let addr = to.to_string();
    let unreachable = |detail: String| io::Error::new(io::ErrorKind::ConnectionRefused, detail);
    match name {
        Some(name) => inner
            .peers
            .background_channel(&addr, name)
            .await
            .map_err(|e| unreachable(e.to_string())),
        None => {
            let tls = inner
                .security
                .client_tls(steinadler_security::ANY_NODE_SERVER_NAME);
            steinadler_transport::connect(&addr, tls)
                .await
                .map_err(|e| unreachable(steinadler_transport::error_chain(&e)))
        }
    }
}

/// Whom a cookie is signed for: the peer's name, or its address while it has none.
fn signer_key(to: SocketAddr, name: Option<&str>) -> String {
    name.map_or_else(|| format!("gossip@{to}"), str::to_owned)
}

fn status_to_io(status: Status) -> io::Error {
    let kind = match status.code() {
        tonic::Code::Unavailable => io::ErrorKind::ConnectionRefused,
        tonic::Code::DeadlineExceeded => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, status.message().to_owned())
}

impl GossipLinks for Wire {
    fn send_packet(
        &self,
        to: SocketAddr,
        name: Option<steinadler_membership::SmolStr>,
        payload: Bytes,
    ) -> BoxFuture<'static, io::Result<()>> {
        let node = self.node();
        Box::pin(async move {
            let inner = node?;
            let name = name.as_deref();
            let channel = channel(&inner, to, name).await?;
            let mut request = Request::new(pb::GossipPacket {
                from: inner.membership.gossip_addr().to_string(),
                payload,
            });
            request.set_timeout(PACKET_TIMEOUT);
            inner
                .security
                .sign(&mut request, PACKET, &signer_key(to, name));
            GossipClient::new(channel)
                .packet(request)
                .await
                .map_err(status_to_io)?;
            Ok(())
        })
    }

    fn open_stream(
        &self,
        to: SocketAddr,
        name: Option<steinadler_membership::SmolStr>,
    ) -> BoxFuture<'static, io::Result<GossipStream>> {
        let node = self.node();
        Box::pin(async move {
            let inner = node?;
            let name = name.as_deref();
            let channel = channel(&inner, to, name).await?;
            let (outgoing, out_rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
            let first = pb::GossipChunk {
                from: inner.membership.gossip_addr().to_string(),
                data: Bytes::new(),
            };
            let chunks = tokio_stream::once(first).chain(ReceiverStream::new(out_rx).map(|data| {
                pb::GossipChunk {
                    from: String::new(),
                    data,
                }
            }));
            let mut request = Request::new(chunks);
            inner
                .security
                .sign_opening(&mut request, STREAM, &signer_key(to, name));
            let replies = GossipClient::new(channel.clone())
                .stream(request)
                .await
                .map_err(status_to_io)?
                .into_inner();
            // The channel lives as long as the stream: a link opened for this stream alone
            // closes once nothing holds it.
            Ok(GossipStream {
                incoming: pump(replies, Some(channel)),
                outgoing,
            })
        })
    }

    fn secure(&self) -> bool {
        self.secure
    }
}

/// Forwards a stream's chunks to a channel the membership reads, holding `link` until the
/// stream ends.
fn pump(
    mut chunks: Streaming<pb::GossipChunk>,
    link: Option<Channel>,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let _link = link;
        loop {
            let item = match chunks.message().await {
                Ok(Some(chunk)) if chunk.data.is_empty() => continue,
                Ok(Some(chunk)) => Ok(chunk.data),
                Ok(None) => return,
                Err(status) => Err(status_to_io(status)),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The receiving side: the `Gossip` gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct GossipService {
    inner: Arc<Inner>,
}

/// The service, ready for the router.
pub(crate) fn service(inner: &Arc<Inner>) -> GossipServer<GossipService> {
    GossipServer::new(GossipService {
        inner: inner.clone(),
    })
}

impl GossipService {
    fn inbox(&self) -> Result<&steinadler_membership::GossipInbox, Status> {
        self.inner.membership.inbox().ok_or_else(|| {
            Status::failed_precondition(
                "this node gossips on its own port (--gossip-wire udp), not on its TLS port; \
                 start every node of a cluster with the same --gossip-wire",
            )
        })
    }
}

fn parse_from(from: &str) -> Result<SocketAddr, Status> {
    from.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "the gossip sender's address {from:?} is not IP:PORT"
        ))
    })
}

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::GossipChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Gossip for GossipService {
    async fn packet(
        &self,
        request: Request<pb::GossipPacket>,
    ) -> Result<Response<pb::GossipAck>, Status> {
        let identity = self.inner.security.authorize(
            &request,
            PACKET,
            Access::Node,
            &self.inner.stats,
            prost::Message::encode_to_vec,
        )?;
        let inbox = self.inbox()?;
        let packet = request.into_inner();
        let from = parse_from(&packet.from)?;
        let sender = identity.as_ref().map(|i| i.name.as_str());
        if !inbox.packet(from, sender, packet.payload) {
            tracing::debug!(%from, "gossip packet dropped: memberlist's queue is full or stopped");
        }
        Ok(Response::new(pb::GossipAck {}))
    }

    type StreamStream = Chunks;

    async fn stream(
        &self,
        request: Request<Streaming<pb::GossipChunk>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let identity = self.inner.security.authorize(
            &request,
            STREAM,
            Access::Node,
            &self.inner.stats,
            |_| Vec::new(),
        )?;
        let inbox = self.inbox()?.clone();
        let mut chunks = request.into_inner();
        let first = chunks.message().await?.ok_or_else(|| {
            Status::invalid_argument("the gossip stream ended before its first chunk")
        })?;
        let from = parse_from(&first.from)?;
        let (outgoing, out_rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
        let stream = GossipStream {
            incoming: pump(chunks, None),
            outgoing,
        };
        let sender = identity.as_ref().map(|i| i.name.clone());
        inbox
            .stream(from, sender.as_deref(), stream)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let replies = ReceiverStream::new(out_rx).map(|data| {
            Ok(pb::GossipChunk {
                from: String::new(),
                data,
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}
