//! `ResourceService`: apply, get, list and delete over the store.

use std::sync::Arc;
use stigmer_proto::resources::v1::resource_service_server::ResourceService;
use stigmer_proto::resources::v1::{
    ApplyRequest, ApplyResponse, ApplyResult, DeleteRequest, DeleteResponse, DocumentError,
    GetRequest, GetResponse, ListRequest, ListResponse,
};
use stigmer_resources::{Kind, Resource, plan_apply, referrers, suggest};
use stigmer_store::{Store, StoreLookup};
use tonic::{Request, Response, Status};

/// The resource API over a store.
pub struct ResourceApi {
    store: Arc<dyn Store>,
    /// Applies are planned and written under this lock, so two concurrent applies cannot both
    /// decide from a state the other is about to change.
    apply_lock: tokio::sync::Mutex<()>,
}

impl ResourceApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ResourceApi {
            store,
            apply_lock: tokio::sync::Mutex::new(()),
        }
    }
}

fn parse_kind(text: &str) -> Result<Kind, Status> {
    Kind::from_manifest(text)
        .or_else(|| Kind::from_cli(text))
        .ok_or_else(|| Status::invalid_argument(format!("unknown kind {text:?}")))
}

fn store_error(error: impl std::fmt::Display) -> Status {
    tracing::error!(error = %error, "Store failure.");
    Status::internal(error.to_string())
}

fn to_json(resource: &Resource) -> Result<String, Status> {
    serde_json::to_string(resource).map_err(|error| Status::internal(error.to_string()))
}

#[tonic::async_trait]
impl ResourceService for ResourceApi {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let request = request.into_inner();
        let mut resources = Vec::with_capacity(request.resources_json.len());
        for (index, json) in request.resources_json.iter().enumerate() {
            let resource: Resource = serde_json::from_str(json).map_err(|error| {
                Status::invalid_argument(format!("document {index} is not a resource: {error}"))
            })?;
            if !resource.kind.is_declarable() {
                return Err(Status::invalid_argument(format!(
                    "{} resources are created by the system and cannot be applied",
                    resource.kind
                )));
            }
            resources.push(resource);
        }
        let _guard = self.apply_lock.lock().await;
        let now = stigmer_resources::now();
        let lookup = StoreLookup(self.store.as_ref());
        let planned = match plan_apply(&resources, &lookup, &now).map_err(store_error)? {
            Ok(planned) => planned,
            Err(errors) => {
                return Ok(Response::new(ApplyResponse {
                    results: Vec::new(),
                    errors: errors
                        .into_iter()
                        .map(|error| DocumentError {
                            index: error.index as u32,
                            path: error.path,
                            message: error.message,
                            other_index: error.other_index.map(|other| other as u32),
                        })
                        .collect(),
                }));
            }
        };
        if !request.dry_run {
            let changed: Vec<Resource> = planned
                .iter()
                .filter(|p| p.action != stigmer_resources::Action::Unchanged)
                .map(|p| p.resource.clone())
                .collect();
            if !changed.is_empty() {
                self.store.put_all(&changed).map_err(store_error)?;
            }
            tracing::info!(
                documents = planned.len(),
                changed = changed.len(),
                "Applied resources."
            );
        }
        Ok(Response::new(ApplyResponse {
            results: planned
                .iter()
                .map(|p| ApplyResult {
                    kind: p.resource.kind.as_str().to_owned(),
                    name: p.resource.metadata.name.clone(),
                    action: p.action.as_str().to_owned(),
                })
                .collect(),
            errors: Vec::new(),
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let request = request.into_inner();
        let kind = parse_kind(&request.kind)?;
        match self.store.get(kind, &request.name).map_err(store_error)? {
            Some(resource) => Ok(Response::new(GetResponse {
                resource_json: to_json(&resource.masked())?,
            })),
            None => {
                let names: Vec<String> = self
                    .store
                    .list(kind)
                    .map_err(store_error)?
                    .into_iter()
                    .map(|r| r.metadata.name)
                    .collect();
                let hint = suggest(&request.name, names.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                Err(Status::not_found(format!(
                    "{} \"{}\" not found{hint}",
                    kind.as_str().to_ascii_lowercase(),
                    request.name
                )))
            }
        }
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let kind = parse_kind(&request.into_inner().kind)?;
        let resources = self.store.list(kind).map_err(store_error)?;
        Ok(Response::new(ListResponse {
            resources_json: resources
                .iter()
                .map(|resource| to_json(&resource.masked()))
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let request = request.into_inner();
        let kind = parse_kind(&request.kind)?;
        let _guard = self.apply_lock.lock().await;
        if self
            .store
            .get(kind, &request.name)
            .map_err(store_error)?
            .is_none()
        {
            return Err(Status::not_found(format!(
                "{} \"{}\" not found",
                kind.as_str().to_ascii_lowercase(),
                request.name
            )));
        }
        if !request.force {
            let users = referrers(&StoreLookup(self.store.as_ref()), kind, &request.name)
                .map_err(store_error)?;
            if !users.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "{kind} \"{}\" is used by {}; change those first or delete with --force",
                    request.name,
                    users.join(", ")
                )));
            }
        }
        self.store
            .delete(kind, &request.name)
            .map_err(store_error)?;
        tracing::info!(kind = %kind, name = %request.name, "Deleted resource.");
        Ok(Response::new(DeleteResponse {}))
    }
}
