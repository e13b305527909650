//! Join tokens across the cluster: making a new one on every live CA holder ([`mint`]), a
//! holder that was away catching up ([`run`]), and the lifetime checks every join passes
//! ([`admit`]). Only CA holders hold the token secret ([`crate::ca_holders`]): offers and
//! catch-up go to them only, and the other nodes forward joins to them.
//!
//! Each token has a generation ([`TokenPolicy`]). The node that makes a new one (`cluster token
//! --new`) takes the next generation, installs it, and offers it to every live CA holder over
//! `Node.SyncToken`, a node-only call (the caller's node certificate and the cluster cookie).
//! A node takes an offered token only if it supersedes its own (a higher generation; a tie
//! between two nodes that made one at once goes the same way everywhere), so the newest token
//! wins whatever order offers arrive in. A node that was down or cut off when the token
//! changed catches up on its own: every [`SYNC_EVERY`] it offers its token to one live member,
//! and each side takes the other's if it is newer. The partner is one it holds a connection to
//! (any member if it holds none), so the catch-up opens no connections on a large cluster. Until it has, that node still admits
//! the old token: for up to about [`SYNC_EVERY`] after it is back among the members.
//!
//! Only CA holders set tokens: an offered token carries an HMAC keyed by a key derived from the
//! CA private key ([`TokenAuthority`]), and so does a request for a new one. A node with a node
//! certificate but no CA key can neither make nor spread a token.
//!
//! A token expires (`--ttl`): every node checks the expiry before it signs. A use-limited token
//! (`--uses N`) is counted by the node that made it, and only there: another node asks it
//! (`Node.ClaimTokenUse`) before each join it admits, so the limit holds exactly across the
//! cluster, and a use-limited token admits nobody while its maker is unreachable.

use crate::node::Inner;
use rand::seq::IndexedRandom;
use std::sync::atomic::Ordering;
use std::time::Duration;
use steinadler_proto::v1 as pb;
use steinadler_security::{TokenAuthority, TokenPolicy, TokenRefusal};
use tonic::Status;

/// The gRPC paths of the node-to-node token methods, which the cookie's MAC covers.
pub(crate) const SYNC_TOKEN: &str = "/steinadler.v1.Node/SyncToken";
pub(crate) const CLAIM_TOKEN_USE: &str = "/steinadler.v1.Node/ClaimTokenUse";

/// How often a node compares its token with one random live member's.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(10);
/// How long one offer or claim may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl crate::Node {
    /// The generation, expiry and use limit of the token [`join_token`](Self::join_token)
    /// returns, if this node may sign joins.
    pub fn join_token_policy(&self) -> Option<TokenPolicy> {
        let loaded = self.inner.security.loaded()?;
        loaded.material.token_secret?;
        Some(loaded.material.token_policy.clone())
    }
}

/// The policy a [`pb::TokenState`] carries.
pub(crate) fn policy_of(state: &pb::TokenState) -> TokenPolicy {
    TokenPolicy {
        generation: state.generation,
        minted_by: state.minted_by.clone(),
        minted_at_ms: state.minted_at_ms,
        expires_at_ms: (state.expires_at_ms > 0).then_some(state.expires_at_ms),
        max_uses: (state.max_uses > 0).then_some(state.max_uses),
    }
}

/// The token this node holds, as it offers it; an empty secret if it holds none.
pub(crate) fn state(inner: &Inner) -> pb::TokenState {
    let Some(loaded) = inner.security.loaded() else {
        return pb::TokenState::default();
    };
    let m = &loaded.material;
    let Some(secret) = m.token_secret else {
        return pb::TokenState::default();
    };
    let p = &m.token_policy;
    let mac = authority(inner).map(|a| a.sign_state(&secret, p).to_vec());
    pb::TokenState {
        secret: secret.to_vec().into(),
        generation: p.generation,
        minted_by: p.minted_by.clone(),
        minted_at_ms: p.minted_at_ms,
        expires_at_ms: p.expires_at_ms.unwrap_or(0),
        max_uses: p.max_uses.unwrap_or(0),
        mac: mac.unwrap_or_default().into(),
    }
}

/// The CA holders' key, if this node holds the CA key.
fn authority(inner: &Inner) -> Option<TokenAuthority> {
    let loaded = inner.security.loaded()?;
    let pem = loaded.material.ca_key_pem.as_deref()?;
    TokenAuthority::from_ca_key_pem(pem).ok()
}

/// The secret and policy of `offered`, if a CA holder signed it (its HMAC checks against this
/// node's CA key).
fn signed(inner: &Inner, offered: &pb::TokenState) -> Option<([u8; 32], TokenPolicy)> {
    let secret = <[u8; 32]>::try_from(&offered.secret[..]).ok()?;
    let policy = policy_of(offered);
    authority(inner)?
        .state_ok(&secret, &policy, &offered.mac)
        .then_some((secret, policy))
}

/// Takes the offered token if a CA holder signed it and it is newer than this node's; whether
/// it did.
fn take(inner: &Inner, offered: &pb::TokenState, from: &str) -> bool {
    if offered.secret.is_empty() {
        return false;
    }
    let Some((secret, policy)) = signed(inner, offered) else {
        tracing::warn!(node = %inner.config.name, from, "ignored a join token that no CA holder signed (this node holds no CA key, or the token's HMAC does not match)");
        return false;
    };
    let described = policy.describe();
    match inner.security.install_token(secret, policy) {
        Ok(true) => {
            tracing::info!(node = %inner.config.name, from, "took a newer join token ({described}); the old one no longer works here");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(node = %inner.config.name, from, "cannot install a newer join token: {e}");
            false
        }
    }
}

/// Serves `Node.SyncToken`: takes the caller's token if newer, and answers with this node's,
/// but only to a caller whose offer a CA holder signed: the answer holds the token's secret.
pub(crate) fn serve_sync(
    inner: &Inner,
    offered: &pb::TokenState,
    caller: &str,
) -> Result<pb::TokenState, Status> {
    if signed(inner, offered).is_none() {
        tracing::warn!(node = %inner.config.name, caller, "refused to compare join tokens with a node whose offer no CA holder signed");
        return Err(Status::permission_denied(format!(
            "{} compares join tokens only with CA holders: the offer's HMAC does not match its CA \
             key (or it holds none)",
            inner.config.name
        )));
    }
    take(inner, offered, caller);
    Ok(state(inner))
}

/// Offers `offered` to `member`; returns its answer. The periodic catch-up is `background`
/// traffic: it uses a pooled link, or one that is not kept when the pool has no room, and
/// does not keep a link from closing when idle.
async fn offer(
    inner: &Inner,
    member: &steinadler_membership::Member,
    offered: pb::TokenState,
    background: bool,
) -> Result<pb::TokenState, String> {
    let (addr, name) = (&member.meta.grpc_addr, &member.name);
    let channel = if background {
        inner.peers.background_channel(addr, name).await
    } else {
        inner.peer_channel(addr, name).await
    };
    let mut client = pb::node_client::NodeClient::new(channel.map_err(|e| e.to_string())?);
    let mut request = tonic::Request::new(offered);
    request.set_timeout(CALL_TIMEOUT);
    inner.security.sign(&mut request, SYNC_TOKEN, &member.name);
    client
        .sync_token(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.message().to_owned())
}

/// Makes a new join token on this node, living `req.ttl_ms` (the node's default if 0) and
/// admitting `req.max_uses` joins (any number if 0), and offers it to every live CA holder.
pub(crate) async fn mint(
    inner: &Inner,
    req: pb::NewTokenRequest,
) -> Result<pb::NewTokenReply, Status> {
    let Some(loaded) = inner.security.loaded() else {
        return Err(Status::failed_precondition(
            "this cluster runs --insecure: nodes join without tokens",
        ));
    };
    let m = &loaded.material;
    let proven =
        authority(inner).is_some_and(|a| a.request_ok(req.ttl_ms, req.max_uses, &req.proof));
    if loaded.ca.is_some() && m.token_secret.is_some() && !proven {
        return Err(Status::permission_denied(
            "only a CA holder may make a join token (a token admits nodes, which receive the CA \
             key): run the command with the data dir of a node that holds ca.key",
        ));
    }
    if loaded.ca.is_none() || m.token_secret.is_none() {
        let holders: Vec<String> = crate::ca_holders::live(inner)
            .await
            .into_iter()
            .map(|m| m.name)
            .collect();
        return Err(Status::failed_precondition(format!(
            "{} cannot make join tokens: it is not a CA holder (it holds no CA key or token \
             secret). Run the command with the data dir of a CA holder, a node that holds \
             ca.key (live holders: {})",
            inner.config.name,
            if holders.is_empty() {
                "none".to_owned()
            } else {
                holders.join(", ")
            }
        )));
    }
    let ttl = match req.ttl_ms {
        0 => inner.config.token_ttl,
        ms => Duration::from_millis(ms),
    };
    let max_uses = (req.max_uses > 0).then_some(req.max_uses);
    let generation = m.token_policy.generation.saturating_add(1);
    let policy = TokenPolicy::mint(generation, &inner.config.name, Some(ttl), max_uses);
    let described = policy.describe();
    let ca_hash = m
        .ca_hash()
        .map_err(|e| Status::internal(format!("cannot read this node's CA certificate: {e}")))?;
    let installed = inner
        .security
        .install_token(steinadler_security::Token::generate(ca_hash).secret, policy)
        .map_err(|e| Status::internal(format!("cannot save the new token: {e}")))?;
    if !installed {
        return Err(Status::aborted(
            "another new token arrived meanwhile; run the command again",
        ));
    }
    let mine = state(inner);
    tracing::info!(node = %inner.config.name, "made a new join token ({described}); offering it to every live CA holder");
    // Only CA holders hold the token secret.
    let members = crate::ca_holders::live(inner).await;
    let offers = members.iter().map(|member| {
        let mine = mine.clone();
        async move {
            match offer(inner, member, mine.clone(), false).await {
                Ok(theirs) if theirs.secret == mine.secret => Ok(member.name.clone()),
                Ok(theirs) => Err(format!(
                    "{}: holds a newer token (generation {} from {}), which wins",
                    member.name, theirs.generation, theirs.minted_by
                )),
                Err(e) => Err(format!("{}: {e}", member.name)),
            }
        }
    });
    let mut reply = pb::NewTokenReply {
        nodes: vec![inner.config.name.clone()],
        ..Default::default()
    };
    for outcome in futures::future::join_all(offers).await {
        match outcome {
            Ok(name) => reply.nodes.push(name),
            Err(e) => reply.missed.push(e),
        }
    }
    if !reply.missed.is_empty() {
        tracing::warn!(missed = ?reply.missed, "some members did not take the new join token yet; they catch up within about {SYNC_EVERY:?} of being reachable");
    }
    reply.token = state_token(inner);
    reply.state = Some(pb::TokenState {
        secret: Default::default(),
        ..mine
    });
    Ok(reply)
}

/// The token string of this node's current token.
fn state_token(inner: &Inner) -> String {
    inner
        .security
        .loaded()
        .and_then(|l| l.material.token())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Every [`SYNC_EVERY`], offers this node's token to one live member, picked at random among
/// those it holds a connection to (among all when it holds none), and takes its answer if
/// newer, until the node stops.
pub(crate) async fn run(inner: std::sync::Arc<Inner>) {
    let mut stopping = inner.stopping.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(SYNC_EVERY) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let mine = state(&inner);
        if mine.secret.is_empty() || mine.mac.is_empty() {
            // No token, or no CA key to sign it with: nothing this node may offer.
            continue;
        }
        let members = crate::ca_holders::live(&inner).await;
        let others: Vec<_> = members.iter().collect();
        let connected: std::collections::HashSet<String> =
            inner.peers.connected().into_iter().collect();
        let near: Vec<_> = (others.iter().copied())
            .filter(|m| connected.contains(&m.name))
            .collect();
        let pool = if near.is_empty() { &others } else { &near };
        let Some(member) = pool.choose(&mut rand::rng()) else {
            continue;
        };
        match offer(&inner, member, mine, true).await {
            Ok(theirs) => {
                take(&inner, &theirs, &member.name);
            }
            Err(e) => tracing::debug!(peer = %member.name, "cannot compare join tokens: {e}"),
        }
    }
}

/// Checks the token's lifetime before a join is signed: its expiry, then, for a use-limited
/// token, one use counted by the node that made it.
pub(crate) async fn admit(
    inner: &Inner,
    policy: &TokenPolicy,
    joiner: &str,
    remote: &str,
) -> Result<(), Status> {
    let refuse = |reason: &'static str, refusal: &TokenRefusal| {
        inner.stats.rejected_join.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rejected("join", reason);
        tracing::warn!(peer = %remote, name = %joiner, "refused a join: {refusal}");
        Status::permission_denied(format!("join refused: {refusal}"))
    };
    policy
        .check_expiry()
        .map_err(|r| refuse("token_expired", &r))?;
    let Some(max) = policy.max_uses else {
        return Ok(());
    };
    if policy.minted_by == inner.config.name || policy.minted_by.is_empty() {
        let used = inner
            .security
            .count_token_use(policy)
            .map_err(|r| refuse("token_used_up", &r))?;
        tracing::info!(name = %joiner, used, max, "counted a use of the join token");
        return Ok(());
    }
    claim_at_minter(inner, policy, joiner)
        .await
        .inspect_err(|status| {
            if status.code() == tonic::Code::PermissionDenied {
                inner.stats.rejected_join.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rejected("join", "token_used_up");
            }
        })
}

/// Asks the node that made the use-limited token `policy` to count one use.
async fn claim_at_minter(inner: &Inner, policy: &TokenPolicy, joiner: &str) -> Result<(), Status> {
    let maker = &policy.minted_by;
    let unavailable = |why: String| {
        Status::unavailable(format!(
            "join refused for now: the join token admits only {} joins, and only the node that \
             made it ({maker}) counts them, but {why}. Join through {maker} once it is back, or \
             make a new token with `steinadler cluster token --new`",
            policy.max_uses.unwrap_or(0)
        ))
    };
    let members = inner.membership.members().await;
    let Some(member) = members.iter().find(|m| &m.name == maker) else {
        return Err(unavailable(format!("{maker} is not a live member")));
    };
    let mut client = inner
        .peer(&member.meta.grpc_addr, &member.name)
        .await
        .map_err(|e| unavailable(format!("it cannot be reached: {e}")))?;
    let mut request = tonic::Request::new(pb::ClaimTokenUseRequest {
        generation: policy.generation,
        name: joiner.to_owned(),
    });
    request.set_timeout(CALL_TIMEOUT);
    inner.security.sign(&mut request, CLAIM_TOKEN_USE, maker);
    match client.claim_token_use(request).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::PermissionDenied => Err(s),
        Err(s) => Err(unavailable(format!("it answered: {}", s.message()))),
    }
}

/// Serves `Node.ClaimTokenUse`: counts one use of this node's token of `req.generation`.
pub(crate) fn serve_claim(
    inner: &Inner,
    req: &pb::ClaimTokenUseRequest,
    caller: &str,
) -> Result<pb::ClaimTokenUseReply, Status> {
    let policy = inner
        .security
        .loaded()
        .map(|l| l.material.token_policy.clone())
        .unwrap_or_default();
    if policy.generation != req.generation || policy.minted_by != inner.config.name {
        return Err(Status::failed_precondition(format!(
            "{} does not count the uses of that token (generation {}): it holds generation {} \
             made by {:?}. The nodes have not caught up yet; try again in {} s",
            inner.config.name,
            req.generation,
            policy.generation,
            policy.minted_by,
            SYNC_EVERY.as_secs()
        )));
    }
    let used = inner.security.count_token_use(&policy).map_err(|r| {
        tracing::warn!(node = %caller, name = %req.name, "refused a join through another node: {r}");
        Status::permission_denied(format!("join refused: {r}"))
    })?;
    tracing::info!(node = %caller, name = %req.name, used, "counted a use of the join token for a join through another node");
    Ok(pb::ClaimTokenUseReply { used })
}
