//! Relays: how a node that accepts no connections (`--no-inbound`) is reached.
//!
//! Such a node advertises no address peers can dial (its listener, if any, serves only clients
//! where it runs). It dials out to one or more members it can reach, its relays,
//! and keeps an `Attach` call open on each ([`crate::dial_out`]). Its gossiped metadata names
//! them ([`NodeMeta::relays`](steinadler_membership::NodeMeta)) and gives an address that
//! nobody can dial ([`unreachable_addr`]). A peer that needs a link to it opens a `Tunnel`
//! call on one of its relays; the relay offers the tunnel on the node's `Attach` call, the
//! node takes it with an `Accept` call, and the relay hands each call's incoming chunks to the
//! other as its replies. The two ends then run an ordinary link over that byte stream
//! ([`steinadler_transport::Tunnels`]): mutual TLS end to end, the same opening and cookie, so
//! every operation of the product (calls, process sends, monitors, streams, the registry,
//! gossip in the one-port mode) works as on a direct link, and the relay sees only
//! ciphertext.
//!
//! This module is the relay's side: the [`Switchboard`] of attached nodes and offered
//! tunnels, and the `Relay` gRPC service. A node is a relay for every dial-out-only node that
//! attaches to it; there is nothing to turn on.

use crate::node::Inner;
use crate::security::Access;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::relay_server::{Relay, RelayServer};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// gRPC paths of the service, which the cookie's MAC covers.
pub(crate) const ATTACH: &str = "/steinadler.v1.Relay/Attach";
pub(crate) const TUNNEL: &str = "/steinadler.v1.Relay/Tunnel";
pub(crate) const ACCEPT: &str = "/steinadler.v1.Relay/Accept";

/// How long an offered tunnel waits for the node to accept it.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Offers queued for one attached node.
const OFFERS: usize = 64;

/// Chunks buffered each way on a tunnel's end.
pub(crate) const TUNNEL_BUFFER: usize = 16;

/// A stream of chunks, as a call's replies.
pub(crate) type Chunks = Pin<Box<dyn Stream<Item = Result<pb::RelayChunk, Status>> + Send>>;

/// The address a node that accepts no connections gossips: in `100::/64`, the IPv6 prefix
/// kept for discarding (RFC 6666), with 64 bits of its name's hash, so that it is unique in
/// the cluster, as gossip needs, and reaches nothing if anyone dials it.
pub(crate) fn unreachable_addr(name: &str) -> SocketAddr {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(name.as_bytes());
    let mut octets = [0u8; 16];
    octets[0] = 0x01;
    octets[8..].copy_from_slice(&hash[..8]);
    SocketAddr::new(Ipv6Addr::from(octets).into(), 1)
}

/// Whether `addr` is a gossiped address of a node that accepts no connections.
pub(crate) fn is_unreachable(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(SocketAddr::V6(v6)) => v6.ip().segments()[..4] == [0x100, 0, 0, 0],
        _ => false,
    }
}

/// Locks `m`, going on after a panic elsewhere (each lock guards bookkeeping only).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tunnel offered to an attached node, waiting for its `Accept`.
struct Pending {
    /// The node it goes to, which alone may accept it.
    to: String,
    /// What the accepting node reads: the asking side's chunks.
    toward: Chunks,
    /// Where the accepting node's chunks go: to the asking side.
    give: oneshot::Sender<Streaming<pb::RelayChunk>>,
}

/// The relay's state, and a dial-out-only node's view of its own relays.
#[derive(Default)]
pub(crate) struct Switchboard {
    /// Dial-out-only nodes attached here, by name: where their offers go.
    attached: Mutex<HashMap<String, mpsc::Sender<pb::RelayOffer>>>,
    /// Offered tunnels, by id.
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
    /// On a dial-out-only node: the relays it is attaching to, and whether it is attached.
    mine: Mutex<BTreeMap<String, bool>>,
    /// On a dial-out-only node: relays whose attachment just failed or ended, and since when.
    cooling: Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchboard")
            .field("attached", &lock(&self.attached).len())
            .field("mine", &*lock(&self.mine))
            .finish_non_exhaustive()
    }
}

impl Switchboard {
    fn attach(&self, name: &str, offers: mpsc::Sender<pb::RelayOffer>) {
        lock(&self.attached).insert(name.to_owned(), offers);
    }

    /// Forgets `name`'s attachment if it is still `offers` (not a newer one).
    fn detach(&self, name: &str, offers: &mpsc::Sender<pb::RelayOffer>) {
        let mut attached = lock(&self.attached);
        if attached.get(name).is_some_and(|tx| tx.same_channel(offers)) {
            attached.remove(name);
        }
    }

    /// Offers the attached node `to` a tunnel from `from`, whose chunks are `toward`; the
    /// receiver gives the node's chunks once it accepts.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` if `to` is not attached here, or does not accept within the time.
    pub(crate) async fn offer(
        &self,
        to: &str,
        from: &str,
        toward: Chunks,
    ) -> Result<Streaming<pb::RelayChunk>, Status> {
        let offers = lock(&self.attached).get(to).cloned().ok_or_else(|| {
            Status::unavailable(format!(
                "{to} is not attached to this relay (it may have moved to another, or be down)"
            ))
        })?;
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (give, taken) = oneshot::channel();
        let pending = Pending {
            to: to.to_owned(),
            toward,
            give,
        };
        lock(&self.pending).insert(id, pending);
        let offer = pb::RelayOffer {
            id,
            from: from.to_owned(),
        };
        let accepted = async {
            offers
                .send(offer)
                .await
                .map_err(|_| Status::unavailable(format!("{to} left this relay")))?;
            taken
                .await
                .map_err(|_| Status::unavailable(format!("{to} refused the tunnel")))
        };
        let result = tokio::time::timeout(ACCEPT_TIMEOUT, accepted)
            .await
            .unwrap_or_else(|_| {
                Err(Status::unavailable(format!(
                    "{to} did not take the tunnel within {ACCEPT_TIMEOUT:?}"
                )))
            });
        lock(&self.pending).remove(&id);
        result
    }

    /// Takes the offered tunnel `id` for the node `by` (`None` on insecure clusters, which
    /// cannot tell who is asking), giving it `chunks`; returns what it reads.
    fn take(
        &self,
        id: u64,
        by: Option<&str>,
        chunks: Streaming<pb::RelayChunk>,
    ) -> Result<Chunks, Status> {
        let mut pending = lock(&self.pending);
        if let (Some(by), Some(p)) = (by, pending.get(&id))
            && p.to != by
        {
            return Err(Status::permission_denied(format!(
                "tunnel {id} is offered to {}, not to {by}",
                p.to
            )));
        }
        let p = pending
            .remove(&id)
            .ok_or_else(|| Status::not_found(format!("no tunnel {id} is offered")))?;
        drop(pending);
        p.give
            .send(chunks)
            .map_err(|_| Status::unavailable("the asking side gave up on the tunnel"))?;
        Ok(p.toward)
    }

    /// The relays this dial-out-only node is attached to now, sorted.
    pub(crate) fn my_relays(&self) -> Vec<String> {
        lock(&self.mine)
            .iter()
            .filter(|(_, attached)| **attached)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// How many relays this node is attaching to or attached to.
    pub(crate) fn my_relay_count(&self) -> usize {
        lock(&self.mine).len()
    }

    /// Whether this node is attaching to `name` or attached to it.
    pub(crate) fn has_relay(&self, name: &str) -> bool {
        lock(&self.mine).contains_key(name)
    }

    /// Marks `name` as a relay this node is attaching to (`false`) or attached to (`true`).
    pub(crate) fn set_relay(&self, name: &str, attached: bool) {
        lock(&self.mine).insert(name.to_owned(), attached);
    }

    /// Forgets the relay `name`, and passes it over for `cool_down` when choosing relays,
    /// so that a relay that just failed is not retried before the others.
    pub(crate) fn drop_relay(&self, name: &str, cool_down: Duration) {
        lock(&self.mine).remove(name);
        let mut cooling = lock(&self.cooling);
        let now = std::time::Instant::now();
        cooling.retain(|_, since| now.duration_since(*since) < cool_down);
        cooling.insert(name.to_owned(), now);
    }

    /// Whether the relay `name` failed within `cool_down`.
    pub(crate) fn is_cooling(&self, name: &str, cool_down: Duration) -> bool {
        lock(&self.cooling)
            .get(name)
            .is_some_and(|since| since.elapsed() < cool_down)
    }
}

/// The data of a tunnel's chunks, for a [`steinadler_transport::ChunkConn`].
pub(crate) fn data_of(
    chunks: impl Stream<Item = Result<pb::RelayChunk, Status>> + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    chunks.filter_map(|chunk| match chunk {
        Ok(chunk) if chunk.data.is_empty() => None,
        Ok(chunk) => Some(Ok(chunk.data)),
        Err(status) => Some(Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            status.message().to_owned(),
        ))),
    })
}

/// Chunks carrying `data`, after `first`, as a call's request.
pub(crate) fn chunks_after(
    first: pb::RelayChunk,
    data: mpsc::Receiver<Bytes>,
) -> impl Stream<Item = pb::RelayChunk> + Send + 'static {
    tokio_stream::once(first).chain(ReceiverStream::new(data).map(|data| pb::RelayChunk {
        data,
        ..Default::default()
    }))
}

/// The relay's gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct RelayService {
    inner: Arc<Inner>,
}

/// The service, ready for the router.
pub(crate) fn service(inner: &Arc<Inner>) -> RelayServer<RelayService> {
    RelayServer::new(RelayService {
        inner: inner.clone(),
    })
}

impl RelayService {
    /// The caller's name, as its certificate gives it; `None` on insecure clusters, which
    /// have no certificates.
    fn caller<T>(
        &self,
        request: &Request<T>,
        (method, access): (&str, Access),
        body: impl FnOnce(&T) -> Vec<u8>,
    ) -> Result<Option<String>, Status> {
        let identity =
            self.inner
                .security
                .authorize(request, method, access, &self.inner.stats, body)?;
        Ok(identity.map(|i| i.name))
    }
}

type Offers = Pin<Box<dyn Stream<Item = Result<pb::RelayOffer, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    type AttachStream = Offers;

    async fn attach(&self, request: Request<pb::RelayAttach>) -> Result<Response<Offers>, Status> {
        let certified = self.caller(
            &request,
            (ATTACH, Access::Node),
            prost::Message::encode_to_vec,
        )?;
        let name = certified.unwrap_or_else(|| request.get_ref().name.clone());
        if name.is_empty() {
            return Err(Status::invalid_argument("the caller did not say who it is"));
        }
        let (offers, rx) = mpsc::channel(OFFERS);
        let board = self.inner.relay.clone();
        board.attach(&name, offers.clone());
        tracing::info!(node = %name, "a node that accepts no connections attached: relaying for it");
        tokio::spawn(async move {
            offers.closed().await;
            board.detach(&name, &offers);
            tracing::info!(node = %name, "a relayed node detached");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }

    type TunnelStream = Chunks;

    async fn tunnel(
        &self,
        request: Request<Streaming<pb::RelayChunk>>,
    ) -> Result<Response<Chunks>, Status> {
        // Clients too: a client reaches such a node only this way, and the tunnel gives it no
        // more than a connection to the node, whose TLS checks its certificate.
        let from = self
            .caller(&request, (TUNNEL, Access::Client), |_| Vec::new())?
            .unwrap_or_else(|| "peer".to_owned());
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the tunnel ended before its first chunk"))?;
        if first.to.is_empty() || first.to == self.inner.config.name {
            return Err(Status::invalid_argument(format!(
                "a tunnel must name another node to go to, not {:?}",
                first.to
            )));
        }
        let replies = self
            .inner
            .relay
            .offer(&first.to, &from, Box::pin(chunks))
            .await?;
        self.inner
            .stats
            .tunnels_relayed
            .fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(Box::pin(replies)))
    }

    type AcceptStream = Chunks;

    async fn accept(
        &self,
        request: Request<Streaming<pb::RelayChunk>>,
    ) -> Result<Response<Chunks>, Status> {
        // Insecure clusters have no names to check an acceptor by: the offer's id is all.
        let by = self.caller(&request, (ACCEPT, Access::Node), |_| Vec::new())?;
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the accept ended before its first chunk"))?;
        let toward = self.inner.relay.take(first.id, by.as_deref(), chunks)?;
        Ok(Response::new(toward))
    }
}
