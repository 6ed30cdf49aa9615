//! The supervisor → runner launch contract.
//!
//! The original system broke repeatedly because the daemon wrote one set of environment variable
//! names and the runner read another, silently falling back to wrong defaults. Here the contract
//! is one type: the supervisor builds a [`RunnerLaunchSpec`], [`RunnerLaunchSpec::to_env`] turns
//! it into variables, and the runner parses them back with [`RunnerLaunchSpec::from_env`], which
//! refuses a missing, malformed or unknown `STIGMER_*` variable and names it. Process and
//! container runners use the same variables.

use crate::llm::LlmProvider;
use crate::secret::Secret;
use crate::telemetry::{OtlpProtocol, TelemetrySettings, parse_bool, valid_endpoint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Which runner a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerRole {
    Agent,
    Workflow,
}

impl RunnerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerRole::Agent => "agent",
            RunnerRole::Workflow => "workflow",
        }
    }

    fn parse(value: &str) -> Option<RunnerRole> {
        match value {
            "agent" => Some(RunnerRole::Agent),
            "workflow" => Some(RunnerRole::Workflow),
            _ => None,
        }
    }
}

/// Everything a runner needs to start, and nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct RunnerLaunchSpec {
    /// Which runner this is.
    pub role: RunnerRole,
    /// The Stigmer home the runner belongs to.
    pub home: PathBuf,
    /// Temporal frontend, `host:port`.
    pub temporal_address: String,
    /// Temporal namespace.
    pub temporal_namespace: String,
    /// The task queue to poll.
    pub task_queue: String,
    /// The worker identity Temporal reports for this process; unique per launch, so the
    /// supervisor can tell this process's pollers from those of a previous one.
    pub worker_identity: String,
    /// The API server, `http://host:port`.
    pub api_endpoint: String,
    /// The per-home API token.
    pub api_token: Secret,
    /// Root of the per-session workspaces.
    pub workspace_dir: PathBuf,
    /// `tracing` filter directive, e.g. `info`.
    pub log_filter: String,
    /// The stack's default model (agents may name another).
    pub llm_provider: LlmProvider,
    pub llm_model: String,
    pub llm_base_url: String,
    pub openai_api_key: Option<Secret>,
    pub anthropic_api_key: Option<Secret>,
    /// Where the runner exports its spans (no endpoint: nowhere).
    pub telemetry: TelemetrySettings,
}

const ROLE: &str = "STIGMER_RUNNER_ROLE";
const HOME: &str = "STIGMER_HOME";
const TEMPORAL_ADDRESS: &str = "STIGMER_TEMPORAL_ADDRESS";
const TEMPORAL_NAMESPACE: &str = "STIGMER_TEMPORAL_NAMESPACE";
const TASK_QUEUE: &str = "STIGMER_TASK_QUEUE";
const WORKER_IDENTITY: &str = "STIGMER_WORKER_IDENTITY";
const API_ENDPOINT: &str = "STIGMER_API_ENDPOINT";
const API_TOKEN: &str = "STIGMER_API_TOKEN";
const WORKSPACE_DIR: &str = "STIGMER_WORKSPACE_DIR";
const LOG: &str = "STIGMER_LOG";
const LLM_PROVIDER: &str = "STIGMER_LLM_PROVIDER";
const LLM_MODEL: &str = "STIGMER_LLM_MODEL";
const LLM_BASE_URL: &str = "STIGMER_LLM_BASE_URL";
const OPENAI_API_KEY: &str = "STIGMER_OPENAI_API_KEY";
const ANTHROPIC_API_KEY: &str = "STIGMER_ANTHROPIC_API_KEY";
const OTLP_ENDPOINT: &str = "STIGMER_OTLP_ENDPOINT";
const OTLP_PROTOCOL: &str = "STIGMER_OTLP_PROTOCOL";
const OTEL_CAPTURE_CONTENT: &str = "STIGMER_OTEL_CAPTURE_CONTENT";
const OTEL_SERVICE_NAME: &str = "STIGMER_OTEL_SERVICE_NAME";
const OTEL_RESOURCE_ATTRIBUTES: &str = "STIGMER_OTEL_RESOURCE_ATTRIBUTES";

impl RunnerLaunchSpec {
    /// The variables every launch sets.
    pub const REQUIRED: [&'static str; 13] = [
        ROLE,
        HOME,
        TEMPORAL_ADDRESS,
        TEMPORAL_NAMESPACE,
        TASK_QUEUE,
        WORKER_IDENTITY,
        API_ENDPOINT,
        API_TOKEN,
        WORKSPACE_DIR,
        LOG,
        LLM_PROVIDER,
        LLM_MODEL,
        LLM_BASE_URL,
    ];

    /// Variables set only when there is a value (API keys, telemetry); an absent one is the
    /// default (no key, no export, `http/protobuf`, no content).
    pub const OPTIONAL: [&'static str; 7] = [
        OPENAI_API_KEY,
        ANTHROPIC_API_KEY,
        OTLP_ENDPOINT,
        OTLP_PROTOCOL,
        OTEL_CAPTURE_CONTENT,
        OTEL_SERVICE_NAME,
        OTEL_RESOURCE_ATTRIBUTES,
    ];

    /// Every variable of the contract; a runner accepts no other `STIGMER_*` variable.
    pub fn variables() -> impl Iterator<Item = &'static str> {
        Self::REQUIRED.into_iter().chain(Self::OPTIONAL)
    }

    /// The environment variables that carry this spec.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let pairs = [
            (ROLE, self.role.as_str().to_owned()),
            (HOME, path_string(&self.home)),
            (TEMPORAL_ADDRESS, self.temporal_address.clone()),
            (TEMPORAL_NAMESPACE, self.temporal_namespace.clone()),
            (TASK_QUEUE, self.task_queue.clone()),
            (WORKER_IDENTITY, self.worker_identity.clone()),
            (API_ENDPOINT, self.api_endpoint.clone()),
            (API_TOKEN, self.api_token.expose().to_owned()),
            (WORKSPACE_DIR, path_string(&self.workspace_dir)),
            (LOG, self.log_filter.clone()),
            (LLM_PROVIDER, self.llm_provider.as_str().to_owned()),
            (LLM_MODEL, self.llm_model.clone()),
            (LLM_BASE_URL, self.llm_base_url.clone()),
        ];
        let telemetry = &self.telemetry;
        let optional = [
            (
                OPENAI_API_KEY,
                self.openai_api_key
                    .as_ref()
                    .map(|key| key.expose().to_owned()),
            ),
            (
                ANTHROPIC_API_KEY,
                self.anthropic_api_key
                    .as_ref()
                    .map(|key| key.expose().to_owned()),
            ),
            (OTLP_ENDPOINT, telemetry.otlp_endpoint.clone()),
            (
                OTLP_PROTOCOL,
                (telemetry.protocol != OtlpProtocol::default())
                    .then(|| telemetry.protocol.as_str().to_owned()),
            ),
            (
                OTEL_CAPTURE_CONTENT,
                telemetry.capture_content.then(|| "true".to_owned()),
            ),
            (OTEL_SERVICE_NAME, telemetry.service_name.clone()),
            (
                OTEL_RESOURCE_ATTRIBUTES,
                telemetry.resource_attributes.clone(),
            ),
        ];
        pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .chain(
                optional
                    .into_iter()
                    .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value))),
            )
            .collect()
    }

    /// Parses the spec from a process environment. Variables that do not start with
    /// `STIGMER_` are ignored; every contract variable must be present and valid, and any other
    /// `STIGMER_*` variable is an error, because it means the writer and the reader disagree.
    pub fn from_env(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LaunchSpecError> {
        let mut stigmer_vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("STIGMER_"))
            .collect();
        if let Some(unknown) = stigmer_vars
            .keys()
            .find(|name| !Self::variables().any(|known| known == name.as_str()))
        {
            return Err(LaunchSpecError::Unknown {
                name: unknown.clone(),
                suggestion: closest_variable(unknown),
            });
        }
        let mut take = |name: &'static str| -> Result<String, LaunchSpecError> {
            match stigmer_vars.remove(name) {
                Some(value) if !value.trim().is_empty() => Ok(value),
                Some(_) => Err(LaunchSpecError::Invalid {
                    name,
                    value: String::new(),
                    expected: "a non-empty value",
                }),
                None => Err(LaunchSpecError::Missing { name }),
            }
        };
        let role_value = take(ROLE)?;
        let role = RunnerRole::parse(&role_value).ok_or(LaunchSpecError::Invalid {
            name: ROLE,
            value: role_value,
            expected: "`agent` or `workflow`",
        })?;
        let home = PathBuf::from(take(HOME)?);
        let temporal_address = take(TEMPORAL_ADDRESS)?;
        if !looks_like_host_port(&temporal_address) {
            return Err(LaunchSpecError::Invalid {
                name: TEMPORAL_ADDRESS,
                value: temporal_address,
                expected: "`host:port`",
            });
        }
        let temporal_namespace = take(TEMPORAL_NAMESPACE)?;
        let task_queue = take(TASK_QUEUE)?;
        let worker_identity = take(WORKER_IDENTITY)?;
        let api_endpoint = take(API_ENDPOINT)?;
        if !(api_endpoint.starts_with("http://") || api_endpoint.starts_with("https://")) {
            return Err(LaunchSpecError::Invalid {
                name: API_ENDPOINT,
                value: api_endpoint,
                expected: "an `http://host:port` URL",
            });
        }
        let api_token = Secret::new(take(API_TOKEN)?);
        let workspace_dir = PathBuf::from(take(WORKSPACE_DIR)?);
        let log_filter = take(LOG)?;
        let provider_value = take(LLM_PROVIDER)?;
        let llm_provider = LlmProvider::parse(&provider_value).ok_or(LaunchSpecError::Invalid {
            name: LLM_PROVIDER,
            value: provider_value,
            expected: "`ollama`, `openai` or `anthropic`",
        })?;
        let llm_model = take(LLM_MODEL)?;
        let llm_base_url = take(LLM_BASE_URL)?;
        let mut optional =
            |name: &'static str| stigmer_vars.remove(name).filter(|value| !value.is_empty());
        let openai_api_key = optional(OPENAI_API_KEY).map(Secret::new);
        let anthropic_api_key = optional(ANTHROPIC_API_KEY).map(Secret::new);
        let otlp_endpoint = match optional(OTLP_ENDPOINT) {
            Some(endpoint) if !valid_endpoint(&endpoint) => {
                return Err(LaunchSpecError::Invalid {
                    name: OTLP_ENDPOINT,
                    value: endpoint,
                    expected: "an http:// or https:// URL",
                });
            }
            endpoint => endpoint,
        };
        let protocol = match optional(OTLP_PROTOCOL) {
            None => OtlpProtocol::default(),
            Some(text) => OtlpProtocol::parse(&text).ok_or(LaunchSpecError::Invalid {
                name: OTLP_PROTOCOL,
                value: text,
                expected: "`http/protobuf` or `grpc`",
            })?,
        };
        let capture_content = match optional(OTEL_CAPTURE_CONTENT) {
            None => false,
            Some(text) => parse_bool(&text).ok_or(LaunchSpecError::Invalid {
                name: OTEL_CAPTURE_CONTENT,
                value: text,
                expected: "`true` or `false`",
            })?,
        };
        let telemetry = TelemetrySettings {
            otlp_endpoint,
            protocol,
            capture_content,
            service_name: optional(OTEL_SERVICE_NAME),
            resource_attributes: optional(OTEL_RESOURCE_ATTRIBUTES),
        };
        Ok(RunnerLaunchSpec {
            role,
            home,
            temporal_address,
            temporal_namespace,
            task_queue,
            worker_identity,
            api_endpoint,
            api_token,
            workspace_dir,
            log_filter,
            llm_provider,
            llm_model,
            llm_base_url,
            openai_api_key,
            anthropic_api_key,
            telemetry,
        })
    }
}

/// Written out field by field so that a new secret field has to be considered here.
impl fmt::Debug for RunnerLaunchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerLaunchSpec")
            .field("role", &self.role)
            .field("home", &self.home)
            .field("temporal_address", &self.temporal_address)
            .field("temporal_namespace", &self.temporal_namespace)
            .field("task_queue", &self.task_queue)
            .field("worker_identity", &self.worker_identity)
            .field("api_endpoint", &self.api_endpoint)
            .field("api_token", &self.api_token)
            .field("workspace_dir", &self.workspace_dir)
            .field("log_filter", &self.log_filter)
            .field("llm_provider", &self.llm_provider)
            .field("llm_model", &self.llm_model)
            .field("llm_base_url", &self.llm_base_url)
            .field("openai_api_key", &self.openai_api_key)
            .field("anthropic_api_key", &self.anthropic_api_key)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Why a runner refused its environment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LaunchSpecError {
    #[error(
        "environment variable {name} is missing: the supervisor must set every variable of the runner launch contract"
    )]
    Missing { name: &'static str },
    #[error("environment variable {name}={value:?} is invalid: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "environment variable {name} is not part of the runner launch contract{}",
        suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
    )]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
}

fn closest_variable(name: &str) -> Option<String> {
    RunnerLaunchSpec::variables()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

fn looks_like_host_port(value: &str) -> bool {
    value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn path_string(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunnerLaunchSpec {
        RunnerLaunchSpec {
            role: RunnerRole::Agent,
            home: PathBuf::from("/tmp/home"),
            temporal_address: "127.0.0.1:7233".into(),
            temporal_namespace: "default".into(),
            task_queue: "agent_execution_runner".into(),
            worker_identity: "agent-runner@1234".into(),
            api_endpoint: "http://127.0.0.1:7234".into(),
            api_token: Secret::new("token-value"),
            workspace_dir: PathBuf::from("/tmp/home/workspace"),
            log_filter: "info".into(),
            llm_provider: LlmProvider::Ollama,
            llm_model: "qwen2.5-coder:7b".into(),
            llm_base_url: "http://localhost:11434".into(),
            openai_api_key: Some(Secret::new("sk-openai-value")),
            anthropic_api_key: None,
            telemetry: TelemetrySettings {
                otlp_endpoint: Some("http://127.0.0.1:4317".into()),
                protocol: OtlpProtocol::Grpc,
                capture_content: true,
                service_name: Some("agents".into()),
                resource_attributes: Some("deployment.environment=dev,team=a".into()),
            },
        }
    }

    #[test]
    fn round_trip_through_the_environment() {
        let spec = sample();
        let env = spec.to_env();
        let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        let mut expected: Vec<&str> = RunnerLaunchSpec::REQUIRED.to_vec();
        expected.extend([
            "STIGMER_OPENAI_API_KEY",
            "STIGMER_OTLP_ENDPOINT",
            "STIGMER_OTLP_PROTOCOL",
            "STIGMER_OTEL_CAPTURE_CONTENT",
            "STIGMER_OTEL_SERVICE_NAME",
            "STIGMER_OTEL_RESOURCE_ATTRIBUTES",
        ]);
        assert_eq!(names, expected);
        // Every variable of the contract is written by some spec.
        let every = RunnerLaunchSpec {
            anthropic_api_key: Some(Secret::new("sk-ant")),
            ..spec.clone()
        };
        let mut written: Vec<String> = every.to_env().into_iter().map(|(name, _)| name).collect();
        let mut declared: Vec<String> = RunnerLaunchSpec::variables().map(str::to_owned).collect();
        written.sort();
        declared.sort();
        assert_eq!(written, declared);
        assert_eq!(RunnerLaunchSpec::from_env(every.to_env()).unwrap(), every);
        // Unrelated variables (PATH, HOME) are ignored.
        let mut with_noise = env.clone();
        with_noise.push(("PATH".into(), "/usr/bin".into()));
        assert_eq!(RunnerLaunchSpec::from_env(with_noise).unwrap(), spec);
        // Optional keys may be absent; without telemetry nothing of it is written.
        let without_keys = RunnerLaunchSpec {
            openai_api_key: None,
            telemetry: TelemetrySettings::default(),
            ..spec
        };
        assert_eq!(
            without_keys.to_env().len(),
            RunnerLaunchSpec::REQUIRED.len()
        );
        assert_eq!(
            RunnerLaunchSpec::from_env(without_keys.to_env()).unwrap(),
            without_keys
        );
    }

    #[test]
    fn every_missing_variable_is_named() {
        for missing in RunnerLaunchSpec::REQUIRED {
            let env = sample()
                .to_env()
                .into_iter()
                .filter(|(name, _)| name != missing);
            let error = RunnerLaunchSpec::from_env(env).unwrap_err();
            assert_eq!(error, LaunchSpecError::Missing { name: missing });
            assert!(error.to_string().contains(missing));
        }
    }

    #[test]
    fn an_unknown_variable_is_refused_with_a_suggestion() {
        let mut env = sample().to_env();
        env.push(("STIGMER_TEMPORAL_ADRESS".into(), "x:1".into()));
        let error = RunnerLaunchSpec::from_env(env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable STIGMER_TEMPORAL_ADRESS is not part of the runner launch contract (did you mean STIGMER_TEMPORAL_ADDRESS?)"
        );
        let mut env = sample().to_env();
        env.push(("STIGMER_BACKEND_URL".into(), "http://x".into()));
        let error = RunnerLaunchSpec::from_env(env).unwrap_err();
        assert!(
            matches!(error, LaunchSpecError::Unknown { ref name, .. } if name == "STIGMER_BACKEND_URL")
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let replace = |name: &str, value: &str| -> Vec<(String, String)> {
            sample()
                .to_env()
                .into_iter()
                .map(|(n, v)| {
                    if n == name {
                        (n, value.to_owned())
                    } else {
                        (n, v)
                    }
                })
                .collect()
        };
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(ROLE, "python")),
            Err(LaunchSpecError::Invalid { name: ROLE, .. })
        ));
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(TEMPORAL_ADDRESS, "localhost")),
            Err(LaunchSpecError::Invalid {
                name: TEMPORAL_ADDRESS,
                ..
            })
        ));
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(API_ENDPOINT, "localhost:50051")),
            Err(LaunchSpecError::Invalid {
                name: API_ENDPOINT,
                ..
            })
        ));
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(OTLP_ENDPOINT, "collector:4317")),
            Err(LaunchSpecError::Invalid {
                name: OTLP_ENDPOINT,
                ..
            })
        ));
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(OTLP_PROTOCOL, "http/json")),
            Err(LaunchSpecError::Invalid {
                name: OTLP_PROTOCOL,
                ..
            })
        ));
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(OTEL_CAPTURE_CONTENT, "maybe")),
            Err(LaunchSpecError::Invalid {
                name: OTEL_CAPTURE_CONTENT,
                ..
            })
        ));
        assert!(matches!(
            RunnerLaunchSpec::from_env(replace(TASK_QUEUE, " ")),
            Err(LaunchSpecError::Invalid {
                name: TASK_QUEUE,
                ..
            })
        ));
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let printed = format!("{:?}", sample());
        assert!(!printed.contains("token-value"), "{printed}");
        assert!(!printed.contains("sk-openai-value"), "{printed}");
        assert!(printed.contains("127.0.0.1:7233"));
    }
}
