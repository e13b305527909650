//! The registry's merge rules, without a network: convergence in any order, the conflict
//! rule, dead nodes, grants, and rendezvous hashing.

use super::*;

fn pid(node: &str, id: u64) -> Pid {
    Pid {
        node: node.into(),
        incarnation: 1,
        id,
    }
}

fn entry(name: &str, node: &str, id: u64, ms: u64) -> RegistryEntry {
    RegistryEntry {
        name: name.into(),
        pid: pid(node, id),
        registered_ms: ms,
        epoch: 0,
    }
}

fn state(version: u64, entries: &[RegistryEntry]) -> OwnerState {
    OwnerState {
        incarnation: 1,
        version,
        names: entries
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect(),
    }
}

fn live(r: &Registry, nodes: &[&str]) {
    r.set_live(nodes.iter().map(|n| (*n).to_owned()).collect());
}

#[test]
fn replicas_converge_whatever_order_they_hear_things_in() {
    let updates = [
        ("b".to_owned(), state(1, &[entry("x", "b", 1, 10)])),
        ("b".to_owned(), state(2, &[entry("y", "b", 2, 20)])),
        ("c".to_owned(), state(1, &[entry("z", "c", 1, 15)])),
    ];
    let forward = Registry::new("a", 1);
    let backward = Registry::new("a", 1);
    for r in [&forward, &backward] {
        live(r, &["a", "b", "c"]);
    }
    for u in updates.iter().cloned() {
        forward.merge(vec![u]);
    }
    for u in updates.iter().rev().cloned() {
        backward.merge(vec![u]);
    }
    assert_eq!(forward.list(), backward.list());
    // Version 2 of b replaced version 1: x is gone, y is there.
    let names: Vec<String> = forward.list().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["y", "z"]);
}

#[test]
fn the_older_registration_wins_a_conflict_and_the_loser_is_named() {
    let r = Registry::new("a", 1);
    live(&r, &["a", "b"]);
    r.insert_own(entry("leader", "a", 7, 200));
    let lost = r.merge(vec![(
        "b".to_owned(),
        state(1, &[entry("leader", "b", 3, 100)]),
    )]);
    assert_eq!(r.resolve("leader").unwrap().pid, pid("b", 3));
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].loser.pid, pid("a", 7));
    assert_eq!(lost[0].winner, pid("b", 3));
    // Equal times: the PID breaks the tie, the same way on every node.
    let other = Registry::new("c", 1);
    live(&other, &["a", "b", "c"]);
    other.merge(vec![
        ("a".to_owned(), state(1, &[entry("t", "a", 1, 5)])),
        ("b".to_owned(), state(1, &[entry("t", "b", 1, 5)])),
    ]);
    assert_eq!(other.resolve("t").unwrap().pid, pid("a", 1));
}

#[test]
fn a_registration_made_after_a_majority_declared_its_rival_dead_wins_over_an_older_one() {
    // a and b are the majority; c held "job" before a partition, and kept running.
    let a = Registry::new("a", 1);
    live(&a, &["a", "b", "c"]);
    let before = RegistryEntry {
        epoch: a.epoch(),
        ..entry("job", "c", 1, 100)
    };
    a.merge(vec![("c".to_owned(), state(1, &[before]))]);
    // a declares c dead while it sees a majority, and re-registers the name (a supervised
    // child restarted here).
    a.member_down("c");
    assert_eq!(a.take_over("c"), Some(1));
    // The supervisor's restart of c's child, after the membership event: no second step.
    assert_eq!(a.take_over("c"), None);
    a.insert_own(RegistryEntry {
        epoch: a.epoch(),
        ..entry("job", "a", 9, 500)
    });
    // Heal: c's state, with its older registration, arrives. a keeps the name.
    a.member_up("c");
    assert_eq!(a.epoch(), 1);
    let lost = a.merge(vec![(
        "c".to_owned(),
        state(2, &[entry("job", "c", 1, 100)]),
    )]);
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(a.resolve("job").unwrap().pid, pid("a", 9));
    // On c, which never had a majority (its epoch stayed 0), a's state makes c the loser.
    let c = Registry::new("c", 1);
    live(&c, &["a", "b", "c"]);
    c.insert_own(entry("job", "c", 1, 100));
    let lost = c.merge(vec![(
        "a".to_owned(),
        state(
            1,
            &[RegistryEntry {
                epoch: 1,
                ..entry("job", "a", 9, 500)
            }],
        ),
    )]);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].loser.pid, pid("c", 1));
    assert_eq!(lost[0].winner, pid("a", 9));
    // c heard of the epoch, and its next registrations carry it.
    assert_eq!(c.epoch(), 1);
    c.heard_epoch(0);
    assert_eq!(c.epoch(), 1);
}

#[test]
fn a_dead_nodes_names_vanish_and_stale_news_does_not_bring_them_back() {
    let r = Registry::new("a", 1);
    live(&r, &["a", "b"]);
    let b = state(3, &[entry("x", "b", 1, 10)]);
    r.merge(vec![("b".to_owned(), b.clone())]);
    assert!(r.resolve("x").is_some());
    r.member_down("b");
    assert!(r.resolve("x").is_none());
    // A lagging peer gossips b's old state: ignored.
    r.merge(vec![("b".to_owned(), b.clone())]);
    live(&r, &["a"]);
    assert!(r.list().is_empty());
    // b comes back (a healed partition): its state counts again.
    r.member_up("b");
    r.merge(vec![("b".to_owned(), b)]);
    assert_eq!(r.resolve("x").unwrap().pid, pid("b", 1));
}

#[test]
fn a_home_refuses_a_name_it_granted_until_the_grant_settles() {
    let home = Registry::new("h", 1);
    live(&home, &["h", "a", "b"]);
    home.grant(&entry("n", "a", 1, 10), 4).unwrap();
    assert_eq!(home.grant(&entry("n", "b", 1, 11), 0), Err(pid("a", 1)));
    // The same claim again is fine (a retry).
    home.grant(&entry("n", "a", 1, 10), 4).unwrap();
    // a's state arrives without the name (it was dropped again): the grant is settled, and
    // the name is free.
    home.merge(vec![("a".to_owned(), state(5, &[]))]);
    home.grant(&entry("n", "b", 1, 11), 0).unwrap();
    // A registered name is refused with its holder.
    home.merge(vec![("b".to_owned(), state(1, &[entry("n", "b", 1, 11)]))]);
    assert_eq!(home.grant(&entry("n", "a", 2, 12), 5), Err(pid("b", 1)));
}

#[test]
fn own_changes_bump_the_version_and_exits_free_names() {
    let r = Registry::new("a", 1);
    r.insert_own(entry("one", "a", 1, 1));
    r.insert_own(entry("two", "a", 1, 2));
    r.insert_own(entry("three", "a", 2, 3));
    assert_eq!(r.own_version(), 3);
    r.forget_pid(&pid("a", 1));
    assert_eq!(r.own_version(), 4);
    let names: Vec<String> = r.list().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["three"]);
    assert!(!r.remove_own("three", Some(&pid("a", 9))));
    assert!(r.remove_own("three", None));
    // Another node's copy of our own state never overrides ours.
    r.merge(vec![(
        "a".to_owned(),
        state(99, &[entry("ghost", "a", 5, 1)]),
    )]);
    assert!(r.resolve("ghost").is_none());
}

#[test]
fn rendezvous_moves_only_the_keys_of_a_removed_member() {
    let all = ["n1", "n2", "n3", "n4", "n5"];
    let without_n3 = ["n1", "n2", "n4", "n5"];
    let mut counts = std::collections::HashMap::new();
    for i in 0..1000 {
        let key = format!("key-{i}");
        let before = rendezvous(&key, all.iter().copied()).unwrap();
        let after = rendezvous(&key, without_n3.iter().copied()).unwrap();
        if before != "n3" {
            assert_eq!(before, after, "{key} moved although its member stayed");
        }
        *counts.entry(before).or_insert(0) += 1;
    }
    // Spread: every member gets a fair share (200 expected each).
    for n in all {
        let c = counts[n];
        assert!((120..=280).contains(&c), "{n} got {c} of 1000 keys");
    }
    assert_eq!(rendezvous("k", std::iter::empty()), None);
}
