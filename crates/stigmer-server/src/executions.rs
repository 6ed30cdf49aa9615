//! `ExecutionService`: the append-only event log of executions and its subscriptions.
//!
//! Appends are serialised: the store numbers the events and, after the transaction commits,
//! the hub publishes them in that order. A subscriber joins the hub *before* it replays the
//! store, then drops anything it already sent (by sequence number) and fills any gap from the
//! store, so it sees every event once, in order, however replay and live events interleave.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use stigmer_proto::executions::v1::execution_service_server::ExecutionService;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, AppendEventsResponse, ExecutionEvent, SubscribeRequest,
};
use stigmer_store::{NewEvent, Store, StoredEvent};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Events a subscriber's channel may fall behind by before it re-reads the store.
const HUB_CAPACITY: usize = 1024;
/// Events read from the store at a time while replaying.
const PAGE: usize = 1000;

/// Phases after which an execution produces no more events.
pub const TERMINAL_PHASES: [&str; 3] = ["completed", "failed", "cancelled"];

/// True for the event that ends an execution's log.
pub fn is_terminal(event: &StoredEvent) -> bool {
    event.kind == "phase_changed"
        && event.data["phase"]
            .as_str()
            .is_some_and(|phase| TERMINAL_PHASES.contains(&phase))
}

/// Live fan-out of stored events, per execution.
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, broadcast::Sender<StoredEvent>>>,
}

impl EventHub {
    fn channels(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<StoredEvent>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, execution_id: &str) -> broadcast::Receiver<StoredEvent> {
        self.channels()
            .entry(execution_id.to_owned())
            .or_insert_with(|| broadcast::channel(HUB_CAPACITY).0)
            .subscribe()
    }

    fn publish(&self, event: StoredEvent) {
        let mut channels = self.channels();
        let terminal = is_terminal(&event);
        if let Some(sender) = channels.get(&event.execution_id) {
            // No receiver is fine: nobody is watching right now.
            let _ = sender.send(event.clone());
        }
        if terminal {
            channels.remove(&event.execution_id);
        }
    }
}

/// The event API over a store.
pub struct ExecutionApi {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    append_lock: tokio::sync::Mutex<()>,
}

impl ExecutionApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ExecutionApi {
            store,
            hub: Arc::new(EventHub::default()),
            append_lock: tokio::sync::Mutex::new(()),
        }
    }
}

fn to_proto(event: &StoredEvent) -> ExecutionEvent {
    ExecutionEvent {
        execution_id: event.execution_id.clone(),
        seq: event.seq,
        ts: event.ts.clone(),
        kind: event.kind.clone(),
        data_json: event.data.to_string(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ExecutionEvent, Status>> + Send>>;

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
        let mut events = Vec::with_capacity(request.events.len());
        for event in request.events {
            let data: serde_json::Value =
                serde_json::from_str(&event.data_json).map_err(|error| {
                    Status::invalid_argument(format!(
                        "event {:?} has invalid data: {error}",
                        event.key
                    ))
                })?;
            if !data.is_object() {
                return Err(Status::invalid_argument(format!(
                    "event {:?}: data must be a JSON object",
                    event.key
                )));
            }
            events.push(NewEvent {
                key: event.key,
                kind: event.kind,
                data,
            });
        }
        let _guard = self.append_lock.lock().await;
        let stored = self
            .store
            .append_events(&request.execution_id, &events, &stigmer_resources::now())
            .map_err(|error| Status::internal(error.to_string()))?;
        let seqs = stored.iter().map(|event| event.seq).collect();
        for event in stored {
            self.hub.publish(event);
        }
        Ok(Response::new(AppendEventsResponse { seqs }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let SubscribeRequest {
            execution_id,
            after_seq,
        } = request.into_inner();
        // Join the live feed before reading the store, so nothing falls between the two.
        let mut live = self.hub.subscribe(&execution_id);
        let store = self.store.clone();
        let (sender, receiver) = mpsc::channel::<Result<ExecutionEvent, Status>>(256);
        tokio::spawn(async move {
            let mut last = after_seq;
            // Sends stored events after `last`; returns true when the log has ended.
            let catch_up = |last: &mut u64| -> Result<(Vec<StoredEvent>, bool), Status> {
                let mut out = Vec::new();
                loop {
                    let page = store
                        .events_after(&execution_id, *last, PAGE)
                        .map_err(|error| Status::internal(error.to_string()))?;
                    let full = page.len() == PAGE;
                    for event in page {
                        *last = event.seq;
                        let terminal = is_terminal(&event);
                        out.push(event);
                        if terminal {
                            return Ok((out, true));
                        }
                    }
                    if !full {
                        return Ok((out, false));
                    }
                }
            };
            macro_rules! send_all {
                ($events:expr) => {
                    for event in $events {
                        if sender.send(Ok(to_proto(&event))).await.is_err() {
                            return;
                        }
                    }
                };
            }
            match catch_up(&mut last) {
                Ok((events, ended)) => {
                    send_all!(events);
                    if ended {
                        return;
                    }
                }
                Err(status) => {
                    let _ = sender.send(Err(status)).await;
                    return;
                }
            }
            loop {
                let event = match live.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the hub: the store has everything.
                        match catch_up(&mut last) {
                            Ok((events, ended)) => {
                                send_all!(events);
                                if ended {
                                    return;
                                }
                                continue;
                            }
                            Err(status) => {
                                let _ = sender.send(Err(status)).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if event.seq <= last {
                    continue;
                }
                if event.seq > last + 1 {
                    // A gap can only mean events we have not seen yet are stored: read them.
                    match catch_up(&mut last) {
                        Ok((events, ended)) => {
                            send_all!(events);
                            if ended {
                                return;
                            }
                        }
                        Err(status) => {
                            let _ = sender.send(Err(status)).await;
                            return;
                        }
                    }
                    continue;
                }
                last = event.seq;
                let terminal = is_terminal(&event);
                send_all!([event]);
                if terminal {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
