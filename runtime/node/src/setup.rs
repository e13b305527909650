//! Start-up security: which material a node runs with, where it came from, and which gossip
//! addresses it joins; then, while it runs, reloading certificates that change on disk.
//!
//! [`SecurityMode::Auto`] (the default) looks in `<data dir>/security` first. Without material
//! there, a node given a token joins through a seed ([`crate::join`]); a node given neither
//! creates a new cluster: a CA, its own certificate, a cluster secret and a join token.

use crate::config::{NodeConfig, SecurityMode};
use crate::join::{self, JoinError};
use crate::node::{Inner, NodeError};
use crate::security::{self, Loaded, Security};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_client::NodeClient;
use steinadler_security::{ClusterSecret, Material, Role, Token, TokenPolicy};
use steinadler_transport::{self as transport, ClientTls};

/// What start-up decided.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) security: Security,
    /// Gossip addresses learned from the seeds.
    pub(crate) gossip_seeds: Vec<SocketAddr>,
    /// Gossip keys, primary first; empty when insecure.
    pub(crate) gossip_keys: Vec<[u8; 32]>,
    /// True when this node created a new cluster.
    pub(crate) created: bool,
}

/// Loads, bootstraps or fetches (with a token) this node's security material. A bootstrapped
/// certificate covers the bound IP and the `advertised` host (an IP or a name) besides the
/// node's name.
pub(crate) async fn prepare(
    config: &NodeConfig,
    listen: SocketAddr,
    advertised: &str,
) -> Result<Setup, NodeError> {
    let security_err = |e: steinadler_security::SecurityError| NodeError::Security(e.to_string());
    let mut gossip_seeds = Vec::new();
    let mut created = false;
    let (material, dir) = match &config.security {
        SecurityMode::Insecure => {
            tracing::warn!(
                node = %config.name,
                "running INSECURE (--insecure): gRPC and gossip are plaintext and unauthenticated; anyone who reaches these ports controls the node"
            );
            for seed in &config.seeds {
                gossip_seeds.extend(seed_gossip_addrs(config, seed, ClientTls::Off).await?);
            }
            return Ok(Setup {
                security: Security::insecure(),
                gossip_seeds,
                gossip_keys: Vec::new(),
                created,
            });
        }
        SecurityMode::Dir(dir) => (
            Material::load(dir).map_err(security_err)?,
            Some(dir.clone()),
        ),
        SecurityMode::Auto { token } => {
            let dir = config.host.data_dir.as_ref().map(|d| d.join("security"));
            match (&dir, token) {
                (Some(dir), _) if Material::exists(dir) => {
                    if token.is_some() {
                        tracing::info!(dir = %dir.display(), "this node already has its certificate; ignoring the token");
                    }
                    (
                        Material::load(dir).map_err(security_err)?,
                        Some(dir.clone()),
                    )
                }
                (_, Some(token)) => {
                    let (material, seeds) = join_with_token(config, token).await?;
                    gossip_seeds = seeds;
                    (material, dir)
                }
                (_, None) => {
                    steinadler_security::validate_node_name(&config.name).map_err(security_err)?;
                    created = true;
                    let mut ips: Vec<_> = [listen.ip()]
                        .into_iter()
                        .filter(|ip| !ip.is_unspecified())
                        .collect();
                    let mut names = Vec::new();
                    match crate::addresses::host_of(advertised) {
                        Some(Ok(ip)) => ips.push(ip),
                        Some(Err(name)) => names.push(name),
                        None => {}
                    }
                    let mut material =
                        Material::bootstrap(&config.name, &ips, &names, config.cert_lifetime)
                            .map_err(security_err)?;
                    material.token_policy =
                        TokenPolicy::mint(1, &config.name, Some(config.token_ttl), None);
                    (material, dir)
                }
            }
        }
    };
    if let (Some(dir), SecurityMode::Auto { .. }) = (&dir, &config.security)
        && !Material::exists(dir)
    {
        material.save(dir).map_err(security_err)?;
    }
    let loaded = Loaded::new(material).map_err(security_err)?;
    if loaded.identity.role != Role::Node || loaded.identity.name != config.name {
        return Err(NodeError::Security(format!(
            "the certificate is issued to {} {:?}, but this node is named {:?}; start it with --name {} or issue a node certificate for this name",
            loaded.identity.role, loaded.identity.name, config.name, loaded.identity.name
        )));
    }
    security::warn_if_expiring(&loaded);
    let gossip_keys = loaded.material.gossip_keys.clone();
    if gossip_seeds.is_empty() {
        for seed in &config.seeds {
            let tls = ClientTls::On {
                config: loaded.client.clone(),
                server_name: steinadler_security::ANY_NODE_SERVER_NAME.to_owned(),
            };
            gossip_seeds.extend(seed_gossip_addrs(config, seed, tls).await?);
        }
    }
    Ok(Setup {
        security: Security::secure(loaded, dir),
        gossip_seeds,
        gossip_keys,
        created,
    })
}

/// Gets this node's certificate and the cluster's secrets from the first seed that answers.
async fn join_with_token(
    config: &NodeConfig,
    token: &str,
) -> Result<(Material, Vec<SocketAddr>), NodeError> {
    let token: Token = token
        .parse()
        .map_err(|e: steinadler_security::TokenError| NodeError::Security(e.to_string()))?;
    if config.seeds.is_empty() {
        return Err(NodeError::Security(
            "a join token needs a member to join: pass --join ADDR with a running node's gRPC address".into(),
        ));
    }
    steinadler_security::validate_node_name(&config.name)
        .map_err(|e| NodeError::Security(e.to_string()))?;
    let mut last = None;
    for seed in &config.seeds {
        match join::request_certificate_as(seed, &token, Role::Node, &config.name, config.ca_holder)
            .await
        {
            Ok(joined) => {
                let r = joined.reply;
                config.gossip_mode.check_seed(seed, &r.gossip_wire)?;
                tracing::info!(seed = %seed, "joined with the token: got a node certificate");
                let secret: [u8; 32] = r.cluster_secret[..]
                    .try_into()
                    .map_err(|_| NodeError::Security("the seed sent no cluster secret".into()))?;
                let gossip_keys = r
                    .gossip_keys
                    .iter()
                    .filter_map(|k| <[u8; 32]>::try_from(&k[..]).ok())
                    .collect::<Vec<_>>();
                let secret = ClusterSecret::from_bytes(secret);
                let material = Material {
                    ca_cert_pem: r.ca_cert_pem,
                    ca_key_pem: (!r.ca_key_pem.is_empty()).then_some(r.ca_key_pem),
                    cert_pem: r.cert_pem,
                    key_pem: joined.key_pem,
                    gossip_keys: if gossip_keys.is_empty() {
                        vec![secret.gossip_key()]
                    } else {
                        gossip_keys
                    },
                    secret,
                    token_secret: <[u8; 32]>::try_from(&r.token_secret[..]).ok(),
                    token_policy: r
                        .token
                        .as_ref()
                        .map(crate::tokens::policy_of)
                        .unwrap_or_default(),
                };
                let seeds = r
                    .gossip_addrs
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                return Ok((material, seeds));
            }
            Err(e @ (JoinError::Pin { .. } | JoinError::Refused { .. })) => {
                return Err(NodeError::Join(e));
            }
            Err(e) => {
                tracing::warn!(seed = %seed, "join attempt failed: {e}");
                last = Some(e);
            }
        }
    }
    Err(NodeError::Join(last.expect("at least one seed was tried")))
}

/// The gossip addresses of a seed's live members.
async fn seed_gossip_addrs(
    config: &NodeConfig,
    seed: &str,
    tls: ClientTls,
) -> Result<Vec<SocketAddr>, NodeError> {
    let channel = transport::connect(seed, tls).await.map_err(|e| {
        NodeError::Request(format!(
            "cannot reach the seed {seed}: {}. Pass a running member's gRPC address to --join",
            transport::error_chain(&e)
        ))
    })?;
    let reply = NodeClient::new(channel)
        .list_members(pb::ListMembersRequest {})
        .await
        .map_err(|s| NodeError::Request(format!("the seed {seed} refused: {}", s.message())))?
        .into_inner();
    config.gossip_mode.check_seed(seed, &reply.gossip_wire)?;
    Ok(reply
        .members
        .iter()
        .filter_map(|m| m.gossip_addr.parse().ok())
        .collect())
}

/// Reloads the certificates (and the token secret) when their files change or on SIGHUP, and
/// warns daily about expiry.
pub(crate) async fn watch_certificates(inner: Arc<Inner>) {
    let Some(dir) = inner.security.dir().cloned() else {
        return;
    };
    let mut last = stamp(&dir);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut daily = tokio::time::interval(Duration::from_secs(86_400));
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let reason = tokio::select! {
            _ = tick.tick() => {
                let now = stamp(&dir);
                if now == last { continue; }
                last = now;
                "the files changed"
            }
            _ = hangup => "SIGHUP",
            _ = daily.tick() => {
                if let Some(loaded) = inner.security.loaded() {
                    security::warn_if_expiring(&loaded);
                }
                continue;
            }
        };
        match inner.security.reload() {
            Ok(true) => {
                inner.peers.clear();
                tracing::info!(dir = %dir.display(), "reloaded the certificates ({reason})");
            }
            // What this node wrote itself (a renewal), or nothing new.
            Ok(false) => {}
            Err(e) => {
                tracing::error!(dir = %dir.display(), "cannot reload the certificates ({reason}), keeping the old ones: {e}")
            }
        }
    }
}

/// Modification times of the files a reload reads.
fn stamp(dir: &Path) -> Vec<Option<SystemTime>> {
    [
        "ca.crt",
        "node.crt",
        "node.key",
        "token.secret",
        "token.policy",
    ]
    .iter()
    .map(|f| {
        std::fs::metadata(PathBuf::from(dir).join(f))
            .and_then(|m| m.modified())
            .ok()
    })
    .collect()
}
