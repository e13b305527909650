//! Registering, looking up and dropping global names: the [`Node`] methods, the `Registry`
//! gRPC handlers, and the conversation with a name's home node.

use super::{Lost, RegistryEntry, now_ms, rendezvous};
use crate::node::{Inner, Node, NodeError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::registry_client::RegistryClient;
use tonic::{Code, Status};

/// The gRPC path of `Claim`, which the cookie covers.
pub(crate) const CLAIM: &str = "/steinadler.v1.Registry/Claim";
/// How long a registration keeps trying to reach the name's home node.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Registers `name` for `pid` across the cluster: from then on, `whereis_global`, `send` and
    /// `call` by `name` reach `pid` from every node. `pid` may run on any node.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if another process holds the name (the message names it), the
    /// name is malformed, `pid` does not run, or the name's home node cannot be reached.
    pub async fn register_global(&self, name: &str, pid: &Pid) -> Result<(), NodeError> {
        register(&self.inner, name, pid)
            .await
            .map_err(|s| NodeError::Request(s.message().to_owned()))
    }

    /// Drops the global name `name`; whether it was registered.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the holder's node cannot be reached.
    pub async fn unregister_global(&self, name: &str) -> Result<bool, NodeError> {
        unregister(&self.inner, name)
            .await
            .map_err(|s| NodeError::Request(s.message().to_owned()))
    }

    /// The process holding the global name `name`, if any live node's process does.
    pub async fn whereis_global(&self, name: &str) -> Option<Pid> {
        whereis(&self.inner, name, false).await
    }

    /// Every global name this node knows of, with its holder, sorted by name.
    pub fn registry(&self) -> Vec<RegistryEntry> {
        self.inner.registry.list()
    }
}

/// The member that arbitrates `name`, and its gRPC address (`None` when it is this node).
async fn home(inner: &Inner, name: &str) -> Result<Option<(String, String)>, Status> {
    let members = inner.membership.members().await;
    let home = rendezvous(name, members.iter().map(|m| m.name.as_str()))
        .ok_or_else(|| Status::unavailable("no live members"))?;
    if home == inner.config.name {
        return Ok(None);
    }
    let member = members.iter().find(|m| m.name == home);
    Ok(member.map(|m| (m.name.clone(), m.meta.grpc_addr.clone())))
}

async fn registry_client(
    inner: &Inner,
    name: &str,
    addr: &str,
) -> Result<RegistryClient<tonic::transport::Channel>, Status> {
    inner
        .peer_channel(addr, name)
        .await
        .map(RegistryClient::new)
        .map_err(|e| Status::unavailable(e.to_string()))
}

pub(crate) async fn member_addr(inner: &Inner, node: &str) -> Result<String, Status> {
    inner
        .membership
        .members()
        .await
        .into_iter()
        .find(|m| m.name == node)
        .map(|m| m.meta.grpc_addr)
        .ok_or_else(|| {
            Status::unavailable(format!(
                "noconnection: node {node} is not a live member of the cluster"
            ))
        })
}

pub(crate) async fn register(inner: &Arc<Inner>, name: &str, pid: &Pid) -> Result<(), Status> {
    crate::processes::validate_name(name)?;
    if pid.node != inner.config.name {
        // The holder's node writes its names: forward.
        let addr = member_addr(inner, &pid.node).await?;
        let mut client = registry_client(inner, &pid.node, &addr).await?;
        let request = pb::RegisterRequest {
            name: name.to_owned(),
            pid: Term::Pid(pid.clone()).encode().into(),
        };
        return client.register(request).await.map(|_| ());
    }
    if !inner.is_alive_local(pid) {
        return Err(Status::not_found(format!("noproc: no process {pid}")));
    }
    if let Some(holder) = inner.registry.resolve(name) {
        if holder.pid == *pid {
            return Ok(());
        }
        return Err(taken(name, &holder.pid));
    }
    let entry = RegistryEntry {
        name: name.to_owned(),
        pid: pid.clone(),
        registered_ms: now_ms(),
        epoch: inner.registry.epoch(),
    };
    let home = claim(inner, &entry).await?;
    inner.registry.insert_own(entry);
    if !inner.is_alive_local(pid) {
        // It exited meanwhile; its exit may have run before the insert.
        inner.registry.remove_own(name, Some(pid));
        return Err(Status::not_found(format!("noproc: {pid} exited")));
    }
    // The home holds our state before we answer, so a lookup that asks it finds the name.
    if let Some((home, addr)) = home
        && let Err(e) =
            super::sync::push_to(inner, &super::sync::Partner::direct(&home, &addr)).await
    {
        tracing::debug!(%home, "pushing a registration to its home: {}", e.message());
    }
    tracing::info!(name, pid = %pid, "registered a global name");
    Ok(())
}

fn taken(name: &str, holder: &Pid) -> Status {
    Status::already_exists(format!(
        "the global name {name:?} is taken by {holder}; unregister it first or pick another name"
    ))
}

/// Has the name's home grant it, retrying while the home is unreachable. Returns the home.
async fn claim(
    inner: &Arc<Inner>,
    entry: &RegistryEntry,
) -> Result<Option<(String, String)>, Status> {
    let deadline = Instant::now() + CLAIM_TIMEOUT;
    let mut attempt = 0u32;
    let owner_version = inner.registry.own_version();
    loop {
        let home = home(inner, &entry.name).await?;
        let result = match &home {
            None => inner
                .registry
                .grant(entry, owner_version)
                .map_err(|holder| taken(&entry.name, &holder)),
            Some((name, addr)) => {
                let mut request = tonic::Request::new(pb::ClaimRequest {
                    entry: Some(entry.to_wire()),
                    owner_version,
                });
                request.set_timeout(Duration::from_secs(2));
                inner.security.sign(&mut request, CLAIM, name);
                match registry_client(inner, name, addr).await {
                    Ok(mut client) => client.claim(request).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => return Ok(home),
            // A claim is idempotent, so any transport failure is retried (with the home
            // recomputed: it may just have been declared dead).
            Err(s) if transient(&s) && Instant::now() < deadline => {
                let sleep = crate::coordinator::backoff(attempt)
                    .min(deadline.saturating_duration_since(Instant::now()));
                attempt += 1;
                tokio::time::sleep(sleep).await;
            }
            Err(s) if transient(&s) => {
                return Err(Status::unavailable(format!(
                    "the node that arbitrates {:?} could not be reached for {CLAIM_TIMEOUT:?}: {}; retry",
                    entry.name,
                    s.message()
                )));
            }
            Err(s) => return Err(s),
        }
    }
}

/// Whether a claim's failure is the link's, not the home's answer. A link that breaks mid-call
/// (the home's node killed) surfaces from tonic as `INTERNAL` with an "h2 protocol error"
/// message; the registry's own handlers never answer `INTERNAL`.
fn transient(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown => true,
        Code::Internal => s.message().starts_with("h2 protocol error"),
        _ => false,
    }
}

/// The server side of `Claim`: this node is the name's home.
pub(crate) fn serve_claim(inner: &Inner, req: pb::ClaimRequest) -> Result<pb::ClaimReply, Status> {
    let entry = req
        .entry
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("the claim has no entry"))
        .and_then(RegistryEntry::from_wire)?;
    crate::processes::validate_name(&entry.name)?;
    inner
        .registry
        .grant(&entry, req.owner_version)
        .map_err(|holder| taken(&entry.name, &holder))?;
    Ok(pb::ClaimReply {})
}

pub(crate) async fn unregister(inner: &Arc<Inner>, name: &str) -> Result<bool, Status> {
    // This node's replica may not have the name yet (it was registered through this node for a
    // process elsewhere a moment ago): then the name's home knows who holds it.
    let Some(holder) = whereis(inner, name, false).await else {
        return Ok(false);
    };
    if holder.node == inner.config.name {
        return Ok(inner.registry.remove_own(name, None));
    }
    let addr = member_addr(inner, &holder.node).await?;
    let mut client = registry_client(inner, &holder.node, &addr).await?;
    let reply = client
        .unregister(pb::UnregisterRequest {
            name: name.to_owned(),
        })
        .await?;
    Ok(reply.into_inner().removed)
}

/// The holder of `name`: this node's view first, then (unless `local_only`) the name's home.
pub(crate) async fn whereis(inner: &Arc<Inner>, name: &str, local_only: bool) -> Option<Pid> {
    if let Some(entry) = inner.registry.resolve(name) {
        return Some(entry.pid);
    }
    if local_only {
        return None;
    }
    let (home, addr) = home(inner, name).await.ok()??;
    let mut client = registry_client(inner, &home, &addr).await.ok()?;
    let mut request = tonic::Request::new(pb::WhereisRequest {
        name: name.to_owned(),
        local_only: true,
    });
    request.set_timeout(Duration::from_secs(2));
    let reply = client.whereis(request).await.ok()?.into_inner();
    let pid = crate::messaging::decode_pid(&reply.pid).ok()?;
    // Never a process on a node this node has declared dead.
    inner.registry.is_live(&pid.node).then_some(pid)
}

/// This node lost a name in a conflict: drop it and tell the loser.
pub(crate) fn give_up(inner: &Arc<Inner>, lost: Lost) {
    let Lost { loser, winner } = lost;
    if !inner.registry.remove_own(&loser.name, Some(&loser.pid)) {
        return;
    }
    tracing::warn!(
        name = %loser.name, loser = %loser.pid, winner = %winner,
        "a global name was registered on both sides of a partition; the registration made \
         with a majority (or else the older one) keeps it"
    );
    let inner = inner.clone();
    tokio::spawn(async move {
        let msg = Term::list([
            Term::from("name_lost"),
            Term::from(loser.name.as_str()),
            Term::Pid(winner),
        ]);
        let to = crate::messaging::Address::Pid(loser.pid.clone());
        if let Err(e) = inner.send_to(&to, msg, None).await {
            tracing::debug!(pid = %loser.pid, "telling a process it lost its name: {}", e.message());
        }
    });
}

/// The gRPC handlers for clients.
pub(crate) async fn serve_register(
    inner: &Arc<Inner>,
    req: pb::RegisterRequest,
) -> Result<pb::RegisterReply, Status> {
    let pid = crate::messaging::decode_pid(&req.pid)?;
    register(inner, &req.name, &pid).await?;
    Ok(pb::RegisterReply {})
}

pub(crate) async fn serve_whereis(
    inner: &Arc<Inner>,
    req: pb::WhereisRequest,
) -> Result<pb::WhereisReply, Status> {
    let pid = whereis(inner, &req.name, req.local_only).await;
    Ok(pb::WhereisReply {
        pid: pid
            .map(|p| Term::Pid(p).encode().into())
            .unwrap_or_default(),
    })
}

pub(crate) fn serve_list(inner: &Inner) -> pb::RegistryListReply {
    pb::RegistryListReply {
        node: inner.config.name.clone(),
        names: inner
            .registry
            .list()
            .iter()
            .map(RegistryEntry::to_wire)
            .collect(),
    }
}
