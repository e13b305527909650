//! Anti-entropy for the replicated state: the registry's owner states and the supervisor's
//! child records travel together.
//!
//! Every [`SYNC_INTERVAL`](super::SYNC_INTERVAL) each node picks [`FANOUT`](super::FANOUT)
//! live members and runs push-pull with each: it sends its digests, the peer answers with
//! what is newer on its side and names what it wants, and the node sends that in a second call.
//! A local change is pushed at once (to partners picked the same way) without waiting for
//! the round. Push-pull epidemics reach all N members in O(log N) rounds.
//!
//! Partners come from the peers this node already has connections to, as HyParView's active
//! view does ([`partners`]), so that anti-entropy does not churn the bounded peer pool: it
//! opens a connection only while it has fewer than `FANOUT` connected partners and the pool has
//! room, and using a connection does not keep it from closing when idle, so the view turns over
//! as connections idle out. About every [`EXPLORE`] rounds one partner is a random member on a
//! connection that is not kept, so that groups whose views do not overlap still meet. Per node
//! the rate is the same at any N: `FANOUT` partners a round, about two connections held.
//!
//! This task also keeps the registry's view of the live members in step with membership.

use super::{OwnerState, RegistryEntry};
use crate::node::Inner;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use std::collections::HashSet;
use std::sync::Arc;
use steinadler_membership::MemberEvent;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::registry_client::RegistryClient;
use tonic::Status;

/// About one round in this many has a random partner outside the connected peers.
pub(crate) const EXPLORE: u32 = 25;

/// The gRPC path of `Sync`, which the cookie covers.
pub(crate) const SYNC: &str = "/steinadler.v1.Registry/Sync";

pub(crate) fn owner_to_wire(node: String, o: OwnerState) -> pb::OwnerState {
    pb::OwnerState {
        node,
        incarnation: o.incarnation,
        version: o.version,
        names: o.names.values().map(RegistryEntry::to_wire).collect(),
    }
}

fn owner_from_wire(o: pb::OwnerState) -> Result<(String, OwnerState), Status> {
    let names = o
        .names
        .iter()
        .map(|e| RegistryEntry::from_wire(e).map(|e| (e.name.clone(), e)))
        .collect::<Result<_, _>>()?;
    Ok((
        o.node,
        OwnerState {
            incarnation: o.incarnation,
            version: o.version,
            names,
        },
    ))
}

/// Merges what a peer sent; conflicts this node lost are resolved in the background. Returns
/// whether there was anything.
fn absorb(
    inner: &Arc<Inner>,
    owners: Vec<pb::OwnerState>,
    children: Vec<pb::ChildRecord>,
) -> Result<bool, Status> {
    let moved = !owners.is_empty() || !children.is_empty();
    if !owners.is_empty() {
        let owners = owners
            .into_iter()
            .map(owner_from_wire)
            .collect::<Result<Vec<_>, _>>()?;
        let lost = inner.registry.merge(owners);
        for lost in lost {
            crate::registry::api::give_up(inner, lost);
        }
    }
    if !children.is_empty() && inner.supervisor.merge(children) {
        inner.supervisor.wake.notify_one();
    }
    Ok(moved)
}

/// The server side of `Sync`.
pub(crate) fn serve(inner: &Arc<Inner>, req: pb::SyncRequest) -> Result<pb::SyncReply, Status> {
    inner.registry.heard_epoch(req.epoch);
    if absorb(inner, req.push_owners, req.push_children)? {
        inner.registry.heard.notify_one();
    }
    if req.owners.is_empty() && req.children.is_empty() {
        return Ok(pb::SyncReply {
            epoch: inner.registry.epoch(),
            ..pb::SyncReply::default()
        });
    }
    let theirs: Vec<(String, u64, u64)> = req
        .owners
        .into_iter()
        .map(|d| (d.node, d.incarnation, d.version))
        .collect();
    let (newer, want_owners) = inner.registry.compare(&theirs);
    let (children, want_children) = inner.supervisor.compare(&req.children);
    Ok(pb::SyncReply {
        owners: newer
            .into_iter()
            .map(|(n, o)| owner_to_wire(n, o))
            .collect(),
        children,
        want_owners,
        want_children,
        epoch: inner.registry.epoch(),
    })
}

fn digest(inner: &Inner) -> pb::SyncRequest {
    pb::SyncRequest {
        owners: inner
            .registry
            .digest()
            .into_iter()
            .map(|(node, incarnation, version)| pb::OwnerDigest {
                node,
                incarnation,
                version,
            })
            .collect(),
        children: inner.supervisor.digest(),
        epoch: inner.registry.epoch(),
        ..pb::SyncRequest::default()
    }
}

/// Whom a sync goes to, and on which kind of connection.
#[derive(Debug, Clone)]
pub(crate) struct Partner {
    name: String,
    addr: String,
    via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A round's partner: background traffic ([`steinadler_transport::Transport::background_channel`]).
    Background,
    /// The exploring partner, on a connection that is not kept.
    Probe,
    /// A push a call makes to one node (the home of a name it registered, say).
    Call,
}

impl Partner {
    /// The node `name` at `addr`, for a push that a call makes.
    pub(crate) fn direct(name: &str, addr: &str) -> Self {
        Self {
            name: name.to_owned(),
            addr: addr.to_owned(),
            via: Via::Call,
        }
    }
}

/// Up to [`FANOUT`](super::FANOUT) partners among `members` (live, this node excluded): those
/// already connected first, topped up with random others while the pool has room; about one
/// round in [`EXPLORE`], one random unconnected member too.
pub(crate) fn partners(inner: &Inner, members: &[(String, String)]) -> Vec<Partner> {
    let connected: HashSet<String> = inner.peers.connected().into_iter().collect();
    let (mut near, far): (Vec<_>, Vec<_>) = members
        .iter()
        .cloned()
        .partition(|(name, _)| connected.contains(name));
    let mut rng = rand::rng();
    near.shuffle(&mut rng);
    near.truncate(super::FANOUT);
    let mut picked: Vec<Partner> = near
        .into_iter()
        .map(|(name, addr)| Partner {
            name,
            addr,
            via: Via::Background,
        })
        .collect();
    if picked.len() < super::FANOUT && inner.peers.has_room() {
        let more = far.choose_multiple(&mut rng, super::FANOUT - picked.len());
        picked.extend(more.map(|(name, addr)| Partner {
            name: name.clone(),
            addr: addr.clone(),
            via: Via::Background,
        }));
    } else if rng.random_ratio(1, EXPLORE)
        && let Some((name, addr)) = far.choose(&mut rng)
    {
        picked.push(Partner {
            name: name.clone(),
            addr: addr.clone(),
            via: Via::Probe,
        });
    }
    picked
}

/// One signed `Sync` call to `to`.
async fn call(
    inner: &Arc<Inner>,
    to: &Partner,
    req: pb::SyncRequest,
) -> Result<pb::SyncReply, Status> {
    let (addr, name) = (to.addr.as_str(), to.name.as_str());
    let channel = match to.via {
        Via::Background => inner.peers.background_channel(addr, name).await,
        Via::Probe => inner.peers.probe_channel(addr, name).await,
        Via::Call => inner.peers.channel(addr, name).await,
    }
    .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(req);
    request.set_timeout(std::time::Duration::from_secs(2));
    inner.security.sign(&mut request, SYNC, name);
    RegistryClient::new(channel)
        .sync(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Push-pull with one member; returns whether anything moved either way.
async fn exchange(inner: &Arc<Inner>, to: &Partner) -> Result<bool, Status> {
    let reply = call(inner, to, digest(inner)).await?;
    inner.registry.heard_epoch(reply.epoch);
    let want_owners = reply.want_owners;
    let want_children = reply.want_children;
    let got = absorb(inner, reply.owners, reply.children)?;
    if want_owners.is_empty() && want_children.is_empty() {
        return Ok(got);
    }
    let push = pb::SyncRequest {
        push_owners: inner
            .registry
            .states(&want_owners)
            .into_iter()
            .map(|(n, o)| owner_to_wire(n, o))
            .collect(),
        push_children: inner.supervisor.records_of(&want_children),
        epoch: inner.registry.epoch(),
        ..pb::SyncRequest::default()
    };
    call(inner, to, push).await.map(|_| true)
}

/// Pushes this node's own state, and the child records it changed, to `to`.
pub(crate) async fn push_to(inner: &Arc<Inner>, to: &Partner) -> Result<(), Status> {
    let (node, own) = inner.registry.own();
    let push = pb::SyncRequest {
        push_owners: vec![owner_to_wire(node, own)],
        push_children: inner.supervisor.recent(),
        epoch: inner.registry.epoch(),
        ..pb::SyncRequest::default()
    };
    call(inner, to, push).await.map(|_| ())
}

/// Live members other than this node: (name, gRPC address).
pub(crate) async fn others(inner: &Inner) -> Vec<(String, String)> {
    inner
        .membership
        .members()
        .await
        .into_iter()
        .filter(|m| m.name != inner.config.name)
        .map(|m| (m.name, m.meta.grpc_addr))
        .collect()
}

/// A member was declared dead: with a majority, this side may take over its names (and the
/// supervisor its children), so the registry epoch advances before the supervisor wakes.
async fn take_over(inner: &Inner, dead: &str) {
    if inner.quorum.check(&inner.membership).await
        && let Some(epoch) = inner.registry.take_over(dead)
    {
        tracing::debug!(
            dead,
            epoch,
            "declared dead with a majority: registry epoch advanced"
        );
    }
}

/// The background task: rounds, pushes on change, and the live set.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut events = inner.membership.subscribe();
    let mut interval = super::SYNC_INTERVAL;
    let mut next = tokio::time::Instant::now() + interval;
    let mut stopping = inner.stopping.clone();
    loop {
        let push_only = tokio::select! {
            _ = tokio::time::sleep_until(next) => false,
            () = inner.registry.changed.notified() => true,
            () = inner.registry.heard.notified() => {
                interval = super::SYNC_INTERVAL;
                next = next.min(tokio::time::Instant::now() + interval);
                continue;
            }
            event = events.recv() => {
                interval = super::SYNC_INTERVAL;
                next = next.min(tokio::time::Instant::now() + interval);
                match event {
                    Ok(MemberEvent::Joined(m)) => {
                        inner.quorum.joined(&m.name);
                        inner.registry.member_up(&m.name);
                    }
                    Ok(MemberEvent::Left { name, failed, .. }) => {
                        inner.quorum.left(&name, failed);
                        inner.registry.member_down(&name);
                        if failed {
                            take_over(&inner, &name).await;
                        }
                    }
                    Ok(MemberEvent::Updated(_)) => continue,
                    Err(_) => {}
                }
                inner.supervisor.wake.notify_one();
                continue;
            }
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return,
        };
        let members = others(&inner).await;
        if !push_only {
            let mut live: HashSet<String> = members.iter().map(|(n, _)| n.clone()).collect();
            live.insert(inner.config.name.clone());
            inner.quorum.learn(&live);
            inner.registry.set_live(live);
        }
        let picked = partners(&inner, &members);
        let rounds = picked.iter().map(|to| {
            let inner = &inner;
            async move {
                let result = if push_only {
                    push_to(inner, to).await.map(|()| true)
                } else {
                    exchange(inner, to).await
                };
                result.unwrap_or_else(|e| {
                    tracing::debug!(peer = %to.name, "registry sync failed: {}", e.message());
                    false
                })
            }
        });
        let moved = futures::future::join_all(rounds).await.contains(&true);
        if push_only || moved {
            interval = super::SYNC_INTERVAL;
        } else {
            interval = (interval * 2).min(super::SYNC_IDLE_INTERVAL);
        }
        next = if push_only {
            next.min(tokio::time::Instant::now() + interval)
        } else {
            tokio::time::Instant::now() + interval
        };
    }
}
