//! The process half of the public [`Node`] API and of the gRPC service: spawn, send, call, ps.

use crate::messaging::{self, Address};
use crate::node::{Inner, Node, NodeError};
use crate::processes::{Letter, ProcessInfo};
use std::sync::Arc;
use std::time::Duration;
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use tonic::Status;

impl Node {
    /// Starts a process of `module` (a name or id known in the cluster) on this node, calling
    /// its `init` with `args`, and registers it as `name` on this node if given.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the module is unknown or not a process module, the name is
    /// taken, or `init` failed.
    pub async fn spawn(
        &self,
        module: &str,
        args: Term,
        name: Option<&str>,
    ) -> Result<Pid, NodeError> {
        self.inner
            .spawn_local(module, args, name.map(str::to_owned))
            .await
            .map_err(request_err)
    }

    /// Sends `msg` to `to` without waiting for it to be handled. Messages from one sender to
    /// one receiver arrive in order. A full mailbox makes the send wait (or retry, across
    /// nodes) for up to [`messaging::DEFAULT_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] saying `noproc` or `noconnection`, or that the mailbox stayed full.
    pub async fn send(&self, to: &Address, msg: Term) -> Result<(), NodeError> {
        self.inner.send_to(to, msg, None).await.map_err(request_err)
    }

    /// Sends `msg` to `to` and waits up to `timeout` for its reply.
    ///
    /// # Errors
    ///
    /// As [`Node::send`], plus a timeout, or the process's crash while handling the message.
    pub async fn call(
        &self,
        to: &Address,
        msg: Term,
        timeout: Duration,
    ) -> Result<Term, NodeError> {
        self.inner
            .call_to(to, msg, None, timeout)
            .await
            .map_err(request_err)
    }

    /// Monitors `pid` on any node: [`Monitor::down`](crate::Monitor::down) resolves with the
    /// reason it exited (`noproc` at once if it does not exist, `noconnection` if its node is
    /// declared dead). Dropping the monitor is demonitor.
    pub fn monitor(&self, pid: &Pid) -> crate::Monitor {
        self.inner.monitor(pid)
    }

    /// Registers `name` for the process `pid`, which must run on this node. Sending to `name`
    /// (here) or `name@node` (anywhere) then reaches it.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the name is taken or malformed, or `pid` is not a live local
    /// process.
    pub fn register(&self, name: &str, pid: &Pid) -> Result<(), NodeError> {
        self.inner.register_local(name, pid).map_err(request_err)
    }

    /// Stops the process `pid` on this node: its monitors see `shutdown`, its names are freed.
    /// Whether it ran here.
    pub fn stop_process(&self, pid: &Pid) -> bool {
        self.inner.stop_local(pid)
    }

    /// The process registered as `name` on this node.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.whereis_local(name)
    }

    /// The processes on this node.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.inner.process_list()
    }
}

fn request_err(status: Status) -> NodeError {
    NodeError::Request(status.message().to_owned())
}

/// The gRPC handlers, called by the service after authorization.
pub(crate) async fn spawn(
    inner: &Arc<Inner>,
    req: pb::SpawnRequest,
) -> Result<pb::SpawnReply, Status> {
    let args = if req.args.is_empty() {
        Term::Nil
    } else {
        messaging::decode_term(&req.args)?
    };
    let name = (!req.name.is_empty()).then_some(req.name);
    let pid = inner.spawn_local(&req.module, args, name).await?;
    Ok(pb::SpawnReply {
        pid: Term::Pid(pid).encode().into(),
    })
}

pub(crate) async fn send(
    inner: &Arc<Inner>,
    req: pb::SendRequest,
) -> Result<pb::SendReply, Status> {
    let to = inner.route(&Address::from_wire(req.to)?).await;
    let letter = Letter {
        msg: messaging::decode_term(&req.msg)?,
        from: sender(&req.from)?,
        reply: None,
    };
    if inner.is_local(&to) {
        // A remote sender is answered at once when the mailbox is full, and retries with
        // backoff.
        inner.deliver_local(&to, letter, None).await?;
    } else {
        inner.send_to(&to, letter.msg, letter.from).await?;
    }
    Ok(pb::SendReply {})
}

pub(crate) async fn call(
    inner: &Arc<Inner>,
    req: pb::CallRequest,
) -> Result<pb::CallReply, Status> {
    let to = Address::from_wire(req.to)?;
    let timeout = if req.timeout_ms == 0 {
        messaging::DEFAULT_TIMEOUT
    } else {
        Duration::from_millis(req.timeout_ms)
    };
    let reply = inner
        .call_to(
            &to,
            messaging::decode_term(&req.msg)?,
            sender(&req.from)?,
            timeout,
        )
        .await?;
    Ok(pb::CallReply {
        reply: reply.encode().into(),
    })
}

pub(crate) fn list(inner: &Inner) -> pb::ListProcessesReply {
    pb::ListProcessesReply {
        node: inner.config.name.clone(),
        processes: inner
            .process_list()
            .into_iter()
            .map(|p| pb::ProcessInfo {
                pid: Term::Pid(p.pid).encode().into(),
                module: p.module,
                name: p.name.unwrap_or_default(),
                mailbox: p.mailbox as u64,
                memory_bytes: p.memory_bytes,
                handled: p.handled,
            })
            .collect(),
    }
}

fn sender(bytes: &[u8]) -> Result<Option<Pid>, Status> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        messaging::decode_pid(bytes).map(Some)
    }
}
