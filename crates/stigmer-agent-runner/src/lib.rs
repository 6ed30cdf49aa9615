//! The agent runner: a Temporal worker that runs agents. The agent loop is a Temporal workflow
//! on `agent_execution_runner` ([`workflow::AgentWorkflow`]); each model turn, with the tool calls
//! of the turn before, is an activity ([`agent::AgentActivities`]) that reports to the API
//! server ([`api`]) and reads only the messages it needs ([`conversation`]).
//!
//! It is a role of the `stigmer` binary (`stigmer internal agent-runner`), started and supervised by
//! the daemon, configured only through a [`RunnerLaunchSpec`].

pub mod agent;
pub mod api;
pub mod approval;
pub mod compaction;
pub mod conversation;
pub mod loops;
pub mod skills;
pub mod steps;
pub mod subagents;
pub mod telemetry;
pub mod toolbox;
pub mod turn;
pub mod workflow;

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
        .register_workflow::<workflow::AgentWorkflow>()
        .map_err(|error| WorkerError::Setup(error.to_string()))?;
    options.register_activities(
        agent::AgentActivities::new(spec.clone())
            .map_err(|error| WorkerError::Setup(error.to_string()))?,
    );
    // Spans of model calls and tool calls, when an endpoint is configured; flushed (within a
    // bound) when the worker stops.
    let telemetry = stigmer_telemetry::init(
        &spec.telemetry,
        "stigmer-agent-runner",
        &spec.worker_identity,
    );
    let outcome = worker::run(&spec, options, shutdown).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    outcome
}
