//! Real TLS 1.3 handshakes (tokio-rustls over an in-memory duplex) between configs built by
//! `server_config`, `client_config` and `unverified_client_config`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use steinadler_security::{
    ANY_NODE_SERVER_NAME, CLIENT_CERT_VALIDITY, Ca, IssuedCert, NODE_CERT_VALIDITY, Role,
    SecurityError, cert_hash, certs_from_pem, client_config, identity_of, private_key_from_pem,
    server_config, unverified_client_config,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What each side saw of a successful handshake.
#[derive(Debug)]
struct Seen {
    /// The client certificate chain the server saw, if any.
    client_chain: Option<Vec<CertificateDer<'static>>>,
    /// The server certificate chain the client saw.
    server_chain: Vec<CertificateDer<'static>>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
}

/// Runs a handshake; `Err` carries the first side's error.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<Seen, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let accept = async {
        let stream = TlsAcceptor::from(server).accept(server_io).await?;
        Ok::<_, std::io::Error>(stream.get_ref().1.peer_certificates().map(<[_]>::to_vec))
    };
    let connect = async {
        let stream = TlsConnector::from(client).connect(name, client_io).await?;
        let conn = stream.get_ref().1;
        let seen = (
            conn.peer_certificates().unwrap().to_vec(),
            conn.alpn_protocol().map(<[_]>::to_vec),
            conn.protocol_version(),
        );
        // Keep the stream open until the server is done too (it still writes session tickets).
        Ok::<_, std::io::Error>((seen, stream))
    };
    let both = async { tokio::join!(accept, connect) };
    let (accepted, connected) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .map_err(|_| "handshake timed out".to_owned())?;
    let ((server_chain, alpn, version), _stream) = connected.map_err(|e| format!("client: {e}"))?;
    let client_chain = accepted.map_err(|e| format!("server: {e}"))?;
    Ok(Seen {
        client_chain,
        server_chain,
        alpn,
        version,
    })
}

fn node(ca: &Ca, name: &str) -> IssuedCert {
    ca.issue_node(name, &[], &[], NODE_CERT_VALIDITY).unwrap()
}

fn server_of(ca: &Ca, cert: &IssuedCert) -> Arc<ServerConfig> {
    server_config(ca.cert_pem(), &cert.cert_pem, &cert.key_pem).unwrap()
}

fn client_as(ca: &Ca, cert: Option<&IssuedCert>) -> Arc<ClientConfig> {
    client_config(
        ca.cert_pem(),
        cert.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
    )
    .unwrap()
}

#[tokio::test]
async fn node_to_node_mtls_by_name() {
    let ca = Ca::generate().unwrap();
    let (n1, n2) = (node(&ca, "n1"), node(&ca, "n2"));
    let seen = handshake(server_of(&ca, &n1), client_as(&ca, Some(&n2)), "n1")
        .await
        .unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
    // The server presents [node cert, CA cert].
    assert_eq!(seen.server_chain.len(), 2);
    assert_eq!(cert_hash(&seen.server_chain[1]), ca.hash());
    let peer = identity_of(&seen.client_chain.unwrap()[0]).unwrap();
    assert_eq!((peer.role, peer.name.as_str()), (Role::Node, "n2"));
}

#[tokio::test]
async fn wrong_expected_name_fails() {
    let ca = Ca::generate().unwrap();
    let (n1, n2) = (node(&ca, "n1"), node(&ca, "n2"));
    let err = handshake(server_of(&ca, &n1), client_as(&ca, Some(&n2)), "n3")
        .await
        .unwrap_err();
    assert!(
        err.starts_with("client:") && err.contains("not valid for name"),
        "{err}"
    );
}

#[tokio::test]
async fn loopback_ip_is_a_valid_server_name() {
    let ca = Ca::generate().unwrap();
    let n1 = node(&ca, "n1");
    handshake(server_of(&ca, &n1), client_as(&ca, None), "127.0.0.1")
        .await
        .unwrap();
    handshake(server_of(&ca, &n1), client_as(&ca, None), "::1")
        .await
        .unwrap();
    assert!(
        handshake(server_of(&ca, &n1), client_as(&ca, None), "10.9.9.9")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn any_node_accepts_a_node_of_the_cluster() {
    let ca = Ca::generate().unwrap();
    let n7 = node(&ca, "n7");
    let seen = handshake(
        server_of(&ca, &n7),
        client_as(&ca, None),
        ANY_NODE_SERVER_NAME,
    )
    .await
    .unwrap();
    let server = identity_of(&seen.server_chain[0]).unwrap();
    assert_eq!((server.role, server.name.as_str()), (Role::Node, "n7"));
}

#[tokio::test]
async fn any_node_rejects_foreign_nodes_and_client_certs() {
    let ca = Ca::generate().unwrap();
    let foreign = Ca::generate().unwrap();
    let stranger = node(&foreign, "n1");
    let server = server_config(foreign.cert_pem(), &stranger.cert_pem, &stranger.key_pem).unwrap();
    let err = handshake(server, client_as(&ca, None), ANY_NODE_SERVER_NAME)
        .await
        .unwrap_err();
    assert!(err.starts_with("client:"), "{err}");

    // server_config refuses a client certificate outright...
    let alice = ca.issue_client("alice", CLIENT_CERT_VALIDITY).unwrap();
    assert!(matches!(
        server_config(ca.cert_pem(), &alice.cert_pem, &alice.key_pem),
        Err(SecurityError::NotANodeCertificate)
    ));
    // ...and a server that presents one anyway is rejected by ANY_NODE_SERVER_NAME.
    let mut chain = certs_from_pem(&alice.cert_pem).unwrap();
    chain.push(ca.cert_der());
    let rogue =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, private_key_from_pem(&alice.key_pem).unwrap())
            .unwrap();
    let err = handshake(Arc::new(rogue), client_as(&ca, None), ANY_NODE_SERVER_NAME)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("client:") && err.contains("server authentication"),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificate_is_optional() {
    let ca = Ca::generate().unwrap();
    let n1 = node(&ca, "n1");
    let seen = handshake(server_of(&ca, &n1), client_as(&ca, None), "n1")
        .await
        .unwrap();
    assert!(seen.client_chain.is_none());
}

#[tokio::test]
async fn server_sees_client_identity() {
    let ca = Ca::generate().unwrap();
    let n1 = node(&ca, "n1");
    let alice = ca.issue_client("alice", CLIENT_CERT_VALIDITY).unwrap();
    let seen = handshake(
        server_of(&ca, &n1),
        client_as(&ca, Some(&alice)),
        ANY_NODE_SERVER_NAME,
    )
    .await
    .unwrap();
    let peer = identity_of(&seen.client_chain.unwrap()[0]).unwrap();
    assert_eq!((peer.role, peer.name.as_str()), (Role::Client, "alice"));
}

#[tokio::test]
async fn foreign_ca_client_cert_fails() {
    let ca = Ca::generate().unwrap();
    let foreign = Ca::generate().unwrap();
    let n1 = node(&ca, "n1");
    let mallory = foreign
        .issue_client("mallory", CLIENT_CERT_VALIDITY)
        .unwrap();
    // The client trusts our CA but presents a foreign certificate.
    let err = handshake(server_of(&ca, &n1), client_as(&ca, Some(&mallory)), "n1")
        .await
        .unwrap_err();
    // Both CAs have the same subject, so webpki finds "the" issuer and its signature fails.
    assert!(err.starts_with("server: invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_client_certs_fail() {
    let ca = Ca::generate().unwrap();
    let n1 = node(&ca, "n1");
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let expired = ca
        .issue_node_with_window("n2", now - 10 * day, now - day)
        .unwrap();
    let future = ca
        .issue_node_with_window("n2", now + day, now + 10 * day)
        .unwrap();
    assert_eq!(
        steinadler_security::expires_in(&expired.cert_pem).unwrap(),
        Duration::ZERO
    );
    for (cert, why) in [(&expired, "expired"), (&future, "not valid yet")] {
        let err = handshake(server_of(&ca, &n1), client_as(&ca, Some(cert)), "n1")
            .await
            .unwrap_err();
        assert!(err.starts_with("server:") && err.contains(why), "{err}");
    }
    // An expired server certificate fails on the client side, by name and as "any node".
    let server = server_of(&ca, &expired);
    for name in ["n2", ANY_NODE_SERVER_NAME] {
        let err = handshake(server.clone(), client_as(&ca, None), name)
            .await
            .unwrap_err();
        assert!(
            err.starts_with("client:") && err.contains("expired"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn unverified_bootstrap_then_pinned_reconnect() {
    let ca = Ca::generate().unwrap();
    let n1 = node(&ca, "n1");
    let server = server_of(&ca, &n1);
    // Any CA is accepted by the bootstrap config...
    let seen = handshake(
        server.clone(),
        unverified_client_config(),
        ANY_NODE_SERVER_NAME,
    )
    .await
    .unwrap();
    assert!(seen.client_chain.is_none());
    // ...and the joiner pins the CA the server sent against the token's hash...
    let sent_ca = seen.server_chain.last().unwrap();
    assert_eq!(cert_hash(sent_ca), ca.hash());
    // ...then reconnects verifying against it.
    let ca_pem = ca.cert_pem().to_owned();
    let pinned = client_config(&ca_pem, None).unwrap();
    handshake(server, pinned, ANY_NODE_SERVER_NAME)
        .await
        .unwrap();
}
