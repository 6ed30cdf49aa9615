//! Talking to a running daemon over gRPC: find it through `$STIGMER_HOME/run/`, authenticate
//! with the per-home token.

use std::time::Duration;
use stigmer_config::StigmerHome;
use stigmer_daemon::state::{RunState, read_api_token};
use stigmer_proto::daemon::v1::daemon_service_client::DaemonServiceClient;
use stigmer_proto::daemon::v1::{GetStatusRequest, GetStatusResponse, ShutdownRequest};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::resources::v1::resource_service_client::ResourceServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds the per-home token to every request.
#[derive(Clone)]
pub struct TokenInterceptor {
    header: MetadataValue<Ascii>,
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

pub type Authenticated = InterceptedService<Channel, TokenInterceptor>;

/// A connection to the daemon of one home.
pub struct DaemonClient {
    inner: DaemonServiceClient<Authenticated>,
    resources: ResourceServiceClient<Authenticated>,
    executions: ExecutionServiceClient<Authenticated>,
}

impl DaemonClient {
    /// Connects to the daemon recorded in `home`'s run state.
    pub async fn connect(home: &StigmerHome) -> Result<DaemonClient, String> {
        let state = RunState::load(home).ok_or("the daemon has not recorded its address yet")?;
        let address = state
            .server_address
            .ok_or("the daemon has not recorded its address yet")?;
        DaemonClient::connect_to(home, &address).await
    }

    /// Connects to the API server at `address` (`host:port`).
    pub async fn connect_to(home: &StigmerHome, address: &str) -> Result<DaemonClient, String> {
        let token = read_api_token(home).ok_or("the API token is missing")?;
        let header: MetadataValue<_> = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the API token is not valid text".to_owned())?;
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| error.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .map_err(|error| format!("cannot reach the daemon at {address}: {error}"))?;
        let interceptor = TokenInterceptor { header };
        Ok(DaemonClient {
            inner: DaemonServiceClient::with_interceptor(channel.clone(), interceptor.clone()),
            resources: ResourceServiceClient::with_interceptor(
                channel.clone(),
                interceptor.clone(),
            )
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024),
            executions: ExecutionServiceClient::with_interceptor(channel, interceptor)
                .max_decoding_message_size(256 * 1024 * 1024),
        })
    }

    pub async fn status(&mut self) -> Result<GetStatusResponse, Status> {
        Ok(self
            .inner
            .get_status(GetStatusRequest {})
            .await?
            .into_inner())
    }

    /// The resource API.
    pub fn resources(&mut self) -> &mut ResourceServiceClient<Authenticated> {
        &mut self.resources
    }

    /// The execution API: create, follow, list and cancel agent executions.
    pub fn executions(&mut self) -> &mut ExecutionServiceClient<Authenticated> {
        &mut self.executions
    }

    pub async fn shutdown(&mut self) -> Result<(), Status> {
        self.inner.shutdown(ShutdownRequest {}).await?;
        Ok(())
    }
}
