//! The API server in-process: `stigmer_server::serve` on 127.0.0.1:0 with a store, a token and
//! optionally a Temporal, as one library call, for tests that need no daemon process.
//!
//! Behind the `server` feature, which the crates above the server enable: `stigmer-llm` and
//! `stigmer-server` itself use this crate's other helpers, and enabling it for the server's own
//! tests would make a package cycle through a dev-dependency (its unit tests would link a second
//! copy of `stigmer_server`), so those keep their own small setup.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stigmer_client::{ApiClients, Timeouts};
use stigmer_proto::daemon::v1::GetStatusResponse;
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};
use stigmer_server::{DaemonControl, ServeError, ServerContext, TemporalTarget};
use stigmer_store::{MemoryStore, SqliteStore, Store};

/// The token of an in-process server unless a test chooses another.
pub const TEST_TOKEN: &str = "test-token";

/// How long [`InProcessServer::stop`] waits for the server to close its connections before it
/// drops the server (and so its listener) anyway.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A daemon that is not there: an empty status, and a shutdown request that does nothing.
pub struct NoDaemon;

impl DaemonControl for NoDaemon {
    fn status(&self) -> GetStatusResponse {
        GetStatusResponse::default()
    }

    fn request_shutdown(&self) {}
}

/// A resource as a test stores it: `name` is also its id.
pub fn resource(
    kind: Kind,
    name: &str,
    spec: serde_json::Value,
    status: Option<serde_json::Value>,
) -> Resource {
    Resource {
        api_version: API_VERSION.into(),
        kind,
        metadata: Metadata {
            name: name.into(),
            id: Some(name.into()),
            ..Default::default()
        },
        spec,
        status,
    }
}

/// Which store the server runs on.
enum StoreChoice {
    Memory,
    /// A `SqliteStore` in a temporary directory the server owns.
    TemporarySqlite,
    Given(Arc<dyn Store>),
}

/// How to start an [`InProcessServer`]; [`InProcessServer::builder`] makes one.
pub struct InProcessServerBuilder {
    store: StoreChoice,
    resources: Vec<Resource>,
    token: String,
    temporal: Option<TemporalTarget>,
    daemon: Arc<dyn DaemonControl>,
}

impl InProcessServerBuilder {
    /// The real SQLite store in a temporary directory (removed when the server drops) instead
    /// of a `MemoryStore`.
    pub fn sqlite(mut self) -> Self {
        self.store = StoreChoice::TemporarySqlite;
        self
    }

    /// A store the test made (and may keep a handle to).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = StoreChoice::Given(store);
        self
    }

    /// Resources stored before the server starts serving.
    pub fn resources(mut self, resources: impl IntoIterator<Item = Resource>) -> Self {
        self.resources.extend(resources);
        self
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    /// Where executions run; without one, creating an execution fails as UNAVAILABLE.
    pub fn temporal(mut self, temporal: TemporalTarget) -> Self {
        self.temporal = Some(temporal);
        self
    }

    /// A Temporal a test started ([`crate::ExternalTemporal`]), namespace `default`.
    pub fn external_temporal(
        self,
        temporal: &crate::ExternalTemporal,
        pickup_timeout: Duration,
    ) -> Self {
        self.temporal(TemporalTarget {
            address: temporal.address.clone(),
            namespace: "default".into(),
            pickup_timeout,
        })
    }

    /// What `GetStatus` and `Shutdown` reach; [`NoDaemon`] unless set.
    pub fn daemon(mut self, daemon: Arc<dyn DaemonControl>) -> Self {
        self.daemon = daemon;
        self
    }

    /// Stores the resources, binds 127.0.0.1:0 and serves on the current Tokio runtime.
    pub async fn start(self) -> InProcessServer {
        let mut dir = None;
        let store: Arc<dyn Store> = match self.store {
            StoreChoice::Memory => Arc::new(MemoryStore::default()),
            StoreChoice::TemporarySqlite => {
                let temporary = tempfile::Builder::new()
                    .prefix("stigmer-server-")
                    .tempdir()
                    .expect("cannot create a temporary directory");
                let store = SqliteStore::open(&temporary.path().join("stigmer.db"))
                    .expect("cannot open the temporary SQLite store");
                dir = Some(temporary);
                Arc::new(store)
            }
            StoreChoice::Given(store) => store,
        };
        if !self.resources.is_empty() {
            store
                .put_all(&self.resources)
                .expect("cannot store the test's resources");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind 127.0.0.1:0");
        let address = listener.local_addr().expect("the listener has no address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let context = ServerContext {
            api_token: self.token.clone(),
            daemon: self.daemon,
            store: store.clone(),
            temporal: self.temporal,
        };
        let task = tokio::spawn(stigmer_server::serve(listener, context, async move {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        }));
        InProcessServer {
            address,
            token: self.token,
            store,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }
}

/// The API server serving in this process. Dropping it asks it to stop; [`InProcessServer::stop`]
/// also waits until it has, so that its port is free.
pub struct InProcessServer {
    address: SocketAddr,
    token: String,
    store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
    /// The temporary SQLite store's directory; dropped after the server.
    _dir: Option<tempfile::TempDir>,
}

impl InProcessServer {
    /// A server on a `MemoryStore` with no resources, no Temporal and [`TEST_TOKEN`].
    pub async fn start() -> InProcessServer {
        InProcessServer::builder().start().await
    }

    pub fn builder() -> InProcessServerBuilder {
        InProcessServerBuilder {
            store: StoreChoice::Memory,
            resources: Vec::new(),
            token: TEST_TOKEN.to_owned(),
            temporal: None,
            daemon: Arc::new(NoDaemon),
        }
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:port`, as a runner's launch spec names the API server.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The store the server runs on, to arrange or inspect what the API does not show.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Clients of every service over a new connection, with the server's token.
    pub async fn clients(&self) -> ApiClients {
        self.clients_with(Timeouts::default()).await
    }

    pub async fn clients_with(&self, timeouts: Timeouts) -> ApiClients {
        ApiClients::connect(&self.endpoint(), &self.token, timeouts)
            .await
            .expect("cannot connect to the in-process server")
    }

    /// Stops the server and waits until it has let go of its port. A client still holding a
    /// stream open has [`STOP_GRACE`] to let go; then the server is dropped anyway. Fails the
    /// test if serving failed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(served)) => served.expect("the in-process server failed"),
            Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Ok(Err(_)) => {}
            Err(_) => {
                // Aborting drops the serving future, and with it the listener.
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
