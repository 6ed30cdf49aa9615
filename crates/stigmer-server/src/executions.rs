//! `ExecutionService`: the RPCs of executions over the store and Temporal.
//!
//! Appends are serialised: the store numbers the events and, after the transaction commits,
//! the hub (`hub.rs`) announces the execution's last sequence number; a `Subscribe` stream
//! (`subscribe.rs`) reads the store after its last `seq`, one page at a time. Every store call
//! runs on the blocking pool (`blocking.rs`), never on an async worker thread.

use crate::blocking::on_store;
use crate::error::{ServerError, resource_json};
use crate::hub::EventHub;
use crate::lifecycle::{
    Gateway, TemporalTarget, Watch, cancel_workflow, phase_of, record_phase, start_workflow,
    system_resource, watch_execution,
};
use crate::secrets::Secrets;
use crate::subscribe::{EventStream, SubscriptionLimits, event_stream};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionEvent as TypedEvent, ExecutionPhase,
    PhaseChanged,
};
use stigmer_proto::executions::v1::MessagePlace as ProtoMessagePlace;
use stigmer_proto::executions::v1::execution_service_server::ExecutionService;
use stigmer_proto::executions::v1::get_run_context_request::Messages as WantedMessages;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, AppendEventsResponse, GetRunContextRequest, RunContext,
    SaveMessagesRequest, SaveMessagesResponse, SaveToolSnapshotRequest, SaveToolSnapshotResponse,
    SubscribeRequest,
};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CancelExecutionResponse, CreateExecutionRequest,
    CreateExecutionResponse, GetExecutionRequest, GetExecutionResponse, ListExecutionsRequest,
    ListExecutionsResponse,
};
use stigmer_resources::{Kind, Resource, suggest};
use stigmer_store::{MessagePlace, NewEvent, Store, StoredMessage};
use tonic::{Request, Response, Status};

/// The execution API over a store and Temporal.
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

    /// Watches the executions a previous server left unfinished, once Temporal answers, so
    /// they too reach a terminal phase.
    pub fn resume_watches(&self) {
        let store = self.store.clone();
        let gateway = self.gateway.clone();
        let watch = self.watch();
        tokio::spawn(async move {
            let listed = on_store(&store, |store| store.list(Kind::AgentExecution)).await;
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

/// The execution `execution_id`, or NOT_FOUND.
fn execution(store: &dyn Store, execution_id: &str) -> Result<Resource, ServerError> {
    store
        .get(Kind::AgentExecution, execution_id)?
        .ok_or_else(|| ServerError::ExecutionNotFound {
            execution_id: execution_id.to_owned(),
        })
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
    for message in store.session_messages(session)? {
        let include = if message.execution_id == execution.metadata.name {
            message.turn <= through_turn
        } else {
            *earlier_completed
                .entry(message.execution_id.clone())
                .or_insert_with(|| {
                    store
                        .get(Kind::AgentExecution, &message.execution_id)
                        .ok()
                        .flatten()
                        .is_some_and(|other| {
                            phase_of(&other) == ExecutionPhase::Completed
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

/// `text` with every secret value replaced by the mask, longest values first (so a secret that
/// contains another is masked whole), as the runner redacts events and messages.
fn redact(text: &str, secrets: &HashMap<String, String>) -> String {
    let mut values: Vec<&str> = secrets
        .values()
        .map(String::as_str)
        .filter(|value| !value.is_empty())
        .collect();
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    let mut text = text.to_owned();
    for value in values {
        if text.contains(value) {
            text = text.replace(value, stigmer_resources::MASK);
        }
    }
    text
}

fn place_of(place: ProtoMessagePlace) -> MessagePlace {
    MessagePlace::new(place.turn, place.index)
}

/// The events of an append read through the typed protocol: phase changes apart (they go
/// through the execution's status), the others in their wire form.
fn typed_events(
    events: Vec<stigmer_proto::executions::v1::NewEvent>,
) -> Result<(Vec<PhaseChanged>, Vec<NewEvent>), ServerError> {
    let mut phases = Vec::new();
    let mut others = Vec::with_capacity(events.len());
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
                phases.push(changed);
            }
            typed => {
                let (kind, data) = typed.into_wire();
                others.push(NewEvent {
                    key: event.key,
                    kind,
                    data,
                });
            }
        }
    }
    Ok((phases, others))
}

/// The agent `name`, or NOT_FOUND with the closest name there is.
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
            let (phases, others) = parsed?;
            let stored = store.append_events(&execution_id, &others, &stigmer_resources::now())?;
            let mut seqs: Vec<u64> = stored.iter().map(|event| event.seq).collect();
            for event in stored {
                hub.publish(event);
            }
            for changed in phases {
                record_phase(
                    store,
                    &hub,
                    &execution_id,
                    changed.phase,
                    changed.reason.as_deref(),
                )?;
                if let Some(last) = store
                    .events_after(&execution_id, seqs.last().copied().unwrap_or(0), 1)
                    .ok()
                    .and_then(|events| events.into_iter().last())
                {
                    seqs.push(last.seq);
                }
            }
            Ok::<_, ServerError>(seqs)
        })
        .await?;
        Ok(Response::new(AppendEventsResponse { seqs }))
    }

    async fn create_execution(
        &self,
        request: Request<CreateExecutionRequest>,
    ) -> Result<Response<CreateExecutionResponse>, Status> {
        let mut request = request.into_inner();
        let agent_name = request.agent.clone();
        let agent = on_store(&self.store, move |store| agent(store, &agent_name)).await?;
        if request.message.trim().is_empty() {
            return Err(ServerError::EmptyMessage.into());
        }
        // The run's Environments first, then its own `--env` and `--secret` over them.
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
                }
                .into());
            }
            request.session_id.clone()
        };
        let execution_id = stigmer_resources::new_id(Kind::AgentExecution);
        // The message is stored, so a `--secret` value typed into it is masked as it is in
        // events and the conversation; the run still has the value among its secrets.
        let message = redact(&request.message, &request.secrets);
        let spec = AgentExecutionSpec {
            agent: request.agent.clone(),
            session: session_id,
            message,
            model: (!request.model.is_empty()).then(|| request.model.clone()),
            env: request.env.clone().into_iter().collect(),
            secret_names: request.secrets.keys().cloned().collect(),
            environments: request.environments.clone(),
        };
        let execution = system_resource(
            Kind::AgentExecution,
            &execution_id,
            spec.to_value(),
            AgentExecutionStatus::default().to_value(),
        );
        created.push(execution.clone());
        {
            let guard = self.append_lock.clone().lock_owned().await;
            let hub = self.hub.clone();
            let execution_id = execution_id.clone();
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
            .await?;
        }
        self.secrets
            .insert(&execution_id, request.secrets.into_iter().collect());
        if let Err(error) = start_workflow(&client, &execution_id).await {
            self.secrets.forget(&execution_id);
            let guard = self.append_lock.clone().lock_owned().await;
            let hub = self.hub.clone();
            let id = execution_id.clone();
            let reason = error.to_string();
            on_store(&self.store, move |store| {
                let _guard = guard;
                record_phase(store, &hub, &id, ExecutionPhase::Failed, Some(&reason))
            })
            .await?;
            return Err(error.into());
        }
        tracing::info!(execution_id = %execution_id, agent = %request.agent, "Execution created.");
        tokio::spawn(watch_execution(
            self.watch(),
            client,
            probe,
            execution_id,
            self.gateway.pickup_timeout(),
        ));
        Ok(Response::new(CreateExecutionResponse {
            execution_json: resource_json(&execution)?,
        }))
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
        _request: Request<ListExecutionsRequest>,
    ) -> Result<Response<ListExecutionsResponse>, Status> {
        let executions_json = on_store(&self.store, |store| {
            store
                .list(Kind::AgentExecution)?
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
        let id = execution_id.clone();
        let (execution_json, agent_json, messages_json, places, last, tools) =
            on_store(&self.store, move |store| {
                let execution = execution(store, &id)?;
                ensure_open(&execution)?;
                let spec = spec_of(&execution)?;
                let agent = store.get(Kind::Agent, &spec.agent)?.ok_or_else(|| {
                    ServerError::AgentDeleted {
                        agent: spec.agent.clone(),
                    }
                })?;
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
            ensure_open(&execution(store, &request.execution_id)?)?;
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
            let execution = execution(store, &request.execution_id)?;
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
