//! CA holders on real nodes over mutual TLS on 127.0.0.1 (issue 24 §3): of a 5-node cluster
//! joined with a token, only the first three hold the CA key and the token secret; a node joins
//! and a client logs in through a non-holder, which forwards to a holder (and never passes the
//! CA key on); a fourth holder joins with `--ca-holder` through a holder; a non-holder renews its short-lived certificate through the holders; and
//! once every holder is gone, joins, logins and renewals fail with a clear `UNAVAILABLE` while
//! the remaining nodes keep serving calls.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use steinadler_node::{Client, ClientAuth, JoinError, Node, NodeBuilder};
use steinadler_security::{CLIENT_CERT_VALIDITY, ClientCredentials, Role, Token};
use steinadler_test_modules as m;
use tonic::Code;

mod common;

#[path = "security/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::assert_serving;

/// Generous on 2 busy cores.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a refused join or login through a node without a live CA holder says.
const NO_HOLDER: &str = "no CA holder is reachable";

/// A node named `name` keeping its material in `dir/name`, joining through `seed` with `token`
/// when there is one.
fn builder(dir: &Path, name: &str, seed: Option<(&Node, &str)>) -> NodeBuilder {
    let b = Node::builder()
        .name(name)
        .label("zone", "a")
        .data_dir(dir.join(name));
    match seed {
        Some((seed, token)) => b.seed(seed.grpc_addr()).token(token.to_owned()),
        None => b,
    }
}

async fn start(b: NodeBuilder, name: &str) -> Node {
    b.start()
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// Whether `name`'s data dir holds the CA key.
fn holds_ca_key(dir: &Path, name: &str) -> bool {
    dir.join(name).join("security").join("ca.key").exists()
}

/// Logs `user` in through `node` with `token`, as `steinadler login --node ADDR --token T`.
async fn login(node: &Node, token: &str, user: &str) -> Result<ClientAuth, JoinError> {
    let token: Token = token.parse().unwrap();
    let joined =
        steinadler_node::request_certificate(node.grpc_addr(), &token, Role::Client, user).await?;
    Ok(ClientAuth::Certificate(Arc::new(ClientCredentials {
        ca_cert_pem: joined.reply.ca_cert_pem,
        cert_pem: joined.reply.cert_pem,
        key_pem: joined.key_pem,
    })))
}

/// Checks that `result` is a refusal with `code` whose message holds `says`.
fn refused<T: std::fmt::Debug>(result: Result<T, JoinError>, code: Code, says: &str) {
    match result {
        Err(JoinError::Refused {
            code: got, message, ..
        }) => {
            assert_eq!(got, code, "{message}");
            assert!(message.contains(says), "{message:?} lacks {says:?}");
        }
        other => panic!("expected a {code:?} refusal saying {says:?}, got {other:?}"),
    }
}

/// Waits until `node` sees exactly `want` as the live CA holders other than itself.
async fn wait_holders(node: &Node, want: &[&str]) {
    common::eventually(
        PATIENCE,
        &format!("{} sees holders {want:?}", node.name()),
        || async { node.live_ca_holders().await == want },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_three_nodes_hold_the_ca_key_and_the_others_forward_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n1 = start(builder(d, "n1", None), "n1").await;
    let token = n1.join_token().unwrap();
    let mut nodes = vec![n1];
    for (i, name) in ["n2", "n3", "n4", "n5"].iter().enumerate() {
        let node = start(builder(d, name, Some((&nodes[0], &token))), name).await;
        nodes.push(node);
        let all: Vec<&Node> = nodes.iter().collect();
        common::wait_for_members(&all, i + 2).await;
    }
    let [n1, n2, n3, n4, n5] = <[Node; 5]>::try_from(nodes).ok().unwrap();

    // Exactly the first three hold the CA key, on disk and by their own account, and every
    // node knows them from gossip.
    for (node, holder) in [
        (&n1, true),
        (&n2, true),
        (&n3, true),
        (&n4, false),
        (&n5, false),
    ] {
        assert_eq!(node.is_ca_holder(), holder, "{}", node.name());
        assert_eq!(holds_ca_key(d, node.name()), holder, "{}", node.name());
        assert_eq!(node.join_token().is_some(), holder, "{}", node.name());
    }
    wait_holders(&n5, &["n1", "n2", "n3"]).await;
    wait_holders(&n1, &["n2", "n3"]).await;

    // A node joins through a non-holder's address; n4 forwards to a holder.
    let n6 = start(builder(d, "n6", Some((&n4, &token))), "n6").await;
    common::wait_for_members(&[&n1, &n4, &n6], 6).await;
    assert!(!n6.is_ca_holder());
    assert!(!holds_ca_key(d, "n6"));
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    for to in ["n1", "n4", "n5"] {
        common::eventually(PATIENCE, "hello reaches every node", || async {
            n6.invoke(
                &steinadler_node::Target::Node(to.into()),
                "hello",
                "greet",
                &helpers::greet(),
            )
            .await
            .is_ok_and(|r| r[0].outcome.is_ok())
        })
        .await;
    }
    assert_serving(&n6, "n1").await;
    assert_serving(&n1, "n6").await;

    // A wrong token through a non-holder: the holder's refusal comes back as it is.
    let foreign = Token::generate(token.parse::<Token>().unwrap().ca_hash).to_string();
    refused(
        login(&n5, &foreign, "mallory").await,
        Code::Unauthenticated,
        "join refused",
    );

    // A client logs in through a non-holder and calls it.
    let auth = login(&n5, &token, "alice").await.unwrap();
    let mut client = Client::connect(n5.grpc_addr(), &auth).await.unwrap();
    assert_eq!(client.members().await.unwrap().members.len(), 6);

    // A node asking to become a holder through a non-holder is refused: the CA key would pass
    // through n5. Through a holder it becomes the fourth.
    match builder(d, "n7", Some((&n5, &token)))
        .ca_holder(true)
        .start()
        .await
    {
        Err(steinadler_node::NodeError::Join(e)) => {
            refused(
                Err::<(), _>(e),
                Code::FailedPrecondition,
                "join through a holder directly",
            );
        }
        other => panic!(
            "expected a refused join, got {:?}",
            other.map(|n| n.name().to_owned())
        ),
    }
    assert!(!holds_ca_key(d, "n7"));
    let n7 = start(builder(d, "n7", Some((&n2, &token))).ca_holder(true), "n7").await;
    common::wait_for_members(&[&n1, &n5, &n7], 7).await;
    assert!(n7.is_ca_holder());
    assert!(holds_ca_key(d, "n7"));
    assert_eq!(n7.join_token().as_deref(), Some(token.as_str()));
    wait_holders(&n4, &["n1", "n2", "n3", "n7"]).await;

    // Every holder stops: n4, n5 and n6 know none is live.
    for node in [n1, n2, n3, n7] {
        node.shutdown().await;
    }
    for node in [&n4, &n5, &n6] {
        wait_holders(node, &[]).await;
    }
    for node in [&n4, &n5, &n6] {
        common::eventually(PATIENCE, "three members left", || async {
            node.members().await.len() == 3
        })
        .await;
    }

    // A join and a login through a non-holder now fail, and say why and what to do.
    let joined = builder(d, "n8", Some((&n4, &token))).start().await;
    match joined {
        Err(steinadler_node::NodeError::Join(e)) => {
            refused(Err::<(), _>(e), Code::Unavailable, NO_HOLDER);
        }
        other => panic!(
            "expected a refused join, got {:?}",
            other.map(|n| n.name().to_owned())
        ),
    }
    let status = login(&n5, &token, "bob").await;
    refused(status, Code::Unavailable, NO_HOLDER);
    match login(&n6, &token, "carol").await {
        Err(JoinError::Refused { message, .. }) => {
            assert!(message.contains("--ca-holder"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The remaining nodes keep serving calls on their certificates, and so does the client.
    // n1, which held the name `hello`, is gone: deploy it again, through a non-holder.
    n4.deploy("hello", m::HELLO_WASM).await.unwrap();
    for (from, to) in [(&n4, "n5"), (&n5, "n6"), (&n6, "n4")] {
        assert_serving(from, to).await;
    }
    assert_eq!(client.members().await.unwrap().members.len(), 3);
    for node in [n6, n5, n4] {
        node.shutdown().await;
    }
}

/// The lifetime of every node certificate in the renewal test: renewed about every 13 s.
const LIFETIME: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_holder_renews_through_the_holders_and_fails_clearly_without_them() {
    let short = |b: NodeBuilder| b.cert_lifetimes(LIFETIME, CLIENT_CERT_VALIDITY);
    let n1 = short(Node::builder().name("n1")).start().await.unwrap();
    let mut nodes = vec![n1];
    for name in ["n2", "n3", "n4"] {
        let b = common::through(short(Node::builder().name(name)), Some(&nodes[0]));
        nodes.push(start(b, name).await);
        let all: Vec<&Node> = nodes.iter().collect();
        common::wait_for_members(&all, all.len()).await;
    }
    let [n1, n2, n3, n4] = <[Node; 4]>::try_from(nodes).ok().unwrap();
    assert!(n1.is_ca_holder() && n2.is_ca_holder() && n3.is_ca_holder());
    assert!(!n4.is_ca_holder());
    n1.deploy("hello", m::HELLO_WASM).await.unwrap();

    // n4 holds no CA key: its renewals are signed by a holder, twice over.
    let renewals = &n4.stats().renewals;
    common::eventually(Duration::from_secs(120), "n4 renews twice", || async {
        renewals.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(!n4.is_ca_holder());
    assert_serving(&n4, "n1").await;
    assert_serving(&n1, "n4").await;

    // Without a live holder, its renewal fails and is counted; it keeps its certificate.
    for node in [n1, n2, n3] {
        node.shutdown().await;
    }
    wait_holders(&n4, &[]).await;
    let failures = &n4.stats().renewal_failures;
    common::eventually(
        Duration::from_secs(90),
        "a failed renewal on n4",
        || async { failures.load(Ordering::Relaxed) >= 1 },
    )
    .await;
    n4.shutdown().await;
}
