//! What the agent loop's workflow and its steps exchange: the inputs and outputs of the
//! activities, as they are recorded in the workflow's history (ids, turn numbers, counts and
//! short names only: the conversation lives in the API server).

use crate::subagents::{SubAgentOutcome, TaskCall};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use stigmer_resources::APPROVAL_TIMEOUT_DEFAULT_SECS;

/// The workflow type name the API server starts.
pub const AGENT_WORKFLOW: &str = "stigmer.AgentExecution";
/// Model turns an execution may take when its agent sets no `maxTurns`.
pub const DEFAULT_MAX_TURNS: u32 = 50;
/// A step that stops heartbeating for this long is considered lost (its runner died) and is
/// retried; it also bounds how long a cancelled step may run on.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the start step tells the workflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub max_turns: u32,
    /// How long a call may wait for a decision (`spec.approval.timeoutSeconds`).
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_secs: u64,
}

pub(crate) fn default_approval_timeout() -> u64 {
    u64::from(APPROVAL_TIMEOUT_DEFAULT_SECS)
}

/// Which model turn to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TurnInput {
    pub execution_id: String,
    pub turn: u32,
    /// The step first runs the tool calls the turn before asked for that have no stored
    /// result yet (false in runs started before steps did so: they run `stigmer.ToolCall`).
    #[serde(default)]
    pub runs_tool_calls: bool,
    /// What became of the calls of the turn before that waited for a decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<CallDecision>,
    /// How the sub-agents the turn before asked for (`task` calls) ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_agents: Vec<SubAgentOutcome>,
}

/// A call of a turn that waits for a person's decision before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldCall {
    /// Its place in the turn's calls.
    pub index: u32,
    /// The name people decide it by ([`approval::approval_ids`]).
    pub call_id: String,
    /// Which rule holds it.
    pub reason: String,
}

/// The decision on a [`HeldCall`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallDecision {
    pub index: u32,
    pub call_id: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Nobody decided within the timeout: denied.
    #[serde(default)]
    pub timed_out: bool,
}

/// The step that holds a turn's calls for approval: it lists them (the execution is
/// `waiting`), then runs the calls of the turn that need no decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HoldInput {
    pub execution_id: String,
    pub turn: u32,
    pub held: Vec<HeldCall>,
    /// RFC 3339: when undecided calls are denied.
    pub expires_at: String,
    /// Calls that run as sub-agents after the decisions (not by this step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<u32>,
}

/// The step that creates the executions of a turn's sub-agent runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubAgentsInput {
    pub execution_id: String,
    pub turn: u32,
    pub tasks: Vec<TaskCall>,
}

/// A sub-agent's execution, created for a `task` call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartedSubAgent {
    pub index: u32,
    pub sub_agent: String,
    pub execution_id: String,
}

/// The patch of the workflow after which the start step is a local activity and a model
/// turn's step runs the tool calls of the turn before: one activity and one workflow task per
/// turn instead of one per step. Runs started before it replay the way they were started.
pub(crate) const FEWER_WORKFLOW_TASKS: &str = "fewer-workflow-tasks";

/// What a model turn tells the workflow: how many tool calls to run next.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TurnOutcome {
    pub tool_calls: u32,
    /// The calls that wait for a decision before they run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldCall>,
    /// The `task` calls: each runs its sub-agent as a child workflow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskCall>,
}

/// Which tool call to run: the `index`th call the model asked for in `turn`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolInput {
    pub execution_id: String,
    pub turn: u32,
    pub index: u32,
}
