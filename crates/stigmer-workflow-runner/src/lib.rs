//! The workflow runner: a Temporal worker that runs Serverless Workflow documents on
//! `workflow_execution_runner`. The interpreter ([`stigmer_workflow`]) runs as workflow code,
//! bound to Temporal by [`execution::TemporalHost`]: pure tasks cost no round trip; HTTP
//! calls, agent runs and event batches are activities ([`activities`]); `wait` is a durable
//! timer; `call: agent` runs the agent as a child workflow on the agent runner's queue, and
//! `run: workflow` another Workflow's execution as a child workflow on this queue.
//!
//! It is a role of the `stigmer` binary (`stigmer internal workflow-runner`), started and
//! supervised by the daemon, configured only through a [`RunnerLaunchSpec`].

pub mod activities;
pub mod execution;

use std::future::Future;
use stigmer_config::RunnerLaunchSpec;
use stigmer_temporal::worker::{self, WorkerError};

/// Polls the task queue of `spec` until `shutdown` completes.
pub async fn run(
    spec: RunnerLaunchSpec,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let mut options = worker::base_options(&spec)?;
    options
        .register_workflow::<execution::WorkflowExecution>()
        .map_err(|error| WorkerError::Setup(error.to_string()))?;
    options.register_activities(
        activities::WorkflowActivities::new(&spec)
            .map_err(|error| WorkerError::Setup(error.to_string()))?,
    );
    // Spans of HTTP calls, when an endpoint is configured (the task spans come from the API
    // server, which reads them from the event log); flushed within a bound when the worker
    // stops.
    let telemetry = stigmer_telemetry::init(
        &spec.telemetry,
        "stigmer-workflow-runner",
        &spec.worker_identity,
    );
    let outcome = worker::run(&spec, options, shutdown).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    outcome
}
