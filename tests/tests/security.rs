//! Security on real nodes over real TLS on 127.0.0.1: token join, offline PKI, and every way in
//! that must be refused. Each refusal is checked for a clear error, a counted rejection and an
//! unchanged membership, and the good nodes keep serving throughout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use steinadler_node::{Client, ClientAuth, Node, NodeError};
use steinadler_proto::v1 as pb;
use steinadler_security::{COOKIE_HEADER, Ca, ClusterSecret, CookieSigner, Material, Role};
use steinadler_test_modules as m;
use tonic::Code;

mod common;

#[path = "security/helpers.rs"]
mod helpers;

use helpers::{
    anonymous_channel, assert_serving, ca_of, creds, greet, offline_pki, secure_node, try_call,
    wait_count,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_join_gives_mutual_tls_and_the_token_is_checked() {
    let n1 = common::start("n1", "a", None).await;
    assert!(n1.is_secure() && n1.created_cluster());
    let token = n1.join_token().unwrap();
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    assert!(!n2.created_cluster());
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    assert_serving(&n1, "n2").await;
    assert_serving(&n2, "n1").await;

    // A wrong secret with the right CA pin: refused by the HMAC check, and counted.
    let parsed: steinadler_security::Token = token.parse().unwrap();
    let wrong = steinadler_security::Token {
        ca_hash: parsed.ca_hash,
        secret: [7; 32],
    };
    let err = Node::builder()
        .name("n3")
        .seed(n1.grpc_addr())
        .token(wrong.to_string())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::Join(steinadler_node::JoinError::Refused { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("join refused"), "{err}");
    wait_count(&n1.stats().rejected_join, 1).await;

    // A token that pins another CA: the joiner refuses the seed before sending anything.
    let foreign = steinadler_security::Token::generate([9; 32]);
    let err = steinadler_node::request_certificate(n1.grpc_addr(), &foreign, Role::Node, "n3")
        .await
        .unwrap_err();
    assert!(
        matches!(err, steinadler_node::JoinError::Pin { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("pins"), "{err}");

    // A live node's name cannot be taken.
    let err = steinadler_node::request_certificate(n1.grpc_addr(), &parsed, Role::Node, "n2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already named"), "{err}");

    // A join request whose HMAC does not cover what it carries is refused.
    let channel_client = Client::connect(n1.grpc_addr(), &common::login(&n1, "u").await)
        .await
        .unwrap();
    let csr = steinadler_security::make_csr("n9").unwrap();
    let nonce = [1u8; 16];
    let ts = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mac =
        steinadler_security::join_mac(&parsed.secret, Role::Client, "n9", &csr.der, ts, &nonce);
    let status = channel_client
        .raw()
        .join(pb::JoinRequest {
            role: pb::join_request::Role::Node as i32, // the MAC says client
            name: "n9".into(),
            csr: csr.der.clone().into(),
            timestamp_ms: ts,
            nonce: nonce.to_vec().into(),
            mac: mac.to_vec().into(),
            ca_holder: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(n1.members().await.len(), 2);

    // The first node down: n2 got the signing material with its token and admits n3.
    n1.shutdown().await;
    let n3 = Node::builder()
        .name("n3")
        .seed(n2.grpc_addr())
        .token(token)
        .start()
        .await
        .unwrap();
    common::wait_for_members(&[&n2, &n3], 2).await;
    n2.deploy("hello", m::HELLO_WASM).await.unwrap();
    assert_serving(&n3, "n2").await;
    n3.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unwelcome_caller_is_refused_counted_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path();
    offline_pki(pki, &["n1", "n2", "rogue"]);
    let n1 = secure_node(pki, "n1", None).await;
    let n2 = secure_node(pki, "n2", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    assert_serving(&n1, "n2").await;
    let addr = n1.grpc_addr().to_owned();
    let stats = n1.stats();
    let ca = ca_of(pki);

    // Plain TCP with garbage, and a plaintext HTTP/2 (gRPC) client.
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    }
    wait_count(&stats.rejected_tls, 1).await;
    let err = try_call(&addr, &ClientAuth::Insecure).await.unwrap_err();
    assert!(!err.is_empty());
    wait_count(&stats.rejected_tls, 2).await;

    // TLS without a client certificate: the handshake passes (joining needs it), the calls not.
    let anonymous = anonymous_channel(pki, &addr).await;
    let status = pb::node_client::NodeClient::new(anonymous.clone())
        .list_members(pb::ListMembersRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("steinadler login"), "{status:?}");
    wait_count(&stats.rejected_unauthenticated, 1).await;
    // Streams.Open, which the node serves by hand rather than through tonic's server.
    let open = pb::StreamControl {
        op: Some(pb::stream_control::Op::Open(pb::StreamOpen {
            module: "hello".into(),
            function: "greet".into(),
            ..Default::default()
        })),
    };
    let status = pb::streams_client::StreamsClient::new(anonymous)
        .open(tokio_stream::iter([open]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    wait_count(&stats.rejected_unauthenticated, 2).await;

    // A certificate from a foreign CA; expired and not-yet-valid certificates from ours.
    let before = stats.rejected_tls.load(Ordering::Relaxed);
    let foreign = Ca::generate()
        .unwrap()
        .issue_client("mallory", Duration::from_secs(3600))
        .unwrap();
    let err = try_call(&addr, &creds(pki, foreign.cert_pem, foreign.key_pem))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    for (from, to) in [(now - 10 * day, now - day), (now + day, now + 10 * day)] {
        let c = ca.issue_node_with_window("n2", from, to).unwrap();
        try_call(&addr, &creds(pki, c.cert_pem, c.key_pem))
            .await
            .unwrap_err();
    }
    wait_count(&stats.rejected_tls, before + 3).await;

    // A client certificate on a node-only method.
    let user = ca.issue_client("alice", Duration::from_secs(3600)).unwrap();
    let alice = Client::connect(&addr, &creds(pki, user.cert_pem, user.key_pem))
        .await
        .unwrap();
    let status = alice
        .raw()
        .invoke(pb::InvokeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    wait_count(&stats.rejected_role, 1).await;

    // A real node certificate, but the wrong cookie; then a replayed good one.
    let rogue_dir = pki.join("nodes").join("rogue");
    let rogue = Material::load(&rogue_dir).unwrap();
    let rogue_client = Client::connect(
        &addr,
        &creds(pki, rogue.cert_pem.clone(), rogue.key_pem.clone()),
    )
    .await
    .unwrap();
    let invoke = pb::InvokeRequest {
        module_id: steinadler_core::ModuleId::of(m::HELLO_WASM)
            .as_bytes()
            .to_vec()
            .into(),
        function: "greet".into(),
        args: greet().into(),
        ..Default::default()
    };
    let signed = |secret: &ClusterSecret| {
        let value = CookieSigner::new(secret).sign(
            "/steinadler.v1.Node/Invoke",
            &prost::Message::encode_to_vec(&invoke),
        );
        let mut request = tonic::Request::new(invoke.clone());
        request
            .metadata_mut()
            .insert(COOKIE_HEADER, value.parse().unwrap());
        request
    };
    let status = rogue_client
        .raw()
        .invoke(signed(&ClusterSecret::generate()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("cookie"), "{status:?}");
    wait_count(&stats.rejected_cookie, 1).await;
    let good = signed(&rogue.secret);
    let replay = {
        let mut r = tonic::Request::new(invoke.clone());
        *r.metadata_mut() = good.metadata().clone();
        r
    };
    rogue_client.raw().invoke(good).await.unwrap();
    let status = rogue_client.raw().invoke(replay).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("replay"), "{status:?}");
    wait_count(&stats.rejected_cookie, 2).await;

    // A node of another cluster (another gossip key) cannot join, and changes nothing.
    let other = tempfile::tempdir().unwrap();
    offline_pki(other.path(), &["intruder"]);
    let result = Node::builder()
        .name("intruder")
        .secure_dir(other.path().join("nodes").join("intruder"))
        .join(n1.gossip_addr())
        .start()
        .await;
    assert!(result.is_err(), "a node with the wrong gossip key joined");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(n1.members().await.len(), 2);
    assert_eq!(n2.members().await.len(), 2);
    assert_serving(&n1, "n2").await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_pose_as_another() {
    let dir = tempfile::tempdir().unwrap();
    offline_pki(dir.path(), &["n1", "n2"]);
    let n1 = secure_node(dir.path(), "n1", None).await;
    let n2_material = Material::load(&dir.path().join("nodes").join("n2")).unwrap();
    let config = steinadler_security::client_config(
        &n2_material.ca_cert_pem,
        Some((&n2_material.cert_pem, &n2_material.key_pem)),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let dial = |name: &'static str| {
        let connector = connector.clone();
        let addr = n1.grpc_addr().to_owned();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            connector.connect(name, tcp).await
        }
    };
    // n1's certificate is good for n1, and refused by a caller who expects n2.
    dial("n1").await.unwrap();
    let err = dial("n2").await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_connections_does_not_disturb_live_calls() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    assert_serving(&n1, "n2").await;
    let addr = n2.grpc_addr().to_owned();
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let attempts = (0..400).map(|i| {
            let addr = addr.clone();
            async move {
                if let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await {
                    let _ = tcp
                        .write_all(&[0x16, 3, 1, 0, 5, i as u8, 0, 0, 0, 0])
                        .await;
                }
            }
        });
        futures::future::join_all(attempts).await;
    });
    let mut served = 0;
    while !flood.is_finished() || served < 50 {
        assert_serving(&n1, "n2").await;
        served += 1;
    }
    wait_count(&n2.stats().rejected_tls, 300).await;
    assert_eq!(n1.members().await.len(), 2);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_when_their_files_change() {
    let dir = tempfile::tempdir().unwrap();
    offline_pki(dir.path(), &["n1"]);
    let node_dir = dir.path().join("nodes").join("n1");
    let n1 = secure_node(dir.path(), "n1", None).await;
    let presented = || async {
        let config = steinadler_security::unverified_client_config();
        let tcp = tokio::net::TcpStream::connect(n1.grpc_addr())
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("n1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    let old = presented().await;
    // Re-issue n1's certificate in place; the node notices the files change.
    let fresh = ca_of(dir.path())
        .issue_node("n1", &[], &[], Duration::from_secs(86_400))
        .unwrap();
    std::fs::write(node_dir.join("node.key"), &fresh.key_pem).unwrap();
    std::fs::write(node_dir.join("node.crt"), &fresh.cert_pem).unwrap();
    let want = steinadler_security::first_cert_der(&fresh.cert_pem)
        .unwrap()
        .as_ref()
        .to_vec();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented().await;
        if now == want {
            break;
        }
        assert_eq!(now, old);
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_key_rotation_keeps_every_node_alive() {
    let data = tempfile::tempdir().unwrap();
    let n1 = Node::builder()
        .name("n1")
        .data_dir(data.path())
        .start()
        .await
        .unwrap();
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "b", Some(&n1)).await;
    let nodes = Arc::new([n1, n2, n3]);
    common::wait_for_members(&nodes.iter().collect::<Vec<_>>(), 3).await;
    let security = data.path().join("security");
    let keys_before = std::fs::read_to_string(security.join("gossip.keys")).unwrap();

    // A client certificate may not rotate: that takes a node's own credentials.
    let mut user = common::client(&nodes[0]).await;
    let err = user.rotate_gossip_key().await.unwrap_err();
    assert!(err.to_string().contains("only nodes"), "{err}");

    // Watch every node's view while the rotation runs and for 3 s after.
    let watcher = {
        let nodes = nodes.clone();
        tokio::spawn(async move {
            let mut fewest = usize::MAX;
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until {
                for n in nodes.iter() {
                    fewest = fewest.min(n.members().await.len());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            fewest
        })
    };
    let material = Material::load(&security).unwrap();
    let mut admin = Client::connect(nodes[0].grpc_addr(), &ClientAuth::Node(Arc::new(material)))
        .await
        .unwrap();
    let mut rotated = admin.rotate_gossip_key().await.unwrap();
    rotated.sort();
    assert_eq!(rotated, ["n1", "n2", "n3"]);
    assert_eq!(
        watcher.await.unwrap(),
        3,
        "a node was dropped during the rotation"
    );
    let keys_after = std::fs::read_to_string(security.join("gossip.keys")).unwrap();
    assert_ne!(keys_before, keys_after);
    assert_eq!(keys_after.lines().count(), 1, "the old key was not removed");

    // A node joining now gets the new key and is admitted.
    let n4 = common::start("n4", "b", Some(&nodes[1])).await;
    common::wait_for_members(&[&nodes[0], &n4], 4).await;
    user.members().await.unwrap();
    n4.shutdown().await;
    for n in nodes.iter().rev() {
        n.shutdown().await;
    }
}
