//! Certificate renewal: this node renewing its own certificate ([`run`]), and a CA holder
//! signing a renewal for the node (`Node.Renew`) or client (`Node.RenewClient`) that asks
//! ([`serve`]). The client's side is [`Client::renew_certificate`](crate::Client::renew_certificate).
//!
//! A node renews at two thirds of its certificate's lifetime
//! ([`Identity::renew_at`](steinadler_security::Identity::renew_at)). It makes a new key and a
//! CSR; a CA holder (a node that holds the CA key) signs it. A CA holder signs its own;
//! another node asks the live CA holders ([`crate::ca_holders`]), one by one, over its current mutual-TLS identity and
//! with the cluster cookie, until a CA holder signs. The CA holder names the new certificate
//! as the caller's current one names it, and refuses a request for any other name with
//! `PERMISSION_DENIED`; the private key never leaves the renewing node. The new certificate
//! is used for new connections at once (and written to the node's directory, if it has one),
//! as a changed file would be.
//!
//! A failed attempt is logged as a warning, counted ([`crate::Stats::renewal_failures`] and
//! `steinadler_cert_renewals{outcome="error"}`) and retried with backoff, until it works or
//! the certificate is replaced.

use crate::node::Inner;
use crate::security::Loaded;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use steinadler_proto::v1 as pb;
use steinadler_security::{Identity, Role, SecurityError};
use tonic::Status;

/// The gRPC path of the renewal method, which the cookie's MAC covers.
pub(crate) const RENEW: &str = "/steinadler.v1.Node/Renew";

/// The first wait after a failed attempt; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between failed attempts.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The longest the loop sleeps before looking again (a replaced certificate, a clock step).
const LOOK_AGAIN: Duration = Duration::from_secs(300);

/// Why a renewal attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenewError {
    /// The CSR or the new certificate could not be made or used.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// No live member signed: none holds the CA key, or none could be reached.
    #[error(
        "no CA holder signed the renewal ({0}). A CA holder is a node that holds the cluster's \
         CA key (ca.key); keep one running"
    )]
    NoCaHolder(String),
    /// The certificate that came back does not fit this node.
    #[error("the renewed certificate from {from} is unusable: {reason}")]
    Unusable {
        /// The signer.
        from: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Renews this node's certificate whenever it is due, until the node stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut stopping = inner.stopping.clone();
    let mut failures: u32 = 0;
    loop {
        let Some(loaded) = inner.security.loaded() else {
            return;
        };
        let due = loaded.identity.renew_at();
        let wait = if failures == 0 {
            due.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        } else {
            backoff(failures)
        };
        tokio::select! {
            () = tokio::time::sleep(wait.min(LOOK_AGAIN)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let Some(loaded) = inner.security.loaded() else {
            return;
        };
        if SystemTime::now() < loaded.identity.renew_at() {
            // Not due yet, or replaced meanwhile (a file reload): look again.
            failures = 0;
            continue;
        }
        match renew(&inner, &loaded).await {
            Ok((from, identity)) => {
                failures = 0;
                inner.stats.renewals.fetch_add(1, Ordering::Relaxed);
                crate::metrics::cert_renewal(true);
                tracing::info!(
                    node = %inner.config.name, signer = %from,
                    valid_for_s = secs_left(identity.not_after),
                    "renewed this node's certificate"
                );
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                inner.stats.renewal_failures.fetch_add(1, Ordering::Relaxed);
                crate::metrics::cert_renewal(false);
                tracing::warn!(
                    node = %inner.config.name, attempts = failures,
                    expires_in_s = secs_left(loaded.identity.not_after),
                    retry_in_s = backoff(failures).as_secs(),
                    "cannot renew this node's certificate: {e}"
                );
            }
        }
    }
}

/// The wait after `failures` failed attempts in a row: 1 s, 2 s, 4 s, ... up to a minute.
fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (RETRY_FIRST * (1u32 << shift)).min(RETRY_MAX)
}

fn secs_left(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// One attempt: a new key and CSR, signed by this node or a live CA holder, then installed.
/// Returns the signer's name and the new certificate's identity.
async fn renew(inner: &Inner, loaded: &Loaded) -> Result<(String, Identity), RenewError> {
    let name = &loaded.identity.name;
    let csr = steinadler_security::make_csr(name)?;
    let (from, cert_pem, ca_cert_pem) = match &loaded.ca {
        Some(ca) => {
            // Its own certificate's further names (a new cluster's first covers its address).
            let (ips, dns) = steinadler_security::sans_of(&steinadler_security::first_cert_der(
                &loaded.material.cert_pem,
            )?)?;
            let lifetime = inner.config.cert_lifetime;
            let cert = ca.sign_node_csr(&csr.der, name, &ips, &dns, lifetime)?;
            (name.clone(), cert, loaded.material.ca_cert_pem.clone())
        }
        None => ask_ca_holders(inner, name, &csr.der).await?,
    };
    let unusable = |reason: String| RenewError::Unusable {
        from: from.clone(),
        reason,
    };
    if ca_cert_pem.trim() != loaded.material.ca_cert_pem.trim() {
        return Err(unusable(
            "it chains to another CA than this node's ca.crt".into(),
        ));
    }
    let mut material = loaded.material.clone();
    material.cert_pem = cert_pem;
    material.key_pem = csr.key_pem;
    let identity = material.identity()?;
    if identity.role != Role::Node || identity.name != *name {
        return Err(unusable(format!(
            "it is issued to {} {:?}, not to this node",
            identity.role, identity.name
        )));
    }
    inner.security.install(material)?;
    inner.peers.clear();
    Ok((from, identity))
}

/// Asks the live CA holders (as gossip advertises them, [`crate::ca_holders::live`]), other
/// than this node, to sign `csr`; the first that does wins. Returns its name, the certificate
/// and the CA certificate.
async fn ask_ca_holders(
    inner: &Inner,
    name: &str,
    csr: &[u8],
) -> Result<(String, String, String), RenewError> {
    let mut refused = Vec::new();
    let members = crate::ca_holders::live(inner).await;
    for member in members.iter().filter(|m| m.name != name) {
        let mut client = match inner.peer(&member.meta.grpc_addr, &member.name).await {
            Ok(client) => client,
            Err(e) => {
                refused.push(format!("{}: {e}", member.name));
                continue;
            }
        };
        let mut request = tonic::Request::new(pb::RenewRequest {
            name: name.to_owned(),
            csr: csr.to_vec().into(),
        });
        request.set_timeout(Duration::from_secs(10));
        inner.security.sign(&mut request, RENEW, &member.name);
        match client.renew(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                return Ok((member.name.clone(), reply.cert_pem, reply.ca_cert_pem));
            }
            Err(status) => refused.push(format!("{}: {}", member.name, status.message())),
        }
    }
    if refused.is_empty() {
        refused.push("no live member advertises itself as a CA holder".into());
    }
    Err(RenewError::NoCaHolder(refused.join("; ")))
}

/// Serves `Node.Renew` (`role` node) or `Node.RenewClient` (`role` client) for `caller`, whose
/// certificate (and, for a node, cookie) was checked: signs `req.csr` for the caller's own
/// name in its own role, and for no other.
pub(crate) fn serve(
    inner: &Inner,
    caller: Option<Identity>,
    req: pb::RenewRequest,
    remote: &str,
    role: Role,
) -> Result<pb::RenewReply, Status> {
    let (Some(loaded), Some(caller)) = (inner.security.loaded(), caller) else {
        return Err(Status::failed_precondition(
            "this node runs --insecure: it has no cluster CA and signs nothing",
        ));
    };
    let refuse = |reason: &'static str, message: String| {
        inner.stats.rejected_renewal.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rejected("renewal", reason);
        tracing::warn!(peer = %remote, caller = %caller.name, asked = %req.name, %role, "refused a renewal: {message}");
        Status::permission_denied(message)
    };
    if caller.role != role {
        return Err(refuse(
            "role",
            format!(
                "{} holds a {} certificate; it cannot renew a {role} certificate",
                caller.name, caller.role
            ),
        ));
    }
    if req.name != caller.name {
        return Err(refuse(
            "other_name",
            format!(
                "{} may renew only its own certificate, not one for {:?}",
                caller.name, req.name
            ),
        ));
    }
    let Some(ca) = &loaded.ca else {
        return Err(Status::failed_precondition(format!(
            "{} is not a CA holder (it holds no CA key); ask another node",
            inner.config.name
        )));
    };
    let lifetime = match role {
        Role::Node => inner.config.cert_lifetime,
        Role::Client => inner.config.client_cert_lifetime,
    };
    let cert_pem = ca
        .sign_csr(&req.csr, role, &caller.name, lifetime)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    tracing::info!(peer = %remote, name = %caller.name, %role, "signed a renewed {role} certificate");
    Ok(pb::RenewReply {
        cert_pem,
        ca_cert_pem: loaded.material.ca_cert_pem.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }
}
