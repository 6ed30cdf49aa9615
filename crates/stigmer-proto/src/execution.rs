//! The typed execution protocol: an execution's phase, every kind of event in its log with its
//! fields, the spec and status of the `AgentExecution` and `WorkflowExecution` resources, and
//! the input of a workflow execution's Temporal workflow ([`WorkflowRunInput`]).
//!
//! The gRPC messages (`executions::v1::ExecutionEvent`, `NewEvent`) carry an event as a `kind`
//! string and its fields as a JSON object; [`ExecutionEvent::to_wire`] and
//! [`ExecutionEvent::from_wire`] are the one conversion between the two, so no other code builds
//! or reads those strings. The wire form is what the event log stores, so kinds and field names
//! never change here: stored logs keep reading.
//!
//! A kind this build does not know (a newer runner or server wrote it) is kept as
//! [`ExecutionEvent::Unknown`] with its data, so a client shows it generically and goes on.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Where an execution is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionPhase {
    /// Created; no runner has picked it up yet.
    #[default]
    Pending,
    Running,
    /// Waiting for something outside the run (e.g. an approval).
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl ExecutionPhase {
    pub const ALL: [ExecutionPhase; 6] = [
        ExecutionPhase::Pending,
        ExecutionPhase::Running,
        ExecutionPhase::Waiting,
        ExecutionPhase::Completed,
        ExecutionPhase::Failed,
        ExecutionPhase::Cancelled,
    ];

    /// After a terminal phase an execution produces no more events.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionPhase::Completed | ExecutionPhase::Failed | ExecutionPhase::Cancelled
        )
    }

    /// The name on the wire and on screen: `pending`, `running`, …
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionPhase::Pending => "pending",
            ExecutionPhase::Running => "running",
            ExecutionPhase::Waiting => "waiting",
            ExecutionPhase::Completed => "completed",
            ExecutionPhase::Failed => "failed",
            ExecutionPhase::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ExecutionPhase {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A phase name that is none of [`ExecutionPhase`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {0:?}")]
pub struct UnknownPhase(pub String);

impl FromStr for ExecutionPhase {
    type Err = UnknownPhase;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ExecutionPhase::ALL
            .into_iter()
            .find(|phase| phase.as_str() == text)
            .ok_or_else(|| UnknownPhase(text.to_owned()))
    }
}

/// The work an event belongs to, for nested work (a sub-agent inside a tool call, a step of a
/// workflow); absent for the execution's own events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventParent {
    pub kind: ParentKind,
    /// The parent's id: the tool call's `call_id`, or the workflow task's reference (`/do/1/ask`).
    pub id: String,
}

/// What kind of work an [`EventParent`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentKind {
    ToolCall,
    WorkflowTask,
    /// A kind of parent this build does not know (from a newer server).
    #[serde(other)]
    Other,
}

/// The execution changed phase; the event that puts it in a terminal phase ends its log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseChanged {
    pub phase: ExecutionPhase,
    /// Why (for a terminal phase other than `completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The identity of the runner that reported it (runners report `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The attempt of the step that reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A model turn began (again, when `attempt` > 1: what it streamed before is void).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageStarted {
    pub turn: u32,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// Text of the answer as it streams, batched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenDelta {
    pub turn: u32,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A model turn ended: its whole text and the tools it asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageCompleted {
    pub turn: u32,
    pub text: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A tool call the model asked for, as listed in [`MessageCompleted`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRef {
    pub id: String,
    pub name: String,
}

/// Tokens one model turn used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub turn: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The model that answered (as configured for the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its provider: `ollama`, `openai` or `anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A tool call began.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallStarted {
    pub turn: u32,
    pub call_id: String,
    pub name: String,
    /// The arguments as the model gave them (a JSON object, or text it could not parse).
    #[serde(default)]
    pub arguments: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A tool call ended; `result` is trimmed for display (the model gets all of it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFinished {
    pub turn: u32,
    pub call_id: String,
    pub name: String,
    pub result: String,
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A tool call waits for a person's decision before it runs (the execution is `waiting` until
/// every call of the turn that waits is decided).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub turn: u32,
    /// The call's place in its turn (0 for the turn's first call).
    pub index: u32,
    /// What `stigmer execution approve|deny` names: the model's call id when it is unique in
    /// the turn, else `call-<index>`.
    pub call_id: String,
    pub name: String,
    /// The call's arguments, secret values masked.
    pub arguments: Value,
    /// Why it needs approval (which rule asked for it).
    pub reason: String,
    /// RFC 3339: when an undecided call is denied with "approval timed out".
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A call that waited was decided: approved (it runs once) or denied (the model reads the
/// denial, with the message, as the call's result).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub turn: u32,
    pub call_id: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `user`, or `timeout` when nobody decided within the agent's `approval.timeoutSeconds`.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// Before a model turn the prompt neared the model's context window: the older messages were
/// folded into a summary (the full history is in the workspace at `history_path`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextCompacted {
    pub turn: u32,
    /// Messages replaced by the summary.
    pub messages: u32,
    /// Estimated prompt tokens before and after.
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// The model's context window in tokens.
    pub window: u64,
    /// Relative to the workspace: `.stigmer/history/<execution>.md`.
    pub history_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A `task` call started its sub-agent: the sub-agent's own execution, whose events are its
/// work (a client follows them under the call).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubAgentStarted {
    pub turn: u32,
    /// The `task` call (`call_id` of its `tool_call_started`).
    pub call_id: String,
    /// The sub-agent's name.
    pub name: String,
    /// The sub-agent's execution (`aex-…`).
    pub execution_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// An MCP server could not start, or stopped during the run: the run goes on without its tools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct McpServerFailed {
    pub server: String,
    /// `start`, `list` or `call`: what the runner was doing when the server failed.
    pub phase: String,
    /// What happened, with the last lines the server wrote to stderr.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A running tool call reported progress (MCP progress notifications).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolProgress {
    pub turn: u32,
    pub call_id: String,
    pub name: String,
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// The skills listed in the system prompt did not fit its budget: descriptions were shortened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SkillsTruncated {
    /// Skills listed (all of them: none is dropped).
    pub skills: u32,
    /// Skills whose description was shortened.
    pub shortened: u32,
    /// The budget in bytes.
    pub budget: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// The shell's writes are not confined to the workspace on this machine (no Landlock).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxUnavailable {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// The agent's todo list, whole, after `write_todos`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TodosUpdated {
    pub turn: u32,
    pub todos: Vec<Todo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// One item of a todo list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    pub content: String,
    #[serde(default)]
    pub status: TodoStatus,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    #[default]
    Pending,
    InProgress,
    Completed,
    /// A status this build does not know (from a newer runner).
    #[serde(other)]
    Other,
}

/// A workflow task began. `reference` is the task's JSON pointer in the definition
/// (`/do/1/fetch`), the key of every event of that task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub reference: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A workflow task completed; `output` is trimmed for display by the runner.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub reference: String,
    pub name: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A workflow task faulted; `error` is the problem-details object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub reference: String,
    pub name: String,
    #[serde(default)]
    pub error: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A `try` task's `retry` runs its tasks again (`attempt` counts from 1, the first run) after
/// `delay_ms`, because of `error`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRetried {
    pub reference: String,
    pub attempt: u32,
    #[serde(default)]
    pub error: Value,
    pub delay_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A workflow task was skipped (its `if` was false).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSkipped {
    pub reference: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A `wait` task waits `millis` milliseconds (the execution is `waiting` meanwhile).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskWaiting {
    pub reference: String,
    pub name: String,
    pub millis: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A `call: agent` task created the agent execution `execution_id`: a client may follow its
/// events and show them nested under the task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCallStarted {
    pub reference: String,
    pub name: String,
    pub execution_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// A `run: workflow` task created the workflow execution `execution_id` (its child): a client
/// may follow its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowCallStarted {
    pub reference: String,
    pub name: String,
    pub execution_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventParent>,
}

/// An event whose kind this build does not know, as it came.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownEvent {
    pub kind: String,
    pub data: Value,
}

/// Why an event's data does not fit its kind.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event {kind:?} has invalid data: {source}")]
    Invalid {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("event {kind:?}: data is not JSON: {source}")]
    NotJson {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("event {kind:?}: data must be a JSON object")]
    NotAnObject { kind: String },
}

/// Declares [`ExecutionEvent`] and its wire kinds once: each variant, its data type and its
/// `kind` string appear here only.
macro_rules! execution_events {
    ($($(#[$doc:meta])* $variant:ident($data:ident) = $kind:literal,)*) => {
        /// One event of an execution's log. Its serde form is the wire form, tagged:
        /// `{"kind": "token_delta", "data": {"turn": 1, "text": "…"}}`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum ExecutionEvent {
            $($(#[$doc])* $variant($data),)*
            /// A kind this build does not know (from a newer runner or server).
            Unknown(UnknownEvent),
        }

        impl ExecutionEvent {
            /// Every kind this build knows.
            pub const KINDS: &[&str] = &[$($kind),*];

            /// The kind on the wire: `phase_changed`, `token_delta`, …
            pub fn kind(&self) -> &str {
                match self {
                    $(ExecutionEvent::$variant(_) => $kind,)*
                    ExecutionEvent::Unknown(unknown) => &unknown.kind,
                }
            }

            /// The work this event belongs to, when it belongs to nested work.
            pub fn parent(&self) -> Option<&EventParent> {
                match self {
                    $(ExecutionEvent::$variant(data) => data.parent.as_ref(),)*
                    ExecutionEvent::Unknown(_) => None,
                }
            }

            /// The wire form: the kind and the fields as a JSON object.
            pub fn to_wire(&self) -> (&str, Value) {
                let data = match self {
                    $(ExecutionEvent::$variant(data) => serde_json::to_value(data),)*
                    ExecutionEvent::Unknown(unknown) => Ok(unknown.data.clone()),
                };
                // Plain structs of strings, numbers and JSON values always serialise.
                (self.kind(), data.unwrap_or(Value::Null))
            }

            /// Reads the wire form. A kind this build does not know is
            /// [`ExecutionEvent::Unknown`]; a known kind whose data does not fit is an error.
            pub fn from_wire(kind: &str, data: &Value) -> Result<ExecutionEvent, EventError> {
                if !data.is_object() {
                    return Err(EventError::NotAnObject { kind: kind.to_owned() });
                }
                let invalid = |source| EventError::Invalid { kind: kind.to_owned(), source };
                match kind {
                    $($kind => $data::deserialize(data).map(ExecutionEvent::$variant).map_err(invalid),)*
                    _ => Ok(ExecutionEvent::Unknown(UnknownEvent {
                        kind: kind.to_owned(),
                        data: data.clone(),
                    })),
                }
            }
        }

        $(impl From<$data> for ExecutionEvent {
            fn from(data: $data) -> ExecutionEvent {
                ExecutionEvent::$variant(data)
            }
        }

        impl $data {
            /// This event's kind on the wire.
            pub const KIND: &str = $kind;
        })*
    };
}

execution_events! {
    PhaseChanged(PhaseChanged) = "phase_changed",
    MessageStarted(MessageStarted) = "message_started",
    TokenDelta(TokenDelta) = "token_delta",
    MessageCompleted(MessageCompleted) = "message_completed",
    Usage(Usage) = "usage",
    ToolCallStarted(ToolCallStarted) = "tool_call_started",
    ToolCallFinished(ToolCallFinished) = "tool_call_finished",
    TodosUpdated(TodosUpdated) = "todos_updated",
    McpServerFailed(McpServerFailed) = "mcp_server_failed",
    ToolProgress(ToolProgress) = "tool_progress",
    SkillsTruncated(SkillsTruncated) = "skills_truncated",
    SandboxUnavailable(SandboxUnavailable) = "sandbox_unavailable",
    TaskStarted(TaskStarted) = "task_started",
    TaskCompleted(TaskCompleted) = "task_completed",
    TaskFailed(TaskFailed) = "task_failed",
    TaskRetried(TaskRetried) = "task_retried",
    TaskSkipped(TaskSkipped) = "task_skipped",
    TaskWaiting(TaskWaiting) = "task_waiting",
    AgentCallStarted(AgentCallStarted) = "agent_call_started",
    WorkflowCallStarted(WorkflowCallStarted) = "workflow_call_started",
    ApprovalRequested(ApprovalRequested) = "approval_requested",
    ApprovalDecided(ApprovalDecided) = "approval_decided",
    ContextCompacted(ContextCompacted) = "context_compacted",
    SubAgentStarted(SubAgentStarted) = "subagent_started",
}

impl ExecutionEvent {
    /// The wire form, owned (for the event log).
    pub fn into_wire(self) -> (String, Value) {
        match self {
            ExecutionEvent::Unknown(unknown) => (unknown.kind, unknown.data),
            known => {
                let (kind, data) = known.to_wire();
                (kind.to_owned(), data)
            }
        }
    }

    /// Reads the wire form with the data as JSON text.
    pub fn from_wire_json(kind: &str, data_json: &str) -> Result<ExecutionEvent, EventError> {
        let data: Value =
            serde_json::from_str(data_json).map_err(|source| EventError::NotJson {
                kind: kind.to_owned(),
                source,
            })?;
        ExecutionEvent::from_wire(kind, &data)
    }

    /// Reads the wire form for showing it: whatever does not fit its kind (a newer server's
    /// fields or values) is kept as [`ExecutionEvent::Unknown`], never an error, so a client
    /// shows it generically and goes on.
    pub fn from_wire_lenient(kind: &str, data: Value) -> ExecutionEvent {
        ExecutionEvent::from_wire(kind, &data).unwrap_or_else(|_| {
            ExecutionEvent::Unknown(UnknownEvent {
                kind: kind.to_owned(),
                data,
            })
        })
    }

    /// [`ExecutionEvent::from_wire_lenient`] with the data as JSON text; text that is not JSON
    /// is kept as a string rather than lost.
    pub fn from_wire_json_lenient(kind: &str, data_json: &str) -> ExecutionEvent {
        let data =
            serde_json::from_str(data_json).unwrap_or_else(|_| Value::String(data_json.to_owned()));
        ExecutionEvent::from_wire_lenient(kind, data)
    }

    /// The fields as JSON text, as `data_json` on the wire.
    pub fn data_json(&self) -> String {
        self.to_wire().1.to_string()
    }

    /// The message a runner appends, with its idempotency key.
    pub fn to_new_event(&self, key: impl Into<String>) -> crate::executions::v1::NewEvent {
        crate::executions::v1::NewEvent {
            key: key.into(),
            kind: self.kind().to_owned(),
            data_json: self.data_json(),
        }
    }

    /// The phase this event puts the execution in, if it is a phase change.
    pub fn phase(&self) -> Option<ExecutionPhase> {
        match self {
            ExecutionEvent::PhaseChanged(changed) => Some(changed.phase),
            _ => None,
        }
    }

    /// Whether this event ends the execution's log.
    pub fn is_terminal(&self) -> bool {
        self.phase().is_some_and(ExecutionPhase::is_terminal)
    }

    /// Whether an event in wire form ends the execution's log, reading only a phase change
    /// (the server asks this of every event it stores).
    pub fn is_terminal_wire(kind: &str, data: &Value) -> bool {
        kind == PhaseChanged::KIND
            && PhaseChanged::deserialize(data).is_ok_and(|changed| changed.phase.is_terminal())
    }
}

impl PhaseChanged {
    pub fn new(phase: ExecutionPhase, reason: Option<String>) -> PhaseChanged {
        PhaseChanged {
            phase,
            reason,
            ..PhaseChanged::default()
        }
    }
}

impl Serialize for ExecutionEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            kind: &'a str,
            data: Value,
        }
        let (kind, data) = self.to_wire();
        Tagged { kind, data }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ExecutionEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Tagged {
            kind: String,
            data: Value,
        }
        let Tagged { kind, data } = Tagged::deserialize(deserializer)?;
        ExecutionEvent::from_wire(&kind, &data).map_err(D::Error::custom)
    }
}

impl crate::executions::v1::ExecutionEvent {
    /// The typed event, for showing it (see [`ExecutionEvent::from_wire_lenient`]).
    pub fn event(&self) -> ExecutionEvent {
        ExecutionEvent::from_wire_json_lenient(&self.kind, &self.data_json)
    }
}

impl crate::executions::v1::NewEvent {
    /// The typed event a runner sent; an error when a known kind's data does not fit.
    pub fn event(&self) -> Result<ExecutionEvent, EventError> {
        ExecutionEvent::from_wire_json(&self.kind, &self.data_json)
    }
}

/// What an `AgentExecution` asks for (its `spec`). Every field reads as empty when missing, so
/// a partial spec (an older one, a test's) still shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AgentExecutionSpec {
    pub agent: String,
    pub session: String,
    /// The user's message, secrets masked.
    pub message: String,
    /// Overrides the stack's default model (an agent's own model still wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The run's variables (`--env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The names of the run's secrets (`--secret`); their values are never stored.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_names: BTreeSet<String>,
    /// The Environments the run's variables came from (`--environment`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// The workflow execution whose `call: agent` task created this one; its workflow runs as
    /// a child of that execution's workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ExecutionParent>,
    /// The sub-agent of `agent` this execution runs (for the parent's `task` tool call; the
    /// parent is then an agent execution and `parent.task` the call's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_agent: Option<String>,
}

/// The workflow task an execution runs for (see [`AgentExecutionSpec::parent`] and
/// [`WorkflowExecutionSpec::parent`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExecutionParent {
    /// The workflow execution (`wex-…`).
    pub execution_id: String,
    /// The task's reference in its definition (`/do/1/ask`).
    pub task: String,
}

/// The Temporal update of workflow `stigmer.AgentExecution` that decides calls waiting for
/// approval; the API server sends it for `DecideApprovals`. Its validator refuses a call that
/// is not waiting (unknown, or decided), so the client hears at once.
pub const DECIDE_APPROVALS_UPDATE: &str = "stigmer.DecideApprovals";

/// The input of [`DECIDE_APPROVALS_UPDATE`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// The calls (`call_id` of their `approval_requested` events); empty with `all`.
    #[serde(default)]
    pub call_ids: Vec<String>,
    /// Every call that waits.
    #[serde(default)]
    pub all: bool,
    pub approve: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One call an [`ApprovalDecision`] decided: the output of [`DECIDE_APPROVALS_UPDATE`] lists
/// them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecidedCall {
    pub turn: u32,
    pub call_id: String,
}

/// Where an `AgentExecution` is (its `status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentExecutionStatus {
    #[serde(default)]
    pub phase: ExecutionPhase,
    /// Why it ended, when it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339: when a runner picked it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339: when it reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The tool calls that wait for a decision (`approval_requested` events not yet followed
    /// by their `approval_decided`), in the order they were requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<PendingApproval>,
    /// The sub-agent runs its `task` calls started, in the order they started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_agents: Vec<SubAgentRun>,
    /// What its model turns used so far (`usage` and `message_completed` events folded as they
    /// are appended), so a list of executions needs no event log.
    #[serde(default, skip_serializing_if = "RunTotals::is_empty")]
    pub totals: RunTotals,
}

/// What an agent execution's model turns used so far, as its status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunTotals {
    /// Model turns that completed.
    pub turns: u32,
    /// Tool calls the model asked for.
    pub tool_calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The model of the last turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl RunTotals {
    pub fn is_empty(&self) -> bool {
        *self == RunTotals::default()
    }
}

/// A sub-agent run of an agent execution, as its status lists it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubAgentRun {
    /// The `task` call.
    pub call_id: String,
    /// The sub-agent's name.
    pub name: String,
    /// Its execution (`aex-…`).
    pub execution_id: String,
    pub phase: ExecutionPhase,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Its final answer, once it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A tool call that waits for a decision, as the execution's status lists it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub turn: u32,
    pub call_id: String,
    pub name: String,
    /// Secret values masked.
    pub arguments: Value,
    pub reason: String,
    pub expires_at: String,
}

impl AgentExecutionSpec {
    /// The spec of a resource's `spec` JSON.
    pub fn from_value(spec: &Value) -> Result<AgentExecutionSpec, serde_json::Error> {
        AgentExecutionSpec::deserialize(spec)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl AgentExecutionStatus {
    /// The status of a resource's `status` JSON; a missing or unreadable one (a newer server's
    /// phase) reads as `pending` with the fields that could be read.
    pub fn from_value(status: Option<&Value>) -> AgentExecutionStatus {
        let Some(status) = status else {
            return AgentExecutionStatus::default();
        };
        AgentExecutionStatus::deserialize(status).unwrap_or_else(|_| AgentExecutionStatus {
            phase: ExecutionPhase::Pending,
            reason: status["reason"].as_str().map(str::to_owned),
            started_at: status["startedAt"].as_str().map(str::to_owned),
            finished_at: status["finishedAt"].as_str().map(str::to_owned),
            pending_approvals: Vec::new(),
            sub_agents: Vec::new(),
            totals: RunTotals::default(),
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The two kinds of execution, as `ListExecutionsRequest.kind` names them (`agent`,
/// `workflow`) and as their ids begin (`aex-`, `wex-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionKind {
    Agent,
    Workflow,
}

impl ExecutionKind {
    pub const ALL: [ExecutionKind; 2] = [ExecutionKind::Agent, ExecutionKind::Workflow];

    /// The name on the wire and on screen: `agent`, `workflow`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionKind::Agent => "agent",
            ExecutionKind::Workflow => "workflow",
        }
    }

    /// The kind of the execution an id names, by its prefix; `None` for any other id.
    pub fn of_id(execution_id: &str) -> Option<ExecutionKind> {
        let (prefix, _) = execution_id.split_once('-')?;
        match prefix {
            "aex" => Some(ExecutionKind::Agent),
            "wex" => Some(ExecutionKind::Workflow),
            _ => None,
        }
    }
}

impl fmt::Display for ExecutionKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An execution kind name that is neither `agent` nor `workflow`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown execution kind {0:?}: use agent or workflow")]
pub struct UnknownExecutionKind(pub String);

impl FromStr for ExecutionKind {
    type Err = UnknownExecutionKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ExecutionKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownExecutionKind(text.to_owned()))
    }
}

/// The Temporal workflow type of a workflow execution, implemented by the workflow runner on
/// task queue `stigmer_config::WORKFLOW_TASK_QUEUE` (`workflow_execution_runner`).
pub const WORKFLOW_WORKFLOW: &str = "stigmer.WorkflowExecution";

/// What a `WorkflowExecution` runs (its `spec`). Like [`AgentExecutionSpec`], every field reads
/// as empty when missing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkflowExecutionSpec {
    /// The Workflow's name.
    pub workflow: String,
    /// The workflow's whole DSL document as it was when the execution started: later edits of
    /// the Workflow do not change a running execution.
    pub definition: Value,
    /// The workflow's input, secrets masked.
    pub input: Value,
    /// The run's variables (`--env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The names of the run's secrets (`--secret`); their values are never stored.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_names: BTreeSet<String>,
    /// The Environments the run's variables came from (`--environment`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// The workflow execution whose `run: workflow` task created this one; its workflow runs
    /// as a child of that execution's workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ExecutionParent>,
}

/// Where a `WorkflowExecution` is (its `status`): the fields of [`AgentExecutionStatus`], and
/// its output or its error once it ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowExecutionStatus {
    #[serde(default)]
    pub phase: ExecutionPhase,
    /// Why it ended, when it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339: when a runner picked it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339: when it reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The workflow's output, when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The workflow's error (a problem-details object), when it faulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl WorkflowExecutionSpec {
    /// The spec of a resource's `spec` JSON.
    pub fn from_value(spec: &Value) -> Result<WorkflowExecutionSpec, serde_json::Error> {
        WorkflowExecutionSpec::deserialize(spec)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl WorkflowExecutionStatus {
    /// The status of a resource's `status` JSON; a missing or unreadable one reads as `pending`
    /// with the fields that could be read (see [`AgentExecutionStatus::from_value`]).
    pub fn from_value(status: Option<&Value>) -> WorkflowExecutionStatus {
        let Some(status) = status else {
            return WorkflowExecutionStatus::default();
        };
        WorkflowExecutionStatus::deserialize(status).unwrap_or_else(|_| {
            let common = AgentExecutionStatus::from_value(Some(status));
            WorkflowExecutionStatus {
                phase: common.phase,
                reason: common.reason,
                started_at: common.started_at,
                finished_at: common.finished_at,
                output: status.get("output").cloned(),
                error: status.get("error").cloned(),
            }
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The single argument of a workflow execution's Temporal workflow ([`WORKFLOW_WORKFLOW`]), as
/// JSON. It holds no secret value: the runner's activities get them with `GetRunContext`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRunInput {
    pub execution_id: String,
    /// The normalised DSL document, as snapshotted in the execution's spec.
    pub definition: Value,
    #[serde(default)]
    pub input: Value,
    /// The names the workflow may read as `$secrets.NAME`.
    #[serde(default)]
    pub secret_names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent() -> Option<EventParent> {
        Some(EventParent {
            kind: ParentKind::ToolCall,
            id: "c7".into(),
        })
    }

    /// One event of every kind, with every field set.
    fn every_kind() -> Vec<ExecutionEvent> {
        vec![
            PhaseChanged {
                phase: ExecutionPhase::Failed,
                reason: Some("the model is unreachable".into()),
                worker: Some("agent-runner@1".into()),
                attempt: Some(2),
                parent: parent(),
            }
            .into(),
            MessageStarted {
                turn: 1,
                attempt: 2,
                parent: parent(),
            }
            .into(),
            TokenDelta {
                turn: 1,
                text: "Hel".into(),
                parent: parent(),
            }
            .into(),
            MessageCompleted {
                turn: 1,
                text: "Hello".into(),
                tool_calls: vec![ToolCallRef {
                    id: "c1".into(),
                    name: "ls".into(),
                }],
                parent: parent(),
            }
            .into(),
            Usage {
                turn: 1,
                input_tokens: 1200,
                output_tokens: 30,
                model: Some("qwen3:8b".into()),
                provider: Some("ollama".into()),
                parent: parent(),
            }
            .into(),
            ToolCallStarted {
                turn: 1,
                call_id: "c1".into(),
                name: "ls".into(),
                arguments: json!({"path": "."}),
                parent: parent(),
            }
            .into(),
            ToolCallFinished {
                turn: 1,
                call_id: "c1".into(),
                name: "ls".into(),
                result: "a.txt".into(),
                is_error: false,
                parent: parent(),
            }
            .into(),
            TodosUpdated {
                turn: 1,
                todos: vec![Todo {
                    content: "read".into(),
                    status: TodoStatus::InProgress,
                }],
                parent: parent(),
            }
            .into(),
            McpServerFailed {
                server: "files".into(),
                phase: "start".into(),
                reason: "exited with status 1: npm ERR! 404".into(),
                parent: parent(),
            }
            .into(),
            ToolProgress {
                turn: 2,
                call_id: "c2".into(),
                name: "everything__slow".into(),
                progress: 1.0,
                total: Some(3.0),
                message: Some("step 1".into()),
                parent: parent(),
            }
            .into(),
            SkillsTruncated {
                skills: 40,
                shortened: 12,
                budget: 8192,
                parent: parent(),
            }
            .into(),
            SandboxUnavailable {
                reason: "the kernel has no Landlock".into(),
                parent: parent(),
            }
            .into(),
            TaskStarted {
                reference: "/do/1/fetch".into(),
                name: "fetch".into(),
                parent: task_parent(),
            }
            .into(),
            TaskCompleted {
                reference: "/do/1/fetch".into(),
                name: "fetch".into(),
                output: json!({"status": 200, "body": "…"}),
                parent: task_parent(),
            }
            .into(),
            TaskFailed {
                reference: "/do/2/check".into(),
                name: "check".into(),
                error: json!({"type": "https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
                    "status": 500, "instance": "/do/2/check"}),
                parent: task_parent(),
            }
            .into(),
            TaskRetried {
                reference: "/do/3/attempt".into(),
                attempt: 2,
                error: json!({"status": 503}),
                delay_ms: 1500,
                parent: task_parent(),
            }
            .into(),
            TaskSkipped {
                reference: "/do/4/maybe".into(),
                name: "maybe".into(),
                parent: task_parent(),
            }
            .into(),
            TaskWaiting {
                reference: "/do/5/pause".into(),
                name: "pause".into(),
                millis: 60_000,
                parent: task_parent(),
            }
            .into(),
            AgentCallStarted {
                reference: "/do/6/ask".into(),
                name: "ask".into(),
                execution_id: "aex-1".into(),
                parent: task_parent(),
            }
            .into(),
            WorkflowCallStarted {
                reference: "/do/7/child".into(),
                name: "child".into(),
                execution_id: "wex-2".into(),
                parent: task_parent(),
            }
            .into(),
            ApprovalRequested {
                turn: 2,
                index: 1,
                call_id: "call_9".into(),
                name: "execute".into(),
                arguments: json!({"command": "rm -rf build"}),
                reason: "the agent's approval.tools lists execute".into(),
                expires_at: "2026-12-02T10:00:00.000Z".into(),
                parent: None,
            }
            .into(),
            ApprovalDecided {
                turn: 2,
                call_id: "call_9".into(),
                approved: false,
                message: Some("not the build folder".into()),
                by: "user".into(),
                parent: None,
            }
            .into(),
            ContextCompacted {
                turn: 7,
                messages: 24,
                tokens_before: 3600,
                tokens_after: 900,
                window: 4096,
                history_path: ".stigmer/history/aex-1.md".into(),
                parent: None,
            }
            .into(),
            SubAgentStarted {
                turn: 1,
                call_id: "call_1".into(),
                name: "researcher".into(),
                execution_id: "aex-2".into(),
                parent: None,
            }
            .into(),
        ]
    }

    fn task_parent() -> Option<EventParent> {
        Some(EventParent {
            kind: ParentKind::WorkflowTask,
            id: "/do/0/outer".into(),
        })
    }

    #[test]
    fn every_event_kind_round_trips_through_serde_and_the_wire() {
        let events = every_kind();
        let kinds: Vec<&str> = events.iter().map(ExecutionEvent::kind).collect();
        assert_eq!(kinds, ExecutionEvent::KINDS, "one sample per kind");
        for event in events {
            let text = serde_json::to_string(&event).unwrap();
            let back: ExecutionEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event, "{text}");
            let (kind, data) = event.to_wire();
            assert_eq!(kind, event.kind());
            assert_eq!(ExecutionEvent::from_wire(kind, &data).unwrap(), event);
            let message = event.to_new_event("k1");
            assert_eq!(message.event().unwrap(), event);
            assert!(!matches!(event, ExecutionEvent::Unknown(_)));
        }
    }

    #[test]
    fn the_wire_form_keeps_the_stored_kinds_and_field_names() {
        // What a log written before the typed protocol holds must still read.
        let stored = [
            (
                "phase_changed",
                json!({"phase": "running", "worker": "w", "attempt": 1}),
            ),
            ("message_started", json!({"turn": 1, "attempt": 1})),
            ("token_delta", json!({"turn": 1, "text": "Hi"})),
            (
                "message_completed",
                json!({"turn": 1, "text": "Hi", "tool_calls": [{"id": "c1", "name": "ls"}]}),
            ),
            (
                "usage",
                json!({"turn": 1, "input_tokens": 3, "output_tokens": 4}),
            ),
            (
                "tool_call_started",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "arguments": {"path": "."}}),
            ),
            (
                "tool_call_finished",
                json!({"turn": 1, "call_id": "c1", "name": "ls", "result": "a", "is_error": false}),
            ),
            (
                "todos_updated",
                json!({"turn": 1, "todos": [{"content": "x", "status": "completed"}]}),
            ),
        ];
        for (kind, data) in stored {
            let event = ExecutionEvent::from_wire(kind, &data).unwrap();
            assert!(!matches!(event, ExecutionEvent::Unknown(_)), "{kind}");
            assert_eq!(event.to_wire(), (kind, data), "{kind}");
        }
    }

    #[test]
    fn the_workflow_task_events_have_their_wire_kinds_and_field_names() {
        // What the workflow runner writes and clients read: these names never change.
        let wire = [
            ("task_started", json!({"reference": "/do/0/a", "name": "a"})),
            (
                "task_completed",
                json!({"reference": "/do/0/a", "name": "a", "output": {"x": 1}}),
            ),
            (
                "task_failed",
                json!({"reference": "/do/0/a", "name": "a", "error": {"status": 500}}),
            ),
            (
                "task_retried",
                json!({"reference": "/do/0/a", "attempt": 2, "error": {"status": 503},
                    "delay_ms": 250}),
            ),
            ("task_skipped", json!({"reference": "/do/0/a", "name": "a"})),
            (
                "task_waiting",
                json!({"reference": "/do/0/a", "name": "a", "millis": 1000}),
            ),
            (
                "agent_call_started",
                json!({"reference": "/do/0/a", "name": "a", "execution_id": "aex-1",
                    "parent": {"kind": "workflow_task", "id": "/do/0/a"}}),
            ),
            (
                "workflow_call_started",
                json!({"reference": "/do/1/b", "name": "b", "execution_id": "wex-2"}),
            ),
        ];
        for (kind, data) in wire {
            let event = ExecutionEvent::from_wire(kind, &data).unwrap();
            assert!(!matches!(event, ExecutionEvent::Unknown(_)), "{kind}");
            assert_eq!(event.to_wire(), (kind, data), "{kind}");
        }
        // No parent: the field is left out, not written as null.
        let delta = ExecutionEvent::from(TokenDelta {
            turn: 2,
            text: "x".into(),
            parent: None,
        });
        let data_json = delta.data_json();
        assert!(!data_json.contains("parent"), "{data_json}");
        assert_eq!(
            serde_json::from_str::<Value>(&data_json).unwrap(),
            json!({"turn": 2, "text": "x"})
        );
    }

    #[test]
    fn workflow_execution_spec_status_and_run_input_keep_their_fields() {
        let spec = json!({"workflow": "fetch", "definition": {"document": {"dsl": "1.0.3"},
            "do": [{"a": {"set": {"x": 1}}}]}, "input": {"city": "Paris"},
            "env": {"A": "1"}, "secretNames": ["TOKEN"], "environments": ["prod"]});
        let typed = WorkflowExecutionSpec::from_value(&spec).unwrap();
        assert_eq!(typed.workflow, "fetch");
        assert_eq!(typed.input, json!({"city": "Paris"}));
        assert_eq!(typed.to_value(), spec);

        let status = json!({"phase": "failed", "reason": "boom", "startedAt": "t1",
            "finishedAt": "t2", "error": {"status": 500, "detail": "boom"}});
        let typed = WorkflowExecutionStatus::from_value(Some(&status));
        assert_eq!(typed.phase, ExecutionPhase::Failed);
        assert_eq!(typed.output, None);
        assert_eq!(typed.to_value(), status);
        // A newer server's phase keeps what can be read, the output included.
        let newer = WorkflowExecutionStatus::from_value(Some(
            &json!({"phase": "paused", "reason": "r", "output": [1]}),
        ));
        assert_eq!(newer.phase, ExecutionPhase::Pending);
        assert_eq!(newer.reason.as_deref(), Some("r"));
        assert_eq!(newer.output, Some(json!([1])));
        // The common fields read the same through the agent status (the server reads a phase
        // of either kind that way).
        assert_eq!(
            AgentExecutionStatus::from_value(Some(&status)).phase,
            ExecutionPhase::Failed
        );

        let input = WorkflowRunInput {
            execution_id: "wex-1".into(),
            definition: json!({"do": []}),
            input: json!({}),
            secret_names: vec!["TOKEN".into()],
        };
        let wire = serde_json::to_value(&input).unwrap();
        assert_eq!(
            wire,
            json!({"executionId": "wex-1", "definition": {"do": []}, "input": {},
                "secretNames": ["TOKEN"]})
        );
        assert_eq!(
            serde_json::from_value::<WorkflowRunInput>(wire).unwrap(),
            input
        );
        assert_eq!(WORKFLOW_WORKFLOW, "stigmer.WorkflowExecution");
    }

    #[test]
    fn execution_kinds_read_by_name_and_by_id() {
        for kind in ExecutionKind::ALL {
            assert_eq!(kind.as_str().parse::<ExecutionKind>(), Ok(kind));
        }
        assert!("robot".parse::<ExecutionKind>().is_err());
        assert_eq!(ExecutionKind::of_id("aex-0123"), Some(ExecutionKind::Agent));
        assert_eq!(
            ExecutionKind::of_id("wex-0123"),
            Some(ExecutionKind::Workflow)
        );
        assert_eq!(ExecutionKind::of_id("ses-0123"), None);
        assert_eq!(ExecutionKind::of_id("aex"), None);
    }

    #[test]
    fn an_agent_execution_records_the_workflow_task_it_runs_for() {
        let spec = json!({"agent": "hello", "session": "ses-1", "message": "hi",
            "parent": {"executionId": "wex-1", "task": "/do/0/ask"}});
        let typed = AgentExecutionSpec::from_value(&spec).unwrap();
        assert_eq!(
            typed.parent,
            Some(ExecutionParent {
                execution_id: "wex-1".into(),
                task: "/do/0/ask".into()
            })
        );
        assert_eq!(typed.to_value(), spec);
    }

    #[test]
    fn an_unknown_kind_is_kept_with_its_data() {
        let data = json!({"server": "github", "tools": 12});
        let event = ExecutionEvent::from_wire("mcp_server_connected", &data).unwrap();
        assert_eq!(
            event,
            ExecutionEvent::Unknown(UnknownEvent {
                kind: "mcp_server_connected".into(),
                data: data.clone()
            })
        );
        assert_eq!(event.to_wire(), ("mcp_server_connected", data));
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            serde_json::from_str::<ExecutionEvent>(&text).unwrap(),
            event
        );
    }

    #[test]
    fn a_known_kind_with_bad_data_is_an_error_or_shown_generically() {
        let bad = r#"{"turn": "one", "text": 3}"#;
        let error = ExecutionEvent::from_wire_json("token_delta", bad).unwrap_err();
        assert!(error.to_string().contains("token_delta"), "{error}");
        assert!(matches!(
            ExecutionEvent::from_wire_json("usage", "[1]"),
            Err(EventError::NotAnObject { .. })
        ));
        // A client does not fail on it: it shows what came.
        let shown = ExecutionEvent::from_wire_json_lenient("token_delta", bad);
        assert_eq!(shown.kind(), "token_delta");
        assert!(matches!(shown, ExecutionEvent::Unknown(_)));
        // A newer server's phase, or a newer parent kind, do not break an old client either.
        let newer =
            ExecutionEvent::from_wire_json_lenient("phase_changed", r#"{"phase": "paused"}"#);
        assert!(matches!(newer, ExecutionEvent::Unknown(_)));
        let nested = ExecutionEvent::from_wire_json_lenient(
            "token_delta",
            r#"{"turn": 1, "text": "x", "parent": {"kind": "sub_agent", "id": "a1"}}"#,
        );
        assert_eq!(
            nested.parent().map(|parent| parent.kind),
            Some(ParentKind::Other)
        );
    }

    #[test]
    fn phases_read_and_print_by_their_wire_names() {
        for phase in ExecutionPhase::ALL {
            assert_eq!(phase.as_str().parse::<ExecutionPhase>(), Ok(phase));
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                Value::from(phase.as_str())
            );
        }
        let terminal: Vec<ExecutionPhase> = ExecutionPhase::ALL
            .into_iter()
            .filter(|phase| phase.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                ExecutionPhase::Completed,
                ExecutionPhase::Failed,
                ExecutionPhase::Cancelled
            ]
        );
        assert!("done".parse::<ExecutionPhase>().is_err());
        assert!(ExecutionEvent::is_terminal_wire(
            "phase_changed",
            &serde_json::json!({"phase": "failed", "reason": "r"})
        ));
        assert!(!ExecutionEvent::is_terminal_wire(
            "phase_changed",
            &serde_json::json!({"phase": "running"})
        ));
        assert!(!ExecutionEvent::is_terminal_wire(
            "token_delta",
            &serde_json::json!({"phase": "failed"})
        ));
        assert!(
            ExecutionEvent::from(PhaseChanged::new(ExecutionPhase::Cancelled, None)).is_terminal()
        );
        assert!(
            !ExecutionEvent::from(PhaseChanged::new(ExecutionPhase::Running, None)).is_terminal()
        );
    }

    #[test]
    fn spec_and_status_keep_their_resource_fields() {
        let spec = json!({"agent": "hello", "session": "ses-1", "message": "hi",
            "model": "m", "env": {"A": "1"}, "secretNames": ["TOKEN"]});
        let typed = AgentExecutionSpec::from_value(&spec).unwrap();
        assert_eq!(typed.secret_names.len(), 1);
        assert_eq!(typed.to_value(), spec);
        let bare = json!({"agent": "hello", "session": "ses-1", "message": "hi"});
        assert_eq!(
            AgentExecutionSpec::from_value(&bare).unwrap().to_value(),
            bare
        );

        let status = json!({"phase": "completed", "startedAt": "t1", "finishedAt": "t2"});
        let typed = AgentExecutionStatus::from_value(Some(&status));
        assert_eq!(typed.phase, ExecutionPhase::Completed);
        assert_eq!(typed.to_value(), status);
        assert_eq!(
            AgentExecutionStatus::from_value(None).phase,
            ExecutionPhase::Pending
        );
        let newer =
            AgentExecutionStatus::from_value(Some(&json!({"phase": "paused", "reason": "r"})));
        assert_eq!(newer.phase, ExecutionPhase::Pending);
        assert_eq!(newer.reason.as_deref(), Some("r"));
    }
}
