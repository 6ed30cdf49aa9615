//! Embedded storage of resources behind the [`Store`] trait.
//!
//! [`SqliteStore`] keeps everything in one SQLite file in WAL mode (durable across restarts and
//! `kill -9`: a transaction is either in the file or not) with a versioned schema;
//! [`MemoryStore`] is the in-memory implementation tests and dry runs use. Both pass the same
//! conformance suite (`tests::conformance`).

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use stigmer_resources::{Kind, Lookup, Resource};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} failed: {message}")]
    Backend { path: String, message: String },
    #[error(
        "the store at {path} has schema version {found}, newer than this stigmer ({supported}); upgrade stigmer"
    )]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("a stored resource is corrupt: {0}")]
    Corrupt(String),
}

/// Where resources live.
pub trait Store: Send + Sync {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError>;
    /// All resources of `kind`, ordered by name.
    fn list(&self, kind: Kind) -> Result<Vec<Resource>, StoreError>;
    /// Writes all `resources` (insert or replace by kind and name) in one transaction.
    fn put_all(&self, resources: &[Resource]) -> Result<(), StoreError>;
    /// Deletes one resource; false when there was none.
    fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError>;
}

/// Any store serves as the plan's lookup.
pub struct StoreLookup<'a>(pub &'a dyn Store);

impl Lookup for StoreLookup<'_> {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, String> {
        self.0.get(kind, name).map_err(|error| error.to_string())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, String> {
        self.0.list(kind).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_resources::{API_VERSION, Metadata};

    fn agent(name: &str, instructions: &str) -> Resource {
        Resource {
            api_version: API_VERSION.into(),
            kind: Kind::Agent,
            metadata: Metadata {
                name: name.into(),
                id: Some(format!("agt-{name}")),
                generation: Some(1),
                ..Metadata::default()
            },
            spec: serde_json::json!({"instructions": instructions}),
            status: None,
        }
    }

    /// The behaviour every store must have.
    pub fn conformance(store: &dyn Store) {
        assert_eq!(store.get(Kind::Agent, "a").unwrap(), None);
        store
            .put_all(&[agent("b", "one"), agent("a", "two")])
            .unwrap();
        assert_eq!(
            store.get(Kind::Agent, "a").unwrap(),
            Some(agent("a", "two"))
        );
        let names: Vec<String> = store
            .list(Kind::Agent)
            .unwrap()
            .into_iter()
            .map(|r| r.metadata.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(store.list(Kind::Skill).unwrap().is_empty());
        // Replace by kind and name.
        store.put_all(&[agent("a", "three")]).unwrap();
        assert_eq!(
            store.get(Kind::Agent, "a").unwrap(),
            Some(agent("a", "three"))
        );
        assert_eq!(store.list(Kind::Agent).unwrap().len(), 2);
        assert!(store.delete(Kind::Agent, "a").unwrap());
        assert!(!store.delete(Kind::Agent, "a").unwrap());
        assert_eq!(store.get(Kind::Agent, "a").unwrap(), None);
    }

    #[test]
    fn memory_store_conforms() {
        conformance(&MemoryStore::default());
    }

    #[test]
    fn sqlite_store_conforms_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stigmer.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            conformance(&store);
        }
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(
            reopened.get(Kind::Agent, "b").unwrap(),
            Some(agent("b", "one"))
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the store must be private to its user");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stigmer.db");
        drop(SqliteStore::open(&path).unwrap());
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let error = SqliteStore::open(&path).err().unwrap();
        assert!(
            matches!(error, StoreError::TooNew { found: 99, .. }),
            "{error}"
        );
    }
}
