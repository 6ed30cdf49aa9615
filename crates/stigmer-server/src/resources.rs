//! `ResourceService`: apply, get, list and delete over the store. Every store call runs on
//! the blocking pool, never on an async worker thread.

use crate::blocking::on_store;
use crate::error::{ServerError, resource_json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use stigmer_proto::resources::v1::resource_service_server::ResourceService;
use stigmer_proto::resources::v1::{
    ApplyRequest, ApplyResponse, ApplyResult, DeleteRequest, DeleteResponse, DocumentError,
    GetRequest, GetResponse, ListRequest, ListResponse,
};
use stigmer_resources::{
    Action, Kind, Lookup, LookupError, PlanError, Planned, Resource, plan_apply, referrers, suggest,
};
use stigmer_store::{Store, StoreError, StoreLookup};
use tonic::{Request, Response, Status};

/// The resource API over a store.
pub struct ResourceApi {
    store: Arc<dyn Store>,
    /// Applies are planned and written under this lock, so two concurrent applies cannot both
    /// decide from a state the other is about to change.
    apply_lock: Arc<tokio::sync::Mutex<()>>,
}

impl ResourceApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ResourceApi {
            store,
            apply_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

fn parse_kind(text: &str) -> Result<Kind, ServerError> {
    Kind::from_manifest(text)
        .or_else(|| Kind::from_cli(text))
        .ok_or_else(|| ServerError::UnknownKind {
            text: text.to_owned(),
        })
}

/// Sets its flag when dropped: the apply's future was dropped because its client has gone.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The plan's view of the store, failing once the apply is abandoned.
struct ApplyLookup<'a> {
    store: StoreLookup<'a>,
    abandoned: &'a AtomicBool,
}

impl Lookup for ApplyLookup<'_> {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, LookupError> {
        self.store.get(kind, name)
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, LookupError> {
        self.store.list(kind)
    }

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, LookupError> {
        self.store.contains(kind, name)
    }

    fn names(&self, kind: Kind) -> Result<Vec<String>, LookupError> {
        self.store.names(kind)
    }

    fn proceed(&self) -> Result<(), LookupError> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Err(LookupError::Abandoned);
        }
        Ok(())
    }
}

/// Plans an apply and, unless it is a dry run, writes what changed in one transaction.
fn plan_and_write(
    store: &dyn Store,
    resources: &[Resource],
    dry_run: bool,
    abandoned: &AtomicBool,
) -> Result<Result<Vec<Planned>, Vec<PlanError>>, ServerError> {
    let lookup = ApplyLookup {
        store: StoreLookup(store),
        abandoned,
    };
    let now = stigmer_resources::now();
    let planned = match plan_apply(resources, &lookup, &now) {
        Ok(Ok(planned)) => planned,
        Ok(Err(errors)) => return Ok(Err(errors)),
        Err(LookupError::Abandoned) => return Err(abandoned_status(resources.len())),
        Err(error) => return Err(ServerError::Lookup(error)),
    };
    if !dry_run {
        let changed: Vec<Resource> = planned
            .iter()
            .filter(|p| p.action != Action::Unchanged)
            .map(|p| p.resource.clone())
            .collect();
        if !changed.is_empty() {
            match store.put_all_unless(&changed, &|| abandoned.load(Ordering::Relaxed)) {
                Ok(()) => {}
                Err(StoreError::Abandoned) => return Err(abandoned_status(resources.len())),
                Err(error) => return Err(error.into()),
            }
        }
        tracing::info!(
            documents = planned.len(),
            changed = changed.len(),
            "Applied resources."
        );
    }
    Ok(Ok(planned))
}

fn abandoned_status(documents: usize) -> ServerError {
    tracing::warn!(
        documents,
        "Apply abandoned: its client went away before it finished; nothing was written."
    );
    ServerError::ApplyAbandoned
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
            let resource: Resource = serde_json::from_str(json)
                .map_err(|error| ServerError::NotAResource { index, error })?;
            if !resource.kind.is_declarable() {
                return Err(ServerError::NotDeclarable {
                    kind: resource.kind,
                }
                .into());
            }
            resources.push(resource);
        }
        // Planned and written on a blocking thread, holding the lock there: the RPC's future
        // is dropped when its client goes (a cancel, a deadline, a closed connection), and the
        // guard below then tells the work to stop between documents, so abandoned work neither
        // burns the CPU nor holds the lock.
        let guard = self.apply_lock.clone().lock_owned().await;
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
        let store = self.store.clone();
        let dry_run = request.dry_run;
        let work = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            plan_and_write(store.as_ref(), &resources, dry_run, &abandoned)
        });
        let planned = match work.await.map_err(ServerError::from)?? {
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
        let resource_json = on_store(&self.store, move |store| {
            match store.get(kind, &request.name)? {
                Some(resource) => resource_json(&resource.masked()),
                None => {
                    let names = store.names(kind)?;
                    Err(ServerError::ResourceNotFound {
                        kind,
                        suggestion: suggest(&request.name, names.iter().map(String::as_str))
                            .map(str::to_owned),
                        name: request.name,
                    })
                }
            }
        })
        .await?;
        Ok(Response::new(GetResponse { resource_json }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let kind = parse_kind(&request.into_inner().kind)?;
        let resources_json = on_store(&self.store, move |store| {
            store
                .list(kind)?
                .iter()
                .map(|resource| resource_json(&resource.masked()))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(ListResponse { resources_json }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let request = request.into_inner();
        let kind = parse_kind(&request.kind)?;
        // Held by the blocking work, like an apply's, so a dropped RPC frees it only after.
        let guard = self.apply_lock.clone().lock_owned().await;
        on_store(&self.store, move |store| {
            let _guard = guard;
            if store.get(kind, &request.name)?.is_none() {
                return Err(ServerError::ResourceNotFound {
                    kind,
                    name: request.name,
                    suggestion: None,
                });
            }
            if !request.force {
                let users = referrers(&StoreLookup(store), kind, &request.name)
                    .map_err(ServerError::Lookup)?;
                if !users.is_empty() {
                    return Err(ServerError::ResourceInUse {
                        kind,
                        name: request.name,
                        users,
                    });
                }
            }
            store.delete(kind, &request.name)?;
            tracing::info!(kind = %kind, name = %request.name, "Deleted resource.");
            Ok(())
        })
        .await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
