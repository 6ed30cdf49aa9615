//! Store calls on the blocking pool.
//!
//! SQLite blocks the calling thread (on the disk, on its lock), so an RPC never calls the store
//! on an async worker thread: a slow disk would then stall every other request that worker
//! serves. [`on_store`] runs a closure over the store on tokio's blocking pool instead.

use crate::error::ServerError;
use std::sync::Arc;
use stigmer_store::Store;

/// Runs `work` over `store` on the blocking pool and returns its result. The work runs to its
/// end even if the caller's future is dropped (its result is then discarded).
pub(crate) async fn on_store<T, E>(
    store: &Arc<dyn Store>,
    work: impl FnOnce(&dyn Store) -> Result<T, E> + Send + 'static,
) -> Result<T, ServerError>
where
    T: Send + 'static,
    E: Into<ServerError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await?
        .map_err(Into::into)
}
