//! The supervisor's view of each component, shared between the unit tasks (which write it) and
//! the API (which reads it for `stigmer server status`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;
use stigmer_config::Component;
use stigmer_proto::daemon::v1::ComponentStatus;

/// Where a component is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentState {
    Starting,
    Running,
    /// Alive but not answering (its process is stopped); restarted after a bound.
    Unresponsive,
    Restarting,
    Failed,
    Stopped,
}

impl ComponentState {
    /// The state as the status API carries it.
    pub fn to_proto(self) -> stigmer_proto::daemon::v1::ComponentState {
        use stigmer_proto::daemon::v1::ComponentState as Proto;
        match self {
            ComponentState::Starting => Proto::Starting,
            ComponentState::Running => Proto::Running,
            ComponentState::Unresponsive => Proto::Unresponsive,
            ComponentState::Restarting => Proto::Restarting,
            ComponentState::Failed => Proto::Failed,
            ComponentState::Stopped => Proto::Stopped,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Unresponsive => "unresponsive",
            ComponentState::Restarting => "restarting",
            ComponentState::Failed => "failed",
            ComponentState::Stopped => "stopped",
        }
    }
}

/// How a component runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    Process,
    Container,
    External,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Process => "process",
            RunMode::Container => "container",
            RunMode::External => "external",
        }
    }
}

/// One component's record.
#[derive(Clone, Debug)]
pub struct ComponentRecord {
    pub state: ComponentState,
    pub mode: RunMode,
    pub pid: Option<u32>,
    /// The engine's id of the current container (container mode).
    pub container_id: Option<String>,
    pub restarts: u32,
    /// When the current process started (for uptime).
    pub since: Option<Instant>,
    pub last_exit: Option<String>,
    pub endpoint: Option<String>,
}

impl ComponentRecord {
    pub fn new(mode: RunMode) -> Self {
        ComponentRecord {
            state: ComponentState::Starting,
            mode,
            pid: None,
            container_id: None,
            restarts: 0,
            since: None,
            last_exit: None,
            endpoint: None,
        }
    }
}

/// All components, behind one lock (never held across an await), and the problems the daemon
/// noticed that need the user.
#[derive(Default)]
pub struct Board {
    records: Mutex<BTreeMap<Component, ComponentRecord>>,
    /// One sentence per kind of problem (the key), e.g. the store file being deleted.
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Board {
    /// Reports a problem of kind `key` (replacing an earlier one of that kind), or clears it.
    pub fn set_problem(&self, key: &'static str, problem: Option<String>) {
        let mut problems = self
            .problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match problem {
            Some(problem) => problems.insert(key, problem),
            None => problems.remove(key),
        };
    }

    /// The problems reported now.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn insert(&self, component: Component, record: ComponentRecord) {
        self.lock().insert(component, record);
    }

    /// Changes one component's record in place.
    pub fn update(&self, component: Component, change: impl FnOnce(&mut ComponentRecord)) {
        if let Some(record) = self.lock().get_mut(&component) {
            change(record);
        }
    }

    #[cfg(test)]
    pub fn get(&self, component: Component) -> Option<ComponentRecord> {
        self.lock().get(&component).cloned()
    }

    /// The status of every component, in the order `server`, `temporal`, runners.
    pub fn snapshot(&self) -> Vec<ComponentStatus> {
        let records = self.lock();
        [
            Component::Server,
            Component::Temporal,
            Component::AgentRunner,
            Component::WorkflowRunner,
        ]
        .into_iter()
        .filter_map(|component| {
            let record = records.get(&component)?;
            Some(ComponentStatus {
                name: component.name().to_owned(),
                state: record.state.to_proto().into(),
                pid: record.pid.map(i64::from),
                container_id: record.container_id.clone(),
                mode: record.mode.as_str().to_owned(),
                restarts: record.restarts,
                uptime_secs: match record.state {
                    ComponentState::Running | ComponentState::Unresponsive => {
                        record.since.map(|since| since.elapsed().as_secs() as i64)
                    }
                    _ => None,
                },
                last_exit: record.last_exit.clone(),
                endpoint: record.endpoint.clone(),
            })
        })
        .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Component, ComponentRecord>> {
        // A panic while holding this lock cannot leave a record half-written in a way that
        // matters more than losing status, so a poisoned lock is simply taken over.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_proto::daemon::v1::ComponentState as Proto;

    #[test]
    fn status_carries_each_state_as_the_proto_enum_with_its_old_name() {
        let board = Board::default();
        for state in [
            ComponentState::Starting,
            ComponentState::Running,
            ComponentState::Unresponsive,
            ComponentState::Restarting,
            ComponentState::Failed,
            ComponentState::Stopped,
        ] {
            board.insert(
                Component::AgentRunner,
                ComponentRecord {
                    state,
                    ..ComponentRecord::new(RunMode::Process)
                },
            );
            let status = &board.snapshot()[0];
            assert_eq!(status.state(), state.to_proto());
            assert_ne!(status.state(), Proto::Unspecified);
            // `server status --json` and the table keep the names they always showed.
            assert_eq!(status.state().label(), state.as_str());
        }
    }
}
