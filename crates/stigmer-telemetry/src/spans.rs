//! The spans of an execution, built as plain [`SpanRecord`]s from what each process knows:
//!
//! | span | kind | emitted by |
//! |---|---|---|
//! | `invoke_agent {agent}` / `invoke_workflow {name}` (the root) | INTERNAL | the API server, when the execution ends |
//! | `chat {model}` (one per model call attempt) | CLIENT | the agent-runner |
//! | `execute_tool {tool}` (one per tool call run) | INTERNAL | the agent-runner |
//! | one per workflow task, named by its reference (`/do/0/fetch`) | INTERNAL | the API server, from the event log |
//!
//! Attribute names follow the GenAI semantic conventions (`gen_ai.*`, schema 1.42.0, status
//! Development) and add `stigmer.*` ones. A child execution (a sub-agent, a workflow's
//! `call: agent` or `run: workflow`) has a trace of its own, linked to its parent's root span
//! and naming it in `stigmer.parent_execution_id`.

use crate::ids;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;
use stigmer_proto::execution::ExecutionEvent;

/// The attribute names used here. The GenAI names follow the conventions' schema 1.42.0; they
/// are written out because `opentelemetry-semantic-conventions` deprecated its `gen_ai`
/// constants when those conventions moved to a repository of their own.
pub mod keys {
    pub const ERROR_TYPE: &str = "error.type";
    pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
    pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
    pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    pub const GEN_AI_TOOL_TYPE: &str = "gen_ai.tool.type";
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
}

/// One finished span, ready to export.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub name: String,
    pub kind: SpanKind,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// [`SpanId::INVALID`] for a root span.
    pub parent_span_id: SpanId,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub status: Status,
    /// Spans of other traces this one follows from (a child execution's parent).
    pub links: Vec<SpanContext>,
}

impl SpanRecord {
    /// The value of attribute `key`, for tests and callers that look.
    pub fn attribute(&self, key: &str) -> Option<&opentelemetry::Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }
}

/// A time as the store and the resources write it (RFC 3339).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| SystemTime::from(time.with_timezone(&chrono::Utc)))
}

/// What the runner knows of one model call.
#[derive(Clone, Debug)]
pub struct ChatCall<'a> {
    pub execution_id: &'a str,
    /// `ollama`, `openai`, `anthropic`.
    pub provider: &'a str,
    pub model: &'a str,
    /// The provider's base URL (for `server.address` and `server.port`).
    pub base_url: &'a str,
    pub turn: u32,
    /// The Temporal activity attempt (1, 2, …).
    pub attempt: u32,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// How a model call ended.
#[derive(Clone, Debug)]
pub enum ChatOutcome<'a> {
    Answered {
        input_tokens: u64,
        output_tokens: u64,
        /// The provider's stop reason, if it gave one.
        finish_reason: Option<&'a str>,
        tool_calls: usize,
    },
    /// `error_type` is low-cardinality (`retryable`, `fatal`, `events`), `message` the text.
    Failed {
        error_type: &'a str,
        message: &'a str,
    },
}

/// Prompt and answer as GenAI message objects (already masked); only with
/// `capture_content`.
#[derive(Clone, Debug, Default)]
pub struct ChatContent {
    pub system_instructions: Option<Value>,
    pub input_messages: Value,
    pub output_messages: Option<Value>,
}

/// The `chat {model}` span of one model call attempt, a child of the execution's root.
pub fn chat(
    call: &ChatCall<'_>,
    outcome: &ChatOutcome<'_>,
    content: Option<ChatContent>,
) -> SpanRecord {
    let mut attributes = vec![
        KeyValue::new(keys::GEN_AI_OPERATION_NAME, "chat"),
        KeyValue::new(keys::GEN_AI_PROVIDER_NAME, call.provider.to_owned()),
        KeyValue::new(keys::GEN_AI_REQUEST_MODEL, call.model.to_owned()),
        KeyValue::new("stigmer.execution_id", call.execution_id.to_owned()),
        KeyValue::new("stigmer.turn", i64::from(call.turn)),
        KeyValue::new("stigmer.attempt", i64::from(call.attempt)),
    ];
    if let Some((host, port)) = host_and_port(call.base_url) {
        attributes.push(KeyValue::new(keys::SERVER_ADDRESS, host));
        attributes.push(KeyValue::new(keys::SERVER_PORT, i64::from(port)));
    }
    let status = match outcome {
        ChatOutcome::Answered {
            input_tokens,
            output_tokens,
            finish_reason,
            tool_calls,
        } => {
            attributes.extend([
                KeyValue::new(keys::GEN_AI_RESPONSE_MODEL, call.model.to_owned()),
                KeyValue::new(
                    keys::GEN_AI_USAGE_INPUT_TOKENS,
                    saturating_i64(*input_tokens),
                ),
                KeyValue::new(
                    keys::GEN_AI_USAGE_OUTPUT_TOKENS,
                    saturating_i64(*output_tokens),
                ),
            ]);
            let reason = finish_reason
                .map(str::to_owned)
                .unwrap_or_else(|| if *tool_calls > 0 { "tool_call" } else { "stop" }.to_owned());
            attributes.push(KeyValue::new(
                keys::GEN_AI_RESPONSE_FINISH_REASONS,
                opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(reason)].into()),
            ));
            Status::Unset
        }
        ChatOutcome::Failed {
            error_type,
            message,
        } => {
            attributes.push(KeyValue::new(keys::ERROR_TYPE, (*error_type).to_owned()));
            Status::error((*message).to_owned())
        }
    };
    if let Some(content) = content {
        if let Some(system) = content.system_instructions {
            attributes.push(KeyValue::new(
                keys::GEN_AI_SYSTEM_INSTRUCTIONS,
                system.to_string(),
            ));
        }
        attributes.push(KeyValue::new(
            keys::GEN_AI_INPUT_MESSAGES,
            content.input_messages.to_string(),
        ));
        if let Some(output) = content.output_messages {
            attributes.push(KeyValue::new(
                keys::GEN_AI_OUTPUT_MESSAGES,
                output.to_string(),
            ));
        }
    }
    child_of_root(
        call.execution_id,
        format!("chat {}", call.model),
        SpanKind::Client,
        (call.start, call.end),
        attributes,
        status,
    )
}

/// Where a tool comes from: `function` (built-in), `extension` (an MCP server's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolType {
    Function,
    Extension,
}

impl ToolType {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolType::Function => "function",
            ToolType::Extension => "extension",
        }
    }
}

/// What the runner knows of one tool call it ran.
#[derive(Clone, Debug)]
pub struct ToolRun<'a> {
    pub execution_id: &'a str,
    pub call_id: &'a str,
    pub name: &'a str,
    pub tool_type: ToolType,
    pub turn: u32,
    pub attempt: u32,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The result was an error (`is_error`): the model reads it and the run goes on.
    pub is_error: bool,
}

/// The `execute_tool {tool}` span of one tool call, a child of the execution's root;
/// `content` is (arguments, result), already masked, only with `capture_content`.
pub fn execute_tool(run: &ToolRun<'_>, content: Option<(Value, String)>) -> SpanRecord {
    let mut attributes = vec![
        KeyValue::new(keys::GEN_AI_OPERATION_NAME, "execute_tool"),
        KeyValue::new(keys::GEN_AI_TOOL_NAME, run.name.to_owned()),
        KeyValue::new(keys::GEN_AI_TOOL_CALL_ID, run.call_id.to_owned()),
        KeyValue::new(keys::GEN_AI_TOOL_TYPE, run.tool_type.as_str()),
        KeyValue::new("stigmer.execution_id", run.execution_id.to_owned()),
        KeyValue::new("stigmer.turn", i64::from(run.turn)),
        KeyValue::new("stigmer.attempt", i64::from(run.attempt)),
    ];
    let status = if run.is_error {
        attributes.push(KeyValue::new(keys::ERROR_TYPE, "tool_error"));
        Status::error("the tool returned an error")
    } else {
        Status::Unset
    };
    if let Some((arguments, result)) = content {
        attributes.push(KeyValue::new(
            keys::GEN_AI_TOOL_CALL_ARGUMENTS,
            arguments.to_string(),
        ));
        attributes.push(KeyValue::new(keys::GEN_AI_TOOL_CALL_RESULT, result));
    }
    child_of_root(
        run.execution_id,
        format!("execute_tool {}", run.name),
        SpanKind::Internal,
        (run.start, run.end),
        attributes,
        status,
    )
}

/// What the workflow-runner knows of one `call: http` attempt.
#[derive(Clone, Debug)]
pub struct HttpRun<'a> {
    pub execution_id: &'a str,
    /// The call's key within the execution (the task's reference and the call's number).
    pub key: &'a str,
    pub method: &'a str,
    /// The URI as the workflow wrote it (secrets are placeholders there).
    pub uri: &'a str,
    pub attempt: u32,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The problem's type and status, when the call failed.
    pub error: Option<(&'a str, u16)>,
}

/// The HTTP CLIENT span of a `call: http` attempt (named by its method, as the HTTP
/// conventions name client spans), a child of the execution's root.
pub fn http_call(run: &HttpRun<'_>) -> SpanRecord {
    let method = run.method.to_ascii_uppercase();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("url.full", run.uri.to_owned()),
        KeyValue::new("stigmer.execution_id", run.execution_id.to_owned()),
        KeyValue::new("stigmer.attempt", i64::from(run.attempt)),
    ];
    if !run.key.is_empty() {
        attributes.push(KeyValue::new("stigmer.task.call", run.key.to_owned()));
    }
    if let Some((host, port)) = host_and_port(run.uri) {
        attributes.push(KeyValue::new(keys::SERVER_ADDRESS, host));
        attributes.push(KeyValue::new(keys::SERVER_PORT, i64::from(port)));
    }
    let status = match run.error {
        None => Status::Unset,
        Some((kind, status)) => {
            let kind = kind.rsplit('/').next().unwrap_or(kind).to_owned();
            if status > 0 {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            attributes.push(KeyValue::new(keys::ERROR_TYPE, kind.clone()));
            Status::error(kind)
        }
    };
    child_of_root(
        run.execution_id,
        method,
        SpanKind::Client,
        (run.start, run.end),
        attributes,
        status,
    )
}

/// What ran: an agent (its name, its session) or a workflow (its name).
#[derive(Clone, Debug)]
pub enum Runnable<'a> {
    Agent { agent: &'a str, session: &'a str },
    Workflow { workflow: &'a str },
}

/// What the API server knows of an execution that ended.
#[derive(Clone, Debug)]
pub struct ExecutionEnd<'a> {
    pub execution_id: &'a str,
    pub runnable: Runnable<'a>,
    /// The terminal phase: `completed`, `failed`, `cancelled`.
    pub phase: &'a str,
    pub reason: Option<&'a str>,
    /// The execution that started this one (a sub-agent's, a workflow task's).
    pub parent_execution_id: Option<&'a str>,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// The spans the API server emits when an execution ends: the root (`invoke_agent {agent}`
/// with the run's model and token totals from its `usage` events, or `invoke_workflow {name}`)
/// and, for a workflow, one span per task from its `task_*` events. `events` are the
/// execution's log with their times, in order.
pub fn execution(
    end: &ExecutionEnd<'_>,
    events: &[(SystemTime, ExecutionEvent)],
) -> Vec<SpanRecord> {
    let id = end.execution_id;
    let mut attributes = vec![KeyValue::new("stigmer.execution_id", id.to_owned())];
    let name = match end.runnable {
        Runnable::Agent { agent, session } => {
            attributes.extend([
                KeyValue::new(keys::GEN_AI_OPERATION_NAME, "invoke_agent"),
                KeyValue::new(keys::GEN_AI_AGENT_NAME, agent.to_owned()),
                KeyValue::new(keys::GEN_AI_CONVERSATION_ID, session.to_owned()),
            ]);
            let usage = usage_totals(events);
            if let Some(provider) = usage.provider {
                attributes.push(KeyValue::new(keys::GEN_AI_PROVIDER_NAME, provider));
            }
            if let Some(model) = usage.model {
                attributes.push(KeyValue::new(keys::GEN_AI_REQUEST_MODEL, model));
            }
            attributes.extend([
                KeyValue::new(
                    keys::GEN_AI_USAGE_INPUT_TOKENS,
                    saturating_i64(usage.input_tokens),
                ),
                KeyValue::new(
                    keys::GEN_AI_USAGE_OUTPUT_TOKENS,
                    saturating_i64(usage.output_tokens),
                ),
                KeyValue::new("stigmer.turns", i64::from(usage.turns)),
            ]);
            format!("invoke_agent {agent}")
        }
        Runnable::Workflow { workflow } => {
            attributes.extend([
                KeyValue::new(keys::GEN_AI_OPERATION_NAME, "invoke_workflow"),
                KeyValue::new("stigmer.workflow.name", workflow.to_owned()),
            ]);
            format!("invoke_workflow {workflow}")
        }
    };
    attributes.push(KeyValue::new("stigmer.phase", end.phase.to_owned()));
    let mut links = Vec::new();
    if let Some(parent) = end.parent_execution_id {
        attributes.push(KeyValue::new(
            "stigmer.parent_execution_id",
            parent.to_owned(),
        ));
        links.push(ids::root_context(parent));
    }
    let status = match end.phase {
        "completed" => Status::Ok,
        phase => {
            attributes.push(KeyValue::new(keys::ERROR_TYPE, phase.to_owned()));
            Status::error(end.reason.unwrap_or(phase).to_owned())
        }
    };
    let mut spans = vec![SpanRecord {
        name,
        kind: SpanKind::Internal,
        trace_id: ids::trace_id(id),
        span_id: ids::root_span_id(id),
        parent_span_id: SpanId::INVALID,
        start: end.start,
        end: end.end,
        attributes,
        status,
        links,
    }];
    if matches!(end.runnable, Runnable::Workflow { .. }) {
        spans.extend(tasks(id, events, end.end));
    }
    spans
}

/// What an agent execution's `usage` events add up to.
#[derive(Debug, Default, PartialEq)]
struct UsageTotals {
    turns: u32,
    input_tokens: u64,
    output_tokens: u64,
    model: Option<String>,
    provider: Option<String>,
}

fn usage_totals(events: &[(SystemTime, ExecutionEvent)]) -> UsageTotals {
    // One `usage` per turn attempt that answered; a turn retried after its answer was recorded
    // counts once (the last attempt's).
    let mut by_turn: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut totals = UsageTotals::default();
    for (_, event) in events {
        if let ExecutionEvent::Usage(usage) = event
            && usage.parent.is_none()
        {
            by_turn.insert(usage.turn, (usage.input_tokens, usage.output_tokens));
            if usage.model.is_some() {
                totals.model.clone_from(&usage.model);
            }
            if usage.provider.is_some() {
                totals.provider.clone_from(&usage.provider);
            }
        }
    }
    totals.turns = by_turn.len() as u32;
    for (input, output) in by_turn.values() {
        totals.input_tokens += input;
        totals.output_tokens += output;
    }
    totals
}

/// One span per run of a workflow task, from `task_started` to its `task_completed`,
/// `task_failed` (error type and status from the problem details) or the workflow's end (a
/// task cut short). A task's parent is the innermost task running when it started whose
/// reference contains it (`/do/1/try` holds `/do/1/try/0/x`); the root otherwise. A skipped
/// task is a span without duration. Times are when the events were stored.
fn tasks(
    execution_id: &str,
    events: &[(SystemTime, ExecutionEvent)],
    end: SystemTime,
) -> Vec<SpanRecord> {
    struct Open {
        span_id: SpanId,
        parent: SpanId,
        name: String,
        start: SystemTime,
    }
    let trace_id = ids::trace_id(execution_id);
    let root = ids::root_span_id(execution_id);
    let mut runs: BTreeMap<String, u32> = BTreeMap::new();
    // Open tasks in the order they started (a stack, but a `fork` keeps siblings open).
    let mut open: Vec<(String, Open)> = Vec::new();
    let mut spans = Vec::new();
    let mut span_for = |reference: &str, open: &[(String, Open)]| -> (SpanId, SpanId) {
        let run = runs.entry(reference.to_owned()).or_insert(0);
        *run += 1;
        let span_id = ids::span_id("task", &[execution_id, reference, &run.to_string()]);
        let parent = open
            .iter()
            .rev()
            .find(|(candidate, _)| contains(candidate, reference))
            .map_or(root, |(_, task)| task.span_id);
        (span_id, parent)
    };
    let finish =
        |reference: String, task: Open, at: SystemTime, extra: Vec<KeyValue>, status: Status| {
            let mut attributes = vec![
                KeyValue::new("stigmer.execution_id", execution_id.to_owned()),
                KeyValue::new("stigmer.task.reference", reference.clone()),
                KeyValue::new("stigmer.task.name", task.name),
            ];
            attributes.extend(extra);
            SpanRecord {
                name: reference,
                kind: SpanKind::Internal,
                trace_id,
                span_id: task.span_id,
                parent_span_id: task.parent,
                start: task.start,
                end: at,
                attributes,
                status,
                links: Vec::new(),
            }
        };
    for (at, event) in events {
        match event {
            ExecutionEvent::TaskStarted(started) => {
                let (span_id, parent) = span_for(&started.reference, &open);
                open.push((
                    started.reference.clone(),
                    Open {
                        span_id,
                        parent,
                        name: started.name.clone(),
                        start: *at,
                    },
                ));
            }
            ExecutionEvent::TaskCompleted(done) => {
                if let Some(task) = take(&mut open, &done.reference) {
                    spans.push(finish(
                        done.reference.clone(),
                        task,
                        *at,
                        Vec::new(),
                        Status::Unset,
                    ));
                }
            }
            ExecutionEvent::TaskFailed(failed) => {
                if let Some(task) = take(&mut open, &failed.reference) {
                    let (extra, status) = task_error(&failed.error);
                    spans.push(finish(failed.reference.clone(), task, *at, extra, status));
                }
            }
            ExecutionEvent::TaskSkipped(skipped) => {
                let (span_id, parent) = span_for(&skipped.reference, &open);
                let task = Open {
                    span_id,
                    parent,
                    name: skipped.name.clone(),
                    start: *at,
                };
                spans.push(finish(
                    skipped.reference.clone(),
                    task,
                    *at,
                    vec![KeyValue::new("stigmer.task.skipped", true)],
                    Status::Unset,
                ));
            }
            _ => {}
        }
    }
    // Tasks the workflow's end cut short (a cancel, a failure elsewhere in a fork).
    for (reference, task) in open {
        spans.push(finish(
            reference,
            task,
            end,
            vec![KeyValue::new("stigmer.task.unfinished", true)],
            Status::Unset,
        ));
    }
    spans
}

/// Whether task `outer` contains task `inner` (by their JSON pointers).
fn contains(outer: &str, inner: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

/// Removes the latest open run of `reference`.
fn take<T>(open: &mut Vec<(String, T)>, reference: &str) -> Option<T> {
    let at = open
        .iter()
        .rposition(|(candidate, _)| candidate == reference)?;
    Some(open.remove(at).1)
}

/// A task's problem details as attributes and status.
fn task_error(error: &Value) -> (Vec<KeyValue>, Status) {
    let error_type = error
        .get("type")
        .and_then(Value::as_str)
        .map(|uri| uri.rsplit('/').next().unwrap_or(uri).to_owned())
        .unwrap_or_else(|| "error".to_owned());
    let mut attributes = vec![KeyValue::new(keys::ERROR_TYPE, error_type.clone())];
    if let Some(status) = error.get("status").and_then(Value::as_i64) {
        attributes.push(KeyValue::new("stigmer.task.error.status", status));
    }
    let description = ["detail", "title"]
        .iter()
        .find_map(|key| error.get(key).and_then(Value::as_str))
        .unwrap_or(&error_type)
        .to_owned();
    (attributes, Status::error(description))
}

fn child_of_root(
    execution_id: &str,
    name: String,
    kind: SpanKind,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
) -> SpanRecord {
    SpanRecord {
        name,
        kind,
        trace_id: ids::trace_id(execution_id),
        span_id: crate::new_span_id(),
        parent_span_id: ids::root_span_id(execution_id),
        start,
        end,
        attributes,
        status,
        links: Vec::new(),
    }
}

/// Host and port of a URL (`http://localhost:11434/v1` → `localhost`, 11434), the port
/// defaulting by scheme.
pub fn host_and_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = match scheme {
        "https" => 443,
        _ => 80,
    };
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']')?;
        let port = rest
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default);
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_owned(), default)),
        None => None,
    }
}

/// GenAI message objects (`{"role", "parts": [...]}`) from role and text pairs: what the
/// runner turns its (masked) conversation into for `gen_ai.input.messages`.
pub fn message(role: &str, parts: Vec<Value>) -> Value {
    json!({"role": role, "parts": parts})
}

/// A text part of a GenAI message.
pub fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": text})
}

/// A tool call part of a GenAI message.
pub fn tool_call_part(id: &str, name: &str, arguments: &Value) -> Value {
    json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments})
}

/// A tool result part of a GenAI message.
pub fn tool_result_part(id: &str, result: &str) -> Value {
    json!({"type": "tool_call_response", "id": id, "response": result})
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
