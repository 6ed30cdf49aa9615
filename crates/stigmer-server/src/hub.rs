//! The event hub: announces, per execution, the sequence number of its last stored event.
//!
//! It keeps no events, so what it holds does not grow with the log or with slow subscribers:
//! a subscriber (`subscribe.rs`) reads the events from the store when the hub says there are
//! more.

use std::collections::HashMap;
use std::sync::Mutex;
use stigmer_proto::execution::ExecutionEvent;
use stigmer_store::StoredEvent;
use tokio::sync::watch;

/// True for the event that ends an execution's log.
pub fn is_terminal(event: &StoredEvent) -> bool {
    ExecutionEvent::is_terminal_wire(&event.kind, &event.data)
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
