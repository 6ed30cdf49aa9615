//! The start, before anything runs: the home (its directories, the lock, what a crashed
//! predecessor left running), then what the API server needs (the token, the store, its port).
//! All of it is blocking work, done on the blocking pool.

use crate::error::{DaemonError, io_error};
use crate::stack;
use crate::state::{self, DaemonLock, RunState};
use crate::{process, store_file};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use stigmer_config::Settings;

/// The home, taken for this daemon.
pub struct TakenHome {
    /// Held for the daemon's whole life; the kernel releases it when the process ends.
    pub lock: DaemonLock,
    /// The previous daemon of this home ran the agent-runner in containers, which may be left.
    pub previous_had_containers: bool,
}

/// Creates the home's directories, takes the lock and stops what a previous daemon of this home
/// recorded and left running.
pub async fn take_home(settings: &Settings) -> Result<TakenHome, DaemonError> {
    let settings = settings.clone();
    stack::blocking("taking the home", move || {
        let home = &settings.home;
        home.create_dirs()
            .map_err(io_error(format!("cannot create {}", home.root().display())))?;
        let own_start_time = crate::process::start_time(std::process::id()).unwrap_or(0);
        let Some(lock) = DaemonLock::try_acquire(&home.lock_file(), own_start_time)
            .map_err(io_error("cannot take the daemon lock"))?
        else {
            return Err(DaemonError::AlreadyRunning {
                home: home.root().display().to_string(),
            });
        };
        tracing::info!(pid = std::process::id(), home = %home.root().display(), version = stigmer_config::VERSION, "Daemon starting.");
        let previous_had_containers = reap_leftovers(&settings);
        Ok(TakenHome {
            lock,
            previous_had_containers,
        })
    })
    .await?
}

/// What the API server is started with.
pub struct ApiParts {
    pub api_token: String,
    pub store: Arc<dyn stigmer_store::Store>,
    pub store_identity: store_file::FileIdentity,
    /// Bound first: it proves the port is free and fixes a `0` port.
    pub listener: TcpListener,
    pub address: SocketAddr,
}

/// Creates (or reads) the API token, opens the store and binds the API port.
pub async fn prepare_api(settings: &Settings) -> Result<ApiParts, DaemonError> {
    let settings = settings.clone();
    stack::blocking("preparing the API server", move || {
        let home = &settings.home;
        let api_token =
            state::ensure_api_token(home).map_err(io_error("cannot create the API token"))?;
        let store: Arc<dyn stigmer_store::Store> =
            Arc::new(stigmer_store::SqliteStore::open(&home.store_file())?);
        let store_identity = store_file::FileIdentity::of(&home.store_file())
            .map_err(io_error("cannot inspect the store's database file"))?;
        let listener = bind(settings.server.port, "server.port")?;
        let address = listener
            .local_addr()
            .map_err(io_error("cannot read the API server address"))?;
        Ok(ApiParts {
            api_token,
            store,
            store_identity,
            listener,
            address,
        })
    })
    .await?
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

/// Binds 127.0.0.1:`port` for the setting `key`, naming whoever holds the port already.
pub fn bind(port: u16, key: &'static str) -> Result<TcpListener, DaemonError> {
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
