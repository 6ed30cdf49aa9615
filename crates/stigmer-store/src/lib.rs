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

use stigmer_resources::{Kind, Lookup, LookupError, Resource};

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
    #[error("the write was abandoned (its requester has gone); nothing was written")]
    Abandoned,
}

/// The bytes an event counts for in [`Store::events_page`].
pub fn event_bytes(key: &str, kind: &str, ts: &str, data: &str) -> usize {
    key.len() + kind.len() + ts.len() + data.len()
}

/// Where resources live.
pub trait Store: Send + Sync {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError>;
    /// Whether `(kind, name)` is stored, without loading it.
    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError>;
    /// All resources of `kind`, ordered by name.
    fn list(&self, kind: Kind) -> Result<Vec<Resource>, StoreError>;
    /// The names of the resources of `kind`, ordered, without loading them.
    fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError>;
    /// Writes all `resources` (insert or replace by kind and name) in one transaction.
    fn put_all(&self, resources: &[Resource]) -> Result<(), StoreError> {
        self.put_all_unless(resources, &|| false)
    }
    /// [`Store::put_all`] that checks `abandoned` between resources and, once it says so,
    /// writes nothing and fails with [`StoreError::Abandoned`] (an apply whose client has gone).
    fn put_all_unless(
        &self,
        resources: &[Resource],
        abandoned: &dyn Fn() -> bool,
    ) -> Result<(), StoreError>;
    /// Deletes one resource; false when there was none.
    fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError>;
    /// Appends events to an execution's log in one transaction, numbering them after the
    /// last stored one. An event whose `key` is already stored for that execution is skipped
    /// (a retried write). Returns the events actually stored, in order.
    fn append_events(
        &self,
        execution_id: &str,
        events: &[NewEvent],
        ts: &str,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Events of an execution with `seq > after_seq`, in order, at most `limit`.
    fn events_after(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Like [`Store::events_after`], but stops before `max_bytes` of event data (key, kind,
    /// time and data), so what one reader holds is bounded; the first event is returned
    /// whatever its size, so a reader always advances.
    fn events_page(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Stores conversation messages of one turn of an execution, at `first_index` and after,
    /// replacing what is stored at those places (a retried step writes the same places).
    fn put_messages(
        &self,
        session_id: &str,
        execution_id: &str,
        turn: u32,
        first_index: u32,
        messages: &[serde_json::Value],
    ) -> Result<(), StoreError>;
    /// The conversation of a session: executions in the order their first message was
    /// stored, each by turn and index.
    fn session_messages(&self, session_id: &str) -> Result<Vec<StoredMessage>, StoreError>;
    /// The messages of one execution from place `from` through place `through` (both
    /// included), by turn and index. It reads only that range, so what a step of a run reads
    /// does not grow with the run's length.
    fn execution_messages(
        &self,
        execution_id: &str,
        from: MessagePlace,
        through: MessagePlace,
    ) -> Result<Vec<StoredMessage>, StoreError>;
    /// Stores (replacing) a piece of an execution's own state under `key`, such as the tools
    /// its runs were offered.
    fn put_execution_state(
        &self,
        execution_id: &str,
        key: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// The piece of an execution's state under `key`, if any.
    fn execution_state(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError>;
}

/// Where a message sits in its execution's conversation: turn 0 is the user's message; in a
/// later turn, index 0 is the model's answer and the tool results follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessagePlace {
    pub turn: u32,
    pub index: u32,
}

impl MessagePlace {
    pub fn new(turn: u32, index: u32) -> MessagePlace {
        MessagePlace { turn, index }
    }

    /// The first place after this one; `None` after the last place there is.
    pub fn next(self) -> Option<MessagePlace> {
        match self.index.checked_add(1) {
            Some(index) => Some(MessagePlace::new(self.turn, index)),
            None => Some(MessagePlace::new(self.turn.checked_add(1)?, 0)),
        }
    }

    /// The last place of `turn`.
    pub fn end_of(turn: u32) -> MessagePlace {
        MessagePlace::new(turn, u32::MAX)
    }
}

/// One message of a session's conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub execution_id: String,
    pub turn: u32,
    pub index: u32,
    pub data: serde_json::Value,
}

impl StoredMessage {
    pub fn place(&self) -> MessagePlace {
        MessagePlace::new(self.turn, self.index)
    }
}

/// An event to append: an idempotency key chosen by the writer, a kind and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub key: String,
    pub kind: String,
    pub data: serde_json::Value,
}

/// An event in an execution's append-only log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub execution_id: String,
    /// 1, 2, 3, … per execution, without gaps.
    pub seq: u64,
    pub key: String,
    pub ts: String,
    pub kind: String,
    pub data: serde_json::Value,
}

/// Any store serves as the plan's lookup.
pub struct StoreLookup<'a>(pub &'a dyn Store);

/// A store failure met by a plan keeps the [`StoreError`] as its source.
impl From<StoreError> for LookupError {
    fn from(error: StoreError) -> Self {
        LookupError::store(error)
    }
}

impl Lookup for StoreLookup<'_> {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, LookupError> {
        Ok(self.0.get(kind, name)?)
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, LookupError> {
        Ok(self.0.list(kind)?)
    }

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, LookupError> {
        Ok(self.0.contains(kind, name)?)
    }

    fn names(&self, kind: Kind) -> Result<Vec<String>, LookupError> {
        Ok(self.0.names(kind)?)
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
        assert_eq!(store.names(Kind::Agent).unwrap(), ["a", "b"]);
        assert!(store.names(Kind::Skill).unwrap().is_empty());
        assert!(store.contains(Kind::Agent, "a").unwrap());
        assert!(!store.contains(Kind::Agent, "c").unwrap());
        assert!(!store.contains(Kind::Skill, "a").unwrap());
        // An abandoned write writes nothing, even what came before the check that stopped it.
        let checks = std::cell::Cell::new(0);
        let abandoned = store.put_all_unless(&[agent("c", "x"), agent("d", "y")], &|| {
            checks.set(checks.get() + 1);
            checks.get() > 1
        });
        assert!(
            matches!(abandoned, Err(StoreError::Abandoned)),
            "{abandoned:?}"
        );
        assert!(!store.contains(Kind::Agent, "c").unwrap());
        assert_eq!(store.names(Kind::Agent).unwrap(), ["a", "b"]);
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

    /// The event log behaviour every store must have.
    pub fn event_conformance(store: &dyn Store) {
        let event = |key: &str| NewEvent {
            key: key.into(),
            kind: "token_delta".into(),
            data: serde_json::json!({"text": key}),
        };
        let stored = store
            .append_events("aex-1", &[event("a"), event("b")], "t1")
            .unwrap();
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        // A retried write of "b" is skipped; "c" continues the numbering.
        let stored = store
            .append_events("aex-1", &[event("b"), event("c")], "t2")
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].seq, stored[0].key.as_str()), (3, "c"));
        // Executions are numbered independently.
        let other = store.append_events("aex-2", &[event("a")], "t3").unwrap();
        assert_eq!(other[0].seq, 1);
        let after = store.events_after("aex-1", 1, 10).unwrap();
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(after[1].data, serde_json::json!({"text": "c"}));
        assert_eq!(store.events_after("aex-1", 0, 1).unwrap().len(), 1);
        assert!(store.events_after("aex-9", 0, 10).unwrap().is_empty());
        // Pages bounded in bytes: at least one event, never past the bound after the first.
        let big = |key: &str| NewEvent {
            key: key.into(),
            kind: "tool_call_finished".into(),
            data: serde_json::json!({"output": "x".repeat(1000)}),
        };
        store
            .append_events("aex-5", &[big("1"), big("2"), big("3"), big("4")], "t4")
            .unwrap();
        let page = store.events_page("aex-5", 0, 10, 2500).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let page = store.events_page("aex-5", 2, 10, 10).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        let page = store.events_page("aex-5", 0, 3, usize::MAX).unwrap();
        assert_eq!(page.len(), 3);
        assert!(store.events_page("aex-5", 4, 10, 10).unwrap().is_empty());
    }

    /// The conversation behaviour every store must have.
    pub fn state_conformance(store: &dyn Store) {
        assert_eq!(store.execution_state("aex-1", "tools").unwrap(), None);
        store
            .put_execution_state("aex-1", "tools", &serde_json::json!({"v": 1}))
            .unwrap();
        store
            .put_execution_state("aex-2", "tools", &serde_json::json!({"v": 2}))
            .unwrap();
        store
            .put_execution_state("aex-1", "tools", &serde_json::json!({"v": 3}))
            .unwrap();
        assert_eq!(
            store.execution_state("aex-1", "tools").unwrap(),
            Some(serde_json::json!({"v": 3}))
        );
        assert_eq!(
            store.execution_state("aex-2", "tools").unwrap(),
            Some(serde_json::json!({"v": 2}))
        );
        assert_eq!(store.execution_state("aex-1", "other").unwrap(), None);
    }

    pub fn message_conformance(store: &dyn Store) {
        use serde_json::json;
        let text = |t: &str| json!({"role": "user", "text": t});
        store
            .put_messages("ses-1", "aex-1", 0, 0, &[text("first question")])
            .unwrap();
        store
            .put_messages("ses-1", "aex-1", 1, 0, &[text("answer"), text("tool")])
            .unwrap();
        // Another session does not mix in.
        store
            .put_messages("ses-2", "aex-3", 0, 0, &[text("elsewhere")])
            .unwrap();
        store
            .put_messages("ses-1", "aex-2", 0, 0, &[text("second question")])
            .unwrap();
        // A retried step rewrites its places instead of adding to them; a later turn of the
        // first execution still sorts before the second execution.
        store
            .put_messages("ses-1", "aex-1", 1, 1, &[text("tool, retried")])
            .unwrap();
        store
            .put_messages("ses-1", "aex-1", 2, 0, &[text("final")])
            .unwrap();
        let messages = store.session_messages("ses-1").unwrap();
        let seen: Vec<(&str, u32, u32, &str)> = messages
            .iter()
            .map(|m| {
                (
                    m.execution_id.as_str(),
                    m.turn,
                    m.index,
                    m.data["text"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("aex-1", 0, 0, "first question"),
                ("aex-1", 1, 0, "answer"),
                ("aex-1", 1, 1, "tool, retried"),
                ("aex-1", 2, 0, "final"),
                ("aex-2", 0, 0, "second question"),
            ]
        );
        assert!(store.session_messages("ses-9").unwrap().is_empty());
        // One execution's range, ends included; other executions do not mix in.
        let places = |from: (u32, u32), through: (u32, u32)| -> Vec<(u32, u32)> {
            store
                .execution_messages(
                    "aex-1",
                    MessagePlace::new(from.0, from.1),
                    MessagePlace::new(through.0, through.1),
                )
                .unwrap()
                .iter()
                .map(|m| (m.turn, m.index))
                .collect()
        };
        assert_eq!(
            places((0, 0), (u32::MAX, u32::MAX)),
            [(0, 0), (1, 0), (1, 1), (2, 0)]
        );
        assert_eq!(places((0, 1), (1, u32::MAX)), [(1, 0), (1, 1)]);
        assert_eq!(places((1, 1), (1, 1)), [(1, 1)]);
        assert_eq!(places((2, 1), (9, 0)), []);
        let answer = store
            .execution_messages("aex-1", MessagePlace::new(1, 0), MessagePlace::new(1, 0))
            .unwrap();
        assert_eq!(answer[0].data, text("answer"));
        assert_eq!(answer[0].place(), MessagePlace::new(1, 0));
        assert!(
            store
                .execution_messages("aex-9", MessagePlace::new(0, 0), MessagePlace::end_of(9))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn message_places_order_by_turn_then_index() {
        assert!(MessagePlace::new(1, 9) < MessagePlace::new(2, 0));
        assert_eq!(
            MessagePlace::new(1, 2).next(),
            Some(MessagePlace::new(1, 3))
        );
        assert_eq!(
            MessagePlace::end_of(1).next(),
            Some(MessagePlace::new(2, 0))
        );
        assert_eq!(MessagePlace::end_of(u32::MAX).next(), None);
    }

    #[test]
    fn memory_store_conforms() {
        conformance(&MemoryStore::default());
        event_conformance(&MemoryStore::default());
        message_conformance(&MemoryStore::default());
        state_conformance(&MemoryStore::default());
    }

    #[test]
    fn sqlite_store_conforms_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stigmer.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            conformance(&store);
            event_conformance(&store);
            message_conformance(&store);
            state_conformance(&store);
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
    fn an_older_schema_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stigmer.db");
        {
            // A version-1 store as the first release wrote it.
            let connection = rusqlite::Connection::open(&path).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE resources (kind TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL UNIQUE,
                     data TEXT NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;",
                )
                .unwrap();
            let data = serde_json::to_string(&agent("kept", "x")).unwrap();
            connection
                .execute(
                    "INSERT INTO resources VALUES ('Agent', 'kept', 'agt-kept', ?1)",
                    [data],
                )
                .unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.get(Kind::Agent, "kept").unwrap(),
            Some(agent("kept", "x"))
        );
        event_conformance(&store);
    }

    #[test]
    fn a_store_left_by_a_crash_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stigmer.db");
        assert!(SqliteStore::open_if_exists(&path).unwrap().is_none());
        let store = SqliteStore::open(&path).unwrap();
        store.put_all(&[agent("a", "one")]).unwrap();
        // Simulate a crash: the connection is never closed, so the WAL is not checkpointed.
        std::mem::forget(store);
        let reopened = SqliteStore::open_if_exists(&path).unwrap().unwrap();
        assert_eq!(
            reopened.get(Kind::Agent, "a").unwrap(),
            Some(agent("a", "one"))
        );
    }

    /// Plans and writes 1,000 small agents, as an apply does; returns how long it took.
    fn apply_small_agents(store: &dyn Store) -> std::time::Duration {
        let small: Vec<Resource> = (0..1000)
            .map(|i| {
                let mut resource = agent(&format!("a{i:04}"), "Answer briefly.");
                resource.metadata = Metadata {
                    name: resource.metadata.name,
                    ..Metadata::default()
                };
                resource
            })
            .collect();
        let started = std::time::Instant::now();
        let planned = stigmer_resources::plan_apply(&small, &StoreLookup(store), "now")
            .unwrap()
            .unwrap();
        let resources: Vec<Resource> = planned.into_iter().map(|p| p.resource).collect();
        store.put_all(&resources).unwrap();
        started.elapsed()
    }

    #[test]
    fn a_big_stored_resource_does_not_slow_down_an_apply_of_others() {
        let dir = tempfile::tempdir().unwrap();
        let without = {
            let store = SqliteStore::open(&dir.path().join("plain.db")).unwrap();
            apply_small_agents(&store)
        };
        let store = SqliteStore::open(&dir.path().join("big.db")).unwrap();
        // Named to sort among the small ones, where every lookup passes by it.
        store
            .put_all(&[agent("a0500-big", &"x".repeat(20 * 1024 * 1024))])
            .unwrap();
        let with = apply_small_agents(&store);
        // Before rowid tables, each of the 1,000 lookups read the 20 MB row whole: seconds.
        assert!(
            with <= without * 2 + std::time::Duration::from_millis(500),
            "with a 20 MB resource stored: {with:?}; without: {without:?}"
        );
        assert_eq!(store.names(Kind::Agent).unwrap().len(), 1001);
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
