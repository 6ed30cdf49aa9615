//! Executions as resources and their Temporal workflows: create (with its session), start the
//! workflow, watch it to a terminal phase with a reason, cancel. Both kinds of execution go
//! through here, told apart by their id ([`execution_kind`]): an agent execution runs workflow
//! `stigmer.AgentExecution` on the agent runner's queue, a workflow execution
//! `stigmer.WorkflowExecution` on the workflow runner's.
//!
//! The server does not trust a runner to report the end: it awaits the workflow's result, and
//! while an execution is still `pending` after the pickup bound it asks Temporal whether any
//! runner polls the queue, failing the execution with that reason when none does. So no
//! execution stays "pending" forever. An agent execution that a workflow's `call: agent` task
//! created is started by the workflow runner, as a child workflow: until its workflow exists
//! the watcher waits, as long as the parent execution runs.

use crate::blocking::on_store;
use crate::error::ServerError;
use crate::hub::EventHub;
use crate::secrets::Secrets;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use stigmer_config::{AGENT_TASK_QUEUE, WORKFLOW_TASK_QUEUE};
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionEvent, ExecutionPhase, PhaseChanged,
    WorkflowExecutionSpec, WorkflowExecutionStatus,
};
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};
use stigmer_store::{NewEvent, Store};
use stigmer_temporal::TemporalProbe;
use stigmer_temporal::temporalio_client::{
    Client, UntypedWorkflow, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowStartOptions,
    WorkflowTerminateOptions,
};

/// The workflow type the agent runner implements.
pub const AGENT_WORKFLOW: &str = "stigmer.AgentExecution";

/// Where Temporal is, for the API server.
#[derive(Clone, Debug)]
pub struct TemporalTarget {
    pub address: String,
    pub namespace: String,
    /// How long an execution may stay `pending` before the server checks for pollers.
    pub pickup_timeout: Duration,
}

/// A lazily (re)connected Temporal client.
pub struct Gateway {
    target: Option<TemporalTarget>,
    connected: tokio::sync::Mutex<Option<(Client, TemporalProbe)>>,
}

impl Gateway {
    pub fn new(target: Option<TemporalTarget>) -> Self {
        Gateway {
            target,
            connected: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether a Temporal is configured at all.
    pub fn configured(&self) -> bool {
        self.target.is_some()
    }

    pub fn pickup_timeout(&self) -> Duration {
        self.target
            .as_ref()
            .map(|target| target.pickup_timeout)
            .unwrap_or(Duration::from_secs(30))
    }

    /// A connected client, or UNAVAILABLE saying which Temporal did not answer.
    pub async fn client(&self) -> Result<(Client, TemporalProbe), ServerError> {
        let Some(target) = &self.target else {
            return Err(ServerError::TemporalNotConfigured);
        };
        let mut connected = self.connected.lock().await;
        if let Some((client, probe)) = connected.as_ref() {
            // A cheap check, so a restarted or vanished Temporal is noticed at once.
            if probe.check_namespace().await.is_ok() {
                return Ok((client.clone(), probe.clone()));
            }
            *connected = None;
        }
        let unavailable = |reason: String| ServerError::TemporalUnavailable {
            address: target.address.clone(),
            reason,
        };
        let probe = tokio::time::timeout(
            Duration::from_secs(3),
            TemporalProbe::connect(&target.address, &target.namespace),
        )
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|error| unavailable(error.to_string()))?;
        probe
            .check_namespace()
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        let connection = stigmer_temporal::connect(&target.address, "stigmer-server")
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        let client = stigmer_temporal::client(connection, &target.namespace)
            .map_err(|error| unavailable(error.to_string()))?;
        *connected = Some((client.clone(), probe.clone()));
        Ok((client, probe))
    }
}

/// The envelope of a system-created resource.
pub fn system_resource(kind: Kind, id: &str, spec: Value, status: Value) -> Resource {
    let now = stigmer_resources::now();
    Resource {
        api_version: API_VERSION.into(),
        kind,
        metadata: Metadata {
            name: id.to_owned(),
            id: Some(id.to_owned()),
            created_at: Some(now.clone()),
            updated_at: Some(now),
            generation: Some(1),
            ..Metadata::default()
        },
        spec,
        status: Some(status),
    }
}

/// The phase recorded in an execution's status (of either kind: they share the phase fields).
pub fn phase_of(execution: &Resource) -> ExecutionPhase {
    AgentExecutionStatus::from_value(execution.status.as_ref()).phase
}

/// The kind of execution an id names, by its prefix (`aex-`, `wex-`); `None` for any other id.
pub fn execution_kind(execution_id: &str) -> Option<Kind> {
    [Kind::AgentExecution, Kind::WorkflowExecution]
        .into_iter()
        .find(|kind| {
            execution_id
                .strip_prefix(kind.id_prefix())
                .is_some_and(|rest| rest.starts_with('-'))
        })
}

/// The execution `execution_id` of either kind, if it exists.
pub fn find_execution(
    store: &dyn Store,
    execution_id: &str,
) -> Result<Option<Resource>, ServerError> {
    match execution_kind(execution_id) {
        Some(kind) => Ok(store.get(kind, execution_id)?),
        None => Ok(None),
    }
}

/// How a workflow execution ended, as its runner reported it: stored in its status.
pub enum WorkflowResult {
    Output(Value),
    Error(Value),
}

/// Records a phase change (status and event) unless the execution already ended. Returns
/// whether it changed anything. It calls the store: run it on the blocking pool, under the
/// append lock.
pub fn record_phase(
    store: &dyn Store,
    hub: &EventHub,
    execution_id: &str,
    phase: ExecutionPhase,
    reason: Option<&str>,
) -> Result<bool, ServerError> {
    record_phase_keyed(store, hub, execution_id, phase, reason, None, None)
}

/// [`record_phase`] for a phase a runner reported under its own idempotency key: the event is
/// stored under that key, so the same report sent again (a step replayed after its runner
/// died re-sends its events) changes nothing, even when the phase went back and forth since.
pub fn record_reported_phase(
    store: &dyn Store,
    hub: &EventHub,
    execution_id: &str,
    report_key: &str,
    phase: ExecutionPhase,
    reason: Option<&str>,
) -> Result<bool, ServerError> {
    record_phase_keyed(
        store,
        hub,
        execution_id,
        phase,
        reason,
        None,
        Some(report_key),
    )
}

/// [`record_phase`], storing a workflow execution's result with its terminal phase, in the
/// same write.
pub fn record_phase_with(
    store: &dyn Store,
    hub: &EventHub,
    execution_id: &str,
    phase: ExecutionPhase,
    reason: Option<&str>,
    result: Option<WorkflowResult>,
) -> Result<bool, ServerError> {
    record_phase_keyed(store, hub, execution_id, phase, reason, result, None)
}

fn record_phase_keyed(
    store: &dyn Store,
    hub: &EventHub,
    execution_id: &str,
    phase: ExecutionPhase,
    reason: Option<&str>,
    result: Option<WorkflowResult>,
    report_key: Option<&str>,
) -> Result<bool, ServerError> {
    let Some(mut execution) = find_execution(store, execution_id)? else {
        return Err(ServerError::ExecutionNotFound {
            execution_id: execution_id.to_owned(),
        });
    };
    let current = phase_of(&execution);
    if current.is_terminal() || current == phase {
        return Ok(false);
    }
    let now = stigmer_resources::now();
    // A workflow goes back and forth between `running` and `waiting`: each return is an event
    // of its own (the phase check above keeps a retried report from adding one).
    let key = match (report_key, current) {
        (Some(report_key), _) => report_key.to_owned(),
        (None, ExecutionPhase::Waiting) => format!("phase.{phase}.{now}"),
        (None, _) if phase == ExecutionPhase::Waiting => format!("phase.{phase}.{now}"),
        (None, _) => format!("phase.{phase}"),
    };
    // The event first: a key stored before (a repeated report) stores nothing and changes
    // nothing.
    let (kind, data) =
        ExecutionEvent::from(PhaseChanged::new(phase, reason.map(str::to_owned))).into_wire();
    let stored = store.append_events(execution_id, &[NewEvent { key, kind, data }], &now)?;
    if stored.is_empty() {
        return Ok(false);
    }
    // Each kind through its own typed status, so that the fields only one kind has (a
    // workflow's output) are kept.
    execution.status = Some(match execution.kind {
        Kind::WorkflowExecution => {
            let mut status = WorkflowExecutionStatus::from_value(execution.status.as_ref());
            status.phase = phase;
            status.reason = reason.map(str::to_owned);
            if phase == ExecutionPhase::Running && status.started_at.is_none() {
                status.started_at = Some(now.clone());
            }
            if phase.is_terminal() {
                status.finished_at = Some(now.clone());
            }
            match result {
                Some(WorkflowResult::Output(output)) => status.output = Some(output),
                Some(WorkflowResult::Error(error)) => status.error = Some(error),
                None => {}
            }
            status.to_value()
        }
        _ => {
            let mut status = AgentExecutionStatus::from_value(execution.status.as_ref());
            status.phase = phase;
            status.reason = reason.map(str::to_owned);
            if phase == ExecutionPhase::Running && status.started_at.is_none() {
                status.started_at = Some(now.clone());
            }
            if phase.is_terminal() {
                status.finished_at = Some(now.clone());
                // Nothing waits for a decision once the run has ended.
                status.pending_approvals.clear();
            }
            status.to_value()
        }
    });
    execution.metadata.updated_at = Some(now.clone());
    store.put_all(&[execution.clone()])?;
    // A sub-agent run that ended: its parent's status says how, with its answer.
    crate::sub_agents::record_end(store, &execution, phase, reason, &now)?;
    // Its trace's root span (and a workflow's task spans), when traces are exported.
    crate::telemetry::execution_ended(store, &execution, phase, reason, &now);
    for event in stored {
        hub.publish(event);
    }
    Ok(true)
}

/// The Temporal workflow an execution runs: its type, its task queue and its one argument.
pub struct WorkflowRun<'a> {
    pub workflow_type: &'static str,
    pub task_queue: &'static str,
    pub argument: &'a Value,
}

impl WorkflowRun<'_> {
    /// An agent execution's run: its argument is the execution id.
    pub fn agent(execution_id: &Value) -> WorkflowRun<'_> {
        WorkflowRun {
            workflow_type: AGENT_WORKFLOW,
            task_queue: AGENT_TASK_QUEUE,
            argument: execution_id,
        }
    }

    /// A workflow execution's run: its argument is the `WorkflowRunInput`.
    pub fn workflow(input: &Value) -> WorkflowRun<'_> {
        WorkflowRun {
            workflow_type: stigmer_proto::execution::WORKFLOW_WORKFLOW,
            task_queue: WORKFLOW_TASK_QUEUE,
            argument: input,
        }
    }
}

/// Starts the workflow of an execution, with the execution id as workflow id.
pub async fn start_workflow(
    client: &Client,
    execution_id: &str,
    run: WorkflowRun<'_>,
) -> Result<(), ServerError> {
    use stigmer_temporal::temporalio_common::data_converters::RawValue;
    use stigmer_temporal::temporalio_common::protos::temporal::api::common::v1::Payload;
    let payload = Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())]
            .into_iter()
            .collect(),
        data: serde_json::to_vec(run.argument).unwrap_or_default(),
        ..Default::default()
    };
    client
        .start_workflow(
            UntypedWorkflow::new(run.workflow_type),
            RawValue {
                payloads: vec![payload],
            },
            WorkflowStartOptions::new(run.task_queue, execution_id).build(),
        )
        .await
        .map_err(|error| ServerError::WorkflowStart {
            reason: error.to_string(),
        })?;
    Ok(())
}

/// What the watcher needs, shared with the API.
pub struct Watch {
    pub store: Arc<dyn Store>,
    pub hub: Arc<EventHub>,
    pub append_lock: Arc<tokio::sync::Mutex<()>>,
    pub secrets: Arc<Secrets>,
}

impl Watch {
    async fn phase(&self, execution_id: &str, phase: ExecutionPhase, reason: Option<&str>) {
        if phase.is_terminal() {
            self.secrets.forget(execution_id);
        }
        let guard = self.append_lock.clone().lock_owned().await;
        let hub = self.hub.clone();
        let id = execution_id.to_owned();
        let why = reason.map(str::to_owned);
        let recorded = on_store(&self.store, move |store| {
            let _guard = guard;
            record_phase(store, &hub, &id, phase, why.as_deref())
        })
        .await;
        match recorded {
            Ok(true) if phase == ExecutionPhase::Failed => {
                tracing::warn!(execution_id, phase = %phase, reason, "Execution ended.");
            }
            Ok(true) if phase.is_terminal() => {
                tracing::info!(execution_id, phase = %phase, reason, "Execution ended.");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(execution_id, error = %error, "Cannot record a phase.");
            }
        }
    }

    async fn current_phase(&self, execution_id: &str) -> ExecutionPhase {
        let id = execution_id.to_owned();
        on_store(&self.store, move |store| find_execution(store, &id))
            .await
            .ok()
            .flatten()
            .map(|execution| phase_of(&execution))
            .unwrap_or_default()
    }

    /// The workflow execution that created this execution (a child run of one of its tasks),
    /// if one did.
    async fn parent(&self, execution_id: &str) -> Option<String> {
        let id = execution_id.to_owned();
        let execution = on_store(&self.store, move |store| find_execution(store, &id))
            .await
            .ok()
            .flatten()?;
        let parent = match execution.kind {
            Kind::AgentExecution => AgentExecutionSpec::from_value(&execution.spec).ok()?.parent,
            // A workflow run of a workflow's `run: workflow` task.
            Kind::WorkflowExecution => {
                WorkflowExecutionSpec::from_value(&execution.spec)
                    .ok()?
                    .parent
            }
            _ => None,
        };
        parent.map(|parent| parent.execution_id)
    }
}

/// How long the watcher of an agent execution started by a workflow waits between looks for
/// its workflow, at most.
const CHILD_POLL_MAX: Duration = Duration::from_secs(2);

/// Follows an execution's workflow until it ends and records the terminal phase with a reason.
pub async fn watch_execution(
    watch: Arc<Watch>,
    client: Client,
    probe: TemporalProbe,
    execution_id: String,
    pickup_timeout: Duration,
) {
    use stigmer_temporal::temporalio_client::errors::WorkflowGetResultError;
    let (task_queue, runner) = match execution_kind(&execution_id) {
        Some(Kind::WorkflowExecution) => (WORKFLOW_TASK_QUEUE, "workflow-runner"),
        _ => (AGENT_TASK_QUEUE, "agent-runner"),
    };
    // An agent run of a workflow's `call: agent` task: the workflow runner starts its workflow.
    let parent = watch.parent(&execution_id).await;
    let handle = client.get_workflow_handle::<UntypedWorkflow>(execution_id.clone());
    let mut deadline = tokio::time::Instant::now() + pickup_timeout;
    let mut child_poll = Duration::from_millis(100);
    let outcome = 'watch: loop {
        let result = handle.get_result(WorkflowGetResultOptions::default());
        tokio::pin!(result);
        let outcome = loop {
            tokio::select! {
                outcome = &mut result => break outcome,
                () = tokio::time::sleep_until(deadline) => {
                    if watch.current_phase(&execution_id).await != ExecutionPhase::Pending {
                        // Picked up: from now on only the result matters.
                        deadline = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
                        continue;
                    }
                    let pollers = probe.poller_identities(task_queue).await.unwrap_or_default();
                    if pollers.is_empty() {
                        let reason = format!(
                            "no {runner} is polling task queue {task_queue} — see `stigmer server status`"
                        );
                        let _ = handle
                            .terminate(WorkflowTerminateOptions::builder().reason(reason.clone()).build())
                            .await;
                        watch.phase(&execution_id, ExecutionPhase::Failed, Some(&reason)).await;
                        return;
                    }
                    // A runner polls but is busy: keep waiting, and check again later.
                    deadline = tokio::time::Instant::now() + pickup_timeout;
                }
            }
        };
        let Some(parent) = parent.as_deref() else {
            break outcome;
        };
        if !matches!(outcome, Err(WorkflowGetResultError::NotFound(_))) {
            break outcome;
        }
        // Not started yet: wait as long as the parent runs (its watcher ends it, so this
        // ends too) and this execution has not ended otherwise (a cancel).
        if watch.current_phase(&execution_id).await.is_terminal() {
            return;
        }
        if watch.current_phase(parent).await.is_terminal() {
            // A last look: the parent may have started it just before it ended.
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Err(WorkflowGetResultError::NotFound(_)) => {
                    let what = if runner == "workflow-runner" {
                        "workflow"
                    } else {
                        "agent"
                    };
                    let reason = format!(
                        "its workflow execution {parent} ended before starting this {what} run"
                    );
                    watch
                        .phase(&execution_id, ExecutionPhase::Failed, Some(&reason))
                        .await;
                    return;
                }
                outcome => break 'watch outcome,
            }
        }
        tokio::time::sleep(child_poll).await;
        child_poll = (child_poll * 2).min(CHILD_POLL_MAX);
    };
    match outcome {
        Ok(_) => {
            watch
                .phase(&execution_id, ExecutionPhase::Completed, None)
                .await
        }
        Err(WorkflowGetResultError::Cancelled { .. }) => {
            watch
                .phase(
                    &execution_id,
                    ExecutionPhase::Cancelled,
                    Some("cancelled by request"),
                )
                .await;
        }
        Err(WorkflowGetResultError::Failed(error)) => {
            let reason = failure_reason(error.failure());
            watch
                .phase(&execution_id, ExecutionPhase::Failed, Some(&reason))
                .await;
        }
        Err(WorkflowGetResultError::TimedOut) => {
            watch
                .phase(
                    &execution_id,
                    ExecutionPhase::Failed,
                    Some("the execution timed out"),
                )
                .await;
        }
        Err(WorkflowGetResultError::Terminated { .. }) => {
            watch
                .phase(
                    &execution_id,
                    ExecutionPhase::Failed,
                    Some("the execution's workflow was terminated in Temporal"),
                )
                .await;
        }
        Err(error) => {
            let reason = error.to_string();
            watch
                .phase(&execution_id, ExecutionPhase::Failed, Some(&reason))
                .await;
        }
    }
}

/// The innermost message of a failure chain: an activity failure wraps the error the step
/// reported (the provider's message, the turn limit), and that is what the user needs.
pub fn failure_reason(
    failure: &stigmer_temporal::temporalio_common::protos::temporal::api::failure::v1::Failure,
) -> String {
    let mut current = failure;
    while let Some(cause) = current.cause.as_deref() {
        current = cause;
    }
    let message = current.message.trim();
    if message.is_empty() {
        failure.message.clone()
    } else {
        message.to_owned()
    }
}

/// Requests cancellation of an execution's workflow.
pub async fn cancel_workflow(client: &Client, execution_id: &str) -> Result<(), ServerError> {
    client
        .get_workflow_handle::<UntypedWorkflow>(execution_id.to_owned())
        .cancel(
            WorkflowCancelOptions::builder()
                .reason("cancelled by request".to_owned())
                .build(),
        )
        .await
        .map_err(|error| ServerError::WorkflowCancel {
            reason: error.to_string(),
        })
}
