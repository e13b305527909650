//! The node's side of security: its TLS configurations, its identity, the cluster cookie, and
//! who may call which method.
//!
//! The material itself (certificates, keys, the cluster secret) and its cryptography live in
//! `steinadler-security`; this module decides how a node uses them:
//! - [`Security::authorize`] is called first by every gRPC method, with the method's [`Access`];
//! - [`Security::sign`] adds the cookie to every node-to-node request;
//! - [`Security::reload`] swaps in certificates changed on disk, and [`Security::install`] a
//!   renewed one ([`crate::renew`]), for new connections.
//!
//! With `--insecure` there is no material: every call is allowed and nothing is signed.

use crate::node::Stats;
use prost::Message;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use steinadler_security::{
    COOKIE_HEADER, Ca, ClusterSecret, CookieSigner, CookieVerifier, Identity, Material, Role,
    TokenPolicy, TokenRefusal,
};
use steinadler_transport::{ClientTls, Credentials, PeerInfo};
use tonic::{Request, Status};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone who completes the TLS handshake: joining, before a certificate exists.
    Public,
    /// A client or node certificate from the cluster CA: deploy, invoke, inspect.
    Client,
    /// A node certificate from the cluster CA, plus the cluster cookie: node-to-node calls.
    Node,
}

/// Certificates and the configurations built from them; replaced whole on reload.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) material: Material,
    pub(crate) identity: Identity,
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    /// Present on CA holders, the nodes that hold the CA key: they sign renewals, and join
    /// requests too when they also hold the token secret.
    pub(crate) ca: Option<Ca>,
}

impl Loaded {
    pub(crate) fn new(material: Material) -> Result<Self, steinadler_security::SecurityError> {
        let identity = material.identity()?;
        let server = steinadler_security::server_config(
            &material.ca_cert_pem,
            &material.cert_pem,
            &material.key_pem,
        )?;
        let client = steinadler_security::client_config(
            &material.ca_cert_pem,
            Some((&material.cert_pem, &material.key_pem)),
        )?;
        let ca = material
            .ca_key_pem
            .as_deref()
            .map(|key| Ca::from_pem(&material.ca_cert_pem, key))
            .transpose()?;
        Ok(Self {
            material,
            identity,
            server,
            client,
            ca,
        })
    }
}

/// The node's security state.
#[derive(Debug)]
pub(crate) struct Security {
    secure: Option<Secure>,
}

#[derive(Debug)]
struct Secure {
    /// Where the material came from, for reloads; `None` when it lives only in memory.
    dir: Option<PathBuf>,
    loaded: RwLock<Arc<Loaded>>,
    secret: ClusterSecret,
    /// One signer per destination node: each receiver's anti-replay window then follows one
    /// counter that only this node's calls to it advance.
    signers: Mutex<HashMap<String, CookieSigner>>,
    verifier: CookieVerifier,
    /// Join nonces already used, so a captured join request cannot be replayed.
    join_nonces: moka::sync::Cache<[u8; 16], ()>,
    /// Held by a reload and an install, so that a reload never reads the files between the
    /// key and the certificate an install writes.
    swapping: Mutex<()>,
    /// Joins admitted by the use-limited token this node made: its generation and the count.
    token_uses: Mutex<Option<(u64, u32)>>,
}

impl Security {
    pub(crate) fn insecure() -> Self {
        Self { secure: None }
    }

    pub(crate) fn secure(loaded: Loaded, dir: Option<PathBuf>) -> Self {
        let secret = ClusterSecret::from_bytes(*loaded.material.secret.as_bytes());
        Self {
            secure: Some(Secure {
                dir,
                signers: Mutex::new(HashMap::new()),
                verifier: CookieVerifier::new(&secret),
                secret,
                loaded: RwLock::new(Arc::new(loaded)),
                swapping: Mutex::new(()),
                token_uses: Mutex::new(None),
                join_nonces: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(2 * steinadler_security::REPLAY_WINDOW)
                    .build(),
            }),
        }
    }

    pub(crate) fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// The current certificates and configurations; `None` when insecure.
    pub(crate) fn loaded(&self) -> Option<Arc<Loaded>> {
        self.secure
            .as_ref()
            .map(|s| s.loaded.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Reloads the material from its directory. New connections use it; open ones keep theirs.
    /// False when there is nothing to reload, or the files hold what the node already uses
    /// (as after [`Security::install`] wrote them).
    pub(crate) fn reload(&self) -> Result<bool, steinadler_security::SecurityError> {
        let Some(secure) = &self.secure else {
            return Ok(false);
        };
        let Some(dir) = &secure.dir else {
            return Ok(false);
        };
        let _swapping = secure.swapping.lock().unwrap_or_else(|e| e.into_inner());
        let material = Material::load(dir)?;
        if let Some(current) = self.loaded()
            && same_certificates(&current.material, &material)
        {
            return Ok(false);
        }
        let loaded = Loaded::new(material)?;
        warn_if_expiring(&loaded);
        *secure.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(true)
    }

    /// Uses `material` from now on (for new connections) and, if the node has a directory,
    /// writes its certificate and key there (the key first, each file atomically).
    pub(crate) fn install(
        &self,
        material: Material,
    ) -> Result<(), steinadler_security::SecurityError> {
        let Some(secure) = &self.secure else {
            return Ok(());
        };
        let loaded = Loaded::new(material)?;
        let _swapping = secure.swapping.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = &secure.dir {
            loaded.material.save_node_certificate(dir)?;
        }
        *secure.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// Uses the join token `secret` with `policy` from now on, if it supersedes the one this
    /// node holds (and this node holds one: a node that signs no joins is given no token), and
    /// writes it to the node's directory, if it has one. Whether it did.
    pub(crate) fn install_token(
        &self,
        secret: [u8; 32],
        policy: TokenPolicy,
    ) -> Result<bool, steinadler_security::SecurityError> {
        let Some(secure) = &self.secure else {
            return Ok(false);
        };
        let _swapping = secure.swapping.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = self.loaded() else {
            return Ok(false);
        };
        if current.material.token_secret.is_none()
            || !policy.supersedes(&current.material.token_policy)
        {
            return Ok(false);
        }
        let mut material = current.material.clone();
        material.token_secret = Some(secret);
        material.token_policy = policy;
        if let Some(dir) = &secure.dir {
            material.save_token(dir)?;
        }
        let loaded = Loaded::new(material)?;
        *secure.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(true)
    }

    /// Counts one join against this node's own use-limited token of `policy`, unless it
    /// reached its limit; returns the count with this join. The count survives restarts in
    /// `token.uses`, when the node has a directory.
    pub(crate) fn count_token_use(&self, policy: &TokenPolicy) -> Result<u32, TokenRefusal> {
        let Some(secure) = &self.secure else {
            return Ok(0);
        };
        let mut uses = secure.token_uses.lock().unwrap_or_else(|e| e.into_inner());
        let used = match *uses {
            Some((generation, used)) if generation == policy.generation => used,
            _ => secure.dir.as_deref().map_or(0, |dir| {
                steinadler_security::load_token_uses(dir, policy.generation).unwrap_or_else(|e| {
                    tracing::warn!("cannot read the join token's use count, counting from 0: {e}");
                    0
                })
            }),
        };
        policy.check_uses(used)?;
        let used = used.saturating_add(1);
        *uses = Some((policy.generation, used));
        if let Some(dir) = &secure.dir
            && let Err(e) = steinadler_security::save_token_uses(dir, policy.generation, used)
        {
            tracing::error!("cannot save the join token's use count: {e}");
        }
        Ok(used)
    }

    /// The directory the material lives in, if any.
    pub(crate) fn dir(&self) -> Option<&PathBuf> {
        self.secure.as_ref().and_then(|s| s.dir.as_ref())
    }

    /// Checks the caller of `method` against `access`; returns its identity (none if insecure).
    ///
    /// Every refusal is logged and counted.
    /// `body` encodes the request message, for the cookie's MAC; only node methods call it.
    pub(crate) fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
        access: Access,
        stats: &Stats,
        body: impl FnOnce(&T) -> Vec<u8>,
    ) -> Result<Option<Identity>, Status> {
        let Some(secure) = &self.secure else {
            return Ok(None);
        };
        let peer = request.extensions().get::<PeerInfo>();
        let remote = peer.map_or_else(|| "unknown".to_owned(), |p| p.remote.to_string());
        let identity = peer.and_then(|p| p.identity.clone());
        if access == Access::Public {
            return Ok(identity);
        }
        let Some(identity) = identity else {
            stats
                .rejected_unauthenticated
                .fetch_add(1, Ordering::Relaxed);
            crate::metrics::rejected("unauthenticated", "no_client_certificate");
            tracing::warn!(peer = %remote, method, "rejected a request without a client certificate");
            return Err(Status::unauthenticated(
                "no client certificate: this node serves only callers with a certificate from its \
                 cluster CA. Run `steinadler login --node ADDR --token TOKEN` first",
            ));
        };
        if access == Access::Node {
            if identity.role != Role::Node {
                stats.rejected_role.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rejected("role", "client_on_node_method");
                tracing::warn!(peer = %remote, caller = %identity.name, method, "rejected a client certificate on a node-only method");
                return Err(Status::permission_denied(format!(
                    "{} holds a client certificate; only nodes may call {method}",
                    identity.name
                )));
            }
            let header = request
                .metadata()
                .get(COOKIE_HEADER)
                .and_then(|v| v.to_str().ok());
            let body = body(request.get_ref());
            if let Err(e) = secure.verifier.verify(method, &body, header) {
                stats.rejected_cookie.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rejected("cookie", crate::metrics::auth_reason(&e));
                tracing::warn!(peer = %remote, caller = %identity.name, method, "rejected a node request: {e}");
                return Err(Status::unauthenticated(e.to_string()));
            }
        }
        Ok(Some(identity))
    }

    /// Adds the cluster cookie to a node-to-node request for the node `peer`.
    pub(crate) fn sign<T: Message>(&self, request: &mut Request<T>, method: &str, peer: &str) {
        if self.secure.is_some() {
            let body = request.get_ref().encode_to_vec();
            self.add_cookie(request, method, &body, peer);
        }
    }

    /// Adds the cookie to the opening of a node-to-node stream for `peer` (its MAC covers the
    /// method and an empty body; the frames that follow are protected by TLS).
    pub(crate) fn sign_opening<T>(&self, request: &mut Request<T>, method: &str, peer: &str) {
        self.add_cookie(request, method, &[], peer);
    }

    /// Signs with the signer for `peer` (made on first use; one per destination, so that each
    /// receiver's anti-replay window follows one counter).
    fn add_cookie<T>(&self, request: &mut Request<T>, method: &str, body: &[u8], peer: &str) {
        let Some(secure) = &self.secure else {
            return;
        };
        let value = {
            let mut signers = secure.signers.lock().unwrap_or_else(|e| e.into_inner());
            signers
                .entry(peer.to_owned())
                .or_insert_with(|| CookieSigner::new(&secure.secret))
                .sign(method, body)
        };
        if let Ok(value) = value.parse() {
            request.metadata_mut().insert(COOKIE_HEADER, value);
        }
    }

    /// Records a join nonce; false if it was seen before.
    pub(crate) fn fresh_join_nonce(&self, nonce: [u8; 16]) -> bool {
        let Some(secure) = &self.secure else {
            return false;
        };
        secure.join_nonces.entry(nonce).or_insert(()).is_fresh()
    }
}

/// How the connection layer dials peers: with the current client configuration, and the
/// cookie signed for each peer.
impl Credentials for Security {
    fn client_tls(&self, peer: &str) -> ClientTls {
        match self.loaded() {
            None => ClientTls::Off,
            Some(loaded) => ClientTls::On {
                config: loaded.client.clone(),
                server_name: peer.to_owned(),
            },
        }
    }

    fn opening_cookie(&self, peer: &str) -> Vec<u8> {
        let mut signed = Request::new(());
        self.sign_opening(&mut signed, steinadler_transport::INVOKE_STREAM, peer);
        signed
            .metadata()
            .get(COOKIE_HEADER)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default()
    }
}

/// Whether two sets of material hold the same certificates, keys and token secret: what a
/// reload would change.
fn same_certificates(a: &Material, b: &Material) -> bool {
    a.ca_cert_pem == b.ca_cert_pem
        && a.ca_key_pem == b.ca_key_pem
        && a.cert_pem == b.cert_pem
        && a.key_pem == b.key_pem
        && a.token_secret == b.token_secret
        && a.token_policy == b.token_policy
}

/// Logs a warning when the node's certificate is past its renewal time, two thirds into its
/// lifetime: the node renews it then ([`crate::renew`]), so this means renewal has not worked.
pub(crate) fn warn_if_expiring(loaded: &Loaded) {
    let now = SystemTime::now();
    if now < loaded.identity.renew_at() {
        return;
    }
    let left = loaded
        .identity
        .not_after
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    tracing::warn!(
        name = %loaded.identity.name,
        seconds_left = left.as_secs(),
        "this node's certificate is past its renewal time; the node renews it from a CA holder, and failing that needs a new one (`steinadler cluster issue`, then replace node.crt and node.key: the node reloads them without a restart)"
    );
}
