//! The cluster registry: global names that mean the same process from every node.
//!
//! # Model
//!
//! Each node is the only writer of the names held by its own processes: its [`OwnerState`]
//! (a version that grows with every change, under the node's incarnation). The registry on
//! every node is the union of the owner states it has seen; merging keeps, per node, the state
//! with the larger `(incarnation, version)`. That makes it a state-based CRDT: nodes converge
//! whatever order they hear things in.
//!
//! - **Uniqueness.** A new registration must be granted by the name's *home node*: the live
//!   member that rendezvous hashing of the name picks. The home checks its view (and the grants
//!   it made in the last seconds) and refuses a taken name. There is no central node: each name
//!   has its own home, and the homes spread over the cluster.
//! - **Replication** ([`sync`]): a change is pushed at once to the home and a few random
//!   members, and every node runs push-pull anti-entropy with random members every
//!   [`SYNC_INTERVAL`], backing off to [`SYNC_IDLE_INTERVAL`] while rounds move nothing. A lookup that misses locally asks the name's home.
//! - **Node death.** Reads see only names held on live members, so a dead node's names vanish
//!   from a node's view as soon as that node's failure detector declares it dead; its state
//!   is dropped then too.
//! - **Partitions.** Each side of a partition has its own homes, so a name can be registered on
//!   both. When the sides meet again, one registration wins on every node at once; the loser's
//!   node drops the name and sends the losing process `["name_lost", name, winner_pid]`. The
//!   loser keeps running. The winner is decided by the supervisor's rule, that the side that
//!   kept a majority wins ([`crate::quorum`]):
//!   - every entry carries the registry *epoch* its node had heard of when it registered. A node
//!     that declares a member dead while it sees a majority of the members it knows advances
//!     the epoch past every epoch it heard of; a node without a majority never does. Epochs
//!     travel with every sync round, and nodes keep the largest.
//!   - The higher epoch wins: it was registered after a majority declared the other side dead,
//!     as the majority's restart of a supervised child re-registers the child's name. So the
//!     registry keeps the copy the supervisor keeps, and never names the copy it stops.
//!   - Between equal epochs the older registration (`registered_ms`, then the PID) wins: a
//!     name held before the partition keeps its holder, whichever side registered it again.
//!
//! The gRPC side is in [`api`]; the Rust API is on [`Node`](crate::Node).

pub(crate) mod api;
pub(crate) mod sync;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use tokio::sync::Notify;

/// How often each node runs anti-entropy with random members while things change.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// The longest interval between rounds: each round that moves nothing doubles the interval,
/// up to this; any change, local or heard, or a membership event, brings it back.
pub const SYNC_IDLE_INTERVAL: Duration = Duration::from_millis(3200);
/// How many random members a node syncs with per round (and pushes a change to).
pub(crate) const FANOUT: usize = 2;
/// How long a home node holds a name it granted, until the holder's state reaches it.
const GRANT_HOLD: Duration = Duration::from_secs(10);

/// A global name and the process holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The name.
    pub name: String,
    /// The process holding it.
    pub pid: Pid,
    /// When it was registered, in ms since the Unix epoch. Of two with the same epoch, the
    /// older one wins a conflict.
    pub registered_ms: u64,
    /// The registry epoch its node had heard of when it registered (see the module docs). The
    /// higher one wins a conflict.
    pub epoch: u64,
}

impl RegistryEntry {
    /// The order that decides a conflict, smallest first: the higher epoch, then the older
    /// registration, then by PID.
    fn rank(&self) -> (std::cmp::Reverse<u64>, u64, &str, u64, u64) {
        (
            std::cmp::Reverse(self.epoch),
            self.registered_ms,
            &self.pid.node,
            self.pid.incarnation,
            self.pid.id,
        )
    }

    pub(crate) fn to_wire(&self) -> pb::NameEntry {
        pb::NameEntry {
            name: self.name.clone(),
            pid: Term::Pid(self.pid.clone()).encode().into(),
            registered_ms: self.registered_ms,
            epoch: self.epoch,
        }
    }

    pub(crate) fn from_wire(e: &pb::NameEntry) -> Result<Self, tonic::Status> {
        Ok(Self {
            name: e.name.clone(),
            pid: crate::messaging::decode_pid(&e.pid)?,
            registered_ms: e.registered_ms,
            epoch: e.epoch,
        })
    }
}

/// The names one node's processes hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnerState {
    pub(crate) incarnation: u64,
    pub(crate) version: u64,
    pub(crate) names: BTreeMap<String, RegistryEntry>,
}

impl OwnerState {
    fn stamp(&self) -> (u64, u64) {
        (self.incarnation, self.version)
    }
}

#[derive(Debug, Default)]
struct State {
    owners: HashMap<String, OwnerState>,
    /// Nodes declared dead, with the incarnation seen then: older news of them is ignored.
    gone: HashMap<String, u64>,
    /// The live members, as the membership last said.
    live: HashSet<String>,
    /// Names this node granted as their home: the entry, when, and the claimant's own-state
    /// version then. Settled once a newer state of the claimant arrives.
    grants: HashMap<String, (RegistryEntry, Instant, u64)>,
    /// The largest registry epoch heard of (see the module docs).
    epoch: u64,
    /// Members whose death (with a majority) advanced the epoch, until they are up again.
    taken_over: HashSet<String>,
}

/// A name the loser of a conflict must give up.
#[derive(Debug)]
pub(crate) struct Lost {
    pub(crate) loser: RegistryEntry,
    pub(crate) winner: Pid,
}

/// One node's replica of the registry.
#[derive(Debug)]
pub(crate) struct Registry {
    node: String,
    state: Mutex<State>,
    /// Woken when this node's own state changes, to push it.
    pub(crate) changed: Notify,
    /// Woken when a peer's sync brought this node something, so that its rounds speed up.
    pub(crate) heard: Notify,
}

impl Registry {
    pub(crate) fn new(node: &str, incarnation: u64) -> Self {
        let mut state = State::default();
        state.owners.insert(
            node.to_owned(),
            OwnerState {
                incarnation,
                ..OwnerState::default()
            },
        );
        state.live.insert(node.to_owned());
        Self {
            node: node.to_owned(),
            state: Mutex::new(state),
            changed: Notify::new(),
            heard: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The holder of `name` among live members: the highest epoch, then the oldest
    /// registration, wins.
    pub(crate) fn resolve(&self, name: &str) -> Option<RegistryEntry> {
        let state = self.lock();
        resolve_in(&state, name)
    }

    /// Every name with its winning holder, sorted by name.
    pub(crate) fn list(&self) -> Vec<RegistryEntry> {
        let state = self.lock();
        let mut names: Vec<&str> = state
            .owners
            .iter()
            .filter(|(node, _)| state.live.contains(*node))
            .flat_map(|(_, o)| o.names.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| resolve_in(&state, n))
            .collect()
    }

    /// Records a name this node granted as the name's home; refuses a taken one.
    pub(crate) fn grant(&self, entry: &RegistryEntry, owner_version: u64) -> Result<(), Pid> {
        let mut state = self.lock();
        let now = Instant::now();
        state.grants.retain(|_, (_, at, _)| now < *at + GRANT_HOLD);
        if let Some(holder) = resolve_in(&state, &entry.name)
            && holder.pid != entry.pid
        {
            return Err(holder.pid);
        }
        if let Some((held, _, _)) = state.grants.get(&entry.name)
            && held.pid != entry.pid
            && state.live.contains(&held.pid.node)
        {
            return Err(held.pid.clone());
        }
        state
            .grants
            .insert(entry.name.clone(), (entry.clone(), now, owner_version));
        Ok(())
    }

    /// Adds a granted name to this node's own state.
    pub(crate) fn insert_own(&self, entry: RegistryEntry) {
        {
            let mut state = self.lock();
            state.grants.remove(&entry.name);
            let own = state.owners.entry(self.node.clone()).or_default();
            own.names.insert(entry.name.clone(), entry);
            own.version += 1;
        }
        self.changed.notify_one();
    }

    /// Drops `name` from this node's own state, if `pid` (or anyone, for `None`) holds it.
    pub(crate) fn remove_own(&self, name: &str, pid: Option<&Pid>) -> bool {
        let removed = {
            let mut state = self.lock();
            let own = state.owners.entry(self.node.clone()).or_default();
            let holds = own
                .names
                .get(name)
                .is_some_and(|e| pid.is_none_or(|p| *p == e.pid));
            if holds {
                own.names.remove(name);
                own.version += 1;
            }
            holds
        };
        if removed {
            self.changed.notify_one();
        }
        removed
    }

    /// Drops every name a local process held when it exits.
    pub(crate) fn forget_pid(&self, pid: &Pid) {
        let removed = {
            let mut state = self.lock();
            let own = state.owners.entry(self.node.clone()).or_default();
            let before = own.names.len();
            own.names.retain(|_, e| e.pid != *pid);
            let removed = own.names.len() != before;
            if removed {
                own.version += 1;
            }
            removed
        };
        if removed {
            self.changed.notify_one();
        }
    }

    /// This node's own state.
    pub(crate) fn own(&self) -> (String, OwnerState) {
        let state = self.lock();
        (
            self.node.clone(),
            state.owners.get(&self.node).cloned().unwrap_or_default(),
        )
    }

    /// The version of this node's own state.
    pub(crate) fn own_version(&self) -> u64 {
        self.lock().owners.get(&self.node).map_or(0, |o| o.version)
    }

    /// The digest of every owner state held.
    pub(crate) fn digest(&self) -> Vec<(String, u64, u64)> {
        let state = self.lock();
        state
            .owners
            .iter()
            .map(|(node, o)| (node.clone(), o.incarnation, o.version))
            .collect()
    }

    /// The states newer here than in `theirs`, and the nodes whose state is newer there.
    pub(crate) fn compare(
        &self,
        theirs: &[(String, u64, u64)],
    ) -> (Vec<(String, OwnerState)>, Vec<String>) {
        let state = self.lock();
        let known: HashMap<&str, (u64, u64)> = theirs
            .iter()
            .map(|(n, i, v)| (n.as_str(), (*i, *v)))
            .collect();
        let newer_here = state
            .owners
            .iter()
            .filter(|(node, o)| known.get(node.as_str()).is_none_or(|s| *s < o.stamp()))
            .map(|(node, o)| (node.clone(), o.clone()))
            .collect();
        let newer_there = theirs
            .iter()
            .filter(|(node, i, v)| {
                state.gone.get(node).is_none_or(|g| i > g)
                    && state.owners.get(node).is_none_or(|o| o.stamp() < (*i, *v))
            })
            .map(|(node, _, _)| node.clone())
            .collect();
        (newer_here, newer_there)
    }

    /// The states of `nodes`, as held here.
    pub(crate) fn states(&self, nodes: &[String]) -> Vec<(String, OwnerState)> {
        let state = self.lock();
        nodes
            .iter()
            .filter_map(|n| state.owners.get(n).map(|o| (n.clone(), o.clone())))
            .collect()
    }

    /// The registry epoch this node has heard of; new registrations carry it.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// An epoch heard from a peer: keeps the larger.
    pub(crate) fn heard_epoch(&self, epoch: u64) {
        let mut state = self.lock();
        state.epoch = state.epoch.max(epoch);
    }

    /// This node declared `dead` dead while it sees a majority: what is registered from now on
    /// outranks what the dead side registered before (see the module docs). Once per death,
    /// whichever comes first of the membership event and the supervisor's restart of a child
    /// that ran there; returns the new epoch then.
    pub(crate) fn take_over(&self, dead: &str) -> Option<u64> {
        let mut state = self.lock();
        if !state.taken_over.insert(dead.to_owned()) {
            return None;
        }
        state.epoch += 1;
        Some(state.epoch)
    }

    /// Merges states heard from others; returns the names this node must give up.
    pub(crate) fn merge(&self, incoming: Vec<(String, OwnerState)>) -> Vec<Lost> {
        let mut state = self.lock();
        let heard = incoming
            .iter()
            .flat_map(|(_, o)| o.names.values().map(|e| e.epoch))
            .max()
            .unwrap_or(0);
        state.epoch = state.epoch.max(heard);
        for (node, theirs) in incoming {
            // Only this node writes its own state; a stale copy of it changes nothing.
            if node == self.node {
                continue;
            }
            if state
                .gone
                .get(&node)
                .is_some_and(|g| theirs.incarnation <= *g)
            {
                continue;
            }
            let newer = state
                .owners
                .get(&node)
                .is_none_or(|o| o.stamp() < theirs.stamp());
            if newer {
                state
                    .grants
                    .retain(|_, (g, _, v)| g.pid.node != node || theirs.version <= *v);
                state.owners.insert(node, theirs);
            }
        }
        self.conflicts(&state)
    }

    /// Names held here that lose to a registration elsewhere.
    fn conflicts(&self, state: &State) -> Vec<Lost> {
        let Some(own) = state.owners.get(&self.node) else {
            return Vec::new();
        };
        own.names
            .values()
            .filter_map(|mine| {
                let winner = resolve_in(state, &mine.name)?;
                (winner.pid != mine.pid).then(|| Lost {
                    loser: mine.clone(),
                    winner: winner.pid,
                })
            })
            .collect()
    }

    /// Whether `node` is live in this node's view.
    pub(crate) fn is_live(&self, node: &str) -> bool {
        self.lock().live.contains(node)
    }

    /// A member joined (or came back after a partition): its news counts again.
    pub(crate) fn member_up(&self, node: &str) {
        let mut state = self.lock();
        state.gone.remove(node);
        state.taken_over.remove(node);
        state.live.insert(node.to_owned());
    }

    /// A member was declared dead or left: its names are gone.
    pub(crate) fn member_down(&self, node: &str) {
        if node == self.node {
            return;
        }
        let mut state = self.lock();
        state.live.remove(node);
        if let Some(o) = state.owners.remove(node) {
            state.gone.insert(node.to_owned(), o.incarnation);
        }
    }

    /// Replaces the live set from a full membership listing.
    pub(crate) fn set_live(&self, live: HashSet<String>) {
        let mut state = self.lock();
        let gone: Vec<String> = state
            .owners
            .keys()
            .filter(|n| **n != self.node && !live.contains(*n))
            .cloned()
            .collect();
        for node in gone {
            if let Some(o) = state.owners.remove(&node) {
                state.gone.insert(node, o.incarnation);
            }
        }
        for node in &live {
            state.gone.remove(node);
        }
        state.live = live;
        state.live.insert(self.node.clone());
    }
}

fn resolve_in(state: &State, name: &str) -> Option<RegistryEntry> {
    state
        .owners
        .iter()
        .filter(|(node, _)| state.live.contains(*node))
        .filter_map(|(_, o)| o.names.get(name))
        .min_by(|a, b| a.rank().cmp(&b.rank()))
        .cloned()
}

/// Rendezvous hashing: the member with the highest score for `key` (FNV-1a, then mixed).
/// Every node computes the same answer from the same member list.
pub(crate) fn rendezvous<'a>(key: &str, members: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    members.max_by_key(|m| (score(key, m), *m))
}

fn score(key: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0xff]).chain(member.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser: FNV alone clusters on similar names.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
