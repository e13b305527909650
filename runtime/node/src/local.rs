//! This node's own modules and invocations: loading and naming modules, running one
//! invocation under its limits, and advertising the load level in gossip.
//!
//! [`crate::node`] owns the state these work on ([`Inner`]). The coordinator and the
//! invocation stream's handler ([`crate::answer`]) call in here when an invocation lands on this
//! node; `Node::deploy` and [`crate::fetch`] load modules.

use crate::node::{Inner, ModuleEntry};
use crate::wire::{self, RemoteError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use steinadler_core::InvokeError;
use steinadler_host::LoadedModule;
use steinadler_membership::{MembershipError, NodeMeta};
use steinadler_proto::v1 as pb;
use tonic::Status;
use tracing::Instrument;

impl Inner {
    /// Compiles (or finds) a module off the async threads and records it in the index.
    pub(crate) async fn load(&self, bytes: Vec<u8>) -> Result<Arc<LoadedModule>, InvokeError> {
        let host = self.host.clone();
        let module = tokio::task::spawn_blocking(move || host.load(&bytes))
            .await
            .map_err(|e| InvokeError::InvalidModule(format!("loading failed: {e}")))??;
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules.entry(module.id()).or_insert_with(|| ModuleEntry {
            names: Vec::new(),
            size: module.size(),
            functions: module.functions().map(str::to_owned).collect(),
        });
        // No metadata update: a deploy reaches every node at once, and one alive broadcast
        // from each of N nodes to all N was a storm that the first call after `deploy --wait`
        // ran into (the design section of the README).
        Ok(module)
    }

    pub(crate) fn name_module(&self, name: &str, module: &LoadedModule) {
        self.host.set_name(name, module.id());
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = modules.get_mut(&module.id())
            && !entry.names.iter().any(|n| n == name)
        {
            entry.names.push(name.to_owned());
        }
    }

    /// Runs one invocation on this node, in a span that records its module, function, node
    /// and outcome.
    pub(crate) async fn invoke_local(
        &self,
        req: pb::InvokeRequest,
    ) -> Result<pb::InvokeReply, Status> {
        let span = crate::telemetry::run(&self.config.name, &req.module_id, &req.function);
        let reply = self.invoke_here(req).instrument(span.clone()).await;
        if let Ok(reply) = &reply {
            crate::telemetry::outcome(&span, reply);
        }
        reply
    }

    async fn invoke_here(&self, req: pb::InvokeRequest) -> Result<pb::InvokeReply, Status> {
        let started = Instant::now();
        let _ticket = self.admission.admit().await?;
        let id = wire::module_id(&req.module_id)?;
        let reply = |outcome| pb::InvokeReply {
            node: self.config.name.clone(),
            elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            outcome: Some(outcome),
        };

        let args = if !req.args.is_empty() || req.args_hash.is_empty() {
            if req.args.len() >= self.config.args_cache_threshold {
                self.stats
                    .args_bodies_received
                    .fetch_add(1, Ordering::Relaxed);
                self.args.insert(req.args.clone());
                crate::metrics::args_cache(crate::metrics::ArgsCache::Stored);
            }
            req.args
        } else {
            let hash: [u8; 32] = req.args_hash[..]
                .try_into()
                .map_err(|_| Status::invalid_argument("an argument hash is 32 bytes"))?;
            match self.args.get(&hash) {
                Some(body) => {
                    self.stats.args_cache_hits.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::args_cache(crate::metrics::ArgsCache::Hit);
                    body
                }
                None => {
                    crate::metrics::args_cache(crate::metrics::ArgsCache::Miss);
                    let e = wire::remote_error_to_wire(&RemoteError::ArgsMissing);
                    return Ok(reply(pb::invoke_reply::Outcome::Error(e)));
                }
            }
        };

        if req.prefetch {
            return Ok(match crate::fetch::ensure(self, id, &req.origin).await {
                Ok(_) => reply(pb::invoke_reply::Outcome::Value(vec![0xc0].into())),
                Err(e) => reply(pb::invoke_reply::Outcome::Error(wire::error_to_wire(&e))),
            });
        }
        // Checked before the fetch: a refused call costs no module transfer.
        let limits = self
            .config
            .maximums()
            .apply(req.limits.as_ref(), self.host.default_limits())?;
        let module = match crate::fetch::ensure(self, id, &req.origin).await {
            Ok(m) => m,
            Err(e) => {
                crate::metrics::invocation(id, None, "", Err(&e), started.elapsed());
                return Ok(reply(pb::invoke_reply::Outcome::Error(
                    wire::error_to_wire(&e),
                )));
            }
        };
        // The guest runs on this task and yields to the executor at every deadline-clock tick
        // (2 ms), so long calls do not starve the workers. Against a hop to the blocking pool
        // this saves a cross-thread wake-up each way (see the README).
        let result = self
            .host
            .invoke_async(&module, &req.function, &args, &limits)
            .await;
        crate::metrics::invocation(
            id,
            Some(&module),
            &req.function,
            result.as_ref().map(|_| ()),
            started.elapsed(),
        );
        Ok(reply(match result {
            Ok(value) => pb::invoke_reply::Outcome::Value(value.into()),
            Err(e) => pb::invoke_reply::Outcome::Error(wire::error_to_wire(&e)),
        }))
    }
}

/// At most one metadata update per this long: the changes in between go out together.
const ADVERTISE_EVERY: Duration = Duration::from_millis(500);

/// Re-advertises the load level ([`crate::admission::level`]) and the relays when they change.
/// It sleeps until the admission or the relays say something changed (an idle node does not
/// wake), then waits [`ADVERTISE_EVERY`] so that a burst of changes costs one gossiped update.
/// The module set is not advertised (`modules_digest` stays 0): the index is on gRPC.
pub(crate) async fn advertise(inner: Arc<Inner>) {
    let mut last = (0u32, Vec::new());
    loop {
        inner.meta_changed.notified().await;
        tokio::time::sleep(ADVERTISE_EVERY).await;
        let now = (inner.admission.level(), inner.relay.my_relays());
        if now == last {
            continue;
        }
        last = now.clone();
        let meta = NodeMeta {
            grpc_addr: inner.advertised_addr.clone(),
            labels: inner.config.labels.clone(),
            modules_digest: 0,
            load: now.0,
            relays: now.1,
            ca_holder: crate::ca_holders::holds_key(&inner.security),
        };
        match inner.membership.update_meta(meta).await {
            Ok(()) => {}
            // The node is leaving or stopped: nothing more to advertise.
            Err(MembershipError::NotRunning) => return,
            Err(e) => tracing::warn!("cannot advertise node metadata: {e}"),
        }
    }
}
