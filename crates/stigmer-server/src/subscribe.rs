//! Subscriptions to an execution's event log: their limits and the paged stream each one is.
//!
//! A subscriber reads the store, one page bounded in bytes at a time and only when its client
//! has taken the previous one (the stream is pulled by the transport, which stops pulling when
//! the client's flow-control window is full). It marks the hub's announcement as seen *before*
//! each read, so an append it has not read wakes it; it sees every event once, in order. A
//! client that does not read therefore pins at most one page, and resumes where it paused.

use crate::blocking::on_store;
use crate::error::ServerError;
use crate::hub::{EventHub, is_terminal};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use stigmer_proto::executions::v1::ExecutionEvent as WireEvent;
use stigmer_store::{Store, StoredEvent};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::Status;

/// Events a subscriber reads from the store at a time, at most.
const PAGE_EVENTS: usize = 256;
/// Bytes of events a subscriber reads from the store at a time, at most (a single bigger event
/// is still read whole): what one subscriber may hold, whether its client reads or not.
pub const SUBSCRIBER_PAGE_BYTES: usize = 256 * 1024;
/// Open subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 32;
/// Open subscriptions the server holds in all.
pub const MAX_SUBSCRIPTIONS: usize = 512;

/// The stream of a `Subscribe` RPC.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Result<WireEvent, Status>> + Send>>;

/// Counts open subscriptions per connection and in all.
#[derive(Default)]
pub(crate) struct SubscriptionLimits {
    open: Mutex<(usize, HashMap<SocketAddr, usize>)>,
}

impl SubscriptionLimits {
    fn open(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<SocketAddr, usize>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a subscription of `peer`, or RESOURCE_EXHAUSTED saying which limit.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
    ) -> Result<Admission, ServerError> {
        let mut open = self.open();
        if open.0 >= MAX_SUBSCRIPTIONS {
            return Err(ServerError::TooManySubscriptions {
                limit: MAX_SUBSCRIPTIONS,
            });
        }
        if let Some(peer) = peer {
            let count = open.1.entry(peer).or_default();
            if *count >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
                return Err(ServerError::TooManySubscriptionsOnConnection {
                    limit: MAX_SUBSCRIPTIONS_PER_CONNECTION,
                });
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
pub(crate) struct Admission {
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
    /// Whether a read found nothing new: from then on every event is announced after its
    /// commit, so an announcement not past `last` means there is nothing to read yet.
    caught_up: bool,
    ended: bool,
    _admission: Admission,
}

/// The events of `execution_id` after `after_seq`, as a stream pulled by the transport:
/// nothing is read before the client can take it.
pub(crate) fn event_stream(
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    execution_id: String,
    after_seq: u64,
    admission: Admission,
) -> EventStream {
    let subscription = Subscription {
        store,
        live: Some(hub.subscribe(&execution_id)),
        hub,
        execution_id,
        last: after_seq,
        page: VecDeque::new(),
        caught_up: false,
        ended: false,
        _admission: admission,
    };
    Box::pin(futures::stream::unfold(
        subscription,
        |mut subscription| async move {
            let next = subscription.next().await?;
            Some((next, subscription))
        },
    ))
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
            let announced = *live.borrow_and_update();
            // A read is a trip to the blocking pool: skipped when nothing new was announced.
            if closed || !self.caught_up || announced > self.last {
                let execution_id = self.execution_id.clone();
                let after = self.last;
                let page = on_store(&self.store, move |store| {
                    store.events_page(&execution_id, after, PAGE_EVENTS, SUBSCRIBER_PAGE_BYTES)
                })
                .await;
                match page {
                    Ok(events) if !events.is_empty() => {
                        self.page = events.into();
                        continue;
                    }
                    Ok(_) if closed => return None,
                    Ok(_) => self.caught_up = true,
                    Err(error) => {
                        self.ended = true;
                        return Some(Err(error.into()));
                    }
                }
            }
            let live = self.live.as_mut()?;
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

fn to_proto(event: &StoredEvent) -> WireEvent {
    WireEvent {
        execution_id: event.execution_id.clone(),
        seq: event.seq,
        ts: event.ts.clone(),
        kind: event.kind.clone(),
        data_json: event.data.to_string(),
    }
}
