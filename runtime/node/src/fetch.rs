//! Pulling a module this node lacks: from the caller's origin first, then from any live member,
//! with its hash verified before it is compiled. Concurrent invocations that need the same
//! missing module share one fetch.

use crate::node::Inner;
use std::sync::Arc;
use steinadler_core::{InvokeError, ModuleId};
use steinadler_host::LoadedModule;
use steinadler_proto::v1 as pb;

/// The module with `id`, loaded locally or fetched from `origin` or a peer.
pub(crate) async fn ensure(
    inner: &Inner,
    id: ModuleId,
    origin: &str,
) -> Result<Arc<LoadedModule>, InvokeError> {
    match inner.host.get(id) {
        Ok(module) => return Ok(module),
        Err(InvokeError::ModuleNotFound(_)) => {}
        Err(other) => return Err(other),
    }
    inner
        .fetches
        .try_get_with(id, fetch_and_load(inner, id, origin))
        .await
        .map_err(|e| (*e).clone())
}

async fn fetch_and_load(
    inner: &Inner,
    id: ModuleId,
    origin: &str,
) -> Result<Arc<LoadedModule>, InvokeError> {
    let mut sources: Vec<String> = Vec::new();
    if !origin.is_empty() && origin != inner.grpc_addr {
        sources.push(origin.to_owned());
    }
    for member in inner.membership.members().await {
        if member.meta.grpc_addr != inner.grpc_addr && !sources.contains(&member.meta.grpc_addr) {
            sources.push(member.meta.grpc_addr);
        }
    }
    let mut failures = Vec::new();
    for source in &sources {
        match fetch_from(inner, source, id).await {
            Ok(bytes) => {
                let module = inner.load(bytes).await?;
                inner
                    .stats
                    .modules_fetched
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(module = %id.short(), from = %source, "fetched module");
                return Ok(module);
            }
            Err(e) => {
                tracing::debug!(module = %id.short(), from = %source, "fetch failed: {e}");
                failures.push(format!("{source}: {e}"));
            }
        }
    }
    Err(InvokeError::ModuleNotFound(format!(
        "{id}: no live node could provide it ({})",
        if failures.is_empty() {
            "no peers".to_owned()
        } else {
            failures.join("; ")
        }
    )))
}

/// Streams the module from one peer, bounded by the node's module size limit, and checks that
/// the bytes hash to `id`.
async fn fetch_from(inner: &Inner, addr: &str, id: ModuleId) -> Result<Vec<u8>, String> {
    let mut client = inner.peers.client(addr).await.map_err(|e| e.to_string())?;
    let request = pb::FetchModuleRequest {
        id: id.as_bytes().to_vec().into(),
    };
    let mut stream = client
        .fetch_module(request)
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(|s| s.message().to_owned())? {
        if bytes.len() + chunk.data.len() > inner.config.max_module_bytes {
            return Err(format!(
                "the module is larger than the limit of {} bytes",
                inner.config.max_module_bytes
            ));
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let got = ModuleId::of(&bytes);
    if got != id {
        tracing::warn!(module = %id.short(), from = %addr, got = %got.short(), "refused a module whose body does not match its hash");
        return Err(format!("the body hashes to {got}, not {id}; refused"));
    }
    Ok(bytes)
}
