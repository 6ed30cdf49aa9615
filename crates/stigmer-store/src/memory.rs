//! An in-memory [`Store`], for tests and for planning without a daemon.

use crate::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Mutex;
use stigmer_resources::{Kind, Resource};

/// Resources in a map behind a lock.
#[derive(Default)]
pub struct MemoryStore {
    resources: Mutex<BTreeMap<(Kind, String), Resource>>,
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
}
