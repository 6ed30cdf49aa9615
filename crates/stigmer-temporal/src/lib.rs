//! Everything Stigmer does with Temporal that is not a workflow of its own: connecting, semantic
//! health checks ("the namespace answers", "this worker is polling"), and the worker bootstrap
//! both runners share.
//!
//! Readiness is decided by Temporal itself: a runner counts as ready only when Temporal lists a
//! poller with the runner's per-launch identity on its task queue
//! ([`TemporalProbe::poller_identities`]), never because its process is alive.

mod ping;

pub use ping::{PING_WORKFLOW, PingActivities, PingWorkflow};

use std::str::FromStr;
use std::time::Duration;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_common::protos::temporal::api::enums::v1::TaskQueueType;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, DescribeTaskQueueRequest,
};

pub use temporalio_client;
pub use temporalio_common;
pub use temporalio_sdk;

/// Why talking to Temporal failed.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("{address} is not a valid Temporal address: {message}")]
    InvalidAddress { address: String, message: String },
    #[error("cannot connect to Temporal at {address}: {message}")]
    Connect { address: String, message: String },
    #[error("Temporal at {address} did not answer {call}: {message}")]
    Call {
        address: String,
        call: &'static str,
        message: String,
    },
}

/// Connects to the Temporal frontend at `address` (`host:port`) with a given worker/client
/// identity. The connection is verified by Temporal's `GetSystemInfo` call.
pub async fn connect(address: &str, identity: &str) -> Result<Connection, TemporalError> {
    let url = Url::from_str(&format!("http://{address}")).map_err(|error| {
        TemporalError::InvalidAddress {
            address: address.to_owned(),
            message: error.to_string(),
        }
    })?;
    let options = ConnectionOptions::new(url)
        .identity(identity.to_owned())
        .connect_timeout(Duration::from_secs(2))
        .build();
    Connection::connect(options)
        .await
        .map_err(|error| TemporalError::Connect {
            address: address.to_owned(),
            message: error.to_string(),
        })
}

/// A client for `namespace` over an existing connection.
pub fn client(connection: Connection, namespace: &str) -> Result<Client, TemporalError> {
    Client::new(connection, ClientOptions::new(namespace.to_owned()).build()).map_err(|error| {
        TemporalError::Connect {
            address: String::new(),
            message: error.to_string(),
        }
    })
}

/// Asks Temporal about itself on behalf of the supervisor.
#[derive(Clone)]
pub struct TemporalProbe {
    address: String,
    namespace: String,
    connection: Connection,
}

impl TemporalProbe {
    /// Connects; fails when the frontend does not answer.
    pub async fn connect(address: &str, namespace: &str) -> Result<Self, TemporalError> {
        let connection = connect(address, "stigmer-daemon").await?;
        Ok(TemporalProbe {
            address: address.to_owned(),
            namespace: namespace.to_owned(),
            connection,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Healthy means the frontend answers and the namespace exists.
    pub async fn check_namespace(&self) -> Result<(), TemporalError> {
        let request = DescribeNamespaceRequest {
            namespace: self.namespace.clone(),
            ..Default::default()
        };
        let mut service = self.connection.workflow_service();
        tokio::time::timeout(
            Duration::from_secs(3),
            service.describe_namespace(tonic::Request::new(request)),
        )
        .await
        .map_err(|_| self.call_error("DescribeNamespace", "timed out".into()))?
        .map_err(|status| self.call_error("DescribeNamespace", status.message().to_owned()))?;
        Ok(())
    }

    /// The identities of the workers Temporal currently lists as polling `task_queue` (workflow
    /// and activity pollers together). Temporal keeps a poller listed for a while after it stops,
    /// which is why runner identities are unique per launch.
    pub async fn poller_identities(&self, task_queue: &str) -> Result<Vec<String>, TemporalError> {
        let mut identities = Vec::new();
        for queue_type in [TaskQueueType::Workflow, TaskQueueType::Activity] {
            let request = DescribeTaskQueueRequest {
                namespace: self.namespace.clone(),
                task_queue: Some(TaskQueue {
                    name: task_queue.to_owned(),
                    ..Default::default()
                }),
                task_queue_type: queue_type as i32,
                ..Default::default()
            };
            let mut service = self.connection.workflow_service();
            let response = tokio::time::timeout(
                Duration::from_secs(3),
                service.describe_task_queue(tonic::Request::new(request)),
            )
            .await
            .map_err(|_| self.call_error("DescribeTaskQueue", "timed out".into()))?
            .map_err(|status| self.call_error("DescribeTaskQueue", status.message().to_owned()))?;
            identities.extend(
                response
                    .into_inner()
                    .pollers
                    .into_iter()
                    .map(|poller| poller.identity),
            );
        }
        identities.sort();
        identities.dedup();
        Ok(identities)
    }

    fn call_error(&self, call: &'static str, message: String) -> TemporalError {
        TemporalError::Call {
            address: self.address.clone(),
            call,
            message,
        }
    }
}

pub mod worker;
