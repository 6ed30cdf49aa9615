//! The daemon: a long-lived process that hosts the API server and supervises Temporal (when
//! managed) and both runners.
//!
//! [`run`] is the whole daemon as a library call: it takes the resolved [`Settings`] and a
//! shutdown future. It holds the home's lock for its whole life, reaps whatever a crashed
//! predecessor left behind, starts the components in order (Temporal, the API server, the
//! runners), and on shutdown stops them in reverse (runners, the API server, Temporal).

mod board;
mod policy;
pub mod process;
pub mod state;
mod store_file;
mod unit;

pub use board::ComponentState;
pub use policy::EXIT_CONFIG;

use board::{Board, ComponentRecord, RunMode};
use state::{ChildRecord, DaemonLock, RunState};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stigmer_config::{
    AGENT_TASK_QUEUE, Component, RunnerLaunchSpec, RunnerRole, Secret, Settings, TemporalMode,
    WORKFLOW_TASK_QUEUE,
};
use stigmer_logs::{RotationPolicy, SharedLogFile};
use stigmer_proto::daemon::v1::GetStatusResponse;
use stigmer_temporal::TemporalProbe;
use tokio::process::Command;
use tokio::sync::{OnceCell, watch};
use unit::{Launch, LaunchFactory, Spawn, UnitContext};

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a Stigmer daemon is already running for {home}")]
    AlreadyRunning { home: String },
    #[error("port {port} ({key}) is already in use{}", holder_text(holder))]
    PortInUse {
        port: u16,
        key: &'static str,
        holder: Option<process::PortHolder>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Server(#[from] stigmer_server::ServeError),
    #[error(transparent)]
    Store(#[from] stigmer_store::StoreError),
    #[error("container mode cannot start: {0}")]
    Container(String),
}

impl DaemonError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            DaemonError::PortInUse { key, .. } => Some(format!(
                "stop the process holding the port, or choose another one with `{key}` in \
                 config.yaml or its STIGMER_* variable (0 picks a free port)"
            )),
            DaemonError::AlreadyRunning { .. } => {
                Some("see `stigmer server status`, or stop it with `stigmer server stop`".into())
            }
            DaemonError::Container(_) => Some(
                "process mode needs no container engine: `stigmer server start --agent-runner process` \
                 (or `agent_runner.mode: process` in config.yaml)"
                    .into(),
            ),
            _ => None,
        }
    }
}

fn holder_text(holder: &Option<process::PortHolder>) -> String {
    match holder {
        Some(holder) => format!(" by process {} ({})", holder.pid, holder.command),
        None => String::new(),
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let context = context.into();
    move |source| DaemonError::Io { context, source }
}

/// Opens the daemon's own log file, for the caller to install as its tracing sink before
/// calling [`run`].
pub fn open_daemon_log(settings: &Settings) -> std::io::Result<SharedLogFile> {
    SharedLogFile::open(
        settings.home.log_file(Component::Daemon),
        rotation(settings),
    )
}

fn rotation(settings: &Settings) -> RotationPolicy {
    RotationPolicy {
        max_bytes: settings.logs.max_file_bytes,
        max_files: settings.logs.max_files,
    }
}

/// Runs the daemon until `shutdown` completes or a client asks it to stop over the API.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // Everything the daemon and its children create (logs, the store, session directories,
    // files the agent writes) is private to the user, whatever umask the daemon was started with:
    // it holds conversations and tool output.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let home = settings.home.clone();
    home.create_dirs()
        .map_err(io_error(format!("cannot create {}", home.root().display())))?;
    let Some(_lock) = DaemonLock::try_acquire(&home.lock_file())
        .map_err(io_error("cannot take the daemon lock"))?
    else {
        return Err(DaemonError::AlreadyRunning {
            home: home.root().display().to_string(),
        });
    };
    let daemon_started = Instant::now();
    let daemon_pid = std::process::id();
    tracing::info!(pid = daemon_pid, home = %home.root().display(), version = stigmer_config::VERSION, "Daemon starting.");

    let previous_had_containers = reap_leftovers(&settings);
    let container = match settings.agent_runner.mode {
        stigmer_config::RunnerMode::Container => Some(prepare_container(&settings).await?),
        stigmer_config::RunnerMode::Process => {
            if previous_had_containers {
                match stigmer_container::Engine::connect().await {
                    Ok(engine) => remove_leftover_containers(&engine, &settings).await,
                    Err(error) => {
                        tracing::warn!(error = %error, "Cannot look for containers a previous daemon of this home left behind.");
                    }
                }
            }
            None
        }
    };
    let api_token =
        state::ensure_api_token(&home).map_err(io_error("cannot create the API token"))?;
    let store: Arc<dyn stigmer_store::Store> =
        Arc::new(stigmer_store::SqliteStore::open(&home.store_file())?);
    let store_identity = store_file::FileIdentity::of(&home.store_file())
        .map_err(io_error("cannot inspect the store's database file"))?;

    // Bind the API port first: it proves the port is free and fixes a `0` port.
    let server_listener = bind(settings.server.port, "server.port")?;
    let server_address = server_listener
        .local_addr()
        .map_err(io_error("cannot read the API server address"))?;
    let temporal_plan = plan_temporal(&settings)?;

    let run_state = Arc::new(Mutex::new(RunState {
        daemon_pid,
        daemon_start_time: process::start_time(daemon_pid).unwrap_or(0),
        started_at: stigmer_logs::format_ts(chrono::Utc::now()),
        server_address: Some(server_address.to_string()),
        temporal_address: Some(temporal_plan.address.clone()),
        temporal_ui: temporal_plan.ui_url.clone(),
        children: Vec::new(),
        container_mode: container.is_some(),
    }));
    save_state(&home, &run_state);

    let board = Arc::new(Board::default());
    let store_watch = tokio::spawn(watch_store_file(
        board.clone(),
        home.store_file(),
        store_identity,
    ));
    let mut server_record = ComponentRecord::new(RunMode::Process);
    server_record.pid = Some(daemon_pid);
    server_record.endpoint = Some(server_address.to_string());
    board.insert(Component::Server, server_record);
    let mut temporal_record = ComponentRecord::new(if temporal_plan.managed.is_some() {
        RunMode::Process
    } else {
        RunMode::External
    });
    temporal_record.endpoint = Some(temporal_plan.address.clone());
    board.insert(Component::Temporal, temporal_record);
    board.insert(
        Component::AgentRunner,
        ComponentRecord::new(if container.is_some() {
            RunMode::Container
        } else {
            RunMode::Process
        }),
    );
    board.insert(
        Component::WorkflowRunner,
        ComponentRecord::new(RunMode::Process),
    );

    // The API server, in-process.
    let (shutdown_requested, mut shutdown_watch) = watch::channel(false);
    let control = Arc::new(Control {
        board: board.clone(),
        home: home.root().display().to_string(),
        daemon_pid,
        started: daemon_started,
        temporal_ui: temporal_plan.ui_url.clone(),
        shutdown: shutdown_requested.clone(),
    });
    let (server_stop_tx, mut server_stop_rx) = watch::channel(false);
    server_listener
        .set_nonblocking(true)
        .map_err(io_error("cannot configure the API listener"))?;
    let listener = tokio::net::TcpListener::from_std(server_listener)
        .map_err(io_error("cannot configure the API listener"))?;
    let server_board = board.clone();
    let server_token = api_token.clone();
    let server_temporal = stigmer_server::TemporalTarget {
        address: temporal_plan.address.clone(),
        namespace: settings.temporal.namespace.clone(),
        pickup_timeout: Duration::from_secs(settings.supervisor.pickup_timeout_secs),
    };
    let server_task = tokio::spawn(async move {
        let context = stigmer_server::ServerContext {
            api_token: server_token,
            daemon: control,
            store,
            temporal: Some(server_temporal),
        };
        let result = stigmer_server::serve(listener, context, async move {
            unit::until_true(&mut server_stop_rx).await;
        })
        .await;
        if let Err(error) = &result {
            tracing::error!(error = %error, "API server stopped with an error.");
            server_board.update(Component::Server, |record| {
                record.state = ComponentState::Failed;
                record.last_exit = Some(error.to_string());
            });
        }
        result
    });
    board.update(Component::Server, |record| {
        record.state = ComponentState::Running;
        record.since = Some(daemon_started);
    });
    tracing::info!(address = %server_address, "API server listening.");

    let children_changed: unit::ChildrenChanged = {
        let run_state = run_state.clone();
        let home = home.clone();
        Arc::new(move |component: Component, child: Option<ChildRecord>| {
            {
                let mut state = lock(&run_state);
                state
                    .children
                    .retain(|record| record.component != component);
                if let Some(child) = child {
                    state.children.push(child);
                }
            }
            save_state(&home, &run_state);
        })
    };

    let probe: Arc<OnceCell<TemporalProbe>> = Arc::new(OnceCell::new());
    let mut units = Vec::new();

    // Temporal.
    let (temporal_ready_tx, mut temporal_ready) = watch::channel(false);
    let (temporal_stop_tx, temporal_stop_rx) = watch::channel(false);
    let temporal_task = match &temporal_plan.managed {
        Some(managed) => {
            let context = UnitContext {
                component: Component::Temporal,
                board: board.clone(),
                log: open_log(&settings, Component::Temporal)?,
                supervisor: settings.supervisor.clone(),
                children_changed: children_changed.clone(),
                ready: temporal_ready_tx,
            };
            let factory = temporal_factory(
                &settings,
                managed.clone(),
                &temporal_plan.address,
                probe.clone(),
            );
            tokio::spawn(unit::supervise(context, factory, temporal_stop_rx))
        }
        None => tokio::spawn(watch_external_temporal(
            board.clone(),
            temporal_plan.address.clone(),
            settings.temporal.namespace.clone(),
            probe.clone(),
            temporal_ready_tx,
            temporal_stop_rx,
        )),
    };

    // Runners start once Temporal answers, so their first poll succeeds.
    let (runners_stop_tx, runners_stop_rx) = watch::channel(false);
    let runner_settings = settings.clone();
    let runner_board = board.clone();
    let runner_probe = probe.clone();
    let runner_token = Secret::new(api_token.clone());
    let runners_task = tokio::spawn(async move {
        let mut stop = runners_stop_rx.clone();
        tokio::select! {
            () = unit::until_true(&mut temporal_ready) => {}
            () = unit::until_true(&mut stop) => return,
        }
        let Some(probe) = runner_probe.get().cloned() else {
            return;
        };
        let mut tasks = Vec::new();
        for (component, role, queue) in [
            (Component::AgentRunner, RunnerRole::Agent, AGENT_TASK_QUEUE),
            (
                Component::WorkflowRunner,
                RunnerRole::Workflow,
                WORKFLOW_TASK_QUEUE,
            ),
        ] {
            let log = match open_log(&runner_settings, component) {
                Ok(log) => log,
                Err(error) => {
                    runner_board.update(component, |record| {
                        record.state = ComponentState::Failed;
                        record.last_exit = Some(error.to_string());
                    });
                    continue;
                }
            };
            let (ready, _) = watch::channel(false);
            let context = UnitContext {
                component,
                board: runner_board.clone(),
                log,
                supervisor: runner_settings.supervisor.clone(),
                children_changed: children_changed.clone(),
                ready,
            };
            let factory = runner_factory(
                &runner_settings,
                (component, role, queue),
                server_address,
                runner_token.clone(),
                probe.clone(),
                container
                    .clone()
                    .filter(|_| component == Component::AgentRunner),
            );
            tasks.push(tokio::spawn(unit::supervise(
                context,
                factory,
                runners_stop_rx.clone(),
            )));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    units.push(runners_task);

    // Wait for a stop request: the caller's signal or the API.
    tokio::select! {
        () = shutdown => tracing::info!("Shutdown signal received."),
        () = unit::until_true(&mut shutdown_watch) => {}
    }

    // Stop in reverse order: runners, the API server, Temporal.
    tracing::info!("Stopping runners.");
    runners_stop_tx.send_replace(true);
    for task in units {
        let _ = task.await;
    }
    tracing::info!("Stopping the API server.");
    server_stop_tx.send_replace(true);
    let server_result = server_task.await;
    tracing::info!("Stopping Temporal.");
    temporal_stop_tx.send_replace(true);
    let _ = temporal_task.await;
    store_watch.abort();
    {
        let mut state = lock(&run_state);
        state.children.clear();
    }
    save_state(&home, &run_state);
    tracing::info!(
        uptime_secs = daemon_started.elapsed().as_secs(),
        "Daemon stopped."
    );
    match server_result {
        Ok(result) => result.map_err(DaemonError::from),
        Err(_) => Ok(()),
    }
}

/// How often the store's database file is checked.
const STORE_FILE_CHECK: Duration = Duration::from_secs(1);

/// Checks, for the daemon's life, that the store's database file is still the one it opened;
/// a deleted or replaced file is a problem in status and an error in the log (once per change).
async fn watch_store_file(
    board: Arc<Board>,
    path: std::path::PathBuf,
    opened: store_file::FileIdentity,
) {
    let mut reported: Option<String> = None;
    loop {
        tokio::time::sleep(STORE_FILE_CHECK).await;
        let problem = store_file::problem(&path, opened);
        if problem == reported {
            continue;
        }
        match &problem {
            Some(problem) => {
                tracing::error!(path = %path.display(), "{problem}");
            }
            None => {
                tracing::info!(path = %path.display(), "The database file is back in place.");
            }
        }
        board.set_problem(store_file::PROBLEM_KEY, problem.clone());
        reported = problem;
    }
}

/// Stops whatever a previous daemon of this home recorded and left running (after `kill -9`,
/// the parent-death signal normally got them already; this covers every other case). True when
/// that daemon ran the agent-runner in containers, which are found by label instead.
fn reap_leftovers(settings: &Settings) -> bool {
    let Some(previous) = RunState::load(&settings.home) else {
        return false;
    };
    for child in &previous.children {
        if process::reap_recorded(
            child.pid,
            child.start_time,
            Duration::from_secs(settings.supervisor.stop_timeout_secs),
        ) {
            tracing::warn!(unit = %child.component, pid = child.pid, "Stopped a process left behind by a previous daemon.");
        }
    }
    previous.container_mode
}

/// Removes the containers of this home (found by label) that a daemon which died left behind.
async fn remove_leftover_containers(engine: &stigmer_container::Engine, settings: &Settings) {
    let home_label = stigmer_container::home_label(settings.home.root());
    match engine
        .remove_labelled(stigmer_container::LABEL_HOME, &home_label)
        .await
    {
        Ok(removed) if !removed.is_empty() => {
            tracing::warn!(containers = ?removed, "Removed containers a previous daemon of this home left behind.");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "Cannot look for leftover containers."),
    }
}

fn bind(port: u16, key: &'static str) -> Result<std::net::TcpListener, DaemonError> {
    process::bind_loopback(port).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            DaemonError::PortInUse {
                port,
                key,
                holder: process::port_holder(port),
            }
        } else {
            DaemonError::Io {
                context: format!("cannot listen on 127.0.0.1:{port} ({key})"),
                source: error,
            }
        }
    })
}

/// Ports and addresses of Temporal for this run.
struct TemporalPlan {
    address: String,
    ui_url: Option<String>,
    managed: Option<ManagedTemporal>,
}

#[derive(Clone)]
struct ManagedTemporal {
    binary: std::path::PathBuf,
    port: u16,
    ui_port: Option<u16>,
    http_port: u16,
    metrics_port: u16,
    log_level: String,
}

fn plan_temporal(settings: &Settings) -> Result<TemporalPlan, DaemonError> {
    match &settings.temporal.mode {
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

fn temporal_factory(
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
        minimal_env(&mut command);
        let address = address.clone();
        let namespace = namespace.clone();
        let probe = probe.clone();
        Launch {
            spawn: Spawn::Process(command),
            probe: Box::new(move || {
                let address = address.clone();
                let namespace = namespace.clone();
                let probe = probe.clone();
                Box::pin(async move { temporal_answers(&address, &namespace, &probe).await })
            }),
        }
    })
}

/// True when Temporal at `address` answers and knows `namespace`; keeps the first working probe
/// for the runners' readiness checks.
async fn temporal_answers(address: &str, namespace: &str, probe: &OnceCell<TemporalProbe>) -> bool {
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
async fn watch_external_temporal(
    board: Arc<Board>,
    address: String,
    namespace: String,
    probe: Arc<OnceCell<TemporalProbe>>,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let healthy = temporal_answers(&address, &namespace, &probe).await;
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

fn runner_factory(
    settings: &Settings,
    (component, role, queue): (Component, RunnerRole, &'static str),
    server_address: std::net::SocketAddr,
    api_token: Secret,
    probe: TemporalProbe,
    container: Option<ContainerPlan>,
) -> LaunchFactory {
    let executable = std::env::current_exe().unwrap_or_else(|_| "stigmer".into());
    let home = settings.home.clone();
    let namespace = settings.temporal.namespace.clone();
    let log_filter = settings.logs.level.clone();
    let llm = settings.llm.clone();
    let daemon_pid = std::process::id();
    let epoch_ms = chrono::Utc::now().timestamp_millis();
    Box::new(move |generation| {
        // Unique per launch: Temporal lists a stopped poller for minutes, so readiness must
        // look for this launch's identity, not any poller.
        let worker_identity = format!("{component}@{daemon_pid}.{epoch_ms}.{generation}");
        let spec = RunnerLaunchSpec {
            role,
            home: home.root().to_path_buf(),
            temporal_address: probe.address().to_owned(),
            temporal_namespace: namespace.clone(),
            task_queue: queue.to_owned(),
            worker_identity: worker_identity.clone(),
            api_endpoint: format!("http://{server_address}"),
            api_token: api_token.clone(),
            workspace_dir: home.workspace_dir(),
            log_filter: log_filter.clone(),
            llm_provider: llm.provider,
            llm_model: llm.model.clone(),
            llm_base_url: llm.base_url.clone(),
            openai_api_key: llm.openai_api_key.clone(),
            anthropic_api_key: llm.anthropic_api_key.clone(),
        };
        let spawn = match &container {
            Some(plan) => plan.spawn(&spec, daemon_pid, generation),
            None => {
                let mut command = Command::new(&executable);
                command.args(["internal", component.name()]);
                minimal_env(&mut command);
                command.envs(spec.to_env());
                Spawn::Process(command)
            }
        };
        let probe = probe.clone();
        Launch {
            spawn,
            probe: Box::new(move || {
                let probe = probe.clone();
                let identity = worker_identity.clone();
                Box::pin(async move {
                    probe
                        .poller_identities(queue)
                        .await
                        .is_ok_and(|identities| identities.contains(&identity))
                })
            }),
        }
    })
}

/// What container mode needs for every launch of the agent-runner.
#[derive(Clone)]
struct ContainerPlan {
    engine: stigmer_container::Engine,
    image: String,
    home_label: String,
    network: stigmer_container::Network,
    workspace: std::path::PathBuf,
    user: Option<String>,
}

impl ContainerPlan {
    /// The container for one launch: the launch contract as its environment (addresses made
    /// reachable from inside), the workspace mounted at the same path, our labels, no restart
    /// policy (the daemon supervises).
    fn spawn(&self, spec: &RunnerLaunchSpec, daemon_pid: u32, generation: u64) -> Spawn {
        use stigmer_container::address::for_container;
        let os = stigmer_container::HostOs::current();
        let mut spec = spec.clone();
        spec.temporal_address = for_container(&spec.temporal_address, os, self.network);
        spec.api_endpoint = for_container(&spec.api_endpoint, os, self.network);
        spec.llm_base_url = for_container(&spec.llm_base_url, os, self.network);
        let workspace = self.workspace.display().to_string();
        Spawn::Container {
            engine: self.engine.clone(),
            spec: stigmer_container::ContainerSpec {
                name: format!(
                    "stigmer-agent-runner-{}-{daemon_pid}-{generation}",
                    self.home_label
                ),
                image: self.image.clone(),
                env: spec.to_env(),
                labels: [
                    (stigmer_container::LABEL_HOME, self.home_label.clone()),
                    (
                        stigmer_container::LABEL_COMPONENT,
                        "agent-runner".to_owned(),
                    ),
                    (
                        stigmer_container::LABEL_VERSION,
                        stigmer_config::VERSION.to_owned(),
                    ),
                ]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
                mounts: vec![(workspace.clone(), workspace)],
                network: Some(self.network),
                user: self.user.clone(),
            },
        }
    }
}

/// Connects to the engine, removes what a crashed daemon of this home left, and ensures the
/// image: all before anything starts, so a missing engine fails the start with its reason.
async fn prepare_container(settings: &Settings) -> Result<ContainerPlan, DaemonError> {
    let network = stigmer_container::Network::parse(&settings.agent_runner.network)
        .unwrap_or(stigmer_container::Network::Host);
    let os = stigmer_container::HostOs::current();
    if os == stigmer_container::HostOs::Linux && network == stigmer_container::Network::Bridge {
        // Docker Desktop and Podman machines forward host.docker.internal to the host's
        // loopback; a Linux bridge reaches the host's interfaces only.
        return Err(DaemonError::Container(
            "agent_runner.network: bridge cannot work on Linux: the API server and the managed \
             Temporal listen on 127.0.0.1 only, which a container on a bridge network cannot \
             reach; use `network: host` (the default on Linux)"
                .into(),
        ));
    }
    let engine = stigmer_container::Engine::connect()
        .await
        .map_err(|error| DaemonError::Container(error.to_string()))?;
    remove_leftover_containers(&engine, settings).await;
    let home_label = stigmer_container::home_label(settings.home.root());
    let binary = std::env::current_exe()
        .map_err(|error| DaemonError::Container(format!("cannot find our own binary: {error}")))?;
    let ensured = engine
        .ensure_image(&stigmer_container::image::ImagePlan {
            version: stigmer_config::VERSION.to_owned(),
            binary,
            registry: settings.agent_runner.image_registry.clone(),
        })
        .await
        .map_err(|error| DaemonError::Container(error.to_string()))?;
    tracing::info!(
        image = %ensured.reference,
        source = ?ensured.source,
        took_ms = ensured.took.as_millis() as u64,
        engine = %engine.host(),
        "Agent-runner image ready."
    );
    let image = engine
        .image_id(&ensured.reference)
        .await
        .unwrap_or_else(|| ensured.reference.clone());
    let workspace = settings.home.workspace_dir();
    fs_err::create_dir_all(&workspace).map_err(io_error("cannot create the workspace"))?;
    // The container runs as the user who runs Stigmer, so workspace files stay theirs; when
    // that is root, as the image's unprivileged user, who must be able to write the workspace.
    let uid = nix::unistd::getuid();
    let user = if uid.is_root() {
        // The whole tree: sessions that ran in process mode were written by root.
        hand_over(&workspace, 65532).map_err(|error| {
            DaemonError::Container(format!(
                "cannot hand the workspace {} to the container user: {error}",
                workspace.display()
            ))
        })?;
        None
    } else {
        Some(format!("{}:{}", uid, nix::unistd::getgid()))
    };
    Ok(ContainerPlan {
        engine,
        image,
        home_label,
        network,
        workspace,
        user,
    })
}

/// Gives `path` and everything under it to user and group `id` (symbolic links themselves, never
/// what they point to), skipping what is theirs already.
fn hand_over(path: &std::path::Path, id: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.uid() != id || metadata.gid() != id {
        std::os::unix::fs::lchown(path, Some(id), Some(id))?;
    }
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            hand_over(&entry?.path(), id)?;
        }
    }
    Ok(())
}

/// Children get a clean environment: only what every program needs, never the daemon's
/// variables (which is how configuration used to leak and drift).
fn minimal_env(command: &mut Command) {
    command.env_clear();
    for name in [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "RUST_BACKTRACE",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
}

fn open_log(settings: &Settings, component: Component) -> Result<SharedLogFile, DaemonError> {
    let path = settings.home.log_file(component);
    SharedLogFile::open(&path, rotation(settings))
        .map_err(io_error(format!("cannot open {}", path.display())))
}

/// Writes the run state. The lock is held while writing: two units changing their children at
/// once must not interleave their writes of the file.
fn save_state(home: &stigmer_config::StigmerHome, state: &Mutex<RunState>) {
    let guard = lock(state);
    if let Err(error) = guard.save(home) {
        tracing::error!(error = %error, "Cannot write the run state.");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The daemon as the API server sees it.
struct Control {
    board: Arc<Board>,
    home: String,
    daemon_pid: u32,
    started: Instant,
    temporal_ui: Option<String>,
    shutdown: watch::Sender<bool>,
}

impl stigmer_server::DaemonControl for Control {
    fn status(&self) -> GetStatusResponse {
        GetStatusResponse {
            daemon_pid: i64::from(self.daemon_pid),
            home: self.home.clone(),
            components: self.board.snapshot(),
            temporal_ui: self.temporal_ui.clone(),
            version: stigmer_config::VERSION.to_owned(),
            daemon_uptime_secs: self.started.elapsed().as_secs() as i64,
            problems: self.board.problems(),
        }
    }

    fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_is_handed_over_whole_without_following_links() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::getuid().is_root() {
            eprintln!("skipped: only root can give files away");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("workspace");
        fs_err::create_dir_all(workspace.join("ses-1/src")).unwrap();
        fs_err::write(workspace.join("ses-1/src/main.rs"), "fn main() {}").unwrap();
        std::os::unix::fs::symlink(outside.path(), workspace.join("ses-1/out")).unwrap();
        hand_over(&workspace, 65532).unwrap();
        for path in ["", "ses-1", "ses-1/src", "ses-1/src/main.rs", "ses-1/out"] {
            let metadata = std::fs::symlink_metadata(workspace.join(path)).unwrap();
            assert_eq!((metadata.uid(), metadata.gid()), (65532, 65532), "{path}");
        }
        assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), 0);
    }
}
