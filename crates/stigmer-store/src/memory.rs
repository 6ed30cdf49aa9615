//! An in-memory [`Store`], for tests and for planning without a daemon.

use crate::{MessagePlace, NewEvent, Store, StoreError, StoredEvent, StoredMessage};
use std::collections::BTreeMap;
use std::sync::Mutex;
use stigmer_resources::{Kind, Resource};

/// A session's messages by (execution order, turn, index).
type Conversation = BTreeMap<(u64, u32, u32), StoredMessage>;

/// Resources and events in maps behind locks.
#[derive(Default)]
pub struct MemoryStore {
    resources: Mutex<BTreeMap<(Kind, String), Resource>>,
    events: Mutex<BTreeMap<String, Vec<StoredEvent>>>,
    /// Per session: (execution order, turn, index) → message.
    messages: Mutex<BTreeMap<String, Conversation>>,
    /// (execution, key) → a piece of the execution's own state.
    state: Mutex<BTreeMap<(String, String), serde_json::Value>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Kind, String), Resource>> {
        self.resources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError> {
        Ok(self.map().get(&(kind, name.to_owned())).cloned())
    }

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        Ok(self.map().contains_key(&(kind, name.to_owned())))
    }

    fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        Ok(self
            .map()
            .keys()
            .filter(|(stored_kind, _)| *stored_kind == kind)
            .map(|(_, name)| name.clone())
            .collect())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, StoreError> {
        Ok(self
            .map()
            .iter()
            .filter(|((stored_kind, _), _)| *stored_kind == kind)
            .map(|(_, resource)| resource.clone())
            .collect())
    }

    fn put_all_unless(
        &self,
        resources: &[Resource],
        abandoned: &dyn Fn() -> bool,
    ) -> Result<(), StoreError> {
        let mut map = self.map();
        // Checked before anything is written: the map has no transaction to roll back.
        for _ in resources {
            if abandoned() {
                return Err(StoreError::Abandoned);
            }
        }
        for resource in resources {
            map.insert(
                (resource.kind, resource.metadata.name.clone()),
                resource.clone(),
            );
        }
        Ok(())
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        Ok(self.map().remove(&(kind, name.to_owned())).is_some())
    }

    fn append_events(
        &self,
        execution_id: &str,
        events: &[NewEvent],
        ts: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut all = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let log = all.entry(execution_id.to_owned()).or_default();
        let mut stored = Vec::new();
        for event in events {
            if log.iter().any(|existing| existing.key == event.key) {
                continue;
            }
            let record = StoredEvent {
                execution_id: execution_id.to_owned(),
                seq: log.len() as u64 + 1,
                key: event.key.clone(),
                ts: ts.to_owned(),
                kind: event.kind.clone(),
                data: event.data.clone(),
            };
            log.push(record.clone());
            stored.push(record);
        }
        Ok(stored)
    }

    fn events_after(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let all = self.events.lock().unwrap_or_else(|p| p.into_inner());
        Ok(all
            .get(execution_id)
            .map(|log| {
                log.iter()
                    .filter(|event| event.seq > after_seq)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn events_page(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let all = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut page = Vec::new();
        let mut bytes = 0;
        for event in all
            .get(execution_id)
            .into_iter()
            .flatten()
            .filter(|event| event.seq > after_seq)
            .take(limit)
        {
            let data = event.data.to_string();
            bytes += crate::event_bytes(&event.key, &event.kind, &event.ts, &data);
            if bytes > max_bytes && !page.is_empty() {
                break;
            }
            page.push(event.clone());
        }
        Ok(page)
    }

    fn put_messages(
        &self,
        session_id: &str,
        execution_id: &str,
        turn: u32,
        first_index: u32,
        messages: &[serde_json::Value],
    ) -> Result<(), StoreError> {
        let mut all = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let session = all.entry(session_id.to_owned()).or_default();
        let order = session
            .iter()
            .find(|(_, message)| message.execution_id == execution_id)
            .map(|((order, _, _), _)| *order)
            .unwrap_or_else(|| {
                session
                    .keys()
                    .map(|(order, _, _)| order + 1)
                    .max()
                    .unwrap_or(1)
            });
        for (offset, data) in messages.iter().enumerate() {
            let index = first_index + offset as u32;
            session.insert(
                (order, turn, index),
                StoredMessage {
                    execution_id: execution_id.to_owned(),
                    turn,
                    index,
                    data: data.clone(),
                },
            );
        }
        Ok(())
    }

    fn session_messages(&self, session_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let all = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        Ok(all
            .get(session_id)
            .map(|session| session.values().cloned().collect())
            .unwrap_or_default())
    }

    fn execution_messages(
        &self,
        execution_id: &str,
        from: MessagePlace,
        through: MessagePlace,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let all = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        Ok(all
            .values()
            .flat_map(|session| session.values())
            .filter(|message| {
                message.execution_id == execution_id && (from..=through).contains(&message.place())
            })
            .cloned()
            .collect())
    }

    fn put_execution_state(
        &self,
        execution_id: &str,
        key: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((execution_id.to_owned(), key.to_owned()), data.clone());
        Ok(())
    }

    fn execution_state(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(execution_id.to_owned(), key.to_owned()))
            .cloned())
    }
}
