//! The JSON routes and the dashboard's files. Store reads run on the blocking pool; execution
//! actions go through the `ExecutionApi`, as gRPC calls do.

use super::summary::{self, DEFAULT_LIMIT, Filter};
use super::{Context, HttpError};
use crate::blocking::on_store;
use crate::error::ServerError;
use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use stigmer_proto::execution::ExecutionPhase;
use stigmer_proto::executions::v1::execution_service_server::ExecutionService;
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, DecideApprovalsRequest, GetExecutionRequest,
};
use stigmer_resources::{Kind, Resource};
use tonic::Request;

/// The dashboard's page.
pub async fn index() -> Response {
    asset_response(stigmer_dashboard::INDEX)
}

/// One of the dashboard's files.
pub async fn asset(Path(path): Path<String>) -> Response {
    asset_response(&path)
}

fn asset_response(path: &str) -> Response {
    match stigmer_dashboard::asset(path) {
        Some(asset) => {
            let mut response = asset.bytes.into_owned().into_response();
            if let Ok(mime) = HeaderValue::from_str(&asset.mime) {
                response.headers_mut().insert(header::CONTENT_TYPE, mime);
            }
            response
        }
        None => HttpError::not_found(format!("no such file: /assets/{path}")).into_response(),
    }
}

/// Liveness and readiness: the server answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn no_such_route() -> HttpError {
    HttpError::not_found("no such route: the routes are listed in docs/http-api.md")
}

/// The daemon's status: components, restarts, problems, Temporal's UI.
pub async fn status(context: Context) -> Json<Value> {
    let status = context.daemon.status();
    let components: Vec<Value> = status
        .components
        .iter()
        .map(|component| {
            json!({
                "name": component.name,
                "state": component.state().label(),
                "pid": component.pid,
                "containerId": component.container_id,
                "mode": component.mode,
                "restarts": component.restarts,
                "uptimeSecs": component.uptime_secs,
                "lastExit": component.last_exit,
                "endpoint": component.endpoint,
            })
        })
        .collect();
    Json(json!({
        "daemonPid": status.daemon_pid,
        "home": status.home,
        "version": status.version,
        "uptimeSecs": status.daemon_uptime_secs,
        "temporalUi": status.temporal_ui,
        "temporalNamespace": context.namespace,
        "problems": status.problems,
        "components": components,
    }))
}

/// The query of the executions list.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    kind: Option<String>,
    /// Phases, comma-separated.
    phase: Option<String>,
    agent: Option<String>,
    workflow: Option<String>,
    q: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

impl ListQuery {
    fn filter(&self) -> Result<Filter, HttpError> {
        let given = |value: &Option<String>| value.clone().filter(|text| !text.trim().is_empty());
        let kind = given(&self.kind);
        if let Some(kind) = &kind
            && kind != "agent"
            && kind != "workflow"
        {
            return Err(HttpError::bad_request(format!(
                "unknown kind {kind:?}: use agent or workflow"
            )));
        }
        let mut phases = Vec::new();
        for text in given(&self.phase).iter().flat_map(|text| text.split(',')) {
            let phase: ExecutionPhase = text.trim().parse().map_err(|_| {
                HttpError::bad_request(format!(
                    "unknown phase {text:?}: use pending, running, waiting, completed, failed \
                     or cancelled"
                ))
            })?;
            phases.push(phase);
        }
        Ok(Filter {
            kind,
            phases,
            agent: given(&self.agent),
            workflow: given(&self.workflow),
            text: given(&self.q),
        })
    }
}

/// A page of executions, newest first.
pub async fn list_executions(
    context: Context,
    Query(query): Query<ListQuery>,
) -> Result<Json<summary::Page>, HttpError> {
    let filter = query.filter()?;
    let before = query.before.clone();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let page = on_store(&context.store, move |store| {
        let now = stigmer_resources::now();
        let mut rows = Vec::new();
        for (kind, name) in [
            (Kind::AgentExecution, "agent"),
            (Kind::WorkflowExecution, "workflow"),
        ] {
            if filter.kind.as_deref().is_some_and(|wanted| wanted != name) {
                continue;
            }
            rows.extend(
                store
                    .list(kind)?
                    .iter()
                    .filter_map(|resource| summary::summarize(resource, &now)),
            );
        }
        Ok::<_, ServerError>(summary::page(rows, &filter, before.as_deref(), limit))
    })
    .await?;
    Ok(Json(page))
}

/// One execution, its row and the link to its history in Temporal's UI.
pub async fn get_execution(
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let execution = execution(&context, &id).await?;
    let summary = summary::summarize(&execution, &stigmer_resources::now());
    let temporal_url = match (&context.daemon.status().temporal_ui, &context.namespace) {
        (Some(ui), Some(namespace)) => Some(format!(
            "{}/namespaces/{namespace}/workflows/{id}",
            ui.trim_end_matches('/')
        )),
        _ => None,
    };
    Ok(Json(json!({
        "execution": execution,
        "summary": summary,
        "temporalUrl": temporal_url,
    })))
}

pub(super) async fn execution(context: &Context, id: &str) -> Result<Resource, HttpError> {
    let response = context
        .executions
        .get_execution(Request::new(GetExecutionRequest {
            execution_id: id.to_owned(),
        }))
        .await?;
    serde_json::from_str(&response.into_inner().execution_json)
        .map_err(|error| HttpError::from(ServerError::Encode(error)))
}

/// The log lines of every component that name this execution, oldest first (the last 1,000).
pub async fn execution_logs(
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    use stigmer_config::{Component, StigmerHome};
    use stigmer_logs::read::{Filter as LogFilter, LogSet, Source, Tail};
    execution(&context, &id).await?;
    let home = StigmerHome::new(context.daemon.status().home);
    let lines = tokio::task::spawn_blocking(move || {
        let sources: Vec<Source> = Component::ALL
            .iter()
            .map(|component| Source {
                component: component.name().to_owned(),
                path: home.log_file(*component),
            })
            .collect();
        let names: Vec<String> = sources.iter().map(|s| s.component.clone()).collect();
        let set = LogSet::open(sources)?;
        let filter = LogFilter {
            execution: Some(id),
            ..LogFilter::default()
        };
        let mut lines = Vec::new();
        set.history(&filter, Tail::Last(1000), |line| {
            let component = names.get(line.source).map(String::as_str).unwrap_or("");
            let record = line.record(component);
            lines.push(json!({
                "ts": stigmer_logs::format_ts(record.ts),
                "component": record.component,
                "level": record.level.as_str(),
                "message": record.message,
                "fields": record.fields,
            }));
            Ok(())
        })?;
        Ok::<_, std::io::Error>(lines)
    })
    .await
    .map_err(|error| HttpError::from(ServerError::from(error)))?
    .map_err(|error| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("cannot read the logs: {error}"),
        )
    })?;
    Ok(Json(json!({ "lines": lines })))
}

pub async fn cancel(context: Context, Path(id): Path<String>) -> Result<Json<Value>, HttpError> {
    context
        .executions
        .cancel_execution(Request::new(CancelExecutionRequest { execution_id: id }))
        .await?;
    Ok(Json(json!({})))
}

/// The body of approve and deny.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    calls: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    message: Option<String>,
}

pub async fn approve(
    context: Context,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Result<Json<Value>, HttpError> {
    decide(context, id, body, true).await
}

pub async fn deny(
    context: Context,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Result<Json<Value>, HttpError> {
    decide(context, id, body, false).await
}

async fn decide(
    context: Context,
    execution_id: String,
    body: Option<Json<Decision>>,
    approve: bool,
) -> Result<Json<Value>, HttpError> {
    let Json(decision) = body.ok_or_else(|| {
        HttpError::bad_request(r#"send a JSON body: {"calls": ["call_1"]} or {"all": true}"#)
    })?;
    let response = context
        .executions
        .decide_approvals(Request::new(DecideApprovalsRequest {
            execution_id,
            call_ids: decision.calls,
            all: decision.all,
            approve,
            message: decision.message.unwrap_or_default(),
        }))
        .await?;
    Ok(Json(json!({ "decided": response.into_inner().call_ids })))
}

fn kind_of(text: &str) -> Result<Kind, HttpError> {
    let kind = Kind::from_cli(text).or_else(|| Kind::from_manifest(text));
    kind.ok_or_else(|| {
        let hint = Kind::suggest_cli(text)
            .map(|name| format!(" (did you mean {name}?)"))
            .unwrap_or_default();
        HttpError::not_found(format!("unknown kind {text:?}{hint}"))
    })
}

/// The kinds a user declares, with how many of each are stored.
pub async fn resource_kinds(context: Context) -> Result<Json<Value>, HttpError> {
    let kinds = on_store(&context.store, |store| {
        let mut kinds = Vec::new();
        for kind in Kind::ALL.into_iter().filter(|kind| kind.is_declarable()) {
            kinds.push(json!({
                "kind": kind.as_str(),
                "plural": kind.cli_names().last().copied().unwrap_or_default(),
                "count": store.names(kind)?.len(),
            }));
        }
        Ok::<_, ServerError>(kinds)
    })
    .await?;
    Ok(Json(json!({ "kinds": kinds })))
}

/// Every resource of a kind a user declares, secrets masked.
pub async fn list_resources(
    context: Context,
    Path(kind): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let kind = declarable(&kind)?;
    let items = on_store(&context.store, move |store| {
        Ok::<_, ServerError>(
            store
                .list(kind)?
                .iter()
                .map(Resource::masked)
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    Ok(Json(json!({ "items": items })))
}

fn declarable(text: &str) -> Result<Kind, HttpError> {
    let kind = kind_of(text)?;
    match kind {
        Kind::AgentExecution | Kind::WorkflowExecution => Err(HttpError::bad_request(
            "executions are listed by /api/v1/executions",
        )),
        Kind::Session => Err(HttpError::bad_request(
            "sessions are listed by /api/v1/sessions",
        )),
        kind => Ok(kind),
    }
}

/// One resource, secrets masked, and its YAML.
pub async fn get_resource(
    context: Context,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<Value>, HttpError> {
    let kind = declarable(&kind)?;
    let wanted = name.clone();
    let found = on_store(&context.store, move |store| store.get(kind, &wanted)).await?;
    let resource = found
        .map(|resource| resource.masked())
        .ok_or_else(|| HttpError::not_found(format!("{} {name:?} not found", kind.as_str())))?;
    let yaml = serde_yaml_ng::to_string(&resource).unwrap_or_default();
    Ok(Json(json!({ "resource": resource, "yaml": yaml })))
}

/// The query of the sessions list.
#[derive(Debug, Default, Deserialize)]
pub struct SessionQuery {
    before: Option<String>,
    limit: Option<usize>,
}

/// Sessions, newest first, a page at a time.
pub async fn list_sessions(
    context: Context,
    Query(query): Query<SessionQuery>,
) -> Result<Json<Value>, HttpError> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, summary::MAX_LIMIT);
    let mut sessions = on_store(&context.store, |store| store.list(Kind::Session)).await?;
    sessions.sort_unstable_by(|a, b| {
        (&b.metadata.created_at, &b.metadata.name).cmp(&(&a.metadata.created_at, &a.metadata.name))
    });
    let cursor = |session: &Resource| {
        format!(
            "{}|{}",
            session.metadata.created_at.as_deref().unwrap_or_default(),
            session.metadata.name
        )
    };
    let start = match &query.before {
        Some(before) => sessions.partition_point(|session| cursor(session) >= *before),
        None => 0,
    };
    let rest = &sessions[start.min(sessions.len())..];
    let items: Vec<Value> = rest
        .iter()
        .take(limit)
        .map(|session| {
            json!({
                "id": session.metadata.name,
                "agent": session.spec["agent"],
                "createdAt": session.metadata.created_at,
                "updatedAt": session.metadata.updated_at,
            })
        })
        .collect();
    let next = (rest.len() > limit).then(|| cursor(&rest[limit - 1]));
    Ok(Json(json!({ "items": items, "next": next })))
}

/// A session and its conversation.
pub async fn get_session(
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let wanted = id.clone();
    let (session, messages) = on_store(&context.store, move |store| {
        let session = store.get(Kind::Session, &wanted)?;
        let messages = match &session {
            Some(_) => store.session_messages(&wanted)?,
            None => Vec::new(),
        };
        Ok::<_, ServerError>((session, messages))
    })
    .await?;
    let session =
        session.ok_or_else(|| HttpError::not_found(format!("session {id:?} not found")))?;
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|message| {
            json!({
                "executionId": message.execution_id,
                "turn": message.turn,
                "index": message.index,
                "message": message.data,
            })
        })
        .collect();
    Ok(Json(json!({ "session": session, "messages": messages })))
}
