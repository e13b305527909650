//! [`Profile`]: the failure-detector timings, mapped onto memberlist's [`Options`].
//!
//! How long a crash takes to notice, in SWIM as memberlist implements it, for a cluster under ten
//! nodes:
//!
//! 1. some survivor's probe round reaches the dead node: each node probes one peer per
//!    `probe_interval`, in a shuffled round-robin, so that takes up to about `(n - 1)` intervals
//!    for one prober and usually far less with several;
//! 2. the direct ping times out after `probe_timeout`, indirect pings and a TCP ping run until the
//!    end of that interval, and the node becomes *suspect*;
//! 3. the suspicion timeout is `suspicion_mult * probe_interval` (times `log10(n)` from ten nodes
//!    on). memberlist waits for `suspicion_mult - 2` independent confirmations and, without them,
//!    up to `suspicion_max_timeout_mult` times longer. With `suspicion_mult = 2` no confirmations
//!    are expected, so the timeout is exactly `2 * probe_interval`;
//! 4. the *dead* verdict reaches the other survivors on the next gossip round (`gossip_interval`).
//!
//! A live node wrongly suspected refutes as soon as the suspicion gossip reaches it, well inside
//! the suspicion timeout on any LAN; Lifeguard's awareness also stretches a struggling node's own
//! timeouts (up to `awareness_max_multiplier` times) so a starved process does not accuse others.

use std::time::Duration;

use memberlist::Options;
use memberlist::proto::ChecksumAlgorithm;

/// Failure-detector timings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// Fast detection for loopback, tests and small clusters (up to about ten nodes): a crashed
    /// node is dropped by every survivor of a 3–5 node loopback cluster in 1.2–2.6 s (median
    /// about 1.5 s), a graceful leave in about 50 ms. The crate docs have the measurements.
    ///
    /// Timings: probe every [`LOCAL_PROBE_INTERVAL`], ping timeout [`LOCAL_PROBE_TIMEOUT`],
    /// `suspicion_mult` [`LOCAL_SUSPICION_MULT`] (so a suspect is declared dead after
    /// 3 × the probe interval × `log10(n)` once one other node has suspected it too, and after
    /// six times that without a confirmation), gossip every
    /// [`LOCAL_GOSSIP_INTERVAL`], each broadcast retransmitted 4 times, push/pull every 5 s, TCP
    /// timeout 1 s (so an unreachable seed fails a join within about a second).
    ///
    /// The suspicion timeout scales with the cluster (memberlist multiplies it by `log10(n)`
    /// from ten nodes on), and from three nodes on it waits for one independent confirmation:
    /// one node's missed ack (a starved process on a loaded machine) is not enough to declare a
    /// live node dead. With `suspicion_mult` 2 it needed none, and the 200-node scale harness saw
    /// live nodes declared dead under load.
    Local,
    /// memberlist's LAN defaults: probe every 500 ms, ping timeout 1 s, `suspicion_mult` 4,
    /// gossip every 200 ms, TCP timeout 10 s. A crash is noticed in a few seconds (about 3 s at
    /// 10 nodes, 5 s at 100); it scales to hundreds of nodes.
    #[default]
    Lan,
}

/// [`Profile::Local`]: how often each node probes one peer.
///
/// 300 ms, down from 400 ms on 2026-12-04: the suspicion timeout is a multiple of it, and it
/// grows with `log10(n)`, so at 200 nodes a kill -9 of 20 was declared dead by every survivor
/// 4.0 s after it (the nodes' logs) instead of 4.8–6.6 s, with no live node declared dead, for
/// no measurable rise in an idle node's CPU (0.18 % of a core in both runs).
pub const LOCAL_PROBE_INTERVAL: Duration = Duration::from_millis(300);
/// [`Profile::Local`]: how long a direct UDP ping waits for its ack before indirect probes start.
pub const LOCAL_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// [`Profile::Local`]: the suspicion timeout is this many probe intervals (below ten nodes), and
/// memberlist expects `LOCAL_SUSPICION_MULT - 2` = 1 confirmation from another node before it.
pub const LOCAL_SUSPICION_MULT: usize = 3;
/// [`Profile::Local`]: how many peers are asked to ping a node that missed a direct ping, before
/// it is suspected. `Options::local()` asks one; a node that is itself starved on a loaded
/// machine then makes its target look dead. memberlist's LAN default is 3.
const LOCAL_INDIRECT_CHECKS: usize = 3;
/// [`Profile::Local`]: how often queued broadcasts (suspect, dead, alive) are gossiped.
pub const LOCAL_GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

/// [`Profile::Local`]: each broadcast is sent in this many gossip packets (below nine nodes).
/// `Options::local()` uses 2, which lets a join or a refutation miss a node about 3% of the
/// time in a 4-node cluster (it then waits for push/pull); 4 reaches every node of a small
/// cluster directly.
const LOCAL_RETRANSMIT_MULT: usize = 4;
/// [`Profile::Local`]: full state sync with one random peer, the anti-entropy backstop.
const LOCAL_PUSH_PULL_INTERVAL: Duration = Duration::from_secs(5);

/// [`Profile::Local`]: how long after a node was declared dead its name may move to a new
/// address. memberlist's default (zero) never allows it until the dead entry is reaped (15 s
/// here), so a node restarted under the same name on a new port was rejected as a name conflict.
const LOCAL_DEAD_NODE_RECLAIM: Duration = Duration::from_millis(500);
/// [`Profile::Lan`]: as [`LOCAL_DEAD_NODE_RECLAIM`] (the dead entry is reaped after 30 s).
const LAN_DEAD_NODE_RECLAIM: Duration = Duration::from_secs(10);

impl Profile {
    /// How long after a node was declared dead its name may be re-advertised from a new address.
    pub(crate) fn dead_node_reclaim(self) -> Duration {
        match self {
            Profile::Local => LOCAL_DEAD_NODE_RECLAIM,
            Profile::Lan => LAN_DEAD_NODE_RECLAIM,
        }
    }

    /// memberlist options for this profile, without encryption.
    pub(crate) fn options(self) -> Options {
        let options = match self {
            Profile::Local => Options::local()
                .with_probe_interval(LOCAL_PROBE_INTERVAL)
                .with_probe_timeout(LOCAL_PROBE_TIMEOUT)
                .with_suspicion_mult(LOCAL_SUSPICION_MULT)
                .with_indirect_checks(LOCAL_INDIRECT_CHECKS)
                .with_gossip_interval(LOCAL_GOSSIP_INTERVAL)
                .with_retransmit_mult(LOCAL_RETRANSMIT_MULT)
                .with_push_pull_interval(LOCAL_PUSH_PULL_INTERVAL)
                .with_dead_node_reclaim_time(self.dead_node_reclaim()),
            Profile::Lan => Options::lan().with_dead_node_reclaim_time(self.dead_node_reclaim()),
        };
        options.with_checksum_algo(ChecksumAlgorithm::Crc32)
    }
}
