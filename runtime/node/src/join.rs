//! Token join: how a new node or a CLI user gets a certificate from a running node, and how a
//! node signs one.
//!
//! The joiner holds a token: the SHA-256 of the cluster CA certificate and a secret.
//! 1. It asks the seed for the CA certificate over TLS without verifying the server (it cannot
//!    yet), and checks the certificate's hash against the token's pin.
//! 2. It reconnects, now verifying the seed against that CA, and sends a certificate signing
//!    request with an HMAC made with the token's secret over its role, name, the request, a
//!    timestamp and a nonce.
//! 3. The seed checks the HMAC, the time window and that the nonce is new, and signs a
//!    certificate issued to the requested name, whatever the request itself says. A node also
//!    receives the cluster secret and the gossip keys; while the cluster has fewer than three
//!    live CA holders, or when it asks (`--ca-holder`), the CA key and the token secret too, so
//!    that it can admit further nodes when the first one is down ([`crate::ca_holders`]).
//!
//! A node that is not a CA holder forwards the request to a live holder
//! ([`crate::ca_holders::forward_join`]), which checks the token and signs.

use crate::node::Inner;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_client::NodeClient;
use steinadler_security::{ANY_NODE_SERVER_NAME, Role, SecurityError, Token};
use steinadler_transport::{self as transport, ClientTls};
use tonic::Status;

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The seed could not be reached.
    #[error("cannot reach the seed node at {addr}: {detail}. Pass a running member's gRPC address")]
    Connect {
        /// The seed's address.
        addr: String,
        /// The cause, with its chain.
        detail: String,
    },
    /// The seed's CA does not match the token's pin.
    #[error(
        "the node at {addr} presents a cluster CA whose SHA-256 is {got}, but the token pins {want}: \
         the token belongs to another cluster, or something sits between you and the node. \
         Print the right token with `steinadler cluster token --data-dir DIR` on a member"
    )]
    Pin {
        /// The seed's address.
        addr: String,
        /// The hash the seed's CA has.
        got: String,
        /// The hash in the token.
        want: String,
    },
    /// The seed refused the request: `UNAUTHENTICATED` for a wrong or replaced token,
    /// `PERMISSION_DENIED` for an expired or used-up one, `UNAVAILABLE` when a use-limited
    /// token's maker cannot be asked.
    #[error("the node at {addr} refused to join us ({code:?}): {message}")]
    Refused {
        /// The seed's address.
        addr: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// Its reason.
        message: String,
    },
    /// The reply or local material was unusable.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// What a successful join returns: the seed's reply and the private key of the certificate.
#[derive(Debug)]
pub struct Joined {
    /// The certificate, the CA and, for nodes, the cluster's secrets.
    pub reply: pb::JoinReply,
    /// The private key that goes with `reply.cert_pem`, PEM.
    pub key_pem: String,
}

/// Gets a certificate for `name` in `role` from the node at `seed`, authenticated by `token`.
///
/// # Errors
///
/// [`JoinError::Pin`] if the seed's CA is not the one the token names, [`JoinError::Refused`]
/// for a wrong token or name, [`JoinError::Connect`] if the seed cannot be reached.
pub async fn request_certificate(
    seed: &str,
    token: &Token,
    role: Role,
    name: &str,
) -> Result<Joined, JoinError> {
    request_certificate_as(seed, token, role, name, false).await
}

/// [`request_certificate`], for a node that asks to become a CA holder when `ca_holder`
/// (`--ca-holder`): it then receives the CA key and the token secret even when three live CA
/// holders are known.
///
/// # Errors
///
/// As [`request_certificate`].
pub async fn request_certificate_as(
    seed: &str,
    token: &Token,
    role: Role,
    name: &str,
    ca_holder: bool,
) -> Result<Joined, JoinError> {
    let connect_err = |e: tonic::transport::Error| JoinError::Connect {
        addr: seed.to_owned(),
        detail: transport::error_chain(&e),
    };
    let refused = |s: Status| JoinError::Refused {
        addr: seed.to_owned(),
        code: s.code(),
        message: match std::error::Error::source(&s) {
            Some(cause) => format!("{}: {}", s.message(), transport::error_chain(cause)),
            None => s.message().to_owned(),
        },
    };
    // Step 1: the CA, unverified, then checked against the pin.
    let unverified = ClientTls::On {
        config: steinadler_security::unverified_client_config(),
        server_name: ANY_NODE_SERVER_NAME.to_owned(),
    };
    let channel = transport::connect(seed, unverified)
        .await
        .map_err(connect_err)?;
    let ca_pem = NodeClient::new(channel)
        .get_ca(pb::GetCaRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .ca_cert_pem;
    let got = steinadler_security::cert_hash(&steinadler_security::first_cert_der(&ca_pem)?);
    if got != token.ca_hash {
        return Err(JoinError::Pin {
            addr: seed.to_owned(),
            got: hex::encode(got),
            want: hex::encode(token.ca_hash),
        });
    }
    // Step 2: a verified connection, and the signing request.
    let verified = ClientTls::On {
        config: steinadler_security::client_config(&ca_pem, None)?,
        server_name: ANY_NODE_SERVER_NAME.to_owned(),
    };
    let channel = transport::connect(seed, verified)
        .await
        .map_err(connect_err)?;
    let csr = steinadler_security::make_csr(name)?;
    let timestamp_ms = now_ms();
    let nonce: [u8; 16] = rand::random();
    let mac =
        steinadler_security::join_mac(&token.secret, role, name, &csr.der, timestamp_ms, &nonce);
    let request = pb::JoinRequest {
        role: match role {
            Role::Node => pb::join_request::Role::Node,
            Role::Client => pb::join_request::Role::Client,
        } as i32,
        name: name.to_owned(),
        csr: csr.der.clone().into(),
        timestamp_ms,
        nonce: nonce.to_vec().into(),
        mac: mac.to_vec().into(),
        ca_holder: ca_holder && role == Role::Node,
    };
    let reply = NodeClient::new(channel)
        .join(request)
        .await
        .map_err(refused)?
        .into_inner();
    Ok(Joined {
        reply,
        key_pem: csr.key_pem,
    })
}

/// Serves a join request: checks its HMAC and signs a certificate.
///
/// `forwarded` is whether the caller presented a certificate: a non-holder forwarding a join
/// ([`crate::ca_holders::forward_join`]). Its reply passes through that node, so it never
/// carries the CA key or the token secret.
pub(crate) async fn serve(
    inner: &Inner,
    req: pb::JoinRequest,
    remote: &str,
    forwarded: bool,
) -> Result<pb::JoinReply, Status> {
    let Some(loaded) = inner.security.loaded() else {
        return Err(Status::failed_precondition(
            "this node runs --insecure: it has no cluster CA and signs nothing",
        ));
    };
    let (Some(ca), Some(secret)) = (&loaded.ca, loaded.material.token_secret) else {
        // Not a CA holder: a live holder checks the token and signs.
        return crate::ca_holders::forward_join(inner, req, remote).await;
    };
    let role = match pb::join_request::Role::try_from(req.role) {
        Ok(pb::join_request::Role::Node) => Role::Node,
        Ok(pb::join_request::Role::Client) => Role::Client,
        Err(_) => return Err(Status::invalid_argument("unknown role in the join request")),
    };
    let reject = |reason: &'static str, message: String| {
        inner.stats.rejected_join.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rejected("join", reason);
        tracing::warn!(peer = %remote, name = %req.name, %role, "refused a join: {message}");
        Status::unauthenticated(format!("join refused: {message}"))
    };
    let nonce: [u8; 16] = req.nonce[..]
        .try_into()
        .map_err(|_| reject("malformed", "the nonce is not 16 bytes".into()))?;
    steinadler_security::verify_join_mac(
        &secret,
        role,
        &req.name,
        &req.csr,
        req.timestamp_ms,
        &nonce,
        &req.mac,
    )
    .map_err(|e| {
        reject(
            crate::metrics::auth_reason(&e),
            format!(
                "{e}. Check the token: `steinadler cluster token --data-dir DIR` on a member \
                 prints the current one (a token replaced by `cluster token --new` works nowhere)"
            ),
        )
    })?;
    if !inner.security.fresh_join_nonce(nonce) {
        return Err(reject(
            "replay",
            "replayed request (its nonce was used before)".into(),
        ));
    }
    if role == Role::Node {
        steinadler_security::validate_node_name(&req.name)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let live = inner.membership.members().await;
        if live.iter().any(|m| m.name == req.name) {
            return Err(Status::already_exists(format!(
                "a live node is already named {:?}; pick another --name",
                req.name
            )));
        }
    }
    crate::tokens::admit(inner, &loaded.material.token_policy, &req.name, remote).await?;
    let validity = match role {
        Role::Node => inner.config.cert_lifetime,
        Role::Client => inner.config.client_cert_lifetime,
    };
    let cert_pem = ca
        .sign_csr(&req.csr, role, &req.name, validity)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    tracing::info!(peer = %remote, name = %req.name, %role, "signed a certificate for a joining {role}");
    let mut reply = pb::JoinReply {
        cert_pem,
        ca_cert_pem: loaded.material.ca_cert_pem.clone(),
        ..Default::default()
    };
    if role == Role::Node {
        let m = &loaded.material;
        reply.cluster_secret = m.secret.as_bytes().to_vec().into();
        reply.gossip_keys = inner
            .membership
            .gossip_keys()
            .into_iter()
            .map(|k| k.to_vec().into())
            .collect();
        if !forwarded && crate::ca_holders::grants_key(inner, req.ca_holder).await {
            tracing::info!(name = %req.name, "the joining node becomes a CA holder: it receives the CA key and the token secret");
            reply.ca_key_pem = m.ca_key_pem.clone().unwrap_or_default();
            // The secret and its lifetime read together, as they are now.
            let token = crate::tokens::state(inner);
            reply.token_secret = token.secret.clone();
            reply.token = Some(token);
        }
        reply.gossip_wire = inner.config.gossip_mode.as_str().to_owned();
        reply.gossip_addrs = inner
            .membership
            .members()
            .await
            .into_iter()
            .map(|m| m.gossip_addr.to_string())
            .collect();
    }
    Ok(reply)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
