//! Join tokens that rotate everywhere, expire and run out, on real nodes over mutual TLS on
//! 127.0.0.1: `new_token` (what `cluster token --new` calls) on one node of three replaces the
//! token on all three, the old one is refused by each and the new one admits a join through
//! another node; a newer token that appears on one node (its files changed, as on a node that
//! was away) reaches the others by the periodic catch-up; a token of a few seconds is refused
//! once it expired, naming when; a token of one use admits one join, through a node that did
//! not make it, and refuses the next on every node, naming the count; and, with its maker
//! down, a use-limited token admits nobody, saying why.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use steinadler_node::{Client, ClientAuth, JoinError, NewToken, Node};
use steinadler_security::{Material, Role, Token, TokenPolicy};
use tonic::Code;

mod common;

/// Room for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts the cluster's first node, keeping its material in `dir` (as `node start
/// --data-dir` does), so that an operator's client can use it.
async fn first(dir: &Path) -> Node {
    Node::builder()
        .name("n1")
        .data_dir(dir.join("n1"))
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting n1: {e}"))
}

/// A client that holds n1's node material, as `cluster token --data-dir DIR/n1` connects.
async fn operator(dir: &Path, node: &Node) -> Client {
    let material = Material::load(&dir.join("n1").join("security")).unwrap();
    Client::connect(node.grpc_addr(), &ClientAuth::Node(Arc::new(material)))
        .await
        .unwrap()
}

/// n1's CA key, which a request for a new token proves.
fn ca_key(dir: &Path) -> String {
    let material = Material::load(&dir.join("n1").join("security")).unwrap();
    material.ca_key_pem.unwrap()
}

/// A client login for `user` through `node` with `token`.
async fn login(node: &Node, token: &str, user: &str) -> Result<(), JoinError> {
    let token: Token = token.parse().unwrap();
    steinadler_node::request_certificate(node.grpc_addr(), &token, Role::Client, user)
        .await
        .map(|_| ())
}

/// Checks that `result` is a refusal with `code` whose message holds `says`.
fn refused(result: Result<(), JoinError>, code: Code, says: &str) {
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_replaces_the_old_one_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = first(dir.path()).await;
    let old = n1.join_token().unwrap();
    let policy = n1.join_token_policy().unwrap();
    assert_eq!(policy.generation, 1);
    let left = policy.expires_at_ms.unwrap() - now_ms();
    assert!(left > 23 * 3_600_000 && left <= 24 * 3_600_000, "{left} ms");
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    assert_eq!(n3.join_token().unwrap(), old);

    let made: NewToken = operator(dir.path(), &n1)
        .await
        .new_token(&ca_key(dir.path()), None, None)
        .await
        .unwrap();
    assert_ne!(made.token, old);
    assert_eq!(made.policy.generation, 2);
    assert_eq!(made.policy.minted_by, "n1");
    assert!(made.missed.is_empty(), "{:?}", made.missed);
    let mut nodes = made.nodes.clone();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    for node in [&n1, &n2, &n3] {
        assert_eq!(node.join_token().unwrap(), made.token, "{}", node.name());
        let said = "a token replaced by `cluster token --new` works nowhere";
        refused(login(node, &old, "old").await, Code::Unauthenticated, said);
    }
    // Saved with its lifetime: a restart of n1 keeps the new token.
    let saved = Material::load(&dir.path().join("n1").join("security")).unwrap();
    assert_eq!(saved.token().unwrap().to_string(), made.token);
    assert_eq!(saved.token_policy, made.policy);

    // The new token admits a node through n3, which did not make it. Three CA holders are
    // live, so n4 asks to be a fourth (`--ca-holder`) to hold the token itself.
    let n4 = Node::builder()
        .name("n4")
        .ca_holder(true)
        .seed(n3.grpc_addr())
        .token(made.token.clone())
        .start()
        .await
        .unwrap();
    common::wait_for_members(&[&n1, &n4], 4).await;
    assert_eq!(n4.join_token().unwrap(), made.token);
    assert_eq!(n4.join_token_policy().unwrap(), made.policy);
    login(&n2, &made.token, "bob").await.unwrap();

    // A newer token that shows up on one node, as on a node that made one while the others
    // could not hear it, reaches every member through the periodic catch-up.
    let security = dir.path().join("n1").join("security");
    let mut material = Material::load(&security).unwrap();
    let newer = Token::generate(material.ca_hash().unwrap());
    material.token_secret = Some(newer.secret);
    material.token_policy = TokenPolicy::mint(7, "n1", Some(Duration::from_secs(3600)), None);
    material.save_token(&security).unwrap();
    n1.reload_certificates().unwrap();
    for node in [&n2, &n3, &n4] {
        common::eventually(PATIENCE, "the newer token reaches every node", || async {
            node.join_token().as_deref() == Some(newer.to_string().as_str())
        })
        .await;
    }
    refused(
        login(&n4, &made.token, "late").await,
        Code::Unauthenticated,
        "join refused",
    );
    login(&n4, &newer.to_string(), "carol").await.unwrap();
    for node in [n4, n3, n2, n1] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_with_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = first(dir.path()).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    let made = operator(dir.path(), &n1)
        .await
        .new_token(&ca_key(dir.path()), Some(Duration::from_secs(8)), None)
        .await
        .unwrap();
    let expires = made.policy.expires_at_ms.unwrap();
    assert!(
        expires > now_ms() && expires <= now_ms() + 8_000,
        "{expires}"
    );
    assert_eq!(n2.join_token_policy().unwrap(), made.policy);
    // Well within its lifetime, it admits a login through n2.
    login(&n2, &made.token, "early").await.unwrap();
    common::eventually(PATIENCE, "the token expires", || async {
        now_ms() > expires
    })
    .await;
    let at = steinadler_security::format_utc_ms(expires);
    for node in [&n1, &n2] {
        refused(
            login(node, &made.token, "late").await,
            Code::PermissionDenied,
            &format!("the join token expired at {at}"),
        );
    }
    let err = Node::builder()
        .name("n3")
        .seed(n2.grpc_addr())
        .token(made.token.clone())
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("PermissionDenied") && text.contains("expired at") && text.contains("--new"),
        "{text}"
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_one_use_admits_one_join() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = first(dir.path()).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    let made = operator(dir.path(), &n1)
        .await
        .new_token(&ca_key(dir.path()), None, Some(1))
        .await
        .unwrap();
    assert_eq!(made.policy.max_uses, Some(1));
    let rejected_before = n1
        .stats()
        .rejected_join
        .load(std::sync::atomic::Ordering::Relaxed);
    // The one use, through n2, which asks n1 (the maker) to count it.
    login(&n2, &made.token, "first").await.unwrap();
    for node in [&n1, &n2] {
        refused(
            login(node, &made.token, "second").await,
            Code::PermissionDenied,
            "the join token was already used 1 times",
        );
    }
    assert!(
        n1.stats()
            .rejected_join
            .load(std::sync::atomic::Ordering::Relaxed)
            > rejected_before
    );
    // n1 keeps the count on disk, for its restarts.
    let uses = std::fs::read_to_string(dir.path().join("n1/security/token.uses")).unwrap();
    assert_eq!(uses.trim(), "2 1");

    // A token of two uses, with its maker gone: nobody can count a use, so nobody joins.
    let made = operator(dir.path(), &n1)
        .await
        .new_token(&ca_key(dir.path()), None, Some(2))
        .await
        .unwrap();
    assert_eq!(n2.join_token().unwrap(), made.token);
    n1.shutdown().await;
    let result = login(&n2, &made.token, "orphan").await;
    refused(result, Code::Unavailable, "only the node that made it (n1)");
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_ca_holder_sets_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = first(dir.path()).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    let token = n2.join_token().unwrap();
    let client = operator(dir.path(), &n2).await;
    // A node certificate and cookie, but another CA's key: no token.
    let other = steinadler_security::Ca::generate().unwrap().key_pem();
    let err = client.new_token(&other, None, None).await.unwrap_err();
    match &err {
        steinadler_node::ClientError::Status(s) => {
            assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
            assert!(s.message().contains("only a CA holder"), "{s:?}");
        }
        other => panic!("expected PERMISSION_DENIED, got {other}"),
    }
    // An offer of a newer token that no CA holder signed, with a valid cookie: not taken.
    let secret = Material::load(&dir.path().join("n1").join("security"))
        .unwrap()
        .secret;
    let offer = steinadler_proto::v1::TokenState {
        secret: vec![5; 32].into(),
        generation: 99,
        minted_by: "n1".into(),
        mac: vec![0; 32].into(),
        ..Default::default()
    };
    let path = "/steinadler.v1.Node/SyncToken";
    let cookie = steinadler_security::CookieSigner::new(&secret)
        .sign(path, &prost::Message::encode_to_vec(&offer));
    let mut request = tonic::Request::new(offer);
    request
        .metadata_mut()
        .insert(steinadler_security::COOKIE_HEADER, cookie.parse().unwrap());
    // Refused, and the answer would hold the token's secret, so there is none.
    let status = client.raw().sync_token(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("only with CA holders"),
        "{status:?}"
    );
    assert_eq!(n2.join_token().unwrap(), token);
    login(&n2, &token, "still").await.unwrap();
    n2.shutdown().await;
    n1.shutdown().await;
}
