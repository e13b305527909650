//! Monitors: being told when a process exits, on this node or another.
//!
//! A local monitor is a one-shot channel in the process's table entry, fired when its loop ends.
//! A remote monitor is a server-streaming `Monitor` call to the process's node, which answers
//! with one `Down`; if that node is declared dead by membership, or the stream breaks, the
//! watcher gets `noconnection` instead. Dropping a [`Monitor`] is `demonitor`.

use crate::node::Inner;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use steinadler_core::{Pid, Ref};
use steinadler_membership::MemberEvent;
use steinadler_proto::v1 as pb;
use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::Status;

/// Why a monitored process is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It stopped normally.
    Normal,
    /// It crashed: a trap, a timeout, running out of memory, or a guest error.
    Crash(String),
    /// It did not exist when the monitor was set.
    NoProc,
    /// Its node was declared dead, or could not be reached.
    NoConnection,
    /// It was stopped: by its supervisor, or with [`Node::stop_process`](crate::Node::stop_process).
    Shutdown,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::Crash(why) => write!(f, "crash: {why}"),
            Self::NoProc => f.write_str("noproc"),
            Self::NoConnection => f.write_str("noconnection"),
            Self::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// A monitor on one process. Await [`Monitor::down`]; drop it to demonitor.
#[derive(Debug)]
pub struct Monitor {
    /// This monitor's reference, unique in the cluster.
    pub reference: Ref,
    /// The process watched.
    pub pid: Pid,
    rx: oneshot::Receiver<ExitReason>,
    /// Stops the remote watch when the monitor is dropped.
    _watch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(watch) = &self._watch {
            watch.abort();
        }
    }
}

impl Monitor {
    /// Waits for the process to exit; the DOWN message's reason.
    pub async fn down(mut self) -> ExitReason {
        (&mut self.rx).await.unwrap_or(ExitReason::NoConnection)
    }
}

impl Inner {
    /// Monitors `pid`, wherever it runs.
    pub(crate) fn monitor(self: &Arc<Self>, pid: &Pid) -> Monitor {
        let reference = Ref {
            node: self.config.name.clone(),
            incarnation: self.processes.incarnation,
            id: self.processes.next_ref.fetch_add(1, Ordering::Relaxed),
        };
        let (tx, rx) = oneshot::channel();
        let watch = if pid.node == self.config.name {
            self.processes.watch(pid, self.processes.incarnation, tx);
            None
        } else {
            Some(tokio::spawn(watch_remote(self.clone(), pid.clone(), tx)))
        };
        Monitor {
            reference,
            pid: pid.clone(),
            rx,
            _watch: watch,
        }
    }
}

async fn watch_remote(inner: Arc<Inner>, pid: Pid, tx: oneshot::Sender<ExitReason>) {
    // Subscribe before looking, so a death between the two is not missed.
    let mut events = inner.membership.subscribe();
    let member = inner
        .membership
        .members()
        .await
        .into_iter()
        .find(|m| m.name == pid.node);
    let Some(member) = member else {
        let _ = tx.send(ExitReason::NoConnection);
        return;
    };
    let stream = async {
        let mut client = inner
            .peer(&member.meta.grpc_addr, &member.name)
            .await
            .map_err(|_| ())?;
        let request = pb::MonitorRequest {
            pid: steinadler_core::Term::Pid(pid.clone()).encode().into(),
        };
        let mut downs = client.monitor(request).await.map_err(|_| ())?.into_inner();
        match downs.message().await {
            Ok(Some(down)) => Ok(reason_from_wire(&down)),
            _ => Err(()),
        }
    };
    let died = async {
        loop {
            match events.recv().await {
                Ok(MemberEvent::Left { name, .. }) if name == pid.node => return,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
        }
    };
    let reason = tokio::select! {
        r = stream => r.unwrap_or(ExitReason::NoConnection),
        () = died => ExitReason::NoConnection,
    };
    let _ = tx.send(reason);
}

pub(crate) fn reason_to_wire(reason: &ExitReason) -> pb::Down {
    let (code, message) = match reason {
        ExitReason::Normal => (pb::down::Reason::Normal, String::new()),
        ExitReason::Crash(why) => (pb::down::Reason::Crash, why.clone()),
        ExitReason::NoProc => (pb::down::Reason::Noproc, String::new()),
        ExitReason::NoConnection => (pb::down::Reason::Noconnection, String::new()),
        ExitReason::Shutdown => (pb::down::Reason::Shutdown, String::new()),
    };
    pb::Down {
        reason: code as i32,
        message,
    }
}

fn reason_from_wire(down: &pb::Down) -> ExitReason {
    match pb::down::Reason::try_from(down.reason) {
        Ok(pb::down::Reason::Normal) => ExitReason::Normal,
        Ok(pb::down::Reason::Crash) => ExitReason::Crash(down.message.clone()),
        Ok(pb::down::Reason::Noproc) => ExitReason::NoProc,
        Ok(pb::down::Reason::Shutdown) => ExitReason::Shutdown,
        _ => ExitReason::NoConnection,
    }
}

pub(crate) type DownStream = Pin<Box<dyn Stream<Item = Result<pb::Down, Status>> + Send>>;

/// The server side of a remote monitor: one `Down`, then the end of the stream. The client
/// cancelling the stream drops the monitor.
pub(crate) fn serve(inner: &Arc<Inner>, req: pb::MonitorRequest) -> Result<DownStream, Status> {
    let pid = crate::messaging::decode_pid(&req.pid)?;
    let monitor = inner.monitor(&pid);
    Ok(Box::pin(futures::stream::once(async move {
        Ok(reason_to_wire(&monitor.down().await))
    })))
}
