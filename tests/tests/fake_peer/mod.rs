//! A peer that serves the wrong bytes for every module: the fetching node must refuse them.
use std::pin::Pin;
use std::sync::Arc;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_server::{Node as NodeApi, NodeServer};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

pub(super) struct Liar(pub(super) Vec<u8>);

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::ModuleChunk, Status>> + Send>>;

#[tonic::async_trait]
impl NodeApi for Liar {
    async fn deploy(
        &self,
        _: Request<Streaming<pb::DeployChunk>>,
    ) -> Result<Response<pb::DeployReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type FetchModuleStream = Chunks;
    async fn fetch_module(
        &self,
        _: Request<pb::FetchModuleRequest>,
    ) -> Result<Response<Chunks>, Status> {
        let chunk = pb::ModuleChunk {
            data: self.0.clone().into(),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(chunk)]))))
    }
    async fn invoke(
        &self,
        _: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn invoke_on(
        &self,
        _: Request<pb::InvokeOnRequest>,
    ) -> Result<Response<pb::InvokeOnReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type InvokeOnStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::InvokeOnEvent, Status>> + Send>>;
    async fn invoke_on_stream(
        &self,
        _: Request<pb::InvokeOnRequest>,
    ) -> Result<Response<Self::InvokeOnStreamStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type SpreadStream = Pin<Box<dyn Stream<Item = Result<pb::SpreadProgress, Status>> + Send>>;
    async fn spread(
        &self,
        _: Request<pb::SpreadRequest>,
    ) -> Result<Response<Self::SpreadStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_members(
        &self,
        _: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_modules(
        &self,
        _: Request<pb::ListModulesRequest>,
    ) -> Result<Response<pb::ListModulesReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn ping(&self, _: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_ca(
        &self,
        _: Request<pb::GetCaRequest>,
    ) -> Result<Response<pb::GetCaReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn join(&self, _: Request<pb::JoinRequest>) -> Result<Response<pb::JoinReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn renew(
        &self,
        _: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn renew_client(
        &self,
        _: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn gossip_key(
        &self,
        _: Request<pb::GossipKeyRequest>,
    ) -> Result<Response<pb::GossipKeyReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn rotate_gossip_key(
        &self,
        _: Request<pb::RotateGossipKeyRequest>,
    ) -> Result<Response<pb::RotateGossipKeyReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn new_token(
        &self,
        _: Request<pb::NewTokenRequest>,
    ) -> Result<Response<pb::NewTokenReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn sync_token(
        &self,
        _: Request<pb::TokenState>,
    ) -> Result<Response<pb::TokenState>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn claim_token_use(
        &self,
        _: Request<pb::ClaimTokenUseRequest>,
    ) -> Result<Response<pb::ClaimTokenUseReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn spawn(
        &self,
        _: Request<pb::SpawnRequest>,
    ) -> Result<Response<pb::SpawnReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn send(&self, _: Request<pb::SendRequest>) -> Result<Response<pb::SendReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn call(&self, _: Request<pb::CallRequest>) -> Result<Response<pb::CallReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_processes(
        &self,
        _: Request<pb::ListProcessesRequest>,
    ) -> Result<Response<pb::ListProcessesReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type MonitorStream = Pin<Box<dyn Stream<Item = Result<pb::Down, Status>> + Send>>;
    async fn monitor(
        &self,
        _: Request<pb::MonitorRequest>,
    ) -> Result<Response<Self::MonitorStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type InvokeStreamStream = Pin<Box<dyn Stream<Item = Result<pb::InvokeResult, Status>> + Send>>;
    async fn invoke_stream(
        &self,
        _: Request<Streaming<pb::InvokeFrame>>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Serves the liar as a node would: plain TCP, peers' links through the transport's accept
/// loop (a node fetches over its link to the origin), clients' HTTP/2 directly.
pub(super) async fn serve(bytes: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let transport = steinadler_transport::Transport::new(Default::default(), Arc::new(NoCreds));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let incoming = transport.incoming_plain(Arc::new(Plain), listener, stopped);
    tokio::spawn(async move {
        let _keep = (transport, stop);
        let _ = tonic::transport::Server::builder()
            .add_service(NodeServer::new(Liar(bytes)))
            .serve_with_incoming(incoming)
            .await;
    });
    addr
}

/// The liar dials nobody.
#[derive(Debug)]
struct NoCreds;

impl steinadler_transport::Credentials for NoCreds {
    fn client_tls(&self, _: &str) -> steinadler_transport::ClientTls {
        steinadler_transport::ClientTls::Off
    }
    fn opening_cookie(&self, _: &str) -> Vec<u8> {
        Vec::new()
    }
}

/// Takes every link, runs no invoke frame.
struct Plain;

impl steinadler_transport::Handler for Plain {
    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        None
    }
    fn refused_tls(&self, _: steinadler_transport::TlsRefusal) {}
    fn authorize_opening(&self, _: &Request<()>) -> Result<(), Status> {
        Ok(())
    }
    #[allow(
        clippy::manual_async_fn,
        reason = "the future must be 'static, which an async fn borrowing self is not"
    )]
    fn answer(
        self: &Arc<Self>,
        _: pb::InvokeFrame,
    ) -> impl Future<Output = Result<pb::InvokeResult, Status>> + Send + 'static {
        async { Err(Status::unimplemented("fake")) }
    }
}
