//! The event hub: announces, per execution, the sequence number of its last stored event.
//!
//! It keeps no events, so what it holds does not grow with the log or with slow subscribers:
//! a subscriber (`subscribe.rs`) reads the events from the store when the hub says there are
//! more.

use std::collections::HashMap;
use std::sync::Mutex;
use stigmer_proto::execution::ExecutionEvent;
use stigmer_store::StoredEvent;
use tokio::sync::{broadcast, watch};

/// Announcements of changed executions a listener may fall behind by before it is told it
/// missed some (and reads the list again).
const CHANGES_CAPACITY: usize = 1024;

/// True for the event that ends an execution's log.
pub fn is_terminal(event: &StoredEvent) -> bool {
    ExecutionEvent::is_terminal_wire(&event.kind, &event.data)
}

/// Announces, per execution, the sequence number of its last stored event. It keeps no events,
/// so what it holds does not grow with the log or with slow subscribers.
pub struct EventHub {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The id of every execution an event was stored for, for lists that show executions.
    changes: broadcast::Sender<String>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            channels: Mutex::default(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
        }
    }
}

impl EventHub {
    /// Joins the announcements of every execution's changes: the id of an execution each time
    /// events are stored for it (its creation, its phases, its status folds among them). A
    /// listener that falls more than 1,024 behind hears `Lagged` and should read the list again.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

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
    pub(crate) fn leave(&self, execution_id: &str, receiver: watch::Receiver<u64>) {
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
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(event.execution_id.clone());
        }
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
