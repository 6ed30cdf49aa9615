//! `call: http`, the activity side: sends one request the interpreter described and turns the
//! response into the task's raw output. Runs outside workflow code (it is I/O); secret
//! placeholders are revealed here, just before sending, and concealed again in the output.
//!
//! Errors are all `communication` problems with a title and a detail naming the method and the
//! URI (secrets concealed):
//! * an error status keeps it (`404`); with `redirect: false` a 3xx is an error status too;
//! * a connection failure (refused, DNS, TLS, reset) is status 500;
//! * no complete answer within [`HttpLimits::timeout`] is status 408 (the whole exchange is
//!   timed, redirects and body included);
//! * a body over [`HttpLimits::body_cap`] is status 502;
//! * more than [`MAX_REDIRECTS`] hops is status 500.
//!
//! Redirects are followed here, not by reqwest, so `execute` needs a client that does not
//! follow them itself: build it with [`client`] (or `redirect(Policy::none())`). A client that
//! does is detected and refused, never silently trusted.

use crate::error::Problem;
use crate::secrets::Secrets;
use base64::Engine;
use regex::Regex;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;
use url::Url;

/// One HTTP request, as the interpreter evaluated it (expressions done, endpoint template
/// expanded; strings may still hold secret placeholders).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCall {
    /// `get`, `POST`, …: any case.
    pub method: String,
    pub uri: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default)]
    pub output: HttpOutput,
    /// false: only 2xx succeeds; true: 2xx–3xx (redirects are followed).
    #[serde(default)]
    pub redirect: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

/// `with.output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HttpOutput {
    /// The body, parsed when it is JSON, else a string.
    #[default]
    Content,
    /// `{request {method, uri, headers}, statusCode, headers, content}`.
    Response,
    /// The body, base64-encoded.
    Raw,
}

/// `endpoint.authentication` (values may be secret placeholders).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Authentication {
    Basic { username: String, password: String },
    Bearer { token: String },
}

/// Bounds of one call.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Bodies longer than this fail the call (`communication`, status 502 unless the server
    /// answered with an error status).
    pub body_cap: usize,
    /// The whole exchange: connecting, every redirect hop and reading the body.
    pub timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            body_cap: 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }
}

/// The most redirect hops followed with `redirect: true`.
pub const MAX_REDIRECTS: usize = 10;

/// How much of an error response's body its detail quotes.
const EXCERPT_CHARS: usize = 200;

/// How much of an error response's body is read (the rest is dropped, never an error).
const EXCERPT_READ_BYTES: usize = 4096;

/// Status of a call that got no complete answer in time.
const TIMEOUT_STATUS: u16 = 408;
/// Status of a call that could not reach the server, or went round in redirects.
const CONNECTION_STATUS: u16 = 500;
/// Status of a call whose answer was too large.
const BODY_CAP_STATUS: u16 = 502;

/// An HTTP client fit for [`execute`]: it does not follow redirects itself. With https
/// endpoints, a rustls crypto provider must be installed first (the binary installs ring).
pub fn client() -> Result<reqwest::Client, Problem> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| Problem::configuration(format!("cannot set up the HTTP client: {error}")))
}

/// Sends `call` and returns the task's raw output, or a `communication` error (an HTTP error
/// status keeps the response's status).
pub async fn execute(
    client: &reqwest::Client,
    call: &HttpCall,
    secrets: &Secrets,
    limits: HttpLimits,
) -> Result<Value, Problem> {
    let request = Prepared::new(call, secrets)?;
    let exchange = send(client, call, &request, secrets, limits);
    match tokio::time::timeout(limits.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Problem::communication(format!(
            "{} {} got no complete answer within {} (timed out)",
            request.method,
            request.display_uri,
            format_duration(limits.timeout)
        ))
        .with_status(TIMEOUT_STATUS)
        .with_title("HTTP request timed out")),
    }
}

/// The request with its secrets revealed, and the concealed forms shown in output and errors.
struct Prepared {
    method: Method,
    url: Url,
    /// `url` with every secret back as its placeholder.
    display_uri: String,
    headers: HeaderMap,
    /// Headers that carry a secret (`Authorization` always): never sent to another origin.
    secret_headers: Vec<HeaderName>,
    /// The request headers as the output shows them (placeholders, credentials redacted).
    display_headers: Map<String, Value>,
    body: Option<(Vec<u8>, &'static str)>,
}

impl Prepared {
    fn new(call: &HttpCall, secrets: &Secrets) -> Result<Prepared, Problem> {
        let method = Method::from_bytes(call.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                Problem::configuration(format!("{:?} is not an HTTP method", call.method))
            })?;

        let url = build_url(&secrets.reveal(&call.uri)?, &call.query, |text| {
            secrets.reveal(text)
        })?;
        let display_uri = display_uri(call, secrets, &url);

        let mut headers = HeaderMap::new();
        let mut secret_headers = vec![AUTHORIZATION];
        let mut display_headers = Map::new();
        for (name, value) in &call.headers {
            let header_name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                Problem::configuration(format!("{name:?} is not a valid HTTP header name"))
            })?;
            let header_value = HeaderValue::from_str(&secrets.reveal(value)?).map_err(|_| {
                Problem::configuration(format!(
                    "the value of the HTTP header {name:?} holds characters a header cannot \
                     carry"
                ))
            })?;
            let display_value = if header_name == AUTHORIZATION {
                redact_credentials(value)
            } else {
                secrets.conceal(value)
            };
            display_headers.insert(header_name.to_string(), Value::String(display_value));
            if value.contains("⟨secret:") {
                secret_headers.push(header_name.clone());
            }
            headers.append(header_name, header_value);
        }

        if let Some(authentication) = &call.authentication {
            let (value, display) = match authentication {
                Authentication::Basic { username, password } => {
                    let pair = format!(
                        "{}:{}",
                        secrets.reveal(username)?,
                        secrets.reveal(password)?
                    );
                    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                    (format!("Basic {encoded}"), "Basic ***")
                }
                Authentication::Bearer { token } => {
                    (format!("Bearer {}", secrets.reveal(token)?), "Bearer ***")
                }
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Problem::configuration(
                    "the authentication credentials hold characters an HTTP header cannot carry",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
            display_headers.insert(
                AUTHORIZATION.to_string(),
                Value::String(display.to_string()),
            );
        }

        let body = match &call.body {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some((
                secrets.reveal(text)?.into_bytes(),
                "text/plain; charset=utf-8",
            )),
            Some(value) => {
                let revealed = secrets.reveal_value(value)?;
                let bytes = serde_json::to_vec(&revealed).map_err(|error| {
                    Problem::runtime(format!("cannot serialise the HTTP body: {error}"))
                })?;
                Some((bytes, "application/json"))
            }
        };
        if let Some((_, content_type)) = &body
            && !headers.contains_key(CONTENT_TYPE)
        {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            display_headers.insert(
                CONTENT_TYPE.to_string(),
                Value::String(content_type.to_string()),
            );
        }

        Ok(Prepared {
            method,
            url,
            display_uri,
            headers,
            secret_headers,
            display_headers,
            body,
        })
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &Url,
        with_body: bool,
    ) -> reqwest::RequestBuilder {
        let mut headers = self.headers.clone();
        // Credentials and secrets go to the origin they were written for, not wherever it
        // redirects.
        if !same_origin(url, &self.url) {
            for name in &self.secret_headers {
                headers.remove(name);
            }
        }
        if !with_body {
            headers.remove(CONTENT_TYPE);
        }
        let builder = client.request(method.clone(), url.clone()).headers(headers);
        match (&self.body, with_body) {
            (Some((bytes, _)), true) => builder.body(bytes.clone()),
            _ => builder,
        }
    }
}

/// Sends the request, following redirects when `call.redirect`, and reads the answer.
async fn send(
    client: &reqwest::Client,
    call: &HttpCall,
    request: &Prepared,
    secrets: &Secrets,
    limits: HttpLimits,
) -> Result<Value, Problem> {
    let mut method = request.method.clone();
    let mut url = request.url.clone();
    let mut with_body = request.body.is_some();
    let mut hops = 0;
    let mut response = loop {
        let response = request
            .request(client, &method, &url, with_body)
            .send()
            .await
            .map_err(|error| send_error(request, secrets, &error))?;
        if response.url() != &url {
            return Err(Problem::communication(format!(
                "{} {}: the HTTP client followed a redirect by itself; build it with \
                 stigmer_workflow::http::client()",
                request.method, request.display_uri
            ))
            .with_title("HTTP client misconfigured"));
        }
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok());
        let next = match (call.redirect && status.is_redirection(), location) {
            (true, Some(location)) => Some(url.join(location).map_err(|_| {
                Problem::communication(format!(
                    "{} {} redirected to {:?}, which is not a URI",
                    request.method,
                    request.display_uri,
                    secrets.conceal(location)
                ))
                .with_status(status.as_u16())
                .with_title("HTTP redirect failed")
            })?),
            _ => None,
        };
        let Some(next) = next else {
            break response;
        };
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(Problem::communication(format!(
                "{} {} redirected more than {MAX_REDIRECTS} times",
                request.method, request.display_uri
            ))
            .with_status(CONNECTION_STATUS)
            .with_title("HTTP redirect failed"));
        }
        // 303, and 301/302 after a POST, continue as a GET without a body (as browsers do);
        // 307 and 308 repeat the request as it was.
        if status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && method == Method::POST)
        {
            if method != Method::HEAD {
                method = Method::GET;
            }
            with_body = false;
        }
        url = next;
    };

    let status = response.status();
    let succeeded = status.is_success() || (call.redirect && status.is_redirection());
    if !succeeded {
        let excerpt = read_excerpt(&mut response).await;
        let excerpt = secrets.conceal(&excerpt);
        let mut detail = format!(
            "{} {} answered {}",
            request.method,
            request.display_uri,
            status_text(status)
        );
        if status.is_redirection() {
            detail.push_str(" (redirects are not followed: set `redirect: true` to accept them)");
        }
        if !excerpt.is_empty() {
            detail.push_str(": ");
            detail.push_str(&excerpt);
        }
        return Err(Problem::communication(detail)
            .with_status(status.as_u16())
            .with_title("HTTP error status"));
    }

    let response_headers = response_headers(response.headers(), secrets);
    let body = read_body(&mut response, request, secrets, limits.body_cap).await?;

    Ok(match call.output {
        HttpOutput::Content => content(&body, secrets),
        HttpOutput::Raw => Value::String(raw(&body, secrets)),
        HttpOutput::Response => {
            let mut request_object = Map::new();
            request_object.insert(
                "method".to_string(),
                Value::String(request.method.to_string()),
            );
            request_object.insert(
                "uri".to_string(),
                Value::String(request.display_uri.clone()),
            );
            request_object.insert(
                "headers".to_string(),
                Value::Object(request.display_headers.clone()),
            );
            let mut output = Map::new();
            output.insert("request".to_string(), Value::Object(request_object));
            output.insert("statusCode".to_string(), Value::from(status.as_u16()));
            output.insert("headers".to_string(), Value::Object(response_headers));
            output.insert("content".to_string(), content(&body, secrets));
            Value::Object(output)
        }
    })
}

/// `uri` with the query pairs appended (each part passed through `reveal`).
fn build_url(
    uri: &str,
    query: &BTreeMap<String, String>,
    reveal: impl Fn(&str) -> Result<String, Problem>,
) -> Result<Url, Problem> {
    let mut url = Url::parse(uri.trim()).map_err(|error| {
        Problem::configuration(format!("the endpoint URI is not a valid URI ({error})"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Problem::configuration(format!(
            "the endpoint URI must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in query {
            pairs.append_pair(&reveal(name)?, &reveal(value)?);
        }
    }
    Ok(url)
}

static ENCODED_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)%E2%9F%A8secret(?::|%3A)([A-Za-z_][A-Za-z0-9_]*)%E2%9F%A9")
        .expect("valid regex")
});

/// The sent URI as errors and outputs show it: the same URI built from the unrevealed parts
/// (so each secret reads as its placeholder), or the sent one with values concealed.
fn display_uri(call: &HttpCall, secrets: &Secrets, sent: &Url) -> String {
    match build_url(&call.uri, &call.query, |text| Ok(text.to_string())) {
        Ok(url) => {
            let text = ENCODED_PLACEHOLDER.replace_all(url.as_str(), "⟨secret:$1⟩");
            secrets.conceal(&text)
        }
        Err(_) => secrets.conceal(sent.as_str()),
    }
}

/// An `Authorization` value as the output shows it: the scheme, not the credentials, unless
/// they are only placeholders.
fn redact_credentials(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, credentials)) if !is_only_placeholders(credentials) => {
            format!("{scheme} ***")
        }
        Some(_) => value.to_string(),
        None if is_only_placeholders(value) => value.to_string(),
        None => "***".to_string(),
    }
}

fn is_only_placeholders(text: &str) -> bool {
    static ONLY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:⟨secret:[A-Za-z_][A-Za-z0-9_]*⟩)+$").expect("valid regex")
    });
    ONLY.is_match(text.trim())
}

fn same_origin(left: &Url, right: &Url) -> bool {
    left.scheme() == right.scheme()
        && left.host_str() == right.host_str()
        && left.port_or_known_default() == right.port_or_known_default()
}

/// The error of a request that got no response.
fn send_error(request: &Prepared, secrets: &Secrets, error: &reqwest::Error) -> Problem {
    let cause = secrets.conceal(&error_chain(error));
    let (status, title, what) = if error.is_timeout() {
        (TIMEOUT_STATUS, "HTTP request timed out", "timed out")
    } else if error.is_connect() {
        (
            CONNECTION_STATUS,
            "HTTP connection failed",
            "cannot connect",
        )
    } else {
        (CONNECTION_STATUS, "HTTP request failed", "failed")
    };
    Problem::communication(format!(
        "{} {} {what}: {cause}",
        request.method, request.display_uri
    ))
    .with_status(status)
    .with_title(title)
}

/// An error and its causes, without the URL reqwest adds (it may hold revealed secrets).
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        // `without_url` needs ownership; the Display of the kind alone is what is left.
        return if error.is_timeout() {
            "operation timed out".to_string()
        } else if error.is_connect() {
            "connection error".to_string()
        } else {
            "request error".to_string()
        };
    }
    parts.join(": ")
}

/// The first bytes of an error response's body, on one line and cut at [`EXCERPT_CHARS`].
async fn read_excerpt(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > EXCERPT_CHARS {
        let cut: String = line.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// The whole body, in chunks, failing as soon as it passes `cap` bytes.
async fn read_body(
    response: &mut reqwest::Response,
    request: &Prepared,
    secrets: &Secrets,
    cap: usize,
) -> Result<Vec<u8>, Problem> {
    let too_large = || {
        Problem::communication(format!(
            "{} {} answered a body larger than the cap of {cap} bytes",
            request.method, request.display_uri
        ))
        .with_status(BODY_CAP_STATUS)
        .with_title("HTTP response too large")
    };
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                let cause = secrets.conceal(&error_chain(&error));
                return Err(Problem::communication(format!(
                    "{} {}: reading the response body failed: {cause}",
                    request.method, request.display_uri
                ))
                .with_status(if error.is_timeout() {
                    TIMEOUT_STATUS
                } else {
                    CONNECTION_STATUS
                })
                .with_title("HTTP request failed"));
            }
        }
    }
}

/// `output: content`: the body parsed when it is JSON (whether or not the content type says
/// so), else its text; an empty body is `null`.
fn content(body: &[u8], secrets: &Secrets) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    // Whatever the declared type, a body that parses is JSON (servers often say text/plain),
    // and one that does not is text (a JSON type with a broken body stays readable).
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => secrets.conceal_value(&value),
        Err(_) => Value::String(secrets.conceal(&String::from_utf8_lossy(body))),
    }
}

/// `output: raw`: the body in base64; a text body has its echoed secrets concealed first.
fn raw(body: &[u8], secrets: &Secrets) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    match std::str::from_utf8(body) {
        Ok(text) => engine.encode(secrets.conceal(text)),
        Err(_) => engine.encode(body),
    }
}

/// Response headers as a map of lower-case names; repeated headers are joined with `, `.
fn response_headers(headers: &HeaderMap, secrets: &Secrets) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let value = secrets.conceal(&String::from_utf8_lossy(value.as_bytes()));
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.to_string(), Value::String(value));
            }
        }
    }
    out
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}
