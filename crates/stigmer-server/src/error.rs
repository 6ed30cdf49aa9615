//! The API server's errors: one enum, converted to a gRPC status in one place
//! (`From<ServerError> for Status`). Handlers return [`ServerError`] and never build a
//! `Status` themselves.
//!
//! The codes are part of the API: clients (the CLI's `failure.rs`, the runners) decide on them,
//! so a variant's code never changes. The message is the error's `Display`.
//!
//! | Code                  | Variants                                                          |
//! |-----------------------|-------------------------------------------------------------------|
//! | `UNAUTHENTICATED`     | `MissingToken`, `WrongToken`                                      |
//! | `INVALID_ARGUMENT`    | `UnknownKind`, `NotAResource`, `NotDeclarable`, `EmptyExecutionId`, `InvalidEvent`, `BackToPending`, `EmptyMessage`, `SecretAsVariable`, `MissingVariable`, `SessionOfOtherAgent`, `MessageNotObject`, `AgentOrWorkflow`, `FieldNotForKind`, `ParentTaskAlone`, `SubAgentAlone`, `UnknownSubAgent`, `SubAgentOfOtherAgent`, `NotJson`, `OutputOrError`, `InputRejected`, `InvalidWorkflow`, `WrongExecutionKind`, `UnknownExecutionKind`, `CallsOrAll`, `EmptyCallId`, `MessageWithApproval` |
//! | `NOT_FOUND`           | `ResourceNotFound`, `ExecutionNotFound`, `AgentNotFound`, `SessionNotFound`, `WorkflowNotFound`, `WorkflowVariantNotFound` |
//! | `FAILED_PRECONDITION` | `ResourceInUse`, `ExecutionEnded`, `AgentDeleted`, `ReferenceDeleted`, `DecisionRefused` |
//! | `RESOURCE_EXHAUSTED`  | `TooManySubscriptions`, `TooManySubscriptionsOnConnection`        |
//! | `CANCELLED`           | `ApplyAbandoned`                                                  |
//! | `UNAVAILABLE`         | `TemporalNotConfigured`, `TemporalUnavailable`, `WorkflowStart`, `WorkflowCancel`, `DecisionNotTaken` |
//! | `INTERNAL`            | `Store`, `Lookup`, `Encode`, `UnreadableSpec`, `Task`             |
//!
//! An `INTERNAL` error is logged where it is converted, since it is the server's fault.

use stigmer_proto::execution::{EventError, ExecutionPhase};
use stigmer_resources::{Kind, LookupError};
use stigmer_store::StoreError;
use tonic::{Code, Status};

/// Everything an RPC of the API server can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "missing API token: send `authorization: Bearer <token>` (the token is in $STIGMER_HOME/run/api-token)"
    )]
    MissingToken,
    #[error("the API token does not match this Stigmer home")]
    WrongToken,

    #[error("unknown kind {text:?}")]
    UnknownKind { text: String },
    #[error("document {index} is not a resource: {error}")]
    NotAResource {
        index: usize,
        #[source]
        error: serde_json::Error,
    },
    #[error("{kind} resources are created by the system and cannot be applied")]
    NotDeclarable { kind: Kind },
    #[error("execution_id is empty")]
    EmptyExecutionId,
    #[error("event {key:?}: {error}")]
    InvalidEvent {
        key: String,
        #[source]
        error: EventError,
    },
    #[error("event {key:?}: a runner cannot put an execution back to pending")]
    BackToPending { key: String },
    #[error("the message is empty")]
    EmptyMessage,
    #[error(
        "{name} is a secret of agent '{agent}': pass it with --secret {name}=…, so it is never stored"
    )]
    SecretAsVariable { name: String, agent: String },
    #[error("agent '{agent}' needs the variable {name}: pass {} {name}=…", if *.secret { "--secret" } else { "--env" })]
    MissingVariable {
        name: String,
        agent: String,
        secret: bool,
    },
    /// `owner` is the session's `spec.agent` as stored, shown as JSON.
    #[error("session \"{session}\" belongs to agent {owner}, not {agent}")]
    SessionOfOtherAgent {
        session: String,
        owner: serde_json::Value,
        agent: String,
    },
    #[error("a message is not a JSON object")]
    MessageNotObject,
    #[error("an execution runs an agent or a workflow: set exactly one of `agent` and `workflow`")]
    AgentOrWorkflow,
    #[error("`{field}` does not apply to {kind} executions")]
    FieldNotForKind {
        field: &'static str,
        kind: &'static str,
    },
    #[error("`parent_task` needs `parent_execution_id`")]
    ParentTaskAlone,
    #[error(
        "`sub_agent` needs `parent_execution_id`: the agent execution whose `task` call runs it"
    )]
    SubAgentAlone,
    #[error(
        "agent '{agent}' has no sub-agent '{sub_agent}'{}",
        if known.is_empty() { " (it declares none)".to_owned() } else { format!("; it declares {}", known.join(", ")) }
    )]
    UnknownSubAgent {
        agent: String,
        sub_agent: String,
        known: Vec<String>,
    },
    #[error(
        "a sub-agent of agent '{agent}' cannot run for execution {parent}, an execution of agent '{parent_agent}'"
    )]
    SubAgentOfOtherAgent {
        agent: String,
        parent: String,
        parent_agent: String,
    },
    #[error("{what} is not JSON: {error}")]
    NotJson {
        what: &'static str,
        #[source]
        error: serde_json::Error,
    },
    #[error("a workflow result sets exactly one of `output_json` and `error_json`")]
    OutputOrError,
    #[error(
        "the input does not fit workflow \"{workflow}\": {reason} (see its `input.schema`: \
         `stigmer get workflow {workflow} -o yaml`)"
    )]
    InputRejected { workflow: String, reason: String },
    #[error(
        "workflow \"{workflow}\" cannot run: {reason} (apply it again with `stigmer apply -f`)"
    )]
    InvalidWorkflow { workflow: String, reason: String },
    #[error("execution \"{execution_id}\" is not {expected}")]
    WrongExecutionKind {
        execution_id: String,
        expected: &'static str,
    },
    #[error("unknown execution kind {text:?}: use agent or workflow")]
    UnknownExecutionKind { text: String },
    #[error("name the calls to decide or ask for all of them (one of the two)")]
    CallsOrAll,
    #[error("a call id is empty")]
    EmptyCallId,
    #[error("a message goes only with a denial")]
    MessageWithApproval,

    #[error("{} \"{name}\" not found{}", .kind.as_str().to_ascii_lowercase(), did_you_mean(.suggestion))]
    ResourceNotFound {
        kind: Kind,
        name: String,
        suggestion: Option<String>,
    },
    #[error("execution \"{execution_id}\" not found")]
    ExecutionNotFound { execution_id: String },
    #[error("agent '{agent}' not found{}", did_you_mean(.suggestion))]
    AgentNotFound {
        agent: String,
        suggestion: Option<String>,
    },
    #[error("session \"{session}\" not found")]
    SessionNotFound { session: String },
    #[error("workflow '{workflow}' not found{}; apply it with `stigmer apply -f FILE`", did_you_mean(.suggestion))]
    WorkflowNotFound {
        workflow: String,
        suggestion: Option<String>,
    },
    /// A `run: workflow` task names a namespace or version the stored Workflow does not have.
    #[error("workflow '{workflow}' {wanted} not found: the stored one is {found}")]
    WorkflowVariantNotFound {
        workflow: String,
        /// `in namespace "x"` or `version "1.2.0"`.
        wanted: String,
        found: String,
    },

    #[error("{kind} \"{name}\" is used by {}; change those first or delete with --force", .users.join(", "))]
    ResourceInUse {
        kind: Kind,
        name: String,
        users: Vec<String>,
    },
    #[error("execution \"{execution_id}\" already ended ({phase})")]
    ExecutionEnded {
        execution_id: String,
        phase: ExecutionPhase,
    },
    #[error("agent '{agent}' was deleted while its execution ran")]
    AgentDeleted { agent: String },
    #[error(
        "the {kind} '{name}' of agent '{agent}' was deleted while its execution ran; apply it again"
    )]
    ReferenceDeleted {
        kind: &'static str,
        name: String,
        agent: String,
    },
    /// The execution's workflow refused a decision (a call that does not wait): its message.
    #[error("{reason}")]
    DecisionRefused { reason: String },

    #[error(
        "the server already holds {limit} subscriptions (its limit); close some and subscribe again"
    )]
    TooManySubscriptions { limit: usize },
    #[error(
        "this connection already holds {limit} subscriptions (the limit per connection); close some and subscribe again"
    )]
    TooManySubscriptionsOnConnection { limit: usize },

    #[error("the apply was abandoned: its client has gone")]
    ApplyAbandoned,

    #[error("no Temporal is configured for this server")]
    TemporalNotConfigured,
    #[error(
        "the Temporal workflow engine at {address} is unavailable ({reason}); see `stigmer server status`"
    )]
    TemporalUnavailable { address: String, reason: String },
    #[error("cannot start the execution's workflow: {reason}")]
    WorkflowStart { reason: String },
    #[error("cannot cancel the workflow: {reason}")]
    WorkflowCancel { reason: String },
    #[error(
        "the agent runner did not take the decision for execution \"{execution_id}\" ({reason}); \
         check `stigmer server status` and decide again"
    )]
    DecisionNotTaken {
        execution_id: String,
        reason: String,
    },

    #[error("{0}")]
    Store(#[from] StoreError),
    /// A store failure met while planning an apply (or finding a resource's users); the
    /// store's error is its source.
    #[error("{0}")]
    Lookup(#[source] LookupError),
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    #[error("execution \"{execution_id}\" has an unreadable spec: {error}")]
    UnreadableSpec {
        execution_id: String,
        #[source]
        error: serde_json::Error,
    },
    /// A task on the blocking pool panicked (or the runtime is shutting down).
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|suggestion| format!(" (did you mean \"{suggestion}\"?)"))
        .unwrap_or_default()
}

impl ServerError {
    /// The gRPC code of this error: the table in the module doc.
    pub fn code(&self) -> Code {
        use ServerError::*;
        match self {
            MissingToken | WrongToken => Code::Unauthenticated,
            UnknownKind { .. }
            | NotAResource { .. }
            | NotDeclarable { .. }
            | EmptyExecutionId
            | InvalidEvent { .. }
            | BackToPending { .. }
            | EmptyMessage
            | SecretAsVariable { .. }
            | MissingVariable { .. }
            | SessionOfOtherAgent { .. }
            | MessageNotObject
            | AgentOrWorkflow
            | FieldNotForKind { .. }
            | ParentTaskAlone
            | SubAgentAlone
            | UnknownSubAgent { .. }
            | SubAgentOfOtherAgent { .. }
            | NotJson { .. }
            | OutputOrError
            | InputRejected { .. }
            | InvalidWorkflow { .. }
            | WrongExecutionKind { .. }
            | UnknownExecutionKind { .. }
            | CallsOrAll
            | EmptyCallId
            | MessageWithApproval => Code::InvalidArgument,
            ResourceNotFound { .. }
            | ExecutionNotFound { .. }
            | AgentNotFound { .. }
            | SessionNotFound { .. }
            | WorkflowNotFound { .. }
            | WorkflowVariantNotFound { .. } => Code::NotFound,
            ResourceInUse { .. }
            | ExecutionEnded { .. }
            | AgentDeleted { .. }
            | ReferenceDeleted { .. }
            | DecisionRefused { .. } => Code::FailedPrecondition,
            TooManySubscriptions { .. } | TooManySubscriptionsOnConnection { .. } => {
                Code::ResourceExhausted
            }
            ApplyAbandoned => Code::Cancelled,
            TemporalNotConfigured
            | TemporalUnavailable { .. }
            | WorkflowStart { .. }
            | WorkflowCancel { .. }
            | DecisionNotTaken { .. } => Code::Unavailable,
            Store(_) | Lookup(_) | Encode(_) | UnreadableSpec { .. } | Task(_) => Code::Internal,
        }
    }
}

impl From<ServerError> for Status {
    fn from(error: ServerError) -> Status {
        let code = error.code();
        if code == Code::Internal {
            tracing::error!(error = %error, "Internal error.");
        }
        Status::new(code, error.to_string())
    }
}

/// JSON of a resource for a response.
pub(crate) fn resource_json(resource: &stigmer_resources::Resource) -> Result<String, ServerError> {
    serde_json::to_string(resource).map_err(ServerError::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_error() -> serde_json::Error {
        serde_json::from_str::<serde_json::Value>("{").unwrap_err()
    }

    #[tokio::test]
    async fn every_variant_has_its_code_and_message() {
        let event_error =
            stigmer_proto::execution::ExecutionEvent::from_wire_json("usage", "{\"bad\":")
                .unwrap_err();
        let event_message = event_error.to_string();
        let json_message = json_error().to_string();
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let join_error = task.await.unwrap_err();
        let join_message = join_error.to_string();
        let store_error = StoreError::Abandoned;
        let store_message = store_error.to_string();
        let table: Vec<(ServerError, Code, String)> = vec![
            (
                ServerError::MissingToken,
                Code::Unauthenticated,
                "missing API token: send `authorization: Bearer <token>` (the token is in $STIGMER_HOME/run/api-token)".into(),
            ),
            (
                ServerError::WrongToken,
                Code::Unauthenticated,
                "the API token does not match this Stigmer home".into(),
            ),
            (
                ServerError::UnknownKind { text: "Widget".into() },
                Code::InvalidArgument,
                "unknown kind \"Widget\"".into(),
            ),
            (
                ServerError::NotAResource { index: 2, error: json_error() },
                Code::InvalidArgument,
                format!("document 2 is not a resource: {json_message}"),
            ),
            (
                ServerError::NotDeclarable { kind: Kind::Session },
                Code::InvalidArgument,
                format!("{} resources are created by the system and cannot be applied", Kind::Session),
            ),
            (
                ServerError::EmptyExecutionId,
                Code::InvalidArgument,
                "execution_id is empty".into(),
            ),
            (
                ServerError::InvalidEvent { key: "k1".into(), error: event_error },
                Code::InvalidArgument,
                format!("event \"k1\": {event_message}"),
            ),
            (
                ServerError::BackToPending { key: "k2".into() },
                Code::InvalidArgument,
                "event \"k2\": a runner cannot put an execution back to pending".into(),
            ),
            (
                ServerError::EmptyMessage,
                Code::InvalidArgument,
                "the message is empty".into(),
            ),
            (
                ServerError::SecretAsVariable { name: "TOKEN".into(), agent: "a".into() },
                Code::InvalidArgument,
                "TOKEN is a secret of agent 'a': pass it with --secret TOKEN=…, so it is never stored".into(),
            ),
            (
                ServerError::MissingVariable { name: "TOKEN".into(), agent: "a".into(), secret: true },
                Code::InvalidArgument,
                "agent 'a' needs the variable TOKEN: pass --secret TOKEN=…".into(),
            ),
            (
                ServerError::MissingVariable { name: "REGION".into(), agent: "a".into(), secret: false },
                Code::InvalidArgument,
                "agent 'a' needs the variable REGION: pass --env REGION=…".into(),
            ),
            (
                ServerError::SessionOfOtherAgent {
                    session: "ses-1".into(),
                    owner: serde_json::json!("b"),
                    agent: "a".into(),
                },
                Code::InvalidArgument,
                "session \"ses-1\" belongs to agent \"b\", not a".into(),
            ),
            (
                ServerError::MessageNotObject,
                Code::InvalidArgument,
                "a message is not a JSON object".into(),
            ),
            (
                ServerError::AgentOrWorkflow,
                Code::InvalidArgument,
                "an execution runs an agent or a workflow: set exactly one of `agent` and `workflow`".into(),
            ),
            (
                ServerError::FieldNotForKind { field: "message", kind: "workflow" },
                Code::InvalidArgument,
                "`message` does not apply to workflow executions".into(),
            ),
            (
                ServerError::WorkflowVariantNotFound {
                    workflow: "child".into(),
                    wanted: "version \"2.0.0\"".into(),
                    found: "namespace \"default\", version \"0.0.1\"".into(),
                },
                Code::NotFound,
                "workflow 'child' version \"2.0.0\" not found: the stored one is namespace \"default\", version \"0.0.1\"".into(),
            ),
            (
                ServerError::ParentTaskAlone,
                Code::InvalidArgument,
                "`parent_task` needs `parent_execution_id`".into(),
            ),
            (
                ServerError::SubAgentAlone,
                Code::InvalidArgument,
                "`sub_agent` needs `parent_execution_id`: the agent execution whose `task` call runs it".into(),
            ),
            (
                ServerError::UnknownSubAgent {
                    agent: "lead".into(),
                    sub_agent: "painter".into(),
                    known: vec!["researcher".into(), "writer".into()],
                },
                Code::InvalidArgument,
                "agent 'lead' has no sub-agent 'painter'; it declares researcher, writer".into(),
            ),
            (
                ServerError::SubAgentOfOtherAgent {
                    agent: "lead".into(),
                    parent: "aex-1".into(),
                    parent_agent: "other".into(),
                },
                Code::InvalidArgument,
                "a sub-agent of agent 'lead' cannot run for execution aex-1, an execution of agent 'other'".into(),
            ),
            (
                ServerError::NotJson { what: "the input", error: json_error() },
                Code::InvalidArgument,
                format!("the input is not JSON: {json_message}"),
            ),
            (
                ServerError::OutputOrError,
                Code::InvalidArgument,
                "a workflow result sets exactly one of `output_json` and `error_json`".into(),
            ),
            (
                ServerError::InputRejected {
                    workflow: "greet".into(),
                    reason: "/name: 1 is not of type \"string\"".into(),
                },
                Code::InvalidArgument,
                "the input does not fit workflow \"greet\": /name: 1 is not of type \"string\" \
                 (see its `input.schema`: `stigmer get workflow greet -o yaml`)"
                    .into(),
            ),
            (
                ServerError::InvalidWorkflow {
                    workflow: "greet".into(),
                    reason: "/do: expected a list of tasks".into(),
                },
                Code::InvalidArgument,
                "workflow \"greet\" cannot run: /do: expected a list of tasks (apply it again \
                 with `stigmer apply -f`)"
                    .into(),
            ),
            (
                ServerError::WrongExecutionKind {
                    execution_id: "aex-1".into(),
                    expected: "a workflow execution",
                },
                Code::InvalidArgument,
                "execution \"aex-1\" is not a workflow execution".into(),
            ),
            (
                ServerError::UnknownExecutionKind { text: "robot".into() },
                Code::InvalidArgument,
                "unknown execution kind \"robot\": use agent or workflow".into(),
            ),
            (
                ServerError::CallsOrAll,
                Code::InvalidArgument,
                "name the calls to decide or ask for all of them (one of the two)".into(),
            ),
            (
                ServerError::EmptyCallId,
                Code::InvalidArgument,
                "a call id is empty".into(),
            ),
            (
                ServerError::MessageWithApproval,
                Code::InvalidArgument,
                "a message goes only with a denial".into(),
            ),
            (
                ServerError::WorkflowNotFound {
                    workflow: "fetc".into(),
                    suggestion: Some("fetch".into()),
                },
                Code::NotFound,
                "workflow 'fetc' not found (did you mean \"fetch\"?); apply it with `stigmer apply -f FILE`".into(),
            ),
            (
                ServerError::ResourceNotFound {
                    kind: Kind::Agent,
                    name: "helpr".into(),
                    suggestion: Some("helper".into()),
                },
                Code::NotFound,
                "agent \"helpr\" not found (did you mean \"helper\"?)".into(),
            ),
            (
                ServerError::ResourceNotFound { kind: Kind::Agent, name: "x".into(), suggestion: None },
                Code::NotFound,
                "agent \"x\" not found".into(),
            ),
            (
                ServerError::ExecutionNotFound { execution_id: "aex-1".into() },
                Code::NotFound,
                "execution \"aex-1\" not found".into(),
            ),
            (
                ServerError::AgentNotFound { agent: "helpr".into(), suggestion: Some("helper".into()) },
                Code::NotFound,
                "agent 'helpr' not found (did you mean \"helper\"?)".into(),
            ),
            (
                ServerError::AgentNotFound { agent: "x".into(), suggestion: None },
                Code::NotFound,
                "agent 'x' not found".into(),
            ),
            (
                ServerError::SessionNotFound { session: "ses-1".into() },
                Code::NotFound,
                "session \"ses-1\" not found".into(),
            ),
            (
                ServerError::ResourceInUse {
                    kind: Kind::Skill,
                    name: "s".into(),
                    users: vec!["agent/a".into(), "agent/b".into()],
                },
                Code::FailedPrecondition,
                format!(
                    "{} \"s\" is used by agent/a, agent/b; change those first or delete with --force",
                    Kind::Skill
                ),
            ),
            (
                ServerError::ExecutionEnded {
                    execution_id: "aex-1".into(),
                    phase: ExecutionPhase::Completed,
                },
                Code::FailedPrecondition,
                "execution \"aex-1\" already ended (completed)".into(),
            ),
            (
                ServerError::AgentDeleted { agent: "a".into() },
                Code::FailedPrecondition,
                "agent 'a' was deleted while its execution ran".into(),
            ),
            (
                ServerError::ReferenceDeleted {
                    kind: "McpServer",
                    name: "files".into(),
                    agent: "a".into(),
                },
                Code::FailedPrecondition,
                "the McpServer 'files' of agent 'a' was deleted while its execution ran; apply it again".into(),
            ),
            (
                ServerError::DecisionRefused {
                    reason: "call \"call_7\" does not wait for a decision".into(),
                },
                Code::FailedPrecondition,
                "call \"call_7\" does not wait for a decision".into(),
            ),
            (
                ServerError::TooManySubscriptions { limit: 512 },
                Code::ResourceExhausted,
                "the server already holds 512 subscriptions (its limit); close some and subscribe again".into(),
            ),
            (
                ServerError::TooManySubscriptionsOnConnection { limit: 32 },
                Code::ResourceExhausted,
                "this connection already holds 32 subscriptions (the limit per connection); close some and subscribe again".into(),
            ),
            (
                ServerError::ApplyAbandoned,
                Code::Cancelled,
                "the apply was abandoned: its client has gone".into(),
            ),
            (
                ServerError::TemporalNotConfigured,
                Code::Unavailable,
                "no Temporal is configured for this server".into(),
            ),
            (
                ServerError::TemporalUnavailable {
                    address: "127.0.0.1:7233".into(),
                    reason: "timed out".into(),
                },
                Code::Unavailable,
                "the Temporal workflow engine at 127.0.0.1:7233 is unavailable (timed out); see `stigmer server status`".into(),
            ),
            (
                ServerError::WorkflowStart { reason: "boom".into() },
                Code::Unavailable,
                "cannot start the execution's workflow: boom".into(),
            ),
            (
                ServerError::WorkflowCancel { reason: "boom".into() },
                Code::Unavailable,
                "cannot cancel the workflow: boom".into(),
            ),
            (
                ServerError::DecisionNotTaken {
                    execution_id: "aex-1".into(),
                    reason: "no answer within 10 s".into(),
                },
                Code::Unavailable,
                "the agent runner did not take the decision for execution \"aex-1\" (no answer \
                 within 10 s); check `stigmer server status` and decide again"
                    .into(),
            ),
            (ServerError::Store(store_error), Code::Internal, store_message),
            (
                ServerError::Lookup(LookupError::store(StoreError::Backend {
                    path: "/home/stigmer.db".into(),
                    message: "disk I/O error".into(),
                })),
                Code::Internal,
                "the store at /home/stigmer.db failed: disk I/O error".into(),
            ),
            (ServerError::Encode(json_error()), Code::Internal, json_message.clone()),
            (
                ServerError::UnreadableSpec { execution_id: "aex-1".into(), error: json_error() },
                Code::Internal,
                format!("execution \"aex-1\" has an unreadable spec: {json_message}"),
            ),
            (ServerError::Task(join_error), Code::Internal, join_message),
        ];
        for (error, code, message) in table {
            let status = Status::from(error);
            assert_eq!((status.code(), status.message()), (code, message.as_str()));
        }
    }
}
