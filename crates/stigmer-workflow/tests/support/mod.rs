//! A recording HTTP server on 127.0.0.1 for the `call: http` tests and the CTK scenarios.
//!
//! It answers two families of routes:
//! * `/test/…`: small fixtures for `http::execute` (JSON, text, redirects, an echo, large and
//!   slow bodies);
//! * `/<public host>/…`: the public hosts the CTK calls, rewritten to this server
//!   (`https://petstore.swagger.io/v2/pet/1` → `http://127.0.0.1:<port>/petstore.swagger.io/v2/pet/1`).
//!
//! Every request is recorded (method, path, query, headers, body) before it is answered.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A running server; it stops with the test's runtime.
pub struct TestServer {
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer { address, requests }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// `text` with each public host the CTK calls pointing at this server.
    pub fn rewrite_public_hosts(&self, text: &str) -> String {
        PUBLIC_HOSTS.iter().fold(text.to_string(), |text, host| {
            text.replace(
                &format!("https://{host}/"),
                &format!("http://{}/{host}/", self.address),
            )
        })
    }
}

/// The public hosts the CTK scenarios call.
pub const PUBLIC_HOSTS: [&str; 2] = ["petstore.swagger.io", "httpbin.org"];

/// The user and password `httpbin.org/basic-auth/{user}/{password}` checks against.
fn basic_auth_ok(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Basic {expected}"))
}

async fn handle(
    State(requests): State<Arc<Mutex<Vec<RecordedRequest>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut recorded_headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded_headers
            .entry(name.to_string())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: recorded_headers,
        body: body.to_vec(),
    };
    requests
        .lock()
        .expect("requests lock")
        .push(recorded.clone());

    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["test", rest @ ..] => fixture(rest, &recorded).await,
        ["petstore.swagger.io", "v2", "pet", rest @ ..] => petstore(rest, &recorded),
        ["httpbin.org", "basic-auth", user, password] => {
            if basic_auth_ok(&headers, user, password) {
                json_response(StatusCode::OK, json!({"authenticated": true, "user": user}))
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"Fake Realm\"")],
                )
                    .into_response()
            }
        }
        _ => (StatusCode::NOT_FOUND, "no such route on the test server").into_response(),
    }
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn pet(id: u64) -> Option<Value> {
    let (name, status) = match id {
        1 => ("doggie", "available"),
        2 => ("Rex", "available"),
        3 => ("Tom", "sold"),
        _ => return None,
    };
    Some(json!({
        "id": id,
        "category": {"id": 1, "name": "pets"},
        "name": name,
        "photoUrls": [],
        "tags": [],
        "status": status,
    }))
}

/// The Swagger petstore, as much of it as the CTK uses.
fn petstore(rest: &[&str], request: &RecordedRequest) -> Response {
    if request.method != "GET" {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET only").into_response();
    }
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            json!({"code": 1, "type": "error", "message": "Pet not found"}),
        )
    };
    match rest {
        ["findByStatus"] => {
            let wanted: Vec<String> = request
                .query
                .as_deref()
                .unwrap_or_default()
                .split('&')
                .filter_map(|pair| pair.strip_prefix("status="))
                .map(str::to_string)
                .collect();
            let pets: Vec<Value> = (1..=3)
                .filter_map(pet)
                .filter(|pet| {
                    pet["status"]
                        .as_str()
                        .is_some_and(|status| wanted.iter().any(|w| w == status))
                })
                .collect();
            json_response(StatusCode::OK, Value::Array(pets))
        }
        ["getPetByName", _name] => not_found(),
        [id] => match id.parse().ok().and_then(pet) {
            Some(pet) => json_response(StatusCode::OK, pet),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// The `/test/…` fixtures of the `call: http` tests.
async fn fixture(rest: &[&str], request: &RecordedRequest) -> Response {
    match rest {
        ["json"] => json_response(StatusCode::OK, json!({"id": 1, "name": "doggie"})),
        ["json-as-text"] => {
            ([(header::CONTENT_TYPE, "text/plain")], r#"{"a": [1, 2]}"#).into_response()
        }
        ["text"] => ([(header::CONTENT_TYPE, "text/plain")], "hello, world").into_response(),
        ["binary"] => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            vec![0u8, 159, 146, 150],
        )
            .into_response(),
        ["empty"] => StatusCode::NO_CONTENT.into_response(),
        ["missing"] => (StatusCode::NOT_FOUND, "no such thing here").into_response(),
        ["unavailable"] => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        ["redirect"] => redirect(StatusCode::FOUND, "/test/json"),
        ["see-other"] => redirect(StatusCode::SEE_OTHER, "/test/echo"),
        ["temporary-redirect"] => redirect(StatusCode::TEMPORARY_REDIRECT, "/test/echo"),
        // A redirect to `?to=<absolute URI>` (given unencoded).
        ["redirect-to"] => {
            let target = request
                .query
                .as_deref()
                .and_then(|query| query.strip_prefix("to="))
                .unwrap_or("/");
            redirect(StatusCode::TEMPORARY_REDIRECT, target)
        }
        ["redirect-loop"] => redirect(StatusCode::FOUND, "/test/redirect-loop"),
        ["echo"] => json_response(
            StatusCode::OK,
            json!({
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "headers": request.headers,
                "body": String::from_utf8_lossy(&request.body),
            }),
        ),
        // A body of `n` bytes with its length announced.
        ["bytes", n] => {
            let n: usize = n.parse().unwrap_or(0);
            ([(header::CONTENT_TYPE, "text/plain")], "x".repeat(n)).into_response()
        }
        // A body of `n` bytes in 1 KiB chunks, its length not announced.
        ["stream", n] => {
            let n: usize = n.parse().unwrap_or(0);
            let chunks: Vec<Result<Bytes, std::io::Error>> = (0..n)
                .step_by(1024)
                .map(|start| Ok(Bytes::from("x".repeat((n - start).min(1024)))))
                .collect();
            (
                [(header::CONTENT_TYPE, "text/plain")],
                Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response()
        }
        ["slow"] => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "finally".into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such fixture").into_response(),
    }
}

fn redirect(status: StatusCode, location: &str) -> Response {
    (status, [(header::LOCATION, location.to_string())]).into_response()
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
