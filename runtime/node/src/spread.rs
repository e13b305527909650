//! Spreading a module ahead of the first call: [`spread`] sends a prefetch (fetch, verify the
//! hash, compile; run nothing) to every live node through the fan-out tree ([`crate::tree`]).
//! Each relay fetches the module first and then serves as the origin for its own group, so the
//! load spreads down the tree instead of every node pulling from the one that was deployed to.
//! A node that joins later pulls on demand, as any node lacking a module does.

use crate::coordinator::NodeResult;
use crate::node::Inner;
use crate::tree::{self, Call, Peer};
use std::time::{Duration, Instant};
use steinadler_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

/// How long a spread may take.
pub(crate) const SPREAD_DEADLINE: Duration = Duration::from_secs(300);

/// Progress of a spread: the nodes that finished since the last report, out of `total`.
#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) total: usize,
    pub(crate) results: Vec<NodeResult>,
}

/// Spreads `module` (a name or id this node holds) to every live node. The first report names
/// this node, which holds the module already; the rest come as groups finish. The spread runs
/// on its own task: it goes on if nobody reads the reports.
///
/// # Errors
///
/// `NOT_FOUND` if this node does not hold the module.
pub(crate) async fn spread(
    inner: &std::sync::Arc<Inner>,
    module: &str,
) -> Result<mpsc::UnboundedReceiver<Progress>, Status> {
    let local = inner.host.resolve(module).map_err(|_| {
        Status::not_found(format!(
            "this node holds no module {module:?}; deploy it here first"
        ))
    })?;
    let members = inner.membership.members().await;
    let targets: Vec<Peer> = members
        .iter()
        .filter(|m| m.meta.grpc_addr != inner.advertised_addr)
        .map(|m| Peer {
            name: m.name.clone(),
            addr: m.meta.grpc_addr.clone(),
        })
        .collect();
    let total = targets.len() + 1;
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(Progress {
        total,
        results: vec![NodeResult {
            node: inner.config.name.clone(),
            outcome: Ok(vec![0xc0]),
            elapsed: Duration::ZERO,
        }],
    });
    let deadline = Instant::now() + SPREAD_DEADLINE;
    let call = Call {
        request: pb::InvokeRequest {
            module_id: local.id().as_bytes().to_vec().into(),
            limits: Some(pb::Limits {
                deadline_ms: u64::try_from(SPREAD_DEADLINE.as_millis()).unwrap_or(u64::MAX),
                ..Default::default()
            }),
            origin: inner.advertised_addr.clone(),
            prefetch: true,
            ..Default::default()
        },
        // Fetching and compiling again does no harm.
        idempotent: true,
        fanout: inner.config.fanout.max(1),
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut ok = 1;
        tree::forward_each(&inner, &call, targets, deadline, |results| {
            ok += results.iter().filter(|r| r.outcome.is_ok()).count();
            let _ = tx.send(Progress { total, results });
        })
        .await;
        tracing::info!(module = %local.id().short(), nodes = ok, of = total, elapsed = ?started.elapsed(), "spread a module");
    });
    Ok(rx)
}
