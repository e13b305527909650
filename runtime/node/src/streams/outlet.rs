//! A process as a stream's producer: the outlets of the streams that processes serve.
//!
//! The consumer opens `Streams.Open` naming a process instead of a stream function. The
//! producer's node gives the stream a reference and tells the process in its mailbox:
//!
//! - `["stream_open", ref, args]` once;
//! - `["stream_demand", ref, n]` for each grant of demand from the consumer;
//! - `["stream_cancel", ref]` if the consumer cancels or goes away.
//!
//! The process answers with `process::stream_emit(ref, items)` (ABI op 10) and ends with
//! `process::stream_close(ref, error)` (op 11). The node counts the credit: an emit past what
//! was asked for is refused, so the process can never run ahead of the consumer, and the
//! items in flight never exceed the consumer's window. If the process exits first, the
//! consumer gets an error naming the exit reason.

use crate::messaging::Address;
use crate::node::Inner;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steinadler_core::{Pid, Ref, Term};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::stream_control::Op;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// Batches queued for the link per stream, at most. Emits wait for room.
const QUEUED_BATCHES: usize = 16;

type Events = mpsc::Sender<Result<bytes::Bytes, Status>>;

/// The streams this node's processes serve, by reference id.
#[derive(Debug, Default)]
pub(crate) struct Outlets {
    open: Mutex<HashMap<u64, Outlet>>,
}

#[derive(Debug)]
struct Outlet {
    owner: Pid,
    /// Items asked for and not yet emitted.
    credit: u64,
    events: Events,
}

impl Outlets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Outlet>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the outlet of `reference` if `producer` owns it; `f` returning `true` also
    /// removes the outlet.
    fn owned<T>(
        &self,
        producer: &Pid,
        reference: &Ref,
        node: &str,
        f: impl FnOnce(&mut Outlet) -> Result<(T, bool), String>,
    ) -> Result<T, String> {
        let mut open = self.lock();
        let outlet = match open.get_mut(&reference.id) {
            Some(o) if reference.node == node && o.owner == *producer => o,
            Some(_) if reference.node == node => {
                return Err(format!(
                    "the stream {reference} is served by another process"
                ));
            }
            _ => {
                return Err(format!(
                    "no stream {reference} is open: it was closed, or its consumer cancelled it"
                ));
            }
        };
        let (value, remove) = f(outlet)?;
        if remove {
            open.remove(&reference.id);
        }
        Ok(value)
    }
}

/// `process::stream_emit`: sends `items` down the stream, within the consumer's demand and
/// the node's message bound.
pub(crate) async fn emit(
    inner: &Inner,
    producer: &Pid,
    reference: &Ref,
    items: Vec<Term>,
) -> Result<(), String> {
    let n = items.len() as u64;
    let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let encoded = Term::List(items).encode();
    let bytes = encoded.len();
    let max = inner.config.max_message_bytes;
    if encoded.len() > max {
        return Err(format!(
            "an emit of {} bytes is over the {max} bytes a batch may hold: emit fewer items at a \
             time",
            encoded.len()
        ));
    }
    let events = inner
        .outlets
        .owned(producer, reference, &inner.config.name, |outlet| {
            if n > outlet.credit {
                return Err(format!(
                    "{n} items emitted when the consumer has asked for {} more: emit only what \
                     [\"stream_demand\", ref, n] messages grant",
                    outlet.credit
                ));
            }
            outlet.credit -= n;
            Ok((outlet.events.clone(), false))
        })?;
    if n == 0 {
        return Ok(());
    }
    // Counted before they leave, so that a consumer never holds more than the count says
    // (it can read them before this task resumes from the send).
    let produced = &inner.stats.stream_items_produced;
    produced.fetch_add(n, Ordering::Relaxed);
    if events
        .send(Ok(super::frame::items(encoded.into(), count)))
        .await
        .is_err()
    {
        produced.fetch_sub(n, Ordering::Relaxed);
        return Err(format!("the consumer of stream {reference} is gone"));
    }
    crate::metrics::stream_batch("process", n, bytes);
    Ok(())
}

/// `process::stream_close`: ends the stream, well or with `error`.
pub(crate) async fn close(
    inner: &Inner,
    producer: &Pid,
    reference: &Ref,
    error: Option<String>,
) -> Result<(), String> {
    let events = inner
        .outlets
        .owned(producer, reference, &inner.config.name, |outlet| {
            Ok((outlet.events.clone(), true))
        })?;
    // A consumer gone already needs no end.
    let end = super::frame::end(error.unwrap_or_default());
    let _ = events.send(Ok(end)).await;
    Ok(())
}

/// Opens a stream that the local process `open.process` serves.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    open: pb::StreamOpen,
    control: Streaming<pb::StreamControl>,
) -> Result<super::frame::Frames, Status> {
    let address: Address = open
        .process
        .parse()
        .map_err(|e: crate::messaging::AddressError| Status::invalid_argument(e.to_string()))?;
    let here = &inner.config.name;
    let pid = match &address {
        _ if !inner.is_local(&address) => None,
        Address::Pid(pid) => Some(pid.clone()),
        Address::Name { name, .. } => inner.whereis_local(name),
    };
    let pid = pid.ok_or_else(|| {
        Status::not_found(format!(
            "no process {address} runs on node {here} to produce the stream"
        ))
    })?;
    let args = match open.args.is_empty() {
        true => Term::List(Vec::new()),
        false => Term::decode(&open.args)
            .map_err(|e| Status::invalid_argument(format!("the stream's arguments: {e}")))?,
    };
    let reference = Ref {
        node: here.clone(),
        incarnation: inner.processes.incarnation,
        id: inner.processes.next_ref.fetch_add(1, Ordering::Relaxed),
    };
    // Watch before telling it, so an exit in between is not missed.
    let monitor = inner.monitor(&pid);
    let (events, rx) = mpsc::channel(QUEUED_BATCHES);
    inner.outlets.lock().insert(
        reference.id,
        Outlet {
            owner: pid.clone(),
            credit: 0,
            events: events.clone(),
        },
    );
    let to = Address::Pid(pid.clone());
    let hello = Term::list(["stream_open".into(), Term::Ref(reference.clone()), args]);
    let told = tokio::time::timeout(
        Duration::from_secs(5),
        super::deliver::deliver(&inner, &to, hello),
    )
    .await;
    if !matches!(told, Ok(Ok(()))) {
        inner.outlets.lock().remove(&reference.id);
        return Err(Status::unavailable(format!(
            "the process {pid} did not take the stream: it exited, or its mailbox stayed full"
        )));
    }
    inner.stats.streams_open.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%pid, %reference, "stream from a process opened");
    tokio::spawn(relay(inner, pid, reference, control, monitor, events));
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// Carries the consumer's demand to the process until the stream ends: the process closes
/// it, exits, or the consumer cancels or goes away.
async fn relay(
    inner: Arc<Inner>,
    pid: Pid,
    reference: Ref,
    mut control: Streaming<pb::StreamControl>,
    monitor: crate::Monitor,
    events: Events,
) {
    let to = Address::Pid(pid.clone());
    let down = monitor.down();
    tokio::pin!(down);
    let mut stopping = inner.stopping.clone();
    let cancelled = loop {
        let open = || inner.outlets.lock().contains_key(&reference.id);
        tokio::select! {
            message = control.message() => match message {
                Ok(Some(pb::StreamControl { op: Some(Op::Request(n)) })) => {
                    match inner.outlets.lock().get_mut(&reference.id) {
                        Some(o) => o.credit = o.credit.saturating_add(n),
                        None => break false,
                    }
                    let demand = Term::list([
                        "stream_demand".into(),
                        Term::Ref(reference.clone()),
                        Term::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                    ]);
                    if super::deliver::deliver(&inner, &to, demand).await.is_err() {
                        // It exited: the monitor says why.
                        continue;
                    }
                }
                // A cancel, the end of the requests, or a broken link.
                _ => break true,
            },
            reason = &mut down => {
                if inner.outlets.lock().remove(&reference.id).is_some() {
                    let error = format!("the producer process {pid} exited: {reason}");
                    let _ = events.send(Ok(super::frame::end(error))).await;
                }
                break false;
            }
            () = events.closed() => break open(),
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => {
                inner.outlets.lock().remove(&reference.id);
                let _ = events.send(Err(Status::unavailable("the producer's node is stopping"))).await;
                break false;
            }
        }
        if !open() {
            // The process closed the stream.
            break false;
        }
    };
    if cancelled && inner.outlets.lock().remove(&reference.id).is_some() {
        let cancel = Term::list(["stream_cancel".into(), Term::Ref(reference.clone())]);
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            super::deliver::deliver(&inner, &to, cancel),
        )
        .await;
        tracing::debug!(%pid, %reference, "stream from a process cancelled");
    }
    inner.stats.streams_open.fetch_sub(1, Ordering::Relaxed);
}
