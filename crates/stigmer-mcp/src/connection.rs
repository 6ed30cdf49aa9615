//! One live MCP server: the start (bounded by `startup_timeout`, every failure classified),
//! the tool list and its refresh, calls with timeouts, progress routing and cancellation, the
//! detection of a server that died, and a bounded close.
//!
//! rmcp runs the protocol on a task of its own; the [`Handler`] it calls back shares a
//! [`Shared`] state with the [`Connection`]: the progress routes of the calls in flight, the
//! `tools/list_changed` counter, and the life of the server (started, closing, dead and why),
//! which decides the one [`Notice::Failed`] of a connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotification, CancelledNotificationParam,
    ClientCapabilities, ClientConfig, ClientNotification, ClientRequest, Implementation,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, RequestId, ServerNotification,
    ServerResult, SubscriptionFilter,
};
use rmcp::service::{
    ClientCacheConfig, ClientInitializeError, ClientLifecycleMode, ClientServiceExt,
    NotificationContext, Peer, PeerRequestOptions, RoleClient, RunningService, ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tokio::sync::mpsc;

use crate::process::{Ended, ServerProcess, describe_spawn_error};
use crate::render::{cap_instructions, render_result};
use crate::{
    CallOutcome, Notice, Phase, Progress, ServerConfig, ServerFailure, TOOL_TIMEOUT_CAP_FACTOR,
    ToolInfo, Transport,
};

/// Bound on the graceful part of a close (stdin closed or HTTP session ended, then waiting
/// for the process to exit); after it the group is killed.
const GRACEFUL_CLOSE: Duration = Duration::from_secs(1);
/// A stdio server that wrote non-JSON lines to stdout and nothing else gets this long to start
/// speaking MCP before the start fails (some servers print a banner first).
const GARBAGE_GRACE: Duration = Duration::from_secs(2);
/// How long a failure waits for the process to be reaped and its stderr to close, so that the
/// reason has the exit status and the complete stderr tail.
const DEATH_DETAILS_WAIT: Duration = Duration::from_millis(500);
/// Progress notifications that arrive before their call registered (a race of microseconds)
/// are kept, this many at most.
const EARLY_PROGRESS: usize = 64;

/// One live MCP server. Dropping it stops the server (the process group of a stdio server is
/// killed); [`Connection::close`] does it gracefully first.
pub struct Connection {
    name: String,
    tool_timeout: Duration,
    list_timeout: Duration,
    enabled_tools: Option<Vec<String>>,
    tools: Vec<ToolInfo>,
    instructions: Option<String>,
    shared: Arc<Shared>,
    peer: Peer<RoleClient>,
    service: Option<RunningService<RoleClient, Handler>>,
    process: Option<ServerProcess>,
    /// Changes counted when the current list was requested.
    listed_at_change: u64,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("tools", &self.tools.len())
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// State shared between the connection and rmcp's callbacks.
struct Shared {
    server: String,
    notices: mpsc::UnboundedSender<Notice>,
    /// `tools/list_changed` notifications received.
    tool_changes: AtomicU64,
    progress: Mutex<ProgressRoutes>,
    life: Mutex<Life>,
    stderr: Option<Arc<crate::process::StderrTail>>,
}

#[derive(Default)]
struct Life {
    started: bool,
    closing: bool,
    /// Why the server is not running, once it is known to be dead.
    death: Option<String>,
}

#[derive(Default)]
struct ProgressRoutes {
    routes: HashMap<ProgressToken, mpsc::UnboundedSender<Progress>>,
    early: VecDeque<(ProgressToken, Progress)>,
}

impl Shared {
    fn new(
        server: &str,
        notices: mpsc::UnboundedSender<Notice>,
        stderr: Option<Arc<crate::process::StderrTail>>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            server: server.to_owned(),
            notices,
            tool_changes: AtomicU64::new(0),
            progress: Mutex::new(ProgressRoutes::default()),
            life: Mutex::new(Life::default()),
            stderr,
        })
    }

    fn lock_life(&self) -> std::sync::MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn death(&self) -> Option<String> {
        self.lock_life().death.clone()
    }

    /// Records that the server is dead; sends the one [`Notice::Failed`] if it had started and
    /// nobody is closing it.
    fn record_death(&self, reason: String) {
        let mut life = self.lock_life();
        if life.death.is_some() {
            return;
        }
        life.death = Some(reason.clone());
        if life.started && !life.closing {
            tracing::warn!(server = %self.server, %reason, "MCP server is not running");
            let _ = self.notices.send(Notice::Failed(ServerFailure {
                server: self.server.clone(),
                phase: Phase::Call,
                reason,
            }));
        }
    }

    fn tools_list_changed(&self) {
        self.tool_changes.fetch_add(1, Ordering::SeqCst);
        let started = self.lock_life().started;
        tracing::debug!(server = %self.server, "tools/list_changed");
        if started {
            let _ = self.notices.send(Notice::ToolsChanged {
                server: self.server.clone(),
            });
        }
    }

    fn route_progress(&self, params: ProgressNotificationParam) {
        let progress = Progress {
            progress: params.progress,
            total: params.total,
            message: params.message,
        };
        let mut routes = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = routes.routes.get(&params.progress_token) {
            let _ = route.send(progress);
        } else {
            if routes.early.len() == EARLY_PROGRESS {
                routes.early.pop_front();
            }
            routes.early.push_back((params.progress_token, progress));
        }
    }

    /// Routes the progress of `token` to a new channel (with what arrived before).
    fn open_route(self: &Arc<Self>, token: ProgressToken) -> ProgressRoute {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut routes = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let early = std::mem::take(&mut routes.early);
        for (early_token, progress) in early {
            if early_token == token {
                let _ = sender.send(progress);
            } else {
                routes.early.push_back((early_token, progress));
            }
        }
        routes.routes.insert(token.clone(), sender);
        ProgressRoute {
            shared: self.clone(),
            token,
            receiver,
        }
    }

    fn stderr_suffix(&self) -> String {
        self.stderr
            .as_ref()
            .map(|tail| tail.suffix())
            .unwrap_or_default()
    }
}

/// The progress of one call; unregistered when dropped.
struct ProgressRoute {
    shared: Arc<Shared>,
    token: ProgressToken,
    receiver: mpsc::UnboundedReceiver<Progress>,
}

impl Drop for ProgressRoute {
    fn drop(&mut self) {
        let mut routes = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        routes.routes.remove(&self.token);
    }
}

/// Sends `notifications/cancelled` for a request whose caller stopped waiting (the call's
/// future was dropped), unless disarmed.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        runtime.spawn(async move {
            let notification = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("the call was cancelled by the agent run".to_owned()),
            ));
            let _ = peer
                .send_notification(ClientNotification::CancelledNotification(notification))
                .await;
        });
    }
}

/// rmcp's callbacks. No sampling or elicitation capability is declared, so servers never ask
/// for them.
struct Handler {
    shared: Arc<Shared>,
}

impl rmcp::ClientHandler for Handler {
    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.shared.route_progress(params);
        std::future::ready(())
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.shared.tools_list_changed();
        std::future::ready(())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("stigmer", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// A start that went wrong, before it becomes a [`ServerFailure`].
enum StartError {
    Init(Box<ClientInitializeError>),
    List(ServiceError),
    Timeout,
    Exited(Option<Ended>),
    Garbage(String),
}

impl Connection {
    /// Starts the server and lists its tools, within `config.startup_timeout`. Notices of this
    /// connection (list changes, a death after the start) go to `notices`.
    pub async fn connect(
        config: ServerConfig,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<Connection, ServerFailure> {
        let ServerConfig {
            name,
            transport,
            enabled_tools,
            startup_timeout,
            tool_timeout,
        } = config;
        let failure = |reason: String| ServerFailure {
            server: name.clone(),
            phase: Phase::Start,
            reason,
        };
        match transport {
            Transport::Stdio { command, display } => {
                let program = command
                    .as_std()
                    .get_program()
                    .to_string_lossy()
                    .into_owned();
                let (process, pipes) = ServerProcess::spawn(&name, command)
                    .map_err(|error| failure(describe_spawn_error(&error, &program, &display)))?;
                let command_line: &str = &display;
                tracing::debug!(
                    server = %name,
                    pid = process.pid,
                    command = command_line,
                    "MCP server started"
                );
                let shared = Shared::new(&name, notices, Some(process.stderr.clone()));
                let start = start(
                    shared.clone(),
                    (pipes.stdout, pipes.stdin),
                    enabled_tools.as_deref(),
                );
                // Gathering the details of a failure stays within the startup timeout too.
                let deadline = Instant::now() + startup_timeout;
                let mut ended = process.ended_watch();
                let mut stdout = process.stdout.clone();
                let outcome = tokio::select! {
                    outcome = tokio::time::timeout(startup_timeout, start) => {
                        outcome.unwrap_or(Err(StartError::Timeout))
                    }
                    ended = ended.wait_for(Option::is_some) => {
                        Err(StartError::Exited(ended.ok().and_then(|e| e.clone())))
                    }
                    garbage = garbage_without_json(&mut stdout) => Err(StartError::Garbage(garbage)),
                };
                match outcome {
                    Ok(started) => {
                        let mut connection = Connection::assemble(
                            name,
                            started,
                            shared,
                            Some(process),
                            enabled_tools,
                            tool_timeout,
                            startup_timeout,
                        );
                        connection.watch_process();
                        Ok(connection)
                    }
                    Err(error) => {
                        let reason = stdio_start_reason(
                            error,
                            &process,
                            &display,
                            startup_timeout,
                            deadline,
                        )
                        .await;
                        process.kill().await;
                        Err(failure(reason))
                    }
                }
            }
            Transport::Http { url, headers } => {
                let transport_config = http_config(&url, headers).map_err(failure)?;
                let shared = Shared::new(&name, notices, None);
                install_crypto_provider();
                let transport = StreamableHttpClientTransport::from_config(transport_config);
                let start = start(shared.clone(), transport, enabled_tools.as_deref());
                match tokio::time::timeout(startup_timeout, start)
                    .await
                    .unwrap_or(Err(StartError::Timeout))
                {
                    Ok(started) => Ok(Connection::assemble(
                        name,
                        started,
                        shared,
                        None,
                        enabled_tools,
                        tool_timeout,
                        startup_timeout,
                    )),
                    Err(error) => Err(failure(http_start_reason(error, &url, startup_timeout))),
                }
            }
        }
    }

    fn assemble(
        name: String,
        started: Started,
        shared: Arc<Shared>,
        process: Option<ServerProcess>,
        enabled_tools: Option<Vec<String>>,
        tool_timeout: Duration,
        list_timeout: Duration,
    ) -> Connection {
        shared.lock_life().started = true;
        let peer = started.service.peer().clone();
        let mut connection = Connection {
            name,
            tool_timeout,
            list_timeout,
            enabled_tools,
            tools: started.tools,
            instructions: started.instructions,
            shared,
            peer,
            service: Some(started.service),
            process,
            listed_at_change: started.listed_at_change,
            listener: None,
        };
        connection.listen_for_list_changes(started.modern_list_changed);
        connection
    }

    /// On a 2026-07-28 connection list changes come only on a `subscriptions/listen` stream.
    fn listen_for_list_changes(&mut self, wanted: bool) {
        if !wanted {
            return;
        }
        let peer = self.peer.clone();
        let shared = self.shared.clone();
        self.listener = Some(tokio::spawn(async move {
            let filter = SubscriptionFilter::builder().tools_list_changed().build();
            let mut subscription = match peer.listen(filter).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::debug!(server = %shared.server, %error, "no list-changed subscription");
                    return;
                }
            };
            while let Ok(Some(notification)) = subscription.next().await {
                if matches!(
                    notification,
                    ServerNotification::ToolListChangedNotification(_)
                ) {
                    shared.tools_list_changed();
                }
            }
        }));
    }

    /// Notices a stdio server that ends after its start.
    fn watch_process(&mut self) {
        let Some(process) = &self.process else {
            return;
        };
        let mut ended = process.ended_watch();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let ended = match ended.wait_for(Option::is_some).await {
                Ok(value) => value.clone(),
                Err(_) => return,
            };
            let Some(Ended::Exited(status)) = ended else {
                return;
            };
            if let Some(tail) = &shared.stderr {
                tail.wait_closed(DEATH_DETAILS_WAIT).await;
            }
            let reason = format!("it {}{}", describe_exit(status), shared.stderr_suffix());
            shared.record_death(reason);
        });
    }

    /// The server's name (the `McpServer` resource's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid of a stdio server's process, which leads its process group (none for HTTP).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|process| process.pid)
    }

    /// The tools, after `enabledTools` filtering, in the server's order.
    pub fn tools(&self) -> &[ToolInfo] {
        &self.tools
    }

    /// The server's instructions, capped at [`crate::INSTRUCTIONS_LIMIT`] bytes.
    pub fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// True when a `tools/list_changed` arrived since the current list was requested.
    pub fn tools_changed(&self) -> bool {
        self.shared.tool_changes.load(Ordering::SeqCst) != self.listed_at_change
    }

    /// Lists the tools again (after a [`Notice::ToolsChanged`]), within the startup timeout.
    pub async fn refresh_tools(&mut self) -> Result<(), ServerFailure> {
        let failure = |reason: String| ServerFailure {
            server: self.name.clone(),
            phase: Phase::List,
            reason,
        };
        if let Some(reason) = self.shared.death() {
            return Err(failure(format!("the server is not running: {reason}")));
        }
        let changes = self.shared.tool_changes.load(Ordering::SeqCst);
        let listed = tokio::time::timeout(self.list_timeout, self.peer.list_all_tools()).await;
        match listed {
            Ok(Ok(tools)) => {
                self.tools = filter_tools(&self.name, tools, self.enabled_tools.as_deref());
                self.listed_at_change = changes;
                Ok(())
            }
            Ok(Err(error)) => {
                if is_transport_gone(&error) {
                    let reason = self.dead_reason(&error).await;
                    return Err(failure(format!("the server is not running: {reason}")));
                }
                Err(failure(format!("tools/list failed: {error}")))
            }
            Err(_) => Err(failure(format!(
                "tools/list did not answer within {} s (startupTimeoutSeconds)",
                seconds(self.list_timeout)
            ))),
        }
    }

    /// Calls `tool` with `arguments` (a JSON object, or null for none). Progress of this call
    /// goes to `on_progress`. Never fails: problems are tool errors the model can read.
    /// Dropping the future cancels the call (the server gets `notifications/cancelled`).
    pub async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
        on_progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> CallOutcome {
        if let Some(reason) = self.shared.death() {
            return self.not_running(&reason);
        }
        let arguments = match arguments {
            serde_json::Value::Object(map) => Some(map),
            serde_json::Value::Null => None,
            other => {
                return CallOutcome::error(format!(
                    "the arguments of `{tool}` must be a JSON object, not {other}"
                ));
            }
        };
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = arguments;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let options = PeerRequestOptions::with_timeout(self.tool_timeout)
            .reset_timeout_on_progress()
            .with_max_total_timeout(self.tool_timeout * TOOL_TIMEOUT_CAP_FACTOR);
        let handle = match self.peer.send_request_with_option(request, options).await {
            Ok(handle) => handle,
            Err(error) => return self.call_error(tool, error).await,
        };
        let mut route = self.shared.open_route(handle.progress_token.clone());
        let mut cancel = CancelOnDrop {
            peer: self.peer.clone(),
            id: Some(handle.id.clone()),
        };
        let response = handle.await_response();
        tokio::pin!(response);
        let result = loop {
            tokio::select! {
                biased;
                Some(progress) = route.receiver.recv() => on_progress(progress),
                result = &mut response => break result,
            }
        };
        // rmcp sent `notifications/cancelled` itself on a timeout.
        cancel.id = None;
        drop(route);
        match result {
            Ok(ServerResult::CallToolResult(result)) => render_result(&result),
            Ok(other) => CallOutcome::error(format!(
                "`{tool}` on MCP server `{}` answered with something that is not a tool result \
                 ({}); this client does not support it",
                self.name,
                result_kind(&other)
            )),
            Err(error) => self.call_error(tool, error).await,
        }
    }

    async fn call_error(&self, tool: &str, error: ServiceError) -> CallOutcome {
        match error {
            ServiceError::Timeout { timeout } => {
                if timeout > self.tool_timeout {
                    CallOutcome::error(format!(
                        "`{tool}` on MCP server `{}` did not finish within {} s ({} × \
                         toolTimeoutSeconds, even with progress); the call was cancelled",
                        self.name,
                        seconds(timeout),
                        TOOL_TIMEOUT_CAP_FACTOR
                    ))
                } else {
                    CallOutcome::error(format!(
                        "`{tool}` on MCP server `{}` did not answer within {} s \
                         (toolTimeoutSeconds); the call was cancelled",
                        self.name,
                        seconds(timeout)
                    ))
                }
            }
            ServiceError::McpError(error) => CallOutcome::error(format!(
                "`{tool}` on MCP server `{}` failed: {} (JSON-RPC error {})",
                self.name, error.message, error.code.0
            )),
            ServiceError::Cancelled { reason } => CallOutcome::error(format!(
                "`{tool}` on MCP server `{}` was cancelled{}",
                self.name,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            )),
            error if is_transport_gone(&error) => {
                let reason = self.dead_reason(&error).await;
                self.not_running(&reason)
            }
            other => CallOutcome::error(format!(
                "`{tool}` on MCP server `{}` failed: {other}",
                self.name
            )),
        }
    }

    /// Why the server is gone (after `error`, a closed or failing transport), recording its
    /// death (and sending the notice) if not yet known.
    async fn dead_reason(&self, error: &ServiceError) -> String {
        if let Some(process) = &self.process {
            // The supervisor usually knows within milliseconds; let it tell the exit status.
            let deadline = Instant::now() + DEATH_DETAILS_WAIT * 2;
            let mut ended = process.ended_watch();
            let _ = tokio::time::timeout_at(deadline.into(), ended.wait_for(Option::is_some)).await;
            if let Some(tail) = &self.shared.stderr {
                tail.wait_closed(deadline.saturating_duration_since(Instant::now()))
                    .await;
            }
            // The process watcher records the exit; give it a moment, then record it here.
            if let Some(reason) = self.shared.death() {
                return reason;
            }
            if let Some(Ended::Exited(status)) = process.ended() {
                let reason = format!(
                    "it {}{}",
                    describe_exit(status),
                    self.shared.stderr_suffix()
                );
                self.shared.record_death(reason);
                return self.shared.death().unwrap_or_default();
            }
        }
        if let Some(reason) = self.shared.death() {
            return reason;
        }
        let what = match error {
            ServiceError::TransportSend(error) => {
                format!(
                    "cannot reach it: {}",
                    shorten(&error_chain(error.error.as_ref()), 600)
                )
            }
            _ => "the connection to it closed".to_owned(),
        };
        self.shared
            .record_death(format!("{what}{}", self.shared.stderr_suffix()));
        self.shared.death().unwrap_or_default()
    }

    fn not_running(&self, reason: &str) -> CallOutcome {
        CallOutcome::error(format!(
            "the MCP server `{}` is not running: {reason}",
            self.name
        ))
    }

    /// False once the server is known to be dead or the connection closed.
    pub fn is_alive(&self) -> bool {
        if self.shared.death().is_some() || self.peer.is_transport_closed() {
            return false;
        }
        if let Some(process) = &self.process
            && process.ended().is_some()
        {
            return false;
        }
        self.service
            .as_ref()
            .is_some_and(|service| !service.is_closed())
    }

    /// Stops the server: the connection is closed (stdin EOF for a stdio server), the process
    /// gets about a second to exit, then its whole group is killed. Never hangs.
    pub async fn close(mut self) {
        self.shared.lock_life().closing = true;
        let started = Instant::now();
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        if let Some(mut service) = self.service.take() {
            let _ = service.close_with_timeout(GRACEFUL_CLOSE).await;
        }
        if let Some(process) = self.process.take() {
            let left = GRACEFUL_CLOSE.saturating_sub(started.elapsed());
            process.wait_ended(left).await;
            process.kill().await;
        }
        tracing::debug!(server = %self.name, elapsed = ?started.elapsed(), "MCP server closed");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.lock_life().closing = true;
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        // Dropping the service cancels rmcp's task; dropping the process kills its group.
    }
}

/// What a successful start yields.
struct Started {
    service: RunningService<RoleClient, Handler>,
    tools: Vec<ToolInfo>,
    instructions: Option<String>,
    listed_at_change: u64,
    modern_list_changed: bool,
}

/// The handshake and the first listing.
async fn start<T, E, A>(
    shared: Arc<Shared>,
    transport: T,
    enabled_tools: Option<&[String]>,
) -> Result<Started, StartError>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let handler = Handler {
        shared: shared.clone(),
    };
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::LATEST],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let service = handler
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .map_err(|error| StartError::Init(Box::new(error)))?;
    // We keep our own snapshot of the list; rmcp's cache would only hide changes.
    service
        .peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    let info = service.peer().peer_info();
    let instructions = info
        .as_ref()
        .and_then(|info| info.instructions.as_deref())
        .map(cap_instructions);
    let modern_list_changed = info.as_ref().is_some_and(|info| {
        info.protocol_version == ProtocolVersion::V_2026_07_28
            && info
                .capabilities
                .tools
                .as_ref()
                .is_some_and(|tools| tools.list_changed == Some(true))
    });
    let listed_at_change = shared.tool_changes.load(Ordering::SeqCst);
    let tools = service
        .peer()
        .list_all_tools()
        .await
        .map_err(StartError::List)?;
    Ok(Started {
        tools: filter_tools(&shared.server, tools, enabled_tools),
        service,
        instructions,
        listed_at_change,
        modern_list_changed,
    })
}

/// `enabledTools` first, then tools whose schema cannot be offered are dropped with a warning.
fn filter_tools(
    server: &str,
    tools: Vec<rmcp::model::Tool>,
    enabled_tools: Option<&[String]>,
) -> Vec<ToolInfo> {
    if let Some(enabled) = enabled_tools {
        for wanted in enabled {
            if !tools.iter().any(|tool| tool.name == wanted.as_str()) {
                tracing::warn!(server, tool = %wanted, "enabledTools names a tool the MCP server does not offer");
            }
        }
    }
    tools
        .into_iter()
        .filter(|tool| {
            enabled_tools.is_none_or(|enabled| enabled.iter().any(|e| tool.name == e.as_str()))
        })
        .filter_map(|tool| {
            let mut schema = tool.input_schema.as_ref().clone();
            match schema.get("type") {
                Some(serde_json::Value::String(kind)) if kind == "object" => {}
                // Some servers leave the type out of an object schema.
                None => {
                    schema.insert("type".to_owned(), serde_json::Value::from("object"));
                }
                Some(other) => {
                    tracing::warn!(
                        server,
                        tool = %tool.name,
                        schema_type = %other,
                        "MCP tool dropped: its input schema is not a JSON object schema"
                    );
                    return None;
                }
            }
            let reads_only = tool
                .annotations
                .as_ref()
                .is_some_and(|annotations| annotations.read_only_hint == Some(true));
            let read_only = reads_only
                || tool
                    .annotations
                    .as_ref()
                    .is_some_and(|annotations| annotations.idempotent_hint == Some(true));
            Some(ToolInfo {
                name: tool.name.into_owned(),
                description: tool.description.map(|d| d.into_owned()),
                input_schema: serde_json::Value::Object(schema),
                read_only,
                reads_only,
            })
        })
        .collect()
}

/// Resolves when stdout carried a non-JSON line and, [`GARBAGE_GRACE`] later, still nothing
/// that looks like JSON; never resolves otherwise.
async fn garbage_without_json(
    stdout: &mut tokio::sync::watch::Receiver<crate::process::StdoutSeen>,
) -> String {
    let garbage = stdout
        .wait_for(|seen| seen.first_garbage.is_some() && seen.json_lines == 0)
        .await
        .map(|seen| seen.first_garbage.clone().unwrap_or_default());
    // Copied out above: a borrow of the watch must not live across an await.
    let Ok(garbage) = garbage else {
        return std::future::pending().await;
    };
    tokio::time::sleep(GARBAGE_GRACE).await;
    let json_lines = stdout.borrow().json_lines;
    if json_lines == 0 {
        garbage
    } else {
        std::future::pending().await
    }
}

async fn stdio_start_reason(
    error: StartError,
    process: &ServerProcess,
    display: &str,
    startup_timeout: Duration,
    deadline: Instant,
) -> String {
    let left = |limit: Duration| limit.min(deadline.saturating_duration_since(Instant::now()));
    let garbage_note = || {
        process
            .stdout
            .borrow()
            .first_garbage
            .as_ref()
            .map(|line| format!("; it wrote this to stdout, which is not an MCP message: `{line}`"))
            .unwrap_or_default()
    };
    match error {
        StartError::Timeout => format!(
            "`{display}` did not answer the MCP handshake within {} s (startupTimeoutSeconds){}{}",
            seconds(startup_timeout),
            garbage_note(),
            process.stderr.suffix()
        ),
        StartError::Garbage(line) => format!(
            "`{display}` wrote something that is not an MCP message to stdout: `{line}` (an MCP \
             stdio server must write only JSON-RPC messages to stdout and its logs to stderr){}",
            process.stderr.suffix()
        ),
        StartError::Exited(_) | StartError::Init(_) | StartError::List(_) => {
            let detail = match &error {
                StartError::Init(error) => Some(error.to_string()),
                StartError::List(error) => Some(format!("tools/list failed: {error}")),
                _ => None,
            };
            // A closed connection during the start is nearly always the process exiting.
            let ended = match &error {
                StartError::Exited(ended) => ended.clone(),
                _ => process.wait_ended(left(DEATH_DETAILS_WAIT * 2)).await,
            };
            process.stderr.wait_closed(left(DEATH_DETAILS_WAIT)).await;
            match ended {
                Some(Ended::Exited(status)) => format!(
                    "`{display}` exited during the start ({}){}{}",
                    exit_text(status),
                    garbage_note(),
                    process.stderr.suffix()
                ),
                _ => format!(
                    "`{display}` failed the MCP handshake: {}{}{}",
                    detail.unwrap_or_else(|| "the connection closed".to_owned()),
                    garbage_note(),
                    process.stderr.suffix()
                ),
            }
        }
    }
}

fn http_start_reason(error: StartError, url: &str, startup_timeout: Duration) -> String {
    let error = match error {
        StartError::Timeout => {
            return format!(
                "{url} did not answer the MCP handshake within {} s (startupTimeoutSeconds)",
                seconds(startup_timeout)
            );
        }
        StartError::List(error) => return format!("tools/list failed: {error}"),
        StartError::Exited(_) | StartError::Garbage(_) => {
            return format!("{url} closed the connection");
        }
        StartError::Init(error) => *error,
    };
    // With the automatic lifecycle, the legacy fallback's error is the informative one.
    let (error, auth) = match &error {
        ClientInitializeError::LegacyFallbackFailed { fallback, .. } => {
            (fallback.as_ref(), fallback.is_authorization_required())
        }
        other => (other, other.is_authorization_required()),
    };
    let text = match error {
        // Its own text names rmcp's transport type; the chain of its source says what failed.
        ClientInitializeError::TransportError { error, context } => {
            format!("{} (when {context})", error_chain(error.error.as_ref()))
        }
        other => error_chain(other),
    };
    let text = shorten(&text, 600);
    let lower = text.to_ascii_lowercase();
    // Match the status as rmcp prints it, never a bare number (a port can contain `404`).
    let status = |code: &str| {
        lower.contains(&format!("http {code}")) || lower.contains(&format!("status: {code}"))
    };
    if auth || status("401") || status("403") {
        format!(
            "the server refused the credentials ({}); check the Authorization header or token \
             configured for it: {text}",
            if status("403") {
                "HTTP 403"
            } else {
                "HTTP 401"
            }
        )
    } else if status("404") {
        format!("{url} answered HTTP 404 (no MCP endpoint at this URL; check the path): {text}")
    } else if lower.contains("content type") {
        format!(
            "{url} did not answer like an MCP server (streamable HTTP); is this the MCP endpoint? \
             {text}"
        )
    } else if lower.contains("connection refused")
        || lower.contains("tcp connect error")
        || lower.contains("dns error")
    {
        format!("cannot connect to {url}: {text}")
    } else {
        format!("the MCP handshake with {url} failed: {text}")
    }
}

/// `text` cut to at most `limit` characters, with `…` when cut.
fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An error and its sources, joined by `: `.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    let mut text = error.to_string();
    let mut source = error.source();
    // rmcp's HTTP client error does not declare the reqwest error as its source.
    if let Some(StreamableHttpError::Client(client)) =
        error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        source = Some(client as &(dyn std::error::Error + 'static));
    }
    while let Some(current) = source {
        let next = current.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = current.source();
    }
    text
}

fn http_config(
    url: &str,
    headers: Vec<(String, String)>,
) -> Result<StreamableHttpClientTransportConfig, String> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    let mut custom = HashMap::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization")
            && value.len() > 7
            && value[..7].eq_ignore_ascii_case("bearer ")
        {
            config = config.auth_header(value[7..].trim().to_owned());
            continue;
        }
        // The value may be a secret: the messages name only the header.
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("the header name `{name}` is not a valid HTTP header name"))?;
        let mut header_value = HeaderValue::from_str(&value).map_err(|_| {
            format!("the value of the header `{name}` is not a valid HTTP header value")
        })?;
        header_value.set_sensitive(true);
        custom.insert(header_name, header_value);
    }
    Ok(config.custom_headers(custom))
}

fn install_crypto_provider() {
    // reqwest is built without a TLS provider; the workspace uses ring. An already installed
    // provider is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn is_transport_gone(error: &ServiceError) -> bool {
    matches!(
        error,
        ServiceError::TransportClosed | ServiceError::TransportSend(_)
    )
}

fn describe_exit(status: Option<std::process::ExitStatus>) -> String {
    format!("exited ({})", exit_text(status))
}

fn exit_text(status: Option<std::process::ExitStatus>) -> String {
    match status {
        Some(status) => status.to_string(),
        None => "exit status unknown".to_owned(),
    }
}

fn result_kind(result: &ServerResult) -> String {
    serde_json::to_value(result)
        .ok()
        .and_then(|value| {
            value
                .get("resultType")
                .and_then(|kind| kind.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unexpected result".to_owned())
}

/// `1.5`, `120`: seconds without a trailing `.0`.
fn seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        let text = format!("{:.3}", duration.as_secs_f64());
        text.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner holds connections across tasks and awaits calls on any worker.
    #[allow(dead_code)]
    fn connections_and_calls_are_send_and_sync(connection: &Connection) {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        send_sync(connection);
        send(connection.call("tool", serde_json::Value::Null, &|_| {}));
        send(Connection::connect(
            crate::ServerConfig {
                name: String::new(),
                transport: crate::Transport::Http {
                    url: String::new(),
                    headers: Vec::new(),
                },
                enabled_tools: None,
                startup_timeout: Duration::ZERO,
                tool_timeout: Duration::ZERO,
            },
            mpsc::unbounded_channel().0,
        ));
    }

    #[test]
    fn seconds_are_short() {
        assert_eq!(seconds(Duration::from_secs(120)), "120");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
        assert_eq!(seconds(Duration::from_millis(800)), "0.8");
    }

    fn tool(name: &str, schema: serde_json::Value) -> rmcp::model::Tool {
        let serde_json::Value::Object(schema) = schema else {
            panic!("schema must be an object");
        };
        rmcp::model::Tool::new(name.to_owned(), "d", Arc::new(schema))
    }

    #[test]
    fn enabled_tools_filter_and_bad_schemas_are_dropped() {
        let tools = vec![
            tool("a", serde_json::json!({"type": "object"})),
            tool("b", serde_json::json!({"type": "string"})),
            tool("c", serde_json::json!({"properties": {}})),
            tool("d", serde_json::json!({"type": "object"})),
        ];
        let all = filter_tools("s", tools.clone(), None);
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(all[1].input_schema["type"], "object");

        let enabled = ["d".to_owned(), "a".to_owned(), "missing".to_owned()];
        let some = filter_tools("s", tools, Some(&enabled));
        let names: Vec<&str> = some.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "d"], "server order is kept");
    }

    #[test]
    fn bearer_headers_use_auth_header_and_values_stay_out_of_errors() {
        let config = http_config(
            "http://127.0.0.1:1/mcp",
            vec![
                ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
                ("X-Api-Key".to_owned(), "k".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(config.auth_header.as_deref(), Some("s3cret"));
        assert_eq!(config.custom_headers.len(), 1);

        let error = http_config(
            "http://127.0.0.1:1/mcp",
            vec![("X-Bad".to_owned(), "line\nbreak-secret".to_owned())],
        )
        .unwrap_err();
        assert!(
            error.contains("X-Bad") && !error.contains("secret"),
            "{error}"
        );
    }
}
