//! Certificate renewal on real nodes over mutual TLS on 127.0.0.1, with certificates that live
//! 20 s: a 3-node cluster serves every call across several renewals of each node's
//! certificate, the one CA holder signing its own and the other two asking it over
//! `Node.Renew`; token-joined nodes without a data dir renewing in memory; a node that finds
//! no CA holder retrying and counting each failure; a node that cannot get a certificate for
//! another node's name; a client renewing its own certificate only; and gossip on the TLS
//! links (`--gossip-wire tls`) keeping every member through renewals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use steinadler_node::{Client, Node, Target};
use steinadler_proto::v1 as pb;
use steinadler_security::{
    CLIENT_CERT_VALIDITY, COOKIE_HEADER, ClusterSecret, CookieSigner, Material, first_cert_der,
    identity_of, pki,
};
use steinadler_test_modules as m;
use tonic::Code;

mod common;

#[path = "security/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{assert_serving, ca_of, creds, greet, wait_count};

/// The lifetime of every node certificate here: renewed about every 13 s.
const LIFETIME: Duration = Duration::from_secs(20);

const RENEW: &str = "/steinadler.v1.Node/Renew";

/// An offline PKI in `dir` with node directories for `names`; only `holder`'s holds the CA
/// key, which makes it the one CA holder. A client `tester` too.
fn pki_with_holder(dir: &Path, names: &[&str], holder: &str) {
    pki::init(dir).unwrap();
    for name in names {
        pki::issue_node(dir, name, &[], &[]).unwrap();
    }
    pki::issue_client(dir, "tester").unwrap();
    std::fs::copy(
        dir.join("ca.key"),
        dir.join("nodes").join(holder).join("ca.key"),
    )
    .unwrap();
}

/// Starts `name` from its directory with a fresh certificate of [`LIFETIME`], signing
/// certificates of that lifetime too.
async fn start(pki: &Path, name: &str, seed: Option<&Node>) -> Node {
    let dir = pki.join("nodes").join(name);
    let mut material = Material::load(&dir).unwrap();
    let short = ca_of(pki).issue_node(name, &[], &[], LIFETIME).unwrap();
    material.cert_pem = short.cert_pem;
    material.key_pem = short.key_pem;
    material.save(&dir).unwrap();
    let mut b = Node::builder()
        .name(name)
        .secure_dir(dir)
        .cert_lifetimes(LIFETIME, CLIENT_CERT_VALIDITY);
    if let Some(seed) = seed {
        b = b.seed(seed.grpc_addr());
    }
    b.start()
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// The end of the validity of the certificate `node` presents to a new connection now.
async fn presented_not_after(node: &Node) -> SystemTime {
    let config = steinadler_security::unverified_client_config();
    let tcp = tokio::net::TcpStream::connect(node.grpc_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(node.name().to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let id = identity_of(&der).unwrap();
    assert_eq!(id.name, node.name());
    id.not_after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_serving_across_renewals_of_20_second_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path();
    pki_with_holder(pki, &["n1", "n2", "n3"], "n1");
    let n1 = start(pki, "n1", None).await;
    let n2 = start(pki, "n2", Some(&n1)).await;
    let n3 = start(pki, "n3", Some(&n1)).await;
    let nodes = [&n1, &n2, &n3];
    common::wait_for_members(&nodes, 3).await;
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    let user =
        steinadler_security::ClientCredentials::load(&pki.join("clients").join("tester")).unwrap();
    let auth = creds(pki, user.cert_pem, user.key_pem);

    // Each node's certificate as new connections see it, and every call made meanwhile.
    let mut seen: BTreeMap<String, BTreeSet<SystemTime>> = BTreeMap::new();
    let mut calls = 0u32;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        for node in nodes {
            // Node to node, on the pooled links, to every member.
            let results = node
                .invoke(&Target::All, "hello", "greet", &greet())
                .await
                .unwrap_or_else(|e| panic!("a call from {} failed: {e}", node.name()));
            assert_eq!(results.len(), 3, "{results:?}");
            results.iter().for_each(common::hello_ok);
            // A new client connection: a new handshake with the node's current certificate.
            let mut client = Client::connect(node.grpc_addr(), &auth)
                .await
                .unwrap_or_else(|e| panic!("connecting to {}: {e}", node.name()));
            client
                .members()
                .await
                .unwrap_or_else(|e| panic!("a client call to {} failed: {e}", node.name()));
            calls += 2;
            seen.entry(node.name().to_owned())
                .or_default()
                .insert(presented_not_after(node).await);
        }
        // The first certificate and at least two renewed ones, on every node.
        if seen.len() == 3 && seen.values().all(|s| s.len() >= 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every node renewed twice in 180 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in nodes {
        let renewals = node.stats().renewals.load(Ordering::Relaxed);
        assert!(renewals >= 2, "{}: {renewals} renewals", node.name());
        // The renewed files are on disk too, for a restart.
        let on_disk = Material::load(&pki.join("nodes").join(node.name())).unwrap();
        let id = on_disk.identity().unwrap();
        assert!(id.not_after > *seen[node.name()].first().unwrap());
    }
    assert!(calls > 0);
    // n2 and n3 hold no CA key: their renewals went through n1's Node.Renew.
    assert!(!pki.join("nodes/n2/ca.key").exists() && !pki.join("nodes/n3/ca.key").exists());
    for node in nodes {
        node.shutdown().await;
    }
}

/// A `Node.Renew` request signed with the cluster cookie, as a node sends it.
fn renew_request(
    secret: &ClusterSecret,
    name: &str,
    csr_for: &str,
) -> tonic::Request<pb::RenewRequest> {
    let body = pb::RenewRequest {
        name: name.into(),
        csr: steinadler_security::make_csr(csr_for).unwrap().der.into(),
    };
    let cookie = CookieSigner::new(secret).sign(RENEW, &prost::Message::encode_to_vec(&body));
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert(COOKIE_HEADER, cookie.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_renew_a_certificate_for_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path();
    pki_with_holder(pki, &["n1", "n2", "n3"], "n1");
    let n1 = helpers::secure_node(pki, "n1", None).await;
    let n2 = helpers::secure_node(pki, "n2", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();

    // As n2 (its node certificate and the cluster cookie), ask the CA holder for n3's.
    let as_n2 = Material::load(&pki.join("nodes/n2")).unwrap();
    let client = Client::connect(
        n1.grpc_addr(),
        &creds(pki, as_n2.cert_pem.clone(), as_n2.key_pem.clone()),
    )
    .await
    .unwrap();
    let status = client
        .raw()
        .renew(renew_request(&as_n2.secret, "n3", "n3"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("n3"), "{status:?}");
    wait_count(&n1.stats().rejected_renewal, 1).await;

    // Its own name with a CSR that claims n3: the certificate names n2 all the same.
    let reply = client
        .raw()
        .renew(renew_request(&as_n2.secret, "n2", "n3"))
        .await
        .unwrap()
        .into_inner();
    let id = identity_of(&first_cert_der(&reply.cert_pem).unwrap()).unwrap();
    assert_eq!(id.name, "n2");

    // A client certificate may not renew at all.
    let user =
        steinadler_security::ClientCredentials::load(&pki.join("clients").join("tester")).unwrap();
    let as_user = Client::connect(n1.grpc_addr(), &creds(pki, user.cert_pem, user.key_pem))
        .await
        .unwrap();
    let status = as_user
        .raw()
        .renew(renew_request(&as_n2.secret, "tester", "tester"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // n1 refused and kept serving; n2 asking a node that is no CA holder is told so.
    assert_serving(&n2, "n1").await;
    assert_serving(&n1, "n2").await;
    let to_n2 = Client::connect(
        n2.grpc_addr(),
        &creds(pki, as_n2.cert_pem.clone(), as_n2.key_pem.clone()),
    )
    .await
    .unwrap();
    let status = to_n2
        .raw()
        .renew(renew_request(&as_n2.secret, "n2", "n2"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_renew_keeps_trying_and_counts_each_failure() {
    // No node holds the CA key: nobody can sign.
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path();
    pki::init(pki).unwrap();
    for name in ["n1", "n2"] {
        pki::issue_node(pki, name, &[], &[]).unwrap();
    }
    let n1 = start(pki, "n1", None).await;
    let n2 = start(pki, "n2", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    for node in [&n1, &n2] {
        // A second failure means it tried again after the first (1 s of backoff later).
        let failures = &node.stats().renewal_failures;
        common::eventually(Duration::from_secs(90), "two failed renewals", || async {
            failures.load(Ordering::Relaxed) >= 2
        })
        .await;
        assert_eq!(node.stats().renewals.load(Ordering::Relaxed), 0);
    }
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_joined_nodes_without_a_data_dir_renew_in_memory() {
    let short = |b: steinadler_node::NodeBuilder| b.cert_lifetimes(LIFETIME, CLIENT_CERT_VALIDITY);
    let n1 = short(Node::builder().name("n1")).start().await.unwrap();
    let n2 = common::through(short(Node::builder().name("n2")), Some(&n1))
        .start()
        .await
        .unwrap();
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    // Both hold the CA key (token join hands it over): each signs its own renewal.
    let first = [
        presented_not_after(&n1).await,
        presented_not_after(&n2).await,
    ];
    for node in [&n1, &n2] {
        let renewals = &node.stats().renewals;
        common::eventually(Duration::from_secs(90), "a renewal", || async {
            renewals.load(Ordering::Relaxed) >= 1
        })
        .await;
    }
    assert!(presented_not_after(&n1).await > first[0]);
    assert!(presented_not_after(&n2).await > first[1]);
    assert_serving(&n1, "n2").await;
    assert_serving(&n2, "n1").await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_renews_its_own_certificate_and_no_other() {
    let n1 = Node::builder()
        .name("n1")
        .cert_lifetimes(
            steinadler_security::NODE_CERT_VALIDITY,
            Duration::from_secs(60),
        )
        .start()
        .await
        .unwrap();
    let steinadler_node::ClientAuth::Certificate(old) = common::login(&n1, "tester").await else {
        unreachable!("a login gives a certificate");
    };
    let auth = steinadler_node::ClientAuth::Certificate(old.clone());
    let client = Client::connect(n1.grpc_addr(), &auth).await.unwrap();
    let renewed = client.renew_certificate(&old).await.unwrap();
    let (was, now) = (
        identity_of(&first_cert_der(&old.cert_pem).unwrap()).unwrap(),
        identity_of(&first_cert_der(&renewed.cert_pem).unwrap()).unwrap(),
    );
    assert_eq!((now.role, now.name.as_str()), (was.role, "tester"));
    assert_ne!(renewed.key_pem, old.key_pem);
    let mut with_new = Client::connect(
        n1.grpc_addr(),
        &steinadler_node::ClientAuth::Certificate(std::sync::Arc::new(renewed)),
    )
    .await
    .unwrap();
    with_new.members().await.unwrap();

    // A certificate for another client's name: refused.
    let csr = steinadler_security::make_csr("alice").unwrap();
    let status = client
        .raw()
        .renew_client(pb::RenewRequest {
            name: "alice".into(),
            csr: csr.der.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    wait_count(&n1.stats().rejected_renewal, 1).await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_on_the_tls_links_survives_renewals() {
    let short = |name: &str| {
        Node::builder()
            .name(name)
            .gossip_mode(steinadler_node::GossipMode::Tls)
            .cert_lifetimes(LIFETIME, CLIENT_CERT_VALIDITY)
    };
    let n1 = short("n1").start().await.unwrap();
    let n2 = common::through(short("n2"), Some(&n1))
        .start()
        .await
        .unwrap();
    let n3 = common::through(short("n3"), Some(&n1))
        .start()
        .await
        .unwrap();
    let nodes = [&n1, &n2, &n3];
    common::wait_for_members(&nodes, 3).await;
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while nodes
        .iter()
        .any(|n| n.stats().renewals.load(Ordering::Relaxed) < 2)
    {
        for node in nodes {
            let results = node
                .invoke(&Target::All, "hello", "greet", &greet())
                .await
                .unwrap_or_else(|e| panic!("a call from {} failed: {e}", node.name()));
            // Every member answers: none was taken for dead while links were reopened.
            assert_eq!(results.len(), 3, "{results:?}");
            results.iter().for_each(common::hello_ok);
        }
        assert!(Instant::now() < deadline, "not every node renewed twice");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
}
