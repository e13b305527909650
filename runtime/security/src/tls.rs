//! rustls configurations for nodes and clients: TLS 1.3 only, ALPN "h2", and always the ring
//! crypto provider passed explicitly (never a process-level default).
//!
//! - [`server_config`]: a node's server side; client certificates optional, but checked against
//!   the cluster CA when presented.
//! - [`client_config`]: verifies the server against the cluster CA, by name, or as "any node"
//!   when the caller connects with [`ANY_NODE_SERVER_NAME`].
//! - [`unverified_client_config`]: the join bootstrap's one unverified connection.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::tls_err;
use crate::{
    Role, SecurityError, certs_from_pem, first_cert_der, identity_of, private_key_from_pem,
};

/// The server name that makes [`client_config`] accept any node certificate issued by the
/// cluster CA, whatever its name. Use it when you know a node's address but not its name (the
/// CLI does). `.invalid` cannot be a real DNS name.
pub const ANY_NODE_SERVER_NAME: &str = "any-node.steinadler.invalid";

/// The ALPN protocol both sides offer: gRPC runs over HTTP/2.
const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_cert_pem: &str) -> Result<Arc<RootCertStore>, SecurityError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(first_cert_der(ca_cert_pem)?)
        .map_err(|e| SecurityError::Certificate(format!("unusable CA certificate: {e}")))?;
    Ok(Arc::new(roots))
}

/// A node's server config: presents `[cert, CA cert]` with `key`. Client certificates are
/// optional, but one that is presented must chain to the CA and be within its validity
/// window, or the handshake fails. Read the peer's identity with [`identity_of`] on
/// `peer_certificates()[0]`.
///
/// # Errors
///
/// [`SecurityError::Pem`] / [`SecurityError::Certificate`] for unreadable input,
/// [`SecurityError::NotANodeCertificate`] if `cert_pem` is not a node certificate,
/// [`SecurityError::Tls`] if rustls rejects the key or configuration.
pub fn server_config(
    ca_cert_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, SecurityError> {
    let ca = first_cert_der(ca_cert_pem)?;
    let mut chain = certs_from_pem(cert_pem)?;
    if identity_of(&chain[0])?.role != Role::Node {
        return Err(SecurityError::NotANodeCertificate);
    }
    if !chain.contains(&ca) {
        chain.push(ca);
    }
    let key = private_key_from_pem(key_pem)?;
    let provider = provider();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots(ca_cert_pem)?, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(tls_err)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A client config that verifies servers against the cluster CA. The server name passed to
/// `connect` decides the name check: a DNS name (or IP) must be in the server certificate
/// (node-to-node: the peer's node name); [`ANY_NODE_SERVER_NAME`] accepts any node certificate
/// (EKU serverAuth) chaining to the CA. `identity = Some((cert_pem, key_pem))` presents a
/// client certificate.
///
/// # Errors
///
/// [`SecurityError::Pem`] / [`SecurityError::Certificate`] for unreadable input,
/// [`SecurityError::Tls`] if rustls rejects the key or configuration.
pub fn client_config(
    ca_cert_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, SecurityError> {
    let provider = provider();
    let roots = roots(ca_cert_pem)?;
    let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(tls_err)?;
    let verifier = Arc::new(ClusterServerVerifier {
        inner,
        roots,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(certs_from_pem(cert_pem)?, private_key_from_pem(key_pem)?)
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// **DANGER: accepts ANY server certificate.** For the join bootstrap only, and only to fetch
/// the cluster CA certificate: the caller must check that certificate's SHA-256 against the
/// join token's CA hash, then reconnect with [`client_config`] (pinned CA) before sending
/// anything secret (token MAC, CSR, ...). Nothing received over this connection may be trusted
/// except a CA certificate whose hash matches the pin. It presents no client certificate.
///
/// # Panics
///
/// Never in practice: the ring provider supports TLS 1.3.
#[must_use]
pub fn unverified_client_config() -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyServer {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

fn other_error(message: String) -> rustls::Error {
    let err: Box<dyn std::error::Error + Send + Sync> = message.into();
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::from(err))))
}

/// Standard webpki verification by name, plus the "any node" mode.
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

fn is_any_node(name: &ServerName<'_>) -> bool {
    matches!(name, ServerName::DnsName(dns) if dns.as_ref().eq_ignore_ascii_case(ANY_NODE_SERVER_NAME))
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !is_any_node(server_name) {
            return self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        // Chain, validity window and EKU serverAuth, without a name check.
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        match identity_of(end_entity) {
            Ok(id) if id.role == Role::Node => Ok(ServerCertVerified::assertion()),
            Ok(id) => Err(other_error(format!(
                "the server presented a {} certificate ({:?}), not a node certificate",
                id.role, id.name
            ))),
            Err(e) => Err(other_error(e.to_string())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate; still checks the handshake signature, so the server at least holds
/// the key of the certificate it presented.
#[derive(Debug)]
struct AcceptAnyServer {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
