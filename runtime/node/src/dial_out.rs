//! Both ends of [`crate::relay`]'s tunnels that are not the relay: the [`Dialer`], through
//! which every node reaches peers that accept no connections, and [`run`], the loop by which
//! such a node (`--no-inbound`) stays attached to its relays.
//!
//! A dial-out-only node attaches to as many relays as it has seeds (`--join` and `--seed`, one to three),
//! the seeds first. When a relay's attachment ends (the relay died, or the link broke), it
//! attaches to another live member that accepts connections, and re-advertises its relays.
//! While it is attached to none, nobody can reach it: probes of it fail, and gossip declares
//! it dead within the usual detection time, as for any node that went away.

use crate::node::Inner;
use crate::relay::{ACCEPT, ATTACH, TUNNEL, TUNNEL_BUFFER, chunks_after, data_of, is_unreachable};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::relay_client::RelayClient;
use steinadler_transport::{ChunkConn, Opening, Tunnel, Tunnels};
use tokio::sync::mpsc;
use tonic::Request;
use tonic::transport::Channel;

/// At most this many relays per node.
const MAX_RELAYS: usize = 3;

/// How often a node short of relays looks for more, when membership says nothing new.
const RECHECK: Duration = Duration::from_secs(1);

/// A relay whose attachment failed or ended is tried again only after the other candidates,
/// for this long: long enough for gossip to declare a dead one dead.
const COOL_DOWN: Duration = Duration::from_secs(10);

/// The address reported for a tunnel whose relay's address does not parse.
const NO_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// How this node reaches peers that accept no connections: through their relays.
#[derive(Debug)]
pub(crate) struct Dialer {
    node: Weak<Inner>,
}

impl Dialer {
    /// The dialer of the node `inner`.
    pub(crate) fn new(inner: &Arc<Inner>) -> Arc<Self> {
        Arc::new(Self {
            node: Arc::downgrade(inner),
        })
    }
}

impl Tunnels for Dialer {
    fn tunnel(&self, peer: &str) -> Opening {
        let node = self.node.upgrade();
        let peer = peer.to_owned();
        Box::pin(async move {
            match node {
                Some(inner) => open(&inner, &peer).await,
                None => Ok(None),
            }
        })
    }
}

fn unreachable(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, detail)
}

/// A tunnel to `peer` if it accepts no connections, through the first of its relays that
/// answers: this node itself if it is one, then relays already connected, then the rest.
async fn open(inner: &Arc<Inner>, peer: &str) -> io::Result<Option<Tunnel>> {
    let Some(member) = inner.membership.member(peer).await else {
        return Ok(None);
    };
    if !is_unreachable(&member.meta.grpc_addr) {
        return Ok(None);
    }
    let mut relays = member.meta.relays.clone();
    if relays.is_empty() {
        return Err(unreachable(format!(
            "{peer} accepts no connections and is attached to no relay yet; retry once it is"
        )));
    }
    let me = &inner.config.name;
    let connected = inner.peers.connected();
    relays.sort_by_key(|r| (r != me, !connected.contains(r)));
    let mut failures = Vec::new();
    for relay in relays {
        let opened = if &relay == me {
            local(inner, peer).await
        } else {
            through(inner, &relay, peer).await
        };
        match opened {
            Ok(tunnel) => return Ok(Some(tunnel)),
            Err(e) => failures.push(format!("through {relay}: {e}")),
        }
    }
    Err(unreachable(format!(
        "{peer} accepts no connections, and no relay of it could reach it ({})",
        failures.join("; ")
    )))
}

/// A tunnel to `peer` through the relay `relay`.
async fn through(inner: &Arc<Inner>, relay: &str, peer: &str) -> io::Result<Tunnel> {
    let member = inner
        .membership
        .member(relay)
        .await
        .ok_or_else(|| unreachable(format!("{relay} is not a live member")))?;
    let addr = member.meta.grpc_addr;
    let channel = inner
        .peers
        .channel(&addr, relay)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (out, data) = mpsc::channel(TUNNEL_BUFFER);
    let first = pb::RelayChunk {
        to: peer.to_owned(),
        ..Default::default()
    };
    let mut request = Request::new(chunks_after(first, data));
    inner.security.sign_opening(&mut request, TUNNEL, relay);
    let replies = RelayClient::new(channel.clone())
        .tunnel(request)
        .await
        .map_err(|s| unreachable(s.message().to_owned()))?
        .into_inner();
    Ok(Tunnel {
        conn: Box::new(ChunkConn::new(data_of(replies), out, channel)),
        via: addr.parse().unwrap_or(NO_ADDR),
    })
}

/// A tunnel to `peer`, attached to this node: offered on its attachment here directly.
async fn local(inner: &Arc<Inner>, peer: &str) -> io::Result<Tunnel> {
    let (out, data) = mpsc::channel(TUNNEL_BUFFER);
    let toward =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(data), |data| {
            Ok(pb::RelayChunk {
                data,
                ..Default::default()
            })
        });
    let replies = inner
        .relay
        .offer(peer, &inner.config.name, Box::pin(toward))
        .await
        .map_err(|s| unreachable(s.message().to_owned()))?;
    Ok(Tunnel {
        conn: Box::new(ChunkConn::new(data_of(replies), out, ())),
        via: NO_ADDR,
    })
}

/// Keeps a node that accepts no connections attached to its relays until it stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let want = (inner.config.join.len() + inner.config.seeds.len()).clamp(1, MAX_RELAYS);
    let mut events = inner.membership.subscribe();
    let mut stopping = inner.stopping.clone();
    loop {
        top_up(&inner, want).await;
        tokio::select! {
            _ = events.recv() => {}
            () = tokio::time::sleep(RECHECK) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Attaches to more relays while this node has fewer than `want`: live members that accept
/// connections, its seeds first.
async fn top_up(inner: &Arc<Inner>, want: usize) {
    let board = &inner.relay;
    if board.my_relay_count() >= want {
        return;
    }
    let me = &inner.config.name;
    let mut candidates: Vec<_> = inner
        .membership
        .members()
        .await
        .into_iter()
        .filter(|m| {
            &m.name != me && !is_unreachable(&m.meta.grpc_addr) && !board.has_relay(&m.name)
        })
        .collect();
    let seeded = |m: &steinadler_membership::Member| {
        inner.config.join.contains(&m.gossip_addr) || inner.config.seeds.contains(&m.meta.grpc_addr)
    };
    // Seeds first, and relays that just failed last.
    candidates.sort_by_key(|m| {
        (
            board.is_cooling(&m.name, COOL_DOWN),
            !seeded(m),
            m.name.clone(),
        )
    });
    for member in candidates.into_iter().take(want - board.my_relay_count()) {
        board.set_relay(&member.name, false);
        tokio::spawn(attach(inner.clone(), member.name, member.meta.grpc_addr));
    }
}

/// Stays attached to `relay` at `addr` until the attachment ends, then forgets it.
async fn attach(inner: Arc<Inner>, relay: String, addr: String) {
    let ended = attached(&inner, &relay, &addr).await;
    inner.relay.drop_relay(&relay, COOL_DOWN);
    inner.meta_changed.notify_one();
    if !*inner.stopping.borrow() {
        tracing::warn!(%relay, "the link to a relay ended ({ended}); attaching to another member");
    }
}

/// The attachment to `relay`, served until it ends; returns why it ended.
async fn attached(inner: &Arc<Inner>, relay: &str, addr: &str) -> String {
    let channel = match inner.peers.channel(addr, relay).await {
        Ok(channel) => channel,
        Err(e) => return e.to_string(),
    };
    let mut request = Request::new(pb::RelayAttach {
        name: inner.config.name.clone(),
    });
    inner.security.sign(&mut request, ATTACH, relay);
    let mut offers = match RelayClient::new(channel.clone()).attach(request).await {
        Ok(offers) => offers.into_inner(),
        Err(status) => return format!("attaching was refused: {}", status.message()),
    };
    inner.relay.set_relay(relay, true);
    inner.meta_changed.notify_one();
    tracing::info!(%relay, "attached to a relay: peers reach this node through it");
    let via = addr.parse().unwrap_or(NO_ADDR);
    loop {
        match offers.message().await {
            Ok(Some(offer)) => {
                let (inner, channel, relay) = (inner.clone(), channel.clone(), relay.to_owned());
                tokio::spawn(async move {
                    if let Err(e) = take(&inner, channel, &relay, offer.id, via).await {
                        tracing::debug!(%relay, from = %offer.from, "could not take a tunnel: {e}");
                    }
                });
            }
            Ok(None) => return "the relay closed it".to_owned(),
            Err(status) => return status.message().to_owned(),
        }
    }
}

/// Takes the tunnel `id` that `relay` offered, and serves the link that runs over it.
async fn take(
    inner: &Arc<Inner>,
    channel: Channel,
    relay: &str,
    id: u64,
    via: SocketAddr,
) -> Result<(), tonic::Status> {
    let (out, data) = mpsc::channel(TUNNEL_BUFFER);
    let first = pb::RelayChunk {
        id,
        ..Default::default()
    };
    let mut request = Request::new(chunks_after(first, data));
    inner.security.sign_opening(&mut request, ACCEPT, relay);
    let replies = RelayClient::new(channel.clone())
        .accept(request)
        .await?
        .into_inner();
    let conn = ChunkConn::new(data_of(replies), out, channel);
    inner.peers.accept_tunnel(Tunnel {
        conn: Box::new(conn),
        via,
    });
    Ok(())
}
