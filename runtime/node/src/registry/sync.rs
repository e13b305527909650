//! Anti-entropy for the replicated state: the registry's owner states and the supervisor's
//! child records travel together.
//!
//! Every [`SYNC_INTERVAL`](super::SYNC_INTERVAL) each node picks [`FANOUT`](super::FANOUT)
//! random live members and runs push-pull with each: it sends its digests, the peer answers with
//! what is newer on its side and names what it wants, and the node sends that in a second call.
//! A local change is pushed at once (to the same number of random members) without waiting for
//! the round. Push-pull epidemics reach all N members in O(log N) rounds.
//!
//! This task also keeps the registry's view of the live members in step with membership.

use super::{OwnerState, RegistryEntry};
use crate::node::Inner;
use rand::seq::IndexedRandom;
use std::collections::HashSet;
use std::sync::Arc;
use steinadler_membership::MemberEvent;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::registry_client::RegistryClient;
use tonic::Status;

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

/// Merges what a peer sent; conflicts this node lost are resolved in the background.
fn absorb(
    inner: &Arc<Inner>,
    owners: Vec<pb::OwnerState>,
    children: Vec<pb::ChildRecord>,
) -> Result<(), Status> {
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
    Ok(())
}

/// The server side of `Sync`.
pub(crate) fn serve(inner: &Arc<Inner>, req: pb::SyncRequest) -> Result<pb::SyncReply, Status> {
    absorb(inner, req.push_owners, req.push_children)?;
    if req.owners.is_empty() && req.children.is_empty() {
        return Ok(pb::SyncReply::default());
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
        ..pb::SyncRequest::default()
    }
}

/// One signed `Sync` call to the member `name` at `addr`.
async fn call(
    inner: &Arc<Inner>,
    addr: &str,
    name: &str,
    req: pb::SyncRequest,
) -> Result<pb::SyncReply, Status> {
    let channel = inner
        .peer_channel(addr, name)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(req);
    request.set_timeout(std::time::Duration::from_secs(2));
    inner.security.sign(&mut request, SYNC, name);
    RegistryClient::new(channel)
        .sync(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Push-pull with one member.
async fn exchange(inner: &Arc<Inner>, addr: &str, name: &str) -> Result<(), Status> {
    let reply = call(inner, addr, name, digest(inner)).await?;
    let want_owners = reply.want_owners;
    let want_children = reply.want_children;
    absorb(inner, reply.owners, reply.children)?;
    if want_owners.is_empty() && want_children.is_empty() {
        return Ok(());
    }
    let push = pb::SyncRequest {
        push_owners: inner
            .registry
            .states(&want_owners)
            .into_iter()
            .map(|(n, o)| owner_to_wire(n, o))
            .collect(),
        push_children: inner.supervisor.records_of(&want_children),
        ..pb::SyncRequest::default()
    };
    call(inner, addr, name, push).await.map(|_| ())
}

/// Pushes this node's own state, and the child records it changed, to `to`.
pub(crate) async fn push_to(inner: &Arc<Inner>, addr: &str, name: &str) -> Result<(), Status> {
    let (node, own) = inner.registry.own();
    let push = pb::SyncRequest {
        push_owners: vec![owner_to_wire(node, own)],
        push_children: inner.supervisor.recent(),
        ..pb::SyncRequest::default()
    };
    call(inner, addr, name, push).await.map(|_| ())
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

/// The background task: rounds, pushes on change, and the live set.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut events = inner.membership.subscribe();
    let mut tick = tokio::time::interval(super::SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = inner.stopping.clone();
    loop {
        let push_only = tokio::select! {
            _ = tick.tick() => false,
            () = inner.registry.changed.notified() => true,
            event = events.recv() => {
                match event {
                    Ok(MemberEvent::Joined(m)) => inner.registry.member_up(&m.name),
                    Ok(MemberEvent::Left { name, .. }) => inner.registry.member_down(&name),
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
            inner.registry.set_live(live);
        }
        let picked: Vec<(String, String)> = members
            .choose_multiple(&mut rand::rng(), super::FANOUT)
            .cloned()
            .collect();
        let rounds = picked.iter().map(|(name, addr)| {
            let inner = &inner;
            async move {
                let result = if push_only {
                    push_to(inner, addr, name).await
                } else {
                    exchange(inner, addr, name).await
                };
                if let Err(e) = result {
                    tracing::debug!(peer = %name, "registry sync failed: {}", e.message());
                }
            }
        });
        futures::future::join_all(rounds).await;
    }
}
