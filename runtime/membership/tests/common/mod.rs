//! Helpers shared by the integration tests: starting loopback nodes on port 0 and polling with
//! deadlines.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use steinadler_membership::{Member, Membership, MembershipConfig, NodeMeta, Profile};

/// Metadata that identifies `name`.
pub fn meta(name: &str, port: u16) -> NodeMeta {
    NodeMeta {
        grpc_addr: format!("127.0.0.1:{port}"),
        labels: BTreeMap::from([("node".to_owned(), name.to_owned())]),
        modules_digest: u64::from(port) * 1_000_003,
        load: 0,
        relays: Vec::new(),
        ca_holder: false,
    }
}

/// A loopback config with port 0 and the fast profile.
pub fn config(name: &str, seeds: &[SocketAddr]) -> MembershipConfig {
    MembershipConfig {
        name: name.to_owned(),
        gossip: steinadler_membership::GossipWire::Udp,
        gossip_addr: "127.0.0.1:0".parse().unwrap(),
        gossip_advertise: None,
        seeds: seeds.to_vec(),
        meta: meta(name, 50_000),
        profile: Profile::Local,
        gossip_key: None,
        extra_gossip_keys: Vec::new(),
    }
}

/// Starts `name` joined through `seeds`, with metadata `meta(name, grpc_port)`.
pub async fn start(name: &str, grpc_port: u16, seeds: &[SocketAddr]) -> Membership {
    let mut config = config(name, seeds);
    config.meta = meta(name, grpc_port);
    Membership::start(config).await.expect("start node")
}

/// Starts `n` nodes `node-0..`, all joined through the first.
pub async fn cluster(n: usize) -> Vec<Membership> {
    let first = start("node-0", 50_000, &[]).await;
    let seed = first.gossip_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(&format!("node-{i}"), 50_000 + i as u16, &[seed]).await);
    }
    nodes
}

/// The member list every node should converge on.
pub fn expected(nodes: &[Membership]) -> Vec<Member> {
    let mut members: Vec<Member> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Member {
            name: n.local_name().to_owned(),
            gossip_addr: n.gossip_addr(),
            meta: meta(n.local_name(), 50_000 + i as u16),
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members
}

/// Names of `node`'s live members.
pub async fn names(node: &Membership) -> Vec<String> {
    node.members().await.into_iter().map(|m| m.name).collect()
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns the time it took.
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every node lists exactly `want`.
pub async fn converge(nodes: &[Membership], want: &[Member], limit: Duration) {
    let agreed = wait_for(limit, || async {
        for node in nodes {
            if node.members().await != want {
                return false;
            }
        }
        true
    })
    .await;
    if agreed.is_none() {
        for node in nodes {
            eprintln!("{} sees {:#?}", node.local_name(), node.members().await);
        }
        panic!("nodes did not agree on {want:#?} within {limit:?}");
    }
}

/// Shuts every node down.
pub async fn stop(nodes: &[Membership]) {
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}
