//! The HTTP API on the gRPC port: who may call it, the event stream's resume contract, the
//! executions list and its change stream.

use super::{TOKEN, client, event, server, server_with_resources, terminal};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};
use std::time::Duration;
use stigmer_proto::executions::v1::AppendEventsRequest;

/// A client that follows no redirect and keeps no cookie: each test says what it sends.
fn http() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own (plain HTTP here needs none).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn append(
    server: &super::Server,
    execution: &str,
    events: Vec<stigmer_proto::executions::v1::NewEvent>,
) {
    client(server)
        .await
        .append_events(AppendEventsRequest {
            execution_id: execution.into(),
            events,
        })
        .await
        .unwrap();
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn the_token_becomes_a_session_cookie_and_everything_else_is_refused() {
    let server = server().await;
    let base = format!("http://{}", server.address);
    let http = http();

    // No credentials, a wrong token, a wrong bearer: 401.
    let response = http
        .get(format!("{base}/api/v1/executions"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into())
    );
    let response = http
        .get(format!("{base}/?token=wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = http
        .get(format!("{base}/api/v1/executions"))
        .header(header::AUTHORIZATION, "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The token: a cookie, and the same address without the token.
    let response = http
        .get(format!("{base}/?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let set_cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.starts_with("stigmer_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(
        !set_cookie.contains(TOKEN),
        "the cookie is not the token: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // The cookie opens the page and the API; the page is locked down.
    let response = http
        .get(format!("{base}/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let response = http
        .get(format!("{base}/api/v1/executions"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Another Host (DNS rebinding), even with the cookie: 403.
    let response = http
        .get(format!("{base}/api/v1/executions"))
        .header(
            header::HOST,
            format!(
                "evil.example:{}",
                server.address.rsplit(':').next().unwrap()
            ),
        )
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED".into())
    );

    // A change from another origin, or from a cookie without an origin: 403.
    let cancel = format!("{base}/api/v1/executions/aex-1/cancel");
    let response = http
        .post(&cancel)
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = http
        .post(&cancel)
        .header(header::COOKIE, &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // From its own origin it reaches the handler (which needs Temporal, absent here).
    let response = http
        .post(&cancel)
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &base)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE".into())
    );

    // Liveness needs no credentials; an unknown API route is a JSON 404.
    let response = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = http
        .get(format!("{base}/api/v1/nothing"))
        .header(header::AUTHORIZATION, bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );

    // gRPC still answers on the same port.
    client(&server).await;
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Reads Server-Sent Events from a streaming response.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(url: &str, headers: HeaderMap) -> SseReader {
        let response = http()
            .get(url)
            .headers(headers)
            .header(header::AUTHORIZATION, bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse::default();
                let mut any = false;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        sse.id = Some(value.trim().into());
                        any = true;
                    } else if let Some(value) = line.strip_prefix("event:") {
                        sse.event = Some(value.trim().into());
                        any = true;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        sse.data.push_str(value.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(sse);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn seqs(&mut self, count: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.len() < count {
            let sse = self.next().await.expect("more events");
            let data: Value = serde_json::from_str(&sse.data).unwrap();
            assert_eq!(sse.id.as_deref(), Some(data["seq"].to_string().as_str()));
            assert_eq!(data["execution_id"], "aex-1");
            seqs.push(data["seq"].as_u64().unwrap());
        }
        seqs
    }
}

#[tokio::test]
async fn a_reconnecting_event_stream_resumes_after_last_event_id() {
    let server = server().await;
    append(
        &server,
        "aex-1",
        (1..=5).map(|n| event(&format!("e{n}"))).collect(),
    )
    .await;
    let url = format!("http://{}/api/v1/executions/aex-1/events", server.address);

    let mut first = SseReader::open(&url, HeaderMap::new()).await;
    assert_eq!(first.seqs(5).await, vec![1, 2, 3, 4, 5]);
    drop(first);

    // As a browser reconnects: after the last id it saw, then live.
    let mut headers = HeaderMap::new();
    headers.insert("last-event-id", "3".parse().unwrap());
    let mut again = SseReader::open(&url, headers).await;
    assert_eq!(again.seqs(2).await, vec![4, 5]);
    append(&server, "aex-1", vec![event("e6")]).await;
    assert_eq!(again.seqs(1).await, vec![6]);
    append(&server, "aex-1", vec![terminal("done")]).await;
    assert_eq!(again.seqs(1).await, vec![7]);
    let end = again.next().await.unwrap();
    assert_eq!(end.event.as_deref(), Some("end"));
    assert_eq!(again.next().await, None, "the stream closes after `end`");

    // After the end: what is left, then `end` at once.
    let mut headers = HeaderMap::new();
    headers.insert("last-event-id", "6".parse().unwrap());
    let mut late = SseReader::open(&url, headers).await;
    assert_eq!(late.seqs(1).await, vec![7]);
    assert_eq!(late.next().await.unwrap().event.as_deref(), Some("end"));
    let mut headers = HeaderMap::new();
    headers.insert("last-event-id", "7".parse().unwrap());
    let mut done = SseReader::open(&url, headers).await;
    assert_eq!(done.next().await.unwrap().event.as_deref(), Some("end"));

    // A Last-Event-ID that is not a seq is refused.
    let response = http()
        .get(&url)
        .header(header::AUTHORIZATION, bearer())
        .header("last-event-id", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

fn execution(id: &str, created: &str, agent: &str, phase: &str) -> stigmer_resources::Resource {
    serde_json::from_value(json!({
        "apiVersion": stigmer_resources::API_VERSION,
        "kind": "AgentExecution",
        "metadata": {"name": id, "id": id, "createdAt": created},
        "spec": {"agent": agent, "session": "ses-1", "message": format!("task {id}")},
        "status": {"phase": phase},
    }))
    .unwrap()
}

#[tokio::test]
async fn the_executions_list_pages_filters_and_streams_changes() {
    let executions: Vec<_> = (0..30)
        .map(|n| {
            execution(
                &format!("aex-list-{n:02}"),
                &format!("2026-12-01T10:00:{n:02}.000Z"),
                if n % 2 == 0 { "even" } else { "odd" },
                if n % 3 == 0 { "failed" } else { "completed" },
            )
        })
        .collect();
    let server = server_with_resources(None, executions).await;
    let base = format!("http://{}/api/v1/executions", server.address);
    let get = |query: String| {
        let url = format!("{base}?{query}");
        async move {
            let response = http()
                .get(url)
                .header(header::AUTHORIZATION, bearer())
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };

    let (_, page) = get("agent=even&phase=failed,completed&limit=4".into()).await;
    assert_eq!(page["total"], 15);
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["aex-list-28", "aex-list-26", "aex-list-24", "aex-list-22"]
    );
    let (_, next) = get(format!(
        "agent=even&limit=4&before={}",
        page["next"].as_str().unwrap()
    ))
    .await;
    assert_eq!(next["items"][0]["id"], "aex-list-20");
    let (_, failed) = get("phase=failed&q=LIST-2".into()).await;
    let ids: Vec<&str> = failed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["aex-list-27", "aex-list-24", "aex-list-21"]);
    assert_eq!(failed["items"][0]["message"], "task aex-list-27");
    let (status, refused) = get("phase=sleeping".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sleeping")
    );

    // A change to an execution reaches the list stream as its row.
    let mut changes = SseReader::open(
        &format!("http://{}/api/v1/stream/executions", server.address),
        HeaderMap::new(),
    )
    .await;
    append(&server, "aex-2", vec![event("x")]).await;
    let change = changes.next().await.unwrap();
    assert_eq!(change.event.as_deref(), Some("execution"));
    let row: Value = serde_json::from_str(&change.data).unwrap();
    assert_eq!(row["id"], "aex-2");
    assert_eq!(row["kind"], "agent");
}

#[tokio::test]
async fn resources_are_shown_masked_with_their_yaml() {
    let secret: stigmer_resources::Resource = serde_json::from_value(json!({
        "apiVersion": stigmer_resources::API_VERSION,
        "kind": "Environment",
        "metadata": {"name": "prod"},
        "spec": {"variables": {"API_KEY": {"value": "sk-very-secret", "secret": true}}},
    }))
    .unwrap();
    let server = server_with_resources(None, vec![secret]).await;
    let base = format!("http://{}/api/v1/resources", server.address);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let response = http()
                .get(url)
                .header(header::AUTHORIZATION, bearer())
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let (_, kinds) = get("").await;
    let kinds: Value = serde_json::from_str(&kinds).unwrap();
    let agents = kinds["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kind| kind["kind"] == "Agent")
        .unwrap();
    assert_eq!(agents["count"], 1);
    let (_, agent) = get("/agents/hello").await;
    let agent: Value = serde_json::from_str(&agent).unwrap();
    assert!(
        agent["yaml"]
            .as_str()
            .unwrap()
            .contains("instructions: Say hello.")
    );
    let (status, environment) = get("/environment/prod").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!environment.contains("sk-very-secret"), "{environment}");
    let (status, _) = get("/agent/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, unknown) = get("/agnet").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(unknown.contains("did you mean"), "{unknown}");
}
