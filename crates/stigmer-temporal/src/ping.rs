//! A minimal workflow and activity every runner registers.
//!
//! It gives each runner something real to poll for before its actual work exists, and lets a
//! test prove end to end that a runner executes tasks: starting `stigmer.Ping` on a runner's
//! task queue returns `pong from <worker identity>`.

use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

/// The workflow type name, stable across languages and versions.
pub const PING_WORKFLOW: &str = "stigmer.Ping";

/// Answers with the identity of the worker that ran its activity.
#[workflow]
#[derive(Default)]
pub struct PingWorkflow;

#[workflow_methods]
impl PingWorkflow {
    #[run(name = "stigmer.Ping")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, message: String) -> WorkflowResult<String> {
        let answer = ctx
            .execute_activity(
                PingActivities::pong,
                message,
                ActivityOptions::start_to_close_timeout(std::time::Duration::from_secs(10)),
            )
            .await?;
        Ok(answer)
    }
}

/// The activity side of [`PingWorkflow`].
pub struct PingActivities {
    pub identity: String,
}

#[activities]
impl PingActivities {
    #[activity(name = "stigmer.Pong")]
    pub async fn pong(
        self: std::sync::Arc<Self>,
        _ctx: ActivityContext,
        message: String,
    ) -> Result<String, ActivityError> {
        Ok(format!("pong from {}: {message}", self.identity))
    }
}
