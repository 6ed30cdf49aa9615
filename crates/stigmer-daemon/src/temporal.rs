//! Temporal for this run: its ports planned before anything starts, then either the managed
//! dev server supervised as a unit, or an external one watched. Either way Temporal is ready
//! once it answers and knows the namespace, and the first working connection is kept as the
//! probe the runners' readiness checks use.

use crate::board::{Board, ComponentState};
use crate::error::{DaemonError, io_error};
use crate::logs::open_log;
use crate::stack::{self, LayerResult};
use crate::startup::bind;
use crate::unit::{self, ChildrenChanged, Launch, LaunchFactory, Spawn, UnitContext};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stigmer_config::{Component, Settings, TemporalMode};
use stigmer_logs::SharedLogFile;
use stigmer_temporal::TemporalProbe;
use tokio::process::Command;
use tokio::sync::{OnceCell, watch};

/// Ports and addresses of Temporal for this run.
pub struct TemporalPlan {
    pub address: String,
    pub ui_url: Option<String>,
    pub managed: Option<ManagedTemporal>,
}

/// How the managed dev server is started.
#[derive(Clone)]
pub struct ManagedTemporal {
    binary: std::path::PathBuf,
    port: u16,
    ui_port: Option<u16>,
    http_port: u16,
    metrics_port: u16,
    log_level: String,
}

/// Plans Temporal's address; for a managed one, checks that its ports are free (or picks them).
pub async fn plan(settings: &Settings) -> Result<TemporalPlan, DaemonError> {
    let mode = settings.temporal.mode.clone();
    stack::blocking("planning Temporal's ports", move || plan_mode(&mode)).await?
}

fn plan_mode(mode: &TemporalMode) -> Result<TemporalPlan, DaemonError> {
    match mode {
        TemporalMode::External { address } => Ok(TemporalPlan {
            address: address.clone(),
            ui_url: None,
            managed: None,
        }),
        TemporalMode::Managed {
            binary,
            port,
            ui_port,
            log_level,
        } => {
            let port = reserve(*port, "temporal.port")?;
            let ui_port = ui_port
                .map(|ui_port| reserve(ui_port, "temporal.ui_port"))
                .transpose()?;
            let free = |key| reserve(0, key);
            let managed = ManagedTemporal {
                binary: binary.clone(),
                port,
                ui_port,
                http_port: free("temporal http port")?,
                metrics_port: free("temporal metrics port")?,
                log_level: log_level.clone(),
            };
            Ok(TemporalPlan {
                address: format!("127.0.0.1:{port}"),
                ui_url: ui_port.map(|ui_port| format!("http://127.0.0.1:{ui_port}")),
                managed: Some(managed),
            })
        }
    }
}

/// Checks that a port Temporal will bind is free (or picks one for `0`).
fn reserve(port: u16, key: &'static str) -> Result<u16, DaemonError> {
    let listener = bind(port, key)?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(io_error("cannot read a reserved port"))
}

/// Temporal's layer of the daemon: everything it runs with.
pub struct TemporalLayer {
    settings: Settings,
    board: Arc<Board>,
    probe: Arc<OnceCell<TemporalProbe>>,
    ready: watch::Sender<bool>,
    address: String,
    managed: Option<(ManagedTemporal, SharedLogFile, ChildrenChanged)>,
}

impl TemporalLayer {
    /// Temporal as `plan` says; `probe` is set by the first check that finds it answering, and
    /// `ready` becomes true then. A managed Temporal's output goes to its log, opened here.
    pub fn new(
        settings: &Settings,
        plan: TemporalPlan,
        board: Arc<Board>,
        probe: Arc<OnceCell<TemporalProbe>>,
        ready: watch::Sender<bool>,
        children_changed: ChildrenChanged,
    ) -> Result<TemporalLayer, DaemonError> {
        let managed = match plan.managed {
            Some(managed) => Some((
                managed,
                open_log(settings, Component::Temporal)?,
                children_changed,
            )),
            None => None,
        };
        Ok(TemporalLayer {
            settings: settings.clone(),
            board,
            probe,
            ready,
            address: plan.address,
            managed,
        })
    }

    /// Supervises a managed Temporal, or watches an external one, until `stop`.
    pub async fn run(self, stop: watch::Receiver<bool>) -> LayerResult {
        match self.managed {
            Some((managed, log, children_changed)) => {
                let context = UnitContext {
                    component: Component::Temporal,
                    board: self.board,
                    log,
                    supervisor: self.settings.supervisor.clone(),
                    children_changed,
                    ready: self.ready,
                };
                let factory = factory(&self.settings, managed, &self.address, self.probe);
                unit::supervise(context, factory, stop).await;
            }
            None => {
                watch_external(
                    self.board,
                    self.address,
                    self.settings.temporal.namespace.clone(),
                    self.probe,
                    self.ready,
                    stop,
                )
                .await;
            }
        }
        Ok(())
    }
}

/// How often History may read each of its task queues, per second. The defaults (20) hold a
/// task that is ready for up to 50 ms once a short burst is spent, and a workflow waits on
/// these reads at every step (a workflow task after each activity, a timer, a child): a
/// sequence of HTTP calls spent ~40 ms per call waiting for them (BENCHMARKS.md,
/// "Workflows"). A read is one indexed query on the local SQLite; a local stack never comes
/// near these rates.
const QUEUE_READ_RATES: [&str; 3] = [
    "history.transferProcessorMaxPollRPS=1000",
    "history.timerProcessorMaxPollRPS=1000",
    "history.visibilityProcessorMaxPollRPS=1000",
];

fn factory(
    settings: &Settings,
    managed: ManagedTemporal,
    address: &str,
    probe: Arc<OnceCell<TemporalProbe>>,
) -> LaunchFactory {
    let db = settings.home.temporal_db();
    let namespace = settings.temporal.namespace.clone();
    let address = address.to_owned();
    Box::new(move |_generation| {
        let mut command = Command::new(&managed.binary);
        command
            .args(["server", "start-dev", "--ip", "127.0.0.1"])
            .args(["--port", &managed.port.to_string()])
            .args(["--http-port", &managed.http_port.to_string()])
            .args(["--metrics-port", &managed.metrics_port.to_string()])
            .arg("--db-filename")
            .arg(&db)
            .args(["--sqlite-pragma", "journal_mode=wal"])
            .args(["--sqlite-pragma", "synchronous=normal"])
            .args(
                QUEUE_READ_RATES
                    .iter()
                    .flat_map(|rate| ["--dynamic-config-value", rate]),
            )
            .args(["--log-format", "json", "--log-level", &managed.log_level]);
        match managed.ui_port {
            Some(ui_port) => {
                command.args(["--ui-ip", "127.0.0.1", "--ui-port", &ui_port.to_string()]);
            }
            None => {
                command.arg("--headless");
            }
        }
        if namespace != "default" {
            command.args(["--namespace", &namespace]);
        }
        unit::minimal_env(&mut command);
        let address = address.clone();
        let namespace = namespace.clone();
        let probe = probe.clone();
        Launch {
            spawn: Spawn::Process(command),
            probe: Box::new(move || {
                let address = address.clone();
                let namespace = namespace.clone();
                let probe = probe.clone();
                Box::pin(async move { answers(&address, &namespace, &probe).await })
            }),
        }
    })
}

/// True when Temporal at `address` answers and knows `namespace`; keeps the first working probe
/// for the runners' readiness checks.
async fn answers(address: &str, namespace: &str, probe: &OnceCell<TemporalProbe>) -> bool {
    if let Some(existing) = probe.get() {
        return existing.check_namespace().await.is_ok();
    }
    match TemporalProbe::connect(address, namespace).await {
        Ok(connected) => {
            if connected.check_namespace().await.is_err() {
                return false;
            }
            let _ = probe.set(connected);
            true
        }
        Err(_) => false,
    }
}

/// An external Temporal is neither started nor stopped; it is only watched.
async fn watch_external(
    board: Arc<Board>,
    address: String,
    namespace: String,
    probe: Arc<OnceCell<TemporalProbe>>,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let healthy = answers(&address, &namespace, &probe).await;
        board.update(Component::Temporal, |record| {
            if healthy && record.state != ComponentState::Running {
                record.state = ComponentState::Running;
                record.since = Some(Instant::now());
                record.last_exit = None;
            } else if !healthy {
                record.state = ComponentState::Starting;
                record.since = None;
                record.last_exit = Some(format!("external Temporal at {address} does not answer"));
            }
        });
        if healthy {
            ready.send_replace(true);
        }
        let interval = if healthy {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(100)
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = unit::until_true(&mut stop) => break,
        }
    }
    board.update(Component::Temporal, |record| {
        record.state = ComponentState::Stopped
    });
}
