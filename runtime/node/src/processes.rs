//! Processes on this node: the table of live processes, their bounded mailboxes and names, and
//! the loop that feeds each process one message at a time.
//!
//! The wasm side of a process is [`steinadler_host::Process`]; routing between nodes is in
//! [`crate::messaging`].

use crate::messaging::Address;
use crate::monitor::ExitReason;
use crate::node::Inner;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steinadler_core::{InvokeError, Pid, Term};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Messages a mailbox holds before senders wait (local) or get `RESOURCE_EXHAUSTED` (remote).
pub const MAILBOX_CAPACITY: usize = 1024;

/// One message in a mailbox.
#[derive(Debug)]
pub(crate) struct Letter {
    pub(crate) msg: Term,
    pub(crate) from: Option<Pid>,
    /// Present for a call: where the reply goes.
    pub(crate) reply: Option<oneshot::Sender<Result<Term, InvokeError>>>,
}

/// What `ps` shows about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its PID.
    pub pid: Pid,
    /// The module it runs.
    pub module: String,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// Messages waiting in its mailbox.
    pub mailbox: usize,
    /// Its linear memory, in bytes.
    pub memory_bytes: u64,
    /// Messages handled so far.
    pub handled: u64,
}

#[derive(Debug)]
struct Entry {
    tx: mpsc::Sender<Letter>,
    module: String,
    name: Option<String>,
    handled: Arc<AtomicU64>,
    memory: Arc<AtomicU64>,
    monitors: Vec<oneshot::Sender<ExitReason>>,
    /// Fired to stop the process (`ExitReason::Shutdown`).
    stop: Option<oneshot::Sender<()>>,
}

/// The node's processes.
#[derive(Debug)]
pub(crate) struct Processes {
    /// Distinguishes this run of the node from earlier ones, so PIDs are never reused.
    pub(crate) incarnation: u64,
    next_id: AtomicU64,
    /// Monitor references.
    pub(crate) next_ref: AtomicU64,
    table: Mutex<HashMap<u64, Entry>>,
    names: Mutex<HashMap<String, u64>>,
    /// Monitors set by guests, by reference id: the task that delivers their DOWN.
    guest_monitors: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
}

impl Processes {
    pub(crate) fn new() -> Self {
        // Milliseconds since the epoch: a restarted node always has a larger incarnation.
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            incarnation,
            next_id: AtomicU64::new(1),
            next_ref: AtomicU64::new(1),
            table: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            guest_monitors: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn keep_guest_monitor(&self, id: u64, task: tokio::task::AbortHandle) {
        self.guest_monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, task);
    }

    pub(crate) fn forget_guest_monitor(&self, id: u64) {
        self.guest_monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Stops a guest's monitor; whether it was active.
    pub(crate) fn cancel_guest_monitor(&self, id: u64) -> bool {
        let task = self
            .guest_monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        task.map(|t| t.abort()).is_some()
    }

    /// The mailbox of a local process, by PID id or name.
    fn mailbox(&self, local_id: Option<u64>, name: Option<&str>) -> Option<mpsc::Sender<Letter>> {
        let id = match (local_id, name) {
            (Some(id), _) => id,
            (None, Some(name)) => *self
                .names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)?,
            (None, None) => return None,
        };
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|e| e.tx.clone())
    }

    pub(crate) fn list(&self, node: &str) -> Vec<ProcessInfo> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ProcessInfo> = table
            .iter()
            .map(|(id, e)| ProcessInfo {
                pid: Pid {
                    node: node.to_owned(),
                    incarnation: self.incarnation,
                    id: *id,
                },
                module: e.module.clone(),
                name: e.name.clone(),
                mailbox: e.tx.max_capacity() - e.tx.capacity(),
                memory_bytes: e.memory.load(Ordering::Relaxed),
                handled: e.handled.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|p| p.pid.id);
        out
    }

    /// Tells `tx` when the local process `pid` exits; at once (noproc) if there is none.
    pub(crate) fn watch(&self, pid: &Pid, incarnation: u64, tx: oneshot::Sender<ExitReason>) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.get_mut(&pid.id) {
            Some(entry) if pid.incarnation == incarnation => entry.monitors.push(tx),
            _ => {
                let _ = tx.send(ExitReason::NoProc);
            }
        }
    }

    /// Forgets an exited process and sends DOWN to its monitors.
    fn remove(&self, id: u64, reason: &ExitReason) {
        let entry = self
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let Some(entry) = entry else {
            return;
        };
        if let Some(name) = entry.name {
            let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            if names.get(&name) == Some(&id) {
                names.remove(&name);
            }
        }
        for monitor in entry.monitors {
            let _ = monitor.send(reason.clone());
        }
    }
}

impl Inner {
    /// Starts a process of `module` (a name or id known in the cluster) on this node.
    pub(crate) async fn spawn_local(
        self: &Arc<Self>,
        module: &str,
        args: Term,
        name: Option<String>,
    ) -> Result<Pid, Status> {
        if let Some(name) = &name {
            validate_name(name)?;
            if self
                .processes
                .names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(name)
            {
                return Err(Status::already_exists(format!(
                    "a process named {name:?} already runs on {}",
                    self.config.name
                )));
            }
        }
        let (id, origin) = crate::coordinator::resolve_module(self, module).await?;
        let loaded = crate::fetch::ensure(self, id, &origin)
            .await
            .map_err(|e| Status::not_found(e.to_string()))?;
        let pid = Pid {
            node: self.config.name.clone(),
            incarnation: self.processes.incarnation,
            id: self.processes.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let limits = self.host.default_limits();
        let process = self
            .host
            .spawn_process(
                &loaded,
                &args,
                &pid,
                &limits,
                Some(Arc::new(crate::guest_ops::NodeMessenger::new(self))),
            )
            .await
            .map_err(|e| Status::failed_precondition(format!("the process did not start: {e}")))?;
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let handled = Arc::new(AtomicU64::new(0));
        let memory = Arc::new(AtomicU64::new(process.memory_bytes() as u64));
        {
            let mut names = self
                .processes
                .names
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(name) = &name {
                if names.contains_key(name) {
                    return Err(Status::already_exists(format!(
                        "a process named {name:?} already runs on {}",
                        self.config.name
                    )));
                }
                names.insert(name.clone(), pid.id);
            }
            self.processes
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    pid.id,
                    Entry {
                        tx,
                        module: module.to_owned(),
                        name: name.clone(),
                        handled: handled.clone(),
                        memory: memory.clone(),
                        monitors: Vec::new(),
                        stop: Some(stop_tx),
                    },
                );
        }
        tracing::info!(pid = %pid, module, name = name.as_deref().unwrap_or(""), "process started");
        tokio::spawn(run(
            self.clone(),
            pid.clone(),
            process,
            (rx, stop_rx),
            handled,
            memory,
        ));
        Ok(pid)
    }

    /// Puts a letter into a local process's mailbox. With `wait`, waits up to that long for
    /// room; without, a full mailbox is `RESOURCE_EXHAUSTED`.
    pub(crate) async fn deliver_local(
        &self,
        to: &Address,
        letter: Letter,
        wait: Option<Duration>,
    ) -> Result<(), Status> {
        let (id, name) = match to {
            Address::Pid(pid) => {
                if pid.node != self.config.name || pid.incarnation != self.processes.incarnation {
                    return Err(noproc(to));
                }
                (Some(pid.id), None)
            }
            Address::Name { name, .. } => (None, Some(name.as_str())),
        };
        let tx = self.processes.mailbox(id, name).ok_or_else(|| noproc(to))?;
        let delivered = match wait {
            Some(wait) => tx.send_timeout(letter, wait).await.map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => Status::resource_exhausted(format!(
                    "the mailbox of {to} stayed full for {wait:?}"
                )),
                mpsc::error::SendTimeoutError::Closed(_) => noproc(to),
            }),
            None => tx.try_send(letter).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Status::resource_exhausted(format!(
                    "the mailbox of {to} is full ({MAILBOX_CAPACITY} messages); retry with backoff"
                )),
                mpsc::error::TrySendError::Closed(_) => noproc(to),
            }),
        };
        if delivered.is_ok() {
            crate::metrics::message_received();
        }
        delivered
    }

    /// Registers `name` for the local process `pid`.
    pub(crate) fn register_local(&self, name: &str, pid: &Pid) -> Result<(), Status> {
        validate_name(name)?;
        if pid.node != self.config.name || pid.incarnation != self.processes.incarnation {
            return Err(Status::invalid_argument(format!(
                "{pid} does not run on {}: names are registered on the process's own node",
                self.config.name
            )));
        }
        let mut names = self
            .processes
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut table = self
            .processes
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = table
            .get_mut(&pid.id)
            .ok_or_else(|| noproc(&Address::Pid(pid.clone())))?;
        if names.contains_key(name) {
            return Err(Status::already_exists(format!(
                "a process named {name:?} already runs on {}",
                self.config.name
            )));
        }
        names.insert(name.to_owned(), pid.id);
        entry.name = Some(name.to_owned());
        Ok(())
    }

    /// Stops the local process `pid` (its monitors see `shutdown`); false if it does not run here.
    pub(crate) fn stop_local(&self, pid: &Pid) -> bool {
        if pid.node != self.config.name || pid.incarnation != self.processes.incarnation {
            return false;
        }
        let stop = self
            .processes
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&pid.id)
            .and_then(|e| e.stop.take());
        stop.map(|s| s.send(())).is_some()
    }

    /// Whether `pid` is a live process of this node.
    pub(crate) fn is_alive_local(&self, pid: &Pid) -> bool {
        pid.node == self.config.name
            && pid.incarnation == self.processes.incarnation
            && self
                .processes
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&pid.id)
    }

    /// The local process registered as `name`.
    pub(crate) fn whereis_local(&self, name: &str) -> Option<Pid> {
        let id = *self
            .processes
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)?;
        Some(Pid {
            node: self.config.name.clone(),
            incarnation: self.processes.incarnation,
            id,
        })
    }

    pub(crate) fn process_list(&self) -> Vec<ProcessInfo> {
        self.processes.list(&self.config.name)
    }
}

/// The process's loop: one message at a time until it stops or crashes.
async fn run(
    inner: Arc<Inner>,
    pid: Pid,
    mut process: steinadler_host::Process,
    (mut rx, mut stop): (mpsc::Receiver<Letter>, oneshot::Receiver<()>),
    handled: Arc<AtomicU64>,
    memory: Arc<AtomicU64>,
) {
    let reason = loop {
        let letter = tokio::select! {
            letter = rx.recv() => letter,
            Ok(()) = &mut stop => break ExitReason::Shutdown,
        };
        let Some(letter) = letter else {
            break ExitReason::Normal;
        };
        let result = process
            .handle(&letter.msg, letter.from.as_ref(), letter.reply.is_some())
            .await;
        handled.store(process.handled(), Ordering::Relaxed);
        memory.store(process.memory_bytes() as u64, Ordering::Relaxed);
        match result {
            Ok(outcome) => {
                for (dest, msg) in outcome.sends {
                    let to = Address::from(dest);
                    if let Err(e) = inner.send_to(&to, msg, Some(pid.clone())).await {
                        tracing::warn!(pid = %pid, to = %to, "a message from the process was not delivered: {}", e.message());
                    }
                }
                if let Some(reply) = letter.reply {
                    let _ = reply.send(Ok(outcome.reply.unwrap_or(Term::Nil)));
                }
                if outcome.stop {
                    break ExitReason::Normal;
                }
            }
            // The message did not decode: the sender learns why, the process goes on.
            Err(e @ InvokeError::BadArguments(_)) => {
                if let Some(reply) = letter.reply {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                let reason = ExitReason::Crash(e.to_string());
                if let Some(reply) = letter.reply {
                    let _ = reply.send(Err(e));
                }
                break reason;
            }
        }
    };
    // Messages still queued are dropped with the mailbox; their callers learn `noproc`.
    rx.close();
    inner.processes.remove(pid.id, &reason);
    inner.registry.forget_pid(&pid);
    if matches!(reason, ExitReason::Normal | ExitReason::Shutdown) {
        tracing::info!(pid = %pid, "process exited: {reason}");
    } else {
        tracing::warn!(pid = %pid, "process exited: {reason}");
    }
}

fn noproc(to: &Address) -> Status {
    Status::not_found(format!("noproc: no process {to} on this node"))
}

pub(crate) fn validate_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{name:?} is not a process name: use 1 to 128 letters, digits, '_', '-' or '.'"
        )))
    }
}
