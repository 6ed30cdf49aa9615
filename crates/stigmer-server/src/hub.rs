//! The event hub: announces, per execution, the sequence number of its last stored event, with
//! the events of the latest append when they are small.
//!
//! It keeps no log: a subscriber (`subscribe.rs`) reads the store when the hub says there are
//! more events than it has. A subscriber that has read everything before the latest append
//! takes that append's events from the announcement instead (no trip to the store, which is a
//! hop to the blocking pool); the hub holds at most [`RECENT_BYTES`] of them per execution that
//! has subscribers, replaced by the next append, so what it holds does not grow with the log or
//! with slow subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use stigmer_proto::execution::ExecutionEvent;
use stigmer_store::StoredEvent;
use tokio::sync::watch;

/// Bytes of event data the hub keeps of an execution's latest events, at most.
pub const RECENT_BYTES: usize = 64 * 1024;

/// True for the event that ends an execution's log.
pub fn is_terminal(event: &StoredEvent) -> bool {
    ExecutionEvent::is_terminal_wire(&event.kind, &event.data)
}

/// What the hub announces of an execution: its last stored `seq`, and the events just stored
/// (consecutive, ending at `last`) when they were small enough to keep.
#[derive(Clone, Debug, Default)]
pub struct Announcement {
    pub last: u64,
    pub recent: Option<Arc<Recent>>,
}

/// Consecutive events ending at the announced `last`.
#[derive(Debug, Default)]
pub struct Recent {
    pub events: Vec<StoredEvent>,
    bytes: usize,
}

impl Announcement {
    /// The announced events after `after`, if the announcement holds all of them.
    pub fn events_after(&self, after: u64) -> Option<Vec<StoredEvent>> {
        let recent = self.recent.as_ref()?;
        let first = recent.events.first()?.seq;
        if first > after + 1 || self.last <= after {
            return None;
        }
        Some(
            recent
                .events
                .iter()
                .filter(|event| event.seq > after)
                .cloned()
                .collect(),
        )
    }
}

/// Announces, per execution, the sequence number of its last stored event (and its latest
/// small events).
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, watch::Sender<Announcement>>>,
}

impl EventHub {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Announcement>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the announcements of an execution; the receiver changes whenever events are
    /// stored for it, and closes after its terminal event.
    pub fn subscribe(&self, execution_id: &str) -> watch::Receiver<Announcement> {
        self.channels()
            .entry(execution_id.to_owned())
            .or_insert_with(|| watch::channel(Announcement::default()).0)
            .subscribe()
    }

    /// Forgets an execution nobody listens to any more.
    pub(crate) fn leave(&self, execution_id: &str, receiver: watch::Receiver<Announcement>) {
        let mut channels = self.channels();
        drop(receiver);
        if channels
            .get(execution_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(execution_id);
        }
    }

    /// Announces a stored event (after its transaction committed).
    pub(crate) fn publish(&self, event: StoredEvent) {
        let mut channels = self.channels();
        let terminal = is_terminal(&event);
        if let Some(sender) = channels.get(&event.execution_id) {
            sender.send_if_modified(|announced| {
                if event.seq <= announced.last {
                    return false;
                }
                let size = event_bytes(&event);
                // The events kept follow on from the last announced one; a gap (or too many
                // bytes) starts over, and an event too big alone is not kept at all.
                let mut recent = match announced.recent.take() {
                    Some(recent)
                        if announced.last + 1 == event.seq
                            && recent.bytes + size <= RECENT_BYTES =>
                    {
                        Arc::try_unwrap(recent).unwrap_or_else(|shared| Recent {
                            events: shared.events.clone(),
                            bytes: shared.bytes,
                        })
                    }
                    _ => Recent::default(),
                };
                announced.last = event.seq;
                if size <= RECENT_BYTES {
                    recent.bytes += size;
                    recent.events.push(event.clone());
                    announced.recent = Some(Arc::new(recent));
                }
                true
            });
        }
        if terminal {
            // Dropping the sender closes the receivers: they read the rest and end.
            channels.remove(&event.execution_id);
        }
    }
}

/// About what an event takes in memory.
fn event_bytes(event: &StoredEvent) -> usize {
    // The data's text length is a fair measure; the other fields are short.
    event.kind.len() + event.key.len() + event.ts.len() + json_len(&event.data) + 64
}

fn json_len(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(text) => text.len() + 2,
        serde_json::Value::Array(items) => items.iter().map(json_len).sum::<usize>() + 2,
        serde_json::Value::Object(fields) => {
            fields
                .iter()
                .map(|(key, value)| key.len() + 4 + json_len(value))
                .sum::<usize>()
                + 2
        }
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, text: &str) -> StoredEvent {
        StoredEvent {
            execution_id: "aex-1".into(),
            seq,
            key: format!("k{seq}"),
            ts: "2026-01-01T00:00:00.000Z".into(),
            kind: "token_delta".into(),
            data: serde_json::json!({"turn": 1, "text": text}),
        }
    }

    #[test]
    fn a_subscriber_that_is_caught_up_takes_the_latest_events_from_the_announcement() {
        let hub = EventHub::default();
        let receiver = hub.subscribe("aex-1");
        hub.publish(event(1, "a"));
        hub.publish(event(2, "b"));
        let announced = receiver.borrow().clone();
        assert_eq!(announced.last, 2);
        let seqs = |events: Option<Vec<StoredEvent>>| {
            events.map(|events| events.iter().map(|e| e.seq).collect::<Vec<_>>())
        };
        assert_eq!(seqs(announced.events_after(0)), Some(vec![1, 2]));
        assert_eq!(seqs(announced.events_after(1)), Some(vec![2]));
        assert_eq!(seqs(announced.events_after(2)), None);
    }

    #[test]
    fn what_the_hub_keeps_is_bounded_and_a_big_event_sends_subscribers_to_the_store() {
        let hub = EventHub::default();
        let receiver = hub.subscribe("aex-1");
        let chunk = "x".repeat(10 * 1024);
        for seq in 1..=20 {
            hub.publish(event(seq, &chunk));
        }
        let announced = receiver.borrow().clone();
        let recent = announced.recent.clone().unwrap();
        assert!(recent.bytes <= RECENT_BYTES, "{}", recent.bytes);
        assert_eq!(recent.events.last().unwrap().seq, 20);
        // A subscriber further behind than what is kept reads the store.
        assert!(announced.events_after(1).is_none());
        hub.publish(event(21, &"y".repeat(RECENT_BYTES + 1)));
        let announced = receiver.borrow().clone();
        assert_eq!(announced.last, 21);
        assert!(announced.events_after(20).is_none());
    }
}
