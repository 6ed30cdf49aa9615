//! The API server's layer: `stigmer_server::serve` in-process on the listener bound at start,
//! and the daemon as the server sees it (status, shutdown requests).

use crate::board::{Board, ComponentState};
use crate::error::{DaemonError, io_error};
use crate::stack::LayerResult;
use crate::startup::ApiParts;
use crate::temporal::TemporalPlan;
use crate::unit;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stigmer_config::{Component, Settings};
use stigmer_proto::daemon::v1::GetStatusResponse;
use tokio::sync::watch;

/// The API server's layer of the daemon.
pub struct ApiLayer {
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    context: stigmer_server::ServerContext,
    board: Arc<Board>,
    started: Instant,
}

/// Makes the listener bound at start usable by the async server.
fn async_listener(listener: TcpListener) -> Result<tokio::net::TcpListener, DaemonError> {
    listener
        .set_nonblocking(true)
        .map_err(io_error("cannot configure the API listener"))?;
    tokio::net::TcpListener::from_std(listener)
        .map_err(io_error("cannot configure the API listener"))
}

impl ApiLayer {
    /// The server on the port and with the store and token prepared at start; it talks to
    /// Temporal at `temporal`, shows `board` as the status, and sets `shutdown` to true when a
    /// client asks the daemon to stop. `started` is when the daemon started.
    pub fn new(
        settings: &Settings,
        api: ApiParts,
        temporal: &TemporalPlan,
        board: Arc<Board>,
        started: Instant,
        shutdown: watch::Sender<bool>,
    ) -> Result<ApiLayer, DaemonError> {
        let control = Control {
            board: board.clone(),
            home: settings.home.root().display().to_string(),
            daemon_pid: std::process::id(),
            started,
            temporal_ui: temporal.ui_url.clone(),
            shutdown,
        };
        let context = stigmer_server::ServerContext {
            api_token: api.api_token,
            daemon: Arc::new(control),
            store: api.store,
            temporal: Some(stigmer_server::TemporalTarget {
                address: temporal.address.clone(),
                namespace: settings.temporal.namespace.clone(),
                pickup_timeout: Duration::from_secs(settings.supervisor.pickup_timeout_secs),
            }),
        };
        Ok(ApiLayer {
            listener: async_listener(api.listener)?,
            address: api.address,
            context,
            board,
            started,
        })
    }

    /// Serves until `stop`. An error ends only the server: it is shown as failed in status and
    /// returned when the daemon stops.
    pub fn run(
        self,
        mut stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = LayerResult> + Send + 'static {
        let ApiLayer {
            listener,
            address,
            context,
            board,
            started,
        } = self;
        board.update(Component::Server, |record| {
            record.state = ComponentState::Running;
            record.since = Some(started);
        });
        tracing::info!(address = %address, "API server listening.");
        async move {
            let result = stigmer_server::serve(listener, context, async move {
                unit::until_true(&mut stop).await;
            })
            .await;
            if let Err(error) = &result {
                tracing::error!(error = %error, "API server stopped with an error.");
                board.update(Component::Server, |record| {
                    record.state = ComponentState::Failed;
                    record.last_exit = Some(error.to_string());
                });
            }
            result.map_err(DaemonError::from)
        }
    }
}

/// The daemon as the API server sees it.
struct Control {
    board: Arc<Board>,
    home: String,
    daemon_pid: u32,
    started: Instant,
    temporal_ui: Option<String>,
    /// Set to true when a client asks the daemon to stop.
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
