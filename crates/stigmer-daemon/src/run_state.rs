//! `run/state.json` while the daemon runs: the endpoints and the children, rewritten whenever a
//! unit starts or loses a child. Writes happen on the blocking pool, one at a time and always of
//! the latest state, so a burst of changes costs at most one write after the one in progress.

use crate::error::DaemonError;
use crate::stack::{self, LayerResult};
use crate::state::{ChildRecord, RunState};
use crate::unit::{self, ChildrenChanged};
use std::sync::{Arc, Mutex};
use stigmer_config::{Component, StigmerHome};
use tokio::sync::{Notify, watch};

/// The run state, shared by the units that change it and the layer that writes it.
pub struct RunStateFile {
    home: StigmerHome,
    state: Arc<Mutex<RunState>>,
    changed: Arc<Notify>,
}

impl RunStateFile {
    /// Writes `state` for a start.
    pub async fn create(home: StigmerHome, state: RunState) -> Result<RunStateFile, DaemonError> {
        let state = Arc::new(Mutex::new(state));
        write(&home, &state).await?;
        Ok(RunStateFile {
            home,
            state,
            changed: Arc::new(Notify::new()),
        })
    }

    /// What the units call when their child changes.
    pub fn children_changed(&self) -> ChildrenChanged {
        let state = self.state.clone();
        let changed = self.changed.clone();
        Arc::new(move |component: Component, child: Option<ChildRecord>| {
            {
                let mut state = lock(&state);
                state
                    .children
                    .retain(|record| record.component != component);
                if let Some(child) = child {
                    state.children.push(child);
                }
            }
            changed.notify_one();
        })
    }

    /// Writes the state after every change until `stop`, then records that no children run
    /// (the layers above, which own the children, have stopped by then).
    pub async fn keep_written(self, mut stop: watch::Receiver<bool>) -> LayerResult {
        loop {
            tokio::select! {
                () = self.changed.notified() => write(&self.home, &self.state).await?,
                () = unit::until_true(&mut stop) => break,
            }
        }
        lock(&self.state).children.clear();
        write(&self.home, &self.state).await
    }
}

/// Writes the state on the blocking pool. The lock is held while writing: the file holds one
/// consistent state, never two interleaved.
async fn write(home: &StigmerHome, state: &Arc<Mutex<RunState>>) -> Result<(), DaemonError> {
    let (home, state) = (home.clone(), state.clone());
    stack::blocking("writing the run state", move || {
        let guard = lock(&state);
        if let Err(error) = guard.save(&home) {
            tracing::error!(error = %error, "Cannot write the run state.");
        }
    })
    .await
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
