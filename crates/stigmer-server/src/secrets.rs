//! The secrets of running executions, in memory only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

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

    pub(crate) fn insert(&self, execution_id: &str, secrets: BTreeMap<String, String>) {
        if !secrets.is_empty() {
            self.map().insert(execution_id.to_owned(), secrets);
        }
    }

    pub(crate) fn get(&self, execution_id: &str) -> BTreeMap<String, String> {
        self.map().get(execution_id).cloned().unwrap_or_default()
    }

    pub(crate) fn forget(&self, execution_id: &str) {
        self.map().remove(execution_id);
    }
}
