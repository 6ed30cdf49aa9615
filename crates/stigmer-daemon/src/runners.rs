//! The runners: their launches (the launch contract, as a process or a container) and their
//! supervision, which starts once Temporal answers so that their first poll succeeds. Also the
//! preparation of container mode, done before anything starts.

use crate::board::{Board, ComponentState};
use crate::error::{DaemonError, io_error};
use crate::logs::open_log;
use crate::stack::{self, LayerResult};
use crate::unit::{self, ChildrenChanged, Launch, LaunchFactory, Spawn, UnitContext};
use futures::FutureExt;
use std::net::SocketAddr;
use std::sync::Arc;
use stigmer_config::{
    AGENT_TASK_QUEUE, Component, RunnerLaunchSpec, RunnerRole, Secret, Settings,
    WORKFLOW_TASK_QUEUE,
};
use stigmer_temporal::TemporalProbe;
use tokio::process::Command;
use tokio::sync::{OnceCell, watch};

/// The runners' layer of the daemon: everything their launches need.
pub struct RunnersLayer {
    pub settings: Settings,
    pub board: Arc<Board>,
    pub server_address: SocketAddr,
    pub api_token: Secret,
    /// Temporal's probe, set once Temporal answers.
    pub probe: Arc<OnceCell<TemporalProbe>>,
    /// Becomes true once Temporal is ready.
    pub temporal_ready: watch::Receiver<bool>,
    pub container: Option<ContainerPlan>,
    pub children_changed: ChildrenChanged,
}

impl RunnersLayer {
    /// Waits for Temporal, then supervises both runners until `stop`. A supervisor that panics
    /// stops the other one and ends the layer with the panic.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> LayerResult {
        tokio::select! {
            () = unit::until_true(&mut self.temporal_ready) => {}
            () = unit::until_true(&mut stop) => return Ok(()),
        }
        let Some(probe) = self.probe.get().cloned() else {
            return Ok(());
        };
        let (units_stop, units_stop_requested) = watch::channel(false);
        let mut units = tokio::task::JoinSet::new();
        for (component, role, queue) in [
            (Component::AgentRunner, RunnerRole::Agent, AGENT_TASK_QUEUE),
            (
                Component::WorkflowRunner,
                RunnerRole::Workflow,
                WORKFLOW_TASK_QUEUE,
            ),
        ] {
            let log = match open_log(&self.settings, component) {
                Ok(log) => log,
                Err(error) => {
                    self.board.update(component, |record| {
                        record.state = ComponentState::Failed;
                        record.last_exit = Some(error.to_string());
                    });
                    continue;
                }
            };
            let (ready, _) = watch::channel(false);
            let context = UnitContext {
                component,
                board: self.board.clone(),
                log,
                supervisor: self.settings.supervisor.clone(),
                children_changed: self.children_changed.clone(),
                ready,
            };
            let factory = factory(
                &self.settings,
                (component, role, queue),
                self.server_address,
                self.api_token.clone(),
                probe.clone(),
                self.container
                    .clone()
                    .filter(|_| component == Component::AgentRunner),
            );
            spawn_unit(
                &mut units,
                component,
                unit::supervise(context, factory, units_stop_requested.clone()),
            );
        }
        supervise_all(units, units_stop, stop).await
    }
}

/// What a unit's supervision task ends with: its component, and its panic if it panicked.
type UnitEnded = (Component, std::thread::Result<()>);

/// Runs a unit's supervision as a task that ends with its component and its panic, if any.
fn spawn_unit(
    units: &mut tokio::task::JoinSet<UnitEnded>,
    component: Component,
    supervision: impl std::future::Future<Output = ()> + Send + 'static,
) {
    units.spawn(async move {
        let ended = std::panic::AssertUnwindSafe(supervision)
            .catch_unwind()
            .await;
        (component, ended)
    });
}

/// Waits for `stop` (then stops every unit and waits for them) or for a unit's supervision to
/// panic (then stops the others, waits for them, and returns the panic).
async fn supervise_all(
    mut units: tokio::task::JoinSet<UnitEnded>,
    units_stop: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> LayerResult {
    let mut first_panic = None;
    loop {
        tokio::select! {
            () = unit::until_true(&mut stop) => break,
            Some(joined) = units.join_next() => {
                if let Err(error) = ended(joined) {
                    first_panic = Some(error);
                    break;
                }
            }
        }
    }
    units_stop.send_replace(true);
    while let Some(joined) = units.join_next().await {
        if let Err(error) = ended(joined)
            && first_panic.is_none()
        {
            first_panic = Some(error);
        }
    }
    first_panic.map_or(Ok(()), Err)
}

fn ended(joined: Result<UnitEnded, tokio::task::JoinError>) -> LayerResult {
    match joined {
        Ok((_, Ok(()))) => Ok(()),
        Ok((component, Err(payload))) => {
            let message = stack::panic_message(payload);
            tracing::error!(unit = %component, panic = %message, "A unit's supervisor panicked; the daemon stops.");
            Err(DaemonError::TaskPanicked {
                task: format!("the supervisor of {component}"),
                message,
            })
        }
        // Never aborted: a cancelled one can only be a runtime shutting down.
        Err(error) if error.is_cancelled() => Ok(()),
        Err(error) => Err(stack::panicked("a unit's supervisor", error)),
    }
}

fn factory(
    settings: &Settings,
    (component, role, queue): (Component, RunnerRole, &'static str),
    server_address: SocketAddr,
    api_token: Secret,
    probe: TemporalProbe,
    container: Option<ContainerPlan>,
) -> LaunchFactory {
    let executable = std::env::current_exe().unwrap_or_else(|_| "stigmer".into());
    let home = settings.home.clone();
    let namespace = settings.temporal.namespace.clone();
    let log_filter = settings.logs.level.clone();
    let llm = settings.llm.clone();
    let telemetry = settings.telemetry.clone();
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
            telemetry: telemetry.clone(),
        };
        let spawn = match &container {
            Some(plan) => plan.spawn(&spec, daemon_pid, generation),
            None => {
                let mut command = Command::new(&executable);
                command.args(["internal", component.name()]);
                unit::minimal_env(&mut command);
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

/// Container mode's preparation (see [`prepare_container`]); in process mode, only the removal
/// of containers a previous daemon of this home left when it ran in container mode.
pub async fn prepare(
    settings: &Settings,
    previous_had_containers: bool,
) -> Result<Option<ContainerPlan>, DaemonError> {
    match settings.agent_runner.mode {
        stigmer_config::RunnerMode::Container => Ok(Some(prepare_container(settings).await?)),
        stigmer_config::RunnerMode::Process => {
            if previous_had_containers {
                match stigmer_container::Engine::connect().await {
                    Ok(engine) => remove_leftover_containers(&engine, settings).await,
                    Err(error) => {
                        tracing::warn!(error = %error, "Cannot look for containers a previous daemon of this home left behind.");
                    }
                }
            }
            Ok(None)
        }
    }
}

/// What container mode needs for every launch of the agent-runner.
#[derive(Clone)]
pub struct ContainerPlan {
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
        spec.telemetry.otlp_endpoint = spec
            .telemetry
            .otlp_endpoint
            .as_deref()
            .map(|endpoint| for_container(endpoint, os, self.network));
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
            base: settings.agent_runner.image_base.clone(),
            busybox: stigmer_container::image::HOST_BUSYBOX.into(),
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
    // The container runs as the user who runs Stigmer, so workspace files stay theirs; when
    // that is root, as the image's unprivileged user, who must be able to write the workspace.
    let uid = nix::unistd::getuid();
    let user = (!uid.is_root()).then(|| format!("{}:{}", uid, nix::unistd::getgid()));
    let workspace_to_prepare = workspace.clone();
    stack::blocking("preparing the workspace for containers", move || {
        let workspace = workspace_to_prepare;
        fs_err::create_dir_all(&workspace).map_err(io_error("cannot create the workspace"))?;
        if uid.is_root() {
            // The whole tree: sessions that ran in process mode were written by root.
            hand_over(&workspace, 65532).map_err(|error| {
                DaemonError::Container(format!(
                    "cannot hand the workspace {} to the container user: {error}",
                    workspace.display()
                ))
            })?;
        }
        Ok::<(), DaemonError>(())
    })
    .await??;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit's supervision that ends when asked to stop, and says so.
    async fn stops_on_request(mut stop: watch::Receiver<bool>, stopped: watch::Sender<bool>) {
        unit::until_true(&mut stop).await;
        stopped.send_replace(true);
    }

    async fn panics(message: &'static str) {
        panic!("{message}");
    }

    #[tokio::test]
    async fn a_panicking_unit_supervisor_stops_the_other_and_ends_the_layer_with_its_panic() {
        let (units_stop, units_stop_requested) = watch::channel(false);
        let (_layer_stop, layer_stop_requested) = watch::channel(false);
        let (stopped, stopped_seen) = watch::channel(false);
        let mut units = tokio::task::JoinSet::new();
        spawn_unit(
            &mut units,
            Component::AgentRunner,
            stops_on_request(units_stop_requested, stopped),
        );
        spawn_unit(
            &mut units,
            Component::WorkflowRunner,
            panics("boom: the workflow-runner's supervisor"),
        );
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            supervise_all(units, units_stop, layer_stop_requested),
        )
        .await
        .expect("the layer ends without a stop request");
        match ended {
            Err(DaemonError::TaskPanicked { task, message }) => {
                assert_eq!(task, "the supervisor of workflow-runner");
                assert_eq!(message, "boom: the workflow-runner's supervisor");
            }
            other => panic!("expected the unit's panic, got {other:?}"),
        }
        assert!(
            *stopped_seen.borrow(),
            "the agent-runner's unit was not stopped"
        );
    }

    #[tokio::test]
    async fn the_units_stop_with_the_layer() {
        let (units_stop, units_stop_requested) = watch::channel(false);
        let (layer_stop, layer_stop_requested) = watch::channel(false);
        let (stopped, stopped_seen) = watch::channel(false);
        let mut units = tokio::task::JoinSet::new();
        spawn_unit(
            &mut units,
            Component::AgentRunner,
            stops_on_request(units_stop_requested, stopped),
        );
        layer_stop.send_replace(true);
        let ended = supervise_all(units, units_stop, layer_stop_requested).await;
        assert!(ended.is_ok(), "{ended:?}");
        assert!(*stopped_seen.borrow());
    }

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
