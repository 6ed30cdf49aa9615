//! Traces of executions (the spans the API server exports): when an execution reaches its
//! terminal phase, its root span (`invoke_agent {agent}` / `invoke_workflow {name}`, from its
//! creation to now) and, for a workflow, a span per task read from its event log. The runners'
//! spans (`chat`, `execute_tool`, HTTP calls) name this root as their parent by its derived id
//! (`stigmer_telemetry::ids`), so the root can be sent last without anything stored.
//!
//! Nothing is read or built unless the process exports traces (`stigmer_telemetry::enabled`).

use std::time::SystemTime;
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionEvent, ExecutionPhase, WorkflowExecutionSpec,
};
use stigmer_resources::{Kind, Resource};
use stigmer_store::Store;
use stigmer_telemetry::spans::{self, ExecutionEnd, Runnable};

/// Events read from the log per store call.
const PAGE: usize = 4096;

/// Exports the spans of `execution`, which just reached terminal `phase` at `now` (RFC 3339).
/// Runs on the blocking pool (it reads the event log); a store error only loses the spans.
pub fn execution_ended(
    store: &dyn Store,
    execution: &Resource,
    phase: ExecutionPhase,
    reason: Option<&str>,
    now: &str,
) {
    if !stigmer_telemetry::enabled() || !phase.is_terminal() {
        return;
    }
    let id = execution.metadata.name.as_str();
    let end = spans::parse_time(now).unwrap_or_else(SystemTime::now);
    let start = execution
        .metadata
        .created_at
        .as_deref()
        .and_then(spans::parse_time)
        .or_else(|| {
            AgentExecutionStatus::from_value(execution.status.as_ref())
                .started_at
                .as_deref()
                .and_then(spans::parse_time)
        })
        .unwrap_or(end);
    let (runnable_names, parent) = match execution.kind {
        Kind::AgentExecution => match AgentExecutionSpec::from_value(&execution.spec) {
            Ok(spec) => {
                let agent = spec.sub_agent.clone().unwrap_or(spec.agent.clone());
                (
                    Names::Agent {
                        agent,
                        session: spec.session,
                    },
                    spec.parent.map(|parent| parent.execution_id),
                )
            }
            Err(_) => return,
        },
        Kind::WorkflowExecution => match WorkflowExecutionSpec::from_value(&execution.spec) {
            Ok(spec) => (
                Names::Workflow {
                    workflow: spec.workflow,
                },
                spec.parent.map(|parent| parent.execution_id),
            ),
            Err(_) => return,
        },
        _ => return,
    };
    let events = match read_events(store, id) {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(execution_id = id, error = %error, "Cannot read the event log for the execution's spans.");
            Vec::new()
        }
    };
    let phase_name = phase.to_string();
    let end = ExecutionEnd {
        execution_id: id,
        runnable: match &runnable_names {
            Names::Agent { agent, session } => Runnable::Agent { agent, session },
            Names::Workflow { workflow } => Runnable::Workflow { workflow },
        },
        phase: &phase_name,
        reason,
        parent_execution_id: parent.as_deref(),
        start,
        end,
    };
    // Task spans first and the root last: a collector that assembles traces as spans arrive
    // sees the root complete the trace.
    let mut records = spans::execution(&end, &events);
    records.rotate_left(1);
    for record in records {
        stigmer_telemetry::export(record);
    }
}

enum Names {
    Agent { agent: String, session: String },
    Workflow { workflow: String },
}

/// The execution's log with the time each event was stored; only the kinds the spans use are
/// decoded.
fn read_events(
    store: &dyn Store,
    execution_id: &str,
) -> Result<Vec<(SystemTime, ExecutionEvent)>, stigmer_store::StoreError> {
    const USED: [&str; 5] = [
        "usage",
        "task_started",
        "task_completed",
        "task_failed",
        "task_skipped",
    ];
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(execution_id, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == PAGE;
        events.extend(page.into_iter().filter_map(|event| {
            if !USED.contains(&event.kind.as_str()) {
                return None;
            }
            let at = spans::parse_time(&event.ts)?;
            let decoded = ExecutionEvent::from_wire(&event.kind, &event.data).ok()?;
            Some((at, decoded))
        }));
        if !full {
            break;
        }
    }
    Ok(events)
}
