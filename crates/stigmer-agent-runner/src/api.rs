//! The runner's side of the API server: run context in, messages and events out.

use crate::turn::{EventSink, PendingEvent};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use stigmer_client::{ApiClients, Authenticated, ClientError, Timeouts};
use stigmer_config::RunnerLaunchSpec;
use stigmer_llm::Message;
use stigmer_proto::execution::{AgentExecutionSpec, ExecutionEvent};
use stigmer_proto::executions::v1::MessagePlace as ProtoMessagePlace;
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::get_run_context_request::Messages as WantedMessages;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, CreateExecutionRequest, GetExecutionStateRequest, GetRunContextRequest,
    PutExecutionStateRequest, SaveMessagesRequest, SaveToolSnapshotRequest, SubscribeRequest,
};
use stigmer_resources::{AgentSpec, McpServerSpec, Resource, SkillSpec};
use tonic::{Code, Status};

type Client = ExecutionServiceClient<Authenticated>;

/// Why a call to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The execution ended (cancelled, failed elsewhere) or is gone: stop, do not retry.
    #[error("{0}")]
    Ended(String),
    /// Our request is wrong; retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// The server is unreachable or failed; worth retrying.
    #[error("the API server did not answer: {0}")]
    Unavailable(String),
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::FailedPrecondition | Code::NotFound => ApiError::Ended(message),
            Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied => {
                ApiError::Refused(message)
            }
            _ => ApiError::Unavailable(message),
        }
    }
}

/// A lazily connected client of the execution API.
#[derive(Clone)]
pub struct Api {
    client: Client,
}

/// What one step of an execution needs.
pub struct RunContext {
    pub execution: Resource,
    /// The execution's typed `spec`, read once from `execution`.
    pub spec: AgentExecutionSpec,
    pub agent_name: String,
    pub agent: AgentSpec,
    /// The messages the step asked for ([`Wanted`]).
    pub messages: Vec<Message>,
    /// The place of each of `messages` in its own execution.
    pub places: Vec<MessagePlace>,
    /// The place of the last of `messages` that belongs to this execution.
    pub last: Option<MessagePlace>,
    /// The size of `messages` as the server sent them.
    pub message_bytes: usize,
    pub secrets: BTreeMap<String, String>,
    /// The agent's MCP servers (name, spec), when the step asked for its tools.
    pub mcp_servers: Vec<(String, McpServerSpec)>,
    /// The agent's skills (name, spec), when the step asked for its tools.
    pub skills: Vec<(String, SkillSpec)>,
    /// The tools saved for the execution by an earlier step, when the step asked for its tools.
    pub tool_snapshot: Option<crate::toolbox::ToolSnapshot>,
}

/// Where a message sits in its execution's conversation: turn 0 is the user's message; in a
/// later turn, index 0 is the model's answer and its tool results follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MessagePlace {
    pub turn: u32,
    pub index: u32,
}

/// Which messages of the conversation a step reads, so that what it reads does not grow with
/// the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The whole conversation through the turn: earlier completed executions of the session,
    /// then this one.
    All,
    /// Only this execution's messages after this place, through the turn.
    After(MessagePlace),
    /// Only the message at this place of this execution.
    At(MessagePlace),
    /// None.
    Nothing,
}

impl Wanted {
    fn to_proto(self) -> Option<WantedMessages> {
        let place = |place: MessagePlace| ProtoMessagePlace {
            turn: place.turn,
            index: place.index,
        };
        match self {
            Wanted::All => None,
            Wanted::After(after) => Some(WantedMessages::After(place(after))),
            Wanted::At(at) => Some(WantedMessages::At(place(at))),
            Wanted::Nothing => Some(WantedMessages::NoMessages(true)),
        }
    }
}

impl RunContext {
    pub fn execution_id(&self) -> &str {
        &self.execution.metadata.name
    }

    pub fn session(&self) -> &str {
        &self.spec.session
    }
}

impl Api {
    pub fn new(spec: &RunnerLaunchSpec) -> Result<Api, ClientError> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(2),
            request: Some(Duration::from_secs(30)),
        };
        let clients =
            ApiClients::connect_lazy(&spec.api_endpoint, spec.api_token.expose(), timeouts)?;
        Ok(Api {
            client: clients.executions,
        })
    }

    /// What a step needs: the execution, its agent, its secrets and the `wanted` messages of
    /// its conversation through `through_turn`.
    pub async fn run_context(
        &self,
        execution_id: &str,
        through_turn: u32,
        wanted: Wanted,
    ) -> Result<RunContext, ApiError> {
        self.run_context_with(execution_id, through_turn, wanted, false)
            .await
    }

    /// [`Api::run_context`], with the agent's MCP servers and skills when `with_tools`.
    pub async fn run_context_with(
        &self,
        execution_id: &str,
        through_turn: u32,
        wanted: Wanted,
        with_tools: bool,
    ) -> Result<RunContext, ApiError> {
        let reply = self
            .client
            .clone()
            .get_run_context(GetRunContextRequest {
                execution_id: execution_id.to_owned(),
                through_turn,
                messages: wanted.to_proto(),
                with_tools,
            })
            .await?
            .into_inner();
        let corrupt = |what: &str, error: serde_json::Error| {
            ApiError::Refused(format!("the server sent an unreadable {what}: {error}"))
        };
        let execution: Resource = serde_json::from_str(&reply.execution_json)
            .map_err(|error| corrupt("execution", error))?;
        let spec = AgentExecutionSpec::from_value(&execution.spec)
            .map_err(|error| corrupt("execution spec", error))?;
        let agent: Resource =
            serde_json::from_str(&reply.agent_json).map_err(|error| corrupt("agent", error))?;
        let agent_name = agent.metadata.name.clone();
        let agent: AgentSpec =
            serde_json::from_value(agent.spec).map_err(|error| corrupt("agent spec", error))?;
        let mcp_servers = reply
            .mcp_servers_json
            .iter()
            .map(|text| {
                let resource: Resource =
                    serde_json::from_str(text).map_err(|error| corrupt("MCP server", error))?;
                let spec = serde_json::from_value(resource.spec)
                    .map_err(|error| corrupt("MCP server spec", error))?;
                Ok((resource.metadata.name, spec))
            })
            .collect::<Result<_, ApiError>>()?;
        let skills = reply
            .skills_json
            .iter()
            .map(|text| {
                let resource: Resource =
                    serde_json::from_str(text).map_err(|error| corrupt("skill", error))?;
                let spec = serde_json::from_value(resource.spec)
                    .map_err(|error| corrupt("skill spec", error))?;
                Ok((resource.metadata.name, spec))
            })
            .collect::<Result<_, ApiError>>()?;
        let messages = reply
            .messages_json
            .iter()
            .map(|text| serde_json::from_str(text).map_err(|error| corrupt("message", error)))
            .collect::<Result<_, _>>()?;
        Ok(RunContext {
            execution,
            spec,
            agent_name,
            agent,
            messages,
            last: reply.last.map(|last| MessagePlace {
                turn: last.turn,
                index: last.index,
            }),
            places: reply
                .places
                .iter()
                .map(|place| MessagePlace {
                    turn: place.turn,
                    index: place.index,
                })
                .collect(),
            message_bytes: reply.messages_json.iter().map(String::len).sum(),
            secrets: reply.secrets.into_iter().collect(),
            mcp_servers,
            skills,
            tool_snapshot: if reply.tool_snapshot_json.is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str(&reply.tool_snapshot_json)
                        .map_err(|error| corrupt("tool snapshot", error))?,
                )
            },
        })
    }

    pub async fn save_messages(
        &self,
        execution_id: &str,
        turn: u32,
        first_index: u32,
        messages: &[Message],
    ) -> Result<(), ApiError> {
        let messages_json = messages
            .iter()
            .map(|message| serde_json::to_string(message).unwrap_or_default())
            .collect();
        self.client
            .clone()
            .save_messages(SaveMessagesRequest {
                execution_id: execution_id.to_owned(),
                turn,
                first_index,
                messages_json,
            })
            .await?;
        Ok(())
    }

    /// Saves the tools the execution's steps offer.
    pub async fn save_tool_snapshot(
        &self,
        execution_id: &str,
        snapshot: &crate::toolbox::ToolSnapshot,
    ) -> Result<(), ApiError> {
        self.client
            .clone()
            .save_tool_snapshot(SaveToolSnapshotRequest {
                execution_id: execution_id.to_owned(),
                snapshot_json: serde_json::to_string(snapshot).unwrap_or_default(),
            })
            .await?;
        Ok(())
    }

    /// Creates the execution of a sub-agent's run for the `task` call `call_id` of `parent`
    /// (the server does not start it: the parent's workflow runs it as a child); returns its
    /// id.
    pub async fn create_sub_agent_execution(
        &self,
        parent: &str,
        agent: &str,
        sub_agent: &str,
        call_id: &str,
        message: &str,
    ) -> Result<String, ApiError> {
        let created = self
            .client
            .clone()
            .create_execution(CreateExecutionRequest {
                agent: agent.to_owned(),
                message: message.to_owned(),
                parent_execution_id: parent.to_owned(),
                parent_task: call_id.to_owned(),
                sub_agent: sub_agent.to_owned(),
                ..CreateExecutionRequest::default()
            })
            .await?
            .into_inner();
        let execution: Resource = serde_json::from_str(&created.execution_json)
            .map_err(|error| ApiError::Refused(format!("unreadable execution: {error}")))?;
        Ok(execution.metadata.name)
    }

    /// The last answer of an ended execution's model (its final answer when it completed),
    /// from its event log: read to its end, which the API server marks when it records the
    /// execution's terminal phase (within a minute, else a retryable error).
    pub async fn final_answer(&self, execution_id: &str) -> Result<Option<String>, ApiError> {
        let mut stream = self
            .client
            .clone()
            .subscribe(SubscribeRequest {
                execution_id: execution_id.to_owned(),
                after_seq: 0,
            })
            .await?
            .into_inner();
        let mut answer = None;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), stream.message())
                .await
                .map_err(|_| {
                    ApiError::Unavailable(format!(
                        "the log of {execution_id} did not end within 60 s"
                    ))
                })?;
            let Some(event) = next? else {
                break;
            };
            match ExecutionEvent::from_wire_json_lenient(&event.kind, &event.data_json) {
                ExecutionEvent::MessageCompleted(message) if !message.text.trim().is_empty() => {
                    answer = Some(message.text);
                }
                ExecutionEvent::PhaseChanged(changed) if changed.phase.is_terminal() => break,
                _ => {}
            }
        }
        Ok(answer)
    }

    /// A piece of the execution's own state stored by an earlier step (`None` when there is
    /// none); the server keeps it under `runner/<key>`.
    pub async fn execution_state(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<String>, ApiError> {
        let state = self
            .client
            .clone()
            .get_execution_state(GetExecutionStateRequest {
                execution_id: execution_id.to_owned(),
                key: format!("runner/{key}"),
            })
            .await?
            .into_inner();
        Ok(state.found.then_some(state.value_json))
    }

    /// Stores (replacing) a piece of the execution's own state, as JSON.
    pub async fn put_execution_state(
        &self,
        execution_id: &str,
        key: &str,
        value_json: String,
    ) -> Result<(), ApiError> {
        self.client
            .clone()
            .put_execution_state(PutExecutionStateRequest {
                execution_id: execution_id.to_owned(),
                key: format!("runner/{key}"),
                value_json,
            })
            .await?;
        Ok(())
    }

    pub async fn append(
        &self,
        execution_id: &str,
        events: Vec<PendingEvent>,
    ) -> Result<(), ApiError> {
        let events = events
            .into_iter()
            .map(|(key, event)| event.to_new_event(key))
            .collect();
        self.client
            .clone()
            .append_events(AppendEventsRequest {
                execution_id: execution_id.to_owned(),
                events,
            })
            .await?;
        Ok(())
    }
}

/// Replaces secret values in text before it leaves the runner.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
}

/// What a secret becomes in events and stored messages.
pub const REDACTED: &str = "****";

impl Redactor {
    pub fn new(secrets: &BTreeMap<String, String>) -> Redactor {
        let mut values: Vec<String> = secrets
            .values()
            .filter(|value| !value.is_empty())
            .cloned()
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        Redactor { values }
    }

    pub fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for value in &self.values {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }

    pub fn value(&self, value: &mut Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            Value::String(text) => *text = self.text(text),
            Value::Array(items) => items.iter_mut().for_each(|item| self.value(item)),
            Value::Object(map) => map.values_mut().for_each(|item| self.value(item)),
            _ => {}
        }
    }

    /// The event with secret values replaced in every field (its wire form is redacted and
    /// read back; redacted text still fits every field).
    pub fn event(&self, event: &ExecutionEvent) -> ExecutionEvent {
        if self.values.is_empty() {
            return event.clone();
        }
        let (kind, mut data) = event.to_wire();
        self.value(&mut data);
        ExecutionEvent::from_wire(kind, &data).unwrap_or_else(|_| event.clone())
    }

    /// The message with secret values replaced in its text; a tool result's images are kept
    /// as they are (a secret's text inside base64 data is chance, and replacing it would
    /// break the image).
    pub fn message(&self, message: &Message) -> Message {
        let mut value = serde_json::to_value(message).unwrap_or(Value::Null);
        let images = value.as_object_mut().and_then(|map| map.remove("images"));
        self.value(&mut value);
        if let (Some(images), Some(map)) = (images, value.as_object_mut()) {
            map.insert("images".to_owned(), images);
        }
        serde_json::from_value(value).unwrap_or_else(|_| message.clone())
    }
}

/// Sends a step's events to the API server, secrets redacted; remembers when the server said
/// the execution has ended, so the step stops instead of retrying.
pub struct ApiSink {
    pub api: Api,
    pub execution_id: String,
    pub redactor: Redactor,
    pub ended: AtomicBool,
}

impl EventSink for ApiSink {
    fn emit(&self, events: Vec<PendingEvent>) -> BoxFuture<'_, Result<(), ApiError>> {
        let events = events
            .into_iter()
            .map(|(key, event)| (key, self.redactor.event(&event)))
            .collect();
        Box::pin(async move {
            match self.api.append(&self.execution_id, events).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    if matches!(error, ApiError::Ended(_)) {
                        self.ended.store(true, Ordering::SeqCst);
                    }
                    Err(error)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_everywhere_in_a_value() {
        let secrets = BTreeMap::from([
            ("A".to_owned(), "tok-123".to_owned()),
            ("B".to_owned(), "tok-123-long".to_owned()),
        ]);
        let redactor = Redactor::new(&secrets);
        let mut value =
            json!({"text": "use tok-123-long and tok-123", "list": ["x tok-123"], "n": 3});
        redactor.value(&mut value);
        assert_eq!(
            value,
            json!({"text": "use **** and ****", "list": ["x ****"], "n": 3})
        );
        let message = redactor.message(&Message::Assistant {
            text: "tok-123".into(),
            tool_calls: vec![],
        });
        assert_eq!(
            message,
            Message::Assistant {
                text: "****".into(),
                tool_calls: vec![]
            }
        );
        // A tool result's text is redacted, its images are not touched.
        let image = stigmer_llm::ToolImage {
            mime_type: "image/png".into(),
            data: "QUJDtok-123RA==".into(),
        };
        let message = redactor.message(&Message::Tool {
            call_id: "c1".into(),
            name: "shot".into(),
            content: "key tok-123".into(),
            images: vec![image.clone()],
        });
        assert_eq!(
            message,
            Message::Tool {
                call_id: "c1".into(),
                name: "shot".into(),
                content: "key ****".into(),
                images: vec![image],
            }
        );
    }
}
