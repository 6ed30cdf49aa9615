//! Where traces go: the OpenTelemetry settings (`telemetry:` in `config.yaml`, the standard
//! `OTEL_*` variables over it). Resolved once by the CLI like every setting; the daemon's API
//! server reads them from [`crate::Settings`] and the runners from the launch contract.

use serde::{Deserialize, Serialize};

/// How spans travel to the collector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention); the endpoint is used as given.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention); `/v1/traces` is appended
    /// to the endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` means.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }

    /// The protocol named as `OTEL_EXPORTER_OTLP_PROTOCOL` names it (`http/json` is not
    /// supported).
    pub fn parse(text: &str) -> Option<OtlpProtocol> {
        match text.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// The resolved telemetry settings. Without an endpoint nothing is exported (and nothing is
/// built: no exporter, no provider).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// The OTLP endpoint (`http://host:4318` or, with gRPC, `http://host:4317`).
    pub otlp_endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// Whether prompts, answers and tool arguments and results are put on spans (secrets
    /// masked). Off by default.
    pub capture_content: bool,
    /// `OTEL_SERVICE_NAME`: replaces every component's own service name.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,key=value` added to every component's resource.
    pub resource_attributes: Option<String>,
}

impl TelemetrySettings {
    /// Whether traces are exported at all.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }
}

/// Whether `endpoint` is an endpoint the exporters accept.
pub(crate) fn valid_endpoint(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// A boolean as `config.yaml` and the environment spell it.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}
