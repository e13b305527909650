//! Pulling a module this node lacks: from the caller's origin first, then from any live member,
//! with its hash verified before it is compiled. Concurrent invocations that need the same
//! missing module share one fetch.

use crate::node::Inner;
use std::sync::Arc;
use steinadler_core::{InvokeError, ModuleId};
use steinadler_host::LoadedModule;
use steinadler_proto::v1 as pb;
use tracing::Instrument;

/// The module with `id`, loaded locally or fetched from `origin` (the gRPC address of a node
/// that holds it) or a peer.
pub(crate) async fn ensure(
    inner: &Inner,
    id: ModuleId,
    origin: &str,
) -> Result<Arc<LoadedModule>, InvokeError> {
    match inner.host.get(id) {
        Ok(module) => {
            crate::metrics::module_lookup(true);
            return Ok(module);
        }
        Err(InvokeError::ModuleNotFound(_)) => crate::metrics::module_lookup(false),
        Err(other) => return Err(other),
    }
    // Boxed: the fetch's state is large, and every invocation's future would otherwise carry
    // (and copy) room for it although the module is almost always here already.
    let span = crate::telemetry::local("fetch module", &inner.config.name, &id.short());
    Box::pin(
        async {
            inner
                .fetches
                .try_get_with(id, fetch_and_load(inner, id, origin))
                .await
                .map_err(|e| (*e).clone())
        }
        .instrument(span),
    )
    .await
}

async fn fetch_and_load(
    inner: &Inner,
    id: ModuleId,
    origin: &str,
) -> Result<Arc<LoadedModule>, InvokeError> {
    // (gRPC address, node name) as membership claims them; with TLS on, the peer's certificate
    // must carry that name, so an origin that is no live member cannot be reached securely.
    let members = inner.membership.members().await;
    let mut sources: Vec<(String, String)> = Vec::new();
    if !origin.is_empty() && origin != inner.advertised_addr {
        let name = members
            .iter()
            .find(|m| m.meta.grpc_addr == origin)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        sources.push((origin.to_owned(), name));
    }
    for member in members {
        if member.meta.grpc_addr != inner.advertised_addr
            && !sources
                .iter()
                .any(|(addr, _)| *addr == member.meta.grpc_addr)
        {
            sources.push((member.meta.grpc_addr, member.name));
        }
    }
    let mut failures = Vec::new();
    for (source, name) in &sources {
        let span = crate::telemetry::hop("fetch", &inner.config.name, name);
        match fetch_from(inner, source, name, id).instrument(span).await {
            Ok(bytes) => {
                let module = inner.load(bytes).await.inspect_err(|_| {
                    crate::metrics::module_fetch(false);
                })?;
                inner
                    .stats
                    .modules_fetched
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::metrics::module_fetch(true);
                tracing::info!(module = %id.short(), from = %source, "fetched module");
                return Ok(module);
            }
            Err(e) => {
                tracing::debug!(module = %id.short(), from = %source, "fetch failed: {e}");
                failures.push(format!("{source}: {e}"));
            }
        }
    }
    crate::metrics::module_fetch(false);
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
async fn fetch_from(
    inner: &Inner,
    addr: &str,
    name: &str,
    id: ModuleId,
) -> Result<Vec<u8>, String> {
    let mut client = inner.peer(addr, name).await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(pb::FetchModuleRequest {
        id: id.as_bytes().to_vec().into(),
    });
    inner
        .security
        .sign(&mut request, crate::service::FETCH_MODULE, name);
    crate::telemetry::inject(request.metadata_mut());
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
