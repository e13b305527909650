//! Gossip encryption keys on real memberlist nodes over loopback: a full rotation (install, use,
//! remove) on a live 3-node cluster without losing anyone, secondary keys from the configuration,
//! keys that must not get in, and the key API's typed errors. Its own test binary, so the
//! timing-sensitive rotation never shares the CPU with the functional tests.
//!
//! `--nocapture` shows the timings the rotation test observes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{converge, expected, meta, names, stop, wait_for};
use steinadler_membership::{MemberEvent, Membership, MembershipConfig, MembershipError};
use tokio::sync::broadcast;

const OLD: [u8; 32] = [0x11; 32];
const NEW: [u8; 32] = [0x22; 32];
const WRONG: [u8; 32] = [0x33; 32];

const AGREE: Duration = Duration::from_secs(5);
/// How long the cluster is watched after each step for a lost member.
const HOLD: Duration = Duration::from_secs(3);

/// A loopback config for `name` with the given primary and secondary gossip keys.
fn keyed(
    name: &str,
    grpc_port: u16,
    seeds: &[std::net::SocketAddr],
    primary: [u8; 32],
    extra: &[[u8; 32]],
) -> MembershipConfig {
    let mut config = common::config(name, seeds);
    config.meta = meta(name, grpc_port);
    config.gossip_key = Some(primary);
    config.extra_gossip_keys = extra.to_vec();
    config
}

/// Starts `n` nodes `{prefix}-0..` with only `key`, all joined through the first, and waits until
/// they agree.
async fn keyed_cluster(prefix: &str, n: usize, key: [u8; 32]) -> Vec<Membership> {
    let first = Membership::start(keyed(&format!("{prefix}-0"), 50_000, &[], key, &[]))
        .await
        .expect("start the first node");
    assert!(first.encryption_enabled());
    let seed = first.gossip_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        let name = format!("{prefix}-{i}");
        let node = Membership::start(keyed(&name, 50_000 + i as u16, &[seed], key, &[]))
            .await
            .expect("start a node");
        nodes.push(node);
    }
    converge(&nodes, &expected(&nodes), AGREE).await;
    nodes
}

/// Watches a cluster in the background: every 20 ms each node must list exactly `want`, and no
/// node may receive a `Left` event (nor a `Joined` one: nobody new is let in).
struct Watch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Watch {
    fn start(nodes: &[Membership]) -> Self {
        let nodes: Vec<Membership> = nodes.to_vec();
        let mut events: Vec<broadcast::Receiver<MemberEvent>> =
            nodes.iter().map(Membership::subscribe).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut want: Vec<String> = nodes.iter().map(|n| n.local_name().to_owned()).collect();
            want.sort();
            let start = Instant::now();
            let mut polls = 0;
            let mut problems = Vec::new();
            loop {
                let last = stopped.load(Ordering::Acquire);
                polls += 1;
                for (node, events) in nodes.iter().zip(&mut events) {
                    let seen = names(node).await;
                    if seen != want {
                        problems.push(format!(
                            "{:?}: {} sees {seen:?}",
                            start.elapsed(),
                            node.local_name()
                        ));
                    }
                    while let Ok(event) = events.try_recv() {
                        match event {
                            MemberEvent::Left { .. } | MemberEvent::Joined(_) => {
                                problems.push(format!(
                                    "{:?}: {} got {event:?}",
                                    start.elapsed(),
                                    node.local_name()
                                ))
                            }
                            MemberEvent::Updated(_) => {}
                        }
                    }
                }
                if last {
                    return (polls, problems);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Watch { stop, task }
    }

    /// Stops watching; panics with every problem seen.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Release);
        let (polls, problems) = self.task.await.expect("watch task");
        assert!(
            problems.is_empty(),
            "the cluster lost or gained a member:\n{}",
            problems.join("\n")
        );
        polls
    }
}

/// Has every node advertise `load = step` and waits until every node sees every other's new load,
/// which proves traffic still decrypts everywhere. Returns how long the (sequential) updates took
/// and how long after them every node had every new load.
async fn gossip_round(nodes: &[Membership], step: u32) -> (Duration, Duration) {
    let start = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        let mut updated = meta(node.local_name(), 50_000 + i as u16);
        updated.load = step;
        node.update_meta(updated).await.expect("update metadata");
    }
    let updates = start.elapsed();
    let spread = wait_for(AGREE, || async {
        for node in nodes {
            let members = node.members().await;
            if members.len() != nodes.len() || members.iter().any(|m| m.meta.load != step) {
                return false;
            }
        }
        true
    })
    .await;
    let spread = spread.unwrap_or_else(|| {
        panic!("metadata of step {step} did not reach every node within {AGREE:?}")
    });
    (updates, spread)
}

/// Runs `step` (a keyring change), then checks gossip still flows and holds for [`HOLD`].
async fn step_and_hold(nodes: &[Membership], step: u32, what: &str, change: impl FnOnce()) {
    change();
    let (updates, spread) = gossip_round(nodes, step).await;
    eprintln!(
        "step {step} ({what}): 3 metadata updates returned in {updates:?}, \
         every node had all of them {spread:?} later"
    );
    tokio::time::sleep(HOLD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_every_member_and_locks_out_the_old_key() {
    let nodes = keyed_cluster("rot", 3, OLD).await;
    for node in &nodes {
        assert_eq!(node.gossip_keys(), [OLD]);
    }
    let watch = Watch::start(&nodes);
    let started = Instant::now();

    step_and_hold(&nodes, 1, "install the new key on all", || {
        for node in &nodes {
            node.install_gossip_key(NEW).expect("install");
        }
    })
    .await;
    for node in &nodes {
        assert_eq!(node.gossip_keys(), [OLD, NEW]);
    }
    for (i, node) in nodes.iter().enumerate() {
        let what = format!("use the new key on {}", node.local_name());
        step_and_hold(&nodes, 2 + i as u32, &what, || {
            node.use_gossip_key(NEW).expect("use");
        })
        .await;
        assert_eq!(node.gossip_keys(), [NEW, OLD]);
    }
    step_and_hold(&nodes, 5, "remove the old key on all", || {
        for node in &nodes {
            node.remove_gossip_key(OLD).expect("remove");
        }
    })
    .await;
    for node in &nodes {
        assert_eq!(node.gossip_keys(), [NEW]);
    }
    let polls = watch.finish().await;
    eprintln!(
        "rotation: {:?} from first install to the end of the last hold, {polls} checks of all 3 \
         nodes, no member lost",
        started.elapsed()
    );

    // A node with only the old key is turned away, and nobody notices it.
    let watch = Watch::start(&nodes);
    let tried = Instant::now();
    let err = Membership::start(keyed(
        "old-key",
        50_009,
        &[nodes[0].gossip_addr()],
        OLD,
        &[],
    ))
    .await
    .unwrap_err();
    eprintln!("old-key node rejected in {:?}: {err}", tried.elapsed());
    assert!(matches!(err, MembershipError::JoinFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("gossip key"), "{err}");
    tokio::time::sleep(HOLD).await;
    watch.finish().await;

    // A node with only the new key joins.
    let joined = Instant::now();
    let newcomer = Membership::start(keyed("rot-3", 50_003, &[nodes[1].gossip_addr()], NEW, &[]))
        .await
        .expect("a node with the new key joins");
    let mut all = nodes.clone();
    all.push(newcomer);
    let mut want = expected(&all);
    for member in &mut want[..3] {
        member.meta.load = 5;
    }
    converge(&all, &want, AGREE).await;
    eprintln!(
        "new-key node joined and all 4 agreed in {:?}",
        joined.elapsed()
    );
    stop(&all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_cannot_join_and_the_cluster_is_unchanged() {
    let nodes = keyed_cluster("wk", 3, OLD).await;
    let watch = Watch::start(&nodes);

    let tried = Instant::now();
    let err = Membership::start(keyed(
        "wrong",
        50_009,
        &[nodes[0].gossip_addr()],
        WRONG,
        &[],
    ))
    .await
    .unwrap_err();
    eprintln!("wrong-key node rejected in {:?}: {err}", tried.elapsed());
    match &err {
        MembershipError::JoinFailed { seeds, .. } => assert_eq!(seeds, &[nodes[0].gossip_addr()]),
        other => panic!("expected JoinFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("share the gossip key"), "{err}");

    // A plaintext node is turned away too.
    let err = Membership::start(common::config("plain", &[nodes[1].gossip_addr()]))
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::JoinFailed { .. }), "{err:?}");

    tokio::time::sleep(HOLD).await;
    watch.finish().await;
    converge(&nodes, &expected(&nodes), AGREE).await;
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_keys_from_the_config_are_accepted() {
    // Mid-rotation: one node sends with the old key, the other with the new, each reads both.
    let a = Membership::start(keyed("two-a", 50_000, &[], OLD, &[NEW]))
        .await
        .unwrap();
    let b = Membership::start(keyed("two-b", 50_001, &[a.gossip_addr()], NEW, &[OLD]))
        .await
        .unwrap();
    assert_eq!(a.gossip_keys(), [OLD, NEW]);
    assert_eq!(b.gossip_keys(), [NEW, OLD]);
    let nodes = [a, b];
    converge(&nodes, &expected(&nodes), AGREE).await;
    stop(&nodes).await;

    // Duplicates and a copy of the primary are ignored.
    let c = Membership::start(keyed("dup", 50_000, &[], OLD, &[OLD, NEW, NEW]))
        .await
        .unwrap();
    assert_eq!(c.gossip_keys(), [OLD, NEW]);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_keys_without_a_primary_are_rejected() {
    let mut config = common::config("no-primary", &[]);
    config.extra_gossip_keys = vec![NEW];
    let err = Membership::start(config).await.unwrap_err();
    assert!(matches!(err, MembershipError::InvalidConfig(_)), "{err:?}");
    assert!(err.to_string().contains("gossip_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_report_typed_errors() {
    let plain = Membership::start(common::config("plain", &[]))
        .await
        .unwrap();
    assert!(plain.gossip_keys().is_empty());
    for result in [
        plain.install_gossip_key(NEW),
        plain.use_gossip_key(NEW),
        plain.remove_gossip_key(NEW),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, MembershipError::GossipEncryptionOff),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("gossip encryption is off"),
            "{err}"
        );
    }
    plain.shutdown().await.unwrap();

    let node = Membership::start(keyed("keys", 50_000, &[], OLD, &[]))
        .await
        .unwrap();
    assert_eq!(node.gossip_keys(), [OLD]);

    let err = node.use_gossip_key(NEW).unwrap_err();
    assert!(
        matches!(err, MembershipError::GossipKeyNotInstalled),
        "{err:?}"
    );
    assert!(err.to_string().contains("not installed"), "{err}");
    let err = node.remove_gossip_key(NEW).unwrap_err();
    assert!(
        matches!(err, MembershipError::GossipKeyNotInstalled),
        "{err:?}"
    );
    let err = node.remove_gossip_key(OLD).unwrap_err();
    assert!(
        matches!(err, MembershipError::RemovePrimaryGossipKey),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("cannot remove the primary gossip key; use another key first"),
        "{err}"
    );
    assert_eq!(node.gossip_keys(), [OLD]);

    // Installing is idempotent, also for the primary key.
    node.install_gossip_key(NEW).unwrap();
    node.install_gossip_key(NEW).unwrap();
    node.install_gossip_key(OLD).unwrap();
    assert_eq!(node.gossip_keys(), [OLD, NEW]);
    // Using the primary is a no-op; using the other swaps them.
    node.use_gossip_key(OLD).unwrap();
    assert_eq!(node.gossip_keys(), [OLD, NEW]);
    node.use_gossip_key(NEW).unwrap();
    assert_eq!(node.gossip_keys(), [NEW, OLD]);
    let err = node.remove_gossip_key(NEW).unwrap_err();
    assert!(
        matches!(err, MembershipError::RemovePrimaryGossipKey),
        "{err:?}"
    );
    node.remove_gossip_key(OLD).unwrap();
    assert_eq!(node.gossip_keys(), [NEW]);

    node.shutdown().await.unwrap();
    assert!(matches!(
        node.install_gossip_key(OLD),
        Err(MembershipError::NotRunning)
    ));
    assert_eq!(node.gossip_keys(), [NEW]);
}
