//! A process as a stream's consumer, and the [`Node`](crate::Node) and service entry points.
//!
//! Items become messages in the process's mailbox: `["stream_item", ref, item]`, in order, then
//! `["stream_end", ref, "ok"]` or `["stream_end", ref, ["error", message]]`. The delivery waits
//! for room in the mailbox, and takes no more items from the stream meanwhile, so the
//! mailbox's capacity is the demand.

use super::{StreamOptions, StreamRef};
use crate::messaging::Address;
use crate::node::{Inner, Node, NodeError};
use crate::processes::{Letter, MAILBOX_CAPACITY};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use steinadler_core::{Pid, Ref, Term};
use steinadler_host::StreamSource;
use tonic::{Code, Status};

impl Inner {
    /// Opens a stream from `source` on the node `node`: this one for `None`, unless the source
    /// is a process named by PID or `name@node`, which says its node.
    pub(crate) async fn open_stream(
        &self,
        node: Option<&str>,
        source: &StreamSource,
        args: &Term,
        options: StreamOptions,
    ) -> Result<StreamRef, Status> {
        let named = match source {
            StreamSource::Process(process) => process
                .parse::<Address>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .node()
                .map(str::to_owned),
            StreamSource::Function { .. } => None,
        };
        let node = node
            .or(named.as_deref())
            .unwrap_or(&self.config.name)
            .to_owned();
        let addr = if node == self.config.name {
            self.listen_addr.clone()
        } else {
            crate::registry::api::member_addr(self, &node).await?
        };
        let span = crate::telemetry::hop("open stream", &self.config.name, &node);
        tracing::Instrument::instrument(
            async {
                let channel = self
                    .peer_channel(&addr, &node)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                StreamRef::open(channel, source, args, options).await
            },
            span,
        )
        .await
    }
}

impl Node {
    /// Opens the stream `function` of `module` on the node `node` (this node for `None`):
    /// items arrive in order as the returned stream is polled, never more than
    /// `options.window` ahead of it.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the node is not a live member, or the module, the stream or
    /// its arguments are refused.
    pub async fn open_stream(
        &self,
        node: Option<&str>,
        module: &str,
        function: &str,
        args: &Term,
        options: StreamOptions,
    ) -> Result<StreamRef, NodeError> {
        let source = StreamSource::Function {
            module: module.to_owned(),
            function: function.to_owned(),
        };
        self.open_stream_from(node, &source, args, options).await
    }

    /// Opens a stream whose items the process `process` emits (`process::stream_emit`), on
    /// its own node: see `docs/streams.md`, *A process as the producer*.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the process's node is not a live member, or no such process
    /// runs there.
    pub async fn open_process_stream(
        &self,
        process: &Address,
        args: &Term,
        options: StreamOptions,
    ) -> Result<StreamRef, NodeError> {
        let source = StreamSource::Process(process.to_string());
        self.open_stream_from(None, &source, args, options).await
    }

    /// Opens a stream from `source`; see [`Node::open_stream`] and
    /// [`Node::open_process_stream`].
    ///
    /// # Errors
    ///
    /// As those two.
    pub async fn open_stream_from(
        &self,
        node: Option<&str>,
        source: &StreamSource,
        args: &Term,
        options: StreamOptions,
    ) -> Result<StreamRef, NodeError> {
        self.inner
            .open_stream(node, source, args, options)
            .await
            .map_err(|s| NodeError::Request(s.message().to_owned()))
    }
}

/// Opens a stream for the local process `pid`; items go to its mailbox. Returns the stream's
/// reference, which every message about it carries.
pub(crate) fn open_for_process(
    inner: &Arc<Inner>,
    pid: Pid,
    node: Option<String>,
    source: StreamSource,
    args: Term,
) -> Ref {
    let reference = Ref {
        node: inner.config.name.clone(),
        incarnation: inner.processes.incarnation,
        id: inner.processes.next_ref.fetch_add(1, Ordering::Relaxed),
    };
    let inner = inner.clone();
    let r = reference.clone();
    tokio::spawn(async move {
        let to = Address::Pid(pid);
        let options = StreamOptions {
            window: MAILBOX_CAPACITY as u32,
        };
        let opened = inner
            .open_stream(node.as_deref(), &source, &args, options)
            .await;
        let end = match opened {
            Err(status) => Term::list(["error".into(), status.message().into()]),
            Ok(stream) => match pump(&inner, &to, &r, stream).await {
                Ok(end) => end,
                // The process is gone: dropping the stream cancels the producer.
                Err(()) => return,
            },
        };
        let msg = Term::list(["stream_end".into(), Term::Ref(r), end]);
        let _ = deliver(&inner, &to, msg).await;
    });
    reference
}

/// Moves items into the mailbox until the stream ends; `Err` if the process is gone.
async fn pump(
    inner: &Arc<Inner>,
    to: &Address,
    reference: &Ref,
    mut stream: StreamRef,
) -> Result<Term, ()> {
    let mut stopping = inner.stopping.clone();
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return Err(()),
        };
        match next {
            Some(Ok(item)) => {
                let msg = Term::list(["stream_item".into(), Term::Ref(reference.clone()), item]);
                deliver(inner, to, msg).await?;
            }
            Some(Err(e)) => return Ok(Term::list(["error".into(), e.to_string().into()])),
            None => return Ok("ok".into()),
        }
    }
}

/// Puts a message into the process's mailbox, waiting as long as it takes for room while the
/// process lives.
pub(super) async fn deliver(inner: &Inner, to: &Address, msg: Term) -> Result<(), ()> {
    loop {
        let letter = Letter {
            msg: msg.clone(),
            from: None,
            reply: None,
        };
        match inner
            .deliver_local(to, letter, Some(Duration::from_secs(1)))
            .await
        {
            Ok(()) => return Ok(()),
            Err(s) if s.code() == Code::ResourceExhausted => {}
            Err(_) => return Err(()),
        }
    }
}
