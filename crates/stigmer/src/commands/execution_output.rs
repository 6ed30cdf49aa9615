//! How an execution resource reads: its typed status and outcome, the execution table of
//! `stigmer execution list` and `stigmer get executions`, and the failure of a request about one
//! execution.

use super::table::render_table;
use crate::failure::{Failure, status_failure};
use crate::render::{Outcome, compact_arguments, elapsed_between, format_duration, trim_line};
use std::time::Duration;
use stigmer_proto::execution::{
    AgentExecutionStatus, ExecutionKind, ExecutionPhase, WorkflowExecutionStatus,
};
use stigmer_resources::{Kind, Resource};
use tonic::{Code, Status};

/// Where execution ids are found.
pub(super) const LIST_HINT: &str = "list the executions with `stigmer execution list`";
/// Longest REASON in the execution table, in characters.
const REASON_WIDTH: usize = 60;
/// Longest ARGUMENTS of a call that waits for approval, in characters.
const ARGUMENTS_WIDTH: usize = 50;
/// Longest ANSWER of a sub-agent run, in characters.
const ANSWER_WIDTH: usize = 60;

/// A failed request about one execution; NOT_FOUND says where to find the ids.
pub(super) fn execution_failure(status: Status) -> Failure {
    let not_found = status.code() == Code::NotFound;
    let failure = status_failure(status);
    if not_found {
        failure.with_hint(Some(LIST_HINT.into()))
    } else {
        failure
    }
}

/// Oldest first (ids are random, so their order means nothing).
pub(super) fn sort_by_creation(executions: &mut [Resource]) {
    executions.sort_by(|a, b| a.metadata.created_at.cmp(&b.metadata.created_at));
}

/// The kind of the execution an id names (an id of no known kind reads as an agent's, as ids
/// did before workflows ran).
pub(super) fn execution_kind(execution_id: &str) -> ExecutionKind {
    ExecutionKind::of_id(execution_id).unwrap_or(ExecutionKind::Agent)
}

/// The resource kind of an execution kind.
pub(super) fn resource_kind(kind: ExecutionKind) -> Kind {
    match kind {
        ExecutionKind::Agent => Kind::AgentExecution,
        ExecutionKind::Workflow => Kind::WorkflowExecution,
    }
}

/// The kind of an execution resource.
fn kind_of(execution: &Resource) -> ExecutionKind {
    match execution.kind {
        Kind::WorkflowExecution => ExecutionKind::Workflow,
        Kind::AgentExecution => ExecutionKind::Agent,
        _ => execution_kind(&execution.metadata.name),
    }
}

/// What an execution runs: the agent's or the workflow's name.
fn target_of(execution: &Resource) -> String {
    let field = match kind_of(execution) {
        ExecutionKind::Agent => "agent",
        ExecutionKind::Workflow => "workflow",
    };
    execution.spec[field]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// ID, KIND (agent or workflow), NAME (the agent's or the workflow's), PHASE, CREATED (an
/// age), REASON (one line, trimmed).
pub(super) fn execution_table(
    executions: &[Resource],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut table = vec![[
        "ID".to_owned(),
        "KIND".to_owned(),
        "NAME".to_owned(),
        "PHASE".to_owned(),
        "CREATED".to_owned(),
        "REASON".to_owned(),
    ]];
    for execution in executions {
        let status = status_of(execution);
        let reason = status
            .reason
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        table.push([
            execution.metadata.name.clone(),
            kind_of(execution).to_string(),
            target_of(execution),
            status.phase.to_string(),
            execution
                .metadata
                .created_at
                .as_deref()
                .and_then(|created| age(created, now))
                .unwrap_or_default(),
            trim_line(&reason, REASON_WIDTH, "…"),
        ]);
    }
    render_table(&table)
}

/// The tool calls of an execution that wait for a decision, as a table (CALL, TOOL,
/// ARGUMENTS, REASON, EXPIRES) with the commands that decide them; `None` when none waits.
pub(super) fn pending_approvals_table(execution: &Resource) -> Option<String> {
    let status = status_of(execution);
    if status.phase.is_terminal() || status.pending_approvals.is_empty() {
        return None;
    }
    let mut table = vec![[
        "CALL".to_owned(),
        "TOOL".to_owned(),
        "ARGUMENTS".to_owned(),
        "REASON".to_owned(),
        "EXPIRES".to_owned(),
    ]];
    for call in &status.pending_approvals {
        table.push([
            call.call_id.clone(),
            call.name.clone(),
            trim_line(&compact_arguments(&call.arguments), ARGUMENTS_WIDTH, "…"),
            trim_line(&call.reason, REASON_WIDTH, "…"),
            call.expires_at.clone(),
        ]);
    }
    let id = &execution.metadata.name;
    Some(format!(
        "\nWAITING FOR APPROVAL\n{}\ndecide with `stigmer execution approve {id} CALL…|--all` or \
         `stigmer execution deny {id} CALL…|--all [--message TEXT]`\n",
        render_table(&table).trim_end()
    ))
}

/// The sub-agent runs of an agent execution's `task` calls, as a table (NAME, EXECUTION,
/// PHASE, DURATION, ANSWER: its answer, or why it did not complete, on one line); `None` when
/// it started none. A run that did not end counts its duration up to `now`.
pub(super) fn sub_agents_table(
    execution: &Resource,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let status = status_of(execution);
    if status.sub_agents.is_empty() {
        return None;
    }
    let mut table = vec![[
        "NAME".to_owned(),
        "EXECUTION".to_owned(),
        "PHASE".to_owned(),
        "DURATION".to_owned(),
        "ANSWER".to_owned(),
    ]];
    let now = now.to_rfc3339();
    for run in &status.sub_agents {
        let duration = run.started_at.as_deref().and_then(|started| {
            elapsed_between(started, run.finished_at.as_deref().unwrap_or(&now))
        });
        let answer = run
            .answer
            .as_deref()
            .or(run.reason.as_deref())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        table.push([
            run.name.clone(),
            run.execution_id.clone(),
            run.phase.to_string(),
            duration.map(format_duration).unwrap_or_default(),
            trim_line(&answer, ANSWER_WIDTH, "…"),
        ]);
    }
    Some(format!("\nSUB-AGENTS\n{}", render_table(&table).trim_end()))
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
fn age(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let then = chrono::DateTime::parse_from_rfc3339(timestamp).ok()?;
    let seconds = (now - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    Some(match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    })
}

/// `status.startedAt` to `status.finishedAt`, when both are recorded.
pub(super) fn status_duration(execution: &Resource) -> Option<Duration> {
    let status = status_of(execution);
    elapsed_between(
        status.started_at.as_deref()?,
        status.finished_at.as_deref()?,
    )
}

/// How the execution ended, when it has.
pub(super) fn outcome_of(execution: &Resource) -> Option<Outcome> {
    let status = status_of(execution);
    status.phase.is_terminal().then_some(Outcome {
        phase: status.phase,
        reason: status.reason,
    })
}

/// The typed status of an execution resource.
pub(super) fn status_of(execution: &Resource) -> AgentExecutionStatus {
    AgentExecutionStatus::from_value(execution.status.as_ref())
}

/// The typed status of a workflow execution resource (its output or error once it ended).
pub(super) fn workflow_status_of(execution: &Resource) -> WorkflowExecutionStatus {
    WorkflowExecutionStatus::from_value(execution.status.as_ref())
}

/// The phase of an execution resource.
pub(super) fn phase_of(execution: &Resource) -> ExecutionPhase {
    status_of(execution).phase
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(phase: &str, reason: Option<&str>) -> Outcome {
        Outcome {
            phase: phase.parse().expect("a phase"),
            reason: reason.map(str::to_owned),
        }
    }

    fn execution(id: &str, created: &str, status: serde_json::Value) -> Resource {
        serde_json::from_value(json!({
            "apiVersion": "stigmer.ai/v1",
            "kind": "AgentExecution",
            "metadata": {"name": id, "id": id, "createdAt": created, "updatedAt": created},
            "spec": {"agent": "hello", "session": "ses-1", "message": "hi"},
            "status": status,
        }))
        .expect("a valid execution")
    }

    #[test]
    fn the_execution_table_is_oldest_first_with_ages_and_short_reasons() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-01T12:00:00.000Z")
            .expect("a time")
            .with_timezone(&chrono::Utc);
        let mut executions = vec![
            execution(
                "aex-b",
                "2025-01-01T11:58:00.000Z",
                json!({"phase": "failed", "reason": format!("no agent-runner is polling\ntask queue {}", "x".repeat(80))}),
            ),
            execution(
                "aex-a",
                "2025-01-01T11:59:50.000Z",
                json!({"phase": "running"}),
            ),
            execution(
                "aex-c",
                "2024-12-30T12:00:00.000Z",
                json!({"phase": "completed", "startedAt": "2024-12-30T12:00:01.000Z", "finishedAt": "2024-12-30T12:00:04.500Z"}),
            ),
            serde_json::from_value(json!({
                "apiVersion": "stigmer.ai/v1",
                "kind": "WorkflowExecution",
                "metadata": {"name": "wex-d", "id": "wex-d", "createdAt": "2025-01-01T11:59:00.000Z"},
                "spec": {"workflow": "fetch", "input": {}},
                "status": {"phase": "failed", "reason": "task /do/0/get failed", "error": {"status": 503}},
            }))
            .expect("a valid workflow execution"),
        ];
        sort_by_creation(&mut executions);
        insta::assert_snapshot!(execution_table(&executions, now), @r"
        ID     KIND      NAME   PHASE      CREATED  REASON
        aex-c  agent     hello  completed  2d ago
        aex-b  agent     hello  failed     2m ago   no agent-runner is polling task queue xxxxxxxxxxxxxxxxxxxxx…
        wex-d  workflow  fetch  failed     1m ago   task /do/0/get failed
        aex-a  agent     hello  running    10s ago
        ");
        assert_eq!(
            status_duration(&executions[0]),
            Some(Duration::from_millis(3500))
        );
        assert_eq!(status_duration(&executions[2]), None);
        assert_eq!(
            outcome_of(&executions[1]),
            Some(outcome(
                "failed",
                status_of(&executions[1]).reason.as_deref()
            ))
        );
        assert_eq!(outcome_of(&executions[3]), None);
        assert_eq!(
            workflow_status_of(&executions[2]).error,
            Some(json!({"status": 503}))
        );
    }

    #[test]
    fn sub_agent_runs_are_a_table_with_one_line_answers() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-01T12:00:00.000Z")
            .expect("a time")
            .with_timezone(&chrono::Utc);
        let lead = execution(
            "aex-1",
            "2025-01-01T11:58:00.000Z",
            json!({"phase": "running", "subAgents": [
                {"callId": "call_1", "name": "researcher", "executionId": "aex-2", "phase": "completed",
                 "startedAt": "2025-01-01T11:58:01.000Z", "finishedAt": "2025-01-01T11:58:04.200Z",
                 "answer": format!("The answer is 42.\nIt is {}", "x".repeat(80))},
                {"callId": "call_2", "name": "writer", "executionId": "aex-3", "phase": "failed",
                 "startedAt": "2025-01-01T11:58:01.000Z", "finishedAt": "2025-01-01T11:58:02.000Z",
                 "reason": "the model refuses this request"},
                {"callId": "call_3", "name": "researcher", "executionId": "aex-4", "phase": "running",
                 "startedAt": "2025-01-01T11:59:00.000Z"},
            ]}),
        );
        insta::assert_snapshot!(sub_agents_table(&lead, now).expect("a table"), @r"

        SUB-AGENTS
        NAME        EXECUTION  PHASE      DURATION  ANSWER
        researcher  aex-2      completed  3.2s      The answer is 42. It is xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…
        writer      aex-3      failed     1.0s      the model refuses this request
        researcher  aex-4      running    1m 00s
        ");
        let alone = execution(
            "aex-5",
            "2025-01-01T11:58:00.000Z",
            json!({"phase": "completed"}),
        );
        assert_eq!(sub_agents_table(&alone, now), None);
    }

    #[test]
    fn calls_that_wait_for_approval_are_a_table_with_the_commands() {
        let waiting = execution(
            "aex-w",
            "2025-01-01T11:58:00.000Z",
            json!({"phase": "waiting", "pendingApprovals": [
                {"turn": 1, "callId": "call_1", "name": "execute", "arguments": {"command": "echo x >> count.txt"},
                 "reason": "the agent's approval.tools lists execute", "expiresAt": "2025-01-01T12:08:00.000Z"},
                {"turn": 1, "callId": "call-2", "name": "files__delete", "arguments": {"path": "a".repeat(80)},
                 "reason": "McpServer files requires approval", "expiresAt": "2025-01-01T12:08:00.000Z"},
            ]}),
        );
        insta::assert_snapshot!(pending_approvals_table(&waiting).expect("a table"), @r#"

        WAITING FOR APPROVAL
        CALL    TOOL           ARGUMENTS                                           REASON                                    EXPIRES
        call_1  execute        command="echo x >> count.txt"                       the agent's approval.tools lists execute  2025-01-01T12:08:00.000Z
        call-2  files__delete  path="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…  McpServer files requires approval         2025-01-01T12:08:00.000Z
        decide with `stigmer execution approve aex-w CALL…|--all` or `stigmer execution deny aex-w CALL…|--all [--message TEXT]`
        "#);
        let running = execution(
            "aex-r",
            "2025-01-01T11:58:00.000Z",
            json!({"phase": "running"}),
        );
        assert_eq!(pending_approvals_table(&running), None);
    }
}
