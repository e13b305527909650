//! Running children: placement, the reconcile loop, exits and restarts.

use super::{Restart, terminal};
use crate::monitor::ExitReason;
use crate::node::Inner;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steinadler_core::{Pid, Term};
use steinadler_membership::Member;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::child_record::State;
use tokio::sync::mpsc;

/// How often the loop reconciles even when nothing woke it, while there is a child to watch
/// (one not finished in the records, or one running here). Without one it only wakes when
/// records change, so an idle node's supervisor costs nothing.
const TICK: Duration = Duration::from_millis(500);

/// The children running on this node.
#[derive(Debug, Default)]
pub(crate) struct Local {
    inner: Mutex<LocalState>,
    /// Serialises starts: the loop and `start_child` never start one child twice.
    gate: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct LocalState {
    running: HashMap<String, Pid>,
    /// When each child last (re)started, within its window.
    history: HashMap<String, VecDeque<Instant>>,
    exits: Option<mpsc::Sender<(String, Pid, ExitReason)>>,
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no child runs here.
    fn is_empty(&self) -> bool {
        self.lock().running.is_empty()
    }
}

/// The node that should start `record`: rendezvous hashing over the live members that fit.
pub(crate) fn place(record: &pb::ChildRecord, members: &[Member]) -> Option<String> {
    let spec = record.spec.as_ref()?;
    let placement: super::Placement = spec.place.parse().ok()?;
    let key = match &placement {
        super::Placement::Key(key) => key.as_str(),
        _ => record.id.as_str(),
    };
    let fits = members.iter().filter(|m| match &placement {
        super::Placement::Labels(labels) => {
            labels.iter().all(|(k, v)| m.meta.labels.get(k) == Some(v))
        }
        _ => true,
    });
    crate::registry::rendezvous(key, fits.map(|m| m.name.as_str())).map(str::to_owned)
}

fn spec_of(record: &pb::ChildRecord) -> Result<super::ChildSpec, tonic::Status> {
    super::ChildSpec::from_wire(record.spec.as_ref().unwrap_or(&pb::ChildSpec::default()))
}

/// Starts a new child here; a failure to start is final (the record gives up) and returned.
pub(crate) async fn start_new(
    inner: &Arc<Inner>,
    record: pb::ChildRecord,
) -> Result<pb::ChildRecord, tonic::Status> {
    let _gate = inner.supervisor.local.gate.lock().await;
    inner.supervisor.write(record.clone());
    match launch(inner, &record).await {
        Ok(running) => Ok(running),
        Err(e) => {
            give_up(inner, &record, &format!("did not start: {}", e.message()));
            Err(e)
        }
    }
}

/// Spawns the child here, records it running, and registers its name.
async fn launch(
    inner: &Arc<Inner>,
    record: &pb::ChildRecord,
) -> Result<pb::ChildRecord, tonic::Status> {
    let spec = spec_of(record)?;
    let pid = inner.spawn_local(&spec.module, spec.args, None).await?;
    let exits = inner.supervisor.local.lock().exits.clone();
    inner
        .supervisor
        .local
        .lock()
        .running
        .insert(record.id.clone(), pid.clone());
    let running = write(
        inner,
        pb::ChildRecord {
            state: State::Running as i32,
            pid: Term::Pid(pid.clone()).encode().into(),
            ..record.clone()
        },
    );
    // Watch it; the loop handles the exit.
    let (tx, rx) = tokio::sync::oneshot::channel();
    inner.processes.watch(&pid, inner.processes.incarnation, tx);
    let id = record.id.clone();
    let watched = pid.clone();
    tokio::spawn(async move {
        let reason = rx.await.unwrap_or(ExitReason::NoProc);
        if let Some(exits) = exits {
            let _ = exits.send((id, watched, reason)).await;
        }
    });
    if let Some(name) = &spec.name
        && let Err(e) = crate::registry::api::register(inner, name, &pid).await
    {
        // The loop tries again: a dead holder's name frees up once its death is known.
        tracing::warn!(child = %record.id, name, "the child runs but its name is not registered yet: {}", e.message());
    }
    tracing::info!(child = %record.id, pid = %pid, module = %spec.module, "supervised child started");
    Ok(running)
}

/// Writes a record as this node, and wakes the push of this node's changes.
pub(crate) fn write(inner: &Inner, record: pb::ChildRecord) -> pb::ChildRecord {
    let written = inner.supervisor.write(record);
    inner.registry.changed.notify_one();
    written
}

/// Ends a child for good: `state` is done or gave up, for `reason`.
fn finish(inner: &Inner, record: &pb::ChildRecord, state: State, reason: String) {
    write(
        inner,
        pb::ChildRecord {
            state: state as i32,
            pid: Default::default(),
            reason,
            ..record.clone()
        },
    );
}

fn give_up(inner: &Inner, record: &pb::ChildRecord, reason: &str) {
    tracing::error!(child = %record.id, reason, "the supervisor gave up on a child");
    crate::metrics::supervisor_give_up();
    finish(inner, record, State::GaveUp, reason.to_owned());
}

/// Stops the local copy of child `id`, if it runs here.
pub(crate) fn stop_local_child(inner: &Inner, id: &str) {
    let pid = inner.supervisor.local.lock().running.remove(id);
    if let Some(pid) = pid {
        inner.stop_local(&pid);
    }
}

/// Counts a restart; false when the child has restarted too often and must give up.
fn allow_restart(inner: &Inner, id: &str, spec: &super::ChildSpec) -> bool {
    let mut local = inner.supervisor.local.lock();
    let history = local.history.entry(id.to_owned()).or_default();
    let window = Duration::from_secs(u64::from(spec.max_seconds));
    let now = Instant::now();
    while history
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        history.pop_front();
    }
    history.push_back(now);
    history.len() <= spec.max_restarts as usize
}

/// A local child exited: restart it, end it, or give up, as its policy says.
async fn exited(inner: &Arc<Inner>, id: String, pid: Pid, reason: ExitReason) {
    let _gate = inner.supervisor.local.gate.lock().await;
    {
        let mut local = inner.supervisor.local.lock();
        if local.running.get(&id) != Some(&pid) {
            return;
        }
        local.running.remove(&id);
    }
    let Some(record) = inner.supervisor.get(&id) else {
        return;
    };
    if terminal(record.state) {
        return;
    }
    let Ok(spec) = spec_of(&record) else {
        return;
    };
    let normal = matches!(reason, ExitReason::Normal | ExitReason::Shutdown);
    let restart = match spec.restart {
        Restart::Permanent => true,
        Restart::Transient => !normal,
        Restart::Temporary => false,
    };
    if !restart {
        finish(inner, &record, State::Done, format!("exited: {reason}"));
        return;
    }
    tracing::warn!(child = %id, pid = %pid, "supervised child exited ({reason}); restarting");
    restart_here(inner, &record, &spec, &format!("last exit: {reason}")).await;
}

/// Restarts a child on this node, within its restart intensity.
async fn restart_here(
    inner: &Arc<Inner>,
    record: &pb::ChildRecord,
    spec: &super::ChildSpec,
    why: &str,
) {
    let mut record = record.clone();
    loop {
        if !allow_restart(inner, &record.id, spec) {
            let reason = format!(
                "more than {} restarts within {} s ({why})",
                spec.max_restarts, spec.max_seconds
            );
            give_up(inner, &record, &reason);
            return;
        }
        record.restarts += 1;
        crate::metrics::supervisor_restart();
        match launch(inner, &record).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(child = %record.id, "restart failed: {}", e.message()),
        }
    }
}

/// One pass over every record: start what this node must start, stop stray copies, and
/// retry names that are not registered yet.
async fn reconcile(inner: &Arc<Inner>) {
    let members = inner.membership.members().await;
    let live = |node: &str| members.iter().any(|m| m.name == node);
    let me = inner.config.name.as_str();
    // A dead node's children restart only on the side of a partition that sees a majority
    // answer (`Quorum::check`, asked once a pass, and only when there is one to restart).
    let mut majority = None;
    for record in inner.supervisor.all() {
        let mine = inner
            .supervisor
            .local
            .lock()
            .running
            .get(&record.id)
            .cloned();
        if terminal(record.state) {
            if mine.is_some() {
                stop_local_child(inner, &record.id);
            }
            continue;
        }
        match super::running_pid(&record) {
            // Another node runs it: a copy here (two nodes started it at once) goes.
            Some(pid) if pid.node != me && live(&pid.node) => {
                if mine.is_some() {
                    tracing::warn!(child = %record.id, "another node runs this child too; stopping the copy here");
                    stop_local_child(inner, &record.id);
                }
            }
            Some(pid) if pid.node == me => {
                if mine.as_ref() == Some(&pid)
                    && inner.config.rebalance_children
                    && place(&record, &members).is_some_and(|p| p != me)
                {
                    // Rebalancing: hand it over to the node placement picks now; that node
                    // starts it when it sees the record pending.
                    hand_over(inner, &record.id).await;
                } else if mine.as_ref() == Some(&pid) {
                    // It runs here: make sure its name is registered.
                    if let Ok(spec) = spec_of(&record)
                        && let Some(name) = spec.name
                        && inner.registry.resolve(&name).is_none_or(|e| e.pid != pid)
                    {
                        let _ = crate::registry::api::register(inner, &name, &pid).await;
                    }
                } else if mine.is_none() {
                    // A record from before this node restarted: the child is gone.
                    start_here(inner, &record.id, "its node restarted").await;
                }
            }
            // Pending, or its node is dead.
            orphaned => {
                if mine.is_some() || place(&record, &members).as_deref() != Some(me) {
                    continue;
                }
                let declined = orphaned.is_some()
                    && !match majority {
                        Some(m) => m,
                        None => *majority.insert(inner.quorum.check(&inner.membership).await),
                    };
                if declined {
                    if inner.quorum.decline(&record.id) {
                        tracing::warn!(
                            child = %record.id,
                            live = members.len(),
                            known = inner.quorum.known(),
                            "not restarting a child whose node this node declared dead: it sees \
                             no majority of the cluster (a partition's smaller side waits for heal)"
                        );
                    }
                    continue;
                }
                if let Some(dead) = &orphaned {
                    // Its name, registered again, must outrank the dead side's (registry docs).
                    inner.registry.take_over(&dead.node);
                }
                start_here(inner, &record.id, "its node died").await;
            }
        }
    }
}

/// Stops the local copy of child `id` and marks it pending, for the node placement picks.
async fn hand_over(inner: &Arc<Inner>, id: &str) {
    let _gate = inner.supervisor.local.gate.lock().await;
    let Some(record) = inner.supervisor.get(id) else {
        return;
    };
    if terminal(record.state) {
        return;
    }
    stop_local_child(inner, id);
    write(
        inner,
        pb::ChildRecord {
            state: State::Pending as i32,
            pid: Default::default(),
            ..record
        },
    );
    tracing::info!(child = %id, "handing a supervised child over to the node its placement picks");
}

/// Starts (or restarts) child `id` on this node, unless a start or stop won the race.
async fn start_here(inner: &Arc<Inner>, id: &str, why: &str) {
    let _gate = inner.supervisor.local.gate.lock().await;
    let Some(record) = inner.supervisor.get(id) else {
        return;
    };
    if terminal(record.state) || inner.supervisor.local.lock().running.contains_key(id) {
        return;
    }
    let Ok(spec) = spec_of(&record) else {
        return;
    };
    let was_running = State::try_from(record.state) == Ok(State::Running);
    if was_running && spec.restart == Restart::Temporary {
        finish(inner, &record, State::Done, format!("not restarted: {why}"));
        return;
    }
    tracing::warn!(child = %id, "starting a supervised child: {why}");
    if was_running {
        restart_here(inner, &record, &spec, why).await;
    } else if let Err(e) = launch(inner, &record).await {
        give_up(inner, &record, &format!("did not start: {}", e.message()));
    }
}

/// The supervisor's background task.
pub(crate) async fn run(inner: Arc<Inner>) {
    let (tx, mut exits) = mpsc::channel(1024);
    inner.supervisor.local.lock().exits = Some(tx);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = inner.stopping.clone();
    loop {
        let watching = inner.supervisor.has_unfinished() || !inner.supervisor.local.is_empty();
        tokio::select! {
            Some((id, pid, reason)) = exits.recv() => exited(&inner, id, pid, reason).await,
            () = inner.supervisor.wake.notified() => reconcile(&inner).await,
            _ = tick.tick(), if watching => reconcile(&inner).await,
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}
