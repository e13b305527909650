//! The offline PKI behind `steinadler cluster init DIR`: a directory holding the cluster CA
//! (`ca.crt`, `ca.key`) and secrets (`cluster.secret`, `gossip.keys`), from which node
//! directories (`DIR/nodes/NAME`) and client credentials (`DIR/clients/NAME`) are issued.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::files::{Sensitivity, ensure_dir, read_required, write_file};
use crate::material::{CA_CERT, CA_KEY, SECRET, load_gossip_keys, load_secret, save_secrets};
use crate::{
    Ca, ClientCredentials, ClusterSecret, Material, OFFLINE_CLIENT_CERT_VALIDITY,
    OFFLINE_NODE_CERT_VALIDITY, SecurityError, TokenPolicy, validate_client_name,
    validate_node_name,
};

const PKI_HINT: &str = "this is not a cluster PKI directory; create one with `steinadler \
                        cluster init DIR` and issue from it";

fn load_ca(dir: &Path) -> Result<Ca, SecurityError> {
    let cert = read_required(dir, CA_CERT, PKI_HINT)?;
    let key = read_required(dir, CA_KEY, PKI_HINT)?;
    Ca::from_pem(&cert, &key)
}

/// Creates a cluster PKI in `dir`: a new CA (`ca.crt`, `ca.key`), a cluster secret
/// (`cluster.secret`) and its gossip key (`gossip.keys`).
///
/// # Errors
///
/// [`SecurityError::AlreadyExists`] if `dir` already holds a `ca.key` or `cluster.secret`
/// (overwriting would orphan every certificate issued so far), [`SecurityError::Io`] if a file
/// cannot be written.
pub fn init(dir: &Path) -> Result<(), SecurityError> {
    for existing in [CA_KEY, SECRET] {
        let path = dir.join(existing);
        if path.exists() {
            return Err(SecurityError::AlreadyExists {
                path,
                hint: "this directory already holds a cluster PKI, and replacing it would orphan \
                       every certificate it issued; use another directory, or delete this one \
                       if you really mean to start a new cluster"
                    .to_owned(),
            });
        }
    }
    ensure_dir(dir)?;
    let ca = Ca::generate()?;
    let secret = ClusterSecret::generate();
    // The key first: if anything fails later, a re-run stops at the existing key instead of
    // pairing a new key with an old certificate.
    write_file(dir, CA_KEY, ca.key_pem().as_bytes(), Sensitivity::Secret)?;
    write_file(dir, CA_CERT, ca.cert_pem().as_bytes(), Sensitivity::Public)?;
    save_secrets(dir, &secret, &[secret.gossip_key()])?;
    tracing::info!(dir = %dir.display(), ca_hash = %hex::encode(ca.hash()), "cluster PKI created");
    Ok(())
}

/// Issues a node certificate for `name` (SANs as [`Ca::issue_node`]) and writes
/// `dir/nodes/NAME/{ca.crt,node.crt,node.key,cluster.secret,gossip.keys}`: a directory usable
/// as-is by `node start --secure`. It holds no `ca.key`: offline nodes do not sign. Re-issuing
/// replaces the node's previous certificate. Returns that directory.
///
/// # Errors
///
/// [`SecurityError::BadName`] for an invalid node name, [`SecurityError::MissingFile`] if `dir`
/// is not a PKI directory, [`SecurityError::Io`] if a file cannot be written.
pub fn issue_node(
    dir: &Path,
    name: &str,
    ips: &[IpAddr],
    dns: &[String],
) -> Result<PathBuf, SecurityError> {
    validate_node_name(name)?;
    let ca = load_ca(dir)?;
    let secret = load_secret(dir)?;
    let gossip_keys = load_gossip_keys(dir, &secret)?;
    let issued = ca.issue_node(name, ips, dns, OFFLINE_NODE_CERT_VALIDITY)?;
    let out = dir.join("nodes").join(name);
    Material {
        ca_cert_pem: ca.cert_pem().to_owned(),
        ca_key_pem: None,
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        secret,
        gossip_keys,
        token_secret: None,
        token_policy: TokenPolicy::default(),
    }
    .save(&out)?;
    Ok(out)
}

/// Issues a client certificate for `name` and writes `dir/clients/NAME/{ca.crt,client.crt,
/// client.key}` (what [`ClientCredentials::load`] reads). Returns that directory.
///
/// # Errors
///
/// [`SecurityError::BadName`] for an invalid client name, [`SecurityError::MissingFile`] if
/// `dir` is not a PKI directory, [`SecurityError::Io`] if a file cannot be written.
pub fn issue_client(dir: &Path, name: &str) -> Result<PathBuf, SecurityError> {
    validate_client_name(name)?;
    let ca = load_ca(dir)?;
    let issued = ca.issue_client(name, OFFLINE_CLIENT_CERT_VALIDITY)?;
    let out = dir.join("clients").join(name);
    ClientCredentials {
        ca_cert_pem: ca.cert_pem().to_owned(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    }
    .save(&out)?;
    Ok(out)
}
