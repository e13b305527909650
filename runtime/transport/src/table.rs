//! The pool's table: per peer name, the one link this node uses to reach it, and the bound.
//!
//! A link gets here two ways: this node dialed it ([`crate::Transport`]), or the peer dialed
//! this node and the accepting side offered it ([`Table::offer_inbound`]), so that calls to
//! that peer use the peer's connection instead of opening a second one. An inbound link is
//! found by the peer's name whatever address the caller knows it by: the name is the one the
//! peer's certificate gives (or, on insecure clusters, the one its opening claims).
//!
//! The table is bounded: at most `max_peers` peers have links in use; keeping one more first
//! drops the least recently used one's, and [`Table::close_idle`] drops those unused for the
//! idle time. Dropping only lets go of this node's side: the link closes once the peer is done
//! with it too ([`crate::end`]).

use crate::lock;
use crate::mux::Mux;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tonic::transport::Channel;

/// One peer's link: its two calling sides.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) mux: Arc<Mux>,
    pub(crate) channel: Channel,
}

/// One peer's entry.
#[derive(Debug)]
struct Peer {
    /// The address this node dialed; empty for a link the peer opened.
    addr: String,
    link: Option<Link>,
    /// The link was opened by the peer.
    inbound: bool,
    last_used: Instant,
    /// Held while a connection to this peer is opened, so that concurrent callers open one,
    /// not one each, and nobody else waits.
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl Peer {
    fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            link: None,
            inbound: false,
            last_used: Instant::now(),
            opening: Arc::default(),
        }
    }

    fn is_open(&self) -> bool {
        self.live().is_some()
    }

    /// The link, if it still works.
    fn live(&self) -> Option<&Link> {
        self.link
            .as_ref()
            .filter(|l| l.mux.is_alive() && l.mux.h2_alive())
    }

    /// Whether this entry answers for the peer at `addr`.
    fn reaches(&self, addr: &str) -> bool {
        self.addr == addr || (self.inbound && self.is_open())
    }
}

/// The links in use, by peer name.
#[derive(Debug)]
pub(crate) struct Table {
    max_peers: usize,
    /// Looked up on every remote call without an allocation or an await.
    peers: Mutex<HashMap<String, Peer>>,
    /// Wakes [`crate::Transport::maintain`] when a peer is added.
    pub(crate) added: Notify,
}

/// What the table holds now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) open: usize,
    pub(crate) inbound: usize,
    pub(crate) used_streams: usize,
}

impl Table {
    pub(crate) fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            peers: Mutex::new(HashMap::new()),
            added: Notify::new(),
        }
    }

    /// `get` of the live link to the peer `name` at `addr`; marks it used when `touch`.
    pub(crate) fn lookup<T>(
        &self,
        addr: &str,
        name: &str,
        touch: bool,
        get: impl FnOnce(&Link) -> T,
    ) -> Option<T> {
        let mut peers = lock(&self.peers);
        let peer = peers.get_mut(name).filter(|p| p.reaches(addr))?;
        let found = get(peer.live()?);
        if touch {
            peer.last_used = Instant::now();
        }
        Some(found)
    }

    /// The lock on opening connections to `name`, taken. A peer that moved to a new address
    /// starts afresh, unless the link it opened itself still works.
    pub(crate) async fn opening(&self, addr: &str, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut peers = lock(&self.peers);
            let peer = peers
                .entry(name.to_owned())
                .or_insert_with(|| Peer::new(addr));
            if !peer.reaches(addr) {
                *peer = Peer::new(addr);
            }
            peer.opening.clone()
        };
        lock.lock_owned().await
    }

    /// Records a link this node opened to `name` at `addr`, and closes the least recently
    /// used peers' while more than the bound are open.
    pub(crate) fn keep(&self, addr: &str, name: &str, link: Link) {
        let mut peers = lock(&self.peers);
        let peer = peers
            .entry(name.to_owned())
            .or_insert_with(|| Peer::new(addr));
        addr.clone_into(&mut peer.addr);
        peer.inbound = false;
        peer.link = Some(link);
        peer.last_used = Instant::now();
        self.trim(&mut peers, name);
        drop(peers);
        self.added.notify_one();
    }

    /// Whether a link that the peer `name` opened would be kept ([`Table::offer_inbound`]).
    pub(crate) fn wants_inbound(&self, name: &str) -> bool {
        self.room_for_inbound(&lock(&self.peers), name)
    }

    /// Whether the pool has room and no working link to `name`.
    fn room_for_inbound(&self, peers: &HashMap<String, Peer>, name: &str) -> bool {
        open_count(peers) < self.max_peers && !peers.get(name).is_some_and(Peer::is_open)
    }

    /// Offers a link that the peer `name` opened: kept if this node has no working link to it
    /// and the pool has room, so that calls to the peer use it. Gives it back if not.
    pub(crate) fn offer_inbound(&self, name: &str, link: Link) -> Option<Link> {
        let mut peers = lock(&self.peers);
        if !self.room_for_inbound(&peers, name) {
            return Some(link);
        }
        let peer = peers
            .entry(name.to_owned())
            .or_insert_with(|| Peer::new(""));
        peer.addr.clear();
        peer.inbound = true;
        peer.link = Some(link);
        peer.last_used = Instant::now();
        drop(peers);
        self.added.notify_one();
        None
    }

    /// Closes the least recently used peers other than `name` while more than the bound are
    /// open.
    fn trim(&self, peers: &mut HashMap<String, Peer>, name: &str) {
        let mut open = open_count(peers);
        while open > self.max_peers.max(1) {
            let Some(lru) = peers
                .iter()
                .filter(|(n, p)| *n != name && p.is_open())
                .min_by_key(|(_, p)| p.last_used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            tracing::debug!(peer = %lru, "closing the least recently used peer connection: the pool is full");
            close(peers, &lru);
            open -= 1;
        }
    }

    /// Closes the links of peers unused for `idle`; returns when the next one would be due,
    /// or `None` if no peer is open.
    pub(crate) fn close_idle(&self, idle: Duration) -> Option<Instant> {
        let mut peers = lock(&self.peers);
        let stale: Vec<String> = peers
            .iter()
            .filter(|(_, p)| p.last_used.elapsed() >= idle)
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            if peers.get(&name).is_some_and(Peer::is_open) {
                tracing::debug!(peer = %name, "closing an idle peer connection");
            }
            close(&mut peers, &name);
        }
        // An entry kept for an open under way may be due already: look again soon, not at once.
        let soon = Instant::now() + (idle / 10).max(Duration::from_millis(100));
        peers.values().map(|p| (p.last_used + idle).max(soon)).min()
    }

    /// The names of the peers with working links.
    pub(crate) fn connected(&self) -> Vec<String> {
        lock(&self.peers)
            .iter()
            .filter(|(_, p)| p.is_open())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether one more peer can be opened without closing another's link.
    pub(crate) fn has_room(&self) -> bool {
        open_count(&lock(&self.peers)) < self.max_peers
    }

    pub(crate) fn counts(&self) -> Counts {
        let peers = lock(&self.peers);
        let open: Vec<&Peer> = peers.values().filter(|p| p.is_open()).collect();
        Counts {
            open: open.len(),
            inbound: open.iter().filter(|p| p.inbound).count(),
            used_streams: open
                .iter()
                .filter_map(|p| p.live())
                .filter(|l| l.mux.was_used())
                .count(),
        }
    }

    /// Forgets every link.
    pub(crate) fn clear(&self) {
        lock(&self.peers).clear();
    }
}

/// How many of `peers` have working links.
fn open_count(peers: &HashMap<String, Peer>) -> usize {
    peers.values().filter(|p| p.is_open()).count()
}

/// Drops the table's handles on `name`'s link; keeps the entry while an open is under way, so
/// that its lock stays the one every caller waits on.
fn close(peers: &mut HashMap<String, Peer>, name: &str) {
    let Some(peer) = peers.get_mut(name) else {
        return;
    };
    if Arc::strong_count(&peer.opening) > 1 {
        peer.link = None;
    } else {
        peers.remove(name);
    }
}
