//! The side effects of workflow executions, as Temporal activities: event batches, HTTP calls,
//! creating an agent's execution and reading its answer, creating a child workflow's execution
//! and reading its output, and the execution's result. Secret
//! values are fetched from the API server here, just before a call, and never returned.
//!
//! An HTTP call happens at most once per attempt the workflow makes of it (decision D11): the
//! activity records what became of it in the API server under a key the workflow gives it,
//! before it completes, and a retried activity (its runner died, its completion was lost)
//! returns the recorded outcome instead of sending again. A non-idempotent call also records
//! that it is being sent: a retry that finds it sent but without an outcome reports the call
//! as interrupted rather than sending it twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stigmer_client::{ApiClients, Authenticated, ClientError, Timeouts};
use stigmer_config::RunnerLaunchSpec;
use stigmer_proto::execution::{
    ExecutionEvent, ExecutionPhase, WorkflowExecutionSpec, WorkflowExecutionStatus,
    WorkflowRunInput,
};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::get_run_context_request::Messages as WantedMessages;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, CreateExecutionRequest, GetExecutionRequest, GetExecutionStateRequest,
    GetRunContextRequest, NewEvent, PutExecutionStateRequest, SetWorkflowResultRequest,
    SubscribeRequest,
};
use stigmer_resources::Resource;
use stigmer_workflow::Problem;
use stigmer_workflow::http::{self, HttpCall, HttpLimits};
use stigmer_workflow::interp::{AgentCall, TaskRef, WorkflowCall};
use stigmer_workflow::secrets::Secrets;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tonic::{Code, Status};

type Client = ExecutionServiceClient<Authenticated>;

/// One event as the API server stores it, keyed so that a repeated batch is stored once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub key: String,
    pub kind: String,
    pub data: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendInput {
    pub execution_id: String,
    pub events: Vec<WireEvent>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpInput {
    pub execution_id: String,
    /// Names this call within the execution (the task's reference and the call's number), so
    /// that every attempt of it finds what an earlier one did. Empty in executions started
    /// before calls were recorded: those are sent without a record.
    #[serde(default)]
    pub key: String,
    pub call: HttpCall,
    /// Task events of the execution to store before the call (keyed: a retried attempt
    /// stores them once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<WireEvent>,
}

/// What the API server holds about one HTTP call, under its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
enum CallRecord {
    /// A non-idempotent request is being sent (or was, by an attempt that was lost).
    Sending,
    /// The call's outcome, secrets concealed.
    Done { outcome: Outcome },
}

/// Methods that may be sent again when an attempt was lost after sending.
pub fn idempotent(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"
    )
}

/// A step that stops heartbeating for this long is considered lost (its runner died) and is
/// retried; it also bounds how long a cancelled call may run on.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a running call heartbeats (the SDK sends at most one per 0.8 × the timeout).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// The breakpoint file (see [`WorkflowActivities::breakpoints`]) that pauses the next HTTP call
/// after its outcome is recorded; it is consumed, and the paused call writes
/// [`PAUSED_AFTER_HTTP_RECORD`] next to it.
pub const PAUSE_AFTER_HTTP_RECORD: &str = "pause-after-http-record";
pub const PAUSED_AFTER_HTTP_RECORD: &str = "paused-after-http-record";

/// A task's result as data: DSL errors are results, not activity failures, so Temporal does
/// not retry them (the DSL's own `retry` does, when the workflow says so).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

impl Outcome {
    pub fn of(result: Result<Value, Problem>) -> Outcome {
        match result {
            Ok(output) => Outcome {
                output: Some(output),
                error: None,
            },
            Err(error) => Outcome {
                output: None,
                error: Some(error),
            },
        }
    }

    pub fn into_result(self) -> Result<Value, Problem> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.output.unwrap_or(Value::Null)),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInput {
    pub execution_id: String,
    /// Where the created run's id is recorded (empty in runs started before it was).
    #[serde(default)]
    pub key: String,
    pub task: TaskRef,
    pub call: AgentCall,
}

/// `run: workflow`: the calling execution, its task and the evaluated call.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildWorkflowInput {
    pub execution_id: String,
    /// Where the created run is recorded (empty in runs started before it was).
    #[serde(default)]
    pub key: String,
    pub task: TaskRef,
    pub call: WorkflowCall,
}

/// What [`WorkflowActivities::create_workflow_execution`] made: the child's run, or the DSL
/// error that stops the task.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChildWorkflowRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<WorkflowRunInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// The output of `child` (a workflow execution that ended) as the parent's task sees it: its
/// output, or its error as the task's error (type and status kept; the task is the instance,
/// and the detail says where in the child it happened).
pub fn child_outcome(child: &str, status: &WorkflowExecutionStatus) -> Outcome {
    if let Some(error) = &status.error {
        let mut problem = serde_json::from_value::<Problem>(error.clone())
            .unwrap_or_else(|_| Problem::runtime(error.to_string()));
        let place = problem
            .instance
            .take()
            .map(|instance| format!(" at {instance}"))
            .unwrap_or_default();
        let detail = problem
            .detail
            .take()
            .or_else(|| problem.title.clone())
            .unwrap_or_else(|| "it failed".to_owned());
        problem.detail = Some(format!("{detail} (workflow execution {child}{place})"));
        return Outcome::of(Err(problem));
    }
    if status.phase == ExecutionPhase::Completed || status.output.is_some() {
        return Outcome::of(Ok(status.output.clone().unwrap_or(Value::Null)));
    }
    let reason = status.reason.as_deref().unwrap_or("no reason recorded");
    Outcome::of(Err(Problem::runtime(format!(
        "workflow execution {child} ended {}: {reason}",
        status.phase
    ))))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishInput {
    pub execution_id: String,
    pub events: Vec<WireEvent>,
    pub outcome: Outcome,
}

/// The activities of workflow executions.
pub struct WorkflowActivities {
    client: Client,
    http: reqwest::Client,
    limits: HttpLimits,
    /// `<home>/test-breakpoints`, when it exists as the runner starts: end-to-end tests put
    /// files there to stop a step at a precise point (then kill the runner). Homes without it
    /// (all real ones) cost nothing.
    breakpoints: Option<PathBuf>,
}

impl WorkflowActivities {
    pub fn new(spec: &RunnerLaunchSpec) -> Result<WorkflowActivities, String> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(2),
            request: Some(Duration::from_secs(30)),
        };
        let clients =
            ApiClients::connect_lazy(&spec.api_endpoint, spec.api_token.expose(), timeouts)
                .map_err(|error: ClientError| error.to_string())?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("cannot set up the HTTP client: {error}"))?;
        let breakpoints = spec.home.join("test-breakpoints");
        Ok(WorkflowActivities {
            client: clients.executions,
            http,
            limits: HttpLimits::default(),
            breakpoints: breakpoints.is_dir().then_some(breakpoints),
        })
    }

    /// The value recorded under `key` for `execution_id`, if any (an empty key: none).
    async fn recorded<T: serde::de::DeserializeOwned>(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<T>, ActivityError> {
        if key.is_empty() {
            return Ok(None);
        }
        let state = self
            .client
            .clone()
            .get_execution_state(GetExecutionStateRequest {
                execution_id: execution_id.to_owned(),
                key: key.to_owned(),
            })
            .await
            .map_err(api_error)?
            .into_inner();
        if !state.found {
            return Ok(None);
        }
        serde_json::from_str(&state.value_json)
            .map(Some)
            .map_err(|error| fatal(format!("the record {key} is unreadable: {error}")))
    }

    /// Records `value` under `key` for `execution_id` (an empty key: nothing).
    async fn record<T: Serialize>(
        &self,
        execution_id: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ActivityError> {
        if key.is_empty() {
            return Ok(());
        }
        let value_json = serde_json::to_string(value)
            .map_err(|error| fatal(format!("cannot encode the record {key}: {error}")))?;
        self.client
            .clone()
            .put_execution_state(PutExecutionStateRequest {
                execution_id: execution_id.to_owned(),
                key: key.to_owned(),
                value_json,
            })
            .await
            .map_err(api_error)?;
        Ok(())
    }

    /// One attempt of an HTTP call: the recorded outcome when an earlier attempt left one,
    /// else the call, recorded before the attempt completes.
    async fn http_attempt(&self, input: HttpInput) -> Result<Outcome, ActivityError> {
        let HttpInput {
            execution_id,
            key,
            call,
            events: _,
        } = input;
        if key.is_empty() {
            let secrets = self.secrets(&execution_id).await?;
            return Ok(Outcome::of(
                http::execute(&self.http, &call, &secrets, self.limits).await,
            ));
        }
        let resend = idempotent(&call.method);
        match self.recorded::<CallRecord>(&execution_id, &key).await? {
            Some(CallRecord::Done { outcome }) => return Ok(outcome),
            Some(CallRecord::Sending) if !resend => {
                return Ok(Outcome::of(Err(Problem::communication(format!(
                    "interrupted after it was sent; not repeated ({} {})",
                    call.method.to_ascii_uppercase(),
                    call.uri
                )))));
            }
            _ => {}
        }
        let secrets = self.secrets(&execution_id).await?;
        if !resend {
            self.record(&execution_id, &key, &CallRecord::Sending)
                .await?;
        }
        let outcome = Outcome::of(http::execute(&self.http, &call, &secrets, self.limits).await);
        let record = CallRecord::Done {
            outcome: outcome.clone(),
        };
        self.record(&execution_id, &key, &record).await?;
        self.breakpoint(PAUSE_AFTER_HTTP_RECORD, PAUSED_AFTER_HTTP_RECORD)
            .await;
        Ok(outcome)
    }

    /// Stops here for good when a test asked to (by the file `pause`, which is consumed, so a
    /// restarted runner goes on), saying so with the file `paused`.
    async fn breakpoint(&self, pause: &str, paused: &str) {
        let Some(breakpoints) = &self.breakpoints else {
            return;
        };
        if std::fs::remove_file(breakpoints.join(pause)).is_ok() {
            tracing::warn!(breakpoint = pause, "Paused at a test breakpoint.");
            let _ = std::fs::write(breakpoints.join(paused), b"");
            std::future::pending::<()>().await;
        }
    }

    async fn append(
        &self,
        execution_id: &str,
        events: Vec<WireEvent>,
    ) -> Result<(), ActivityError> {
        if events.is_empty() {
            return Ok(());
        }
        self.client
            .clone()
            .append_events(AppendEventsRequest {
                execution_id: execution_id.to_owned(),
                events: events
                    .into_iter()
                    .map(|event| NewEvent {
                        key: event.key,
                        kind: event.kind,
                        data_json: event.data.to_string(),
                    })
                    .collect(),
            })
            .await
            .map_err(api_error)?;
        Ok(())
    }

    /// The run's secret values (never stored or logged here).
    async fn secrets(&self, execution_id: &str) -> Result<Secrets, ActivityError> {
        let context = self
            .client
            .clone()
            .get_run_context(GetRunContextRequest {
                execution_id: execution_id.to_owned(),
                messages: Some(WantedMessages::NoMessages(true)),
                ..Default::default()
            })
            .await
            .map_err(api_error)?
            .into_inner();
        Ok(Secrets::new(context.secrets.into_iter().collect()))
    }
}

#[activities]
impl WorkflowActivities {
    /// Stores a batch of task events.
    #[activity(name = "stigmer.WorkflowEvents")]
    pub async fn append_events(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: AppendInput,
    ) -> Result<(), ActivityError> {
        self.append(&input.execution_id, input.events).await
    }

    /// `call: http`.
    #[activity(name = "stigmer.HttpCall")]
    pub async fn http_call(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: HttpInput,
    ) -> Result<Outcome, ActivityError> {
        let mut input = input;
        let events = std::mem::take(&mut input.events);
        self.append(&input.execution_id, events).await?;
        let started = std::time::SystemTime::now();
        let attempt = ctx.info().attempt;
        let span_input = stigmer_telemetry::enabled().then(|| input.clone());
        let outcome = with_heartbeats(&ctx, self.http_attempt(input)).await;
        if let Some(input) = span_input {
            let error = match &outcome {
                Ok(Outcome {
                    error: Some(problem),
                    ..
                }) => Some((problem.kind.as_str(), problem.status)),
                Ok(_) => None,
                Err(_) => Some(("activity", 0)),
            };
            stigmer_telemetry::export(stigmer_telemetry::spans::http_call(
                &stigmer_telemetry::spans::HttpRun {
                    execution_id: &input.execution_id,
                    key: &input.key,
                    method: &input.call.method,
                    uri: &input.call.uri,
                    attempt,
                    start: started,
                    end: std::time::SystemTime::now(),
                    error,
                },
            ));
        }
        outcome
    }

    /// `call: agent`, first step: creates the agent's execution under this workflow's task
    /// (the workflow then runs it as a child workflow). Returns its id.
    #[activity(name = "stigmer.CreateAgentExecution")]
    pub async fn create_agent_execution(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: AgentInput,
    ) -> Result<Outcome, ActivityError> {
        // A retried attempt returns the run an earlier one created.
        if let Some(created) = self
            .recorded::<String>(&input.execution_id, &input.key)
            .await?
        {
            return Ok(Outcome::of(Ok(Value::String(created))));
        }
        let secrets = self.secrets(&input.execution_id).await?;
        let message = match secrets.reveal(&input.call.message) {
            Ok(message) => message,
            Err(error) => return Ok(Outcome::of(Err(error))),
        };
        let mut env = BTreeMap::new();
        let mut secret_env = BTreeMap::new();
        for (name, value) in &input.call.env {
            // A variable whose value came from a secret stays secret in the agent's run.
            if value.contains("⟨secret:") {
                match secrets.reveal(value) {
                    Ok(revealed) => secret_env.insert(name.clone(), revealed),
                    Err(error) => return Ok(Outcome::of(Err(error))),
                };
            } else {
                env.insert(name.clone(), value.clone());
            }
        }
        let created = self
            .client
            .clone()
            .create_execution(CreateExecutionRequest {
                agent: input.call.agent.clone(),
                message,
                model: input.call.model.clone().unwrap_or_default(),
                env: env.into_iter().collect(),
                secrets: secret_env.into_iter().collect(),
                parent_execution_id: input.execution_id.clone(),
                parent_task: input.task.reference.clone(),
                ..Default::default()
            })
            .await;
        let created = match created {
            Ok(reply) => reply.into_inner(),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                return Ok(Outcome::of(Err(Problem::runtime(format!(
                    "cannot run agent {:?}: {}",
                    input.call.agent,
                    status.message()
                )))));
            }
            Err(status) => return Err(api_error(status)),
        };
        let execution: Resource = serde_json::from_str(&created.execution_json)
            .map_err(|error| fatal(format!("the server sent an unreadable execution: {error}")))?;
        self.record(&input.execution_id, &input.key, &execution.metadata.name)
            .await?;
        Ok(Outcome::of(Ok(Value::String(execution.metadata.name))))
    }

    /// `call: agent`, last step, after its run completed: the agent's answer
    /// `{executionId, phase, text, data}`.
    #[activity(name = "stigmer.AgentAnswer")]
    pub async fn agent_answer(
        self: Arc<Self>,
        _ctx: ActivityContext,
        agent_execution_id: String,
    ) -> Result<Outcome, ActivityError> {
        // The run's event log holds each model turn's finished text (secrets redacted); it
        // is read to its end, which the API server marks when it records the run's phase.
        let mut stream = self
            .client
            .clone()
            .subscribe(SubscribeRequest {
                execution_id: agent_execution_id.clone(),
                after_seq: 0,
            })
            .await
            .map_err(api_error)?
            .into_inner();
        let mut text = String::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), stream.message())
                .await
                .map_err(|_| {
                    ActivityError::application(ApplicationFailure::new(format!(
                        "the log of {agent_execution_id} did not end within 60 s"
                    )))
                })?;
            let Some(event) = next.map_err(api_error)? else {
                break;
            };
            match ExecutionEvent::from_wire_json_lenient(&event.kind, &event.data_json) {
                ExecutionEvent::MessageCompleted(message) if !message.text.trim().is_empty() => {
                    text = message.text;
                }
                ExecutionEvent::PhaseChanged(changed) if changed.phase.is_terminal() => break,
                _ => {}
            }
        }
        Ok(Outcome::of(Ok(answer(
            &agent_execution_id,
            "completed",
            &text,
        ))))
    }

    /// `run: workflow`, first step: creates the child's workflow execution under this
    /// workflow's task (the workflow then runs it as a child workflow). Secret placeholders in
    /// the input stay as they are: the child, which has this run's secrets, resolves them.
    #[activity(name = "stigmer.CreateWorkflowExecution")]
    pub async fn create_workflow_execution(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ChildWorkflowInput,
    ) -> Result<ChildWorkflowRun, ActivityError> {
        let ChildWorkflowInput {
            execution_id,
            key,
            task,
            call,
        } = input;
        // A retried attempt returns the run an earlier one created.
        if let Some(run) = self
            .recorded::<WorkflowRunInput>(&execution_id, &key)
            .await?
        {
            return Ok(ChildWorkflowRun {
                run: Some(run),
                error: None,
            });
        }
        let parent = execution_id.clone();
        let created = self
            .client
            .clone()
            .create_execution(CreateExecutionRequest {
                workflow: call.name.clone(),
                workflow_namespace: call.namespace.clone(),
                workflow_version: call.version.clone().unwrap_or_default(),
                input_json: call.input.to_string(),
                parent_execution_id: execution_id,
                parent_task: task.reference,
                ..Default::default()
            })
            .await;
        let created = match created {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == Code::NotFound => {
                return Ok(ChildWorkflowRun {
                    run: None,
                    error: Some(Problem::runtime(format!(
                        "cannot run workflow {:?}: {}",
                        call.name,
                        status.message()
                    ))),
                });
            }
            Err(status) if status.code() == Code::InvalidArgument => {
                return Ok(ChildWorkflowRun {
                    run: None,
                    error: Some(Problem::validation(format!(
                        "cannot run workflow {:?}: {}",
                        call.name,
                        status.message()
                    ))),
                });
            }
            Err(status) => return Err(api_error(status)),
        };
        let execution: Resource = serde_json::from_str(&created.execution_json)
            .map_err(|error| fatal(format!("the server sent an unreadable execution: {error}")))?;
        let spec = WorkflowExecutionSpec::from_value(&execution.spec)
            .map_err(|error| fatal(format!("the server sent an unreadable execution: {error}")))?;
        let run = WorkflowRunInput {
            execution_id: execution.metadata.name,
            definition: spec.definition,
            input: spec.input,
            secret_names: spec.secret_names.into_iter().collect(),
        };
        self.record(&parent, &key, &run).await?;
        Ok(ChildWorkflowRun {
            run: Some(run),
            error: None,
        })
    }

    /// `run: workflow`, last step, after the child's workflow returned (its last step stored
    /// its output or error first): what the task outputs.
    #[activity(name = "stigmer.WorkflowOutput")]
    pub async fn workflow_output(
        self: Arc<Self>,
        _ctx: ActivityContext,
        child_execution_id: String,
    ) -> Result<Outcome, ActivityError> {
        let reply = self
            .client
            .clone()
            .get_execution(GetExecutionRequest {
                execution_id: child_execution_id.clone(),
            })
            .await
            .map_err(api_error)?
            .into_inner();
        let execution: Resource = serde_json::from_str(&reply.execution_json)
            .map_err(|error| fatal(format!("the server sent an unreadable execution: {error}")))?;
        let status = WorkflowExecutionStatus::from_value(execution.status.as_ref());
        Ok(child_outcome(&child_execution_id, &status))
    }

    /// The execution's last step: its remaining events, then its output or error.
    #[activity(name = "stigmer.WorkflowResult")]
    pub async fn finish(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: FinishInput,
    ) -> Result<(), ActivityError> {
        self.append(&input.execution_id, input.events).await?;
        let json = |value: Option<String>| value.unwrap_or_default();
        self.client
            .clone()
            .set_workflow_result(SetWorkflowResultRequest {
                execution_id: input.execution_id.clone(),
                output_json: json(input.outcome.output.as_ref().map(Value::to_string)),
                error_json: json(
                    input
                        .outcome
                        .error
                        .as_ref()
                        .map(|error| error.to_value().to_string()),
                ),
            })
            .await
            .map_err(api_error)?;
        Ok(())
    }
}

/// `{executionId, phase, text, data}`: `data` is the answer parsed as JSON when it is JSON
/// (also inside a fenced code block), else null.
pub fn answer(execution_id: &str, phase: &str, text: &str) -> Value {
    serde_json::json!({
        "executionId": execution_id,
        "phase": phase,
        "text": text,
        "data": parse_json_answer(text),
    })
}

fn parse_json_answer(text: &str) -> Value {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return value;
    }
    // ```json … ``` or ``` … ```
    if let Some(start) = trimmed.find("```") {
        let after = &trimmed[start + 3..];
        let body = after.strip_prefix("json").unwrap_or(after);
        if let Some(end) = body.find("```")
            && let Ok(value) = serde_json::from_str::<Value>(body[..end].trim())
        {
            return value;
        }
    }
    Value::Null
}

/// Runs a step while heartbeating; a cancel stops it at once (dropping the step's future,
/// which closes an HTTP call's connection).
async fn with_heartbeats<T>(
    ctx: &ActivityContext,
    work: impl Future<Output = Result<T, ActivityError>>,
) -> Result<T, ActivityError> {
    let beat = async {
        loop {
            if let Err(error) = ctx.record_heartbeat(()).await {
                tracing::warn!(error = %error, "Cannot record a heartbeat.");
            }
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    };
    tokio::select! {
        result = work => result,
        () = ctx.cancelled() => Err(ActivityError::cancelled()),
        () = beat => unreachable!("the heartbeat loop never ends"),
    }
}

fn fatal(message: String) -> ActivityError {
    ActivityError::application(ApplicationFailure::non_retryable(message))
}

fn api_error(status: Status) -> ActivityError {
    let message = status.message().to_owned();
    match status.code() {
        Code::FailedPrecondition | Code::NotFound => {
            fatal(format!("the execution can no longer run: {message}"))
        }
        Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied => fatal(message),
        _ => ActivityError::application(ApplicationFailure::new(format!(
            "the API server did not answer: {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_records_read_back_and_only_safe_methods_are_sent_again() {
        let done = CallRecord::Done {
            outcome: Outcome::of(Ok(json!({"id": 7}))),
        };
        let text = serde_json::to_string(&done).unwrap();
        assert_eq!(text, r#"{"state":"done","outcome":{"output":{"id":7}}}"#);
        assert!(matches!(
            serde_json::from_str::<CallRecord>(&text).unwrap(),
            CallRecord::Done { outcome } if outcome.output == Some(json!({"id": 7}))
        ));
        assert!(matches!(
            serde_json::from_str::<CallRecord>(r#"{"state":"sending"}"#).unwrap(),
            CallRecord::Sending
        ));
        for method in ["get", "HEAD", "options", "PUT", "delete"] {
            assert!(idempotent(method), "{method}");
        }
        for method in ["post", "PATCH", "PROPFIND"] {
            assert!(!idempotent(method), "{method}");
        }
    }

    #[test]
    fn a_child_workflow_gives_its_output_or_its_error_at_the_parent_task() {
        let completed = WorkflowExecutionStatus {
            phase: ExecutionPhase::Completed,
            output: Some(json!({"n": 2})),
            ..Default::default()
        };
        assert_eq!(
            child_outcome("wex-2", &completed).into_result().unwrap(),
            json!({"n": 2})
        );
        let faulted = WorkflowExecutionStatus {
            phase: ExecutionPhase::Failed,
            error: Some(json!({
                "type": "https://example.com/errors/out-of-stock",
                "status": 409,
                "instance": "/do/0/check",
                "title": "Out of stock",
                "detail": "no apples left",
            })),
            ..Default::default()
        };
        let error = child_outcome("wex-2", &faulted).into_result().unwrap_err();
        assert_eq!(error.kind, "https://example.com/errors/out-of-stock");
        assert_eq!(error.status, 409);
        assert_eq!(
            error.instance, None,
            "the interpreter puts the parent's task"
        );
        assert_eq!(error.title.as_deref(), Some("Out of stock"));
        assert_eq!(
            error.detail.as_deref(),
            Some("no apples left (workflow execution wex-2 at /do/0/check)")
        );
        let cancelled = WorkflowExecutionStatus {
            phase: ExecutionPhase::Cancelled,
            reason: Some("cancelled by the user".into()),
            ..Default::default()
        };
        let error = child_outcome("wex-2", &cancelled)
            .into_result()
            .unwrap_err();
        assert!(error.type_matches("runtime"), "{error:?}");
        assert!(
            error.detail.unwrap().contains("cancelled by the user"),
            "the reason is kept"
        );
    }

    #[test]
    fn answers_are_parsed_as_json_when_they_are() {
        assert_eq!(
            answer("aex-1", "completed", "{\"score\": 3}")["data"],
            json!({"score": 3})
        );
        assert_eq!(
            answer("aex-1", "completed", "Here:\n```json\n[1, 2]\n```\n")["data"],
            json!([1, 2])
        );
        assert_eq!(
            answer("aex-1", "completed", "plain words")["data"],
            Value::Null
        );
    }
}
