//! The API server: tonic gRPC services, hosted in-process by the daemon, and on the same port
//! the HTTP API (JSON and Server-Sent Events) with the dashboard (`http/`).
//!
//! [`serve`] takes an already bound listener and a shutdown future, so tests start it on port 0
//! without sleeps. Every service except gRPC health and reflection requires the per-home API
//! token (`authorization: Bearer <token>`), so other local users cannot drive this user's stack;
//! the HTTP routes take the token or the session cookie it is exchanged for (`http/auth.rs`).

mod approvals;
mod blocking;
mod error;
mod executions;
mod http;
mod hub;
mod lifecycle;
mod resources;
mod secrets;
mod sub_agents;
mod subscribe;
mod telemetry;

pub use error::ServerError;
pub use executions::ExecutionApi;
pub use http::{Filter as ExecutionFilter, Page as ExecutionPage, Summary as ExecutionSummary};
pub use hub::{EventHub, is_terminal};
pub use lifecycle::{AGENT_WORKFLOW, TemporalTarget};
pub use resources::ResourceApi;
pub use subscribe::{MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTIONS_PER_CONNECTION, SUBSCRIBER_PAGE_BYTES};

use std::future::Future;
use std::sync::Arc;
use stigmer_proto::MAX_MESSAGE_BYTES;
use stigmer_proto::daemon::v1::daemon_service_server::{DaemonService, DaemonServiceServer};
use stigmer_proto::daemon::v1::{
    GetStatusRequest, GetStatusResponse, ShutdownRequest, ShutdownResponse,
};
use stigmer_proto::executions::v1::execution_service_server::ExecutionServiceServer;
use stigmer_proto::resources::v1::resource_service_server::ResourceServiceServer;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// What the API server needs from the daemon that hosts it.
pub trait DaemonControl: Send + Sync + 'static {
    /// A snapshot of the stack.
    fn status(&self) -> GetStatusResponse;
    /// Begins an orderly shutdown of the whole stack; returns at once.
    fn request_shutdown(&self);
}

/// Errors from serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
}

/// What the API server serves.
pub struct ServerContext {
    /// The per-home token every authenticated request must carry.
    pub api_token: String,
    pub daemon: Arc<dyn DaemonControl>,
    pub store: Arc<dyn stigmer_store::Store>,
    /// Where executions run; `None` makes creating one fail as UNAVAILABLE.
    pub temporal: Option<TemporalTarget>,
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    context: ServerContext,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let ServerContext {
        api_token,
        daemon,
        store,
        temporal,
    } = context;
    let namespace = temporal.as_ref().map(|target| target.namespace.clone());
    let executions = ExecutionApi::new(store.clone(), temporal);
    executions.resume_watches();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<DaemonServiceServer<DaemonApi>>()
        .await;
    health_reporter
        .set_serving::<ResourceServiceServer<ResourceApi>>()
        .await;
    health_reporter
        .set_serving::<ExecutionServiceServer<ExecutionApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(stigmer_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| ServeError::Reflection(error.to_string()))?;
    let expected = format!("Bearer {api_token}");
    let authenticate = move |request: Request<()>| -> Result<Request<()>, Status> {
        match request.metadata().get("authorization") {
            Some(value) if value.as_bytes() == expected.as_bytes() => Ok(request),
            Some(_) => Err(ServerError::WrongToken.into()),
            None => Err(ServerError::MissingToken.into()),
        }
    };
    let address = listener.local_addr().ok();
    if let Some(address) = address {
        tracing::info!(address = %address, "API server serving.");
    }
    let http = http::router(http::HttpContext::new(
        executions.clone(),
        store.clone(),
        daemon.clone(),
        namespace,
        &api_token,
        address.map(|address| address.port()).unwrap_or_default(),
    ));
    let grpc = tonic::service::Routes::builder()
        .add_service(health_service)
        .add_service(reflection)
        // Every service takes and sends messages up to the limit the clients use.
        .add_service(tonic::service::interceptor::InterceptedService::new(
            DaemonServiceServer::new(DaemonApi { daemon })
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            authenticate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ExecutionServiceServer::new(executions)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            authenticate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ResourceServiceServer::new(ResourceApi::new(store))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            authenticate,
        ))
        .clone()
        .routes();
    // gRPC and the HTTP API on one listener: HTTP/2 for gRPC, HTTP/1.1 for browsers.
    let routes = tonic::service::Routes::from(grpc.into_axum_router().merge(http));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            // No Nagle delay: a streamed event (or a window's worth of one) goes out at once
            // instead of waiting for the client's delayed acknowledgement.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    tracing::info!("API server stopped.");
    Ok(())
}

struct DaemonApi {
    daemon: Arc<dyn DaemonControl>,
}

#[tonic::async_trait]
impl DaemonService for DaemonApi {
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        Ok(Response::new(self.daemon.status()))
    }

    async fn shutdown(
        &self,
        _request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        tracing::info!("Shutdown requested over the API.");
        self.daemon.request_shutdown();
        Ok(Response::new(ShutdownResponse {}))
    }
}
