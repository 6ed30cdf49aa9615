//! Every environment variable Stigmer reads, declared once.
//!
//! Code reads variables through these constants so that a renamed variable is renamed
//! everywhere, and so that the documentation in `docs/configuration.md` has one list to follow.

/// Names of the environment variables Stigmer reads.
pub struct EnvVars;

impl EnvVars {
    /// The home directory (default `~/.stigmer`).
    pub const STIGMER_HOME: &'static str = "STIGMER_HOME";
    /// Port of the API server (`server.port`).
    pub const STIGMER_SERVER_PORT: &'static str = "STIGMER_SERVER_PORT";
    /// Port of the managed Temporal frontend (`temporal.port`).
    pub const STIGMER_TEMPORAL_PORT: &'static str = "STIGMER_TEMPORAL_PORT";
    /// Port of the managed Temporal web UI (`temporal.ui_port`).
    pub const STIGMER_TEMPORAL_UI_PORT: &'static str = "STIGMER_TEMPORAL_UI_PORT";
    /// Path of the `temporal` CLI to run for managed Temporal.
    pub const STIGMER_TEMPORAL_BIN: &'static str = "STIGMER_TEMPORAL_BIN";
    /// Address (`host:port`) of an existing Temporal cluster; Stigmer then manages none.
    pub const TEMPORAL_ADDRESS: &'static str = "TEMPORAL_ADDRESS";
    /// Temporal namespace (`temporal.namespace`).
    pub const TEMPORAL_NAMESPACE: &'static str = "TEMPORAL_NAMESPACE";
    /// Default LLM provider (`ollama`, `openai`, `anthropic`); `llm.provider` wins.
    pub const STIGMER_LLM_PROVIDER: &'static str = "STIGMER_LLM_PROVIDER";
    /// Default model; `llm.model` wins.
    pub const STIGMER_LLM_MODEL: &'static str = "STIGMER_LLM_MODEL";
    /// Base URL of the default provider; `llm.base_url` wins.
    pub const STIGMER_LLM_BASE_URL: &'static str = "STIGMER_LLM_BASE_URL";
    /// API key for OpenAI-compatible endpoints.
    pub const OPENAI_API_KEY: &'static str = "OPENAI_API_KEY";
    /// API key for Anthropic.
    pub const ANTHROPIC_API_KEY: &'static str = "ANTHROPIC_API_KEY";
    /// A `tracing` filter directive that overrides `logs.level` for every component.
    pub const STIGMER_LOG: &'static str = "STIGMER_LOG";
    /// The OTLP endpoint traces are exported to (`telemetry.otlp_endpoint`); unset, nothing is
    /// exported.
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: &'static str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// `http/protobuf` (default) or `grpc` (`telemetry.protocol`).
    pub const OTEL_EXPORTER_OTLP_PROTOCOL: &'static str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// Replaces the components' service names (`stigmer-server`, `stigmer-agent-runner`, …).
    pub const OTEL_SERVICE_NAME: &'static str = "OTEL_SERVICE_NAME";
    /// `key=value,…` added to every component's resource.
    pub const OTEL_RESOURCE_ATTRIBUTES: &'static str = "OTEL_RESOURCE_ATTRIBUTES";
    /// `true` puts prompts, answers and tool contents on spans (`telemetry.capture_content`).
    pub const OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: &'static str =
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";
    /// Disables colour in human output (<https://no-color.org>).
    pub const NO_COLOR: &'static str = "NO_COLOR";
}
