//! An in-memory [`Store`], for tests and for planning without a daemon.

use crate::{NewEvent, Store, StoreError, StoredEvent};
use std::collections::BTreeMap;
use std::sync::Mutex;
use stigmer_resources::{Kind, Resource};

/// Resources and events in maps behind locks.
#[derive(Default)]
pub struct MemoryStore {
    resources: Mutex<BTreeMap<(Kind, String), Resource>>,
    events: Mutex<BTreeMap<String, Vec<StoredEvent>>>,
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

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, StoreError> {
        Ok(self
            .map()
            .iter()
            .filter(|((stored_kind, _), _)| *stored_kind == kind)
            .map(|(_, resource)| resource.clone())
            .collect())
    }

    fn put_all(&self, resources: &[Resource]) -> Result<(), StoreError> {
        let mut map = self.map();
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
}
