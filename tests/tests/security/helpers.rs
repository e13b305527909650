//! Helpers for the security tests: offline PKI nodes, credentials, and checks that a call is
//! refused or served.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{Client, ClientAuth, Node, Target};
use steinadler_security::{Ca, ClientCredentials, pki};

/// An offline PKI with node directories for `names`.
pub(crate) fn offline_pki(dir: &Path, names: &[&str]) {
    pki::init(dir).unwrap();
    for name in names {
        pki::issue_node(dir, name, &[], &[]).unwrap();
    }
}

pub(crate) async fn secure_node(pki: &Path, name: &str, seed: Option<&Node>) -> Node {
    let mut b = Node::builder()
        .name(name)
        .secure_dir(pki.join("nodes").join(name));
    if let Some(seed) = seed {
        b = b.seed(seed.grpc_addr());
    }
    b.start()
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// Credentials signed by the PKI's CA: a client certificate, or a node's.
pub(crate) fn creds(pki: &Path, cert_pem: String, key_pem: String) -> ClientAuth {
    ClientAuth::Certificate(Arc::new(ClientCredentials {
        ca_cert_pem: std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
        cert_pem,
        key_pem,
    }))
}

pub(crate) fn ca_of(pki: &Path) -> Ca {
    Ca::from_pem(
        &std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
        &std::fs::read_to_string(pki.join("ca.key")).unwrap(),
    )
    .unwrap()
}

/// Waits until `counter` reaches `want`: servers count a refused handshake just after the
/// client sees it fail.
pub(crate) async fn wait_count(counter: &AtomicU64, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::Relaxed) < want {
        assert!(
            Instant::now() < deadline,
            "counter stuck at {}, want {want}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connects and makes one call; the error text, if any step fails.
pub(crate) async fn try_call(addr: &str, auth: &ClientAuth) -> Result<(), String> {
    let mut client = Client::connect(addr, auth)
        .await
        .map_err(|e| e.to_string())?;
    client
        .members()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(crate) fn greet() -> Vec<u8> {
    Term::list([Term::from("World")]).encode()
}

pub(crate) async fn assert_serving(from: &Node, to: &str) {
    let results = from
        .invoke(&Target::Node(to.into()), "hello", "greet", &greet())
        .await
        .unwrap();
    let value = results[0]
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Term::decode(value), Ok(Term::from("Hello, World!")));
}

/// A TLS channel to the node at `addr` that checks the node against the cluster's CA but
/// presents no client certificate, as a joining machine's does: the handshake passes, and only
/// `Access::Public` methods answer.
pub(crate) async fn anonymous_channel(pki: &Path, addr: &str) -> tonic::transport::Channel {
    let ca_pem = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let tls = tokio_rustls::TlsConnector::from(
        steinadler_security::client_config(&ca_pem, None).unwrap(),
    );
    let addr = addr.to_owned();
    let connect = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (tls, addr) = (tls.clone(), addr.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let name = rustls::pki_types::ServerName::try_from(
                steinadler_security::ANY_NODE_SERVER_NAME.to_owned(),
            )
            .map_err(std::io::Error::other)?;
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_static("http://anonymous.invalid")
        .connect_with_connector(connect)
        .await
        .unwrap()
}
