//! The gRPC services of the cluster registry, the supervisor and streams. Each handler
//! authorizes the caller and hands over to [`crate::registry::api`], [`crate::supervisor::api`]
//! or [`crate::streams`].

use crate::node::Inner;
use crate::security::Access;
use std::sync::Arc;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::registry_server::{Registry, RegistryServer};
use steinadler_proto::v1::streams_server::{Streams, StreamsServer};
use steinadler_proto::v1::supervisor_server::{Supervisor, SupervisorServer};
use tonic::{Request, Response, Status, Streaming};

/// The services, ready for the router.
pub(crate) fn services(
    inner: &Arc<Inner>,
) -> (
    RegistryServer<ClusterService>,
    SupervisorServer<ClusterService>,
    crate::streams::route::StreamsRoutes,
) {
    let service = ClusterService {
        inner: inner.clone(),
    };
    let max = inner.config.max_message_bytes;
    (
        RegistryServer::new(service.clone()),
        SupervisorServer::new(service.clone()),
        crate::streams::route::StreamsRoutes::new(
            inner.clone(),
            StreamsServer::new(service)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        ),
    )
}

#[derive(Debug, Clone)]
pub(crate) struct ClusterService {
    inner: Arc<Inner>,
}

impl ClusterService {
    fn authorize<T: prost::Message>(
        &self,
        request: &Request<T>,
        method: &str,
        access: Access,
    ) -> Result<(), Status> {
        self.inner
            .security
            .authorize(
                request,
                method,
                access,
                &self.inner.stats,
                prost::Message::encode_to_vec,
            )
            .map(|_| ())
    }
}

#[tonic::async_trait]
impl Registry for ClusterService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Registry/Register", Access::Client)?;
        crate::registry::api::serve_register(&self.inner, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn unregister(
        &self,
        request: Request<pb::UnregisterRequest>,
    ) -> Result<Response<pb::UnregisterReply>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Registry/Unregister",
            Access::Client,
        )?;
        let removed =
            crate::registry::api::unregister(&self.inner, &request.get_ref().name).await?;
        Ok(Response::new(pb::UnregisterReply { removed }))
    }

    async fn whereis(
        &self,
        request: Request<pb::WhereisRequest>,
    ) -> Result<Response<pb::WhereisReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Registry/Whereis", Access::Client)?;
        crate::registry::api::serve_whereis(&self.inner, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list(
        &self,
        request: Request<pb::RegistryListRequest>,
    ) -> Result<Response<pb::RegistryListReply>, Status> {
        self.authorize(&request, "/steinadler.v1.Registry/List", Access::Client)?;
        Ok(Response::new(crate::registry::api::serve_list(&self.inner)))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimReply>, Status> {
        self.authorize(&request, crate::registry::api::CLAIM, Access::Node)?;
        crate::registry::api::serve_claim(&self.inner, request.into_inner()).map(Response::new)
    }

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<pb::SyncReply>, Status> {
        self.authorize(&request, crate::registry::sync::SYNC, Access::Node)?;
        crate::registry::sync::serve(&self.inner, request.into_inner()).map(Response::new)
    }
}

#[tonic::async_trait]
impl Supervisor for ClusterService {
    async fn start_child(
        &self,
        request: Request<pb::StartChildRequest>,
    ) -> Result<Response<pb::StartChildReply>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Supervisor/StartChild",
            Access::Client,
        )?;
        let req = request.into_inner();
        let spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("the request has no child spec"))?;
        let child = crate::supervisor::api::start(&self.inner, spec, req.id).await?;
        Ok(Response::new(pb::StartChildReply { child: Some(child) }))
    }

    async fn stop_child(
        &self,
        request: Request<pb::StopChildRequest>,
    ) -> Result<Response<pb::StopChildReply>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Supervisor/StopChild",
            Access::Client,
        )?;
        let child = crate::supervisor::api::stop(&self.inner, &request.get_ref().id).await?;
        Ok(Response::new(pb::StopChildReply { child: Some(child) }))
    }

    async fn list_children(
        &self,
        request: Request<pb::ListChildrenRequest>,
    ) -> Result<Response<pb::ListChildrenReply>, Status> {
        self.authorize(
            &request,
            "/steinadler.v1.Supervisor/ListChildren",
            Access::Client,
        )?;
        Ok(Response::new(crate::supervisor::api::list(&self.inner)))
    }
}

#[tonic::async_trait]
impl Streams for ClusterService {
    type OpenStream = futures::stream::Empty<Result<pb::StreamEvent, Status>>;

    /// Never called: the node serves `Streams.Open` itself ([`crate::streams::route`]), so
    /// that batches are framed without a copy; the generated server needs the method all the
    /// same.
    async fn open(
        &self,
        _request: Request<Streaming<pb::StreamControl>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        Err(Status::internal(
            "Streams.Open reached tonic's generated server, not the node's route: a bug",
        ))
    }

    type EchoStream = crate::streams::serve::ItemStream;

    async fn echo(
        &self,
        request: Request<pb::StreamEchoRequest>,
    ) -> Result<Response<Self::EchoStream>, Status> {
        self.authorize(&request, "/steinadler.v1.Streams/Echo", Access::Client)?;
        Ok(Response::new(crate::streams::serve::echo(
            request.into_inner(),
        )))
    }
}
