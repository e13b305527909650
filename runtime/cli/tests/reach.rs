//! Reach across NAT and firewalls (issue 21 §4): real `steinadler node start` processes on
//! test hosts in network namespaces, one of them behind a router that masquerades its traffic
//! and forwards its two ports, as a home router with a port-forward does; or behind one that
//! forwards nothing, with the node dialing out only (`--no-inbound`); or behind a firewall
//! that admits one TCP port. Without root, `ip` and `nft` the tests say so and pass;
//! `.ci/run` runs them as root.

mod netns;

use netns::{Hosts, PATIENCE, ok};
use std::time::{Duration, Instant};

/// n1 deploys `hello` and every node answers `invoke --on all`; n2 calls n3 by name; a
/// `counter` spawned on n3 as `global` answers calls from n1 and n2.
fn n3_serves(h: &Hosts, global: &str) {
    ok(&h.cli(1, &["deploy", "--wait", steinadler_test_modules::HELLO]));
    h.greet_all(1, 1, 3).unwrap();
    let greet = ["hello", "greet", "--args", "[\"World\"]", "--json"];
    let one = ok(&h.cli(2, &[&["invoke"], &greet[..], &["--on", "n3"]].concat()));
    assert!(one.contains("Hello, World!") && one.contains("n3"), "{one}");
    ok(&h.cli(3, &["deploy", steinadler_test_modules::COUNTER]));
    ok(&h.cli(3, &["spawn", "counter", "--args", "0", "--global", global]));
    let call = |i: usize, msg: &str| {
        let out = h.cli(i, &["call", global, msg]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let started = Instant::now();
    while call(1, "\"get\"") != "0" {
        assert!(
            started.elapsed() < PATIENCE,
            "n1 never reached the counter on n3"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(call(2, "[\"add\", 5]"), "5");
}

#[test]
fn a_node_behind_nat_with_a_port_forward_joins_serves_and_is_missed_when_killed() {
    let Some(mut h) = Hosts::up_behind_nat(3, 3) else {
        return;
    };
    h.start_all();
    // n3 is known by the router's address, the one it advertises, never its private one.
    let nodes = ok(&h.cli(1, &["nodes", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let n3 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "n3")
        .unwrap_or_else(|| panic!("{nodes}"))
        .clone();
    assert!(nodes.contains(&h.grpc(3)), "{nodes}");
    assert!(
        !nodes.contains("192.168."),
        "a private address leaked: {n3}"
    );

    // Deploy through n1, call every node, then n3 by name, and a process on n3 spawned and
    // called from outside through the forwarded port.
    n3_serves(&h, "behind");

    // kill -9 behind the router: the others stop listing it.
    h.kill(3);
    let noticed = h.wait_members(1, &["n1", "n2"], PATIENCE);
    h.wait_members(2, &["n1", "n2"], PATIENCE);
    eprintln!("nat: kill -9 of n3 behind the router noticed by n1 in {noticed:?}");
}

/// n1 deploys `range`, and a stream from n3 yields its items.
fn n3_streams(h: &Hosts) {
    ok(&h.cli(1, &["deploy", steinadler_test_modules::RANGE]));
    let items = ok(&h.cli(
        1,
        &[
            "stream", "range", "range", "--args", "[0, 5]", "--on", "node:n3",
        ],
    ));
    assert_eq!(items, "0\n1\n2\n3\n4\n");
}

#[test]
fn behind_nat_without_a_port_forward_a_node_dials_out_and_is_reached_through_relays() {
    let Some(mut h) = Hosts::up_behind_nat_without_forward(3, 3) else {
        return;
    };
    h.start_all();
    // Nothing reaches n3 from outside: its router forwards no port.
    let target = h.grpc(3);
    let refused = h
        .in_host(1, move || {
            let addr = target.parse().unwrap();
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
        })
        .join()
        .unwrap();
    assert!(refused, "n3's router let a connection in");
    // n3 advertises no address anybody can dial, only the relay it dialed out to (once it has
    // attached), and answers through it.
    let via = format!(r#""address":"via {}","status":"alive""#, h.grpc(1));
    let started = Instant::now();
    let nodes = loop {
        let nodes = ok(&h.cli(1, &["nodes", "--json"]));
        if nodes.contains(&via) {
            break nodes;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "n3 is not listed {via}: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !nodes.contains("192.168."),
        "a private address leaked: {nodes}"
    );
    assert!(!nodes.contains(&h.grpc(3)), "{nodes}");

    // Deploy, call every node, n3 by name, a process on n3 called from n1 and n2, and a
    // stream from n3: all through its relay.
    n3_serves(&h, "dialed");
    n3_streams(&h);

    h.kill(3);
    let noticed = h.wait_members(1, &["n1", "n2"], PATIENCE);
    h.wait_members(2, &["n1", "n2"], PATIENCE);
    eprintln!("no inbound: kill -9 of n3 behind the router noticed by n1 in {noticed:?}");

    // Started again, it rejoins. Its liveness is its connections out: cut its router's
    // link, and it is declared dead though it runs; heal it, and it is back.
    h.start(3);
    for i in 1..=3 {
        h.wait_members(i, &["n1", "n2", "n3"], PATIENCE);
    }
    h.cut(3);
    let noticed = h.wait_members(1, &["n1", "n2"], PATIENCE);
    eprintln!("no inbound: n3's cut link noticed by n1 in {noticed:?}");
    h.heal(3);
    let back = h.wait_members(1, &["n1", "n2", "n3"], PATIENCE);
    // Right after the heal it may be declared dead once more before it settles (its links
    // from before the cut are still being replaced): wait for every node to answer.
    let started = Instant::now();
    while let Err(e) = h.greet_all(1, 1, 3) {
        assert!(started.elapsed() < PATIENCE, "n3 never answered again: {e}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "no inbound: n3 listed again {back:?} after the heal, every node answered {:?} after it",
        back + started.elapsed()
    );
}

#[test]
fn behind_a_firewall_that_admits_one_tcp_port_a_node_gossiping_on_tls_serves_and_rides_out_loss() {
    let Some(mut h) = Hosts::up_one_port(3) else {
        return;
    };
    h.admit_only_grpc(3);
    h.start_all();
    // The firewall is live: a UDP packet to the port gossip would use otherwise is dropped.
    let before = h.firewall_drops(3);
    let target = format!("{}:7101", h.ip(3));
    h.in_host(1, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(b"probe", &target).unwrap();
    })
    .join()
    .unwrap();
    let started = Instant::now();
    while h.firewall_drops(3) == before {
        assert!(started.elapsed() < PATIENCE, "the firewall dropped nothing");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deploy, call every node, then n3 by name, a process on n3, and a stream from n3.
    n3_serves(&h, "walled");
    n3_streams(&h);

    // A fifth of n3's packets lost for 30 s: no call fails, nobody is declared dead.
    let (calls, failed) = h.greet_all_under_loss(3, 20, 30, 3);
    eprintln!(
        "one port: {calls} calls --on all in 30 s at 20 % loss, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {calls} calls failed: {failed:#?}",
        failed.len()
    );
    let logs = h.logs();
    assert!(!logs.contains("member failed"), "a false death:\n{logs}");

    // kill -9 behind the firewall: the others stop listing it.
    h.kill(3);
    let noticed = h.wait_members(1, &["n1", "n2"], PATIENCE);
    h.wait_members(2, &["n1", "n2"], PATIENCE);
    eprintln!("one port: kill -9 of n3 behind the firewall noticed by n1 in {noticed:?}");
}
