//! The supervisor's public types, their wire conversions, the [`Node`] methods and the
//! `Supervisor` gRPC handlers.

use crate::node::{Inner, Node, NodeError};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::child_record::State;
use steinadler_proto::v1::child_spec::Restart as WireRestart;
use steinadler_proto::v1::supervisor_client::SupervisorClient;
use tonic::Status;

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always, whatever its exit.
    #[default]
    Permanent,
    /// Only after a crash (or its node's death); a normal exit ends it.
    Transient,
    /// Never.
    Temporary,
}

impl FromStr for Restart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "permanent" => Ok(Self::Permanent),
            "transient" => Ok(Self::Transient),
            "temporary" => Ok(Self::Temporary),
            other => Err(format!(
                "{other:?} is not a restart policy: use permanent, transient or temporary"
            )),
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Permanent => "permanent",
            Self::Transient => "transient",
            Self::Temporary => "temporary",
        })
    }
}

/// Where a child may run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    /// Any live node (spread by the hash of the child's id).
    #[default]
    Any,
    /// Live nodes carrying every one of these labels.
    Labels(BTreeMap<String, String>),
    /// The node the hash of this key picks: children with one key share a node.
    Key(String),
}

impl FromStr for Placement {
    type Err = String;

    /// `any`, `label:k=v,k2=v2` or `key:KEY`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a placement: use any, label:k=v[,k2=v2] or key:KEY");
        if s.is_empty() || s == "any" {
            return Ok(Self::Any);
        }
        if let Some(key) = s.strip_prefix("key:") {
            return if key.is_empty() {
                Err(bad())
            } else {
                Ok(Self::Key(key.to_owned()))
            };
        }
        let pairs = s.strip_prefix("label:").ok_or_else(bad)?;
        let labels = pairs
            .split(',')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(bad()),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok(Self::Labels(labels))
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Key(k) => write!(f, "key:{k}"),
            Self::Labels(labels) => {
                let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "label:{}", pairs.join(","))
            }
        }
    }
}

/// What to run and how to keep it running.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    /// The process module, by name or id.
    pub module: String,
    /// Its init argument.
    pub args: Term,
    /// When to restart it.
    pub restart: Restart,
    /// A global name it registers each time it starts.
    pub name: Option<String>,
    /// Where it may run.
    pub placement: Placement,
    /// Restarts allowed within `max_seconds` before the supervisor gives up.
    pub max_restarts: u32,
    /// The window for `max_restarts`.
    pub max_seconds: u32,
}

impl ChildSpec {
    /// A permanent child of `module`, placed anywhere, giving up after 3 restarts in 5 s.
    pub fn new(module: &str, args: Term) -> Self {
        Self {
            module: module.to_owned(),
            args,
            restart: Restart::Permanent,
            name: None,
            placement: Placement::Any,
            max_restarts: 3,
            max_seconds: 5,
        }
    }

    pub(crate) fn to_wire(&self) -> pb::ChildSpec {
        pb::ChildSpec {
            module: self.module.clone(),
            args: self.args.encode().into(),
            restart: match self.restart {
                Restart::Permanent => WireRestart::Permanent,
                Restart::Transient => WireRestart::Transient,
                Restart::Temporary => WireRestart::Temporary,
            } as i32,
            name: self.name.clone().unwrap_or_default(),
            place: self.placement.to_string(),
            max_restarts: self.max_restarts,
            max_seconds: self.max_seconds,
        }
    }

    pub(crate) fn from_wire(spec: &pb::ChildSpec) -> Result<Self, Status> {
        let restart = match WireRestart::try_from(spec.restart) {
            Ok(WireRestart::Permanent) => Restart::Permanent,
            Ok(WireRestart::Transient) => Restart::Transient,
            Ok(WireRestart::Temporary) => Restart::Temporary,
            Err(_) => return Err(Status::invalid_argument("unknown restart policy")),
        };
        let args = if spec.args.is_empty() {
            Term::Nil
        } else {
            crate::messaging::decode_term(&spec.args)?
        };
        Ok(Self {
            module: spec.module.clone(),
            args,
            restart,
            name: (!spec.name.is_empty()).then(|| spec.name.clone()),
            placement: spec.place.parse().map_err(Status::invalid_argument)?,
            max_restarts: spec.max_restarts,
            max_seconds: spec.max_seconds,
        })
    }
}

/// Where a child is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    /// Waiting for a node to start it.
    Pending,
    /// Running as this process.
    Running(Pid),
    /// Stopped with `stop_child`.
    Stopped,
    /// Ended for good without a restart (temporary, or transient that exited normally).
    Done(String),
    /// Restarted too often; the reason says why.
    GaveUp(String),
    /// Last seen running as this process, on a node that membership has since declared dead
    /// (or seen leave): it is not running there, and has not been restarted yet. A node that
    /// sees no majority of the cluster leaves it so until the partition heals.
    NodeDown(Pid),
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pending => f.write_str("pending"),
            Self::Running(_) => f.write_str("running"),
            Self::Stopped => f.write_str("stopped"),
            Self::Done(_) => f.write_str("done"),
            Self::GaveUp(_) => f.write_str("gave up"),
            Self::NodeDown(_) => f.write_str("node down"),
        }
    }
}

/// A supervised child as the cluster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Its id, unique in the cluster.
    pub id: String,
    /// What it runs.
    pub spec: ChildSpec,
    /// Its state.
    pub state: ChildState,
    /// How often it was restarted (after crashes or its node's death).
    pub restarts: u32,
}

impl Child {
    pub(crate) fn from_wire(r: &pb::ChildRecord) -> Result<Self, Status> {
        let spec = ChildSpec::from_wire(r.spec.as_ref().unwrap_or(&pb::ChildSpec::default()))?;
        let state = match State::try_from(r.state) {
            Ok(State::Pending) => ChildState::Pending,
            Ok(State::Running) if r.node_down => {
                ChildState::NodeDown(crate::messaging::decode_pid(&r.pid)?)
            }
            Ok(State::Running) => ChildState::Running(crate::messaging::decode_pid(&r.pid)?),
            Ok(State::Stopped) => ChildState::Stopped,
            Ok(State::Done) => ChildState::Done(r.reason.clone()),
            Ok(State::GaveUp) => ChildState::GaveUp(r.reason.clone()),
            Err(_) => return Err(Status::invalid_argument("unknown child state")),
        };
        Ok(Self {
            id: r.id.clone(),
            spec,
            state,
            restarts: r.restarts,
        })
    }
}

impl Node {
    /// Starts a supervised child somewhere in the cluster, as its placement says, and answers
    /// once it runs.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the spec is malformed, no live node fits the placement, or the
    /// child did not start (an unknown module, a failing `init`, or a taken name).
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Child, NodeError> {
        let record = start(&self.inner, spec.to_wire(), String::new())
            .await
            .map_err(request_err)?;
        Child::from_wire(&record).map_err(request_err)
    }

    /// Stops the child `id` for good, wherever it runs.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if there is no such child.
    pub async fn stop_child(&self, id: &str) -> Result<Child, NodeError> {
        let record = stop(&self.inner, id).await.map_err(request_err)?;
        Child::from_wire(&record).map_err(request_err)
    }

    /// Every child this node knows of, by id. A child whose record says it runs on a node
    /// this node's membership declared dead is [`ChildState::NodeDown`].
    pub fn children(&self) -> Vec<Child> {
        listed(&self.inner)
            .iter()
            .filter_map(|r| Child::from_wire(r).ok())
            .collect()
    }
}

fn request_err(status: Status) -> NodeError {
    NodeError::Request(status.message().to_owned())
}

/// Starts a child: here if placement picks this node (or `id` is set: another node forwarded
/// it), else on the node it picks.
pub(crate) async fn start(
    inner: &Arc<Inner>,
    spec: pb::ChildSpec,
    id: String,
) -> Result<pb::ChildRecord, Status> {
    let parsed = ChildSpec::from_wire(&spec)?;
    if parsed.module.is_empty() {
        return Err(Status::invalid_argument("the child spec names no module"));
    }
    if let Some(name) = &parsed.name {
        crate::processes::validate_name(name)?;
    }
    let forwarded = !id.is_empty();
    let id = if forwarded {
        id
    } else {
        hex::encode(rand::random::<[u8; 8]>())
    };
    let record = pb::ChildRecord {
        id: id.clone(),
        spec: Some(spec.clone()),
        state: State::Pending as i32,
        ..pb::ChildRecord::default()
    };
    let members = inner.membership.members().await;
    let owner = super::run::place(&record, &members).ok_or_else(|| {
        Status::failed_precondition(format!(
            "no live node fits the placement {}; check the labels with `steinadler nodes`",
            parsed.placement
        ))
    })?;
    if owner != inner.config.name && !forwarded {
        let addr = members
            .iter()
            .find(|m| m.name == owner)
            .map(|m| m.meta.grpc_addr.clone())
            .unwrap_or_default();
        let channel = inner
            .peer_channel(&addr, &owner)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let reply = SupervisorClient::new(channel)
            .start_child(pb::StartChildRequest {
                spec: Some(spec),
                id,
            })
            .await?
            .into_inner();
        return reply
            .child
            .ok_or_else(|| Status::internal("the node that started the child sent no record"));
    }
    super::run::start_new(inner, record).await
}

/// Stops a child for good.
pub(crate) async fn stop(inner: &Arc<Inner>, id: &str) -> Result<pb::ChildRecord, Status> {
    let record = inner.supervisor.get(id).ok_or_else(|| {
        Status::not_found(format!(
            "no supervised child {id:?}; list them with `steinadler sup ls`"
        ))
    })?;
    let running = super::running_pid(&record);
    let stopped = super::run::write(
        inner,
        pb::ChildRecord {
            state: State::Stopped as i32,
            ..record
        },
    );
    if let Some(pid) = running {
        if pid.node == inner.config.name {
            super::run::stop_local_child(inner, id);
        } else if let Ok(addr) = crate::registry::api::member_addr(inner, &pid.node).await
            && let Err(e) = crate::registry::sync::push_to(
                inner,
                &crate::registry::sync::Partner::direct(&pid.node, &addr),
            )
            .await
        {
            // Gossip carries it there all the same.
            tracing::debug!(node = %pid.node, "pushing a stop: {}", e.message());
        }
    }
    tracing::info!(child = id, "supervised child stopped");
    Ok(stopped)
}

pub(crate) fn list(inner: &Inner) -> pb::ListChildrenReply {
    pb::ListChildrenReply {
        node: inner.config.name.clone(),
        children: listed(inner),
    }
}

/// Every record, each running one marked `node_down` when its node is departed.
fn listed(inner: &Inner) -> Vec<pb::ChildRecord> {
    let mut records = inner.supervisor.all();
    for r in &mut records {
        r.node_down = super::running_pid(r).is_some_and(|p| inner.quorum.is_departed(&p.node));
    }
    records
}
