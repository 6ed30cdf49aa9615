//! The agent runner in a container, through the Docker Engine API (`bollard`): Docker, or
//! Podman's Docker-compatible service, wherever `DOCKER_HOST` points.
//!
//! - [`Engine::connect`] finds the engine or says what to install or start;
//! - [`image`] ensures `stigmer-agent-runner:<version>`: a local image with this very binary,
//!   else a pull from the configured registry, else a build from the running binary with no
//!   base image (`FROM scratch` plus the shared libraries it links and a static busybox), or
//!   from `agent_runner.image_base`;
//! - [`Engine::start`], [`Engine::output`], [`Engine::wait`], [`Engine::stop`] run one container
//!   for the daemon's supervisor (no restart policy: the daemon is the one supervisor);
//! - [`Engine::remove_labelled`] finds what a crashed daemon of a home left behind, by label;
//! - [`address`] turns host addresses into addresses the container can reach.

pub mod address;
pub mod image;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

pub use address::{HostOs, Network};

/// Label: a hash of the `STIGMER_HOME` a container belongs to.
pub const LABEL_HOME: &str = "ai.stigmer.home";
/// Label: which component the container is.
pub const LABEL_COMPONENT: &str = "ai.stigmer.component";
/// Label: the Stigmer version.
pub const LABEL_VERSION: &str = "ai.stigmer.version";
/// Label (images): digest of the binary inside.
pub const LABEL_BINARY: &str = "ai.stigmer.binary";
/// Label (images): how the image was made around the binary, its layout version and base
/// (`image::ImagePlan::recipe`).
pub const LABEL_IMAGE: &str = "ai.stigmer.image";

/// The value of [`LABEL_HOME`] for a home directory.
pub fn home_label(home: &Path) -> String {
    let path = fs_err::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the engine could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "no container engine answers at {host} ({reason}); start Docker, or Podman's Docker-compatible service \
         (`podman system service --time=0 unix:///run/podman/podman.sock` with \
         DOCKER_HOST=unix:///run/podman/podman.sock) — or use process mode \
         (`agent_runner.mode: process`), which needs no engine"
    )]
    Unreachable { host: String, reason: String },
    #[error("the container engine refused to {action}: {reason}")]
    Refused { action: String, reason: String },
}

/// A connection to the engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

/// Where the engine is, as the user sees it.
fn engine_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn refused(action: &str) -> impl Fn(bollard::errors::Error) -> EngineError + '_ {
    move |error| EngineError::Refused {
        action: action.to_owned(),
        reason: error.to_string(),
    }
}

/// One container to run.
#[derive(Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    /// Host path → container path, read-write.
    pub mounts: Vec<(String, String)>,
    pub network: Option<Network>,
    /// `uid:gid` to run as; the image's non-root user when `None`.
    pub user: Option<String>,
}

/// The environment holds secrets (the API token, LLM keys): only its names are shown.
impl std::fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("labels", &self.labels)
            .field("mounts", &self.mounts)
            .field("network", &self.network)
            .field("user", &self.user)
            .finish()
    }
}

/// A line a container printed, with the engine's timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputLine {
    pub stderr: bool,
    pub ts: DateTime<Utc>,
    pub text: String,
}

impl Engine {
    /// Connects to the engine `DOCKER_HOST` names (or the default socket) and checks that it
    /// answers.
    pub async fn connect() -> Result<Engine, EngineError> {
        let host = engine_host();
        let unreachable = |reason: String| EngineError::Unreachable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(5), docker.ping())
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Creates and starts a container; returns its id.
    pub async fn start(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let network = spec.network.unwrap_or(Network::Host);
        let host_config = HostConfig {
            binds: Some(
                spec.mounts
                    .iter()
                    .map(|(host, container)| format!("{host}:{container}:rw"))
                    .collect(),
            ),
            network_mode: Some(
                match network.effective(HostOs::current()) {
                    Network::Host => "host",
                    Network::Bridge => "bridge",
                }
                .to_owned(),
            ),
            extra_hosts: (network.effective(HostOs::current()) == Network::Bridge)
                .then(|| vec![format!("{}:host-gateway", address::HOST_GATEWAY)]),
            // The daemon keeps the log (rotated); the engine's copy only feeds the capture, so
            // it is bounded rather than kept whole for the container's lifetime.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            // The daemon supervises; the engine must not restart or remove on its own.
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(
                spec.env
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            ),
            labels: Some(spec.labels.clone().into_iter().collect::<HashMap<_, _>>()),
            user: spec.user.clone(),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(refused("create the runner container"))?;
        if let Err(error) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(refused("start the runner container")(error));
        }
        Ok(created.id)
    }

    /// The container's output from its start, line by line, until it exits.
    pub fn output(&self, id: &str) -> impl Stream<Item = OutputLine> + Send + 'static {
        self.output_from(id, 0, true)
    }

    /// The container's output from `since` (UNIX seconds; 0 for all), following it while it
    /// runs when `follow`, or only what it printed so far.
    pub fn output_from(
        &self,
        id: &str,
        since: i32,
        follow: bool,
    ) -> impl Stream<Item = OutputLine> + Send + 'static {
        let logs = self.docker.logs(
            id,
            Some(LogsOptions {
                follow,
                stdout: true,
                stderr: true,
                timestamps: true,
                since,
                ..Default::default()
            }),
        );
        let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        logs.take_while(|item| futures::future::ready(item.is_ok()))
            .filter_map(|item| futures::future::ready(item.ok()))
            .map(move |output| {
                let (stderr, bytes) = match output {
                    LogOutput::StdErr { message } => (true, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (false, message)
                    }
                    LogOutput::StdIn { message } => (false, message),
                };
                let buffer = &mut pending[usize::from(stderr)];
                buffer.extend_from_slice(&bytes);
                let mut lines = Vec::new();
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line);
                    lines.push(parse_timestamped(
                        stderr,
                        text.trim_end_matches(['\n', '\r']),
                    ));
                }
                futures::stream::iter(lines)
            })
            .flatten()
    }

    /// Waits for the container to exit; its exit code (137 when killed, -1 when the engine
    /// cannot tell). A wait the engine breaks off while the container still runs is resumed.
    pub async fn wait(&self, id: &str) -> i64 {
        let mut broken = 0u32;
        loop {
            let mut waits = self.docker.wait_container(
                id,
                Some(WaitContainerOptions {
                    condition: "not-running".into(),
                }),
            );
            let error = match waits.next().await {
                Some(Ok(response)) => return response.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    return code;
                }
                Some(Err(error)) => error.to_string(),
                None => "the engine ended the wait without an answer".to_owned(),
            };
            match self
                .docker
                .inspect_container(id, None)
                .await
                .ok()
                .and_then(|c| c.state)
            {
                Some(state) if state.running == Some(true) && broken < 5 => {
                    broken += 1;
                    tracing::warn!(container = id, error = %error, "The wait for the container broke off while it runs; waiting again.");
                    tokio::time::sleep(Duration::from_millis(200) * broken).await;
                }
                Some(state) if state.running != Some(true) => return state.exit_code.unwrap_or(-1),
                _ => {
                    tracing::warn!(container = id, error = %error, "Cannot wait for the container or inspect it.");
                    return -1;
                }
            }
        }
    }

    /// The host pid of the container's main process, while it runs.
    pub async fn pid(&self, id: &str) -> Option<u32> {
        let inspected = self.docker.inspect_container(id, None).await.ok()?;
        let pid = inspected.state?.pid?;
        (pid > 0).then_some(pid as u32)
    }

    /// Stops gracefully (SIGTERM, `grace`), then kills, then removes.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let stopped = tokio::time::timeout(
            grace + Duration::from_secs(5),
            self.docker.stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(grace.as_secs() as i32),
                    signal: None,
                }),
            ),
        )
        .await;
        if !matches!(stopped, Ok(Ok(()))) {
            let _ = self
                .docker
                .kill_container(
                    id,
                    Some(KillContainerOptions {
                        signal: "SIGKILL".into(),
                    }),
                )
                .await;
        }
        self.remove(id).await
    }

    /// Force-removes a container.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(refused("remove a container"))
    }

    /// Removes every container (running or not) labelled `label=value`; returns their ids.
    pub async fn remove_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(refused("list containers"))?;
        let mut removed = Vec::new();
        for container in containers {
            let Some(id) = container.id else { continue };
            if self.remove(&id).await.is_ok() {
                removed.push(id);
            }
        }
        Ok(removed)
    }
}

/// Splits the engine's `RFC3339Nano timestamp + space + text` line.
fn parse_timestamped(stderr: bool, line: &str) -> OutputLine {
    if let Some((stamp, text)) = line.split_once(' ')
        && let Ok(ts) = DateTime::parse_from_rfc3339(stamp)
    {
        return OutputLine {
            stderr,
            ts: ts.with_timezone(&Utc),
            text: text.to_owned(),
        };
    }
    OutputLine {
        stderr,
        ts: Utc::now(),
        text: line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_timestamps_are_split_from_the_text() {
        let line = parse_timestamped(true, "2026-11-23T10:00:00.123456789Z hello world");
        assert!(line.stderr);
        assert_eq!(line.text, "hello world");
        assert_eq!(
            line.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2026-11-23T10:00:00.123Z"
        );
        let plain = parse_timestamped(false, "no stamp here");
        assert_eq!(plain.text, "no stamp here");
    }

    #[test]
    fn a_spec_shows_the_names_of_its_environment_not_the_values() {
        let spec = ContainerSpec {
            env: vec![("STIGMER_API_TOKEN".into(), "s3cr3t-token".into())],
            ..ContainerSpec::default()
        };
        let shown = format!("{spec:?}");
        assert!(shown.contains("STIGMER_API_TOKEN"), "{shown}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
    }

    #[test]
    fn home_labels_differ_per_home_and_are_stable() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_eq!(home_label(a.path()), home_label(a.path()));
        assert_ne!(home_label(a.path()), home_label(b.path()));
        assert_eq!(home_label(a.path()).len(), 16);
    }
}
