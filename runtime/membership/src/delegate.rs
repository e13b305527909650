//! The memberlist delegate: our hooks into memberlist's lifecycle.
//!
//! - [`MetaSource`] hands memberlist the local node's encoded [`NodeMeta`](crate::NodeMeta)
//!   whenever it builds an alive message;
//! - [`Events`] turns memberlist's join/leave/update callbacks into [`MemberEvent`]s on a tokio
//!   broadcast channel, and logs them;
//! - [`Conflicts`] logs two nodes claiming the same name.
//!
//! memberlist calls these with its member table locked, so they must never call back into the
//! `Memberlist`; they only read a cell, log and send on a channel.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use memberlist::delegate::{
    CompositeDelegate, ConflictDelegate, EventDelegate, NodeDelegate, VoidDelegate,
};
use memberlist::proto::{Meta, NodeState};
use smol_str::SmolStr;
use tokio::sync::broadcast;

use crate::wire::Names;
use crate::{Member, MemberEvent, meta};

/// The delegate type plugged into memberlist (alive, conflict, event, merge, node, ping).
pub(crate) type Delegate = CompositeDelegate<
    SmolStr,
    SocketAddr,
    VoidDelegate<SmolStr, SocketAddr>,
    Conflicts,
    Events,
    VoidDelegate<SmolStr, SocketAddr>,
    MetaSource,
    VoidDelegate<SmolStr, SocketAddr>,
>;

/// Builds the delegate around the shared metadata cell and event channel.
pub(crate) fn delegate(
    local: SmolStr,
    meta: Arc<RwLock<Meta>>,
    events: broadcast::Sender<MemberEvent>,
    names: Option<Arc<Names>>,
) -> Delegate {
    CompositeDelegate::new()
        .with_conflict_delegate(Conflicts)
        .with_event_delegate(Events {
            local,
            events,
            names,
        })
        .with_node_delegate(MetaSource(meta))
}

/// Converts memberlist's view of a node into a [`Member`], or explains why it cannot.
pub(crate) fn member(node: &NodeState<SmolStr, SocketAddr>) -> Result<Member, String> {
    Ok(Member {
        name: node.id().to_string(),
        gossip_addr: *node.address(),
        meta: meta::decode(node.meta())?,
    })
}

/// Serves the local node's current encoded metadata.
#[derive(Debug)]
pub(crate) struct MetaSource(pub(crate) Arc<RwLock<Meta>>);

impl NodeDelegate for MetaSource {
    async fn node_meta(&self, _limit: usize) -> Meta {
        // Always within the limit: `Membership` checks the size before storing.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Publishes membership changes of other nodes.
#[derive(Debug)]
pub(crate) struct Events {
    local: SmolStr,
    events: broadcast::Sender<MemberEvent>,
    /// Who is at which address, for the one-port mode's dials.
    names: Option<Arc<Names>>,
}

impl Events {
    /// Sends `event`; having no subscriber is fine.
    fn publish(&self, event: MemberEvent) {
        let _ = self.events.send(event);
    }

    /// Converts a joined or updated node, logging (and skipping) one whose metadata is unreadable.
    fn convert(&self, node: &NodeState<SmolStr, SocketAddr>, what: &str) -> Option<Member> {
        match member(node) {
            Ok(member) => Some(member),
            Err(reason) => {
                tracing::warn!(
                    local = %self.local, node = %node.id(), addr = %node.address(), %reason,
                    "ignoring {what} of a node with unreadable metadata"
                );
                None
            }
        }
    }
}

impl EventDelegate for Events {
    type Id = SmolStr;
    type Address = SocketAddr;

    async fn notify_join(&self, node: Arc<NodeState<SmolStr, SocketAddr>>) {
        if *node.id() == self.local {
            return;
        }
        if let Some(names) = &self.names {
            names.set(*node.address(), node.id());
        }
        if let Some(member) = self.convert(&node, "join") {
            tracing::info!(
                local = %self.local, node = %member.name, gossip = %member.gossip_addr,
                grpc = %member.meta.grpc_addr, "member joined"
            );
            self.publish(MemberEvent::Joined(member));
        }
    }

    async fn notify_leave(&self, node: Arc<NodeState<SmolStr, SocketAddr>>) {
        if *node.id() == self.local {
            return;
        }
        if let Some(names) = &self.names {
            names.forget(node.address(), node.id());
        }
        // memberlist reports crashes and graceful leaves alike; the state tells them apart.
        let failed = !node.state().is_left();
        if failed {
            tracing::warn!(
                local = %self.local, node = %node.id(), gossip = %node.address(),
                state = %node.state(),
                "member failed: declared dead after it stopped answering probes (a crash or a partition)"
            );
        } else {
            tracing::info!(
                local = %self.local, node = %node.id(), gossip = %node.address(),
                "member left the cluster gracefully"
            );
        }
        self.publish(MemberEvent::Left {
            name: node.id().to_string(),
            gossip_addr: *node.address(),
            failed,
        });
    }

    async fn notify_update(&self, node: Arc<NodeState<SmolStr, SocketAddr>>) {
        if *node.id() == self.local {
            return;
        }
        if let Some(names) = &self.names {
            names.set(*node.address(), node.id());
        }
        if let Some(member) = self.convert(&node, "update") {
            tracing::info!(
                local = %self.local, node = %member.name, grpc = %member.meta.grpc_addr,
                modules_digest = member.meta.modules_digest, load = member.meta.load,
                "member updated"
            );
            self.publish(MemberEvent::Updated(member));
        }
    }
}

/// Logs name conflicts: two nodes advertising the same name from different addresses.
#[derive(Debug)]
pub(crate) struct Conflicts;

impl ConflictDelegate for Conflicts {
    type Id = SmolStr;
    type Address = SocketAddr;

    async fn notify_conflict(
        &self,
        existing: Arc<NodeState<SmolStr, SocketAddr>>,
        other: Arc<NodeState<SmolStr, SocketAddr>>,
    ) {
        tracing::warn!(
            node = %existing.id(), known = %existing.address(), other = %other.address(),
            "two nodes claim the same name; node names must be unique in the cluster"
        );
    }
}
