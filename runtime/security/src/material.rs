//! On-disk security material: a node's directory ([`Material`]) and a CLI user's credentials
//! ([`ClientCredentials`]), with their file names, loading (errors name the file and what to
//! do) and atomic saving (secrets 0600, directories 0700).
//!
//! A node directory holds `ca.crt`, `ca.key` (optional: only nodes that may sign), `node.crt`,
//! `node.key`, `cluster.secret` (64 hex), `gossip.keys` (optional: one 64-hex key per line,
//! primary first; defaults to the key derived from the secret) and `token.secret` (optional,
//! 64 hex) with `token.policy` (optional, JSON: the token's generation, expiry and use limit,
//! [`TokenPolicy`]). A credentials directory holds `ca.crt`, `client.crt` and `client.key`.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::files::{
    Sensitivity, ensure_dir, hex_line, parse_hex32, parse_key_lines, path_of, read_optional,
    read_required, write_file,
};
use crate::{
    Ca, ClusterSecret, Identity, SecurityError, Token, TokenPolicy, first_cert_der, identity_of,
    private_key_from_pem, validate_node_name,
};

pub(crate) const CA_CERT: &str = "ca.crt";
pub(crate) const CA_KEY: &str = "ca.key";
pub(crate) const NODE_CERT: &str = "node.crt";
pub(crate) const NODE_KEY: &str = "node.key";
pub(crate) const SECRET: &str = "cluster.secret";
pub(crate) const GOSSIP_KEYS: &str = "gossip.keys";
pub(crate) const TOKEN_SECRET: &str = "token.secret";
pub(crate) const CLIENT_CERT: &str = "client.crt";
pub(crate) const CLIENT_KEY: &str = "client.key";

const CA_CERT_HINT: &str = "it is the cluster CA certificate; copy it from the cluster's PKI \
                            directory or from another node";
const NODE_HINT: &str = "it is this node's certificate or key; issue them from the cluster's PKI \
                         directory or join the cluster with a token";
const SECRET_HINT: &str = "it is the cluster secret (64 hex); copy it from the cluster's PKI \
                           directory or from another node";
const CLIENT_HINT: &str = "it is part of your client credentials; log in again or copy the \
                           directory the PKI's client issuing wrote";

/// Reads a certificate file and checks it parses.
fn read_cert(dir: &Path, name: &str, hint: &str) -> Result<String, SecurityError> {
    let pem = read_required(dir, name, hint)?;
    first_cert_der(&pem).map_err(|e| bad_file(dir, name, &e))?;
    Ok(pem)
}

/// Reads a private-key file and checks it parses.
fn read_key(dir: &Path, name: &str, hint: &str) -> Result<String, SecurityError> {
    let pem = read_required(dir, name, hint)?;
    private_key_from_pem(&pem).map_err(|e| bad_file(dir, name, &e))?;
    Ok(pem)
}

fn bad_file(dir: &Path, name: &str, err: &SecurityError) -> SecurityError {
    SecurityError::BadFile {
        path: path_of(dir, name),
        reason: err.to_string(),
    }
}

/// Reads `cluster.secret`.
pub(crate) fn load_secret(dir: &Path) -> Result<ClusterSecret, SecurityError> {
    let text = read_required(dir, SECRET, SECRET_HINT)?;
    Ok(ClusterSecret::from_bytes(parse_hex32(
        &path_of(dir, SECRET),
        &text,
    )?))
}

/// Reads `gossip.keys`, defaulting to the key derived from `secret`.
pub(crate) fn load_gossip_keys(
    dir: &Path,
    secret: &ClusterSecret,
) -> Result<Vec<[u8; 32]>, SecurityError> {
    match read_optional(dir, GOSSIP_KEYS)? {
        Some(text) => parse_key_lines(&path_of(dir, GOSSIP_KEYS), &text),
        None => Ok(vec![secret.gossip_key()]),
    }
}

/// Writes `cluster.secret` and (if any) `gossip.keys`.
pub(crate) fn save_secrets(
    dir: &Path,
    secret: &ClusterSecret,
    gossip_keys: &[[u8; 32]],
) -> Result<(), SecurityError> {
    write_file(
        dir,
        SECRET,
        hex_line(secret.as_bytes()).as_bytes(),
        Sensitivity::Secret,
    )?;
    if !gossip_keys.is_empty() {
        save_gossip_keys(dir, gossip_keys)?;
    }
    Ok(())
}

/// Writes a gossip key ring to `dir/gossip.keys` (primary first, mode 0600, atomically): what a
/// node does after each step of a key rotation, so that a restart keeps the new key.
///
/// # Errors
///
/// [`SecurityError::Io`] if the file cannot be written.
pub fn save_gossip_keys(dir: &Path, gossip_keys: &[[u8; 32]]) -> Result<(), SecurityError> {
    let lines: String = gossip_keys.iter().map(|k| hex_line(k)).collect();
    write_file(dir, GOSSIP_KEYS, lines.as_bytes(), Sensitivity::Secret)
}

/// A node's (or an offline PKI directory's) security material. `Debug` hides the secrets.
#[derive(Clone)]
pub struct Material {
    /// The cluster CA certificate, PEM.
    pub ca_cert_pem: String,
    /// The CA private key, PEM; only on nodes that may sign join requests.
    pub ca_key_pem: Option<String>,
    /// This node's certificate, PEM.
    pub cert_pem: String,
    /// This node's private key, PEM.
    pub key_pem: String,
    /// The cluster secret.
    pub secret: ClusterSecret,
    /// Gossip encryption keys, primary first.
    pub gossip_keys: Vec<[u8; 32]>,
    /// The join-token secret, on nodes that admit joiners.
    pub token_secret: Option<[u8; 32]>,
    /// The join token's generation, expiry and use limit (`token.policy`; defaults when
    /// missing, as for a token made before lifetimes existed).
    pub token_policy: TokenPolicy,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field(
                "ca_key_pem",
                &self.ca_key_pem.as_ref().map(|_| "[redacted]"),
            )
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .field("secret", &self.secret)
            .field(
                "gossip_keys",
                &format_args!("[{} redacted]", self.gossip_keys.len()),
            )
            .field("token_secret", &self.token_secret.map(|_| "[redacted]"))
            .field("token_policy", &self.token_policy)
            .finish()
    }
}

impl Material {
    /// Whether `dir` holds node material (has a `node.crt`).
    #[must_use]
    pub fn exists(dir: &Path) -> bool {
        dir.join(NODE_CERT).is_file()
    }

    /// Loads and checks the material in `dir`.
    ///
    /// # Errors
    ///
    /// [`SecurityError::MissingFile`], [`SecurityError::Io`] or [`SecurityError::BadFile`]
    /// naming the file, or [`SecurityError::BadCa`] if `ca.key` does not match `ca.crt`.
    pub fn load(dir: &Path) -> Result<Material, SecurityError> {
        let ca_cert_pem = read_cert(dir, CA_CERT, CA_CERT_HINT)?;
        let ca_key_pem = read_optional(dir, CA_KEY)?;
        if let Some(key) = &ca_key_pem {
            Ca::from_pem(&ca_cert_pem, key).map_err(|e| bad_file(dir, CA_KEY, &e))?;
        }
        let cert_pem = read_cert(dir, NODE_CERT, NODE_HINT)?;
        let key_pem = read_key(dir, NODE_KEY, NODE_HINT)?;
        let secret = load_secret(dir)?;
        let gossip_keys = load_gossip_keys(dir, &secret)?;
        let token_secret = read_optional(dir, TOKEN_SECRET)?
            .map(|text| parse_hex32(&path_of(dir, TOKEN_SECRET), &text))
            .transpose()?;
        let token_policy = TokenPolicy::load(dir)?;
        Ok(Material {
            ca_cert_pem,
            ca_key_pem,
            cert_pem,
            key_pem,
            secret,
            gossip_keys,
            token_secret,
            token_policy,
        })
    }

    /// Saves the material to `dir` (created 0700 if missing), each file atomically; secrets
    /// get mode 0600. Optional parts that are `None` are not written (nor removed).
    ///
    /// # Errors
    ///
    /// [`SecurityError::Io`] naming the file that could not be written.
    pub fn save(&self, dir: &Path) -> Result<(), SecurityError> {
        ensure_dir(dir)?;
        write_file(
            dir,
            CA_CERT,
            self.ca_cert_pem.as_bytes(),
            Sensitivity::Public,
        )?;
        if let Some(key) = &self.ca_key_pem {
            write_file(dir, CA_KEY, key.as_bytes(), Sensitivity::Secret)?;
        }
        write_file(
            dir,
            NODE_CERT,
            self.cert_pem.as_bytes(),
            Sensitivity::Public,
        )?;
        write_file(dir, NODE_KEY, self.key_pem.as_bytes(), Sensitivity::Secret)?;
        save_secrets(dir, &self.secret, &self.gossip_keys)?;
        self.save_token(dir)
    }

    /// Writes only the join token, if there is one: `token.policy`, then `token.secret` (each
    /// atomically): what a new token changes.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Io`] naming the file that could not be written.
    pub fn save_token(&self, dir: &Path) -> Result<(), SecurityError> {
        if let Some(token) = &self.token_secret {
            self.token_policy.save(dir)?;
            write_file(
                dir,
                TOKEN_SECRET,
                hex_line(token).as_bytes(),
                Sensitivity::Secret,
            )?;
        }
        Ok(())
    }

    /// Writes only `node.key` and `node.crt` to `dir` (in that order, each atomically): what
    /// a renewal changes.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Io`] naming the file that could not be written.
    pub fn save_node_certificate(&self, dir: &Path) -> Result<(), SecurityError> {
        write_file(dir, NODE_KEY, self.key_pem.as_bytes(), Sensitivity::Secret)?;
        write_file(
            dir,
            NODE_CERT,
            self.cert_pem.as_bytes(),
            Sensitivity::Public,
        )
    }

    /// Role, name and expiry of `node.crt`.
    ///
    /// # Errors
    ///
    /// As [`identity_of`], or [`SecurityError::Pem`] if the certificate PEM is unreadable.
    pub fn identity(&self) -> Result<Identity, SecurityError> {
        identity_of(&first_cert_der(&self.cert_pem)?)
    }

    /// SHA-256 of the CA certificate DER.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Pem`] if the CA certificate PEM is unreadable.
    pub fn ca_hash(&self) -> Result<[u8; 32], SecurityError> {
        Ok(crate::cert_hash(&first_cert_der(&self.ca_cert_pem)?))
    }

    /// The join token (CA hash and token secret), if this node has a token secret.
    #[must_use]
    pub fn token(&self) -> Option<Token> {
        Some(Token {
            ca_hash: self.ca_hash().ok()?,
            secret: self.token_secret?,
        })
    }

    /// The CA, if this node holds its key (and may therefore sign join requests).
    ///
    /// # Errors
    ///
    /// As [`Ca::from_pem`].
    pub fn ca(&self) -> Result<Option<Ca>, SecurityError> {
        self.ca_key_pem
            .as_deref()
            .map(|key| Ca::from_pem(&self.ca_cert_pem, key))
            .transpose()
    }

    /// Material for the first node of a new cluster: a new CA (key kept), a node certificate
    /// for `name` (SANs as [`Ca::issue_node`]) valid for `validity`, a cluster secret, its
    /// gossip key and a token secret: the token's first generation, which expires after
    /// [`DEFAULT_TOKEN_TTL`](crate::DEFAULT_TOKEN_TTL).
    ///
    /// # Errors
    ///
    /// [`SecurityError::BadName`] for an invalid node name, [`SecurityError::Rcgen`] if
    /// generation fails.
    pub fn bootstrap(
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        validity: Duration,
    ) -> Result<Material, SecurityError> {
        validate_node_name(name)?;
        let ca = Ca::generate()?;
        let node = ca.issue_node(name, ips, dns, validity)?;
        let secret = ClusterSecret::generate();
        Ok(Material {
            ca_cert_pem: ca.cert_pem().to_owned(),
            ca_key_pem: Some(ca.key_pem()),
            cert_pem: node.cert_pem,
            key_pem: node.key_pem,
            gossip_keys: vec![secret.gossip_key()],
            secret,
            token_secret: Some(crate::random_bytes()),
            token_policy: TokenPolicy::mint(1, name, Some(crate::DEFAULT_TOKEN_TTL), None),
        })
    }
}

/// A CLI user's credentials: `ca.crt`, `client.crt` and `client.key` in one directory.
/// `Debug` hides the key.
#[derive(Clone)]
pub struct ClientCredentials {
    /// The cluster CA certificate, PEM.
    pub ca_cert_pem: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// The client private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl ClientCredentials {
    /// Loads and checks the credentials in `dir`.
    ///
    /// # Errors
    ///
    /// [`SecurityError::MissingFile`], [`SecurityError::Io`] or [`SecurityError::BadFile`]
    /// naming the file.
    pub fn load(dir: &Path) -> Result<Self, SecurityError> {
        Ok(Self {
            ca_cert_pem: read_cert(dir, CA_CERT, CLIENT_HINT)?,
            cert_pem: read_cert(dir, CLIENT_CERT, CLIENT_HINT)?,
            key_pem: read_key(dir, CLIENT_KEY, CLIENT_HINT)?,
        })
    }

    /// Saves the credentials to `dir` (created 0700 if missing); the key gets mode 0600.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Io`] naming the file that could not be written.
    pub fn save(&self, dir: &Path) -> Result<(), SecurityError> {
        ensure_dir(dir)?;
        write_file(
            dir,
            CA_CERT,
            self.ca_cert_pem.as_bytes(),
            Sensitivity::Public,
        )?;
        write_file(
            dir,
            CLIENT_CERT,
            self.cert_pem.as_bytes(),
            Sensitivity::Public,
        )?;
        write_file(
            dir,
            CLIENT_KEY,
            self.key_pem.as_bytes(),
            Sensitivity::Secret,
        )
    }
}
