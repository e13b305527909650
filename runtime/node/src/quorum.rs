//! The majority rule for taking over a dead node's work (issue 23 §2): a node restarts the
//! children of a node it declared dead only while it sees a majority of the members it knows.
//!
//! *Known* members are every member this node has seen join, itself included, less those that
//! left gracefully. A member declared dead, by a crash or by a partition, stays known: from
//! inside a partition the two cannot be told apart. So when a partition splits the cluster,
//! only the side with more than half of the known members restarts what ran on the other side,
//! and the smaller side keeps its hands off; after heal the majority's copies are the only
//! restarted ones, and its records win (see [`crate::supervisor`]).
//!
//! *Seen* members are those that answer a ping when the check is made ([`Quorum::check`]:
//! up to [`PING_SAMPLE`] of the members alive and not suspect, the rest counted by the share
//! that answered). Membership alone is not enough: on the smaller side of a fresh partition
//! the members across it are declared dead one at a time, seconds apart (a node whose probes
//! fail slows its probing), and counting those not declared dead yet handed that side a
//! majority between the first death and the last (seen in the fault suite).
//!
//! The trade-off: a cluster that lost half or more of its members to crashes restarts nothing
//! until enough of them come back, as a Raft or Consul cluster without quorum does. A member
//! that leaves gracefully (shutdown, SIGTERM) is forgotten at once and costs no quorum.
//!
//! The same events say which members are departed (declared dead, or gone) until they join
//! again, which listings of supervised children report ([`Quorum::is_departed`]).
//!
//! The registry's anti-entropy loop feeds membership events in ([`Quorum::joined`],
//! [`Quorum::left`]) before it wakes the supervisor, which asks [`Quorum::has_majority`].

use std::collections::BTreeSet;
use std::sync::Mutex;
use steinadler_membership::{Membership, Reachable};

/// How many of the alive members a majority check pings.
pub(crate) const PING_SAMPLE: usize = 16;

/// The members this node knows, for the majority rule.
#[derive(Debug)]
pub(crate) struct Quorum {
    known: Mutex<BTreeSet<String>>,
    /// Members declared dead or gone, until they join again: what listings say of the
    /// children they ran.
    departed: Mutex<BTreeSet<String>>,
    /// Children whose restart this node declined for want of a majority, logged once each.
    declined: Mutex<BTreeSet<String>>,
}

impl Quorum {
    /// A node that knows only itself.
    pub(crate) fn new(me: &str) -> Self {
        Self {
            known: Mutex::new(BTreeSet::from([me.to_owned()])),
            departed: Mutex::new(BTreeSet::new()),
            declined: Mutex::new(BTreeSet::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A member joined, or came back.
    pub(crate) fn joined(&self, name: &str) {
        self.lock().insert(name.to_owned());
        self.departed().remove(name);
    }

    /// Members seen live in a membership listing become known, if a join event was missed
    /// (one that came before this node's loops subscribed, say).
    pub(crate) fn learn<'a>(&self, live: impl IntoIterator<Item = &'a String>) {
        let mut known = self.lock();
        for n in live {
            if !known.contains(n) {
                known.insert(n.clone());
            }
        }
    }

    fn departed(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.departed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `name` was declared dead or left, and has not joined again since.
    pub(crate) fn is_departed(&self, name: &str) -> bool {
        self.departed().contains(name)
    }

    /// A member left gracefully (`failed` false: it is forgotten) or was declared dead
    /// (`failed` true: it stays known).
    pub(crate) fn left(&self, name: &str, failed: bool) {
        if !failed {
            self.lock().remove(name);
        }
        self.departed().insert(name.to_owned());
    }

    /// Whether this node has a majority now: the members that answer a ping (of
    /// [`PING_SAMPLE`] picked among those alive and not suspect, and this node) are more than
    /// half of the known members, by [`Quorum::has_majority_of`]. It takes up to a probe
    /// timeout; ask it when about to take over a dead node's work, not on every pass.
    pub(crate) async fn check(&self, membership: &Membership) -> bool {
        let reached = membership.reachable(PING_SAMPLE).await;
        let majority = self.has_majority_of(&reached);
        if !majority {
            tracing::debug!(
                alive = reached.alive.len(),
                asked = reached.asked,
                answered = reached.answered,
                known = self.known(),
                "no majority answers"
            );
        }
        majority
    }

    /// Whether the members that answered are more than half of the known members. The alive
    /// members become known, if a join event was missed.
    pub(crate) fn has_majority_of(&self, reached: &Reachable) -> bool {
        let mut known = self.lock();
        for n in &reached.alive {
            known.insert(n.clone());
        }
        let majority = reached.answering() * 2 > known.len();
        drop(known);
        if majority {
            self.declined
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        majority
    }

    /// Whether `live` (the members this node sees alive, itself included) are more than half
    /// of the known members. The live members become known, if a join event was missed.
    #[cfg(test)]
    pub(crate) fn has_majority<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> bool {
        self.has_majority_of(&Reachable {
            alive: live.into_iter().map(str::to_owned).collect(),
            asked: 0,
            answered: 0,
        })
    }

    /// Records that the restart of child `id` was declined; true the first time since this
    /// node last had a majority, so that it is logged once.
    pub(crate) fn decline(&self, id: &str) -> bool {
        self.declined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned())
    }

    /// How many members this node knows.
    pub(crate) fn known(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quorum(names: &[&str]) -> Quorum {
        let q = Quorum::new(names[0]);
        for n in &names[1..] {
            q.joined(n);
        }
        q
    }

    #[test]
    fn the_larger_side_of_a_partition_has_the_majority_and_the_smaller_does_not() {
        let q = quorum(&["n1", "n2", "n3"]);
        assert!(q.has_majority(["n1", "n2"]));
        assert!(!q.has_majority(["n3"]));
        let five = quorum(&["a", "b", "c", "d", "e"]);
        assert!(five.has_majority(["a", "b", "c"]));
        assert!(!five.has_majority(["d", "e"]));
        // Half is not a majority: with four, a 2/2 split restarts nothing on either side.
        let four = quorum(&["a", "b", "c", "d"]);
        assert!(!four.has_majority(["a", "b"]));
        assert!(!four.has_majority(["c", "d"]));
    }

    #[test]
    fn the_members_that_answer_a_ping_count_not_those_merely_not_declared_dead() {
        let q = quorum(&["n1", "n2", "n3"]);
        let reached = |alive: &[&str], asked, answered| Reachable {
            alive: alive.iter().map(|n| (*n).to_owned()).collect(),
            asked,
            answered,
        };
        // n3 cut off: n1 declared dead, n2 not yet, and n2 does not answer.
        assert!(!q.has_majority_of(&reached(&["n2", "n3"], 1, 0)));
        assert!(q.has_majority_of(&reached(&["n2", "n3"], 1, 1)));
        // Sampled: 10 of 20 asked answer, of 40 alive others, in a cluster of 50 known.
        let mut names: Vec<String> = (0..41).map(|i| format!("m{i}")).collect();
        let big = Quorum::new("m0");
        for i in 1..50 {
            big.joined(&format!("m{i}"));
        }
        names.sort();
        let alive: Vec<&str> = names.iter().map(String::as_str).collect();
        // 1 + 40 * 10 / 20 = 21 of 50: no majority; 1 + 40 * 20 / 20 = 41: a majority.
        assert!(!big.has_majority_of(&reached(&alive, 20, 10)));
        assert!(big.has_majority_of(&reached(&alive, 20, 20)));
    }

    #[test]
    fn a_dead_member_stays_known_and_a_graceful_leave_is_forgotten() {
        let q = quorum(&["n1", "n2", "n3"]);
        q.left("n3", true);
        assert_eq!(q.known(), 3);
        assert!(q.has_majority(["n1", "n2"]));
        q.left("n2", true);
        assert!(!q.has_majority(["n1"]));
        // n2 left for good, gracefully: n1 and n3 are the cluster, and n1 alone is half.
        q.left("n2", false);
        assert_eq!(q.known(), 2);
        assert!(!q.has_majority(["n1"]));
        q.left("n3", false);
        assert!(q.has_majority(["n1"]));
        // Live members it missed the join of become known.
        let q = quorum(&["n1", "n2", "n3"]);
        assert!(q.has_majority(["x", "y", "n1"]));
        assert_eq!(q.known(), 5);
        assert!(!q.has_majority(["n1", "n2"]));
    }

    #[test]
    fn a_member_is_departed_from_its_death_or_leave_until_it_joins_again() {
        let q = quorum(&["n1", "n2", "n3"]);
        assert!(!q.is_departed("n2"));
        q.left("n2", true);
        assert!(q.is_departed("n2"));
        q.joined("n2");
        assert!(!q.is_departed("n2"));
        q.left("n3", false);
        assert!(q.is_departed("n3"));
    }

    #[test]
    fn a_declined_restart_is_logged_once_per_loss_of_the_majority() {
        let q = quorum(&["n1", "n2", "n3"]);
        assert!(!q.has_majority(["n3"]));
        assert!(q.decline("c1"));
        assert!(!q.decline("c1"));
        assert!(q.has_majority(["n1", "n2", "n3"]));
        assert!(q.decline("c1"));
    }
}
