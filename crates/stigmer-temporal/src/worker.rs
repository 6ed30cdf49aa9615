//! The bootstrap both runners share: connect with the launch spec's identity, register the
//! [`PingWorkflow`](crate::PingWorkflow), poll the task queue until shutdown is requested.

use crate::{PingActivities, PingWorkflow, TemporalError};
use std::future::Future;
use stigmer_config::RunnerLaunchSpec;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Temporal(#[from] TemporalError),
    #[error("cannot set up the Temporal worker: {0}")]
    Setup(String),
    #[error("the Temporal worker failed: {0}")]
    Run(String),
}

/// Worker options for `spec`'s task queue with the ping workflow registered; a runner adds its
/// own workflows and activities before calling [`run`].
pub fn base_options(spec: &RunnerLaunchSpec) -> Result<WorkerOptions, WorkerError> {
    // A workflow task for a run this worker held waits this long on its sticky queue before
    // any worker may take it: after a runner dies, its runs (a step, a decision on a call
    // that waits for approval) go on after 5 s instead of the SDK's 10 s.
    let mut options = WorkerOptions::new(spec.task_queue.clone())
        .sticky_queue_schedule_to_start_timeout(std::time::Duration::from_secs(5))
        .build();
    options
        .register_workflow::<PingWorkflow>()
        .map_err(|error| WorkerError::Setup(error.to_string()))?;
    options.register_activities(PingActivities {
        identity: spec.worker_identity.clone(),
    });
    Ok(options)
}

/// Runs a worker until `shutdown` completes, then lets in-flight tasks finish.
pub async fn run(
    spec: &RunnerLaunchSpec,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let runtime = Runtime::from_current_tokio(Default::default())
        .map_err(|error| WorkerError::Setup(error.to_string()))?;
    let connection = crate::connect(&spec.temporal_address, &spec.worker_identity).await?;
    let client = crate::client(connection, &spec.temporal_namespace)?;
    let mut worker = Worker::new(&runtime, client, options)
        .map_err(|error| WorkerError::Setup(error.to_string()))?;
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown.await;
        stop();
    });
    tracing::info!(
        task_queue = %spec.task_queue,
        identity = %spec.worker_identity,
        "Worker polling."
    );
    worker
        .run()
        .await
        .map_err(|error| WorkerError::Run(error.to_string()))
}
