//! The durable agent loop: the `stigmer.AgentExecution` workflow.
//!
//! The workflow only orders steps: start, then model turns, until a turn asks for no tool or
//! the turn limit is reached. Each turn's step first runs the tool calls of the turn before,
//! storing each result as it finishes, then calls the model. Every turn is an activity with
//! heartbeats and a retry policy, so a runner killed mid-turn loses only that turn: Temporal
//! notices the missing heartbeat, and the restarted runner repeats the one step (tool calls
//! whose result is stored are not run again). The start step, short and idempotent, is a
//! local activity: it costs no workflow task of its own. Calls that wait for a decision are
//! held by the workflow ([`AgentWorkflow`]'s state and its update), and `task` calls run their
//! sub-agents as child workflows. The steps themselves are in [`crate::agent`].

use crate::agent::AgentActivities;
use crate::steps::{
    CallDecision, FEWER_WORKFLOW_TASKS, HEARTBEAT_TIMEOUT, HeldCall, HoldInput, SubAgentsInput,
    ToolInput, TurnInput,
};
use crate::subagents::{SubAgentOutcome, TaskCall};
use std::collections::BTreeMap;
use std::time::Duration;
use stigmer_proto::execution::{ApprovalDecision, DecidedCall};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, CancellableFuture,
    ChildWorkflowOptions, LocalActivityOptions, ParentClosePolicy, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};
use temporalio_workflow::RetryPolicy;

/// The agent loop. Its state is the turn's calls that wait for a decision and the decisions
/// taken (by the update
/// [`stigmer_proto::execution::DECIDE_APPROVALS_UPDATE`]); both live in the workflow's history, so
/// a pending approval survives any restart.
#[workflow]
#[derive(Default)]
pub struct AgentWorkflow {
    /// The turn whose calls wait.
    turn: u32,
    waiting: Vec<HeldCall>,
    decided: BTreeMap<u32, CallDecision>,
}

impl AgentWorkflow {
    /// The waiting calls a decision names, or why it names none that waits.
    fn to_decide(&self, decision: &ApprovalDecision) -> Result<Vec<HeldCall>, String> {
        let open: Vec<&HeldCall> = self
            .waiting
            .iter()
            .filter(|held| !self.decided.contains_key(&held.index))
            .collect();
        let listing = || {
            if open.is_empty() {
                "no call of this execution waits for a decision".to_owned()
            } else {
                format!(
                    "the calls waiting for a decision: {}",
                    open.iter()
                        .map(|held| held.call_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        };
        if decision.all {
            if !decision.call_ids.is_empty() {
                return Err("name the calls to decide or ask for all of them, not both".into());
            }
            if open.is_empty() {
                return Err(listing());
            }
            return Ok(open.into_iter().cloned().collect());
        }
        if decision.call_ids.is_empty() {
            return Err(format!(
                "name the calls to decide, or decide all; {}",
                listing()
            ));
        }
        let mut chosen: Vec<HeldCall> = Vec::new();
        for call_id in &decision.call_ids {
            if chosen.iter().any(|held| &held.call_id == call_id) {
                continue;
            }
            match self.waiting.iter().find(|held| &held.call_id == call_id) {
                Some(held) => match self.decided.get(&held.index) {
                    Some(taken) => {
                        return Err(format!(
                            "the call {call_id} was already {}; {}",
                            if taken.approved { "approved" } else { "denied" },
                            listing()
                        ));
                    }
                    None => chosen.push(held.clone()),
                },
                None => {
                    return Err(format!(
                        "{call_id} is not a call that waits for a decision; {}",
                        listing()
                    ));
                }
            }
        }
        Ok(chosen)
    }

    fn all_decided(&self) -> bool {
        self.waiting
            .iter()
            .all(|held| self.decided.contains_key(&held.index))
    }
}

#[workflow_methods]
impl AgentWorkflow {
    #[run(name = "stigmer.AgentExecution")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        execution_id: String,
    ) -> WorkflowResult<String> {
        // Temporal's dispatch of a workflow task costs more than the start step and most tool
        // calls. The start step (short, and idempotent: a keyed event, a message written at
        // its place) runs as a local activity, within the first workflow task. A tool call is
        // no step of its own: the next model turn's step runs it, storing each result as it
        // finishes (a retried step runs only those without one).
        let fewer_tasks = ctx.patched(FEWER_WORKFLOW_TASKS);
        let started = if fewer_tasks {
            ctx.execute_local_activity(
                AgentActivities::start,
                execution_id.clone(),
                local_step_options(Duration::from_secs(60), 5),
            )
            .await
        } else {
            ctx.execute_activity(
                AgentActivities::start,
                execution_id.clone(),
                step_options(Duration::from_secs(60), 5),
            )
            .await
        }
        .map_err(ended)?;
        let runs_tool_calls = fewer_tasks;
        let mut turn = 1;
        let mut decisions = Vec::new();
        let mut sub_agents = Vec::new();
        loop {
            if turn > started.max_turns {
                return Err(ApplicationFailure::non_retryable(format!(
                    "exceeded {} model turns (raise the agent's spec.maxTurns if it needs more)",
                    started.max_turns
                ))
                .into());
            }
            let outcome = ctx
                .execute_activity(
                    AgentActivities::model_turn,
                    TurnInput {
                        execution_id: execution_id.clone(),
                        turn,
                        runs_tool_calls,
                        decisions: std::mem::take(&mut decisions),
                        sub_agents: std::mem::take(&mut sub_agents),
                    },
                    step_options(Duration::from_secs(30 * 60), 4),
                )
                .await
                .map_err(ended)?;
            if outcome.tool_calls == 0 {
                return Ok(format!("completed after {turn} model turns"));
            }
            // The last turn allowed has no next step to run its calls: they run on their own,
            // before the run fails at the limit.
            let next_runs_them = runs_tool_calls && turn < started.max_turns;
            if next_runs_them && !(outcome.held.is_empty() && outcome.tasks.is_empty()) {
                if !outcome.held.is_empty() {
                    decisions = wait_for_decisions(
                        ctx,
                        &execution_id,
                        turn,
                        outcome.held,
                        &outcome.tasks,
                        Duration::from_secs(started.approval_timeout_secs),
                    )
                    .await?;
                }
                // Denied `task` calls start nothing: the next step stores the denial.
                let tasks: Vec<TaskCall> = outcome
                    .tasks
                    .into_iter()
                    .filter(|task| {
                        decisions
                            .iter()
                            .all(|decision| decision.index != task.index || decision.approved)
                    })
                    .collect();
                if !tasks.is_empty() {
                    sub_agents = run_sub_agents(ctx, &execution_id, turn, tasks).await?;
                }
                turn += 1;
                continue;
            }
            // Calls that wait for a decision, and sub-agents, do not run on the last turn
            // allowed: the run ends at its limit instead.
            let free = |index: &u32| {
                !outcome.held.iter().any(|held| held.index == *index)
                    && !outcome.tasks.iter().any(|task| task.index == *index)
            };
            for index in (0..outcome.tool_calls)
                .filter(|_| !next_runs_them)
                .filter(free)
            {
                ctx.execute_activity(
                    AgentActivities::tool_call,
                    ToolInput {
                        execution_id: execution_id.clone(),
                        turn,
                        index,
                    },
                    step_options(Duration::from_secs(10 * 60), 4),
                )
                .await
                .map_err(ended)?;
            }
            turn += 1;
        }
    }

    #[update_validator(decide_approvals)]
    fn validate_decide_approvals(
        &self,
        _ctx: &WorkflowContextView,
        decision: &ApprovalDecision,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.to_decide(decision).map(|_| ()).map_err(Into::into)
    }

    /// Decides calls that wait ([`stigmer_proto::execution::DECIDE_APPROVALS_UPDATE`]); the validator has refused any
    /// decision that names a call not waiting, so none is decided twice.
    #[update(name = "stigmer.DecideApprovals")]
    pub fn decide_approvals(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        decision: ApprovalDecision,
    ) -> Vec<DecidedCall> {
        let chosen = self.to_decide(&decision).unwrap_or_default();
        let turn = self.turn;
        chosen
            .into_iter()
            .map(|held| {
                self.decided.insert(
                    held.index,
                    CallDecision {
                        index: held.index,
                        call_id: held.call_id.clone(),
                        approved: decision.approve,
                        message: decision.message.clone().filter(|_| !decision.approve),
                        timed_out: false,
                    },
                );
                DecidedCall {
                    turn,
                    call_id: held.call_id,
                }
            })
            .collect()
    }
}

/// Holds a turn's calls that need a decision: the hold step lists them (phase `waiting`) and
/// runs the turn's other calls, while the workflow waits until every held call is decided
/// (the update) or the timeout denies what is left. Returns a decision for every held call.
async fn wait_for_decisions(
    ctx: &mut WorkflowContext<AgentWorkflow>,
    execution_id: &str,
    turn: u32,
    held: Vec<HeldCall>,
    tasks: &[TaskCall],
    timeout: Duration,
) -> Result<Vec<CallDecision>, WorkflowTermination> {
    ctx.state_mut(|state| {
        state.turn = turn;
        state.waiting = held.clone();
        state.decided.clear();
    });
    let expires_at = ctx
        .workflow_time()
        .map(|now| stigmer_resources::rfc3339(now + timeout))
        .unwrap_or_default();
    let hold = ctx.execute_activity(
        AgentActivities::hold_for_approval,
        HoldInput {
            execution_id: execution_id.to_owned(),
            turn,
            held: held.clone(),
            expires_at,
            tasks: tasks.iter().map(|task| task.index).collect(),
        },
        step_options(Duration::from_secs(30 * 60), 4),
    );
    let decided = futures::FutureExt::fuse(async {
        let mut timer = std::pin::pin!(ctx.timer(timeout));
        let mut condition =
            std::pin::pin!(ctx.wait_condition(|state: &AgentWorkflow| state.all_decided()));
        temporalio_sdk::workflows::select! {
            waited = condition.as_mut() => {
                timer.cancel();
                waited
            }
            _ = timer.as_mut() => Ok(()),
        }
    });
    // A hold step that fails for good ends the run at once, not when the decisions are in.
    let mut hold = std::pin::pin!(hold);
    let mut decided = std::pin::pin!(decided);
    let decided = temporalio_sdk::workflows::select! {
        held = hold.as_mut() => {
            held.map_err(ended)?;
            decided.as_mut().await
        }
        waited = decided.as_mut() => {
            hold.as_mut().await.map_err(ended)?;
            waited
        }
    };
    if decided.is_err() {
        return Err(WorkflowTermination::cancelled());
    }
    Ok(ctx.state_mut(|state| {
        let decisions = held
            .iter()
            .map(|call| {
                state
                    .decided
                    .get(&call.index)
                    .cloned()
                    .unwrap_or_else(|| CallDecision {
                        index: call.index,
                        call_id: call.call_id.clone(),
                        approved: false,
                        message: None,
                        timed_out: true,
                    })
            })
            .collect();
        state.waiting.clear();
        state.decided.clear();
        decisions
    }))
}

/// Runs a turn's sub-agents: a step creates their executions (and shows the `task` calls
/// started), then each runs as a child workflow `stigmer.AgentExecution` on the agent queue
/// with its execution id as workflow id, all at once. A sub-agent that fails is an outcome,
/// not a failure of this run: its error becomes the call's result. Cancelling this run
/// cancels them (they inherit its cancellation, and a closing parent asks them to stop).
async fn run_sub_agents(
    ctx: &mut WorkflowContext<AgentWorkflow>,
    execution_id: &str,
    turn: u32,
    tasks: Vec<TaskCall>,
) -> Result<Vec<SubAgentOutcome>, WorkflowTermination> {
    let ctx = &*ctx;
    let started = ctx
        .execute_activity(
            AgentActivities::start_sub_agents,
            SubAgentsInput {
                execution_id: execution_id.to_owned(),
                turn,
                tasks,
            },
            step_options(Duration::from_secs(60), 4),
        )
        .await
        .map_err(ended)?;
    let runs = started.into_iter().map(|child| async move {
        let mut options = ChildWorkflowOptions::default();
        options.workflow_id = Some(child.execution_id.clone());
        options.task_queue = Some(stigmer_config::AGENT_TASK_QUEUE.to_owned());
        options.parent_close_policy = ParentClosePolicy::RequestCancel;
        let failure = match ctx
            .start_child_workflow(AgentWorkflow::run, child.execution_id.clone(), options)
            .await
        {
            Err(error) => Some(format!("it could not start: {error}")),
            Ok(running) => match running.result().await {
                Ok(_) => None,
                // The child's own reason, not "child workflow execution failed".
                Err(error) => Some(error.failure().map_or_else(
                    || error.to_string(),
                    |failure| {
                        let mut innermost = failure;
                        while let Some(cause) = innermost.cause.as_deref() {
                            innermost = cause;
                        }
                        innermost.message.clone()
                    },
                )),
            },
        };
        SubAgentOutcome {
            index: child.index,
            sub_agent: child.sub_agent,
            execution_id: child.execution_id,
            failure,
        }
    });
    let outcomes = temporalio_sdk::workflows::join_all(runs).await;
    if ctx.cancellation_token().is_cancelled() {
        return Err(WorkflowTermination::cancelled());
    }
    Ok(outcomes)
}

/// Timeouts and retries of one step: heartbeats detect a dead runner within seconds;
/// retryable failures back off 3 s, 12 s, 48 s (then 60 s). The backoff is that long because
/// a stalled runner (stopped, not dead) swallows retries: Temporal hands each one to the
/// runner's open polls, where it times out unheard. With four attempts the last one starts
/// about 72 s after a stall began, so a runner stalled for a minute (or replaced by the
/// supervisor meanwhile) still runs the step.
fn step_options(start_to_close: Duration, attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(3))
                .backoff_coefficient(4.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(attempts)
                .build(),
        )
        .build()
}

/// [`step_options`] for a local activity: the same retries (backoffs past a minute wait on a
/// workflow timer), all of them within `schedule_to_close`. A local activity has no
/// heartbeat: a runner that dies in one is noticed when its workflow task times out.
fn local_step_options(start_to_close: Duration, attempts: u32) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(start_to_close)
        .schedule_to_close_timeout(Duration::from_secs(10 * 60))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(3))
                .backoff_coefficient(4.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(attempts)
                .build(),
        )
        .build()
}

/// A cancelled step means the workflow was cancelled: end as cancelled, not failed.
fn ended(error: ActivityExecutionError) -> WorkflowTermination {
    match error {
        ActivityExecutionError::Cancelled(_) => WorkflowTermination::cancelled(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(ids: &[&str]) -> AgentWorkflow {
        AgentWorkflow {
            turn: 3,
            waiting: ids
                .iter()
                .enumerate()
                .map(|(index, id)| HeldCall {
                    index: index as u32 * 2,
                    call_id: id.to_string(),
                    reason: "listed".into(),
                })
                .collect(),
            decided: BTreeMap::new(),
        }
    }

    fn decide(ids: &[&str], approve: bool) -> ApprovalDecision {
        ApprovalDecision {
            call_ids: ids.iter().map(|id| id.to_string()).collect(),
            all: false,
            approve,
            message: Some("no".into()),
        }
    }

    #[test]
    fn a_decision_names_calls_that_wait_and_decides_each_once() {
        let mut workflow = waiting(&["a", "b"]);
        assert!(!workflow.all_decided());
        let chosen = workflow.to_decide(&decide(&["b", "b"], true)).unwrap();
        assert_eq!(chosen.len(), 1, "a call named twice is decided once");
        workflow.decided.insert(
            2,
            CallDecision {
                index: 2,
                call_id: "b".into(),
                approved: true,
                message: None,
                timed_out: false,
            },
        );
        assert_eq!(
            workflow.to_decide(&decide(&["b"], false)).unwrap_err(),
            "the call b was already approved; the calls waiting for a decision: a"
        );
        assert_eq!(
            workflow.to_decide(&decide(&["zz"], true)).unwrap_err(),
            "zz is not a call that waits for a decision; the calls waiting for a decision: a"
        );
        let all = ApprovalDecision {
            all: true,
            ..decide(&[], true)
        };
        assert_eq!(workflow.to_decide(&all).unwrap()[0].call_id, "a");
        workflow.decided.insert(
            0,
            CallDecision {
                index: 0,
                call_id: "a".into(),
                approved: false,
                message: None,
                timed_out: false,
            },
        );
        assert!(workflow.all_decided());
        assert_eq!(
            workflow.to_decide(&all).unwrap_err(),
            "no call of this execution waits for a decision"
        );
    }

    #[test]
    fn a_decision_names_calls_or_all_of_them() {
        let workflow = waiting(&["a"]);
        assert!(
            workflow
                .to_decide(&decide(&[], true))
                .unwrap_err()
                .starts_with("name the calls to decide, or decide all")
        );
        let both = ApprovalDecision {
            all: true,
            ..decide(&["a"], true)
        };
        assert!(workflow.to_decide(&both).is_err());
        assert!(
            AgentWorkflow::default()
                .to_decide(&decide(&["a"], true))
                .unwrap_err()
                .ends_with("no call of this execution waits for a decision")
        );
    }
}
