//! How an execution resource reads: its typed status and outcome, the execution table of
//! `stigmer execution list` and `stigmer get executions`, and the failure of a request about one
//! execution.

use super::table::render_table;
use crate::failure::{Failure, status_failure};
use crate::render::{Outcome, trim_line};
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
    crate::render::elapsed_between(
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
}
