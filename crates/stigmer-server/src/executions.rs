//! `ExecutionService`: the RPCs of executions over the store and Temporal. Agent and workflow
//! executions share them, told apart by their id (`aex-…`, `wex-…`); `GetRunContext`,
//! `SaveMessages` and `SaveToolSnapshot` are an agent run's, `SetWorkflowResult` a workflow
//! run's.
//!
//! Appends are serialised: the store numbers the events and, after the transaction commits,
//! the hub (`hub.rs`) announces the execution's last sequence number; a `Subscribe` stream
//! (`subscribe.rs`) reads the store after its last `seq`, one page at a time. Every store call
//! runs on the blocking pool (`blocking.rs`), never on an async worker thread.

use crate::approvals::{decided_events, decision_of, fold_approval, send_decision};
use crate::blocking::on_store;
use crate::error::{ServerError, resource_json};
use crate::hub::EventHub;
use crate::lifecycle::{
    Gateway, TemporalTarget, Watch, WorkflowResult, WorkflowRun, cancel_workflow, execution_kind,
    find_execution, phase_of, record_phase, record_phase_with, record_reported_phase,
    start_workflow, system_resource, watch_execution,
};
use crate::secrets::{Secrets, redact, redact_value};
use crate::sub_agents;
use crate::subscribe::{EventStream, SubscriptionLimits, event_stream};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionEvent as TypedEvent, ExecutionKind,
    ExecutionParent, ExecutionPhase, PhaseChanged, RunTotals, WorkflowExecutionSpec,
    WorkflowExecutionStatus, WorkflowRunInput,
};
use stigmer_proto::executions::v1::MessagePlace as ProtoMessagePlace;
use stigmer_proto::executions::v1::execution_service_server::ExecutionService;
use stigmer_proto::executions::v1::get_run_context_request::Messages as WantedMessages;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, AppendEventsResponse, DecideApprovalsRequest, DecideApprovalsResponse,
    GetRunContextRequest, RunContext, SaveMessagesRequest, SaveMessagesResponse,
    SaveToolSnapshotRequest, SaveToolSnapshotResponse, SetWorkflowResultRequest,
    SetWorkflowResultResponse, SubscribeRequest,
};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CancelExecutionResponse, CreateExecutionRequest,
    CreateExecutionResponse, GetExecutionRequest, GetExecutionResponse, ListExecutionsRequest,
    ListExecutionsResponse,
};
use stigmer_proto::executions::v1::{
    GetExecutionStateRequest, GetExecutionStateResponse, PutExecutionStateRequest,
    PutExecutionStateResponse,
};
use stigmer_resources::{Kind, Resource, suggest};
use stigmer_store::{MessagePlace, NewEvent, Store, StoredEvent, StoredMessage};
use tonic::{Request, Response, Status};

/// The execution API over a store and Temporal.
#[derive(Clone)]
pub struct ExecutionApi {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    append_lock: Arc<tokio::sync::Mutex<()>>,
    gateway: Arc<Gateway>,
    secrets: Arc<Secrets>,
    limits: Arc<SubscriptionLimits>,
}

impl ExecutionApi {
    pub fn new(store: Arc<dyn Store>, temporal: Option<TemporalTarget>) -> Self {
        ExecutionApi {
            store,
            hub: Arc::new(EventHub::default()),
            append_lock: Arc::new(tokio::sync::Mutex::new(())),
            gateway: Arc::new(Gateway::new(temporal)),
            secrets: Arc::new(Secrets::default()),
            limits: Arc::new(SubscriptionLimits::default()),
        }
    }

    /// The announcements of stored events (the HTTP API's streams listen to it).
    pub(crate) fn hub(&self) -> &EventHub {
        &self.hub
    }

    /// Watches the executions a previous server left unfinished, once Temporal answers, so
    /// they too reach a terminal phase.
    pub fn resume_watches(&self) {
        let store = self.store.clone();
        let gateway = self.gateway.clone();
        let watch = self.watch();
        tokio::spawn(async move {
            let listed = on_store(&store, |store| {
                let mut executions = store.list(Kind::AgentExecution)?;
                executions.extend(store.list(Kind::WorkflowExecution)?);
                Ok::<_, ServerError>(executions)
            })
            .await;
            let unfinished: Vec<String> = match listed {
                Ok(executions) => executions
                    .iter()
                    .filter(|execution| !phase_of(execution).is_terminal())
                    .map(|execution| execution.metadata.name.clone())
                    .collect(),
                Err(error) => {
                    tracing::error!(error = %error, "Cannot list executions to resume watching them.");
                    return;
                }
            };
            if unfinished.is_empty() {
                return;
            }
            let mut delay = std::time::Duration::from_millis(200);
            let (client, probe) = loop {
                match gateway.client().await {
                    Ok(connected) => break connected,
                    Err(error) if gateway.configured() => {
                        tracing::debug!(error = %error, "Temporal not ready; will resume watches later.");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(5));
                    }
                    Err(_) => return,
                }
            };
            tracing::info!(
                count = unfinished.len(),
                "Resuming the watch of unfinished executions."
            );
            for execution_id in unfinished {
                tokio::spawn(watch_execution(
                    watch.clone(),
                    client.clone(),
                    probe.clone(),
                    execution_id,
                    gateway.pickup_timeout(),
                ));
            }
        });
    }

    fn watch(&self) -> Arc<Watch> {
        Arc::new(Watch {
            store: self.store.clone(),
            hub: self.hub.clone(),
            append_lock: self.append_lock.clone(),
            secrets: self.secrets.clone(),
        })
    }

    /// The execution `execution_id`, read on the blocking pool.
    async fn execution(&self, execution_id: &str) -> Result<Resource, ServerError> {
        let execution_id = execution_id.to_owned();
        on_store(&self.store, move |store| execution(store, &execution_id)).await
    }
}

/// The execution `execution_id` of either kind, or NOT_FOUND.
fn execution(store: &dyn Store, execution_id: &str) -> Result<Resource, ServerError> {
    find_execution(store, execution_id)?.ok_or_else(|| ServerError::ExecutionNotFound {
        execution_id: execution_id.to_owned(),
    })
}

/// The execution `execution_id`, which must be of `kind` (INVALID_ARGUMENT otherwise).
fn execution_of_kind(
    store: &dyn Store,
    execution_id: &str,
    kind: Kind,
) -> Result<Resource, ServerError> {
    let execution = execution(store, execution_id)?;
    if execution.kind != kind {
        return Err(ServerError::WrongExecutionKind {
            execution_id: execution_id.to_owned(),
            expected: match kind {
                Kind::WorkflowExecution => "a workflow execution",
                _ => "an agent execution",
            },
        });
    }
    Ok(execution)
}

/// What an execution asks for, read through the typed protocol.
fn spec_of(execution: &Resource) -> Result<AgentExecutionSpec, ServerError> {
    AgentExecutionSpec::from_value(&execution.spec).map_err(|error| ServerError::UnreadableSpec {
        execution_id: execution.metadata.name.clone(),
        error,
    })
}

/// The whole conversation of `execution` through `through_turn`: the messages of the earlier
/// executions of its session that completed, then its own. A run reads it on its first model
/// turn, and again only when its runner lost what it held.
fn conversation(
    store: &dyn Store,
    execution: &Resource,
    session: &str,
    through_turn: u32,
) -> Result<Vec<StoredMessage>, ServerError> {
    let created = execution.metadata.created_at.clone().unwrap_or_default();
    // Earlier executions of the session count only when they completed: a failed or
    // cancelled one may have left a tool call without its result, which models refuse.
    let mut earlier_completed: HashMap<String, bool> = HashMap::new();
    let mut messages = Vec::new();
    // A sub-agent run reads only its own messages: the task it was given, not the session.
    let own_only = sub_agents::is_sub_agent_run(execution);
    for message in store.session_messages(session)? {
        let include = if message.execution_id == execution.metadata.name {
            message.turn <= through_turn
        } else if own_only {
            false
        } else {
            *earlier_completed
                .entry(message.execution_id.clone())
                .or_insert_with(|| {
                    store
                        .get(Kind::AgentExecution, &message.execution_id)
                        .ok()
                        .flatten()
                        .is_some_and(|other| {
                            // A sub-agent's conversation was its own: only its answer reached
                            // the run that asked for it.
                            phase_of(&other) == ExecutionPhase::Completed
                                && !sub_agents::is_sub_agent_run(&other)
                                && other.metadata.created_at.clone().unwrap_or_default() < created
                        })
                })
        };
        if include {
            messages.push(message);
        }
    }
    Ok(messages)
}

/// The McpServer and Skill resources an agent names, as JSON, in its order.
#[derive(Default)]
struct AgentTools {
    mcp_servers_json: Vec<String>,
    skills_json: Vec<String>,
    snapshot_json: String,
}

/// The key of an execution's tool snapshot in its stored state.
const TOOL_SNAPSHOT: &str = "tools";

/// Where a key of `PutExecutionState` is stored: apart from the server's own keys (such as
/// [`TOOL_SNAPSHOT`]), so that a runner cannot overwrite them.
fn runner_state_key(key: &str) -> String {
    format!("runner/{key}")
}

fn agent_tools(store: &dyn Store, agent: &Resource) -> Result<AgentTools, ServerError> {
    let names = |field: &str| -> Vec<String> {
        agent.spec[field]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let load = |kind: Kind, label: &'static str, field: &str| {
        names(field)
            .into_iter()
            .map(|name| {
                let resource =
                    store
                        .get(kind, &name)?
                        .ok_or_else(|| ServerError::ReferenceDeleted {
                            kind: label,
                            name: name.clone(),
                            agent: agent.metadata.name.clone(),
                        })?;
                resource_json(&resource)
            })
            .collect::<Result<Vec<String>, ServerError>>()
    };
    Ok(AgentTools {
        mcp_servers_json: load(Kind::McpServer, "McpServer", "mcpServers")?,
        skills_json: load(Kind::Skill, "Skill", "skills")?,
        snapshot_json: String::new(),
    })
}

/// FAILED_PRECONDITION once an execution has ended: nothing more may be written to it.
fn ensure_open(execution: &Resource) -> Result<(), ServerError> {
    let phase = phase_of(execution);
    if phase.is_terminal() {
        return Err(ServerError::ExecutionEnded {
            execution_id: execution.metadata.name.clone(),
            phase,
        });
    }
    Ok(())
}

/// The run's variables against what the agent declares: every variable without a default
/// must be given, and a secret one only as a secret.
fn check_variables(
    agent: &Resource,
    env: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<(), ServerError> {
    let Some(declared) = agent.spec.get("env").and_then(|env| env.as_object()) else {
        return Ok(());
    };
    for (name, declaration) in declared {
        let secret = declaration["secret"].as_bool().unwrap_or(false);
        if secret && env.contains_key(name) {
            return Err(ServerError::SecretAsVariable {
                name: name.clone(),
                agent: agent.metadata.name.clone(),
            });
        }
        let given = env.contains_key(name) || secrets.contains_key(name);
        if !given && declaration.get("default").is_none_or(|d| d.is_null()) {
            return Err(ServerError::MissingVariable {
                name: name.clone(),
                agent: agent.metadata.name.clone(),
                secret,
            });
        }
    }
    Ok(())
}

fn place_of(place: ProtoMessagePlace) -> MessagePlace {
    MessagePlace::new(place.turn, place.index)
}

/// The events of an append read through the typed protocol: phase changes apart (they go
/// through the execution's status), the others in their wire form.
fn typed_events(
    events: Vec<stigmer_proto::executions::v1::NewEvent>,
) -> Result<Vec<Appended>, ServerError> {
    let mut appended: Vec<Appended> = Vec::with_capacity(1);
    for event in events {
        let typed = event.event().map_err(|error| ServerError::InvalidEvent {
            key: event.key.clone(),
            error,
        })?;
        match typed {
            // A runner reports `running` (and may report an end) as phase events; those go
            // through the status, so the execution resource and its log agree.
            TypedEvent::PhaseChanged(changed) => {
                if changed.phase == ExecutionPhase::Pending {
                    return Err(ServerError::BackToPending { key: event.key });
                }
                appended.push(Appended::Phase(event.key, changed));
            }
            typed => {
                let (kind, data) = typed.into_wire();
                let event = NewEvent {
                    key: event.key,
                    kind,
                    data,
                };
                match appended.last_mut() {
                    Some(Appended::Events(events)) => events.push(event),
                    _ => appended.push(Appended::Events(vec![event])),
                }
            }
        }
    }
    Ok(appended)
}

/// An append, in the order it came: runs of plain events, and the phase changes between them.
enum Appended {
    Events(Vec<NewEvent>),
    Phase(String, PhaseChanged),
}

/// Appends the parts of an append in their order and returns the `seq` of each event stored
/// (a retried key is dropped by the store). Run it on the blocking pool, under the append lock,
/// for an execution that has not ended.
fn append_parts(
    store: &dyn Store,
    hub: &EventHub,
    execution_id: &str,
    parts: Vec<Appended>,
) -> Result<Vec<u64>, ServerError> {
    let mut seqs: Vec<u64> = Vec::new();
    // In the order they came, so that a phase reported between two events shows there.
    for part in parts {
        match part {
            Appended::Events(events) => {
                let stored =
                    store.append_events(execution_id, &events, &stigmer_resources::now())?;
                seqs.extend(stored.iter().map(|event| event.seq));
                fold_into_status(store, execution_id, &stored)?;
                for event in stored {
                    hub.publish(event);
                }
            }
            Appended::Phase(key, changed) => {
                record_reported_phase(
                    store,
                    hub,
                    execution_id,
                    &key,
                    changed.phase,
                    changed.reason.as_deref(),
                )?;
                if let Some(last) = store
                    .events_after(execution_id, seqs.last().copied().unwrap_or(0), 1)
                    .ok()
                    .and_then(|events| events.into_iter().last())
                {
                    seqs.push(last.seq);
                }
            }
        }
    }
    Ok(seqs)
}

/// Folds the approvals, the sub-agent starts and the model turns among events just stored into
/// the agent execution's status (`pendingApprovals`, `subAgents`, `totals`), writing it only
/// when it changed.
fn fold_into_status(
    store: &dyn Store,
    execution_id: &str,
    stored: &[StoredEvent],
) -> Result<(), ServerError> {
    let approvals: Vec<TypedEvent> = stored
        .iter()
        .filter_map(|event| TypedEvent::from_wire(&event.kind, &event.data).ok())
        .filter(|event| {
            matches!(
                event,
                TypedEvent::ApprovalRequested(_)
                    | TypedEvent::ApprovalDecided(_)
                    | TypedEvent::SubAgentStarted(_)
                    | TypedEvent::Usage(_)
                    | TypedEvent::MessageCompleted(_)
            )
        })
        .collect();
    if approvals.is_empty() || execution_kind(execution_id) != Some(Kind::AgentExecution) {
        return Ok(());
    }
    let Some(mut execution) = find_execution(store, execution_id)? else {
        return Ok(());
    };
    let mut status = AgentExecutionStatus::from_value(execution.status.as_ref());
    let mut changed = false;
    let now = stigmer_resources::now();
    for event in &approvals {
        changed |= fold_approval(&mut status, event);
        changed |= sub_agents::fold_started(&mut status, event, &now);
        changed |= fold_totals(&mut status.totals, event);
    }
    if changed {
        execution.status = Some(status.to_value());
        execution.metadata.updated_at = Some(stigmer_resources::now());
        store.put_all(&[execution])?;
    }
    Ok(())
}

/// Counts a model turn's tokens and tool calls into the execution's totals; true when they
/// changed. A sub-agent's events (those with a parent) count in the sub-agent's own run.
fn fold_totals(totals: &mut RunTotals, event: &TypedEvent) -> bool {
    if event.parent().is_some() {
        return false;
    }
    match event {
        TypedEvent::Usage(usage) => {
            totals.input_tokens += usage.input_tokens;
            totals.output_tokens += usage.output_tokens;
            if usage.model.is_some() {
                totals.model.clone_from(&usage.model);
                totals.provider.clone_from(&usage.provider);
            }
            true
        }
        TypedEvent::MessageCompleted(completed) => {
            totals.turns = totals.turns.max(completed.turn);
            totals.tool_calls += completed.tool_calls.len() as u32;
            true
        }
        _ => false,
    }
}

/// An Environment a run names, or NOT_FOUND with a suggestion.
fn environment(
    store: &dyn Store,
    name: &str,
) -> Result<stigmer_resources::EnvironmentSpec, ServerError> {
    let Some(found) = store.get(Kind::Environment, name)? else {
        let names = store.names(Kind::Environment)?;
        return Err(ServerError::ResourceNotFound {
            kind: Kind::Environment,
            name: name.to_owned(),
            suggestion: suggest(name, names.iter().map(String::as_str)).map(str::to_owned),
        });
    };
    serde_json::from_value(found.spec).map_err(ServerError::Encode)
}

/// The agent `name`, or NOT_FOUND with the closest name there is.
fn agent(store: &dyn Store, name: &str) -> Result<Resource, ServerError> {
    if let Some(agent) = store.get(Kind::Agent, name)? {
        return Ok(agent);
    }
    let names = store.names(Kind::Agent)?;
    Err(ServerError::AgentNotFound {
        agent: name.to_owned(),
        suggestion: suggest(name, names.iter().map(String::as_str)).map(str::to_owned),
    })
}

/// The Workflow `name`, or NOT_FOUND with the closest name there is.
fn workflow(store: &dyn Store, name: &str) -> Result<Resource, ServerError> {
    if let Some(workflow) = store.get(Kind::Workflow, name)? {
        return Ok(workflow);
    }
    let names = store.names(Kind::Workflow)?;
    Err(ServerError::WorkflowNotFound {
        workflow: name.to_owned(),
        suggestion: suggest(name, names.iter().map(String::as_str)).map(str::to_owned),
    })
}

/// Refuses a Workflow whose document does not have the `namespace` (empty: any) and `version`
/// (empty or `latest`: any) a `run: workflow` task asks for: NOT_FOUND saying what is stored.
fn check_variant(
    name: &str,
    definition: &serde_json::Value,
    namespace: &str,
    version: &str,
) -> Result<(), ServerError> {
    let field = |field: &str, default: &str| {
        definition["document"][field]
            .as_str()
            .unwrap_or(default)
            .to_owned()
    };
    let stored_namespace = field("namespace", stigmer_resources::DEFAULT_NAMESPACE);
    let stored_version = field("version", stigmer_resources::DEFAULT_VERSION);
    let wanted = if !namespace.is_empty() && namespace != stored_namespace {
        format!("in namespace {namespace:?}")
    } else if !version.is_empty() && version != "latest" && version != stored_version {
        format!("version {version:?}")
    } else {
        return Ok(());
    };
    Err(ServerError::WorkflowVariantNotFound {
        workflow: name.to_owned(),
        wanted,
        found: format!("namespace {stored_namespace:?}, version {stored_version:?}"),
    })
}

/// JSON text a request carries, or INVALID_ARGUMENT naming `what` it is.
fn parse_json(what: &'static str, text: &str) -> Result<serde_json::Value, ServerError> {
    serde_json::from_str(text).map_err(|error| ServerError::NotJson { what, error })
}

/// The reason a faulted workflow execution records: its error's `detail`, else its `title`,
/// else its `type`, on one line (the whole error is in the execution's status).
fn error_reason(error: &serde_json::Value) -> String {
    let text = ["detail", "title", "type"]
        .into_iter()
        .find_map(|field| {
            error
                .get(field)
                .and_then(serde_json::Value::as_str)
                .filter(|text| !text.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| match error {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuses a field given for the kind of execution it does not apply to.
fn refuse_field(given: bool, field: &'static str, kind: &'static str) -> Result<(), ServerError> {
    if given {
        return Err(ServerError::FieldNotForKind { field, kind });
    }
    Ok(())
}

impl ExecutionApi {
    /// A run's variables and secrets: its Environments' first, in order, then its own `--env`
    /// and `--secret` over them. Sets them in `request`.
    async fn run_variables(&self, request: &mut CreateExecutionRequest) -> Result<(), ServerError> {
        let names = request.environments.clone();
        let environments = on_store(&self.store, move |store| {
            names
                .iter()
                .map(|name| environment(store, name))
                .collect::<Result<Vec<_>, ServerError>>()
        })
        .await?;
        let (mut env, mut secrets) = (HashMap::new(), HashMap::new());
        for environment in environments {
            for (name, variable) in environment.variables {
                env.remove(&name);
                secrets.remove(&name);
                if variable.secret {
                    secrets.insert(name, variable.value);
                } else {
                    env.insert(name, variable.value);
                }
            }
        }
        for (name, value) in std::mem::take(&mut request.env) {
            secrets.remove(&name);
            env.insert(name, value);
        }
        for (name, value) in std::mem::take(&mut request.secrets) {
            env.remove(&name);
            secrets.insert(name, value);
        }
        request.env = env;
        request.secrets = secrets;
        Ok(())
    }

    /// Stores new resources (the execution among them) with the execution's `pending` event.
    async fn store_created(
        &self,
        created: Vec<Resource>,
        execution_id: &str,
    ) -> Result<(), ServerError> {
        let guard = self.append_lock.clone().lock_owned().await;
        let hub = self.hub.clone();
        let execution_id = execution_id.to_owned();
        on_store(&self.store, move |store| {
            let _guard = guard;
            store.put_all(&created)?;
            let (kind, data) =
                TypedEvent::from(PhaseChanged::new(ExecutionPhase::Pending, None)).into_wire();
            let stored = store.append_events(
                &execution_id,
                &[NewEvent {
                    key: "phase.pending".into(),
                    kind,
                    data,
                }],
                &stigmer_resources::now(),
            )?;
            for event in stored {
                hub.publish(event);
            }
            Ok::<_, ServerError>(())
        })
        .await
    }

    /// Starts an execution's workflow; when Temporal refuses, the execution fails with the
    /// reason and the caller gets the error.
    async fn start_or_fail(
        &self,
        client: &stigmer_temporal::temporalio_client::Client,
        execution_id: &str,
        run: WorkflowRun<'_>,
    ) -> Result<(), ServerError> {
        let Err(error) = start_workflow(client, execution_id, run).await else {
            return Ok(());
        };
        self.secrets.forget(execution_id);
        let guard = self.append_lock.clone().lock_owned().await;
        let hub = self.hub.clone();
        let id = execution_id.to_owned();
        let reason = error.to_string();
        on_store(&self.store, move |store| {
            let _guard = guard;
            record_phase(store, &hub, &id, ExecutionPhase::Failed, Some(&reason))
        })
        .await?;
        Err(error)
    }

    async fn create_agent_execution(
        &self,
        mut request: CreateExecutionRequest,
    ) -> Result<CreateExecutionResponse, ServerError> {
        for (given, field) in [
            (!request.input_json.is_empty(), "input_json"),
            (!request.workflow_namespace.is_empty(), "workflow_namespace"),
            (!request.workflow_version.is_empty(), "workflow_version"),
        ] {
            refuse_field(given, field, "agent")?;
        }
        if !request.parent_task.is_empty() && request.parent_execution_id.is_empty() {
            return Err(ServerError::ParentTaskAlone);
        }
        let agent_name = request.agent.clone();
        let agent = on_store(&self.store, move |store| agent(store, &agent_name)).await?;
        if request.message.trim().is_empty() {
            return Err(ServerError::EmptyMessage);
        }
        // An agent run of a workflow's task: the workflow execution must be running. A
        // sub-agent run of an agent execution's `task` call: that execution must be running,
        // and the run takes its session, variables and secrets.
        let sub_agent = (!request.sub_agent.is_empty()).then(|| request.sub_agent.clone());
        if sub_agent.is_some() && request.parent_execution_id.is_empty() {
            return Err(ServerError::SubAgentAlone);
        }
        let parent = if request.parent_execution_id.is_empty() {
            None
        } else {
            let parent_id = request.parent_execution_id.clone();
            let parent_kind = match sub_agent {
                Some(_) => Kind::AgentExecution,
                None => Kind::WorkflowExecution,
            };
            let parent_execution = on_store(&self.store, move |store| {
                let parent = execution_of_kind(store, &parent_id, parent_kind)?;
                ensure_open(&parent)?;
                Ok::<_, ServerError>(parent)
            })
            .await?;
            if let Some(name) = &sub_agent {
                let parent_spec = spec_of(&parent_execution)?;
                if parent_spec.agent != request.agent {
                    return Err(ServerError::SubAgentOfOtherAgent {
                        agent: request.agent.clone(),
                        parent: request.parent_execution_id.clone(),
                        parent_agent: parent_spec.agent,
                    });
                }
                let declared: stigmer_resources::AgentSpec =
                    serde_json::from_value(agent.spec.clone()).unwrap_or_default();
                sub_agents::find(&declared, &request.agent, name)?;
                request.session_id = parent_spec.session;
                request.model = parent_spec.model.unwrap_or_default();
                request.env = parent_spec.env.into_iter().collect();
                request.secrets = self
                    .secrets
                    .get(&request.parent_execution_id)
                    .into_iter()
                    .collect();
                request.environments.clear();
            }
            Some(ExecutionParent {
                execution_id: request.parent_execution_id.clone(),
                task: request.parent_task.clone(),
            })
        };
        self.run_variables(&mut request).await?;
        check_variables(&agent, &request.env, &request.secrets)?;
        // Temporal first: if it does not answer, nothing is created and the caller hears so
        // at once, instead of an execution that stays pending.
        let (client, probe) = self.gateway.client().await?;
        let mut created = Vec::new();
        let session_id = if request.session_id.is_empty() {
            let id = stigmer_resources::new_id(Kind::Session);
            created.push(system_resource(
                Kind::Session,
                &id,
                json!({"agent": request.agent}),
                json!({}),
            ));
            id
        } else {
            let session_id = request.session_id.clone();
            let session = on_store(&self.store, move |store| {
                store
                    .get(Kind::Session, &session_id)?
                    .ok_or_else(|| ServerError::SessionNotFound {
                        session: session_id.clone(),
                    })
            })
            .await?;
            if session.spec["agent"].as_str() != Some(request.agent.as_str()) {
                return Err(ServerError::SessionOfOtherAgent {
                    session: request.session_id.clone(),
                    owner: session.spec["agent"].clone(),
                    agent: request.agent.clone(),
                });
            }
            request.session_id.clone()
        };
        let execution_id = stigmer_resources::new_id(Kind::AgentExecution);
        // The message is stored, so a `--secret` value typed into it is masked as it is in
        // events and the conversation; the run still has the value among its secrets.
        let message = redact(&request.message, request.secrets.values());
        let started_by_workflow = parent.is_some();
        let spec = AgentExecutionSpec {
            agent: request.agent.clone(),
            session: session_id,
            message,
            model: (!request.model.is_empty()).then(|| request.model.clone()),
            env: request.env.clone().into_iter().collect(),
            secret_names: request.secrets.keys().cloned().collect(),
            environments: request.environments.clone(),
            parent,
            sub_agent,
        };
        let execution = system_resource(
            Kind::AgentExecution,
            &execution_id,
            spec.to_value(),
            AgentExecutionStatus::default().to_value(),
        );
        created.push(execution.clone());
        self.store_created(created, &execution_id).await?;
        self.secrets
            .insert(&execution_id, request.secrets.into_iter().collect());
        // The workflow runner starts the run of a workflow's task as its child workflow.
        if !started_by_workflow {
            let argument = serde_json::Value::from(execution_id.clone());
            self.start_or_fail(&client, &execution_id, WorkflowRun::agent(&argument))
                .await?;
        }
        tracing::info!(execution_id = %execution_id, agent = %request.agent, "Execution created.");
        tokio::spawn(watch_execution(
            self.watch(),
            client,
            probe,
            execution_id,
            self.gateway.pickup_timeout(),
        ));
        Ok(CreateExecutionResponse {
            execution_json: resource_json(&execution)?,
        })
    }

    async fn create_workflow_execution(
        &self,
        mut request: CreateExecutionRequest,
    ) -> Result<CreateExecutionResponse, ServerError> {
        for (given, field) in [
            (!request.message.is_empty(), "message"),
            (!request.session_id.is_empty(), "session_id"),
            (!request.model.is_empty(), "model"),
        ] {
            refuse_field(given, field, "workflow")?;
        }
        if !request.parent_task.is_empty() && request.parent_execution_id.is_empty() {
            return Err(ServerError::ParentTaskAlone);
        }
        let workflow_name = request.workflow.clone();
        let workflow = on_store(&self.store, move |store| workflow(store, &workflow_name)).await?;
        // The definition as it is now: later edits of the Workflow do not change this run.
        let definition = stigmer_resources::workflow_document(&workflow);
        check_variant(
            &request.workflow,
            &definition,
            &request.workflow_namespace,
            &request.workflow_version,
        )?;
        // A child run of a workflow's `run: workflow` task: the parent must be running, and
        // the child has its secrets unless it was given its own.
        let parent = if request.parent_execution_id.is_empty() {
            None
        } else {
            let parent_id = request.parent_execution_id.clone();
            on_store(&self.store, move |store| {
                ensure_open(&execution_of_kind(
                    store,
                    &parent_id,
                    Kind::WorkflowExecution,
                )?)
            })
            .await?;
            if request.secrets.is_empty() {
                request.secrets = self
                    .secrets
                    .get(&request.parent_execution_id)
                    .into_iter()
                    .collect();
            }
            Some(ExecutionParent {
                execution_id: request.parent_execution_id.clone(),
                task: request.parent_task.clone(),
            })
        };
        let input = if request.input_json.trim().is_empty() {
            json!({})
        } else {
            parse_json("the input", &request.input_json)?
        };
        self.run_variables(&mut request).await?;
        // An input that fails the definition's `input.schema` is refused before anything runs.
        let parsed =
            stigmer_workflow::Workflow::from_document(definition.clone()).map_err(|problems| {
                ServerError::InvalidWorkflow {
                    workflow: request.workflow.clone(),
                    reason: problems
                        .iter()
                        .map(|problem| problem.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            })?;
        stigmer_workflow::interp::check_input(&parsed, &input).map_err(|problem| {
            ServerError::InputRejected {
                workflow: request.workflow.clone(),
                reason: problem.detail.unwrap_or_default(),
            }
        })?;
        // Temporal first: if it does not answer, nothing is created.
        let (client, probe) = self.gateway.client().await?;
        let execution_id = stigmer_resources::new_id(Kind::WorkflowExecution);
        // The input is stored and goes into Temporal's history: no secret value may be in it.
        let secrets: std::collections::BTreeMap<String, String> =
            request.secrets.into_iter().collect();
        let input = redact_value(input, &secrets);
        let spec = WorkflowExecutionSpec {
            workflow: request.workflow.clone(),
            definition,
            input,
            env: request.env.into_iter().collect(),
            secret_names: secrets.keys().cloned().collect(),
            environments: request.environments,
            parent,
        };
        let started_by_workflow = spec.parent.is_some();
        let run_input = WorkflowRunInput {
            execution_id: execution_id.clone(),
            definition: spec.definition.clone(),
            input: spec.input.clone(),
            secret_names: secrets.keys().cloned().collect(),
        };
        let execution = system_resource(
            Kind::WorkflowExecution,
            &execution_id,
            spec.to_value(),
            WorkflowExecutionStatus::default().to_value(),
        );
        self.store_created(vec![execution.clone()], &execution_id)
            .await?;
        self.secrets.insert(&execution_id, secrets);
        // The workflow runner starts the run of a workflow's task as its child workflow.
        if !started_by_workflow {
            let argument = serde_json::to_value(&run_input).map_err(ServerError::Encode)?;
            self.start_or_fail(&client, &execution_id, WorkflowRun::workflow(&argument))
                .await?;
        }
        tracing::info!(execution_id = %execution_id, workflow = %request.workflow, "Execution created.");
        tokio::spawn(watch_execution(
            self.watch(),
            client,
            probe,
            execution_id,
            self.gateway.pickup_timeout(),
        ));
        Ok(CreateExecutionResponse {
            execution_json: resource_json(&execution)?,
        })
    }
}

#[tonic::async_trait]
impl ExecutionService for ExecutionApi {
    async fn append_events(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        let request = request.into_inner();
        if request.execution_id.is_empty() {
            return Err(ServerError::EmptyExecutionId.into());
        }
        // Every event is read through the typed protocol: a known kind whose fields do not fit
        // is refused; a kind this build does not know is stored as it came.
        let parsed = typed_events(request.events);
        // The lock is held by the blocking work itself, so a dropped RPC cannot let another
        // append in while its write still runs. One trip to the blocking pool per append.
        let guard = self.append_lock.clone().lock_owned().await;
        let hub = self.hub.clone();
        let execution_id = request.execution_id;
        let seqs = on_store(&self.store, move |store| {
            let _guard = guard;
            // Events belong to an execution that exists and has not ended (checked before the
            // events themselves): a step still running after a cancel hears so here and stops.
            ensure_open(&execution(store, &execution_id)?)?;
            append_parts(store, &hub, &execution_id, parsed?)
        })
        .await?;
        Ok(Response::new(AppendEventsResponse { seqs }))
    }

    async fn create_execution(
        &self,
        request: Request<CreateExecutionRequest>,
    ) -> Result<Response<CreateExecutionResponse>, Status> {
        let request = request.into_inner();
        let created = match (request.agent.is_empty(), request.workflow.is_empty()) {
            (false, true) => self.create_agent_execution(request).await?,
            (true, false) => self.create_workflow_execution(request).await?,
            _ => return Err(ServerError::AgentOrWorkflow.into()),
        };
        Ok(Response::new(created))
    }

    async fn get_execution(
        &self,
        request: Request<GetExecutionRequest>,
    ) -> Result<Response<GetExecutionResponse>, Status> {
        let execution = self.execution(&request.into_inner().execution_id).await?;
        Ok(Response::new(GetExecutionResponse {
            execution_json: resource_json(&execution)?,
        }))
    }

    async fn list_executions(
        &self,
        request: Request<ListExecutionsRequest>,
    ) -> Result<Response<ListExecutionsResponse>, Status> {
        let text = request.into_inner().kind;
        let kinds = match text.parse::<ExecutionKind>() {
            _ if text.is_empty() => vec![Kind::AgentExecution, Kind::WorkflowExecution],
            Ok(ExecutionKind::Agent) => vec![Kind::AgentExecution],
            Ok(ExecutionKind::Workflow) => vec![Kind::WorkflowExecution],
            Err(_) => return Err(ServerError::UnknownExecutionKind { text }.into()),
        };
        let executions_json = on_store(&self.store, move |store| {
            let mut executions = Vec::new();
            for kind in kinds {
                executions.extend(store.list(kind)?);
            }
            // Oldest first, whatever their kind.
            executions.sort_by(|a, b| {
                (&a.metadata.created_at, &a.metadata.name)
                    .cmp(&(&b.metadata.created_at, &b.metadata.name))
            });
            executions
                .iter()
                .map(resource_json)
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(ListExecutionsResponse { executions_json }))
    }

    async fn cancel_execution(
        &self,
        request: Request<CancelExecutionRequest>,
    ) -> Result<Response<CancelExecutionResponse>, Status> {
        let execution_id = request.into_inner().execution_id;
        ensure_open(&self.execution(&execution_id).await?)?;
        let (client, _) = self.gateway.client().await?;
        cancel_workflow(&client, &execution_id).await?;
        Ok(Response::new(CancelExecutionResponse {}))
    }

    async fn get_run_context(
        &self,
        request: Request<GetRunContextRequest>,
    ) -> Result<Response<RunContext>, Status> {
        let GetRunContextRequest {
            execution_id,
            through_turn,
            messages: wanted,
            with_tools,
        } = request.into_inner();
        // A workflow run's activities need only the execution and its secrets.
        if execution_kind(&execution_id) == Some(Kind::WorkflowExecution) {
            let id = execution_id.clone();
            let execution_json = on_store(&self.store, move |store| {
                let execution = execution(store, &id)?;
                ensure_open(&execution)?;
                resource_json(&execution)
            })
            .await?;
            return Ok(Response::new(RunContext {
                execution_json,
                secrets: self.secrets.get(&execution_id).into_iter().collect(),
                ..RunContext::default()
            }));
        }
        let id = execution_id.clone();
        let (execution_json, agent_json, messages_json, places, last, tools) =
            on_store(&self.store, move |store| {
                let execution = execution_of_kind(store, &id, Kind::AgentExecution)?;
                ensure_open(&execution)?;
                let spec = spec_of(&execution)?;
                let agent = store.get(Kind::Agent, &spec.agent)?.ok_or_else(|| {
                    ServerError::AgentDeleted {
                        agent: spec.agent.clone(),
                    }
                })?;
                let agent = match &spec.sub_agent {
                    Some(name) => sub_agents::sub_agent_resource(&agent, name)?,
                    None => agent,
                };
                // A step reads only the messages it asks for: a range of this execution's
                // messages is a search of the store's key, so its cost does not grow with the
                // run.
                let through = MessagePlace::end_of(through_turn);
                let range = |from: MessagePlace, through: MessagePlace| {
                    store.execution_messages(&id, from, through)
                };
                let messages = match wanted {
                    None => conversation(store, &execution, &spec.session, through_turn)?,
                    Some(WantedMessages::After(after)) => {
                        match place_of(after).next().filter(|from| *from <= through) {
                            Some(from) => range(from, through)?,
                            None => Vec::new(),
                        }
                    }
                    Some(WantedMessages::At(at)) => range(place_of(at), place_of(at))?,
                    Some(WantedMessages::NoMessages(_)) => Vec::new(),
                };
                let last = messages
                    .iter()
                    .rev()
                    .find(|message| message.execution_id == id)
                    .map(|message| ProtoMessagePlace {
                        turn: message.turn,
                        index: message.index,
                    });
                let messages_json: Vec<String> = messages
                    .iter()
                    .map(|message| message.data.to_string())
                    .collect();
                let places: Vec<ProtoMessagePlace> = messages
                    .iter()
                    .map(|message| ProtoMessagePlace {
                        turn: message.turn,
                        index: message.index,
                    })
                    .collect();
                let tools = if with_tools {
                    AgentTools {
                        snapshot_json: store
                            .execution_state(&id, TOOL_SNAPSHOT)?
                            .map(|snapshot| snapshot.to_string())
                            .unwrap_or_default(),
                        ..agent_tools(store, &agent)?
                    }
                } else {
                    AgentTools::default()
                };
                Ok::<_, ServerError>((
                    resource_json(&execution)?,
                    resource_json(&agent)?,
                    messages_json,
                    places,
                    last,
                    tools,
                ))
            })
            .await?;
        Ok(Response::new(RunContext {
            execution_json,
            agent_json,
            messages_json,
            secrets: self.secrets.get(&execution_id).into_iter().collect(),
            last,
            mcp_servers_json: tools.mcp_servers_json,
            skills_json: tools.skills_json,
            places,
            tool_snapshot_json: tools.snapshot_json,
        }))
    }

    async fn save_tool_snapshot(
        &self,
        request: Request<SaveToolSnapshotRequest>,
    ) -> Result<Response<SaveToolSnapshotResponse>, Status> {
        let request = request.into_inner();
        let snapshot: serde_json::Value = serde_json::from_str(&request.snapshot_json)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or(ServerError::MessageNotObject)?;
        on_store(&self.store, move |store| {
            ensure_open(&execution_of_kind(
                store,
                &request.execution_id,
                Kind::AgentExecution,
            )?)?;
            store.put_execution_state(&request.execution_id, TOOL_SNAPSHOT, &snapshot)?;
            Ok::<_, ServerError>(())
        })
        .await?;
        Ok(Response::new(SaveToolSnapshotResponse {}))
    }

    async fn save_messages(
        &self,
        request: Request<SaveMessagesRequest>,
    ) -> Result<Response<SaveMessagesResponse>, Status> {
        let request = request.into_inner();
        on_store(&self.store, move |store| {
            let execution = execution_of_kind(store, &request.execution_id, Kind::AgentExecution)?;
            ensure_open(&execution)?;
            let messages = request
                .messages_json
                .iter()
                .map(|text| {
                    serde_json::from_str::<serde_json::Value>(text)
                        .ok()
                        .filter(serde_json::Value::is_object)
                        .ok_or(ServerError::MessageNotObject)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let spec = spec_of(&execution)?;
            store.put_messages(
                &spec.session,
                &request.execution_id,
                request.turn,
                request.first_index,
                &messages,
            )?;
            Ok::<_, ServerError>(())
        })
        .await?;
        Ok(Response::new(SaveMessagesResponse {}))
    }

    async fn set_workflow_result(
        &self,
        request: Request<SetWorkflowResultRequest>,
    ) -> Result<Response<SetWorkflowResultResponse>, Status> {
        let SetWorkflowResultRequest {
            execution_id,
            output_json,
            error_json,
        } = request.into_inner();
        if execution_id.is_empty() {
            return Err(ServerError::EmptyExecutionId.into());
        }
        let result = match (output_json.is_empty(), error_json.is_empty()) {
            (false, true) => WorkflowResult::Output(parse_json("the output", &output_json)?),
            (true, false) => WorkflowResult::Error(parse_json("the error", &error_json)?),
            _ => return Err(ServerError::OutputOrError.into()),
        };
        // What is stored holds no secret value, like the events and the logs.
        let secrets = self.secrets.get(&execution_id);
        let (result, phase, reason) = match result {
            WorkflowResult::Output(output) => (
                WorkflowResult::Output(redact_value(output, &secrets)),
                ExecutionPhase::Completed,
                None,
            ),
            WorkflowResult::Error(error) => {
                let error = redact_value(error, &secrets);
                let reason = error_reason(&error);
                (
                    WorkflowResult::Error(error),
                    ExecutionPhase::Failed,
                    Some(reason),
                )
            }
        };
        let guard = self.append_lock.clone().lock_owned().await;
        let hub = self.hub.clone();
        let id = execution_id.clone();
        let why = reason.clone();
        let recorded = on_store(&self.store, move |store| {
            let _guard = guard;
            execution_of_kind(store, &id, Kind::WorkflowExecution)?;
            // A retried last step finds the execution ended: nothing more to do.
            record_phase_with(store, &hub, &id, phase, why.as_deref(), Some(result))
        })
        .await?;
        if recorded {
            self.secrets.forget(&execution_id);
            tracing::info!(execution_id = %execution_id, phase = %phase, reason, "Execution ended.");
        }
        Ok(Response::new(SetWorkflowResultResponse {}))
    }

    async fn put_execution_state(
        &self,
        request: Request<PutExecutionStateRequest>,
    ) -> Result<Response<PutExecutionStateResponse>, Status> {
        let PutExecutionStateRequest {
            execution_id,
            key,
            value_json,
        } = request.into_inner();
        if execution_id.is_empty() {
            return Err(ServerError::EmptyExecutionId.into());
        }
        // Runners never see their secrets' values echoed back, and the store never holds them.
        let value = redact_value(
            parse_json("the value", &value_json)?,
            &self.secrets.get(&execution_id),
        );
        on_store(&self.store, move |store| {
            ensure_open(&execution(store, &execution_id)?)?;
            store.put_execution_state(&execution_id, &runner_state_key(&key), &value)?;
            Ok::<_, ServerError>(())
        })
        .await?;
        Ok(Response::new(PutExecutionStateResponse {}))
    }

    async fn get_execution_state(
        &self,
        request: Request<GetExecutionStateRequest>,
    ) -> Result<Response<GetExecutionStateResponse>, Status> {
        let GetExecutionStateRequest { execution_id, key } = request.into_inner();
        if execution_id.is_empty() {
            return Err(ServerError::EmptyExecutionId.into());
        }
        let value = on_store(&self.store, move |store| {
            execution(store, &execution_id)?;
            Ok::<_, ServerError>(store.execution_state(&execution_id, &runner_state_key(&key))?)
        })
        .await?;
        Ok(Response::new(GetExecutionStateResponse {
            found: value.is_some(),
            value_json: value.map(|value| value.to_string()).unwrap_or_default(),
        }))
    }

    async fn decide_approvals(
        &self,
        request: Request<DecideApprovalsRequest>,
    ) -> Result<Response<DecideApprovalsResponse>, Status> {
        let request = request.into_inner();
        if request.execution_id.is_empty() {
            return Err(ServerError::EmptyExecutionId.into());
        }
        let execution_id = request.execution_id.clone();
        let id = execution_id.clone();
        on_store(&self.store, move |store| {
            ensure_open(&execution_of_kind(store, &id, Kind::AgentExecution)?)
        })
        .await?;
        let decision = decision_of(&request)?;
        let (client, _) = self.gateway.client().await?;
        let decided = send_decision(&client, &execution_id, &decision).await?;
        // Recorded here, so that it shows at once, under the key the runner records a call's
        // decision with (a timeout's): should both write one, the store keeps the first.
        let events = decided_events(&decided, &decision);
        let guard = self.append_lock.clone().lock_owned().await;
        let hub = self.hub.clone();
        let id = execution_id.clone();
        let recorded = on_store(&self.store, move |store| {
            let _guard = guard;
            // A run that ended meanwhile (the decision was its last step) takes no more events.
            if phase_of(&execution(store, &id)?).is_terminal() {
                return Ok(());
            }
            append_parts(store, &hub, &id, vec![Appended::Events(events)]).map(|_| ())
        })
        .await;
        if let Err(error) = recorded {
            tracing::warn!(execution_id = %execution_id, error = %error, "Cannot record a decision the workflow took.");
        }
        tracing::info!(
            execution_id = %execution_id,
            approve = decision.approve,
            calls = decided.len(),
            "Approvals decided."
        );
        Ok(Response::new(DecideApprovalsResponse {
            call_ids: decided.into_iter().map(|call| call.call_id).collect(),
        }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = request.remote_addr();
        let SubscribeRequest {
            execution_id,
            after_seq,
        } = request.into_inner();
        // An unknown id would otherwise wait forever for events that never come.
        self.execution(&execution_id).await?;
        let admission = self.limits.admit(peer)?;
        Ok(Response::new(event_stream(
            self.store.clone(),
            self.hub.clone(),
            execution_id,
            after_seq,
            admission,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_workflow_task_finds_the_namespace_and_version_it_names() {
        let definition =
            json!({"document": {"namespace": "shop", "name": "child", "version": "1.2.0"}});
        for (namespace, version) in [
            ("", ""),
            ("shop", "latest"),
            ("shop", "1.2.0"),
            ("", "1.2.0"),
        ] {
            assert!(
                check_variant("child", &definition, namespace, version).is_ok(),
                "{namespace}/{version}"
            );
        }
        let error = check_variant("child", &definition, "default", "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "workflow 'child' in namespace \"default\" not found: the stored one is namespace \"shop\", version \"1.2.0\""
        );
        assert_eq!(error.code(), tonic::Code::NotFound);
        let error = check_variant("child", &definition, "shop", "2.0.0").unwrap_err();
        assert!(
            error.to_string().contains("version \"2.0.0\" not found"),
            "{error}"
        );
        // A document without them has the defaults.
        assert!(check_variant("child", &json!({}), "default", "0.0.1").is_ok());
    }
}
