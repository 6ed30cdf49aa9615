//! Server-Sent Events: one execution's event log, and the changes of the executions list.
//!
//! An execution's stream is its `Subscribe` stream: each event's SSE `id` is its `seq`, so a
//! browser that reconnects sends `Last-Event-ID` and resumes right after it (nothing missed,
//! nothing twice). After the terminal event comes `event: end` and the stream closes; a
//! client that reconnects after that gets `end` again at once.

use super::routes::execution;
use super::summary::summarize;
use super::{Context, HttpError};
use crate::blocking::on_store;
use crate::error::ServerError;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;
use stigmer_proto::execution::ExecutionPhase;
use stigmer_proto::executions::v1::SubscribeRequest;
use stigmer_proto::executions::v1::execution_service_server::ExecutionService;
use stigmer_resources::Kind;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tonic::Request;

/// How often an idle stream sends a comment, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The list stream sends a changed execution at most this often.
const LIST_PERIOD: Duration = Duration::from_millis(200);

type EventResult = Result<Event, Infallible>;

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    after_seq: Option<u64>,
}

/// The events of one execution after `Last-Event-ID` (or `?after_seq=`), live.
pub async fn execution_events(
    context: Context,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
    connect_info: Option<axum::Extension<tonic::transport::server::TcpConnectInfo>>,
) -> Result<Sse<impl Stream<Item = EventResult>>, HttpError> {
    let after_seq = match headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
    {
        Some(text) => text.trim().parse::<u64>().map_err(|_| {
            HttpError::bad_request(format!("Last-Event-ID {text:?} is not an event's seq"))
        })?,
        None => query.after_seq.unwrap_or(0),
    };
    let resource = execution(&context, &id).await?;
    let phase = resource
        .status
        .as_ref()
        .and_then(|status| status.get("phase"))
        .and_then(|phase| serde_json::from_value::<ExecutionPhase>(phase.clone()).ok())
        .unwrap_or_default();
    let events: stream::BoxStream<'static, EventResult> = if phase.is_terminal() {
        // Ended: what is left is in the store, and no subscription would ever end.
        let store = context.store.clone();
        stream::unfold(Some(after_seq), move |after| {
            let store = store.clone();
            let id = id.clone();
            async move {
                let after = after?;
                let wanted = id.clone();
                let page = on_store(&store, move |store| {
                    store.events_page(&wanted, after, 256, crate::SUBSCRIBER_PAGE_BYTES)
                })
                .await;
                match page {
                    Ok(events) if events.is_empty() => None,
                    Ok(events) => {
                        let last = events.last().map(|event| event.seq);
                        let sse: Vec<EventResult> = events
                            .into_iter()
                            .map(|event| {
                                Ok(sse_event(
                                    &event.execution_id,
                                    event.seq,
                                    &event.ts,
                                    &event.kind,
                                    event.data,
                                ))
                            })
                            .collect();
                        Some((stream::iter(sse), last))
                    }
                    Err(error) => Some((stream::iter(vec![Ok(error_event(error.into()))]), None)),
                }
            }
        })
        .flatten()
        .boxed()
    } else {
        let mut request = Request::new(SubscribeRequest {
            execution_id: id,
            after_seq,
        });
        if let Some(axum::Extension(info)) = connect_info {
            request.extensions_mut().insert(info);
        }
        let subscription = context.executions.subscribe(request).await?.into_inner();
        subscription
            .map(|event| match event {
                Ok(event) => {
                    let data = serde_json::from_str(&event.data_json).unwrap_or(Value::Null);
                    Ok(sse_event(
                        &event.execution_id,
                        event.seq,
                        &event.ts,
                        &event.kind,
                        data,
                    ))
                }
                Err(status) => Ok(error_event(HttpError::from(status))),
            })
            .boxed()
    };
    let end = stream::once(async { Ok(Event::default().event("end").data("{}")) });
    Ok(Sse::new(events.chain(end)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The event as the CLI's `--json` prints it: `{"execution_id","seq","ts","kind","data"}`.
fn sse_event(execution_id: &str, seq: u64, ts: &str, kind: &str, data: Value) -> Event {
    let body = json!({
        "execution_id": execution_id,
        "seq": seq,
        "ts": ts,
        "kind": kind,
        "data": data,
    });
    Event::default().id(seq.to_string()).data(body.to_string())
}

/// A failure while streaming (`event: error`), the same object a JSON route answers with.
fn error_event(error: HttpError) -> Event {
    Event::default()
        .event("error")
        .data(json!({"error": {"code": error.code, "message": error.message}}).to_string())
}

/// The executions that are created or change, as list rows (`event: execution`), each at most
/// every 200 ms. A client that fell too far behind gets `event: resync` and reads the list
/// again.
pub async fn execution_changes(context: Context) -> Sse<impl Stream<Item = EventResult>> {
    let receiver = context.executions.hub().changes();
    let state = ChangeState {
        context: context.0.clone(),
        receiver,
        pending: BTreeSet::new(),
        last_flush: None,
        ready: Vec::new(),
    };
    let changes = stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop() {
                return Some((Ok(event), state));
            }
            let due = state
                .last_flush
                .map(|last| last + LIST_PERIOD)
                .unwrap_or_else(Instant::now);
            if !state.pending.is_empty() && Instant::now() >= due {
                state.flush().await;
                continue;
            }
            let wait = tokio::time::sleep_until(due);
            tokio::select! {
                received = state.receiver.recv() => match received {
                    Ok(id) => { state.pending.insert(id); }
                    Err(RecvError::Lagged(_)) => {
                        state.pending.clear();
                        return Some((Ok(Event::default().event("resync").data("{}")), state));
                    }
                    Err(RecvError::Closed) => return None,
                },
                () = wait, if !state.pending.is_empty() => {}
            }
        }
    });
    Sse::new(changes).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

struct ChangeState {
    context: std::sync::Arc<super::HttpContext>,
    receiver: tokio::sync::broadcast::Receiver<String>,
    pending: BTreeSet<String>,
    last_flush: Option<Instant>,
    /// Rows read and not sent yet (sent from the back).
    ready: Vec<Event>,
}

impl ChangeState {
    async fn flush(&mut self) {
        self.last_flush = Some(Instant::now());
        let ids: Vec<String> = std::mem::take(&mut self.pending).into_iter().collect();
        let rows = on_store(&self.context.store, move |store| {
            let now = stigmer_resources::now();
            let mut rows = Vec::new();
            for id in ids {
                let kind = if id.starts_with(&format!("{}-", Kind::WorkflowExecution.id_prefix())) {
                    Kind::WorkflowExecution
                } else {
                    Kind::AgentExecution
                };
                if let Some(resource) = store.get(kind, &id)?
                    && let Some(row) = summarize(&resource, &now)
                {
                    rows.push(row);
                }
            }
            Ok::<_, ServerError>(rows)
        })
        .await;
        match rows {
            Ok(rows) => {
                self.ready = rows
                    .into_iter()
                    .rev()
                    .filter_map(|row| serde_json::to_string(&row).ok())
                    .map(|row| Event::default().event("execution").data(row))
                    .collect();
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot read changed executions for the list stream.");
                self.ready = vec![Event::default().event("resync").data("{}")];
            }
        }
    }
}
