//! The distributed DynamicSupervisor: children that survive the loss of their node.
//!
//! # Model
//!
//! Every child is a *record*, replicated on every node with the registry's anti-entropy
//! ([`crate::registry::sync`]): its spec, its state (pending, running with a PID, or one of the
//! terminal states stopped, done and gave up), its restart count, and a Lamport clock with the
//! writer's name. Merging keeps the larger `(terminal, clock, writer)`, so a stop always beats a
//! restart that had not heard of it, and all nodes converge on one record per child.
//!
//! - **Who runs a child.** A running child stays where it runs (no rebalancing when nodes
//!   join). A child that must start (new, or its node died) is started by the node that
//!   rendezvous hashing picks among the live members that fit its placement: any node (hash of
//!   the child id), nodes with labels, or the hash of a key (children with one key share a
//!   node). Every node computes the same choice from the same membership, so there is no
//!   single supervisor node to lose.
//! - **Restarts** ([`run`]): the running node monitors its child and restarts it by policy
//!   (permanent always, transient after a crash, temporary never). More than `max_restarts`
//!   within `max_seconds` gives up: the record turns `GAVE_UP` with the reason, for every node.
//! - **Node death.** When membership declares a node dead, each survivor reconciles at once:
//!   the children that ran there start on the node that placement picks, and re-register their
//!   global names.
//!   Only while the survivor sees a majority of the members it knows ([`crate::quorum`]): the
//!   smaller side of a partition restarts nothing, so after heal the majority's copy is the
//!   only restarted one.
//! - **Duplicates.** If two nodes started the same child (their views of the membership
//!   differed for a moment), the record keeps one PID and the other node stops its copy.

pub(crate) mod api;
pub(crate) mod run;

pub use api::{Child, ChildSpec, ChildState, Placement, Restart};

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::child_record::State;
use tokio::sync::Notify;

/// How long a record this node wrote counts as recent, and is pushed with its own changes.
const RECENT: Duration = Duration::from_secs(3);

fn terminal(state: i32) -> bool {
    matches!(
        State::try_from(state),
        Ok(State::Stopped | State::Done | State::GaveUp)
    )
}

/// The PID a record says its child runs as.
pub(crate) fn running_pid(record: &pb::ChildRecord) -> Option<steinadler_core::Pid> {
    (State::try_from(record.state) == Ok(State::Running))
        .then(|| crate::messaging::decode_pid(&record.pid).ok())
        .flatten()
}

fn rank(r: &pb::ChildRecord) -> (bool, u64, &str) {
    (terminal(r.state), r.clock, &r.writer)
}

/// The replicated child records and this node's Lamport clock.
#[derive(Debug)]
pub(crate) struct Supervisor {
    node: String,
    records: Mutex<BTreeMap<String, pb::ChildRecord>>,
    clock: AtomicU64,
    /// Records this node wrote lately.
    written: Mutex<HashMap<String, Instant>>,
    /// Wakes the reconcile loop: records or membership changed.
    pub(crate) wake: Notify,
    /// The children running here, and their restart history.
    pub(crate) local: run::Local,
}

impl Supervisor {
    pub(crate) fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            records: Mutex::new(BTreeMap::new()),
            clock: AtomicU64::new(0),
            written: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            local: run::Local::default(),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, pb::ChildRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One record.
    pub(crate) fn get(&self, id: &str) -> Option<pb::ChildRecord> {
        self.records().get(id).cloned()
    }

    /// Whether some child is not finished: only then has the reconcile loop a reason to tick.
    pub(crate) fn has_unfinished(&self) -> bool {
        self.records().values().any(|r| !terminal(r.state))
    }

    /// Every record, by id.
    pub(crate) fn all(&self) -> Vec<pb::ChildRecord> {
        self.records().values().cloned().collect()
    }

    /// Writes a record as this node: a new clock tick, this node as the writer.
    pub(crate) fn write(&self, mut record: pb::ChildRecord) -> pb::ChildRecord {
        record.clock = self.clock.fetch_add(1, Ordering::AcqRel) + 1;
        record.writer = self.node.clone();
        self.records().insert(record.id.clone(), record.clone());
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.id.clone(), Instant::now());
        self.wake.notify_one();
        record
    }

    /// Merges records heard from others; whether anything changed.
    pub(crate) fn merge(&self, incoming: Vec<pb::ChildRecord>) -> bool {
        let mut records = self.records();
        let mut changed = false;
        for theirs in incoming {
            self.clock.fetch_max(theirs.clock, Ordering::AcqRel);
            let newer = records
                .get(&theirs.id)
                .is_none_or(|ours| rank(ours) < rank(&theirs));
            if newer {
                records.insert(theirs.id.clone(), theirs);
                changed = true;
            }
        }
        changed
    }

    pub(crate) fn digest(&self) -> Vec<pb::ChildDigest> {
        self.records()
            .values()
            .map(|r| pb::ChildDigest {
                id: r.id.clone(),
                terminal: terminal(r.state),
                clock: r.clock,
                writer: r.writer.clone(),
            })
            .collect()
    }

    /// The records newer here than in `theirs`, and the ids newer there.
    pub(crate) fn compare(
        &self,
        theirs: &[pb::ChildDigest],
    ) -> (Vec<pb::ChildRecord>, Vec<String>) {
        let records = self.records();
        let known: HashMap<&str, (bool, u64, &str)> = theirs
            .iter()
            .map(|d| (d.id.as_str(), (d.terminal, d.clock, d.writer.as_str())))
            .collect();
        let newer_here = records
            .values()
            .filter(|r| known.get(r.id.as_str()).is_none_or(|k| *k < rank(r)))
            .cloned()
            .collect();
        let newer_there = theirs
            .iter()
            .filter(|d| {
                records
                    .get(&d.id)
                    .is_none_or(|r| rank(r) < (d.terminal, d.clock, d.writer.as_str()))
            })
            .map(|d| d.id.clone())
            .collect();
        (newer_here, newer_there)
    }

    /// The records with these ids.
    pub(crate) fn records_of(&self, ids: &[String]) -> Vec<pb::ChildRecord> {
        let records = self.records();
        ids.iter()
            .filter_map(|id| records.get(id).cloned())
            .collect()
    }

    /// The records this node wrote in the last few seconds.
    pub(crate) fn recent(&self) -> Vec<pb::ChildRecord> {
        let ids: Vec<String> = {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.retain(|_, at| at.elapsed() < RECENT);
            written.keys().cloned().collect()
        };
        self.records_of(&ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, state: State, clock: u64, writer: &str) -> pb::ChildRecord {
        pb::ChildRecord {
            id: id.into(),
            state: state as i32,
            clock,
            writer: writer.into(),
            ..pb::ChildRecord::default()
        }
    }

    #[test]
    fn a_stop_beats_a_restart_that_had_not_heard_of_it() {
        let s = Supervisor::new("a");
        s.merge(vec![record("c", State::Stopped, 3, "x")]);
        // A runner that missed the stop writes "running" with a later clock: the stop stays.
        assert!(!s.merge(vec![record("c", State::Running, 9, "y")]));
        assert_eq!(s.get("c").unwrap().state, State::Stopped as i32);
    }

    #[test]
    fn records_converge_in_any_order_and_the_clock_follows() {
        let updates = [
            record("c", State::Pending, 1, "a"),
            record("c", State::Running, 2, "b"),
            record("c", State::Running, 2, "c"),
            record("d", State::GaveUp, 1, "b"),
        ];
        let forward = Supervisor::new("z");
        let backward = Supervisor::new("z");
        forward.merge(updates.to_vec());
        backward.merge(updates.iter().rev().cloned().collect());
        assert_eq!(forward.all(), backward.all());
        assert_eq!(forward.get("c").unwrap().writer, "c");
        // A local write after merging ticks past every clock seen.
        let written = forward.write(record("c", State::Running, 0, ""));
        assert_eq!((written.clock, written.writer.as_str()), (3, "z"));
        // The digests agree, so a sync would move nothing.
        let (newer, wanted) = forward.compare(&backward.digest());
        assert_eq!(newer.len(), 1);
        assert!(wanted.is_empty());
    }
}
