//! `call: http` against a recording server on 127.0.0.1: output modes, error statuses,
//! redirects, authentication, secrets on the wire and in the output, the body cap, and
//! failures to connect or to answer in time.

mod support;

use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use stigmer_workflow::Problem;
use stigmer_workflow::http::{self, Authentication, HttpCall, HttpLimits, HttpOutput};
use stigmer_workflow::secrets::Secrets;
use support::TestServer;

const COMMUNICATION: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/communication";
const API_KEY: &str = "s3cr3t-api-key";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    http::client().expect("HTTP client")
}

fn secrets() -> Secrets {
    Secrets::new(BTreeMap::from([(
        "API_KEY".to_string(),
        API_KEY.to_string(),
    )]))
}

fn get(uri: String) -> HttpCall {
    HttpCall {
        method: "get".to_string(),
        uri,
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
        body: None,
        output: HttpOutput::Content,
        redirect: false,
        authentication: None,
    }
}

async fn execute(call: &HttpCall) -> Result<Value, Problem> {
    http::execute(&client(), call, &secrets(), HttpLimits::default()).await
}

fn detail(error: &Problem) -> &str {
    error.detail.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn content_output_parses_json_and_keeps_text() {
    let server = TestServer::start().await;
    let json = execute(&get(server.url("/test/json"))).await.unwrap();
    assert_eq!(json, json!({"id": 1, "name": "doggie"}));

    // A body that parses is JSON whatever its declared type.
    let json_as_text = execute(&get(server.url("/test/json-as-text")))
        .await
        .unwrap();
    assert_eq!(json_as_text, json!({"a": [1, 2]}));

    let text = execute(&get(server.url("/test/text"))).await.unwrap();
    assert_eq!(text, json!("hello, world"));

    let empty = execute(&get(server.url("/test/empty"))).await.unwrap();
    assert_eq!(empty, Value::Null);
}

#[tokio::test]
async fn response_output_has_request_status_headers_and_content() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/json"));
    call.output = HttpOutput::Response;
    call.query = BTreeMap::from([("status".to_string(), "available".to_string())]);
    call.headers = BTreeMap::from([("Accept".to_string(), "application/json".to_string())]);
    let output = execute(&call).await.unwrap();

    assert_eq!(output["request"]["method"], json!("GET"));
    assert_eq!(
        output["request"]["uri"],
        json!(server.url("/test/json?status=available"))
    );
    assert_eq!(
        output["request"]["headers"],
        json!({"accept": "application/json"})
    );
    assert_eq!(output["statusCode"], json!(200));
    assert_eq!(output["headers"]["content-type"], json!("application/json"));
    assert_eq!(output["content"], json!({"id": 1, "name": "doggie"}));
}

#[tokio::test]
async fn raw_output_is_the_body_in_base64() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/binary"));
    call.output = HttpOutput::Raw;
    let output = execute(&call).await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(output.as_str().expect("a base64 string"))
        .unwrap();
    assert_eq!(bytes, vec![0u8, 159, 146, 150]);

    let mut call = get(server.url("/test/text"));
    call.output = HttpOutput::Raw;
    let output = execute(&call).await.unwrap();
    assert_eq!(
        output,
        json!(base64::engine::general_purpose::STANDARD.encode("hello, world"))
    );
}

#[tokio::test]
async fn any_method_in_any_case_with_query_and_bodies() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/echo?fixed=1"));
    call.method = "pAtCh".to_string();
    call.query = BTreeMap::from([
        ("q".to_string(), "a b&c".to_string()),
        ("key".to_string(), "⟨secret:API_KEY⟩".to_string()),
    ]);
    call.body = Some(json!({"name": "doggie", "tags": [1, 2]}));
    let echo = execute(&call).await.unwrap();
    assert_eq!(echo["method"], json!("PATCH"));

    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.method, "PATCH");
    assert_eq!(
        sent.query.as_deref(),
        Some("fixed=1&key=s3cr3t-api-key&q=a+b%26c")
    );
    assert_eq!(sent.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body, json!({"name": "doggie", "tags": [1, 2]}));

    let mut call = get(server.url("/test/echo"));
    call.method = "post".to_string();
    call.body = Some(json!("plain text, key ⟨secret:API_KEY⟩"));
    let echo = execute(&call).await.unwrap();
    // The echoed secret is concealed again in the output…
    assert_eq!(echo["body"], json!("plain text, key ⟨secret:API_KEY⟩"));
    // …but was sent as its value.
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(sent.body, b"plain text, key s3cr3t-api-key");
}

#[tokio::test]
async fn an_explicit_content_type_wins() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/echo"));
    call.method = "PUT".to_string();
    call.headers = BTreeMap::from([(
        "Content-Type".to_string(),
        "application/merge-patch+json".to_string(),
    )]);
    call.body = Some(json!({"a": 1}));
    execute(&call).await.unwrap();
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.headers["content-type"], "application/merge-patch+json");
}

#[tokio::test]
async fn an_error_status_is_a_communication_error_with_that_status() {
    let server = TestServer::start().await;
    let error = execute(&get(server.url("/test/missing")))
        .await
        .unwrap_err();
    assert_eq!(error.kind, COMMUNICATION);
    assert_eq!(error.status, 404);
    assert!(error.title.is_some());
    assert_eq!(
        detail(&error),
        format!(
            "GET {} answered 404 Not Found: no such thing here",
            server.url("/test/missing")
        )
    );

    let error = execute(&get(server.url("/test/unavailable")))
        .await
        .unwrap_err();
    assert_eq!(error.status, 503);
}

#[tokio::test]
async fn secrets_in_the_uri_are_concealed_in_errors() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/missing?token=⟨secret:API_KEY⟩"));
    call.query = BTreeMap::from([("key".to_string(), "⟨secret:API_KEY⟩".to_string())]);
    let error = execute(&call).await.unwrap_err();
    assert_eq!(error.status, 404);
    assert!(!detail(&error).contains(API_KEY), "{error}");
    assert!(
        detail(&error).contains(&format!(
            "{}?token=⟨secret:API_KEY⟩&key=⟨secret:API_KEY⟩ answered",
            server.url("/test/missing")
        )),
        "{error}"
    );
    let sent = server.requests().pop().unwrap();
    assert_eq!(
        sent.query.as_deref(),
        Some("token=s3cr3t-api-key&key=s3cr3t-api-key")
    );
}

#[tokio::test]
async fn an_unknown_secret_is_an_authorization_error_before_sending() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/echo"));
    call.headers = BTreeMap::from([("X-Key".to_string(), "⟨secret:NOPE⟩".to_string())]);
    let error = execute(&call).await.unwrap_err();
    assert_eq!(error.status, 403);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn without_redirect_a_3xx_is_an_error_and_is_not_followed() {
    let server = TestServer::start().await;
    let error = execute(&get(server.url("/test/redirect")))
        .await
        .unwrap_err();
    assert_eq!(error.kind, COMMUNICATION);
    assert_eq!(error.status, 302);
    assert!(detail(&error).contains("302 Found"), "{error}");
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/test/redirect"]);
}

#[tokio::test]
async fn with_redirect_redirects_are_followed() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/redirect"));
    call.redirect = true;
    let output = execute(&call).await.unwrap();
    assert_eq!(output, json!({"id": 1, "name": "doggie"}));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/test/redirect", "/test/json"]);

    // 303 turns a POST into a GET without its body; 307 repeats it as it was.
    let mut call = get(server.url("/test/see-other"));
    call.method = "POST".to_string();
    call.body = Some(json!({"a": 1}));
    call.redirect = true;
    let echo = execute(&call).await.unwrap();
    assert_eq!(echo["method"], json!("GET"));
    assert_eq!(echo["body"], json!(""));

    call.uri = server.url("/test/temporary-redirect");
    let echo = execute(&call).await.unwrap();
    assert_eq!(echo["method"], json!("POST"));
    assert_eq!(echo["body"], json!(r#"{"a":1}"#));

    call.uri = server.url("/test/redirect-loop");
    let error = execute(&call).await.unwrap_err();
    assert_eq!(error.kind, COMMUNICATION);
    assert!(
        detail(&error).contains("redirected more than 10 times"),
        "{error}"
    );
}

#[tokio::test]
async fn credentials_and_secrets_do_not_follow_a_redirect_to_another_origin() {
    let server = TestServer::start().await;
    let elsewhere = TestServer::start().await;
    let mut call = get(server.url(&format!(
        "/test/redirect-to?to={}",
        elsewhere.url("/test/echo")
    )));
    call.redirect = true;
    call.headers = BTreeMap::from([
        ("X-Api-Key".to_string(), "⟨secret:API_KEY⟩".to_string()),
        ("X-Plain".to_string(), "plain".to_string()),
    ]);
    call.authentication = Some(Authentication::Bearer {
        token: "token".to_string(),
    });
    execute(&call).await.unwrap();

    let first = server.requests().pop().unwrap();
    assert_eq!(first.headers["x-api-key"], API_KEY);
    assert_eq!(first.headers["authorization"], "Bearer token");
    let second = elsewhere.requests().pop().unwrap();
    assert_eq!(second.path, "/test/echo");
    assert_eq!(second.headers["x-plain"], "plain");
    assert!(!second.headers.contains_key("x-api-key"));
    assert!(!second.headers.contains_key("authorization"));
}

#[tokio::test]
async fn a_client_that_follows_redirects_itself_is_refused() {
    let server = TestServer::start().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let following = reqwest::Client::new();
    let error = http::execute(
        &following,
        &get(server.url("/test/redirect")),
        &secrets(),
        HttpLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(detail(&error).contains("followed a redirect"), "{error}");
}

#[tokio::test]
async fn basic_authentication_sends_the_header() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/httpbin.org/basic-auth/user/⟨secret:API_KEY⟩"));
    call.output = HttpOutput::Response;
    call.authentication = Some(Authentication::Basic {
        username: "user".to_string(),
        password: "⟨secret:API_KEY⟩".to_string(),
    });
    let output = execute(&call).await.unwrap();
    assert_eq!(
        output["content"],
        json!({"authenticated": true, "user": "user"})
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("user:{API_KEY}"));
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.headers["authorization"], format!("Basic {expected}"));
    // The output shows neither the credentials nor the secret in the URI.
    assert_eq!(
        output["request"]["headers"]["authorization"],
        json!("Basic ***")
    );
    assert_eq!(
        output["request"]["uri"],
        json!(server.url("/httpbin.org/basic-auth/user/⟨secret:API_KEY⟩"))
    );

    call.authentication = Some(Authentication::Basic {
        username: "user".to_string(),
        password: "wrong".to_string(),
    });
    let error = execute(&call).await.unwrap_err();
    assert_eq!(error.status, 401);
}

#[tokio::test]
async fn bearer_authentication_sends_the_header() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/echo"));
    call.authentication = Some(Authentication::Bearer {
        token: "⟨secret:API_KEY⟩".to_string(),
    });
    let echo = execute(&call).await.unwrap();
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.headers["authorization"], format!("Bearer {API_KEY}"));
    // Echoed back, the token is concealed.
    assert_eq!(
        echo["headers"]["authorization"],
        json!("Bearer ⟨secret:API_KEY⟩")
    );
}

#[tokio::test]
async fn a_secret_header_is_revealed_on_the_wire_and_concealed_when_echoed() {
    let server = TestServer::start().await;
    let mut call = get(server.url("/test/echo"));
    call.output = HttpOutput::Response;
    call.headers = BTreeMap::from([("X-Api-Key".to_string(), "⟨secret:API_KEY⟩".to_string())]);
    let output = execute(&call).await.unwrap();

    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.headers["x-api-key"], API_KEY);
    assert_eq!(
        output["content"]["headers"]["x-api-key"],
        json!("⟨secret:API_KEY⟩")
    );
    assert_eq!(
        output["request"]["headers"]["x-api-key"],
        json!("⟨secret:API_KEY⟩")
    );
    assert!(!output.to_string().contains(API_KEY), "{output}");
}

#[tokio::test]
async fn a_body_over_the_cap_fails_the_call() {
    let server = TestServer::start().await;
    let limits = HttpLimits {
        body_cap: 4096,
        ..HttpLimits::default()
    };
    for path in ["/test/bytes/10000", "/test/stream/10000"] {
        let error = http::execute(&client(), &get(server.url(path)), &secrets(), limits)
            .await
            .unwrap_err();
        assert_eq!(error.kind, COMMUNICATION);
        assert_eq!(error.status, 502, "{path}");
        assert!(
            detail(&error).contains("larger than the cap of 4096 bytes"),
            "{error}"
        );
    }
    // At the cap exactly, the body is read.
    let output = http::execute(
        &client(),
        &get(server.url("/test/stream/4096")),
        &secrets(),
        limits,
    )
    .await
    .unwrap();
    assert_eq!(output.as_str().map(str::len), Some(4096));
}

#[tokio::test]
async fn a_refused_connection_is_a_communication_error() {
    let port = support::closed_port().await;
    let uri = format!("http://127.0.0.1:{port}/anything");
    let error = execute(&get(uri.clone())).await.unwrap_err();
    assert_eq!(error.kind, COMMUNICATION);
    assert_eq!(error.status, 500);
    assert!(
        detail(&error).starts_with(&format!("GET {uri} cannot connect: ")),
        "{error}"
    );
}

#[tokio::test]
async fn no_answer_in_time_is_a_communication_error_with_status_408() {
    let server = TestServer::start().await;
    let limits = HttpLimits {
        timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    };
    let error = http::execute(
        &client(),
        &get(server.url("/test/slow")),
        &secrets(),
        limits,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind, COMMUNICATION);
    assert_eq!(error.status, 408);
    assert!(detail(&error).contains("within 200ms"), "{error}");
}

#[tokio::test]
async fn a_bad_method_or_uri_is_a_configuration_error() {
    let mut call = get("http://127.0.0.1:1/".to_string());
    call.method = "GE T".to_string();
    assert_eq!(execute(&call).await.unwrap_err().status, 400);
    let call = get("not a uri".to_string());
    assert_eq!(execute(&call).await.unwrap_err().status, 400);
    let call = get("ftp://127.0.0.1/file".to_string());
    assert_eq!(execute(&call).await.unwrap_err().status, 400);
}

#[test]
fn the_call_keeps_its_camel_case_shape() {
    let call: HttpCall = serde_json::from_value(json!({
        "method": "get",
        "uri": "http://example.com",
        "output": "raw",
        "redirect": true,
        "authentication": {"bearer": {"token": "t"}},
    }))
    .unwrap();
    assert_eq!(call.output, HttpOutput::Raw);
    assert!(call.redirect);
    assert_eq!(
        call.authentication,
        Some(Authentication::Bearer {
            token: "t".to_string()
        })
    );
}
