//! The `Node` API's gRPC service: each method authorizes its caller and hands over to the
//! module that owns it. The router that serves it with the other services is [`crate::server`].

use crate::coordinator;
use crate::node::Inner;
use crate::security::Access;
use crate::target::Target;
use crate::wire;
use std::pin::Pin;
use std::sync::Arc;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_server::{Node as NodeApi, NodeServer};
use steinadler_security::Role;
use steinadler_transport::PeerInfo;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// Module bytes per `ModuleChunk` when streaming a module out.
const CHUNK: usize = 256 << 10;

/// gRPC paths of the node-to-node methods, which the cookie's MAC covers.
pub(crate) const INVOKE: &str = "/steinadler.v1.Node/Invoke";
pub(crate) const FETCH_MODULE: &str = "/steinadler.v1.Node/FetchModule";
pub(crate) const GOSSIP_KEY: &str = "/steinadler.v1.Node/GossipKey";

/// The `Node` API, ready for the router ([`crate::server`]).
pub(crate) fn api(inner: &Arc<Inner>) -> NodeServer<Service> {
    let max = inner.config.max_message_bytes;
    NodeServer::new(Service {
        inner: inner.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max)
}

#[derive(Debug)]
pub(crate) struct Service {
    inner: Arc<Inner>,
}

impl Service {
    /// Renews the caller's certificate for `role`, once it may call `path` with `access`.
    fn renew_as(
        &self,
        request: Request<pb::RenewRequest>,
        (path, access): (&str, Access),
        role: Role,
    ) -> Result<Response<pb::RenewReply>, Status> {
        let caller = self.authorize(&request, path, access)?;
        let remote = remote_of(&request);
        crate::renew::serve(&self.inner, caller, request.into_inner(), &remote, role)
            .map(Response::new)
    }

    /// See [`crate::security::Security::authorize`].
    fn authorize<T: prost::Message>(
        &self,
        request: &Request<T>,
        method: &str,
        access: Access,
    ) -> Result<Option<steinadler_security::Identity>, Status> {
        self.inner.security.authorize(
            request,
            method,
            access,
            &self.inner.stats,
            prost::Message::encode_to_vec,
        )
    }

    /// The span of a request that arrived, in the caller's trace when it sent one.
    fn span<T>(&self, what: &'static str, request: &Request<T>) -> tracing::Span {
        let trace = crate::telemetry::extract(request.metadata());
        crate::telemetry::serve(what, &self.inner.config.name, trace)
    }
}

fn remote_of<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<PeerInfo>()
        .map(|p| p.remote.to_string())
        .or_else(|| request.remote_addr().map(|a| a.to_string()))
        .unwrap_or_else(|| "unknown".into())
}

type ModuleStream = Pin<Box<dyn Stream<Item = Result<pb::ModuleChunk, Status>> + Send>>;

#[tonic::async_trait]
impl NodeApi for Service {
    async fn deploy(
        &self,
        request: Request<Streaming<pb::DeployChunk>>,
    ) -> Result<Response<pb::DeployReply>, Status> {
        self.inner.security.authorize(
            &request,
            "/steinadler.v1.Node/Deploy",
            Access::Client,
            &self.inner.stats,
            |_| Vec::new(),
        )?;
        let mut stream = request.into_inner();
        let mut name = String::new();
        let mut expected = None;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if bytes.is_empty() && name.is_empty() {
                name = chunk.name;
                if !chunk.expected_id.is_empty() {
                    expected = Some(wire::module_id(&chunk.expected_id)?);
                }
            }
            if bytes.len() + chunk.data.len() > self.inner.config.max_module_bytes {
                return Err(Status::resource_exhausted(format!(
                    "the module is larger than the node's limit of {} bytes",
                    self.inner.config.max_module_bytes
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if let Some(expected) = expected
            && steinadler_core::ModuleId::of(&bytes) != expected
        {
            return Err(Status::data_loss(
                "the uploaded bytes do not match the expected module id",
            ));
        }
        let module = self
            .inner
            .load(bytes)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !name.is_empty() {
            self.inner.name_module(&name, &module);
        }
        tracing::info!(module = %module.id().short(), name = %name, size = module.size(), "deployed module");
        Ok(Response::new(pb::DeployReply {
            id: module.id().as_bytes().to_vec().into(),
            size: module.size() as u64,
            functions: module.functions().map(str::to_owned).collect(),
        }))
    }

    type FetchModuleStream = ModuleStream;

    async fn fetch_module(
        &self,
        request: Request<pb::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        self.authorize(&request, FETCH_MODULE, Access::Node)?;
        let _span = self.span("serve FetchModule", &request);
        let id = wire::module_id(&request.into_inner().id)?;
        let module = self
            .inner
            .host
            .get(id)
            .map_err(|_| Status::not_found(format!("this node does not hold module {id}")))?;
        let bytes = module.bytes();
        let chunks: Vec<Result<pb::ModuleChunk, Status>> = bytes
            .chunks(CHUNK)
            .map(|c| {
                Ok(pb::ModuleChunk {
                    data: bytes::Bytes::copy_from_slice(c),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn invoke(
        &self,
        request: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeReply>, Status> {
        self.authorize(&request, INVOKE, Access::Node)?;
        let span = self.span("serve Invoke", &request);
        self.inner
            .invoke_local(request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    type SpreadStream = Pin<Box<dyn Stream<Item = Result<pb::SpreadProgress, Status>> + Send>>;

    async fn spread(
        &self,
        request: Request<pb::SpreadRequest>,
    ) -> Result<Response<Self::SpreadStream>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/Spread", Access::Client)?;
        let reports = crate::spread::spread(&self.inner, &request.into_inner().module).await?;
        let mut done = 0usize;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::UnboundedReceiverStream::new(reports),
            move |p| {
                done += p.results.len();
                Ok(pb::SpreadProgress {
                    done: u32::try_from(done).unwrap_or(u32::MAX),
                    total: u32::try_from(p.total).unwrap_or(u32::MAX),
                    results: p
                        .results
                        .into_iter()
                        .map(crate::NodeResult::into_wire)
                        .collect(),
                })
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn invoke_on(
        &self,
        request: Request<pb::InvokeOnRequest>,
    ) -> Result<Response<pb::InvokeOnReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/InvokeOn", Access::Client)?;
        let span = self.span("serve InvokeOn", &request);
        let results = coordinator::invoke_on(&self.inner, invoke_request(request.into_inner())?)
            .instrument(span)
            .await?;
        Ok(Response::new(pb::InvokeOnReply {
            results: results
                .into_iter()
                .map(coordinator::NodeResult::into_wire)
                .collect(),
        }))
    }

    type InvokeOnStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::InvokeOnEvent, Status>> + Send>>;

    async fn invoke_on_stream(
        &self,
        request: Request<pb::InvokeOnRequest>,
    ) -> Result<Response<Self::InvokeOnStreamStream>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Node/InvokeOnStream",
            Access::Client,
        )?;
        let span = self.span("serve InvokeOnStream", &request);
        let call = invoke_request(request.into_inner())?;
        // At most one event per selected node and one more: the channel is bounded by the
        // selection. The call runs to its end even if the caller stops listening.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let inner = self.inner.clone();
        tokio::spawn(
            async move {
                use pb::invoke_on_event::Event;
                let event = |e| Ok(pb::InvokeOnEvent { event: Some(e) });
                let outcome = coordinator::invoke_on_each(
                    &inner,
                    call,
                    |n| {
                        let _ =
                            tx.send(event(Event::Selected(u32::try_from(n).unwrap_or(u32::MAX))));
                    },
                    |r| {
                        let _ = tx.send(event(Event::Result(r.into_wire())));
                    },
                )
                .await;
                if let Err(status) = outcome {
                    let _ = tx.send(Err(status));
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/ListMembers", Access::Client)?;
        let members = self.inner.membership.members().await;
        let addr_of: std::collections::HashMap<_, _> = members
            .iter()
            .map(|m| (m.name.clone(), m.meta.grpc_addr.clone()))
            .collect();
        Ok(Response::new(pb::ListMembersReply {
            members: members
                .into_iter()
                .map(|m| pb::Member {
                    relay_addrs: (m.meta.relays.iter())
                        .filter_map(|r| addr_of.get(r).cloned())
                        .collect(),
                    name: m.name,
                    grpc_addr: m.meta.grpc_addr,
                    gossip_addr: m.gossip_addr.to_string(),
                    labels: m.meta.labels.into_iter().collect(),
                    modules_digest: m.meta.modules_digest,
                    load: m.meta.load,
                })
                .collect(),
            insecure: !self.inner.security.is_secure(),
            gossip_wire: self.inner.config.gossip_mode.as_str().to_owned(),
        }))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/Ping", Access::Client)?;
        Ok(Response::new(pb::PingReply {
            payload: request.into_inner().payload,
        }))
    }

    async fn list_modules(
        &self,
        request: Request<pb::ListModulesRequest>,
    ) -> Result<Response<pb::ListModulesReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/ListModules", Access::Client)?;
        let modules = self.inner.modules.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Response::new(pb::ListModulesReply {
            node: self.inner.config.name.clone(),
            modules: modules
                .iter()
                .map(|(id, m)| pb::ModuleInfo {
                    id: id.as_bytes().to_vec().into(),
                    names: m.names.clone(),
                    size: m.size as u64,
                    functions: m.functions.clone(),
                })
                .collect(),
        }))
    }

    async fn get_ca(
        &self,
        request: Request<pb::GetCaRequest>,
    ) -> Result<Response<pb::GetCaReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/GetCa", Access::Public)?;
        let Some(loaded) = self.inner.security.loaded() else {
            return Err(Status::failed_precondition(
                "this node runs --insecure: it has no cluster CA",
            ));
        };
        Ok(Response::new(pb::GetCaReply {
            ca_cert_pem: loaded.material.ca_cert_pem.clone(),
        }))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinReply>, Status> {
        let caller = self.authorize(&request, "/steinadler.v1.Node/Join", Access::Public)?;
        let remote = remote_of(&request);
        let forwarded = caller.is_some();
        crate::join::serve(&self.inner, request.into_inner(), &remote, forwarded)
            .await
            .map(Response::new)
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewReply>, Status> {
        self.renew_as(request, (crate::renew::RENEW, Access::Node), Role::Node)
    }

    async fn renew_client(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewReply>, Status> {
        let path = "/steinadler.v1.Node/RenewClient";
        self.renew_as(request, (path, Access::Client), Role::Client)
    }

    async fn gossip_key(
        &self,
        request: Request<pb::GossipKeyRequest>,
    ) -> Result<Response<pb::GossipKeyReply>, Status> {
        self.authorize(&request, GOSSIP_KEY, Access::Node)?;
        crate::rotate::apply(&self.inner, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn rotate_gossip_key(
        &self,
        request: Request<pb::RotateGossipKeyRequest>,
    ) -> Result<Response<pb::RotateGossipKeyReply>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Node/RotateGossipKey",
            Access::Node,
        )?;
        crate::rotate::rotate(&self.inner).await.map(Response::new)
    }

    async fn new_token(
        &self,
        request: Request<pb::NewTokenRequest>,
    ) -> Result<Response<pb::NewTokenReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/NewToken", Access::Node)?;
        let reply = crate::tokens::mint(&self.inner, request.into_inner()).await;
        reply.map(Response::new)
    }

    async fn sync_token(
        &self,
        request: Request<pb::TokenState>,
    ) -> Result<Response<pb::TokenState>, Status> {
        let caller = self.authorize(&request, crate::tokens::SYNC_TOKEN, Access::Node)?;
        let caller = caller.map(|c| c.name).unwrap_or_default();
        crate::tokens::serve_sync(&self.inner, request.get_ref(), &caller).map(Response::new)
    }

    async fn claim_token_use(
        &self,
        request: Request<pb::ClaimTokenUseRequest>,
    ) -> Result<Response<pb::ClaimTokenUseReply>, Status> {
        let caller = self.authorize(&request, crate::tokens::CLAIM_TOKEN_USE, Access::Node)?;
        let caller = caller.map(|c| c.name).unwrap_or_default();
        crate::tokens::serve_claim(&self.inner, request.get_ref(), &caller).map(Response::new)
    }

    async fn spawn(
        &self,
        request: Request<pb::SpawnRequest>,
    ) -> Result<Response<pb::SpawnReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/Spawn", Access::Client)?;
        crate::process_api::spawn(&self.inner, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/Send", Access::Client)?;
        let span = self.span("serve Send", &request);
        crate::process_api::send(&self.inner, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn call(
        &self,
        request: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/Call", Access::Client)?;
        let span = self.span("serve Call", &request);
        crate::process_api::call(&self.inner, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn list_processes(
        &self,
        request: Request<pb::ListProcessesRequest>,
    ) -> Result<Response<pb::ListProcessesReply>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Node/ListProcesses",
            Access::Client,
        )?;
        Ok(Response::new(crate::process_api::list(&self.inner)))
    }

    type MonitorStream = crate::monitor::DownStream;

    async fn monitor(
        &self,
        request: Request<pb::MonitorRequest>,
    ) -> Result<Response<Self::MonitorStream>, Status> {
        self.authorize(&request, "/steinadler.v1.Node/Monitor", Access::Client)?;
        crate::monitor::serve(&self.inner, request.into_inner()).map(Response::new)
    }

    type InvokeStreamStream = crate::mux_h2::ResultStream;

    async fn invoke_stream(
        &self,
        request: Request<Streaming<pb::InvokeFrame>>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        self.inner.security.authorize(
            &request,
            steinadler_transport::INVOKE_STREAM,
            Access::Node,
            &self.inner.stats,
            |_| Vec::new(),
        )?;
        Ok(Response::new(crate::mux_h2::serve(
            self.inner.clone(),
            request.into_inner(),
        )))
    }
}

/// A client's `InvokeOn` request as the coordinator takes it.
fn invoke_request(req: pb::InvokeOnRequest) -> Result<coordinator::Request, Status> {
    let target: Target = req
        .target
        .parse()
        .map_err(|e: crate::TargetError| Status::invalid_argument(e.to_string()))?;
    Ok(coordinator::Request {
        target,
        module: req.module,
        function: req.function,
        args: req.args,
        limits: req.limits.unwrap_or_default(),
        idempotent: req.idempotent,
    })
}
