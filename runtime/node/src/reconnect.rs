//! Reconnecting to members declared failed, so that the two sides of a healed partition merge
//! again (as serf's reconnect does). SWIM stops probing a node once it is declared dead; without
//! this, each side would go on believing the other dead after the network came back.
//!
//! Every [`INTERVAL`] the node tries to join up to [`PER_ROUND`] random members that failed
//! (not those that left gracefully) in the last [`GIVE_UP_AFTER`]. A join to a node that is
//! really gone fails fast and costs one connection attempt. With no failed member to retry, the
//! task sleeps until a membership event arrives: an idle healthy node does not wake for it.

use crate::node::Inner;
use rand::seq::IteratorRandom;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_membership::MemberEvent;

/// How often a reconnect round runs.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// How many failed members one round tries.
const PER_ROUND: usize = 3;
/// How long a failed member is retried.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut events = inner.membership.subscribe();
    let mut failed: HashMap<String, (SocketAddr, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = inner.stopping.clone();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(MemberEvent::Left { name, gossip_addr, failed: true }) => {
                    if failed.is_empty() {
                        // The first retry waits a whole interval, as before the quiet spell.
                        tick.reset();
                    }
                    failed.insert(name, (gossip_addr, Instant::now()));
                }
                Ok(MemberEvent::Left { name, .. }) => {
                    failed.remove(&name);
                }
                Ok(MemberEvent::Joined(m)) => {
                    failed.remove(&m.name);
                }
                _ => {}
            },
            _ = tick.tick(), if !failed.is_empty() => {
                failed.retain(|_, (_, since)| since.elapsed() < GIVE_UP_AFTER);
                let picked: Vec<(String, SocketAddr)> = failed
                    .iter()
                    .map(|(name, (addr, _))| (name.clone(), *addr))
                    .choose_multiple(&mut rand::rng(), PER_ROUND);
                for (name, addr) in picked {
                    match tokio::time::timeout(INTERVAL, inner.membership.rejoin(addr)).await {
                        Ok(Ok(())) => {
                            tracing::info!(node = %name, %addr, "reconnected to a member declared failed");
                        }
                        _ => tracing::trace!(node = %name, %addr, "reconnect attempt failed"),
                    }
                }
            }
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}
