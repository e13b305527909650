//! The node's side of the guest `process_op` import: a process's own send, call, spawn,
//! register and whereis, routed like the node's.

use crate::messaging::Address;
use crate::node::Inner;
use futures::future::BoxFuture;
use std::sync::{Arc, Weak};
use std::time::Duration;
use steinadler_core::{Pid, Term};
use steinadler_host::{Dest, Messenger};
use steinadler_proto::v1 as pb;

/// Holds the node weakly, so that a process never keeps a stopped node alive.
pub(crate) struct NodeMessenger(Weak<Inner>);

impl NodeMessenger {
    pub(crate) fn new(inner: &Arc<Inner>) -> Self {
        Self(Arc::downgrade(inner))
    }

    fn node(&self) -> Result<Arc<Inner>, String> {
        self.0
            .upgrade()
            .ok_or_else(|| "the node is stopping".to_owned())
    }
}

impl Messenger for NodeMessenger {
    fn send(&self, from: Pid, to: Dest, msg: Term) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.node();
        Box::pin(async move {
            inner?
                .send_to(&Address::from(to), msg, Some(from))
                .await
                .map_err(|s| s.message().to_owned())
        })
    }

    fn call(
        &self,
        from: Pid,
        to: Dest,
        msg: Term,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Term, String>> {
        let inner = self.node();
        Box::pin(async move {
            inner?
                .call_to(&Address::from(to), msg, Some(from), timeout)
                .await
                .map_err(|s| s.message().to_owned())
        })
    }

    fn spawn(
        &self,
        module: String,
        args: Term,
        name: Option<String>,
    ) -> BoxFuture<'static, Result<Pid, String>> {
        let inner = self.node();
        Box::pin(async move {
            inner?
                .spawn_local(&module, args, name)
                .await
                .map_err(|s| s.message().to_owned())
        })
    }

    fn register(&self, name: String, pid: Pid) -> Result<(), String> {
        self.node()?
            .register_local(&name, &pid)
            .map_err(|s| s.message().to_owned())
    }

    fn whereis(&self, name: String) -> BoxFuture<'static, Result<Option<Pid>, String>> {
        let inner = self.node();
        Box::pin(async move {
            let inner = inner?;
            match name.parse::<Address>().map_err(|e| e.to_string())? {
                Address::Name { name, node: None } => Ok(inner.whereis_local(&name)),
                Address::Name {
                    name,
                    node: Some(node),
                } if node == inner.config.name => Ok(inner.whereis_local(&name)),
                Address::Name {
                    name,
                    node: Some(node),
                } => whereis_remote(&inner, &name, &node).await,
                Address::Pid(_) => Err("whereis takes a name, not a pid".into()),
            }
        })
    }
}

/// Asks `node` for its process list and finds `name` in it.
async fn whereis_remote(inner: &Inner, name: &str, node: &str) -> Result<Option<Pid>, String> {
    let member = inner
        .membership
        .members()
        .await
        .into_iter()
        .find(|m| m.name == node)
        .ok_or_else(|| format!("noconnection: node {node} is not a live member"))?;
    let mut client = inner
        .peer(&member.meta.grpc_addr, &member.name)
        .await
        .map_err(|e| e.to_string())?;
    let list = client
        .list_processes(pb::ListProcessesRequest {})
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    Ok(list
        .processes
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| crate::messaging::decode_pid(&p.pid).ok()))
}
