//! One client library for the API server: finding the daemon of a home ([`home`]: its lock,
//! run state and token), the bearer token on every request, the message size limit both sides
//! agree on, and typed clients of every service over one connection.
//!
//! The CLI, the runners, the tests and the benches connect through [`ApiClients`], so the token
//! interceptor and the size limit exist once; the server applies the same
//! [`MAX_MESSAGE_BYTES`] to every service it serves. [`feed::EventFeed`] follows one
//! execution's events in order and each once across broken streams and daemon restarts.
//! [`executions`] holds the typed calls several clients make (create a workflow execution or a
//! workflow's agent run, report a workflow's result, list executions of one kind).

pub mod executions;
pub mod feed;
pub mod home;

use std::time::Duration;
use stigmer_proto::daemon::v1::daemon_service_client::DaemonServiceClient;
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::resources::v1::resource_service_client::ResourceServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use stigmer_proto::MAX_MESSAGE_BYTES;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the API token is not valid text (it holds characters a header cannot carry)")]
    BadToken,
    #[error("{endpoint:?} is not a valid API endpoint: {source}")]
    BadEndpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the daemon has not recorded its address yet")]
    NoAddress,
    #[error("the API token is missing")]
    NoToken,
    #[error("cannot reach the API server at {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Token {
    header: MetadataValue<Ascii>,
}

impl Token {
    pub fn new(token: &str) -> Result<Token, ClientError> {
        let header = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| ClientError::BadToken)?;
        Ok(Token { header })
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(****)")
    }
}

impl Interceptor for Token {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

/// A channel that carries the token.
pub type Authenticated = InterceptedService<Channel, Token>;

/// How long to wait for the connection and for each request.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// Per request; `None` for none (a `Subscribe` stream lives as long as its execution).
    pub request: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Some(Duration::from_secs(60)),
        }
    }
}

/// Typed clients of every service, sharing one connection, with the token and the size limit.
#[derive(Clone, Debug)]
pub struct ApiClients {
    pub daemon: DaemonServiceClient<Authenticated>,
    pub resources: ResourceServiceClient<Authenticated>,
    pub executions: ExecutionServiceClient<Authenticated>,
}

impl ApiClients {
    /// Connects to the API server at `endpoint` (`host:port` or `http://host:port`) now.
    pub async fn connect(
        endpoint: &str,
        token: &str,
        timeouts: Timeouts,
    ) -> Result<ApiClients, ClientError> {
        let token = Token::new(token)?;
        let (url, builder) = endpoint_builder(endpoint, timeouts)?;
        let channel = builder
            .connect()
            .await
            .map_err(|source| ClientError::Unreachable {
                endpoint: url,
                source,
            })?;
        Ok(ApiClients::over(channel, token))
    }

    /// Connects to the daemon of `home`: the address it recorded in `run/state.json`, with the
    /// token in `run/api-token` (see [`home`]).
    pub async fn connect_home(
        home: &stigmer_config::StigmerHome,
        timeouts: Timeouts,
    ) -> Result<ApiClients, ClientError> {
        let address = home::RunState::load(home)
            .and_then(|state| state.server_address)
            .ok_or(ClientError::NoAddress)?;
        let token = home::read_api_token(home).ok_or(ClientError::NoToken)?;
        ApiClients::connect(&address, &token, timeouts).await
    }

    /// Clients that connect on first use (and reconnect after the server restarts).
    pub fn connect_lazy(
        endpoint: &str,
        token: &str,
        timeouts: Timeouts,
    ) -> Result<ApiClients, ClientError> {
        let token = Token::new(token)?;
        let (_, builder) = endpoint_builder(endpoint, timeouts)?;
        Ok(ApiClients::over(builder.connect_lazy(), token))
    }

    /// Clients over an existing channel.
    pub fn over(channel: Channel, token: Token) -> ApiClients {
        ApiClients {
            daemon: DaemonServiceClient::with_interceptor(channel.clone(), token.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            resources: ResourceServiceClient::with_interceptor(channel.clone(), token.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            executions: ExecutionServiceClient::with_interceptor(channel, token)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }
}

fn endpoint_builder(endpoint: &str, timeouts: Timeouts) -> Result<(String, Endpoint), ClientError> {
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let mut builder =
        Endpoint::from_shared(url.clone()).map_err(|source| ClientError::BadEndpoint {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    builder = builder.connect_timeout(timeouts.connect);
    if let Some(request) = timeouts.request {
        builder = builder.timeout(request);
    }
    Ok((url, builder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_on_every_request_and_never_into_debug_output() {
        let mut token = Token::new("s3cret\n").unwrap();
        let request = token.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(format!("{token:?}"), "Token(****)");
        assert!(matches!(Token::new("bad\u{7}"), Err(ClientError::BadToken)));
    }

    #[tokio::test]
    async fn endpoints_with_or_without_a_scheme_are_accepted() {
        for endpoint in ["127.0.0.1:1", "http://127.0.0.1:1"] {
            ApiClients::connect_lazy(endpoint, "t", Timeouts::default()).unwrap();
        }
        let error =
            ApiClients::connect_lazy("http://bad host", "t", Timeouts::default()).unwrap_err();
        assert!(
            error.to_string().contains("is not a valid API endpoint"),
            "{error}"
        );
    }
}
