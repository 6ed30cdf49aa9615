//! The SQLite [`Store`]: one file, WAL mode, a versioned schema migrated on open.

use crate::{MessagePlace, NewEvent, Store, StoreError, StoredEvent, StoredMessage};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use stigmer_resources::{Kind, Resource};

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: resources keyed by kind and name, the envelope as JSON.
    "CREATE TABLE resources (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID;",
    // 2: the append-only event log of executions.
    "CREATE TABLE events (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq),
        UNIQUE (execution_id, key)
    ) WITHOUT ROWID;",
    // 3: conversation messages, per session; `exec_order` orders the executions of a session.
    "CREATE TABLE messages (
        session_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        exec_order INTEGER NOT NULL,
        turn INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, turn, idx)
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_session ON messages (session_id, exec_order, turn, idx);",
    // 4: the same tables with rowids. In a WITHOUT ROWID table the whole row is the key, so a
    // big row (a 10 MB resource, a long tool output) sat in the b-tree's interior pages and
    // every lookup passing by it read it whole from its overflow pages: one big resource made
    // every apply slow. With rowids the keys are small and the data is read only when asked.
    "CREATE TABLE resources_v4 (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    INSERT INTO resources_v4 (kind, name, id, data) SELECT kind, name, id, data FROM resources;
    DROP TABLE resources;
    ALTER TABLE resources_v4 RENAME TO resources;
    CREATE TABLE events_v4 (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq),
        UNIQUE (execution_id, key)
    );
    INSERT INTO events_v4 (execution_id, seq, key, ts, kind, data)
        SELECT execution_id, seq, key, ts, kind, data FROM events;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE TABLE messages_v4 (
        session_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        exec_order INTEGER NOT NULL,
        turn INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, turn, idx)
    );
    INSERT INTO messages_v4 (session_id, execution_id, exec_order, turn, idx, data)
        SELECT session_id, execution_id, exec_order, turn, idx, data FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v4 RENAME TO messages;
    CREATE INDEX messages_by_session ON messages (session_id, exec_order, turn, idx);",
    // 5: pieces of an execution's own state (the tools its steps are offered), by key.
    "CREATE TABLE execution_state (
        execution_id TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, key)
    );",
];

/// Resources in a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating, mode 0600) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let backend = |error: rusqlite::Error| StoreError::Backend {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        if !path.exists() {
            create_private(path).map_err(|error| StoreError::Backend {
                path: path.display().to_string(),
                message: error.to_string(),
            })?;
        }
        let mut connection = Connection::open(path).map_err(backend)?;
        connection
            .pragma_update(None, "journal_mode", "wal")
            .map_err(backend)?;
        connection
            .pragma_update(None, "synchronous", "normal")
            .map_err(backend)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(backend)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                supported,
            });
        }
        let transaction = connection.transaction().map_err(backend)?;
        for migration in &MIGRATIONS[version as usize..] {
            transaction.execute_batch(migration).map_err(backend)?;
        }
        transaction
            .pragma_update(None, "user_version", supported)
            .map_err(backend)?;
        transaction.commit().map_err(backend)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    /// Opens the database at `path` only if it exists (for `get` and `apply --dry-run` when
    /// no daemon runs); `None` when there is none yet. It is opened for writing all the same:
    /// after a crash, SQLite must replay the write-ahead log before anyone can read, and a
    /// read-only connection cannot do that.
    pub fn open_if_exists(path: &Path) -> Result<Option<SqliteStore>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        SqliteStore::open(path).map(Some)
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn backend(&self, error: rusqlite::Error) -> StoreError {
        StoreError::Backend {
            path: self.path.display().to_string(),
            message: error.to_string(),
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

fn decode(data: &str) -> Result<Resource, StoreError> {
    serde_json::from_str(data).map_err(|error| StoreError::Corrupt(error.to_string()))
}

impl Store for SqliteStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError> {
        let data: Option<String> = self
            .connection()
            .query_row(
                "SELECT data FROM resources WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| self.backend(error))?;
        data.as_deref().map(decode).transpose()
    }

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        self.connection()
            .prepare_cached("SELECT 1 FROM resources WHERE kind = ?1 AND name = ?2")
            .and_then(|mut statement| statement.exists(params![kind.as_str(), name]))
            .map_err(|error| self.backend(error))
    }

    fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT name FROM resources WHERE kind = ?1 ORDER BY name")
            .map_err(|error| self.backend(error))?;
        let rows = statement
            .query_map(params![kind.as_str()], |row| row.get::<_, String>(0))
            .map_err(|error| self.backend(error))?;
        rows.collect::<Result<_, _>>()
            .map_err(|error| self.backend(error))
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT data FROM resources WHERE kind = ?1 ORDER BY name")
            .map_err(|error| self.backend(error))?;
        let rows = statement
            .query_map(params![kind.as_str()], |row| row.get::<_, String>(0))
            .map_err(|error| self.backend(error))?;
        let mut resources = Vec::new();
        for row in rows {
            resources.push(decode(&row.map_err(|error| self.backend(error))?)?);
        }
        Ok(resources)
    }

    fn put_all_unless(
        &self,
        resources: &[Resource],
        abandoned: &dyn Fn() -> bool,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection
            .transaction()
            .map_err(|error| self.backend(error))?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "INSERT INTO resources (kind, name, id, data) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, name) DO UPDATE SET id = excluded.id, data = excluded.data",
                )
                .map_err(|error| self.backend(error))?;
            for resource in resources {
                if abandoned() {
                    // Dropping the transaction rolls it back.
                    return Err(StoreError::Abandoned);
                }
                let data = serde_json::to_string(resource)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                let id = resource.metadata.id.clone().unwrap_or_default();
                statement
                    .execute(params![
                        resource.kind.as_str(),
                        resource.metadata.name,
                        id,
                        data
                    ])
                    .map_err(|error| self.backend(error))?;
            }
        }
        transaction.commit().map_err(|error| self.backend(error))
    }

    fn append_events(
        &self,
        execution_id: &str,
        events: &[NewEvent],
        ts: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.connection();
        let transaction = connection
            .transaction()
            .map_err(|error| self.backend(error))?;
        let mut stored = Vec::new();
        {
            let mut next: u64 = transaction
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE execution_id = ?1",
                    params![execution_id],
                    |row| row.get::<_, i64>(0),
                )
                .map_err(|error| self.backend(error))? as u64;
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO events (execution_id, seq, key, ts, kind, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (execution_id, key) DO NOTHING",
                )
                .map_err(|error| self.backend(error))?;
            for event in events {
                let inserted = insert
                    .execute(params![
                        execution_id,
                        (next + 1) as i64,
                        event.key,
                        ts,
                        event.kind,
                        event.data.to_string()
                    ])
                    .map_err(|error| self.backend(error))?;
                if inserted == 1 {
                    next += 1;
                    stored.push(StoredEvent {
                        execution_id: execution_id.to_owned(),
                        seq: next,
                        key: event.key.clone(),
                        ts: ts.to_owned(),
                        kind: event.kind.clone(),
                        data: event.data.clone(),
                    });
                }
            }
        }
        transaction.commit().map_err(|error| self.backend(error))?;
        Ok(stored)
    }

    fn events_after(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT seq, key, ts, kind, data FROM events
                 WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|error| self.backend(error))?;
        let rows = statement
            .query_map(
                params![execution_id, after_seq as i64, limit as i64],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                },
            )
            .map_err(|error| self.backend(error))?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, key, ts, kind, data) = row.map_err(|error| self.backend(error))?;
            events.push(StoredEvent {
                execution_id: execution_id.to_owned(),
                seq: seq as u64,
                key,
                ts,
                kind,
                data: serde_json::from_str(&data)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            });
        }
        Ok(events)
    }

    fn events_page(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT seq, key, ts, kind, data FROM events
                 WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|error| self.backend(error))?;
        let mut rows = statement
            .query(params![execution_id, after_seq as i64, limit as i64])
            .map_err(|error| self.backend(error))?;
        let mut events = Vec::new();
        let mut bytes = 0;
        // Rows are read one at a time, so the data past the bound is never loaded.
        while let Some(row) = rows.next().map_err(|error| self.backend(error))? {
            let read = |index| row.get::<_, String>(index);
            let (key, ts, kind, data) = (|| Ok((read(1)?, read(2)?, read(3)?, read(4)?)))()
                .map_err(|error| self.backend(error))?;
            bytes += crate::event_bytes(&key, &kind, &ts, &data);
            if bytes > max_bytes && !events.is_empty() {
                break;
            }
            events.push(StoredEvent {
                execution_id: execution_id.to_owned(),
                seq: row.get::<_, i64>(0).map_err(|error| self.backend(error))? as u64,
                key,
                ts,
                kind,
                data: serde_json::from_str(&data)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            });
        }
        Ok(events)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let removed = self
            .connection()
            .execute(
                "DELETE FROM resources WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
            )
            .map_err(|error| self.backend(error))?;
        Ok(removed > 0)
    }

    fn put_messages(
        &self,
        session_id: &str,
        execution_id: &str,
        turn: u32,
        first_index: u32,
        messages: &[serde_json::Value],
    ) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection
            .transaction()
            .map_err(|error| self.backend(error))?;
        {
            let order: i64 = transaction
                .query_row(
                    "SELECT COALESCE(
                        (SELECT exec_order FROM messages WHERE execution_id = ?1 LIMIT 1),
                        (SELECT COALESCE(MAX(exec_order), 0) + 1 FROM messages WHERE session_id = ?2))",
                    params![execution_id, session_id],
                    |row| row.get(0),
                )
                .map_err(|error| self.backend(error))?;
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO messages (session_id, execution_id, exec_order, turn, idx, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (execution_id, turn, idx) DO UPDATE SET data = excluded.data",
                )
                .map_err(|error| self.backend(error))?;
            for (offset, data) in messages.iter().enumerate() {
                insert
                    .execute(params![
                        session_id,
                        execution_id,
                        order,
                        turn,
                        first_index + offset as u32,
                        data.to_string()
                    ])
                    .map_err(|error| self.backend(error))?;
            }
        }
        transaction.commit().map_err(|error| self.backend(error))
    }

    fn session_messages(&self, session_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT execution_id, turn, idx, data FROM messages
                 WHERE session_id = ?1 ORDER BY exec_order, turn, idx",
            )
            .map_err(|error| self.backend(error))?;
        let rows = statement
            .query_map(params![session_id], message_row)
            .map_err(|error| self.backend(error))?;
        self.messages(rows)
    }

    fn execution_messages(
        &self,
        execution_id: &str,
        from: MessagePlace,
        through: MessagePlace,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(EXECUTION_MESSAGES)
            .map_err(|error| self.backend(error))?;
        let rows = statement
            .query_map(
                params![
                    execution_id,
                    from.turn,
                    from.index,
                    through.turn,
                    through.index
                ],
                message_row,
            )
            .map_err(|error| self.backend(error))?;
        self.messages(rows)
    }

    fn put_execution_state(
        &self,
        execution_id: &str,
        key: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.put_state(execution_id, key, data)
    }

    fn execution_state(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.state(execution_id, key)
    }
}

impl SqliteStore {
    fn put_state(
        &self,
        execution_id: &str,
        key: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.connection()
            .execute(
                "INSERT INTO execution_state (execution_id, key, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (execution_id, key) DO UPDATE SET data = excluded.data",
                params![execution_id, key, data.to_string()],
            )
            .map_err(|error| self.backend(error))?;
        Ok(())
    }

    fn state(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self
            .connection()
            .query_row(
                "SELECT data FROM execution_state WHERE execution_id = ?1 AND key = ?2",
                params![execution_id, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| self.backend(error))?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|error| StoreError::Backend {
                path: self.path.display().to_string(),
                message: format!("unreadable state {key} of {execution_id}: {error}"),
            })
        })
        .transpose()
    }
}

/// A range of one execution's messages: a search of the primary key (execution, turn,
/// index), so it reads only the rows in the range.
const EXECUTION_MESSAGES: &str = "SELECT execution_id, turn, idx, data FROM messages
     WHERE execution_id = ?1 AND (turn, idx) >= (?2, ?3) AND (turn, idx) <= (?4, ?5)
     ORDER BY turn, idx";

type MessageRow = (String, u32, u32, String);

fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

impl SqliteStore {
    fn messages(
        &self,
        rows: impl Iterator<Item = rusqlite::Result<MessageRow>>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut messages = Vec::new();
        for row in rows {
            let (execution_id, turn, index, data) = row.map_err(|error| self.backend(error))?;
            messages.push(StoredMessage {
                execution_id,
                turn,
                index,
                data: serde_json::from_str(&data)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            });
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps of a run read a range of their execution's messages: that must be a search of
    /// the primary key on (execution, turn, index), never a walk over the execution's or the
    /// session's messages.
    #[test]
    fn a_range_of_an_executions_messages_searches_the_key_by_turn_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("stigmer.db")).unwrap();
        let connection = store.connection();
        let plan: Vec<String> = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {EXECUTION_MESSAGES}"))
            .unwrap()
            .query_map(params!["aex-1", 1, 0, 1, 0], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH messages USING INDEX")
                && plan[0].contains("execution_id=? AND (turn,idx)>(?,?) AND (turn,idx)<(?,?)"),
            "{plan:?}"
        );
    }
}
