//! Steinadler's cluster security.
//!
//! - **Certificates** ([`Ca`], [`identity_of`]): a cluster CA issues node certificates (EKU
//!   serverAuth + clientAuth, named by their first DNS SAN) and client certificates (EKU
//!   clientAuth only, named by their CN). Roles come from the EKU, so an operator's own CA works.
//! - **Joining** ([`Token`], [`join_mac`], [`make_csr`], [`Ca::sign_csr`]): a join token
//!   `SA1-<CA hash>-<secret>` pins the CA and authorises a joiner's CSR through an HMAC.
//! - **Cluster secret** ([`ClusterSecret`]): shared by all nodes; gossip and cookie keys derive
//!   from it.
//! - **Request cookies** ([`CookieSigner`], [`CookieVerifier`]): an HMAC header on node-to-node
//!   requests, with a ±30 s timestamp window and a per-sender anti-replay window over nonce
//!   counters.
//! - **Files** ([`Material`], [`ClientCredentials`], [`pki`]): node directories, CLI
//!   credentials and the offline PKI, written atomically with private modes.
//! - **TLS** ([`server_config`], [`client_config`]): rustls configs on the ring provider,
//!   TLS 1.3 only, ALPN "h2".
//!
//! Only ring is used for cryptography (no aws-lc-rs), and rustls always gets the provider
//! explicitly.

mod ca;
mod cookie;
mod crypto;
mod error;
mod files;
mod identity;
mod material;
mod pem;
pub mod pki;
mod secret;
mod tls;
mod token;
mod token_policy;
mod token_sync;

pub use ca::{
    BACKDATE, CLIENT_CERT_VALIDITY, Ca, Csr, IssuedCert, NODE_CERT_VALIDITY,
    OFFLINE_CLIENT_CERT_VALIDITY, OFFLINE_NODE_CERT_VALIDITY, make_csr,
};
pub use cookie::{COOKIE_HEADER, CookieSigner, CookieVerifier, REPLAY_WINDOW};
pub use error::{AuthError, SecurityError, TokenError};
pub use identity::{
    EXPIRY_WARNING, Identity, Role, expires_in, identity_of, sans_of, validate_client_name,
    validate_node_name,
};
pub use material::{ClientCredentials, Material, save_gossip_keys};
pub use pem::{cert_hash, certs_from_pem, first_cert_der, private_key_from_pem};
pub use secret::ClusterSecret;
pub use tls::{ANY_NODE_SERVER_NAME, client_config, server_config, unverified_client_config};
pub use token::{Token, join_mac, verify_join_mac};
pub use token_policy::{
    DEFAULT_TOKEN_TTL, TokenPolicy, TokenRefusal, format_utc_ms, load_token_uses, save_token_uses,
};
pub use token_sync::TokenAuthority;

pub(crate) use crypto::{random_bytes, sha256};
