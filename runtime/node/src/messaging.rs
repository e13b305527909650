//! Messages between processes, on this node or across the cluster: [`Address`], and the
//! routing behind `send` and `call`.
//!
//! A PID names its node; a name is `name` (on the node that resolves it) or `name@node`. A
//! message for another node travels as a frame on the same per-peer stream as invocations
//! ([`steinadler_transport::Mux`]). A full remote mailbox answers `RESOURCE_EXHAUSTED`, and the sender
//! retries with exponential backoff until its deadline, so nothing is dropped silently. Each
//! sender's messages to one receiver leave in order, one at a time.

use crate::node::Inner;
use crate::processes::Letter;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use tokio::sync::oneshot;
use tonic::{Code, Status};
use tracing::Instrument;

/// How long a send waits for room in a full mailbox, and a call for its reply, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A process by PID.
    Pid(Pid),
    /// A registered name, on `node` or (without one) on the node that resolves it.
    Name {
        /// The registered name.
        name: String,
        /// The node it is registered on.
        node: Option<String>,
    },
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pid(pid) => write!(f, "{pid}"),
            Self::Name { name, node: None } => f.write_str(name),
            Self::Name {
                name,
                node: Some(node),
            } => write!(f, "{name}@{node}"),
        }
    }
}

/// `<node.incarnation.id>` or `name@node` or `name` isn't valid.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a process address: use a PID like <n1.1764150000000.7> or a name like counter@n1"
)]
pub struct AddressError(String);

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(s.to_owned());
        if let Some(inner) = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
            let mut parts = inner.rsplitn(3, '.');
            let (Some(id), Some(incarnation), Some(node)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            return Ok(Self::Pid(Pid {
                node: node.to_owned(),
                incarnation: incarnation.parse().map_err(|_| bad())?,
                id: id.parse().map_err(|_| bad())?,
            }));
        }
        match s.split_once('@') {
            Some((name, node)) if !name.is_empty() && !node.is_empty() => Ok(Self::Name {
                name: name.to_owned(),
                node: Some(node.to_owned()),
            }),
            None if !s.is_empty() => Ok(Self::Name {
                name: s.to_owned(),
                node: None,
            }),
            _ => Err(bad()),
        }
    }
}

impl From<steinadler_host::Dest> for Address {
    fn from(dest: steinadler_host::Dest) -> Self {
        match dest {
            steinadler_host::Dest::Pid(pid) => Self::Pid(pid),
            steinadler_host::Dest::Name(name) => {
                name.parse().unwrap_or(Self::Name { name, node: None })
            }
        }
    }
}

impl Address {
    /// The node this address lives on, if it names one: a PID's node, or `node` of
    /// `name@node`.
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::Pid(pid) => Some(&pid.node),
            Self::Name { node, .. } => node.as_deref(),
        }
    }

    pub(crate) fn to_wire(&self) -> pb::Address {
        pb::Address {
            to: Some(match self {
                Self::Pid(pid) => pb::address::To::Pid(Term::Pid(pid.clone()).encode().into()),
                Self::Name { .. } => pb::address::To::Name(self.to_string()),
            }),
        }
    }

    /// The address a node received; a name without `@node` is local to it.
    pub(crate) fn from_wire(wire: Option<pb::Address>) -> Result<Self, Status> {
        match wire.and_then(|a| a.to) {
            Some(pb::address::To::Pid(bytes)) => Ok(Self::Pid(decode_pid(&bytes)?)),
            Some(pb::address::To::Name(name)) => name
                .parse()
                .map_err(|e: AddressError| Status::invalid_argument(e.to_string())),
            None => Err(Status::invalid_argument("the message has no address")),
        }
    }
}

pub(crate) fn decode_pid(bytes: &[u8]) -> Result<Pid, Status> {
    match Term::decode(bytes) {
        Ok(Term::Pid(pid)) => Ok(pid),
        _ => Err(Status::invalid_argument("not a PID (MessagePack ext 4)")),
    }
}

pub(crate) fn decode_term(bytes: &[u8]) -> Result<Term, Status> {
    Term::decode(bytes).map_err(|e| Status::invalid_argument(format!("the message: {e}")))
}

impl Inner {
    pub(crate) fn is_local(&self, to: &Address) -> bool {
        to.node().is_none_or(|n| n == self.config.name)
    }

    /// Where a message for `to` goes: a bare name is a name registered on this node, else a
    /// global name (its holder's PID); anything else stays as it is.
    pub(crate) async fn route(self: &std::sync::Arc<Self>, to: &Address) -> Address {
        if let Address::Name { name, node: None } = to
            && self.whereis_local(name).is_none()
            && let Some(pid) = crate::registry::api::whereis(self, name, false).await
        {
            return Address::Pid(pid);
        }
        to.clone()
    }

    /// Sends `msg` to `to`, waiting up to [`DEFAULT_TIMEOUT`] for room.
    pub(crate) async fn send_to(
        self: &std::sync::Arc<Self>,
        to: &Address,
        msg: Term,
        from: Option<Pid>,
    ) -> Result<(), Status> {
        let to = &self.route(to).await;
        let letter = Letter {
            msg,
            from,
            reply: None,
        };
        if self.is_local(to) {
            let sent = self.deliver_local(to, letter, Some(DEFAULT_TIMEOUT)).await;
            if sent.is_ok() {
                crate::metrics::message_sent("send", true);
            }
            return sent;
        }
        let request = pb::SendRequest {
            to: Some(to.to_wire()),
            msg: letter.msg.encode().into(),
            from: letter
                .from
                .map(|p| Term::Pid(p).encode().into())
                .unwrap_or_default(),
        };
        self.remote("send", to, DEFAULT_TIMEOUT, |mux, trace, left| {
            let request = request.clone();
            async move { mux.send(request, &trace, left).await.map(|()| Term::Nil) }
        })
        .await?;
        crate::metrics::message_sent("send", false);
        Ok(())
    }

    /// Sends `msg` to `to` and waits up to `timeout` for the reply.
    pub(crate) async fn call_to(
        self: &std::sync::Arc<Self>,
        to: &Address,
        msg: Term,
        from: Option<Pid>,
        timeout: Duration,
    ) -> Result<Term, Status> {
        let to = &self.route(to).await;
        if self.is_local(to) {
            let (tx, rx) = oneshot::channel();
            let letter = Letter {
                msg,
                from,
                reply: Some(tx),
            };
            let started = Instant::now();
            self.deliver_local(to, letter, Some(timeout)).await?;
            crate::metrics::message_sent("call", true);
            let left = timeout.saturating_sub(started.elapsed());
            return match tokio::time::timeout(left, rx).await {
                Ok(Ok(Ok(reply))) => Ok(reply),
                Ok(Ok(Err(e))) => Err(Status::aborted(format!("{to}: {e}"))),
                Ok(Err(_)) => Err(Status::not_found(format!(
                    "noproc: {to} exited before it replied"
                ))),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "{to} did not reply within {timeout:?}"
                ))),
            };
        }
        let request = pb::CallRequest {
            to: Some(to.to_wire()),
            msg: msg.encode().into(),
            from: from
                .map(|p| Term::Pid(p).encode().into())
                .unwrap_or_default(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let reply = self
            .remote("call", to, timeout, |mux, trace, left| {
                let request = request.clone();
                async move {
                    let reply = mux.call_process(request, &trace, left).await?;
                    decode_term(&reply.reply)
                }
            })
            .await;
        if reply.is_ok() {
            crate::metrics::message_sent("call", false);
        }
        reply
    }

    /// Runs `f` against the node `to` lives on, retrying `RESOURCE_EXHAUSTED` with backoff, in
    /// a span (`what`: send or call) whose `traceparent` `f` is given for the frame.
    async fn remote<F, Fut>(
        &self,
        what: &'static str,
        to: &Address,
        timeout: Duration,
        f: F,
    ) -> Result<Term, Status>
    where
        F: Fn(std::sync::Arc<steinadler_transport::Mux>, String, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Term, Status>>,
    {
        let node = to.node().unwrap_or_default();
        let span = crate::telemetry::hop(what, &self.config.name, node);
        let trace = crate::telemetry::traceparent_of(&span);
        self.remote_traced(node, timeout, |mux, left| f(mux, trace.clone(), left))
            .instrument(span)
            .await
    }

    async fn remote_traced<F, Fut>(
        &self,
        node: &str,
        timeout: Duration,
        f: F,
    ) -> Result<Term, Status>
    where
        F: Fn(std::sync::Arc<steinadler_transport::Mux>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Term, Status>>,
    {
        let member = self
            .membership
            .members()
            .await
            .into_iter()
            .find(|m| m.name == node)
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "noconnection: node {node} is not a live member of the cluster"
                ))
            })?;
        let deadline = Instant::now() + timeout;
        let mut attempt = 0u32;
        loop {
            let mux = self
                .mux(&member.meta.grpc_addr, &member.name)
                .await
                .map_err(Status::unavailable)?;
            let left = deadline.saturating_duration_since(Instant::now());
            match f(mux, left).await {
                Err(s) if s.code() == Code::ResourceExhausted && !left.is_zero() => {
                    let sleep = crate::coordinator::backoff(attempt).min(left);
                    attempt += 1;
                    tokio::time::sleep(sleep).await;
                }
                other => return other,
            }
        }
    }
}
