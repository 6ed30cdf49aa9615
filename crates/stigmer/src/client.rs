//! Talking to a running daemon over gRPC: find it through `$STIGMER_HOME/run/`, authenticate
//! with the per-home token.

use std::time::Duration;
use stigmer_client::home::read_api_token;
use stigmer_client::{ApiClients, Authenticated, Timeouts};
use stigmer_config::StigmerHome;
use stigmer_proto::daemon::v1::daemon_service_client::DaemonServiceClient;
use stigmer_proto::daemon::v1::{GetStatusRequest, GetStatusResponse, ShutdownRequest};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::resources::v1::resource_service_client::ResourceServiceClient;
use tonic::Status;

/// A connection to the daemon of one home.
pub struct DaemonClient {
    inner: DaemonServiceClient<Authenticated>,
    resources: ResourceServiceClient<Authenticated>,
    executions: ExecutionServiceClient<Authenticated>,
}

/// A daemon on this machine answers at once; an apply of many documents may take a while.
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    request: Some(Duration::from_secs(60)),
};

impl From<ApiClients> for DaemonClient {
    fn from(clients: ApiClients) -> DaemonClient {
        DaemonClient {
            inner: clients.daemon,
            resources: clients.resources,
            executions: clients.executions,
        }
    }
}

impl DaemonClient {
    /// Connects to the daemon recorded in `home`'s run state.
    pub async fn connect(home: &StigmerHome) -> Result<DaemonClient, String> {
        let clients = ApiClients::connect_home(home, TIMEOUTS)
            .await
            .map_err(|error| error.to_string())?;
        Ok(DaemonClient::from(clients))
    }

    /// Connects to the API server at `address` (`host:port`).
    pub async fn connect_to(home: &StigmerHome, address: &str) -> Result<DaemonClient, String> {
        let token = read_api_token(home).ok_or("the API token is missing")?;
        let clients = ApiClients::connect(address, &token, TIMEOUTS)
            .await
            .map_err(|error| error.to_string())?;
        Ok(DaemonClient::from(clients))
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

    /// The typed calls of `stigmer_client` over this connection.
    pub fn api(&self) -> ApiClients {
        ApiClients {
            daemon: self.inner.clone(),
            resources: self.resources.clone(),
            executions: self.executions.clone(),
        }
    }

    pub async fn shutdown(&mut self) -> Result<(), Status> {
        self.inner.shutdown(ShutdownRequest {}).await?;
        Ok(())
    }
}
