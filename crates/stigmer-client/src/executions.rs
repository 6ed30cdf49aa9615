//! Typed calls of the execution service that several clients make: the CLI and a workflow's
//! `run: workflow` create workflow executions, the workflow runner creates the agent runs of its
//! `call: agent` tasks and reports a run's result, the CLI lists executions of one kind and
//! decides tool calls that wait for approval.
//!
//! Each is one RPC of [`ApiClients::executions`]; a call fails with the server's `Status`
//! unchanged, so callers decide on its code as for any other RPC.

use crate::ApiClients;
use serde_json::Value;
use std::collections::HashMap;
use stigmer_proto::execution::ExecutionKind;
use stigmer_proto::executions::v1::{
    CreateExecutionRequest, DecideApprovalsRequest, ListExecutionsRequest, SetWorkflowResultRequest,
};
use tonic::Status;

/// A run's variables: its Environments, then its `--env` and `--secret` over them.
#[derive(Clone, Default)]
pub struct RunVariables {
    pub env: HashMap<String, String>,
    /// Kept by the server in memory for the run only, never stored.
    pub secrets: HashMap<String, String>,
    pub environments: Vec<String>,
}

impl std::fmt::Debug for RunVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets' names only, never their values.
        let mut secret_names: Vec<&String> = self.secrets.keys().collect();
        secret_names.sort();
        f.debug_struct("RunVariables")
            .field("env", &self.env)
            .field("secrets", &secret_names)
            .field("environments", &self.environments)
            .finish()
    }
}

/// Which waiting tool calls of an agent execution a decision is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalTarget {
    /// These calls (the `call_id` of their `approval_requested` events).
    Calls(Vec<String>),
    /// Every call that waits.
    All,
}

/// A person's decision on tool calls that wait for approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    Approve,
    /// The model reads the message, if any, as the reason.
    Deny {
        message: Option<String>,
    },
}

/// The agent run of a workflow's `call: agent` task: the server creates and watches the
/// execution, the workflow runner starts its workflow as a child with the execution id as
/// workflow id.
#[derive(Clone, Debug, Default)]
pub struct AgentCall {
    pub agent: String,
    pub message: String,
    /// Overrides the stack's default model (an agent's own model still wins).
    pub model: Option<String>,
    pub variables: RunVariables,
    /// The workflow execution (`wex-…`).
    pub parent_execution_id: String,
    /// The task's reference (`/do/1/ask`).
    pub parent_task: String,
}

impl ApiClients {
    /// Creates a WorkflowExecution of the Workflow `workflow` with `input` and starts it;
    /// returns the execution resource as JSON.
    pub async fn create_workflow_execution(
        &mut self,
        workflow: &str,
        input: &Value,
        variables: RunVariables,
    ) -> Result<Value, Status> {
        let request = CreateExecutionRequest {
            workflow: workflow.to_owned(),
            input_json: input.to_string(),
            env: variables.env,
            secrets: variables.secrets,
            environments: variables.environments,
            ..CreateExecutionRequest::default()
        };
        let created = self
            .executions
            .create_execution(request)
            .await?
            .into_inner();
        decode(&created.execution_json)
    }

    /// Creates the AgentExecution of a workflow's `call: agent` task (not started: see
    /// [`AgentCall`]); returns the execution resource as JSON.
    pub async fn create_agent_call(&mut self, call: AgentCall) -> Result<Value, Status> {
        let request = CreateExecutionRequest {
            agent: call.agent,
            message: call.message,
            model: call.model.unwrap_or_default(),
            env: call.variables.env,
            secrets: call.variables.secrets,
            environments: call.variables.environments,
            parent_execution_id: call.parent_execution_id,
            parent_task: call.parent_task,
            ..CreateExecutionRequest::default()
        };
        let created = self
            .executions
            .create_execution(request)
            .await?
            .into_inner();
        decode(&created.execution_json)
    }

    /// Reports how a workflow execution ended: `Ok(output)` when it completed, `Err(error)`
    /// (a problem-details object) when it faulted. Reporting again after the end does nothing.
    pub async fn set_workflow_result(
        &mut self,
        execution_id: &str,
        result: Result<&Value, &Value>,
    ) -> Result<(), Status> {
        let (output_json, error_json) = match result {
            Ok(output) => (output.to_string(), String::new()),
            Err(error) => (String::new(), error.to_string()),
        };
        self.executions
            .set_workflow_result(SetWorkflowResultRequest {
                execution_id: execution_id.to_owned(),
                output_json,
                error_json,
            })
            .await?;
        Ok(())
    }

    /// Decides tool calls of the agent execution `execution_id` that wait for approval;
    /// returns the ids of the calls decided. FAILED_PRECONDITION when a call does not wait (or
    /// none does, for [`ApprovalTarget::All`]) or the execution ended; UNAVAILABLE when its
    /// agent runner does not take the decision.
    pub async fn decide_approvals(
        &mut self,
        execution_id: &str,
        target: ApprovalTarget,
        approval: Approval,
    ) -> Result<Vec<String>, Status> {
        let (call_ids, all) = match target {
            ApprovalTarget::Calls(call_ids) => (call_ids, false),
            ApprovalTarget::All => (Vec::new(), true),
        };
        let (approve, message) = match approval {
            Approval::Approve => (true, String::new()),
            Approval::Deny { message } => (false, message.unwrap_or_default()),
        };
        let decided = self
            .executions
            .decide_approvals(DecideApprovalsRequest {
                execution_id: execution_id.to_owned(),
                call_ids,
                all,
                approve,
                message,
            })
            .await?
            .into_inner();
        Ok(decided.call_ids)
    }

    /// The executions of `kind` (of both kinds with `None`), oldest first, as JSON resources.
    pub async fn list_executions(
        &mut self,
        kind: Option<ExecutionKind>,
    ) -> Result<Vec<Value>, Status> {
        let listed = self
            .executions
            .list_executions(ListExecutionsRequest {
                kind: kind
                    .map(|kind| kind.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .await?
            .into_inner();
        listed
            .executions_json
            .iter()
            .map(|json| decode(json))
            .collect()
    }
}

/// A resource the server sent; INTERNAL when it is not JSON (the server's fault).
fn decode(json: &str) -> Result<Value, Status> {
    serde_json::from_str(json).map_err(|error| {
        Status::internal(format!("the server sent an unreadable execution: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_variables_never_show_secret_values() {
        let variables = RunVariables {
            env: [("REGION".to_owned(), "eu".to_owned())].into(),
            secrets: [("TOKEN".to_owned(), "hunter2".to_owned())].into(),
            environments: vec!["prod".into()],
        };
        let shown = format!("{variables:?}");
        assert!(
            shown.contains("TOKEN") && shown.contains("REGION"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        let call = format!(
            "{:?}",
            AgentCall {
                variables,
                ..AgentCall::default()
            }
        );
        assert!(!call.contains("hunter2"), "{call}");
    }
}
