//! The scale harness's failure-detection step: a kill -9 of 10 % of the nodes, then how long
//! until every survivor stops listing them, and whether any live node was dropped on the way.
//!
//! Each survivor is timed twice: by its `ListMembers` replies, polled on their own so that one
//! starved node does not hold back the others' polls (what a user sees), and by its own log
//! ([`crate::bench_scale_logs`]), which times the failure detector itself.

use crate::bench_scale::{RPC_TIMEOUT, dur, secs};
use crate::bench_scale_proc::{Cluster, Rng};
use anyhow::Context;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use steinadler_node::Client;
/// How long the survivors are still watched for false deaths after all noticed the kill.
const SETTLE: Duration = Duration::from_secs(3);

/// Kills 10 % of the nodes (at least one, never n1) with SIGKILL and polls the survivors until
/// none lists them; returns the summary's words on it.
pub(crate) async fn detect(
    cluster: &mut Cluster,
    clients: &mut [Client],
    names: &BTreeSet<String>,
) -> anyhow::Result<String> {
    let n = names.len();
    let k = n.div_ceil(10).clamp(1, n - 1);
    let victims: BTreeSet<usize> = Rng::new().pick(n - 1, k).iter().map(|i| i + 1).collect();
    let dead: BTreeSet<String> = victims.iter().map(|&i| format!("n{}", i + 1)).collect();
    let dead_list = victims
        .iter()
        .map(|i| format!("n{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    println!("  kill -9 of {k} of {n} nodes: {dead_list}");
    let killed = std::time::SystemTime::now();
    for &i in &victims {
        let p = &mut cluster.nodes[i];
        p.child
            .kill()
            .with_context(|| format!("cannot kill {}", p.name))?;
        let _ = p.child.wait();
    }
    let t = Instant::now();
    let live: BTreeSet<String> = names.difference(&dead).cloned().collect();
    let survivors: Vec<usize> = (0..n).filter(|i| !victims.contains(i)).collect();
    // When each survivor's reply first listed none of the dead: an upper bound on when it
    // noticed. Each survivor is polled on its own, so one slow reply (a starved node on a
    // loaded machine) does not hold back the next poll of the others.
    let give_up = Duration::from_secs(60);
    let watch = std::cell::RefCell::new(Watch {
        noticed: vec![None; survivors.len()],
        falsely_dead: BTreeSet::new(),
        silent: BTreeSet::new(),
        all_noticed: None,
    });
    let done = |w: &Watch| match w.all_noticed {
        Some(when) => t.elapsed() > when + SETTLE,
        None => t.elapsed() > give_up,
    };
    let polls = clients
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| !victims.contains(i))
        .enumerate()
        .map(|(s, (i, c))| {
            let (watch, dead, live) = (&watch, &dead, &live);
            async move {
                while !done(&watch.borrow()) {
                    let (view, replied) = member_view(c, t).await;
                    watch.borrow_mut().record(s, i, view, replied, dead, live);
                    tokio::time::sleep(DETECT_POLL).await;
                }
            }
        });
    let progress = async {
        while !done(&watch.borrow()) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let w = watch.borrow();
            if w.all_noticed.is_none() {
                let count = w.noticed.iter().flatten().count();
                println!(
                    "  noticed by {count}/{} survivors ({})",
                    survivors.len(),
                    secs(t.elapsed())
                );
            }
        }
    };
    futures::future::join(futures::future::join_all(polls), progress).await;
    let Watch {
        noticed,
        falsely_dead,
        silent,
        all_noticed,
    } = watch.into_inner();
    if !silent.is_empty() {
        println!("  survivors that failed to answer ListMembers at least once: {silent:?}");
    }
    if !falsely_dead.is_empty() {
        println!("  live nodes that some survivor stopped listing: {falsely_dead:?}");
    }
    let survivor_names: Vec<String> = survivors.iter().map(|i| format!("n{}", i + 1)).collect();
    let logs = cluster.dir.join("logs");
    let declared = crate::bench_scale_logs::declared_dead(&logs, &survivor_names, &dead, killed);
    if !declared.incomplete.is_empty() {
        println!(
            "  survivors whose log does not declare every victim dead: {:?}",
            declared.incomplete
        );
    }
    let logged = declared
        .by_all()
        .map_or_else(|| "not in every survivor's log".to_owned(), dur);
    Ok(match all_noticed {
        Some(d) => format!(
            "kill -9 of {k}/{n} declared dead by all in {logged} (their logs), gone from all \
             ListMembers in {}, {} false deaths",
            dur(d),
            falsely_dead.len()
        ),
        None => format!(
            "kill -9 of {k}/{n} NOT noticed by {} of {} survivors in {}, {} false deaths",
            noticed.iter().filter(|x| x.is_none()).count(),
            survivors.len(),
            secs(give_up),
            falsely_dead.len()
        ),
    })
}

/// What [`detect`] has seen of the survivors so far.
struct Watch {
    /// When each survivor first listed none of the victims, since the kill.
    noticed: Vec<Option<Duration>>,
    /// Live nodes some survivor did not list.
    falsely_dead: BTreeSet<String>,
    /// Survivors that failed to answer a poll.
    silent: BTreeSet<String>,
    /// When the last survivor noticed.
    all_noticed: Option<Duration>,
}

impl Watch {
    /// Records survivor `s` (node index `i`)'s reply, `view`, which arrived at `replied`.
    fn record(
        &mut self,
        s: usize,
        i: usize,
        view: Option<BTreeSet<String>>,
        replied: Duration,
        dead: &BTreeSet<String>,
        live: &BTreeSet<String>,
    ) {
        let Some(view) = view else {
            self.silent.insert(format!("n{}", i + 1));
            return;
        };
        if self.noticed[s].is_none() && view.is_disjoint(dead) {
            self.noticed[s] = Some(replied);
            if self.noticed.iter().all(Option::is_some) {
                self.all_noticed = self.noticed.iter().flatten().max().copied();
            }
        }
        self.falsely_dead.extend(live.difference(&view).cloned());
    }
}

/// How often [`detect`] asks each survivor for its members.
const DETECT_POLL: Duration = Duration::from_millis(250);

/// One client's node's live members by name (`None` if the call failed or timed out), and
/// when, since `t0`, the reply arrived.
pub(crate) async fn member_view(
    c: &mut Client,
    t0: Instant,
) -> (Option<BTreeSet<String>>, Duration) {
    let reply = tokio::time::timeout(RPC_TIMEOUT, c.members()).await;
    let view = match reply {
        Ok(Ok(reply)) => Some(reply.members.into_iter().map(|m| m.name).collect()),
        _ => None,
    };
    (view, t0.elapsed())
}
