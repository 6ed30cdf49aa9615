//! `ExecutionService`: the append-only event log of executions and its subscriptions.
//!
//! Appends are serialised: the store numbers the events and, after the transaction commits,
//! the hub announces the execution's last sequence number. The hub holds no events: a
//! subscriber reads the store, one page bounded in bytes at a time and only when its client
//! has taken the previous one (the stream is pulled by the transport, which stops pulling when
//! the client's flow-control window is full). It marks the announcement as seen *before* each
//! read, so an append it has not read wakes it; it sees every event once, in order. A client
//! that does not read therefore pins at most one page, and resumes where it paused.

use crate::lifecycle::{
    Gateway, TemporalTarget, Watch, cancel_workflow, phase_of, record_phase, start_workflow,
    system_resource, watch_execution,
};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionEvent as TypedEvent, ExecutionPhase,
    PhaseChanged,
};
use stigmer_proto::executions::v1::MessagePlace as ProtoMessagePlace;
use stigmer_proto::executions::v1::execution_service_server::ExecutionService;
use stigmer_proto::executions::v1::get_run_context_request::Messages as WantedMessages;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, AppendEventsResponse, ExecutionEvent as WireEvent, GetRunContextRequest,
    RunContext, SaveMessagesRequest, SaveMessagesResponse, SubscribeRequest,
};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CancelExecutionResponse, CreateExecutionRequest,
    CreateExecutionResponse, GetExecutionRequest, GetExecutionResponse, ListExecutionsRequest,
    ListExecutionsResponse,
};
use stigmer_resources::{Kind, Resource, suggest};
use stigmer_store::{MessagePlace, NewEvent, Store, StoredEvent, StoredMessage};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Events a subscriber reads from the store at a time, at most.
const PAGE_EVENTS: usize = 256;
/// Bytes of events a subscriber reads from the store at a time, at most (a single bigger event
/// is still read whole): what one subscriber may hold, whether its client reads or not.
pub const SUBSCRIBER_PAGE_BYTES: usize = 256 * 1024;
/// Open subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 32;
/// Open subscriptions the server holds in all.
pub const MAX_SUBSCRIPTIONS: usize = 512;

/// True for the event that ends an execution's log.
pub fn is_terminal(event: &StoredEvent) -> bool {
    TypedEvent::is_terminal_wire(&event.kind, &event.data)
}

/// Announces, per execution, the sequence number of its last stored event. It keeps no events,
/// so what it holds does not grow with the log or with slow subscribers.
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl EventHub {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the announcements of an execution; the receiver changes whenever events are
    /// stored for it, and closes after its terminal event.
    pub fn subscribe(&self, execution_id: &str) -> watch::Receiver<u64> {
        self.channels()
            .entry(execution_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Forgets an execution nobody listens to any more.
    fn leave(&self, execution_id: &str, receiver: watch::Receiver<u64>) {
        let mut channels = self.channels();
        drop(receiver);
        if channels
            .get(execution_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(execution_id);
        }
    }

    pub(crate) fn publish(&self, event: StoredEvent) {
        let mut channels = self.channels();
        if let Some(sender) = channels.get(&event.execution_id) {
            sender.send_if_modified(|last| {
                let newer = event.seq > *last;
                *last = (*last).max(event.seq);
                newer
            });
        }
        if is_terminal(&event) {
            // Dropping the sender closes the receivers: they read the rest and end.
            channels.remove(&event.execution_id);
        }
    }
}

/// Counts open subscriptions per connection and in all.
#[derive(Default)]
struct SubscriptionLimits {
    open: Mutex<(usize, HashMap<SocketAddr, usize>)>,
}

impl SubscriptionLimits {
    fn open(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<SocketAddr, usize>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a subscription of `peer`, or RESOURCE_EXHAUSTED saying which limit.
    fn admit(self: &Arc<Self>, peer: Option<SocketAddr>) -> Result<Admission, Status> {
        let mut open = self.open();
        if open.0 >= MAX_SUBSCRIPTIONS {
            return Err(Status::resource_exhausted(format!(
                "the server already holds {MAX_SUBSCRIPTIONS} subscriptions (its limit); \
                 close some and subscribe again"
            )));
        }
        if let Some(peer) = peer {
            let count = open.1.entry(peer).or_default();
            if *count >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
                return Err(Status::resource_exhausted(format!(
                    "this connection already holds {MAX_SUBSCRIPTIONS_PER_CONNECTION} \
                     subscriptions (the limit per connection); close some and subscribe again"
                )));
            }
            *count += 1;
        }
        open.0 += 1;
        Ok(Admission {
            limits: self.clone(),
            peer,
        })
    }
}

/// A subscription's place; given back when the subscription ends or its client goes.
struct Admission {
    limits: Arc<SubscriptionLimits>,
    peer: Option<SocketAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.limits.open();
        open.0 -= 1;
        if let Some(peer) = self.peer
            && let Some(count) = open.1.get_mut(&peer)
        {
            *count -= 1;
            if *count == 0 {
                open.1.remove(&peer);
            }
        }
    }
}

/// One subscriber: where it is in the log and the page it is sending.
struct Subscription {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    execution_id: String,
    last: u64,
    /// `None` once taken back by `Drop`.
    live: Option<watch::Receiver<u64>>,
    page: VecDeque<StoredEvent>,
    ended: bool,
    _admission: Admission,
}

impl Subscription {
    /// The next event: from the page, else from the store, else once the hub announces more.
    async fn next(&mut self) -> Option<Result<WireEvent, Status>> {
        let mut closed = false;
        loop {
            if let Some(event) = self.page.pop_front() {
                self.last = event.seq;
                if is_terminal(&event) {
                    self.ended = true;
                    self.page.clear();
                }
                return Some(Ok(to_proto(&event)));
            }
            if self.ended {
                return None;
            }
            let live = self.live.as_mut()?;
            // Seen before reading: an append committed after this wakes `changed` below.
            live.borrow_and_update();
            match self.store.events_page(
                &self.execution_id,
                self.last,
                PAGE_EVENTS,
                SUBSCRIBER_PAGE_BYTES,
            ) {
                Ok(events) if !events.is_empty() => {
                    self.page = events.into();
                    continue;
                }
                Ok(_) if closed => return None,
                Ok(_) => {}
                Err(error) => {
                    self.ended = true;
                    return Some(Err(Status::internal(error.to_string())));
                }
            }
            if live.changed().await.is_err() {
                // The hub let go after the terminal event: read what is left, then end.
                closed = true;
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            self.hub.leave(&self.execution_id, live);
        }
    }
}

/// The execution API over a store and Temporal.
pub struct ExecutionApi {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    append_lock: Arc<tokio::sync::Mutex<()>>,
    gateway: Arc<Gateway>,
    secrets: Arc<Secrets>,
    limits: Arc<SubscriptionLimits>,
}

/// The secrets of running executions, in memory only: they are never stored, so a server
/// restart forgets them (the run goes on without them).
#[derive(Default)]
pub struct Secrets {
    by_execution: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl Secrets {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, String>>> {
        self.by_execution.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, execution_id: &str, secrets: BTreeMap<String, String>) {
        if !secrets.is_empty() {
            self.map().insert(execution_id.to_owned(), secrets);
        }
    }

    fn get(&self, execution_id: &str) -> BTreeMap<String, String> {
        self.map().get(execution_id).cloned().unwrap_or_default()
    }

    pub(crate) fn forget(&self, execution_id: &str) {
        self.map().remove(execution_id);
    }
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
        let unfinished: Vec<String> = match self.store.list(Kind::AgentExecution) {
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
        let gateway = self.gateway.clone();
        let watch = self.watch();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(200);
            let (client, probe) = loop {
                match gateway.client().await {
                    Ok(connected) => break connected,
                    Err(status) if gateway.configured() => {
                        tracing::debug!(error = %status.message(), "Temporal not ready; will resume watches later.");
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

    /// The whole conversation of `execution` through `through_turn`: the messages of the
    /// earlier executions of its session that completed, then its own. A run reads it on its
    /// first model turn, and again only when its runner lost what it held.
    fn conversation(
        &self,
        execution: &Resource,
        through_turn: u32,
    ) -> Result<Vec<StoredMessage>, Status> {
        let internal = |error: stigmer_store::StoreError| Status::internal(error.to_string());
        let session = execution.spec["session"].as_str().unwrap_or_default();
        let created = execution.metadata.created_at.clone().unwrap_or_default();
        // Earlier executions of the session count only when they completed: a failed or
        // cancelled one may have left a tool call without its result, which models refuse.
        let mut earlier_completed: HashMap<String, bool> = HashMap::new();
        let mut messages = Vec::new();
        for message in self.store.session_messages(session).map_err(internal)? {
            let include = if message.execution_id == execution.metadata.name {
                message.turn <= through_turn
            } else {
                *earlier_completed
                    .entry(message.execution_id.clone())
                    .or_insert_with(|| {
                        self.store
                            .get(Kind::AgentExecution, &message.execution_id)
                            .ok()
                            .flatten()
                            .is_some_and(|other| {
                                phase_of(&other) == ExecutionPhase::Completed
                                    && other.metadata.created_at.clone().unwrap_or_default()
                                        < created
                            })
                    })
            };
            if include {
                messages.push(message);
            }
        }
        Ok(messages)
    }

    fn execution(&self, execution_id: &str) -> Result<Resource, Status> {
        self.store
            .get(Kind::AgentExecution, execution_id)
            .map_err(|error| Status::internal(error.to_string()))?
            .ok_or_else(|| Status::not_found(format!("execution \"{execution_id}\" not found")))
    }
}

/// FAILED_PRECONDITION once an execution has ended: nothing more may be written to it.
fn ensure_open(execution: &Resource) -> Result<(), Status> {
    let phase = phase_of(execution);
    if phase.is_terminal() {
        return Err(Status::failed_precondition(format!(
            "execution \"{}\" already ended ({phase})",
            execution.metadata.name
        )));
    }
    Ok(())
}

/// The run's variables against what the agent declares: every variable without a default
/// must be given, and a secret one only as a secret.
fn check_variables(
    agent: &Resource,
    env: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<(), Status> {
    let Some(declared) = agent.spec.get("env").and_then(|env| env.as_object()) else {
        return Ok(());
    };
    for (name, declaration) in declared {
        let secret = declaration["secret"].as_bool().unwrap_or(false);
        if secret && env.contains_key(name) {
            return Err(Status::invalid_argument(format!(
                "{name} is a secret of agent '{}': pass it with --secret {name}=…, so it is never stored",
                agent.metadata.name
            )));
        }
        let given = env.contains_key(name) || secrets.contains_key(name);
        if !given && declaration.get("default").is_none_or(|d| d.is_null()) {
            let flag = if secret { "--secret" } else { "--env" };
            return Err(Status::invalid_argument(format!(
                "agent '{}' needs the variable {name}: pass {flag} {name}=…",
                agent.metadata.name
            )));
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

fn resource_json(resource: &Resource) -> Result<String, Status> {
    serde_json::to_string(resource).map_err(|error| Status::internal(error.to_string()))
}

fn to_proto(event: &StoredEvent) -> WireEvent {
    WireEvent {
        execution_id: event.execution_id.clone(),
        seq: event.seq,
        ts: event.ts.clone(),
        kind: event.kind.clone(),
        data_json: event.data.to_string(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<WireEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutionService for ExecutionApi {
    async fn append_events(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        let request = request.into_inner();
        if request.execution_id.is_empty() {
            return Err(Status::invalid_argument("execution_id is empty"));
        }
        // Events belong to an execution that exists and has not ended: a step still running
        // after a cancel hears so here and stops.
        ensure_open(&self.execution(&request.execution_id)?)?;
        // Every event is read through the typed protocol: a known kind whose fields do not fit
        // is refused; a kind this build does not know is stored as it came.
        let mut phases = Vec::new();
        let mut others = Vec::with_capacity(request.events.len());
        for event in request.events {
            let typed = event.event().map_err(|error| {
                Status::invalid_argument(format!("event {:?}: {error}", event.key))
            })?;
            match typed {
                // A runner reports `running` (and may report an end) as phase events; those go
                // through the status, so the execution resource and its log agree.
                TypedEvent::PhaseChanged(changed) => {
                    if changed.phase == ExecutionPhase::Pending {
                        return Err(Status::invalid_argument(format!(
                            "event {:?}: a runner cannot put an execution back to pending",
                            event.key
                        )));
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
        let _guard = self.append_lock.lock().await;
        let stored = self
            .store
            .append_events(&request.execution_id, &others, &stigmer_resources::now())
            .map_err(|error| Status::internal(error.to_string()))?;
        let mut seqs: Vec<u64> = stored.iter().map(|event| event.seq).collect();
        for event in stored {
            self.hub.publish(event);
        }
        for changed in phases {
            record_phase(
                self.store.as_ref(),
                &self.hub,
                &request.execution_id,
                changed.phase,
                changed.reason.as_deref(),
            )?;
            if let Some(last) = self
                .store
                .events_after(&request.execution_id, seqs.last().copied().unwrap_or(0), 1)
                .ok()
                .and_then(|events| events.into_iter().last())
            {
                seqs.push(last.seq);
            }
        }
        Ok(Response::new(AppendEventsResponse { seqs }))
    }

    async fn create_execution(
        &self,
        request: Request<CreateExecutionRequest>,
    ) -> Result<Response<CreateExecutionResponse>, Status> {
        let request = request.into_inner();
        let internal = |error: stigmer_store::StoreError| Status::internal(error.to_string());
        if self
            .store
            .get(Kind::Agent, &request.agent)
            .map_err(internal)?
            .is_none()
        {
            let names = self.store.names(Kind::Agent).map_err(internal)?;
            let hint = suggest(&request.agent, names.iter().map(String::as_str))
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return Err(Status::not_found(format!(
                "agent '{}' not found{hint}",
                request.agent
            )));
        }
        if request.message.trim().is_empty() {
            return Err(Status::invalid_argument("the message is empty"));
        }
        let agent = self
            .store
            .get(Kind::Agent, &request.agent)
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("agent '{}' not found", request.agent)))?;
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
            let session = self
                .store
                .get(Kind::Session, &request.session_id)
                .map_err(internal)?
                .ok_or_else(|| {
                    Status::not_found(format!("session \"{}\" not found", request.session_id))
                })?;
            if session.spec["agent"].as_str() != Some(request.agent.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "session \"{}\" belongs to agent {}, not {}",
                    request.session_id, session.spec["agent"], request.agent
                )));
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
        };
        let execution = system_resource(
            Kind::AgentExecution,
            &execution_id,
            spec.to_value(),
            AgentExecutionStatus::default().to_value(),
        );
        created.push(execution.clone());
        {
            let _guard = self.append_lock.lock().await;
            self.store.put_all(&created).map_err(internal)?;
            let (kind, data) =
                TypedEvent::from(PhaseChanged::new(ExecutionPhase::Pending, None)).into_wire();
            let stored = self
                .store
                .append_events(
                    &execution_id,
                    &[NewEvent {
                        key: "phase.pending".into(),
                        kind,
                        data,
                    }],
                    &stigmer_resources::now(),
                )
                .map_err(internal)?;
            for event in stored {
                self.hub.publish(event);
            }
        }
        self.secrets
            .insert(&execution_id, request.secrets.into_iter().collect());
        if let Err(status) = start_workflow(&client, &execution_id).await {
            self.secrets.forget(&execution_id);
            let _guard = self.append_lock.lock().await;
            record_phase(
                self.store.as_ref(),
                &self.hub,
                &execution_id,
                ExecutionPhase::Failed,
                Some(status.message()),
            )?;
            return Err(status);
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
        let execution = self.execution(&request.into_inner().execution_id)?;
        Ok(Response::new(GetExecutionResponse {
            execution_json: resource_json(&execution)?,
        }))
    }

    async fn list_executions(
        &self,
        _request: Request<ListExecutionsRequest>,
    ) -> Result<Response<ListExecutionsResponse>, Status> {
        let executions = self
            .store
            .list(Kind::AgentExecution)
            .map_err(|error| Status::internal(error.to_string()))?;
        Ok(Response::new(ListExecutionsResponse {
            executions_json: executions
                .iter()
                .map(resource_json)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn cancel_execution(
        &self,
        request: Request<CancelExecutionRequest>,
    ) -> Result<Response<CancelExecutionResponse>, Status> {
        let execution_id = request.into_inner().execution_id;
        let execution = self.execution(&execution_id)?;
        if phase_of(&execution).is_terminal() {
            return Err(Status::failed_precondition(format!(
                "execution \"{execution_id}\" already ended ({})",
                phase_of(&execution)
            )));
        }
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
        } = request.into_inner();
        let internal = |error: stigmer_store::StoreError| Status::internal(error.to_string());
        let execution = self.execution(&execution_id)?;
        ensure_open(&execution)?;
        let agent_name = execution.spec["agent"].as_str().unwrap_or_default();
        let agent = self
            .store
            .get(Kind::Agent, agent_name)
            .map_err(internal)?
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "agent '{agent_name}' was deleted while its execution ran"
                ))
            })?;
        // A step reads only the messages it asks for: a range of this execution's messages
        // is a search of the store's key, so its cost does not grow with the run.
        let through = MessagePlace::end_of(through_turn);
        let range = |from: MessagePlace, through: MessagePlace| {
            self.store
                .execution_messages(&execution_id, from, through)
                .map_err(internal)
        };
        let messages = match wanted {
            None => self.conversation(&execution, through_turn)?,
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
            .find(|message| message.execution_id == execution_id)
            .map(|message| ProtoMessagePlace {
                turn: message.turn,
                index: message.index,
            });
        Ok(Response::new(RunContext {
            execution_json: resource_json(&execution)?,
            agent_json: resource_json(&agent)?,
            messages_json: messages
                .iter()
                .map(|message| message.data.to_string())
                .collect(),
            secrets: self.secrets.get(&execution_id).into_iter().collect(),
            last,
        }))
    }

    async fn save_messages(
        &self,
        request: Request<SaveMessagesRequest>,
    ) -> Result<Response<SaveMessagesResponse>, Status> {
        let request = request.into_inner();
        let execution = self.execution(&request.execution_id)?;
        ensure_open(&execution)?;
        let messages = request
            .messages_json
            .iter()
            .map(|text| {
                serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| Status::invalid_argument("a message is not a JSON object"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session = execution.spec["session"].as_str().unwrap_or_default();
        self.store
            .put_messages(
                session,
                &request.execution_id,
                request.turn,
                request.first_index,
                &messages,
            )
            .map_err(|error| Status::internal(error.to_string()))?;
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
        self.execution(&execution_id)?;
        let admission = self.limits.admit(peer)?;
        let subscription = Subscription {
            store: self.store.clone(),
            live: Some(self.hub.subscribe(&execution_id)),
            hub: self.hub.clone(),
            execution_id,
            last: after_seq,
            page: VecDeque::new(),
            ended: false,
            _admission: admission,
        };
        // Pulled by the transport: nothing is read before the client can take it.
        let stream = futures::stream::unfold(subscription, |mut subscription| async move {
            let next = subscription.next().await?;
            Some((next, subscription))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
