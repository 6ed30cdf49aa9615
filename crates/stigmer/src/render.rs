//! Showing an execution's events: the assistant's text for stdout, everything else (phases,
//! tool calls, todos, retries, the closing summary) as lines for stderr, or one JSON object per
//! event for scripts. The events of a nested execution (the agent of a workflow's `call: agent`
//! task, the sub-agent of an agent's `task` call) are shown under the work that started them.
//!
//! The core is pure — events in, [`Output`]s out — so each case is a unit test; the commands
//! only write what it returns.

use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use stigmer_proto::execution::{
    ApprovalDecided, ApprovalRequested, ContextCompacted, EventParent, ExecutionEvent,
    ExecutionPhase, SubAgentStarted, Todo, TodoStatus, ToolCallFinished, UnknownEvent,
};
use stigmer_proto::executions::v1::ExecutionEvent as WireEvent;

/// Longest line a tool call, a tool result line or a todo takes, in characters.
const LINE_LIMIT: usize = 120;
/// Longest call (name and arguments) in the line of a call that waits for approval.
const CALL_LIMIT: usize = 60;
/// Lines of a tool result shown; the rest is counted.
const RESULT_LINES: usize = 3;
/// Lines of a workflow's agent call answer shown under its task; the rest is counted.
const ANSWER_LINES: usize = 20;
/// Indentation of one level of a workflow's task tree.
const TASK_INDENT: &str = "  ";
/// Indentation of a sub-agent's lines under its `task` call.
const SUB_AGENT_INDENT: &str = "  ";

/// How lines look: symbols or ASCII, colours or none.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub unicode: bool,
    pub color: bool,
}

impl Style {
    fn glyphs(self) -> &'static Glyphs {
        if self.unicode { &UNICODE } else { &ASCII }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

struct Glyphs {
    phase: &'static str,
    tool: &'static str,
    ok: &'static str,
    error: &'static str,
    retry: &'static str,
    ellipsis: &'static str,
    todo_pending: &'static str,
    todo_in_progress: &'static str,
    todo_completed: &'static str,
    separator: &'static str,
    ask: &'static str,
    arrow: &'static str,
}

const UNICODE: Glyphs = Glyphs {
    phase: "·",
    tool: "→",
    ok: "✓",
    error: "✗",
    retry: "↻",
    ellipsis: "…",
    todo_pending: "☐",
    todo_in_progress: "◐",
    todo_completed: "☑",
    separator: " · ",
    ask: "?",
    arrow: "→",
};

const ASCII: Glyphs = Glyphs {
    phase: "-",
    tool: ">",
    ok: "[ok]",
    error: "[error]",
    retry: "retry:",
    ellipsis: "...",
    todo_pending: "[ ]",
    todo_in_progress: "[~]",
    todo_completed: "[x]",
    separator: ", ",
    ask: "?",
    arrow: "->",
};

/// One event of an execution's log, typed (a kind this build does not know, or data that does
/// not fit its kind, is [`ExecutionEvent::Unknown`] and shown generically).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub execution_id: String,
    pub seq: u64,
    pub ts: String,
    pub event: ExecutionEvent,
    /// The fields as the server sent them: `--json` passes them on whole, including any a
    /// newer server added.
    data: Value,
    /// The execution whose work this event is part of, for the events of a nested execution
    /// (a sub-agent's) shown with its parent's.
    parent_execution_id: Option<String>,
}

impl Event {
    pub fn new(execution_id: String, seq: u64, ts: String, kind: &str, data: Value) -> Event {
        Event {
            event: ExecutionEvent::from_wire_lenient(kind, data.clone()),
            execution_id,
            seq,
            ts,
            data,
            parent_execution_id: None,
        }
    }

    /// This event of a nested execution as part of `parent_execution_id`'s work: its data's
    /// `parent` names the work it belongs to there (a `task` call), and its JSON line names the
    /// parent execution.
    pub fn nested_in(mut self, parent_execution_id: &str, parent: &EventParent) -> Event {
        if let Value::Object(fields) = &mut self.data
            && let Ok(parent) = serde_json::to_value(parent)
        {
            fields.insert("parent".into(), parent);
            self.event = ExecutionEvent::from_wire_lenient(self.event.kind(), self.data.clone());
        }
        self.parent_execution_id = Some(parent_execution_id.to_owned());
        self
    }

    pub fn from_proto(event: WireEvent) -> Event {
        // The server stores only JSON objects; anything else is kept as text rather than lost.
        let data = serde_json::from_str(&event.data_json).unwrap_or(Value::String(event.data_json));
        Event::new(event.execution_id, event.seq, event.ts, &event.kind, data)
    }

    /// `{"execution_id","seq","ts","kind","data"}` on one line; an event of a nested execution
    /// also has `parent_execution_id`.
    pub fn to_json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            execution_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            parent_execution_id: Option<&'a str>,
            seq: u64,
            ts: &'a str,
            kind: &'a str,
            data: &'a Value,
        }
        serde_json::to_string(&Line {
            execution_id: &self.execution_id,
            parent_execution_id: self.parent_execution_id.as_deref(),
            seq: self.seq,
            ts: &self.ts,
            kind: self.event.kind(),
            data: &self.data,
        })
        .unwrap_or_default()
    }
}

/// What to write, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The assistant's text for stdout, exactly as it arrives (no newline added).
    Text(String),
    /// One line for stderr (without its newline).
    Line(String),
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// A terminal phase.
    pub phase: ExecutionPhase,
    pub reason: Option<String>,
}

/// Counts for the closing summary.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    /// `message_completed` events.
    model_turns: u64,
    /// `tool_call_finished` events.
    tool_calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    /// `task_completed` events of a workflow.
    tasks: u64,
    /// `agent_call_started` events of a workflow.
    agent_calls: u64,
}

/// Turns events into output, keeping what it needs across events (an unfinished line of text,
/// counts, how the execution ended).
pub struct Renderer {
    style: Style,
    /// Text was written to stdout and its line is not finished.
    text_open: bool,
    /// The current model attempt streamed text (so `message_completed` need not repeat it).
    streamed: bool,
    /// The call whose start is the last line written, so its result needs no name.
    last_started_call: Option<String>,
    totals: Totals,
    first_ts: Option<String>,
    running_ts: Option<String>,
    end_ts: Option<String>,
    outcome: Option<Outcome>,
    /// The events are a workflow's (its summary counts tasks, not model turns).
    workflow: bool,
    /// A workflow's tasks that started and did not end yet, by reference, in start order: a
    /// task is nested under those whose reference is a prefix of its own.
    open_tasks: Vec<String>,
    /// A workflow's `call: agent` tasks: reference → the agent execution's id.
    agent_calls: HashMap<String, String>,
    /// The `call: agent` tasks whose agent's answer was shown as it came.
    answered: Vec<String>,
    /// Tool calls that wait for approval: (execution, turn, call id) → the tool's name.
    waiting: HashMap<(String, u32, String), String>,
    /// The `task` calls whose sub-agent runs: call id → how its lines are marked.
    sub_agents: HashMap<String, String>,
    /// How many sub-agents of each name started, to tell apart two runs of one sub-agent.
    sub_agent_names: HashMap<String, u32>,
}

impl Renderer {
    pub fn new(style: Style) -> Renderer {
        Renderer {
            style,
            text_open: false,
            streamed: false,
            last_started_call: None,
            totals: Totals::default(),
            first_ts: None,
            running_ts: None,
            end_ts: None,
            outcome: None,
            workflow: false,
            open_tasks: Vec::new(),
            agent_calls: HashMap::new(),
            answered: Vec::new(),
            waiting: HashMap::new(),
            sub_agents: HashMap::new(),
            sub_agent_names: HashMap::new(),
        }
    }

    /// A renderer for a workflow execution's events (its summary counts tasks).
    pub fn for_workflow(style: Style) -> Renderer {
        Renderer {
            workflow: true,
            ..Renderer::new(style)
        }
    }

    /// How the execution ended, once its terminal event was rendered.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The output for one event.
    pub fn render(&mut self, event: &Event) -> Vec<Output> {
        let mut out = Vec::new();
        if self.first_ts.is_none() {
            self.first_ts = Some(event.ts.clone());
        }
        let glyphs = self.style.glyphs();
        match &event.event {
            ExecutionEvent::TokenDelta(delta) => {
                self.write_text(&mut out, &delta.text);
                self.streamed |= !delta.text.is_empty();
            }
            ExecutionEvent::MessageStarted(started) => {
                if started.attempt > 1 {
                    let line = self.style.paint(
                        "33",
                        &format!(
                            "{} retrying turn {} (attempt {})",
                            glyphs.retry, started.turn, started.attempt
                        ),
                    );
                    self.line(&mut out, line);
                }
                self.streamed = false;
            }
            ExecutionEvent::MessageCompleted(completed) => {
                self.totals.model_turns += 1;
                if !self.streamed {
                    // A provider that does not stream sends the whole text here only.
                    self.write_text(&mut out, &completed.text);
                }
                self.finish_text(&mut out);
                self.streamed = false;
            }
            ExecutionEvent::Usage(usage) => {
                self.totals.input_tokens += usage.input_tokens;
                self.totals.output_tokens += usage.output_tokens;
            }
            ExecutionEvent::ToolCallStarted(started) => {
                let call = format!(
                    "{}({})",
                    started.name,
                    compact_arguments(&started.arguments)
                );
                let line = format!(
                    "{} {}",
                    self.style.paint("36", glyphs.tool),
                    trim_line(&printable(&call), LINE_LIMIT, glyphs.ellipsis)
                );
                self.line(&mut out, line);
                self.last_started_call = Some(started.call_id.clone());
            }
            ExecutionEvent::ToolCallFinished(finished) => {
                self.totals.tool_calls += 1;
                // A sub-agent's later events are not shown: the result says its answer.
                self.sub_agents.remove(&finished.call_id);
                let lines = self.tool_result(finished);
                for line in lines {
                    self.line(&mut out, line);
                }
            }
            ExecutionEvent::TodosUpdated(updated) => {
                let lines = self.todos(&updated.todos);
                for line in lines {
                    self.line(&mut out, line);
                }
            }
            ExecutionEvent::PhaseChanged(changed) => {
                let phase = changed.phase;
                if phase == ExecutionPhase::Running && self.running_ts.is_none() {
                    self.running_ts = Some(event.ts.clone());
                }
                if phase.is_terminal() {
                    self.finish_text(&mut out);
                    self.end_ts = Some(event.ts.clone());
                    self.outcome = Some(Outcome {
                        phase,
                        reason: changed.reason.clone(),
                    });
                } else {
                    let line = self
                        .style
                        .paint("2", &format!("{} {}", glyphs.phase, phase));
                    self.line(&mut out, line);
                }
            }
            ExecutionEvent::McpServerFailed(failed) => {
                let what = match failed.phase.as_str() {
                    "start" => "could not start",
                    "list" => "could not list its tools",
                    _ => "stopped",
                };
                let text = format!(
                    "{} MCP server `{}` {what}; the run goes on without its tools: {}",
                    glyphs.error, failed.server, failed.reason
                );
                let line = self.warning(&text);
                self.line(&mut out, line);
            }
            ExecutionEvent::ToolProgress(progress) => {
                let amount = match progress.total {
                    Some(total) => format!("{}/{}", progress.progress, total),
                    None => progress.progress.to_string(),
                };
                let text = match &progress.message {
                    Some(message) => {
                        format!("{} {} {amount} {message}", glyphs.phase, progress.name)
                    }
                    None => format!("{} {} {amount}", glyphs.phase, progress.name),
                };
                let line = self.style.paint(
                    "2",
                    &trim_line(&printable(&text), LINE_LIMIT, glyphs.ellipsis),
                );
                self.line(&mut out, line);
            }
            ExecutionEvent::SkillsTruncated(truncated) => {
                let text = format!(
                    "{} {} of {} skill descriptions were shortened to fit the prompt's {} bytes",
                    glyphs.phase, truncated.shortened, truncated.skills, truncated.budget
                );
                let line = self.warning(&text);
                self.line(&mut out, line);
            }
            ExecutionEvent::SandboxUnavailable(unavailable) => {
                let text = format!(
                    "{} the shell's writes are not confined to the workspace: {}",
                    glyphs.error, unavailable.reason
                );
                let line = self.warning(&text);
                self.line(&mut out, line);
            }
            ExecutionEvent::TaskStarted(_)
            | ExecutionEvent::TaskCompleted(_)
            | ExecutionEvent::TaskFailed(_)
            | ExecutionEvent::TaskRetried(_)
            | ExecutionEvent::TaskSkipped(_)
            | ExecutionEvent::TaskWaiting(_)
            | ExecutionEvent::AgentCallStarted(_)
            | ExecutionEvent::WorkflowCallStarted(_) => {
                self.workflow = true;
                let lines = self.task_lines(&event.event);
                for line in lines {
                    self.line(&mut out, line);
                }
            }
            ExecutionEvent::ApprovalRequested(requested) => {
                let lines = self.approval_requested(&event.execution_id, requested);
                for line in lines {
                    self.line(&mut out, line);
                }
            }
            ExecutionEvent::ApprovalDecided(decided) => {
                let line = self.approval_decided(&event.execution_id, decided);
                self.line(&mut out, line);
            }
            ExecutionEvent::ContextCompacted(compacted) => {
                let line = self.context_compacted(compacted);
                self.line(&mut out, line);
            }
            ExecutionEvent::SubAgentStarted(started) => {
                let line = self.sub_agent_started(started);
                self.line(&mut out, line);
            }
            // A kind this version does not know (a newer server): shown as its name and
            // fields, and the stream goes on; `--json` has it whole.
            ExecutionEvent::Unknown(unknown) => {
                let line = self.unknown(unknown);
                self.line(&mut out, line);
            }
        }
        out
    }

    /// One event of the agent execution a workflow's `call: agent` task `reference` started,
    /// nested under the task while it runs: the agent's tool calls and its answer (once a
    /// turn's text is complete). Nothing once the task ended (its output says the answer).
    pub fn render_agent_call(&mut self, reference: &str, event: &Event) -> Vec<Output> {
        let mut out = Vec::new();
        let open = self.open_tasks.iter().any(|open| open == reference);
        if !open || !self.agent_calls.contains_key(reference) {
            return out;
        }
        let indent = self.inner_indent(reference);
        let width = indent.chars().count();
        let lines = self.nested_lines(&indent, width, event);
        if is_answer(&event.event) {
            self.answered.push(reference.to_owned());
        }
        for line in lines {
            self.line(&mut out, line);
        }
        out
    }

    /// One event of the sub-agent a `task` call (`call_id`) runs, nested under the call while
    /// it runs and marked with the sub-agent's name (several run at once): its tool calls,
    /// the calls that wait for approval (decided on its own execution) and its answer. Nothing
    /// once the call finished (its result says the answer).
    pub fn render_sub_agent(&mut self, call_id: &str, event: &Event) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(label) = self.sub_agents.get(call_id) else {
            return out;
        };
        let mark = format!("[{label}]");
        let width = SUB_AGENT_INDENT.chars().count() + mark.chars().count() + 1;
        let prefix = format!("{SUB_AGENT_INDENT}{} ", self.style.paint("35", &mark));
        for line in self.nested_lines(&prefix, width, event) {
            self.line(&mut out, line);
        }
        out
    }

    /// The lines of one event of a nested agent execution, each after `prefix` (which takes
    /// `width` characters on the screen): its tool calls and results, its approvals and the
    /// text of its turns.
    fn nested_lines(&mut self, prefix: &str, width: usize, event: &Event) -> Vec<String> {
        let glyphs = self.style.glyphs();
        let limit = LINE_LIMIT.saturating_sub(width);
        match &event.event {
            ExecutionEvent::MessageCompleted(completed) if is_answer(&event.event) => {
                self.answer_lines(prefix, width, &completed.text)
            }
            ExecutionEvent::ToolCallStarted(started) => {
                let call = format!(
                    "{}({})",
                    started.name,
                    compact_arguments(&started.arguments)
                );
                vec![format!(
                    "{prefix}{} {}",
                    self.style.paint("36", glyphs.tool),
                    trim_line(&printable(&call), limit, glyphs.ellipsis)
                )]
            }
            ExecutionEvent::ToolCallFinished(finished) => {
                let mark = if finished.is_error {
                    self.style.paint("31", glyphs.error)
                } else {
                    self.style.paint("32", glyphs.ok)
                };
                let first = printable_lines(&finished.result)
                    .lines()
                    .map(str::trim)
                    .find(|line| !line.is_empty())
                    .map(|line| format!(": {line}"))
                    .unwrap_or_default();
                let text = format!("{}{first}", finished.name);
                vec![format!(
                    "{prefix}  {mark} {}",
                    trim_line(&text, limit, glyphs.ellipsis)
                )]
            }
            // The nested run waits for a person: say so under its parent, with the commands
            // that decide the call (the nested execution's own id).
            ExecutionEvent::ApprovalRequested(requested) => self
                .approval_requested(&event.execution_id, requested)
                .into_iter()
                .map(|line| format!("{prefix}{line}"))
                .collect(),
            ExecutionEvent::ApprovalDecided(decided) => {
                vec![format!(
                    "{prefix}{}",
                    self.approval_decided(&event.execution_id, decided)
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The closing line: how it ended, how long it took, turns, tool calls and tokens.
    pub fn summary(&self, duration: Duration) -> String {
        let glyphs = self.style.glyphs();
        let totals = self.totals;
        let phase = self
            .outcome
            .as_ref()
            .map(|outcome| outcome.phase.as_str())
            .unwrap_or("ended");
        let (mark, preposition) = match self.outcome.as_ref().map(|outcome| outcome.phase) {
            Some(ExecutionPhase::Completed) => (self.style.paint("32", glyphs.ok), "in"),
            _ => (self.style.paint("31", glyphs.error), "after"),
        };
        let took = format!("{phase} {preposition} {}", format_duration(duration));
        if self.workflow {
            let mut parts = vec![took, plural(totals.tasks, "task")];
            if totals.agent_calls > 0 {
                parts.push(plural(totals.agent_calls, "agent call"));
            }
            let text = parts.join(glyphs.separator);
            return if self.style.unicode {
                format!("{mark} {text}")
            } else {
                text
            };
        }
        let parts = [
            took,
            plural(totals.model_turns, "model turn"),
            plural(totals.tool_calls, "tool call"),
            format!(
                "{} tokens in / {} out",
                group_digits(totals.input_tokens),
                group_digits(totals.output_tokens)
            ),
        ];
        let text = parts.join(glyphs.separator);
        if self.style.unicode {
            format!("{mark} {text}")
        } else {
            text
        }
    }

    /// From the first `running` event (else the first event) to the terminal one, by the
    /// server's timestamps.
    pub fn logged_duration(&self) -> Option<Duration> {
        let start = self.running_ts.as_ref().or(self.first_ts.as_ref())?;
        elapsed_between(start, self.end_ts.as_ref()?)
    }

    /// Ends an unfinished line of text, so what follows starts on a fresh line.
    pub fn finish_text(&mut self, out: &mut Vec<Output>) {
        if self.text_open {
            out.push(Output::Text("\n".into()));
            self.text_open = false;
        }
    }

    fn write_text(&mut self, out: &mut Vec<Output>, text: &str) {
        if text.is_empty() {
            return;
        }
        out.push(Output::Text(text.to_owned()));
        self.text_open = !text.ends_with('\n');
        self.last_started_call = None;
    }

    fn line(&mut self, out: &mut Vec<Output>, line: String) {
        self.finish_text(out);
        out.push(Output::Line(line));
        self.last_started_call = None;
    }

    /// The lines of one event of a workflow's task, indented by its depth in the task tree.
    fn task_lines(&mut self, event: &ExecutionEvent) -> Vec<String> {
        let glyphs = self.style.glyphs();
        match event {
            ExecutionEvent::TaskStarted(started) => {
                let indent = self.indent(&started.reference);
                self.open_tasks.push(started.reference.clone());
                let text = format!(
                    "{} {}",
                    glyphs.tool,
                    task_name(&started.name, &started.reference)
                );
                vec![self.task_line(&indent, &text, "36")]
            }
            ExecutionEvent::TaskCompleted(completed) => {
                self.close_task(&completed.reference);
                self.totals.tasks += 1;
                let indent = self.indent(&completed.reference);
                let name = task_name(&completed.name, &completed.reference);
                let mark = self.style.paint("32", glyphs.ok);
                let mut lines = Vec::new();
                let answer = self
                    .agent_calls
                    .contains_key(&completed.reference)
                    .then(|| completed.output.get("text").and_then(Value::as_str))
                    .flatten();
                if let Some(answer) = answer {
                    // Shown already when the agent's events were followed.
                    if !self.answered.contains(&completed.reference) {
                        let inner = format!("{indent}{TASK_INDENT}");
                        let width = inner.chars().count();
                        lines.extend(self.answer_lines(&inner, width, answer));
                    }
                    lines.push(format!("{indent}{mark} {name}"));
                    return lines;
                }
                let output = match &completed.output {
                    Value::Null => String::new(),
                    output => format!(": {}", printable(&output.to_string())),
                };
                let text = format!("{name}{output}");
                let limit = LINE_LIMIT.saturating_sub(indent.chars().count());
                lines.push(format!(
                    "{indent}{mark} {}",
                    trim_line(&text, limit, glyphs.ellipsis)
                ));
                lines
            }
            ExecutionEvent::TaskFailed(failed) => {
                self.close_task(&failed.reference);
                let indent = self.indent(&failed.reference);
                let text = format!(
                    "{} {}: {}",
                    glyphs.error,
                    task_name(&failed.name, &failed.reference),
                    problem_text(&failed.error)
                );
                vec![self.task_line(&indent, &text, "31")]
            }
            ExecutionEvent::TaskRetried(retried) => {
                let indent = self.inner_indent(&retried.reference);
                let text = format!(
                    "{} retrying {} (attempt {}) in {}: {}",
                    glyphs.retry,
                    task_name("", &retried.reference),
                    retried.attempt,
                    format_duration(Duration::from_millis(retried.delay_ms)),
                    problem_text(&retried.error)
                );
                vec![self.task_line(&indent, &text, "33")]
            }
            ExecutionEvent::TaskSkipped(skipped) => {
                let indent = self.indent(&skipped.reference);
                let text = format!(
                    "{} {} skipped",
                    glyphs.phase,
                    task_name(&skipped.name, &skipped.reference)
                );
                vec![self.task_line(&indent, &text, "2")]
            }
            ExecutionEvent::TaskWaiting(waiting) => {
                let indent = self.inner_indent(&waiting.reference);
                let text = format!(
                    "{} {} waits {}",
                    glyphs.phase,
                    task_name(&waiting.name, &waiting.reference),
                    format_duration(Duration::from_millis(waiting.millis))
                );
                vec![self.task_line(&indent, &text, "2")]
            }
            ExecutionEvent::AgentCallStarted(call) => {
                self.totals.agent_calls += 1;
                self.agent_calls
                    .insert(call.reference.clone(), call.execution_id.clone());
                let indent = self.inner_indent(&call.reference);
                let text = format!(
                    "{} agent execution {}",
                    glyphs.phase,
                    printable(&call.execution_id)
                );
                vec![self.task_line(&indent, &text, "2")]
            }
            ExecutionEvent::WorkflowCallStarted(call) => {
                let indent = self.inner_indent(&call.reference);
                let text = format!(
                    "{} workflow execution {}",
                    glyphs.phase,
                    printable(&call.execution_id)
                );
                vec![self.task_line(&indent, &text, "2")]
            }
            _ => Vec::new(),
        }
    }

    /// One line of the task tree: indented, on one line, trimmed, painted.
    fn task_line(&self, indent: &str, text: &str, colour: &str) -> String {
        let glyphs = self.style.glyphs();
        let limit = LINE_LIMIT.saturating_sub(indent.chars().count());
        format!(
            "{indent}{}",
            self.style
                .paint(colour, &trim_line(&printable(text), limit, glyphs.ellipsis))
        )
    }

    /// The indentation of a task: one level per open task it is nested under.
    fn indent(&self, reference: &str) -> String {
        let depth = self
            .open_tasks
            .iter()
            .filter(|open| {
                reference
                    .strip_prefix(open.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .count();
        TASK_INDENT.repeat(depth)
    }

    /// The indentation of what happens inside a task: under it while it is open.
    fn inner_indent(&self, reference: &str) -> String {
        let indent = self.indent(reference);
        if self.open_tasks.iter().any(|open| open == reference) {
            format!("{indent}{TASK_INDENT}")
        } else {
            indent
        }
    }

    fn close_task(&mut self, reference: &str) {
        if let Some(index) = self.open_tasks.iter().rposition(|open| open == reference) {
            self.open_tasks.remove(index);
        }
    }

    /// A nested agent's answer under its parent, each line after `indent` (`width` characters
    /// on the screen): its lines, trimmed, at most [`ANSWER_LINES`].
    fn answer_lines(&self, indent: &str, width: usize, answer: &str) -> Vec<String> {
        let glyphs = self.style.glyphs();
        let limit = LINE_LIMIT.saturating_sub(width);
        let text = printable_lines(answer);
        let lines: Vec<&str> = text.trim().lines().map(str::trim_end).collect();
        let mut out: Vec<String> = lines
            .iter()
            .take(ANSWER_LINES)
            .map(|line| format!("{indent}{}", trim_line(line, limit, glyphs.ellipsis)))
            .collect();
        if lines.len() > ANSWER_LINES {
            let more = lines.len() - ANSWER_LINES;
            out.push(format!(
                "{indent}{}",
                self.style.paint(
                    "2",
                    &format!(
                        "{} {more} more line{}",
                        glyphs.ellipsis,
                        if more == 1 { "" } else { "s" }
                    )
                )
            ));
        }
        out
    }

    fn tool_result(&self, finished: &ToolCallFinished) -> Vec<String> {
        let glyphs = self.style.glyphs();
        let mark = if finished.is_error {
            self.style.paint("31", glyphs.error)
        } else {
            self.style.paint("32", glyphs.ok)
        };
        // The name is needed only when the result does not follow its call directly.
        let follows_call = self.last_started_call.as_deref() == Some(finished.call_id.as_str());
        let label = if follows_call {
            String::new()
        } else {
            format!("{}: ", finished.name)
        };
        let result = printable_lines(&finished.result);
        let lines: Vec<&str> = result
            .lines()
            .map(str::trim_end)
            .skip_while(|line| line.is_empty())
            .collect();
        let end = lines
            .iter()
            .rposition(|line| !line.is_empty())
            .map_or(0, |last| last + 1);
        let lines = &lines[..end];
        if lines.is_empty() {
            return vec![format!(
                "  {mark} {label}{}",
                self.style.paint("2", "(no output)")
            )];
        }
        let mut out = Vec::new();
        for (index, line) in lines.iter().take(RESULT_LINES).enumerate() {
            let text = trim_line(line, LINE_LIMIT, glyphs.ellipsis);
            if index == 0 {
                out.push(format!("  {mark} {label}{text}"));
            } else {
                out.push(format!("    {}", self.style.paint("2", &text)));
            }
        }
        if lines.len() > RESULT_LINES {
            let more = lines.len() - RESULT_LINES;
            out.push(format!(
                "    {}",
                self.style.paint(
                    "2",
                    &format!(
                        "{} {more} more line{}",
                        glyphs.ellipsis,
                        if more == 1 { "" } else { "s" }
                    )
                )
            ));
        }
        out
    }

    fn todos(&self, items: &[Todo]) -> Vec<String> {
        let glyphs = self.style.glyphs();
        if items.is_empty() {
            return vec![self.style.paint("2", "todos cleared")];
        }
        let done = items
            .iter()
            .filter(|item| item.status == TodoStatus::Completed)
            .count();
        let mut out = vec![
            self.style
                .paint("2", &format!("todos ({done} of {} done)", items.len())),
        ];
        for item in items {
            let box_ = match item.status {
                TodoStatus::Completed => self.style.paint("32", glyphs.todo_completed),
                TodoStatus::InProgress => self.style.paint("33", glyphs.todo_in_progress),
                TodoStatus::Pending | TodoStatus::Other => glyphs.todo_pending.to_owned(),
            };
            let content = printable(&item.content);
            out.push(format!(
                "  {box_} {}",
                trim_line(&content, LINE_LIMIT, glyphs.ellipsis)
            ));
        }
        out
    }

    /// A call that waits for approval: the call with its arguments, why, until when, then the
    /// commands that decide it.
    fn approval_requested(
        &mut self,
        execution_id: &str,
        requested: &ApprovalRequested,
    ) -> Vec<String> {
        let glyphs = self.style.glyphs();
        self.waiting.insert(
            (
                execution_id.to_owned(),
                requested.turn,
                requested.call_id.clone(),
            ),
            requested.name.clone(),
        );
        let call = format!(
            "{}({})",
            requested.name,
            compact_arguments(&requested.arguments)
        );
        let until = chrono::DateTime::parse_from_rfc3339(&requested.expires_at)
            .map(|expires| {
                format!(
                    " until {} UTC",
                    expires.with_timezone(&chrono::Utc).format("%H:%M:%S")
                )
            })
            .unwrap_or_default();
        // The call is cut, never the reason: it says why the run waits.
        let head = format!(
            "{} {} waits for approval{until}: {}",
            glyphs.ask,
            trim_line(&printable(&call), CALL_LIMIT, glyphs.ellipsis),
            printable(&requested.reason)
        );
        let (approve, deny) = approval_commands(execution_id, &requested.call_id);
        vec![
            self.style.paint("33", &head),
            self.style.paint("2", &format!("  approve: {approve}")),
            self.style
                .paint("2", &format!("  deny:    {deny} [--message TEXT]")),
        ]
    }

    /// How a call that waited was decided: approved, denied (with the message), or denied
    /// because nobody decided in time.
    fn approval_decided(&mut self, execution_id: &str, decided: &ApprovalDecided) -> String {
        let glyphs = self.style.glyphs();
        let key = (
            execution_id.to_owned(),
            decided.turn,
            decided.call_id.clone(),
        );
        let call = match self.waiting.remove(&key) {
            Some(name) => format!("{name} {}", decided.call_id),
            None => decided.call_id.clone(),
        };
        let message = decided
            .message
            .as_deref()
            .filter(|message| !message.trim().is_empty())
            .map(|message| format!(": {message}"))
            .unwrap_or_default();
        let (mark, text) = match (decided.approved, decided.by.as_str()) {
            (true, _) => (
                self.style.paint("32", glyphs.ok),
                format!("approved {call}"),
            ),
            (false, "timeout") => (
                self.style.paint("31", glyphs.error),
                format!("{call} was not decided in time: denied"),
            ),
            (false, _) => (
                self.style.paint("31", glyphs.error),
                format!("denied {call}{message}"),
            ),
        };
        format!(
            "{mark} {}",
            trim_line(&printable(&text), LINE_LIMIT, glyphs.ellipsis)
        )
    }

    /// The older messages were folded into a summary to fit the model's context window.
    fn context_compacted(&self, compacted: &ContextCompacted) -> String {
        let glyphs = self.style.glyphs();
        let text = format!(
            "{} context compacted: {} folded, {} {} {} tokens (window {}); full history in {}",
            glyphs.phase,
            plural(u64::from(compacted.messages), "message"),
            group_digits(compacted.tokens_before),
            glyphs.arrow,
            group_digits(compacted.tokens_after),
            group_digits(compacted.window),
            compacted.history_path
        );
        self.style.paint("2", &printable(&text))
    }

    /// A `task` call's sub-agent started: said under the call, with the mark its lines get
    /// (the name, numbered from the second run of one sub-agent on: they may run at once).
    fn sub_agent_started(&mut self, started: &SubAgentStarted) -> String {
        let glyphs = self.style.glyphs();
        let count = self
            .sub_agent_names
            .entry(started.name.clone())
            .or_default();
        *count += 1;
        let label = if *count == 1 {
            printable(&started.name)
        } else {
            printable(&format!("{}#{count}", started.name))
        };
        let text = format!(
            "{SUB_AGENT_INDENT}{} sub-agent {label} started ({})",
            glyphs.phase,
            printable(&started.execution_id)
        );
        self.sub_agents.insert(started.call_id.clone(), label);
        self.style.paint("2", &text)
    }

    /// An event of a kind this version does not know: `- kind: key=value, …`, on one line.
    /// A line about something that went wrong without ending the run, in yellow.
    fn warning(&self, text: &str) -> String {
        let glyphs = self.style.glyphs();
        self.style.paint(
            "33",
            &trim_line(&printable(text), LINE_LIMIT, glyphs.ellipsis),
        )
    }

    fn unknown(&self, unknown: &UnknownEvent) -> String {
        let glyphs = self.style.glyphs();
        let fields = compact_arguments(&unknown.data);
        let text = if fields.is_empty() {
            unknown.kind.clone()
        } else {
            format!("{}: {fields}", unknown.kind)
        };
        self.style.paint(
            "2",
            &format!(
                "{} {}",
                glyphs.phase,
                trim_line(&printable(&text), LINE_LIMIT, glyphs.ellipsis)
            ),
        )
    }
}

/// Whether a nested agent's event is the text of one of its turns, shown as its answer.
fn is_answer(event: &ExecutionEvent) -> bool {
    matches!(event, ExecutionEvent::MessageCompleted(completed) if !completed.text.trim().is_empty())
}

/// The commands that approve and deny one waiting call of an execution.
pub fn approval_commands(execution_id: &str, call_id: &str) -> (String, String) {
    let call = shell_word(call_id);
    (
        format!("stigmer execution approve {execution_id} {call}"),
        format!("stigmer execution deny {execution_id} {call}"),
    )
}

/// `word` as a shell reads it back: as it is when it holds only safe characters, else in
/// single quotes.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A task's name, else the last part of its reference (`/do/1/fetch` → `fetch`).
fn task_name<'a>(name: &'a str, reference: &'a str) -> &'a str {
    if name.is_empty() {
        reference.rsplit('/').next().unwrap_or(reference)
    } else {
        name
    }
}

/// A problem-details object on one line: `type (status): detail` (the last part of a type URI;
/// the title when there is no detail). Anything else as compact JSON.
pub fn problem_text(error: &Value) -> String {
    let Value::Object(fields) = error else {
        return match error {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
    };
    let kind = fields.get("type").and_then(Value::as_str).map(|kind| {
        kind.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(kind)
    });
    let status = fields.get("status").filter(|status| !status.is_null());
    let text = fields
        .get("detail")
        .or_else(|| fields.get("title"))
        .and_then(Value::as_str);
    let head = match (kind, status) {
        (Some(kind), Some(status)) => format!("{kind} ({status})"),
        (Some(kind), None) => kind.to_owned(),
        (None, Some(status)) => format!("({status})"),
        (None, None) => String::new(),
    };
    match (head.is_empty(), text) {
        (_, None) if head.is_empty() => error.to_string(),
        (_, None) => head,
        (true, Some(text)) => text.to_owned(),
        (false, Some(text)) => format!("{head}: {text}"),
    }
}

/// Tool arguments on one line: `key=value, …` with values as compact JSON.
pub fn compact_arguments(arguments: &Value) -> String {
    match arguments {
        Value::Null => String::new(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        // Arguments that arrived as text holding JSON are shown as that JSON.
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => compact_arguments(&parsed),
            _ => arguments.to_string(),
        },
        other => other.to_string(),
    }
}

/// `text` cut to `limit` characters, ending with `ellipsis` when cut.
pub fn trim_line(text: &str, limit: usize, ellipsis: &str) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let keep = limit.saturating_sub(ellipsis.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(ellipsis);
    out
}

/// `text` without control characters (a tool's output may hold terminal escapes), on one line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => " ".to_owned(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// As [`printable`], keeping line breaks.
fn printable_lines(text: &str) -> String {
    text.lines().map(printable).collect::<Vec<_>>().join("\n")
}

/// The time between two RFC 3339 timestamps.
pub fn elapsed_between(start: &str, end: &str) -> Option<Duration> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end).ok()?;
    (end - start).to_std().ok()
}

/// `0.8s`, `42.1s`, `3m 05s`, `1h 02m`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{:.1}s", duration.as_secs_f64()),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

fn plural(count: u64, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// `1234567` → `1,234,567`.
fn group_digits(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Plain ASCII without colour, as in a pipe or a log file.
    const PLAIN: Style = Style {
        unicode: false,
        color: false,
    };

    /// An event read strictly: test data must fit its kind (an unknown kind stays unknown).
    fn event(seq: u64, kind: &str, data: Value) -> Event {
        ExecutionEvent::from_wire(kind, &data).expect("test data fits its kind");
        Event::new(
            "aex-1".into(),
            seq,
            format!("2025-01-01T00:00:{:02}.000Z", seq.min(59)),
            kind,
            data,
        )
    }

    /// Renders `events` and shows the two streams in one transcript: stdout text as is,
    /// stderr lines prefixed with `| `.
    fn transcript(style: Style, events: &[Event]) -> String {
        let mut renderer = Renderer::new(style);
        let mut out = String::new();
        for event in events {
            for output in renderer.render(event) {
                match output {
                    Output::Text(text) => out.push_str(&text),
                    Output::Line(line) => {
                        assert!(
                            out.is_empty() || out.ends_with('\n'),
                            "a line must start on a fresh line: {out:?}"
                        );
                        out.push_str("| ");
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            }
        }
        out.push_str(&format!(
            "= {}\n",
            renderer.summary(renderer.logged_duration().unwrap_or_default())
        ));
        out
    }

    fn conversation() -> Vec<Event> {
        vec![
            event(1, "phase_changed", json!({"phase": "pending"})),
            event(2, "phase_changed", json!({"phase": "running"})),
            event(3, "message_started", json!({"turn": 1, "attempt": 1})),
            event(4, "token_delta", json!({"turn": 1, "text": "Let me look"})),
            event(
                5,
                "token_delta",
                json!({"turn": 1, "text": " at the files."}),
            ),
            event(
                6,
                "message_completed",
                json!({"turn": 1, "text": "Let me look at the files.", "tool_calls": [{"id": "c1", "name": "ls"}]}),
            ),
            event(
                7,
                "usage",
                json!({"turn": 1, "input_tokens": 1200, "output_tokens": 30}),
            ),
            event(
                8,
                "tool_call_started",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "arguments": {"path": "."}}),
            ),
            event(
                9,
                "tool_call_finished",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "result": "a.txt\nb.txt\nc.txt\nd.txt\ne.txt\n", "is_error": false}),
            ),
            event(
                10,
                "tool_call_started",
                json!({"turn": 1, "call_id": "c2", "name": "write_todos", "arguments": {"todos": [{"content": "read", "status": "completed"}]}}),
            ),
            event(
                11,
                "todos_updated",
                json!({"turn": 1, "todos": [
                    {"content": "read the files", "status": "completed"},
                    {"content": "summarise them", "status": "in_progress"},
                    {"content": "answer", "status": "pending"}
                ]}),
            ),
            event(
                12,
                "tool_call_finished",
                json!({"turn": 1, "call_id": "c2", "name": "write_todos", "result": "", "is_error": false}),
            ),
            event(13, "message_started", json!({"turn": 2, "attempt": 1})),
            event(14, "token_delta", json!({"turn": 2, "text": "There are "})),
            event(15, "message_started", json!({"turn": 2, "attempt": 2})),
            event(
                16,
                "token_delta",
                json!({"turn": 2, "text": "There are five files.\n"}),
            ),
            event(
                17,
                "message_completed",
                json!({"turn": 2, "text": "There are five files.\n", "tool_calls": []}),
            ),
            event(
                18,
                "usage",
                json!({"turn": 2, "input_tokens": 1300, "output_tokens": 12}),
            ),
            event(19, "phase_changed", json!({"phase": "completed"})),
        ]
    }

    #[test]
    fn a_conversation_in_plain_text() {
        insta::assert_snapshot!(transcript(PLAIN, &conversation()), @r#"
        | - pending
        | - running
        Let me look at the files.
        | > ls(path=".")
        |   [ok] a.txt
        |     b.txt
        |     c.txt
        |     ... 2 more lines
        | > write_todos(todos=[{"content":"read","status":"completed"}])
        | todos (1 of 3 done)
        |   [x] read the files
        |   [~] summarise them
        |   [ ] answer
        |   [ok] write_todos: (no output)
        There are 
        | retry: retrying turn 2 (attempt 2)
        There are five files.
        = completed in 17.0s, 2 model turns, 2 tool calls, 2,500 tokens in / 42 out
        "#);
    }

    #[test]
    fn a_conversation_on_a_terminal_without_colour() {
        let style = Style {
            unicode: true,
            color: false,
        };
        insta::assert_snapshot!(transcript(style, &conversation()), @r#"
        | · pending
        | · running
        Let me look at the files.
        | → ls(path=".")
        |   ✓ a.txt
        |     b.txt
        |     c.txt
        |     … 2 more lines
        | → write_todos(todos=[{"content":"read","status":"completed"}])
        | todos (1 of 3 done)
        |   ☑ read the files
        |   ◐ summarise them
        |   ☐ answer
        |   ✓ write_todos: (no output)
        There are 
        | ↻ retrying turn 2 (attempt 2)
        There are five files.
        = ✓ completed in 17.0s · 2 model turns · 2 tool calls · 2,500 tokens in / 42 out
        "#);
    }

    #[test]
    fn colour_only_when_asked() {
        let events = conversation();
        let coloured = transcript(
            Style {
                unicode: true,
                color: true,
            },
            &events,
        );
        assert!(coloured.contains("\x1b[32m✓\x1b[0m"));
        assert!(!transcript(PLAIN, &events).contains('\x1b'));
    }

    #[test]
    fn a_failed_tool_call_and_a_failed_execution() {
        let events = [
            event(1, "phase_changed", json!({"phase": "running"})),
            event(
                2,
                "tool_call_started",
                json!({"turn": 1, "call_id": "c1", "name": "read_file", "arguments": {"path": "missing.txt"}}),
            ),
            event(
                3,
                "tool_call_finished",
                json!({"turn": 1, "call_id": "c1", "name": "read_file", "result": "no such file: missing.txt", "is_error": true}),
            ),
            event(4, "token_delta", json!({"turn": 2, "text": "Sorr"})),
            event(
                5,
                "phase_changed",
                json!({"phase": "failed", "reason": "the model is unreachable"}),
            ),
        ];
        let mut renderer = Renderer::new(PLAIN);
        let outputs: Vec<Output> = events.iter().flat_map(|e| renderer.render(e)).collect();
        assert_eq!(
            outputs,
            vec![
                Output::Line("- running".into()),
                Output::Line("> read_file(path=\"missing.txt\")".into()),
                Output::Line("  [error] no such file: missing.txt".into()),
                Output::Text("Sorr".into()),
                // The unfinished answer's line is ended before anything else is written.
                Output::Text("\n".into()),
            ]
        );
        assert_eq!(
            renderer.outcome(),
            Some(&Outcome {
                phase: ExecutionPhase::Failed,
                reason: Some("the model is unreachable".into())
            })
        );
        assert_eq!(
            renderer.summary(Duration::from_secs(125)),
            "failed after 2m 05s, 0 model turns, 1 tool call, 0 tokens in / 0 out"
        );
    }

    #[test]
    fn tool_problems_and_progress_are_one_line_each_and_the_run_goes_on() {
        let events = [
            event(
                1,
                "mcp_server_failed",
                json!({"server": "files", "phase": "start", "reason": "exited with status 1: npm ERR! 404"}),
            ),
            event(
                2,
                "skills_truncated",
                json!({"skills": 40, "shortened": 12, "budget": 8192}),
            ),
            event(
                3,
                "sandbox_unavailable",
                json!({"reason": "the kernel has no Landlock"}),
            ),
            event(
                4,
                "tool_progress",
                json!({"turn": 1, "call_id": "c1", "name": "everything__slow", "progress": 1.0, "total": 3.0, "message": "step 1"}),
            ),
            event(
                5,
                "mcp_server_failed",
                json!({"server": "web", "phase": "call", "reason": "the connection was closed"}),
            ),
        ];
        insta::assert_snapshot!(transcript(PLAIN, &events), @r"
        | [error] MCP server `files` could not start; the run goes on without its tools: exited with status 1: npm ERR! 404
        | - 12 of 40 skill descriptions were shortened to fit the prompt's 8192 bytes
        | [error] the shell's writes are not confined to the workspace: the kernel has no Landlock
        | - everything__slow 1/3 step 1
        | [error] MCP server `web` stopped; the run goes on without its tools: the connection was closed
        = ended after 0.0s, 0 model turns, 0 tool calls, 0 tokens in / 0 out
        ");
    }

    #[test]
    fn text_that_was_not_streamed_is_shown_once_complete() {
        let mut renderer = Renderer::new(PLAIN);
        let outputs = renderer.render(&event(
            1,
            "message_completed",
            json!({"turn": 1, "text": "Hello.", "tool_calls": []}),
        ));
        assert_eq!(
            outputs,
            vec![Output::Text("Hello.".into()), Output::Text("\n".into())]
        );
    }

    #[test]
    fn long_arguments_and_results_are_trimmed_to_one_line_each() {
        let long = "x".repeat(300);
        let mut renderer = Renderer::new(PLAIN);
        let started = renderer.render(&event(
            1,
            "tool_call_started",
            json!({"turn": 1, "call_id": "c1", "name": "write_file", "arguments": {"content": format!("{long}\nmore")}}),
        ));
        let Output::Line(line) = &started[0] else {
            panic!("expected a line, got {started:?}")
        };
        assert_eq!(line.chars().count(), 2 + LINE_LIMIT);
        assert!(line.starts_with("> write_file(content=\"xxx"));
        assert!(line.ends_with("..."));
        let finished = renderer.render(&event(
            2,
            "tool_call_finished",
            json!({"turn": 1, "call_id": "c1", "name": "write_file", "result": long, "is_error": false}),
        ));
        let Output::Line(line) = &finished[0] else {
            panic!("expected a line, got {finished:?}")
        };
        assert_eq!(line.chars().count(), "  [ok] ".len() + LINE_LIMIT);
    }

    #[test]
    fn control_characters_in_tool_output_are_not_sent_to_the_terminal() {
        let mut renderer = Renderer::new(PLAIN);
        let outputs = renderer.render(&event(
            1,
            "tool_call_finished",
            json!({"turn": 1, "call_id": "c9", "name": "grep", "result": "\u{1b}[31mred\u{1b}[0m", "is_error": false}),
        ));
        assert_eq!(
            outputs,
            vec![Output::Line("  [ok] grep: \\u{1b}[31mred\\u{1b}[0m".into())]
        );
    }

    #[test]
    fn arguments_read_as_key_value_pairs() {
        assert_eq!(
            // Written in key order: serde_json may or may not keep the order it was given.
            compact_arguments(&json!({"limit": 10, "path": "src"})),
            r#"limit=10, path="src""#
        );
        assert_eq!(
            compact_arguments(&json!("{\"path\": \"src\"}")),
            r#"path="src""#
        );
        assert_eq!(compact_arguments(&json!(["a"])), r#"["a"]"#);
        assert_eq!(compact_arguments(&Value::Null), "");
    }

    #[test]
    fn json_lines_keep_the_documented_shape() {
        let event = Event::from_proto(WireEvent {
            execution_id: "aex-1".into(),
            seq: 7,
            ts: "2025-01-01T00:00:00.000Z".into(),
            kind: "usage".into(),
            data_json: r#"{"input_tokens":3,"output_tokens":4,"turn":1}"#.into(),
        });
        assert_eq!(
            event.to_json_line(),
            r#"{"execution_id":"aex-1","seq":7,"ts":"2025-01-01T00:00:00.000Z","kind":"usage","data":{"input_tokens":3,"output_tokens":4,"turn":1}}"#
        );
    }

    /// A turn with a call that runs at once and two that wait: one approved, one denied with a
    /// message, one denied when nobody decided in time; then the history is compacted.
    fn approvals() -> Vec<Event> {
        let request = |seq: u64, call_id: &str, command: &str| {
            event(
                seq,
                "approval_requested",
                json!({"turn": 1, "index": 1, "call_id": call_id, "name": "execute",
                       "arguments": {"command": command},
                       "reason": "the agent's approval.tools lists execute",
                       "expires_at": "2025-01-01T00:10:00.000Z"}),
            )
        };
        vec![
            event(1, "phase_changed", json!({"phase": "running"})),
            event(
                2,
                "tool_call_started",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "arguments": {"path": "."}}),
            ),
            event(
                3,
                "tool_call_finished",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "result": "a.txt", "is_error": false}),
            ),
            request(4, "c2", "echo x >> count.txt"),
            request(5, "call 3", "rm -rf build"),
            event(6, "phase_changed", json!({"phase": "waiting"})),
            event(
                7,
                "approval_decided",
                json!({"turn": 1, "call_id": "c2", "approved": true, "by": "user"}),
            ),
            event(
                8,
                "approval_decided",
                json!({"turn": 1, "call_id": "call 3", "approved": false, "message": "not now", "by": "user"}),
            ),
            event(
                9,
                "approval_decided",
                json!({"turn": 2, "call_id": "c9", "approved": false, "message": "approval timed out", "by": "timeout"}),
            ),
            event(10, "phase_changed", json!({"phase": "running"})),
            event(
                11,
                "context_compacted",
                json!({"turn": 3, "messages": 24, "tokens_before": 3600, "tokens_after": 900,
                       "window": 4096, "history_path": ".stigmer/history/aex-1.md"}),
            ),
            event(12, "phase_changed", json!({"phase": "completed"})),
        ]
    }

    #[test]
    fn calls_waiting_for_approval_say_how_to_decide_them() {
        insta::assert_snapshot!(transcript(PLAIN, &approvals()), @r#"
        | - running
        | > ls(path=".")
        |   [ok] a.txt
        | ? execute(command="echo x >> count.txt") waits for approval until 00:10:00 UTC: the agent's approval.tools lists execute
        |   approve: stigmer execution approve aex-1 c2
        |   deny:    stigmer execution deny aex-1 c2 [--message TEXT]
        | ? execute(command="rm -rf build") waits for approval until 00:10:00 UTC: the agent's approval.tools lists execute
        |   approve: stigmer execution approve aex-1 'call 3'
        |   deny:    stigmer execution deny aex-1 'call 3' [--message TEXT]
        | - waiting
        | [ok] approved execute c2
        | [error] denied execute call 3: not now
        | [error] c9 was not decided in time: denied
        | - running
        | - context compacted: 24 messages folded, 3,600 -> 900 tokens (window 4,096); full history in .stigmer/history/aex-1.md
        = completed in 11.0s, 0 model turns, 1 tool call, 0 tokens in / 0 out
        "#);
        let unicode = Style {
            unicode: true,
            color: false,
        };
        let shown = transcript(unicode, &approvals());
        assert!(
            shown.contains("· context compacted: 24 messages folded, 3,600 → 900 tokens"),
            "{shown}"
        );
    }

    #[test]
    fn an_unknown_kind_is_shown_generically_and_the_stream_goes_on() {
        let mut events = conversation();
        // What a newer server might send: a kind this version does not know, and a known kind
        // with a value it does not know.
        events.insert(
            2,
            Event::from_proto(WireEvent {
                execution_id: "aex-1".into(),
                seq: 3,
                ts: "2025-01-01T00:00:03.000Z".into(),
                kind: "mcp_server_connected".into(),
                data_json: r#"{"server":"github","tools":12}"#.into(),
            }),
        );
        events.insert(
            3,
            Event::from_proto(WireEvent {
                execution_id: "aex-1".into(),
                seq: 3,
                ts: "2025-01-01T00:00:03.000Z".into(),
                kind: "phase_changed".into(),
                data_json: r#"{"phase":"paused"}"#.into(),
            }),
        );
        let shown = transcript(PLAIN, &events);
        insta::assert_snapshot!(shown.lines().take(5).collect::<Vec<_>>().join("\n"), @r#"
        | - pending
        | - running
        | - mcp_server_connected: server="github", tools=12
        | - phase_changed: phase="paused"
        Let me look at the files.
        "#);
        // Everything after it is rendered as before, to the end and the summary.
        let known = transcript(PLAIN, &conversation());
        assert!(
            shown.ends_with(&known[known.find("Let me look").unwrap()..]),
            "{shown}"
        );
        // `--json` passes it on whole.
        assert_eq!(
            events[2].to_json_line(),
            r#"{"execution_id":"aex-1","seq":3,"ts":"2025-01-01T00:00:03.000Z","kind":"mcp_server_connected","data":{"server":"github","tools":12}}"#
        );
    }

    fn workflow_event(seq: u64, kind: &str, data: Value) -> Event {
        ExecutionEvent::from_wire(kind, &data).expect("test data fits its kind");
        Event::new(
            "wex-1".into(),
            seq,
            format!("2025-01-01T00:00:{:02}.000Z", seq.min(59)),
            kind,
            data,
        )
    }

    /// A workflow with a `try` whose inner task fails once and is retried, a skipped task, a
    /// wait, and a `call: agent` task.
    fn workflow_run() -> Vec<Event> {
        let e = workflow_event;
        vec![
            e(1, "phase_changed", json!({"phase": "running"})),
            e(
                2,
                "task_started",
                json!({"reference": "/do/0/fetch", "name": "fetch"}),
            ),
            e(
                3,
                "task_completed",
                json!({"reference": "/do/0/fetch", "name": "fetch", "output": {"status": 200, "body": "ok"}}),
            ),
            e(
                4,
                "task_started",
                json!({"reference": "/do/1/guarded", "name": "guarded"}),
            ),
            e(
                5,
                "task_started",
                json!({"reference": "/do/1/guarded/try/0/call", "name": "call"}),
            ),
            e(
                6,
                "task_failed",
                json!({"reference": "/do/1/guarded/try/0/call", "name": "call", "error": {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503, "title": "Communication error", "detail": "the service is unavailable"}}),
            ),
            e(
                7,
                "task_retried",
                json!({"reference": "/do/1/guarded", "attempt": 2, "error": {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503, "detail": "the service is unavailable"}, "delay_ms": 1500}),
            ),
            e(
                8,
                "task_started",
                json!({"reference": "/do/1/guarded/try/0/call", "name": "call"}),
            ),
            e(
                9,
                "task_completed",
                json!({"reference": "/do/1/guarded/try/0/call", "name": "call", "output": "done\nsecond line"}),
            ),
            e(
                10,
                "task_completed",
                json!({"reference": "/do/1/guarded", "name": "guarded", "output": null}),
            ),
            e(
                11,
                "task_skipped",
                json!({"reference": "/do/2/maybe", "name": "maybe"}),
            ),
            e(
                12,
                "task_started",
                json!({"reference": "/do/3/pause", "name": "pause"}),
            ),
            e(
                13,
                "task_waiting",
                json!({"reference": "/do/3/pause", "name": "pause", "millis": 2000}),
            ),
            e(
                14,
                "task_completed",
                json!({"reference": "/do/3/pause", "name": "pause", "output": {}}),
            ),
            e(
                15,
                "task_started",
                json!({"reference": "/do/4/ask", "name": "ask"}),
            ),
            e(
                16,
                "agent_call_started",
                json!({"reference": "/do/4/ask", "name": "ask", "execution_id": "aex-7"}),
            ),
            e(
                17,
                "task_completed",
                json!({"reference": "/do/4/ask", "name": "ask", "output": {"text": "There are five files.\nAll small."}}),
            ),
            e(18, "phase_changed", json!({"phase": "completed"})),
        ]
    }

    #[test]
    fn a_workflow_is_a_tree_of_tasks() {
        insta::assert_snapshot!(transcript(PLAIN, &workflow_run()), @r#"
        | - running
        | > fetch
        | [ok] fetch: {"status":200,"body":"ok"}
        | > guarded
        |   > call
        |   [error] call: communication (503): the service is unavailable
        |   retry: retrying guarded (attempt 2) in 1.5s: communication (503): the service is unavailable
        |   > call
        |   [ok] call: "done\nsecond line"
        | [ok] guarded
        | - maybe skipped
        | > pause
        |   - pause waits 2.0s
        | [ok] pause: {}
        | > ask
        |   - agent execution aex-7
        |   There are five files.
        |   All small.
        | [ok] ask
        = completed in 17.0s, 5 tasks, 1 agent call
        "#);
    }

    #[test]
    fn a_child_workflow_is_shown_under_its_task() {
        let e = workflow_event;
        let events = vec![
            e(1, "phase_changed", json!({"phase": "running"})),
            e(
                2,
                "task_started",
                json!({"reference": "/do/0/child", "name": "child"}),
            ),
            e(
                3,
                "workflow_call_started",
                json!({"reference": "/do/0/child", "name": "child", "execution_id": "wex-2"}),
            ),
            e(
                4,
                "task_completed",
                json!({"reference": "/do/0/child", "name": "child", "output": {"n": 2}}),
            ),
            e(5, "phase_changed", json!({"phase": "completed"})),
        ];
        insta::assert_snapshot!(transcript(PLAIN, &events), @r#"
        | - running
        | > child
        |   - workflow execution wex-2
        | [ok] child: {"n":2}
        = completed in 4.0s, 1 task
        "#);
    }

    #[test]
    fn a_workflow_on_a_terminal_without_colour() {
        let style = Style {
            unicode: true,
            color: false,
        };
        insta::assert_snapshot!(transcript(style, &workflow_run()), @r#"
        | · running
        | → fetch
        | ✓ fetch: {"status":200,"body":"ok"}
        | → guarded
        |   → call
        |   ✗ call: communication (503): the service is unavailable
        |   ↻ retrying guarded (attempt 2) in 1.5s: communication (503): the service is unavailable
        |   → call
        |   ✓ call: "done\nsecond line"
        | ✓ guarded
        | · maybe skipped
        | → pause
        |   · pause waits 2.0s
        | ✓ pause: {}
        | → ask
        |   · agent execution aex-7
        |   There are five files.
        |   All small.
        | ✓ ask
        = ✓ completed in 17.0s · 5 tasks · 1 agent call
        "#);
    }

    #[test]
    fn a_failed_workflow_says_which_task_failed_and_why() {
        let e = workflow_event;
        let events = [
            e(1, "phase_changed", json!({"phase": "running"})),
            e(
                2,
                "task_started",
                json!({"reference": "/do/0/outer", "name": "outer"}),
            ),
            e(
                3,
                "task_started",
                json!({"reference": "/do/0/outer/do/0/inner", "name": "inner"}),
            ),
            e(
                4,
                "task_failed",
                json!({"reference": "/do/0/outer/do/0/inner", "name": "inner", "error": {"type": "validation", "title": "Bad input"}}),
            ),
            e(
                5,
                "task_failed",
                json!({"reference": "/do/0/outer", "name": "outer", "error": "plain text"}),
            ),
            e(
                6,
                "phase_changed",
                json!({"phase": "failed", "reason": "task /do/0/outer failed"}),
            ),
        ];
        let mut renderer = Renderer::for_workflow(PLAIN);
        let lines: Vec<String> = events
            .iter()
            .flat_map(|event| renderer.render(event))
            .map(|output| match output {
                Output::Line(line) => line,
                Output::Text(text) => panic!("a workflow writes no text: {text:?}"),
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"), @r#"
        - running
        > outer
          > inner
          [error] inner: validation: Bad input
        [error] outer: plain text
        "#);
        assert_eq!(
            renderer.outcome().map(|outcome| outcome.phase),
            Some(ExecutionPhase::Failed)
        );
        assert_eq!(
            renderer.summary(Duration::from_secs(2)),
            "failed after 2.0s, 0 tasks"
        );
    }

    #[test]
    fn an_agent_calls_events_are_nested_under_its_task_while_it_runs() {
        let e = workflow_event;
        let agent = |seq: u64, kind: &str, data: Value| {
            let mut event = event(seq, kind, data);
            event.execution_id = "aex-7".into();
            event
        };
        let mut renderer = Renderer::for_workflow(PLAIN);
        let mut lines = Vec::new();
        let mut add = |outputs: Vec<Output>| {
            for output in outputs {
                match output {
                    Output::Line(line) => lines.push(line),
                    Output::Text(text) => panic!("a workflow writes no text: {text:?}"),
                }
            }
        };
        add(renderer.render(&e(
            1,
            "task_started",
            json!({"reference": "/do/0/ask", "name": "ask"}),
        )));
        // Before the task announced its agent: not shown.
        add(renderer.render_agent_call(
            "/do/0/ask",
            &agent(1, "token_delta", json!({"turn": 1, "text": "x"})),
        ));
        add(renderer.render(&e(
            2,
            "agent_call_started",
            json!({"reference": "/do/0/ask", "name": "ask", "execution_id": "aex-7"}),
        )));
        for event in [
            agent(
                2,
                "tool_call_started",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "arguments": {"path": "."}}),
            ),
            agent(
                3,
                "tool_call_finished",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "result": "\na.txt\nb.txt", "is_error": false}),
            ),
            agent(
                3,
                "approval_requested",
                json!({"turn": 1, "index": 1, "call_id": "c2", "name": "execute",
                       "arguments": {"command": "wc -l a.txt"}, "reason": "it runs a command",
                       "expires_at": "2025-01-02T00:00:00.000Z"}),
            ),
            agent(
                3,
                "approval_decided",
                json!({"turn": 1, "call_id": "c2", "approved": false, "by": "timeout"}),
            ),
            agent(4, "token_delta", json!({"turn": 2, "text": "Two files."})),
            agent(
                5,
                "message_completed",
                json!({"turn": 2, "text": "Two files.", "tool_calls": []}),
            ),
            agent(6, "phase_changed", json!({"phase": "completed"})),
        ] {
            add(renderer.render_agent_call("/do/0/ask", &event));
        }
        add(renderer.render(&e(
            3,
            "task_completed",
            json!({"reference": "/do/0/ask", "name": "ask", "output": {"text": "Two files."}}),
        )));
        // After the task ended: not shown.
        add(renderer.render_agent_call(
            "/do/0/ask",
            &agent(
                7,
                "message_completed",
                json!({"turn": 3, "text": "late", "tool_calls": []}),
            ),
        ));
        insta::assert_snapshot!(lines.join("\n"), @r#"
        > ask
          - agent execution aex-7
          > ls(path=".")
            [ok] ls: a.txt
          ? execute(command="wc -l a.txt") waits for approval until 00:00:00 UTC: it runs a command
            approve: stigmer execution approve aex-7 c2
            deny:    stigmer execution deny aex-7 c2 [--message TEXT]
          [error] execute c2 was not decided in time: denied
          Two files.
        [ok] ask
        "#);
        assert!(
            renderer.outcome().is_none(),
            "the agent's end is not the workflow's"
        );
    }

    #[test]
    fn sub_agents_events_are_nested_under_their_task_calls_and_marked_with_their_names() {
        let child = |id: &str, seq: u64, kind: &str, data: Value| {
            let mut event = event(seq, kind, data);
            event.execution_id = id.into();
            event
        };
        let task = |seq: u64, call_id: &str, name: &str, description: &str| {
            event(
                seq,
                "tool_call_started",
                json!({"turn": 1, "call_id": call_id, "name": "task",
                       "arguments": {"subagent": name, "description": description}}),
            )
        };
        let started = |seq: u64, call_id: &str, name: &str, id: &str| {
            event(
                seq,
                "subagent_started",
                json!({"turn": 1, "call_id": call_id, "name": name, "execution_id": id}),
            )
        };
        let finished = |seq: u64, call_id: &str, result: &str| {
            event(
                seq,
                "tool_call_finished",
                json!({"turn": 1, "call_id": call_id, "name": "task", "result": result, "is_error": false}),
            )
        };
        let mut renderer = Renderer::new(PLAIN);
        let mut lines = Vec::new();
        let mut add = |outputs: Vec<Output>| {
            for output in outputs {
                match output {
                    Output::Line(line) => lines.push(line),
                    Output::Text(text) => lines.push(format!("stdout: {text:?}")),
                }
            }
        };
        add(renderer.render(&task(1, "c1", "researcher", "Count the files.")));
        add(renderer.render(&task(2, "c2", "writer", "Draft the intro.")));
        // Before its call announced the sub-agent: not shown.
        add(renderer.render_sub_agent(
            "c1",
            &child("aex-2", 1, "token_delta", json!({"turn": 1, "text": "x"})),
        ));
        add(renderer.render(&started(3, "c1", "researcher", "aex-2")));
        add(renderer.render(&started(4, "c2", "writer", "aex-3")));
        for (call_id, event) in [
            (
                "c1",
                child(
                    "aex-2",
                    2,
                    "tool_call_started",
                    json!({"turn": 1, "call_id": "call_1", "name": "ls", "arguments": {"path": "."}}),
                ),
            ),
            (
                "c2",
                child(
                    "aex-3",
                    1,
                    "tool_call_started",
                    json!({"turn": 1, "call_id": "call_1", "name": "write_file", "arguments": {"path": "intro.md"}}),
                ),
            ),
            (
                "c1",
                child(
                    "aex-2",
                    3,
                    "tool_call_finished",
                    json!({"turn": 1, "call_id": "call_1", "name": "ls", "result": "a.txt\nb.txt", "is_error": false}),
                ),
            ),
            (
                "c1",
                child(
                    "aex-2",
                    4,
                    "approval_requested",
                    json!({"turn": 2, "index": 0, "call_id": "call_2", "name": "execute",
                           "arguments": {"command": "wc -l a.txt"}, "reason": "it runs a command",
                           "expires_at": "2025-01-02T00:00:00.000Z"}),
                ),
            ),
            (
                "c1",
                child("aex-2", 5, "phase_changed", json!({"phase": "waiting"})),
            ),
            (
                "c1",
                child(
                    "aex-2",
                    6,
                    "approval_decided",
                    json!({"turn": 2, "call_id": "call_2", "approved": true, "by": "user"}),
                ),
            ),
            (
                "c1",
                child(
                    "aex-2",
                    7,
                    "message_completed",
                    json!({"turn": 3, "text": "Two files.", "tool_calls": []}),
                ),
            ),
            (
                "c1",
                child("aex-2", 8, "phase_changed", json!({"phase": "completed"})),
            ),
        ] {
            add(renderer.render_sub_agent(call_id, &event));
        }
        add(renderer.render(&finished(5, "c1", "Two files.")));
        // After its call finished: not shown.
        add(renderer.render_sub_agent(
            "c1",
            &child(
                "aex-2",
                9,
                "message_completed",
                json!({"turn": 4, "text": "late", "tool_calls": []}),
            ),
        ));
        add(renderer.render_sub_agent(
            "c2",
            &child(
                "aex-3",
                2,
                "message_completed",
                json!({"turn": 1, "text": "An intro.", "tool_calls": []}),
            ),
        ));
        add(renderer.render(&finished(6, "c2", "An intro.")));
        // A second run of one sub-agent is numbered.
        add(renderer.render(&task(7, "c3", "researcher", "Again.")));
        add(renderer.render(&started(8, "c3", "researcher", "aex-4")));
        add(renderer.render_sub_agent(
            "c3",
            &child(
                "aex-4",
                1,
                "tool_call_started",
                json!({"turn": 1, "call_id": "call_1", "name": "ls", "arguments": {}}),
            ),
        ));
        insta::assert_snapshot!(lines.join("\n"), @r#"
        > task(subagent="researcher", description="Count the files.")
        > task(subagent="writer", description="Draft the intro.")
          - sub-agent researcher started (aex-2)
          - sub-agent writer started (aex-3)
          [researcher] > ls(path=".")
          [writer] > write_file(path="intro.md")
          [researcher]   [ok] ls: a.txt
          [researcher] ? execute(command="wc -l a.txt") waits for approval until 00:00:00 UTC: it runs a command
          [researcher]   approve: stigmer execution approve aex-2 call_2
          [researcher]   deny:    stigmer execution deny aex-2 call_2 [--message TEXT]
          [researcher] [ok] approved execute call_2
          [researcher] Two files.
          [ok] task: Two files.
          [writer] An intro.
          [ok] task: An intro.
        > task(subagent="researcher", description="Again.")
          - sub-agent researcher#2 started (aex-4)
          [researcher#2] > ls()
        "#);
        assert!(
            renderer.outcome().is_none(),
            "a sub-agent's end is not its parent's"
        );
        assert_eq!(
            renderer.totals.tool_calls, 2,
            "only the parent's calls count"
        );
    }

    #[test]
    fn a_sub_agents_json_line_names_its_parent() {
        let mut child = event(
            2,
            "tool_call_started",
            json!({"turn": 1, "call_id": "call_1", "name": "ls", "arguments": {}}),
        );
        child.execution_id = "aex-2".into();
        let parent = EventParent {
            kind: stigmer_proto::execution::ParentKind::ToolCall,
            id: "c1".into(),
        };
        let nested = child.nested_in("aex-1", &parent);
        assert_eq!(nested.event.parent(), Some(&parent));
        insta::assert_snapshot!(nested.to_json_line(), @r#"{"execution_id":"aex-2","parent_execution_id":"aex-1","seq":2,"ts":"2025-01-01T00:00:02.000Z","kind":"tool_call_started","data":{"turn":1,"call_id":"call_1","name":"ls","arguments":{},"parent":{"kind":"tool_call","id":"c1"}}}"#);
    }

    #[test]
    fn problem_details_read_on_one_line() {
        assert_eq!(
            problem_text(
                &json!({"type": "https://x/errors/timeout/", "status": 408, "detail": "too slow"})
            ),
            "timeout (408): too slow"
        );
        assert_eq!(problem_text(&json!({"title": "Oops"})), "Oops");
        assert_eq!(problem_text(&json!({"status": 500})), "(500)");
        assert_eq!(problem_text(&json!({"other": 1})), r#"{"other":1}"#);
        assert_eq!(problem_text(&json!("text")), "text");
    }

    #[test]
    fn a_long_task_output_is_one_trimmed_line_whatever_its_depth() {
        let mut renderer = Renderer::for_workflow(PLAIN);
        renderer.render(&workflow_event(
            1,
            "task_started",
            json!({"reference": "/do/0/a", "name": "a"}),
        ));
        renderer.render(&workflow_event(
            2,
            "task_started",
            json!({"reference": "/do/0/a/do/0/b", "name": "b"}),
        ));
        let outputs = renderer.render(&workflow_event(
            3,
            "task_completed",
            json!({"reference": "/do/0/a/do/0/b", "name": "b", "output": {"text": "x".repeat(300)}}),
        ));
        let [Output::Line(line)] = &outputs[..] else {
            panic!("expected one line, got {outputs:?}")
        };
        // The indentation counts in the limit, as the mark does not.
        assert_eq!(line.chars().count(), "[ok] ".len() + LINE_LIMIT);
        assert!(line.starts_with("  [ok] b: {\"text\":\"xxx"), "{line}");
        assert!(line.ends_with("..."), "{line}");
    }

    #[test]
    fn durations_and_numbers_read_like_people_write_them() {
        assert_eq!(format_duration(Duration::from_millis(800)), "0.8s");
        assert_eq!(format_duration(Duration::from_secs(65)), "1m 05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(
            elapsed_between("2025-01-01T00:00:01.500Z", "2025-01-01T00:00:03.000Z"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            elapsed_between("yesterday", "2025-01-01T00:00:03.000Z"),
            None
        );
    }
}
