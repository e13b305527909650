//! [`Membership`]: one node's handle on the gossip cluster, wrapping a running memberlist.
//!
//! It owns starting (bind, configure, join the seeds), the live member view, metadata updates,
//! the event channel, and stopping (graceful leave or crash-like shutdown).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use memberlist::keyring::{Keyring, KeyringError};
use memberlist::proto::{MaybeResolvedAddress, Meta, SecretKey};
use tokio::sync::broadcast;

use crate::delegate;
use crate::ml::{Failure, Ml, failure, on_ml};
use crate::{
    GossipInbox, Member, MemberEvent, MembershipConfig, MembershipError, NodeMeta, Reachable, meta,
};

/// How many events a subscriber may fall behind before it sees
/// [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged).
pub const EVENT_CAPACITY: usize = 1024;

/// How long after the reclaim time a joined node re-advertises itself (see
/// [`Membership::readvertise_after`]).
const READVERTISE_SLACK: Duration = Duration::from_millis(250);

/// How long [`Membership::update_meta`] waits for the new advertisement to go out.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running cluster member.
///
/// Cheap to clone (all clones share one memberlist node), `Send + Sync`. Stop it with
/// [`leave`](Self::leave) or [`shutdown`](Self::shutdown): memberlist's background tasks keep a
/// node alive on their own. As a safety net, dropping the last clone without either starts a
/// shutdown in the background (so a forgotten handle never lingers as a zombie that still answers
/// probes), but do not rely on its timing.
#[derive(Clone)]
pub struct Membership {
    shared: Arc<Shared>,
}

struct Shared {
    ml: Ml,
    /// Where the node delivers its peers' gossip, in the one-port mode.
    inbox: Option<GossipInbox>,
    /// The profile's reclaim time (see [`Membership::readvertise_after`]).
    reclaim: Duration,
    name: String,
    gossip_addr: SocketAddr,
    meta: Arc<RwLock<Meta>>,
    events: broadcast::Sender<MemberEvent>,
    stopped: AtomicBool,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("name", &self.shared.name)
            .field("gossip_addr", &self.shared.gossip_addr)
            .field("stopped", &self.shared.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Binds the gossip sockets (UDP and TCP on `config.gossip_addr`) and joins `config.seeds`.
    ///
    /// With no seeds the node starts a new cluster. Seeds equal to the node's own address are
    /// skipped, so every node can be given the same seed list.
    ///
    /// # Errors
    ///
    /// - [`MembershipError::InvalidConfig`] for an empty node name, or extra gossip keys without
    ///   a primary one;
    /// - [`MembershipError::MetaTooLarge`] / [`MembershipError::MetaEncode`] for unusable metadata;
    /// - [`MembershipError::Start`] if the address cannot be bound;
    /// - [`MembershipError::EncryptionNotEnabled`] if a gossip key was given but memberlist did
    ///   not turn encryption on;
    /// - [`MembershipError::JoinFailed`] if there are seeds and none could be joined (the node is
    ///   shut down again).
    pub async fn start(config: MembershipConfig) -> Result<Self, MembershipError> {
        if config.name.trim().is_empty() {
            return Err(MembershipError::InvalidConfig(
                "the node name must not be empty".to_owned(),
            ));
        }
        if config.gossip_key.is_none() && !config.extra_gossip_keys.is_empty() {
            return Err(MembershipError::InvalidConfig(
                "extra gossip keys need a primary gossip key; set gossip_key too".to_owned(),
            ));
        }
        let encoded = encode_meta(&config.meta)?;
        let meta = Arc::new(RwLock::new(encoded));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (ml, inbox) = crate::ml::create(&config, meta.clone(), events.clone())
            .await
            .map_err(|reason| MembershipError::Start {
                addr: config.gossip_addr,
                reason,
            })?;
        let membership = Membership {
            shared: Arc::new(Shared {
                gossip_addr: *on_ml!(&ml, m => m.advertise_address()),
                ml,
                inbox,
                reclaim: config.profile.dead_node_reclaim(),
                name: config.name,
                meta,
                events,
                stopped: AtomicBool::new(false),
            }),
        };
        if config.gossip_key.is_some()
            && membership.shared.inbox.is_none()
            && !membership.encryption_enabled()
        {
            membership.stop().await;
            return Err(MembershipError::EncryptionNotEnabled);
        }
        tracing::info!(
            node = %membership.shared.name, gossip = %membership.shared.gossip_addr,
            profile = ?config.profile, wire = ?config.gossip,
            encrypted = config.gossip_key.is_some() || membership.shared.inbox.is_some(),
            gossip_keys = membership.gossip_keys().len(), "gossip membership started"
        );

        if let Err(e) = membership.join_cluster(&config.seeds).await {
            membership.stop().await;
            return Err(e);
        }
        Ok(membership)
    }

    /// Re-advertises the local node once, `delay` from now.
    ///
    /// A node restarted under its old name at a new address (port 0, a rescheduled container)
    /// usually joins right after the others declared its old self dead, and they reject it as a
    /// name conflict until the dead entry is older than the profile's reclaim time. Without help
    /// it then waits for a push/pull (seconds to tens of seconds); one fresh alive broadcast after
    /// the reclaim time gets it accepted at once. For any other join it is a harmless no-op update.
    fn readvertise_after(&self, delay: Duration) {
        let ml = self.shared.ml.clone();
        let name = self.shared.name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match on_ml!(&ml, m => m.update_node(UPDATE_TIMEOUT).await.map_err(failure)) {
                Ok(()) | Err(Failure::NotRunning) | Err(Failure::UpdateTimeout) => {}
                Err(e) => tracing::debug!(node = %name, error = %e, "re-advertising after join"),
            }
        });
    }

    /// Joins the cluster through `seeds`, as [`Membership::start`] does with its seeds: a
    /// node started with none (in the one-port mode, before its server accepts the peers'
    /// gossip) joins with this afterwards. No seeds does nothing.
    ///
    /// # Errors
    ///
    /// As [`Membership::join`].
    pub async fn join_cluster(&self, seeds: &[SocketAddr]) -> Result<(), MembershipError> {
        if seeds.is_empty() {
            return Ok(());
        }
        self.join(seeds).await?;
        self.readvertise_after(self.shared.reclaim + READVERTISE_SLACK);
        Ok(())
    }

    /// Where the node delivers the gossip its peers send it, in the one-port mode
    /// ([`GossipWire::Links`](crate::GossipWire::Links)); `None` when gossip has its own port.
    pub fn inbox(&self) -> Option<&GossipInbox> {
        self.shared.inbox.as_ref()
    }

    /// The local node's name.
    pub fn local_name(&self) -> &str {
        &self.shared.name
    }

    /// The gossip address other nodes reach this one at: the bound address, with the real port
    /// when the configuration asked for port 0. (For an unspecified IP such as `0.0.0.0` it is the
    /// machine's first private address, which memberlist advertises.)
    pub fn gossip_addr(&self) -> SocketAddr {
        self.shared.gossip_addr
    }

    /// Whether gossip is encrypted with the configured key.
    pub fn encryption_enabled(&self) -> bool {
        on_ml!(&self.shared.ml, m => m.encryption_enabled())
    }

    /// This node's gossip keys, the primary one (which it encrypts with) first, then the
    /// secondary ones it also accepts. Empty when gossip is plaintext.
    pub fn gossip_keys(&self) -> Vec<[u8; 32]> {
        let Some(keyring) = on_ml!(&self.shared.ml, m => m.keyring()) else {
            return Vec::new();
        };
        let mut keys: Vec<[u8; 32]> = Vec::new();
        // Only AES-256 keys are ever installed by this crate; the dedup guards against memberlist
        // listing the primary twice.
        for key in keyring.keys() {
            if let SecretKey::Aes256(bytes) = key
                && !keys.contains(&bytes)
            {
                keys.push(bytes);
            }
        }
        keys
    }

    /// Adds `key` to this node's keyring as a secondary key: from now on this node accepts
    /// traffic encrypted with it, and still sends with its primary key. The first step of a key
    /// rotation (see "Key rotation" in the crate docs). Installing a key that is already
    /// installed (or is the primary) does nothing.
    ///
    /// The keyring lives in memory only; a restarted node gets its keys from its configuration.
    ///
    /// # Errors
    ///
    /// [`MembershipError::GossipEncryptionOff`] if the node gossips in plaintext, and
    /// [`MembershipError::NotRunning`] after leave or shutdown.
    pub fn install_gossip_key(&self, key: [u8; 32]) -> Result<(), MembershipError> {
        let keyring = self.keyring()?;
        if keyring.primary_key().as_ref() != key.as_slice() {
            keyring.insert(SecretKey::Aes256(key));
        }
        tracing::info!(node = %self.shared.name, keys = self.gossip_keys().len(), "gossip key installed");
        Ok(())
    }

    /// Makes the installed `key` this node's primary key: everything it sends from now on is
    /// encrypted with it. The previous primary key stays installed as a secondary key, so traffic
    /// from nodes that still use it is still accepted. The second step of a key rotation; do it
    /// only once every node has installed `key`, or the nodes without it lose this one. Using the
    /// current primary key does nothing.
    ///
    /// # Errors
    ///
    /// [`MembershipError::GossipKeyNotInstalled`] if `key` is not in the keyring (see
    /// [`install_gossip_key`](Self::install_gossip_key)),
    /// [`MembershipError::GossipEncryptionOff`] if the node gossips in plaintext, and
    /// [`MembershipError::NotRunning`] after leave or shutdown.
    pub fn use_gossip_key(&self, key: [u8; 32]) -> Result<(), MembershipError> {
        self.keyring()?
            .use_key(&key)
            .map_err(|_| MembershipError::GossipKeyNotInstalled)?;
        tracing::info!(node = %self.shared.name, "now encrypting gossip with another key");
        Ok(())
    }

    /// Removes the secondary `key` from this node's keyring: traffic encrypted with it is
    /// rejected from now on. The last step of a key rotation, once every node uses the new key.
    ///
    /// # Errors
    ///
    /// [`MembershipError::RemovePrimaryGossipKey`] if `key` is the primary key (make another key
    /// primary with [`use_gossip_key`](Self::use_gossip_key) first),
    /// [`MembershipError::GossipKeyNotInstalled`] if it is not in the keyring,
    /// [`MembershipError::GossipEncryptionOff`] if the node gossips in plaintext, and
    /// [`MembershipError::NotRunning`] after leave or shutdown.
    pub fn remove_gossip_key(&self, key: [u8; 32]) -> Result<(), MembershipError> {
        let keyring = self.keyring()?;
        if !self.gossip_keys().contains(&key) {
            return Err(MembershipError::GossipKeyNotInstalled);
        }
        keyring.remove(&key).map_err(|e| match e {
            KeyringError::RemovePrimaryKey => MembershipError::RemovePrimaryGossipKey,
            KeyringError::SecretKeyNotFound => MembershipError::GossipKeyNotInstalled,
        })?;
        tracing::info!(node = %self.shared.name, keys = self.gossip_keys().len(), "gossip key removed");
        Ok(())
    }

    /// The running node's keyring, for the key operations.
    fn keyring(&self) -> Result<&Keyring, MembershipError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(MembershipError::NotRunning);
        }
        if self.shared.inbox.is_some() {
            return Err(MembershipError::GossipOnTls);
        }
        on_ml!(&self.shared.ml, m => m.keyring()).ok_or(MembershipError::GossipEncryptionOff)
    }

    /// The live members (alive or suspect, not dead or departed), including this node, sorted by
    /// name. Members whose metadata cannot be decoded (a foreign or incompatible node) are left
    /// out and logged.
    pub async fn members(&self) -> Vec<Member> {
        let online = on_ml!(&self.shared.ml, m => m.online_members().await);
        let mut members: Vec<Member> = online
            .iter()
            .filter_map(|node| match delegate::member(node) {
                Ok(member) => Some(member),
                Err(reason) => {
                    tracing::debug!(node = %node.id(), %reason, "skipping member with unreadable metadata");
                    None
                }
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }

    /// Which members answer now: the members alive and not suspect, this node included, and
    /// of up to `sample` of the others, picked at random, how many acknowledged a ping within
    /// the probe timeout. What a majority rule may count: on the smaller side of a fresh
    /// partition the nodes across it are declared dead one at a time, many probes apart (a
    /// node whose probes fail slows its probing down), and counting those not declared dead
    /// yet would hand that side a majority between the first death and the last.
    pub async fn reachable(&self, sample: usize) -> Reachable {
        let me = self.local_name().to_owned();
        let alive_now = on_ml!(&self.shared.ml, m => m.alive_members().await);
        let mut others: Vec<_> = alive_now
            .into_iter()
            .filter(|n| n.id().as_str() != me)
            .collect();
        let mut alive: Vec<String> = others.iter().map(|n| n.id().as_str().to_owned()).collect();
        alive.push(me);
        alive.sort();
        {
            use rand::seq::SliceRandom;
            others.shuffle(&mut rand::rng());
        }
        others.truncate(sample);
        let pings = others.into_iter().map(|node| {
            let ml = &self.shared.ml;
            async move { on_ml!(ml, m => m.ping(node).await.is_ok()) }
        });
        let acks = futures::future::join_all(pings).await;
        Reachable {
            alive,
            asked: acks.len(),
            answered: acks.iter().filter(|ok| **ok).count(),
        }
    }

    /// How many members this node knows, by state, itself included: alive, suspect, and
    /// down (dead or departed, not yet reclaimed). Decodes no metadata: for the metrics scrape.
    pub async fn member_counts(&self) -> crate::MemberCounts {
        let ml = &self.shared.ml;
        let (alive, online, known) = on_ml!(ml, m => (
            m.alive_members().await.len(),
            m.num_online_members().await,
            m.num_members().await,
        ));
        crate::MemberCounts {
            alive,
            suspect: online.saturating_sub(alive),
            down: known.saturating_sub(online),
        }
    }

    /// The live member named `name`, as [`Membership::members`] would list it. Decodes only its
    /// metadata: the hot path of a call to one node.
    pub async fn member(&self, name: &str) -> Option<Member> {
        let online = on_ml!(&self.shared.ml, m => m.online_members().await);
        let node = online.iter().find(|node| node.id().as_str() == name)?;
        delegate::member(node)
            .inspect_err(|reason| {
                tracing::debug!(node = %node.id(), %reason, "skipping member with unreadable metadata");
            })
            .ok()
    }

    /// Replaces the local metadata and re-advertises it to the cluster.
    ///
    /// Returns once the new advertisement has been queued for gossip to at least one member (or
    /// at once in a one-node cluster). If that takes over 2 s it logs a warning and still returns
    /// `Ok`: the metadata is in place locally and spreads with the next gossip or push/pull.
    ///
    /// # Errors
    ///
    /// [`MembershipError::MetaTooLarge`] / [`MembershipError::MetaEncode`] (the old metadata stays
    /// advertised), and [`MembershipError::NotRunning`] after leave or shutdown.
    pub async fn update_meta(&self, meta: NodeMeta) -> Result<(), MembershipError> {
        let encoded = encode_meta(&meta)?;
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(MembershipError::NotRunning);
        }
        *self.shared.meta.write().unwrap_or_else(|e| e.into_inner()) = encoded;
        match on_ml!(&self.shared.ml, m => m.update_node(UPDATE_TIMEOUT).await.map_err(failure)) {
            Ok(()) => Ok(()),
            Err(Failure::UpdateTimeout) => {
                tracing::warn!(node = %self.shared.name, "metadata update not yet gossiped after {UPDATE_TIMEOUT:?}");
                Ok(())
            }
            Err(Failure::NotRunning) => Err(MembershipError::NotRunning),
            Err(e) => Err(MembershipError::Memberlist(e.to_string())),
        }
    }

    /// Subscribes to changes of *other* members: joins, metadata updates and departures (a
    /// crash and a graceful leave both end in [`MemberEvent::Left`]).
    ///
    /// The channel is bounded ([`EVENT_CAPACITY`]); a subscriber that falls behind gets
    /// `Lagged` and should resynchronise from [`members`](Self::members).
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.shared.events.subscribe()
    }

    /// Joins the cluster through `seeds` (a state sync over TCP with each). Seeds equal to this
    /// node's own address are skipped. Returns how many seeds were joined; failures of some seeds
    /// are logged when at least one succeeded.
    ///
    /// # Errors
    ///
    /// [`MembershipError::JoinFailed`] if every seed failed, and [`MembershipError::NotRunning`]
    /// after leave or shutdown.
    pub async fn join(&self, seeds: &[SocketAddr]) -> Result<usize, MembershipError> {
        let own = self.shared.gossip_addr;
        let targets: Vec<SocketAddr> = seeds.iter().copied().filter(|s| *s != own).collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let seeds = targets.iter().copied().map(MaybeResolvedAddress::Resolved);
        let result = on_ml!(&self.shared.ml, m => m
            .join_many(seeds)
            .await
            .map(|joined| joined.len())
            .map_err(|(joined, e)| (joined.len(), failure(e))));
        match result {
            Ok(joined) => {
                tracing::info!(node = %self.shared.name, seeds = ?targets, "joined the cluster");
                Ok(joined)
            }
            Err((_, Failure::NotRunning)) => Err(MembershipError::NotRunning),
            Err((joined, e)) if joined > 0 => {
                tracing::warn!(
                    node = %self.shared.name, joined, error = %e,
                    "joined the cluster, but some seeds failed"
                );
                Ok(joined)
            }
            Err((_, e)) => Err(MembershipError::JoinFailed {
                seeds: targets,
                reason: e.to_string(),
            }),
        }
    }

    /// Syncs state with one member at `addr` (a push/pull), as a join does. Used to reconnect
    /// to a member declared failed, e.g. after a partition healed; unlike [`join`](Self::join)
    /// its future is `Send`, so a background task can run it.
    ///
    /// # Errors
    ///
    /// [`MembershipError::JoinFailed`] if the member cannot be reached, and
    /// [`MembershipError::NotRunning`] after leave or shutdown.
    pub async fn rejoin(&self, addr: SocketAddr) -> Result<(), MembershipError> {
        let seed = MaybeResolvedAddress::Resolved(addr);
        match on_ml!(&self.shared.ml, m => m.join(seed).await.map(|_| ()).map_err(failure)) {
            Ok(()) => Ok(()),
            Err(Failure::NotRunning) => Err(MembershipError::NotRunning),
            Err(e) => Err(MembershipError::JoinFailed {
                seeds: vec![addr],
                reason: e.to_string(),
            }),
        }
    }

    /// Leaves gracefully: broadcasts the departure (waiting up to `timeout` for it to go out),
    /// then shuts down. The others notice within tens of milliseconds instead of after the
    /// failure detector's seconds.
    ///
    /// # Errors
    ///
    /// [`MembershipError::LeaveTimeout`] if the leave broadcast did not go out in time (the node
    /// is shut down all the same), [`MembershipError::Memberlist`] for other failures.
    pub async fn leave(&self, timeout: Duration) -> Result<(), MembershipError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        let left =
            on_ml!(&self.shared.ml, m => m.leave(timeout).await.map(|_| ()).map_err(failure));
        let stopped = self.shutdown().await;
        match left {
            Ok(_) => {
                tracing::info!(node = %self.shared.name, "left the cluster");
                stopped
            }
            Err(Failure::LeaveTimeout) => Err(MembershipError::LeaveTimeout),
            Err(Failure::NotRunning) => stopped,
            Err(e) => Err(MembershipError::Memberlist(e.to_string())),
        }
    }

    /// Stops gossip at once without announcing it, as a crash would: the sockets close and the
    /// others detect the node as failed by probing. Safe to call more than once.
    ///
    /// # Errors
    ///
    /// [`MembershipError::Memberlist`] if the transport fails to shut down.
    pub async fn shutdown(&self) -> Result<(), MembershipError> {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        on_ml!(&self.shared.ml, m => m.shutdown().await.map_err(|e| e.to_string()))
            .map_err(MembershipError::Memberlist)?;
        tracing::info!(node = %self.shared.name, "gossip membership stopped");
        Ok(())
    }

    /// Shuts down after a failed start, logging rather than returning a failure to do so.
    async fn stop(&self) {
        if let Err(e) = self.shutdown().await {
            tracing::warn!(node = %self.shared.name, error = %e, "shutdown after failed start");
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        tracing::debug!(node = %self.name, "last membership handle dropped without shutdown");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let ml = self.ml.clone();
            runtime.spawn(async move {
                let _ = on_ml!(&ml, m => m.shutdown().await.map_err(|e| e.to_string()));
            });
        }
    }
}

/// Encodes metadata for memberlist, checking memberlist's size cap.
fn encode_meta(node_meta: &NodeMeta) -> Result<Meta, MembershipError> {
    let bytes = meta::encode(node_meta)?;
    let size = bytes.len();
    Meta::try_from(bytes).map_err(|_| MembershipError::MetaTooLarge { size })
}
