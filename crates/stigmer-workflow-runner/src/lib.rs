//! The workflow runner: a Temporal worker that runs workflows written in the Stigmer workflow DSL on `workflow_execution_runner` (the interpreter arrives with the workflow issue).
//!
//! It is a role of the `stigmer` binary (`stigmer internal workflow-runner`), started and supervised by
//! the daemon, configured only through a [`RunnerLaunchSpec`].

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
