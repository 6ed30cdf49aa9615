//! The daemon: a long-lived process that hosts the API server and supervises Temporal (when
//! managed) and both runners.
//!
//! [`run`] is the whole daemon as a library call: it takes the resolved [`Settings`] and a
//! shutdown future. It takes the home (its lock, held for the daemon's whole life, and whatever
//! a crashed predecessor left behind), prepares the API server and Temporal's ports, then starts
//! Temporal, the API server and the runners into a `stack::Stack` that stops in reverse
//! (runners, the API server, Temporal) on shutdown or when one of its tasks panics.
//!
//! The modules follow the phases: `startup` (the home, the token, the store, the API port),
//! `temporal` (planning and launching or watching Temporal), `api` (the API server), `runners`
//! (the runners' launches, and container mode), `stack` (the tasks and their stop order), with
//! `unit` supervising one child, `board` the status, `run_state` and `state` what is on disk.

mod api;
mod board;
mod error;
mod logs;
mod policy;
pub mod process;
mod run_state;
mod runners;
mod stack;
mod startup;
/// The run state of a home (lock, `run/state.json`, API token): the format lives with the client
/// library, which reads it to find a daemon; the daemon writes it.
pub use stigmer_client::home as state;
mod store_file;
mod temporal;
mod unit;

pub use board::ComponentState;
pub use error::DaemonError;
pub use logs::open_daemon_log;
pub use policy::EXIT_CONFIG;

use board::{Board, ComponentRecord, RunMode};
use state::RunState;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use stigmer_config::{Component, Secret, Settings};
use tokio::sync::watch;

/// Runs the daemon until `shutdown` completes or a client asks it to stop over the API.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // Everything the daemon and its children create (logs, the store, session directories,
    // files the agent writes) is private to the user, whatever umask the daemon was started with:
    // it holds conversations and tool output.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let home = startup::take_home(&settings).await?;
    let daemon_started = Instant::now();
    let daemon_pid = std::process::id();
    let container = runners::prepare(&settings, home.previous_had_containers).await?;
    let api = startup::prepare_api(&settings).await?;
    let temporal_plan = temporal::plan(&settings).await?;

    let run_state = run_state::RunStateFile::create(
        settings.home.clone(),
        RunState {
            daemon_pid,
            daemon_start_time: process::start_time(daemon_pid).unwrap_or(0),
            started_at: stigmer_logs::format_ts(chrono::Utc::now()),
            server_address: Some(api.address.to_string()),
            temporal_address: Some(temporal_plan.address.clone()),
            temporal_ui: temporal_plan.ui_url.clone(),
            children: Vec::new(),
            container_mode: container.is_some(),
        },
    )
    .await?;
    let children_changed = run_state.children_changed();
    let board = initial_board(
        daemon_pid,
        &api,
        &temporal_plan,
        if container.is_some() {
            RunMode::Container
        } else {
            RunMode::Process
        },
    );
    let store_identity = api.store_identity;
    let server_address = api.address;
    let api_token = Secret::new(api.api_token.clone());
    let (api_shutdown, mut api_shutdown_requested) = watch::channel(false);
    let api_layer = api::ApiLayer::new(
        &settings,
        api,
        &temporal_plan,
        board.clone(),
        daemon_started,
        api_shutdown,
    )?;
    let probe = Arc::new(tokio::sync::OnceCell::new());
    let (temporal_ready, temporal_ready_seen) = watch::channel(false);
    let temporal_layer = temporal::TemporalLayer::new(
        &settings,
        temporal_plan,
        board.clone(),
        probe.clone(),
        temporal_ready,
        children_changed.clone(),
    )?;
    let runners_layer = runners::RunnersLayer {
        settings: settings.clone(),
        board: board.clone(),
        server_address,
        api_token,
        probe,
        temporal_ready: temporal_ready_seen,
        container,
        children_changed,
    };

    let mut stack = stack::Stack::default();
    stack.push("the run state's writer", |stop| {
        run_state.keep_written(stop)
    });
    stack.push("the database file check", |stop| {
        store_file::watch(
            board.clone(),
            settings.home.store_file(),
            store_identity,
            stop,
        )
    });
    stack.push("Temporal", |stop| temporal_layer.run(stop));
    stack.push("the API server", |stop| api_layer.run(stop));
    // Runners start once Temporal answers, so their first poll succeeds.
    stack.push("runners", |stop| runners_layer.run(stop));

    // Wait for a stop request (the caller's signal or the API), or a task that panicked.
    let result = stack
        .run(async {
            tokio::select! {
                () = shutdown => tracing::info!("Shutdown signal received."),
                () = unit::until_true(&mut api_shutdown_requested) => {}
            }
        })
        .await;
    tracing::info!(
        uptime_secs = daemon_started.elapsed().as_secs(),
        "Daemon stopped."
    );
    drop(home.lock);
    result
}

/// The status before anything started: the API server is this process, Temporal is managed or
/// external, the agent-runner runs as a process or in containers.
fn initial_board(
    daemon_pid: u32,
    api: &startup::ApiParts,
    temporal_plan: &temporal::TemporalPlan,
    agent_runner_mode: RunMode,
) -> Arc<Board> {
    let board = Arc::new(Board::default());
    let mut server_record = ComponentRecord::new(RunMode::Process);
    server_record.pid = Some(daemon_pid);
    server_record.endpoint = Some(api.address.to_string());
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
        ComponentRecord::new(agent_runner_mode),
    );
    board.insert(
        Component::WorkflowRunner,
        ComponentRecord::new(RunMode::Process),
    );
    board
}
