//! The HTTP side of the API server, on the same port as gRPC: JSON and Server-Sent Events for
//! the dashboard (and `curl`), and the dashboard's page and assets. Documented in
//! `docs/http-api.md`.
//!
//! Every route is a thin skin over what the gRPC services do: the handlers call the same
//! `ExecutionApi` methods (so the rules, errors and limits are those of gRPC) or read the store
//! on the blocking pool. Who may call is decided by `auth.rs`, before any handler runs.

mod auth;
mod events;
mod routes;
mod summary;

pub use summary::{Filter, Page, Summary};

use crate::DaemonControl;
use crate::error::ServerError;
use crate::executions::ExecutionApi;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use stigmer_store::Store;

/// What the HTTP routes need.
pub(crate) struct HttpContext {
    pub executions: ExecutionApi,
    pub store: Arc<dyn Store>,
    pub daemon: Arc<dyn DaemonControl>,
    /// The Temporal namespace executions run in, for links to Temporal's UI.
    pub namespace: Option<String>,
    pub auth: auth::Auth,
}

impl HttpContext {
    pub fn new(
        executions: ExecutionApi,
        store: Arc<dyn Store>,
        daemon: Arc<dyn DaemonControl>,
        namespace: Option<String>,
        token: &str,
        port: u16,
    ) -> HttpContext {
        HttpContext {
            executions,
            store,
            daemon,
            namespace,
            auth: auth::Auth::new(token, port),
        }
    }
}

type Context = State<Arc<HttpContext>>;

/// The HTTP routes, each behind the auth guard. Paths that are neither these nor a gRPC
/// service fall through to the gRPC router's answer.
pub(crate) fn router(context: HttpContext) -> Router {
    let context = Arc::new(context);
    Router::new()
        .route("/", get(routes::index))
        .route("/assets/{*path}", get(routes::asset))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::healthz))
        .route("/api/v1/status", get(routes::status))
        .route("/api/v1/executions", get(routes::list_executions))
        .route("/api/v1/executions/{id}", get(routes::get_execution))
        .route(
            "/api/v1/executions/{id}/events",
            get(events::execution_events),
        )
        .route("/api/v1/executions/{id}/logs", get(routes::execution_logs))
        .route("/api/v1/executions/{id}/cancel", post(routes::cancel))
        .route("/api/v1/executions/{id}/approve", post(routes::approve))
        .route("/api/v1/executions/{id}/deny", post(routes::deny))
        .route("/api/v1/stream/executions", get(events::execution_changes))
        .route("/api/v1/resources", get(routes::resource_kinds))
        .route("/api/v1/resources/{kind}", get(routes::list_resources))
        .route("/api/v1/resources/{kind}/{name}", get(routes::get_resource))
        .route("/api/v1/sessions", get(routes::list_sessions))
        .route("/api/v1/sessions/{id}", get(routes::get_session))
        .route(
            "/api/{*rest}",
            get(routes::no_such_route).post(routes::no_such_route),
        )
        .layer(middleware::from_fn_with_state(context.clone(), guard))
        .with_state(context)
}

/// The auth guard (see `auth.rs`), and the headers every answer carries: a strict
/// Content-Security-Policy (nothing but this server's own assets, no inline script), no
/// framing, no sniffing, no referrer.
async fn guard(State(context): Context, mut request: Request, next: Next) -> Response {
    // HTTP/2 carries the host as the URI's authority.
    if !request.headers().contains_key(header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let verdict = auth::judge(
        &context.auth,
        request.method(),
        request.uri().path(),
        request.uri().query(),
        request.headers(),
    );
    let mut response = match verdict {
        auth::Verdict::Allow => next.run(request).await,
        auth::Verdict::OpenSession { location } => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, location);
            }
            if let Ok(cookie) = HeaderValue::from_str(&context.auth.session_cookie()) {
                headers.insert(header::SET_COOKIE, cookie);
            }
            response
        }
        auth::Verdict::Refuse { status, message } => {
            tracing::debug!(path = request.uri().path(), %status, "HTTP request refused.");
            HttpError::new(status, refusal_code(status), message).into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn refusal_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        _ => "PERMISSION_DENIED",
    }
}

/// An HTTP error: its status and `{"error": {"code", "message"}}`, the code being the gRPC
/// code's name, so both APIs name a failure the same way.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> HttpError {
        use tonic::Code;
        let (http, code) = match status.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
            Code::Cancelled => (
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "CANCELLED",
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        HttpError::new(http, code, status.message())
    }
}

impl From<ServerError> for HttpError {
    fn from(error: ServerError) -> HttpError {
        HttpError::from(tonic::Status::from(error))
    }
}
