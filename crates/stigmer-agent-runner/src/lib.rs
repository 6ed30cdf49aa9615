//! The agent runner: a Temporal worker that runs agents: the agent loop is a Temporal workflow on `agent_execution_runner`, each model turn and tool call an activity (the agent loop itself arrives with the agent-execution issue).
//!
//! It is a role of the `stigmer` binary (`stigmer internal agent-runner`), started and supervised by
//! the daemon, configured only through a [`RunnerLaunchSpec`].

pub mod turn;

use std::future::Future;
use stigmer_config::RunnerLaunchSpec;
use stigmer_temporal::worker::{self, WorkerError};

/// Polls the task queue of `spec` until `shutdown` completes.
pub async fn run(
    spec: RunnerLaunchSpec,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let options = worker::base_options(&spec)?;
    worker::run(&spec, options, shutdown).await
}
