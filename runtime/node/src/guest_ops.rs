//! The node's side of the guest `process_op` import: a process's own send, call, spawn,
//! register and whereis, routed like the node's.

use crate::messaging::Address;
use crate::node::Inner;
use futures::future::BoxFuture;
use std::sync::{Arc, Weak};
use std::time::Duration;
use steinadler_core::{Pid, Ref, Term};
use steinadler_host::{Dest, Messenger, StreamSource};
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
    fn monitor(&self, watcher: Pid, pid: Pid) -> Result<Ref, String> {
        self.monitor_for(watcher, pid)
    }

    fn demonitor(&self, _watcher: Pid, reference: Ref) -> Result<bool, String> {
        let inner = self.node()?;
        if reference.node != inner.config.name
            || reference.incarnation != inner.processes.incarnation
        {
            return Ok(false);
        }
        Ok(inner.processes.cancel_guest_monitor(reference.id))
    }

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

    fn open_stream(
        &self,
        consumer: Pid,
        node: Option<String>,
        source: StreamSource,
        args: Term,
    ) -> Result<Ref, String> {
        let inner = self.node()?;
        Ok(crate::streams::deliver::open_for_process(
            &inner, consumer, node, source, args,
        ))
    }

    fn stream_emit(
        &self,
        producer: Pid,
        reference: Ref,
        items: Vec<Term>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.node();
        Box::pin(async move {
            crate::streams::outlet::emit(&*inner?, &producer, &reference, items).await
        })
    }

    fn stream_close(
        &self,
        producer: Pid,
        reference: Ref,
        error: Option<String>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.node();
        Box::pin(async move {
            crate::streams::outlet::close(&*inner?, &producer, &reference, error).await
        })
    }

    fn register_global(&self, name: String, pid: Pid) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.node();
        Box::pin(async move {
            crate::registry::api::register(&inner?, &name, &pid)
                .await
                .map_err(|s| s.message().to_owned())
        })
    }

    fn whereis(&self, name: String) -> BoxFuture<'static, Result<Option<Pid>, String>> {
        let inner = self.node();
        Box::pin(async move {
            let inner = inner?;
            match name.parse::<Address>().map_err(|e| e.to_string())? {
                Address::Name { name, node: None } => match inner.whereis_local(&name) {
                    Some(pid) => Ok(Some(pid)),
                    None => Ok(crate::registry::api::whereis(&inner, &name, false).await),
                },
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

impl NodeMessenger {
    fn monitor_for(&self, watcher: Pid, pid: Pid) -> Result<Ref, String> {
        let inner = self.node()?;
        let monitor = inner.monitor(&pid);
        let reference = monitor.reference.clone();
        let id = reference.id;
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            let reason = monitor.down().await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            inner.processes.forget_guest_monitor(id);
            let reason = match reason {
                crate::ExitReason::Normal => Term::from("normal"),
                crate::ExitReason::NoProc => Term::from("noproc"),
                crate::ExitReason::NoConnection => Term::from("noconnection"),
                crate::ExitReason::Shutdown => Term::from("shutdown"),
                crate::ExitReason::Crash(why) => {
                    Term::List(vec![Term::from("crash"), Term::from(why.as_str())])
                }
            };
            let down = Term::List(vec![
                Term::from("DOWN"),
                Term::Ref(Ref {
                    node: inner.config.name.clone(),
                    incarnation: inner.processes.incarnation,
                    id,
                }),
                Term::Pid(pid),
                reason,
            ]);
            if let Err(e) = inner
                .send_to(&Address::Pid(watcher.clone()), down, None)
                .await
            {
                tracing::debug!(watcher = %watcher, "a DOWN message was not delivered: {}", e.message());
            }
        });
        inner.processes.keep_guest_monitor(id, task.abort_handle());
        Ok(reference)
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
