//! The `stigmer.WorkflowExecution` workflow: the interpreter as workflow code, with a [`Host`]
//! made of Temporal commands. Pure tasks run within the workflow task that reached them (no
//! round trip each); their events wait in a buffer that is stored by the next side effect's
//! local activity, or by the last step. The clock, UUIDs and random numbers come from the
//! workflow context, so a replay takes every decision again the same way.

use crate::activities::{
    AgentInput, AppendInput, ChildWorkflowInput, FinishInput, HttpInput, Outcome, WireEvent,
    WorkflowActivities,
};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime};
use stigmer_proto::execution::WorkflowRunInput;
use stigmer_workflow::interp::{AgentCall, TaskRef, WorkflowCall};
use stigmer_workflow::{Host, Problem, Run, TaskEvent, TaskEventKind, Workflow};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, LocalActivityOptions,
    WorkflowContext, WorkflowResult, WorkflowTermination,
};
use temporalio_workflow::RetryPolicy;

/// The workflow type name the API server starts.
pub const WORKFLOW_TYPE: &str = "stigmer.WorkflowExecution";
/// The agent loop's workflow type and queue, for `call: agent` children.
const AGENT_WORKFLOW: &str = "stigmer.AgentExecution";
/// Task outputs in events are cut to this many bytes of JSON (the execution's own output is
/// stored whole).
pub const EVENT_OUTPUT_LIMIT: usize = 2048;

/// One workflow execution.
#[workflow]
#[derive(Default)]
pub struct WorkflowExecution;

#[workflow_methods]
impl WorkflowExecution {
    #[run(name = "stigmer.WorkflowExecution")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: WorkflowRunInput,
    ) -> WorkflowResult<String> {
        let host = TemporalHost::new(ctx.clone(), input.execution_id.clone());
        host.event_now(
            "phase.running",
            "phase_changed",
            json!({"phase": "running"}),
        );
        let result = match Workflow::from_document(input.definition.clone()) {
            Ok(workflow) => {
                let run = Run {
                    execution_id: input.execution_id.clone(),
                    input: input.input.clone(),
                    secret_names: input.secret_names.clone(),
                };
                stigmer_workflow::run(&workflow, &host, run).await
            }
            Err(problems) => Err(Problem::configuration(
                problems
                    .iter()
                    .map(|p| format!("{}: {}", p.pointer, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        };
        if host.cancelled.get() {
            return Err(WorkflowTermination::cancelled());
        }
        let summary = match &result {
            Ok(_) => "completed".to_string(),
            Err(error) => error.to_string(),
        };
        let finish = FinishInput {
            execution_id: input.execution_id.clone(),
            events: host.take_events(),
            outcome: Outcome::of(result),
        };
        ctx.execute_activity(
            WorkflowActivities::finish,
            finish,
            step_options(Duration::from_secs(60), 10),
        )
        .await
        .map_err(ended)?;
        Ok(summary)
    }
}

/// The interpreter's host inside a workflow.
pub struct TemporalHost {
    ctx: WorkflowContext<WorkflowExecution>,
    execution_id: String,
    pending: RefCell<Vec<WireEvent>>,
    /// Numbers events so that a repeated batch is stored once.
    sequence: Cell<u64>,
    cancelled: Cell<bool>,
    /// A `wait` task put the execution in phase `waiting`; its timer puts it back.
    waiting: Cell<bool>,
    /// Numbers HTTP calls, so that each has a key its attempts share (see `activities`).
    http_calls: Cell<u64>,
    /// Numbers the agent and workflow runs this execution starts, for their keys.
    child_calls: Cell<u64>,
}

impl TemporalHost {
    fn new(ctx: WorkflowContext<WorkflowExecution>, execution_id: String) -> TemporalHost {
        TemporalHost {
            ctx,
            execution_id,
            pending: RefCell::default(),
            sequence: Cell::new(0),
            cancelled: Cell::new(false),
            waiting: Cell::new(false),
            http_calls: Cell::new(0),
            child_calls: Cell::new(0),
        }
    }

    fn event_now(&self, key: &str, kind: &str, data: Value) {
        self.pending.borrow_mut().push(WireEvent {
            key: key.to_string(),
            kind: kind.to_string(),
            data,
        });
    }

    /// A phase change, stored with the next batch of events.
    fn phase(&self, phase: &str) {
        let sequence = self.next_sequence();
        self.event_now(
            &format!("phase.{sequence}"),
            "phase_changed",
            json!({"phase": phase}),
        );
    }

    /// The key under which the child run a task starts is recorded (the same on replay), so
    /// that a retried creation finds the run an earlier attempt created.
    fn call_key(&self, kind: &str, task: &TaskRef) -> String {
        let number = self.child_calls.get() + 1;
        self.child_calls.set(number);
        format!("{kind}{}#{number}", task.reference)
    }

    fn take_events(&self) -> Vec<WireEvent> {
        std::mem::take(&mut *self.pending.borrow_mut())
    }

    /// Stores the buffered events (a local activity: no workflow task of its own), so that
    /// watchers see progress before a call or a wait that may take a while.
    async fn flush(&self) {
        let events = self.take_events();
        if events.is_empty() {
            return;
        }
        let input = AppendInput {
            execution_id: self.execution_id.clone(),
            events,
        };
        if let Err(error) = self
            .ctx
            .execute_local_activity(WorkflowActivities::append_events, input, local_options())
            .await
        {
            self.note(&error);
        }
    }

    /// The next number for an event key.
    fn next_sequence(&self) -> u64 {
        let sequence = self.sequence.get() + 1;
        self.sequence.set(sequence);
        sequence
    }

    /// Says which execution the task started, then runs it as a child workflow to its end: a
    /// failed child is a `runtime` error naming it (its output is read by the caller).
    async fn run_child(&self, task: &TaskRef, child: Child<'_>) -> Result<(), Problem> {
        let Child {
            event,
            id,
            workflow_type,
            task_queue,
            argument,
            timeout,
            what,
        } = child;
        let sequence = self.next_sequence();
        self.event_now(
            &format!("child.{sequence}"),
            event,
            json!({"reference": task.reference, "name": task.name, "execution_id": id}),
        );
        self.flush().await;
        let mut options = ChildWorkflowOptions::default();
        options.workflow_id = Some(id.to_string());
        options.task_queue = Some(task_queue.to_string());
        options.execution_timeout = timeout;
        let started = self
            .ctx
            .start_child_workflow(
                temporalio_common::UntypedWorkflow::new(workflow_type),
                json_raw(&argument),
                options,
            )
            .await
            .map_err(|error| Problem::runtime(format!("cannot start {what}: {error}")))?;
        // The child's result says how its run ended (the API server records its phase a
        // moment later).
        if let Err(error) = started.result().await {
            if self.cancelled.get() {
                return Err(Problem::runtime("cancelled"));
            }
            let reason = error
                .failure()
                .map(|failure| failure.message.clone())
                .unwrap_or_else(|| error.to_string());
            return Err(Problem::runtime(format!(
                "the run {id} of {what} failed: {reason}"
            )));
        }
        Ok(())
    }

    fn note(&self, error: &ActivityExecutionError) {
        if matches!(error, ActivityExecutionError::Cancelled(_)) {
            self.cancelled.set(true);
        }
    }

    fn activity_problem(&self, what: &str, error: ActivityExecutionError) -> Problem {
        self.note(&error);
        if self.cancelled.get() {
            return Problem::runtime(format!("{what} was cancelled"));
        }
        Problem::communication(format!("{what} failed: {error}"))
    }
}

impl Host for TemporalHost {
    fn now(&self) -> SystemTime {
        self.ctx.workflow_time().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn uuid(&self) -> String {
        self.ctx.uuid4()
    }

    fn random(&self) -> f64 {
        self.ctx.random::<f64>()
    }

    async fn sleep(&self, duration: Duration) {
        self.flush().await;
        if let temporalio_sdk::TimerResult::Cancelled = self.ctx.timer(duration).await {
            self.cancelled.set(true);
        }
        if self.waiting.replace(false) {
            self.phase("running");
        }
    }

    async fn call_http(
        &self,
        task: &TaskRef,
        call: stigmer_workflow::http::HttpCall,
    ) -> Result<Value, Problem> {
        // Every method is retried after a lost runner: the activity records the call's
        // outcome under this key, and a non-idempotent call that was sent but whose outcome
        // was lost is reported, not repeated (decision D11).
        let number = self.http_calls.get() + 1;
        self.http_calls.set(number);
        let input = HttpInput {
            execution_id: self.execution_id.clone(),
            key: format!("http{}#{number}", task.reference),
            call,
            // The events so far ride with the call (stored before it is sent): no step of
            // their own.
            events: self.take_events(),
        };
        match self
            .ctx
            .execute_activity(WorkflowActivities::http_call, input, http_options())
            .await
        {
            Ok(outcome) => outcome.into_result(),
            Err(error) => {
                Err(self.activity_problem(&format!("the HTTP call of {}", task.reference), error))
            }
        }
    }

    async fn call_agent(&self, task: &TaskRef, call: AgentCall) -> Result<Value, Problem> {
        self.flush().await;
        let agent = call.agent.clone();
        let timeout = call.timeout_ms.map(Duration::from_millis);
        let input = AgentInput {
            execution_id: self.execution_id.clone(),
            key: self.call_key("agent", task),
            task: task.clone(),
            call,
        };
        let created = self
            .ctx
            .execute_activity(
                WorkflowActivities::create_agent_execution,
                input,
                step_options(Duration::from_secs(60), 4),
            )
            .await
            .map_err(|error| self.activity_problem(&format!("starting agent {agent:?}"), error))?
            .into_result()?;
        let agent_execution_id = created.as_str().unwrap_or_default().to_string();
        self.run_child(
            task,
            Child {
                event: "agent_call_started",
                id: &agent_execution_id,
                workflow_type: AGENT_WORKFLOW,
                task_queue: stigmer_config::AGENT_TASK_QUEUE,
                argument: Value::String(agent_execution_id.clone()),
                timeout,
                what: &format!("agent {agent:?}"),
            },
        )
        .await?;
        self.ctx
            .execute_activity(
                WorkflowActivities::agent_answer,
                agent_execution_id,
                step_options(Duration::from_secs(60), 4),
            )
            .await
            .map_err(|error| {
                self.activity_problem(&format!("reading agent {agent:?}'s answer"), error)
            })?
            .into_result()
    }

    async fn run_workflow(&self, task: &TaskRef, call: WorkflowCall) -> Result<Value, Problem> {
        self.flush().await;
        let name = call.name.clone();
        let input = ChildWorkflowInput {
            execution_id: self.execution_id.clone(),
            key: self.call_key("workflow", task),
            task: task.clone(),
            call,
        };
        let created = self
            .ctx
            .execute_activity(
                WorkflowActivities::create_workflow_execution,
                input,
                step_options(Duration::from_secs(60), 4),
            )
            .await
            .map_err(|error| {
                self.activity_problem(&format!("starting workflow {name:?}"), error)
            })?;
        let run = match (created.run, created.error) {
            (_, Some(error)) => return Err(error),
            (Some(run), None) => run,
            (None, None) => {
                return Err(Problem::runtime(format!(
                    "workflow {name:?} was not created"
                )));
            }
        };
        let child_id = run.execution_id.clone();
        // The child's last step stored its output or its error before it returned (a DSL
        // error is a result, not a failed workflow); the output step reads it.
        self.run_child(
            task,
            Child {
                event: "workflow_call_started",
                id: &child_id,
                workflow_type: WORKFLOW_TYPE,
                task_queue: stigmer_config::WORKFLOW_TASK_QUEUE,
                argument: serde_json::to_value(&run).unwrap_or(Value::Null),
                timeout: None,
                what: &format!("workflow {name:?}"),
            },
        )
        .await?;
        self.ctx
            .execute_activity(
                WorkflowActivities::workflow_output,
                child_id,
                step_options(Duration::from_secs(60), 4),
            )
            .await
            .map_err(|error| {
                self.activity_problem(&format!("reading workflow {name:?}'s output"), error)
            })?
            .into_result()
            .map_err(|error| error.at(&task.reference))
    }

    fn event(&self, event: TaskEvent) {
        let sequence = self.next_sequence();
        let (kind, data) = wire_event(&event);
        self.pending.borrow_mut().push(WireEvent {
            key: format!("task.{sequence}"),
            kind: kind.to_string(),
            data,
        });
        match event.kind {
            TaskEventKind::Started => {
                self.ctx
                    .set_current_details(format!("running {}", event.reference));
            }
            TaskEventKind::Waiting { .. } => {
                self.waiting.set(true);
                self.phase("waiting");
            }
            _ => {}
        }
    }
}

/// A child workflow a task runs: an agent's run or another workflow's.
struct Child<'a> {
    /// The event that names the child's execution under the task.
    event: &'static str,
    id: &'a str,
    workflow_type: &'static str,
    task_queue: &'static str,
    argument: Value,
    timeout: Option<Duration>,
    /// How errors name it: `agent "x"`, `workflow "y"`.
    what: &'a str,
}

/// A task event as the API server stores it.
pub fn wire_event(event: &TaskEvent) -> (&'static str, Value) {
    let base = |extra: Value| {
        let mut data = json!({"reference": event.reference, "name": event.name});
        if let (Some(map), Value::Object(more)) = (data.as_object_mut(), extra) {
            map.extend(more);
        }
        data
    };
    match &event.kind {
        TaskEventKind::Started => ("task_started", base(json!({}))),
        TaskEventKind::Completed { output } => {
            ("task_completed", base(json!({"output": trimmed(output)})))
        }
        TaskEventKind::Failed { error } => {
            ("task_failed", base(json!({"error": error.to_value()})))
        }
        TaskEventKind::Retried {
            attempt,
            error,
            delay_ms,
        } => (
            "task_retried",
            base(json!({"attempt": attempt, "error": error.to_value(), "delay_ms": delay_ms})),
        ),
        TaskEventKind::Skipped => ("task_skipped", base(json!({}))),
        TaskEventKind::Waiting { millis } => ("task_waiting", base(json!({"millis": millis}))),
    }
}

/// `value`, or a preview of it when its JSON is longer than [`EVENT_OUTPUT_LIMIT`].
pub fn trimmed(value: &Value) -> Value {
    let text = value.to_string();
    if text.len() <= EVENT_OUTPUT_LIMIT {
        return value.clone();
    }
    let mut cut = EVENT_OUTPUT_LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({"preview": format!("{}…", &text[..cut]), "bytes": text.len()})
}

fn json_raw(value: &Value) -> RawValue {
    RawValue {
        payloads: vec![Payload {
            metadata: [("encoding".to_owned(), b"json/plain".to_vec())]
                .into_iter()
                .collect(),
            data: serde_json::to_vec(value).unwrap_or_default(),
            ..Default::default()
        }],
    }
}

fn step_options(start_to_close: Duration, attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(attempts)
                .build(),
        )
        .build()
}

/// An HTTP call heartbeats, so a dead runner is noticed within seconds (and a cancel reaches
/// the call); the retries back off like the agent runner's steps, long enough for the
/// supervisor to replace a runner that stalled.
fn http_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(300))
        .heartbeat_timeout(crate::activities::HEARTBEAT_TIMEOUT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(4.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(5)
                .build(),
        )
        .build()
}

fn local_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .schedule_to_close_timeout(Duration::from_secs(120))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .maximum_attempts(5)
                .build(),
        )
        .build()
}

/// A cancelled step means the workflow was cancelled: end as cancelled, not failed.
fn ended(error: ActivityExecutionError) -> WorkflowTermination {
    match error {
        ActivityExecutionError::Cancelled(_) => WorkflowTermination::cancelled(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_outputs_are_previewed_in_events() {
        let long = Value::String("x".repeat(5000));
        let cut = trimmed(&long);
        assert_eq!(cut["bytes"], json!(5002));
        assert!(cut["preview"].as_str().unwrap().len() < 2100);
        assert_eq!(trimmed(&json!({"a": 1})), json!({"a": 1}));
    }

    #[test]
    fn task_events_keep_reference_and_name() {
        let event = TaskEvent {
            reference: "/do/0/fetch".into(),
            name: "fetch".into(),
            kind: TaskEventKind::Completed {
                output: json!({"id": 1}),
            },
        };
        assert_eq!(
            wire_event(&event),
            (
                "task_completed",
                json!({"reference": "/do/0/fetch", "name": "fetch", "output": {"id": 1}})
            )
        );
    }
}
