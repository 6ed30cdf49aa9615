//! An execution as a row of a list (`Summary`), the list's filters and its pages: pure
//! functions over stored resources, so the list's rules are tested without a server.

use serde::Serialize;
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionPhase, WorkflowExecutionSpec,
    WorkflowExecutionStatus,
};
use stigmer_resources::{Kind, Resource};

/// How much of a run's message a row shows.
const MESSAGE_CHARS: usize = 200;
/// Rows a page holds when the request does not say, and at most.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// One execution as a list shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub id: String,
    /// `agent` or `workflow`.
    pub kind: &'static str,
    /// The agent's or the workflow's name.
    pub name: String,
    pub phase: ExecutionPhase,
    pub reason: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From its start (or creation) to its end, or to `now` while it runs.
    pub duration_ms: Option<u64>,
    /// The first characters of an agent run's message.
    pub message: Option<String>,
    pub session: Option<String>,
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub turns: u32,
    pub tool_calls: u32,
    pub pending_approvals: usize,
    /// The execution whose task or tool call started this one.
    pub parent_id: Option<String>,
}

/// The row of an execution resource, its duration measured up to `now` (RFC 3339) while it
/// runs; `None` for a resource that is not an execution.
pub fn summarize(resource: &Resource, now: &str) -> Option<Summary> {
    let created_at = resource.metadata.created_at.clone().unwrap_or_default();
    let id = resource.metadata.name.clone();
    let mut summary = match resource.kind {
        Kind::AgentExecution => {
            let spec = AgentExecutionSpec::from_value(&resource.spec).unwrap_or_default();
            let status = AgentExecutionStatus::from_value(resource.status.as_ref());
            Summary {
                kind: "agent",
                name: match &spec.sub_agent {
                    Some(sub_agent) => format!("{}/{sub_agent}", spec.agent),
                    None => spec.agent.clone(),
                },
                phase: status.phase,
                reason: status.reason,
                started_at: status.started_at,
                finished_at: status.finished_at,
                message: Some(truncate(&spec.message, MESSAGE_CHARS)),
                session: Some(spec.session).filter(|session| !session.is_empty()),
                model: status.totals.model.or(spec.model),
                input_tokens: status.totals.input_tokens,
                output_tokens: status.totals.output_tokens,
                turns: status.totals.turns,
                tool_calls: status.totals.tool_calls,
                pending_approvals: status.pending_approvals.len(),
                parent_id: spec.parent.map(|parent| parent.execution_id),
                ..Summary::empty(id, created_at)
            }
        }
        Kind::WorkflowExecution => {
            let spec = WorkflowExecutionSpec::from_value(&resource.spec).unwrap_or_default();
            let status = WorkflowExecutionStatus::from_value(resource.status.as_ref());
            Summary {
                kind: "workflow",
                name: spec.workflow,
                phase: status.phase,
                reason: status.reason,
                started_at: status.started_at,
                finished_at: status.finished_at,
                parent_id: spec.parent.map(|parent| parent.execution_id),
                ..Summary::empty(id, created_at)
            }
        }
        _ => return None,
    };
    let from = summary.started_at.as_deref().unwrap_or(&summary.created_at);
    let to = summary.finished_at.as_deref().unwrap_or(now);
    summary.duration_ms = millis_between(from, to);
    Some(summary)
}

impl Summary {
    fn empty(id: String, created_at: String) -> Summary {
        Summary {
            id,
            kind: "agent",
            name: String::new(),
            phase: ExecutionPhase::Pending,
            reason: None,
            created_at,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            message: None,
            session: None,
            model: None,
            input_tokens: 0,
            output_tokens: 0,
            turns: 0,
            tool_calls: 0,
            pending_approvals: 0,
            parent_id: None,
        }
    }

    /// Where it sorts: newest first (creation time, then id, both descending).
    fn place(&self) -> (&str, &str) {
        (&self.created_at, &self.id)
    }
}

fn truncate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn millis_between(from: &str, to: &str) -> Option<u64> {
    let from = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let to = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    u64::try_from((to - from).num_milliseconds()).ok()
}

/// What a list shows: every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// `agent` or `workflow`.
    pub kind: Option<String>,
    /// Any of these phases.
    pub phases: Vec<ExecutionPhase>,
    /// The agent's name (a sub-agent run matches its parent agent's name too).
    pub agent: Option<String>,
    pub workflow: Option<String>,
    /// Text in the id, name, message, reason or session, case-insensitive.
    pub text: Option<String>,
}

impl Filter {
    pub fn matches(&self, summary: &Summary) -> bool {
        if self
            .kind
            .as_deref()
            .is_some_and(|kind| kind != summary.kind)
        {
            return false;
        }
        if !self.phases.is_empty() && !self.phases.contains(&summary.phase) {
            return false;
        }
        if let Some(agent) = &self.agent {
            let own = summary.name.split('/').next().unwrap_or_default();
            if summary.kind != "agent" || (summary.name != *agent && own != agent) {
                return false;
            }
        }
        if let Some(workflow) = &self.workflow
            && (summary.kind != "workflow" || summary.name != *workflow)
        {
            return false;
        }
        if let Some(text) = &self.text {
            let text = text.to_lowercase();
            let found = [
                Some(summary.id.as_str()),
                Some(summary.name.as_str()),
                summary.message.as_deref(),
                summary.reason.as_deref(),
                summary.session.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&text));
            if !found {
                return false;
            }
        }
        true
    }
}

/// One page of a list.
#[derive(Debug, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<Summary>,
    /// The cursor of the next (older) page, when there is one.
    pub next: Option<String>,
    /// How many executions match the filter in all.
    pub total: usize,
}

/// The page of `summaries` that match `filter`, newest first, after the cursor `before` (a
/// `next` of an earlier page), at most `limit` rows.
pub fn page(summaries: Vec<Summary>, filter: &Filter, before: Option<&str>, limit: usize) -> Page {
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut matching: Vec<Summary> = summaries
        .into_iter()
        .filter(|summary| filter.matches(summary))
        .collect();
    let total = matching.len();
    matching.sort_unstable_by(|a, b| b.place().cmp(&a.place()));
    let cursor = before.and_then(parse_cursor);
    let start = match cursor {
        Some(cursor) => matching.partition_point(|summary| summary.place() >= cursor),
        None => 0,
    };
    let rest = matching.len() - start.min(matching.len());
    let items: Vec<Summary> = matching.into_iter().skip(start).take(limit).collect();
    let next = (rest > items.len())
        .then(|| items.last().map(cursor_of))
        .flatten();
    Page { items, next, total }
}

fn cursor_of(summary: &Summary) -> String {
    format!("{}|{}", summary.created_at, summary.id)
}

fn parse_cursor(text: &str) -> Option<(&str, &str)> {
    text.split_once('|')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent_execution(id: &str, created: &str, status: serde_json::Value) -> Resource {
        serde_json::from_value(json!({
            "apiVersion": "stigmer.ai/v1",
            "kind": "AgentExecution",
            "metadata": {"name": id, "createdAt": created},
            "spec": {"agent": "helper", "session": "ses-1", "message": "hello there"},
            "status": status,
        }))
        .unwrap()
    }

    fn rows(count: usize) -> Vec<Summary> {
        (0..count)
            .map(|n| {
                let created = format!("2026-12-01T10:00:{:02}Z", n % 60);
                let resource = agent_execution(
                    &format!("aex-{n:04}"),
                    &created,
                    json!({"phase": if n % 3 == 0 { "failed" } else { "completed" }}),
                );
                summarize(&resource, "2026-12-01T11:00:00Z").unwrap()
            })
            .collect()
    }

    #[test]
    fn a_row_shows_the_totals_the_duration_and_the_start_of_the_message() {
        let resource = agent_execution(
            "aex-1",
            "2026-12-01T10:00:00Z",
            json!({
                "phase": "completed",
                "startedAt": "2026-12-01T10:00:01Z",
                "finishedAt": "2026-12-01T10:00:03.500Z",
                "totals": {"turns": 2, "toolCalls": 1, "inputTokens": 120, "outputTokens": 30,
                           "model": "qwen3:8b", "provider": "ollama"},
            }),
        );
        let summary = summarize(&resource, "2026-12-01T11:00:00Z").unwrap();
        assert_eq!(summary.kind, "agent");
        assert_eq!(summary.name, "helper");
        assert_eq!(summary.phase, ExecutionPhase::Completed);
        assert_eq!(summary.duration_ms, Some(2500));
        assert_eq!(summary.model.as_deref(), Some("qwen3:8b"));
        assert_eq!((summary.turns, summary.tool_calls), (2, 1));
        assert_eq!((summary.input_tokens, summary.output_tokens), (120, 30));
        assert_eq!(summary.message.as_deref(), Some("hello there"));
        assert_eq!(truncate("abcdef", 3), "abc…");
    }

    #[test]
    fn a_running_execution_is_measured_up_to_now() {
        let resource = agent_execution(
            "aex-1",
            "2026-12-01T10:00:00Z",
            json!({"phase": "running", "startedAt": "2026-12-01T10:00:00Z"}),
        );
        let summary = summarize(&resource, "2026-12-01T10:00:07Z").unwrap();
        assert_eq!(summary.duration_ms, Some(7000));
    }

    #[test]
    fn pages_go_newest_first_and_meet_without_gaps_or_repeats() {
        let all = rows(120);
        let filter = Filter::default();
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = page(all.clone(), &filter, before.as_deref(), 50);
            assert_eq!(page.total, 120);
            seen.extend(page.items.iter().map(|row| row.id.clone()));
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<Summary> = all;
        expected.sort_by(|a, b| b.place().cmp(&a.place()));
        let expected: Vec<String> = expected.into_iter().map(|row| row.id).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn filters_combine() {
        let all = rows(30);
        let failed = Filter {
            phases: vec![ExecutionPhase::Failed],
            ..Filter::default()
        };
        let page_of_failed = page(all.clone(), &failed, None, 100);
        assert_eq!(page_of_failed.total, 10);
        assert!(page_of_failed.next.is_none());
        let text = Filter {
            text: Some("AEX-0012".into()),
            ..Filter::default()
        };
        assert_eq!(page(all.clone(), &text, None, 100).items[0].id, "aex-0012");
        let workflow = Filter {
            workflow: Some("helper".into()),
            ..Filter::default()
        };
        assert_eq!(page(all.clone(), &workflow, None, 100).total, 0);
        let agent = Filter {
            agent: Some("helper".into()),
            kind: Some("agent".into()),
            ..Filter::default()
        };
        assert_eq!(page(all, &agent, None, 100).total, 30);
    }
}
