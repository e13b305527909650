//! Gossip key rotation across the cluster: install the new key everywhere, then use it
//! everywhere, then remove the old one everywhere.
//!
//! Each step finishes on every live node before the next begins, so at every moment each node
//! can decrypt what every other node sends, and no node is marked dead. Each node writes its
//! key ring to `gossip.keys` in its security directory, so a restart keeps the new key.

use crate::node::Inner;
use crate::service::GOSSIP_KEY;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::gossip_key_request::Op;
use tonic::Status;

/// Applies one step on this node.
pub(crate) async fn apply(
    inner: &Inner,
    req: pb::GossipKeyRequest,
) -> Result<pb::GossipKeyReply, Status> {
    let key: [u8; 32] = req.key[..]
        .try_into()
        .map_err(|_| Status::invalid_argument("a gossip key is 32 bytes"))?;
    let op = Op::try_from(req.op).map_err(|_| Status::invalid_argument("unknown key operation"))?;
    let m = &inner.membership;
    match op {
        Op::Install => m.install_gossip_key(key),
        Op::Use => m.use_gossip_key(key),
        Op::Remove => m.remove_gossip_key(key),
    }
    .map_err(|e| Status::failed_precondition(e.to_string()))?;
    let keys = m.gossip_keys();
    if let Some(dir) = inner.security.dir()
        && let Err(e) = steinadler_security::save_gossip_keys(dir, &keys)
    {
        tracing::error!("cannot save the gossip keys to {}: {e}", dir.display());
    }
    tracing::info!(op = ?op, keys = keys.len(), "gossip key ring changed");
    Ok(pb::GossipKeyReply {
        node: inner.config.name.clone(),
        keys: u32::try_from(keys.len()).unwrap_or(u32::MAX),
    })
}

/// Rotates the gossip key on every live node.
pub(crate) async fn rotate(inner: &Inner) -> Result<pb::RotateGossipKeyReply, Status> {
    if !inner.security.is_secure() {
        return Err(Status::failed_precondition(
            "this cluster runs --insecure: gossip is not encrypted, so there is no key to rotate",
        ));
    }
    let old = *inner
        .membership
        .gossip_keys()
        .first()
        .ok_or_else(|| Status::failed_precondition("this node has no gossip key"))?;
    let new: [u8; 32] = rand::random();
    let members = inner.membership.members().await;
    for (op, key) in [(Op::Install, new), (Op::Use, new), (Op::Remove, old)] {
        let steps = members.iter().map(|member| async move {
            let req = pb::GossipKeyRequest {
                op: op as i32,
                key: key.to_vec().into(),
            };
            let result = if member.meta.grpc_addr == inner.advertised_addr {
                apply(inner, req).await.map(|_| ())
            } else {
                match inner.peer(&member.meta.grpc_addr, &member.name).await {
                    Err(e) => Err(Status::unavailable(e.to_string())),
                    Ok(mut client) => {
                        let mut request = tonic::Request::new(req);
                        inner.security.sign(&mut request, GOSSIP_KEY, &member.name);
                        client.gossip_key(request).await.map(|_| ())
                    }
                }
            };
            result.map_err(|s| format!("{}: {}", member.name, s.message()))
        });
        let failures: Vec<String> = futures::future::join_all(steps)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if !failures.is_empty() {
            return Err(Status::aborted(format!(
                "gossip key rotation stopped at the {op:?} step: {}. Nodes that finished the step keep \
                 both keys, so the cluster still gossips; run the rotation again once every node is up",
                failures.join("; ")
            )));
        }
        tracing::info!(step = ?op, nodes = members.len(), "gossip key rotation step done");
    }
    Ok(pb::RotateGossipKeyReply {
        nodes: members.into_iter().map(|m| m.name).collect(),
    })
}
