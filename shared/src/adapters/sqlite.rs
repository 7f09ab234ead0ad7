//! A SQLite [`ConditionalStore`] (rusqlite, bundled): the local stand-in for DynamoDB.
//!
//! Table `items(pk TEXT PRIMARY KEY, version INTEGER NOT NULL, value TEXT NOT NULL)`.
//! Conditional writes are single statements (`INSERT … ON CONFLICT DO NOTHING` for "must not
//! exist", `UPDATE … WHERE version = ?` otherwise), so several processes sharing one database
//! file get the same semantics as DynamoDB condition expressions. WAL mode and a busy timeout
//! let concurrent exporters share the file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::ports::{ConditionalStore, StoreError, Versioned};

/// A conditional store in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new("sqlite", e)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    ///
    /// Errors: the file cannot be opened or is not a scorecards state database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(err)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS items (
                pk TEXT PRIMARY KEY,
                version INTEGER NOT NULL,
                value TEXT NOT NULL
            );",
        )
        .map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| err("lock poisoned"))?;
            f(&conn)
        })
        .await
        .map_err(err)?
    }
}

#[async_trait]
impl ConditionalStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            let row: Option<(i64, String)> = conn
                .query_row(
                    "SELECT version, value FROM items WHERE pk = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            Ok(row.map(|(version, value)| Versioned {
                version: version as u64,
                value,
            }))
        })
        .await
    }

    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        _expires_at: Option<jiff::Timestamp>,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let text = value.to_owned();
        self.with_conn(move |conn| {
            let changed = match expected {
                None => conn.execute(
                    "INSERT INTO items (pk, version, value) VALUES (?1, 1, ?2)
                     ON CONFLICT(pk) DO NOTHING",
                    params![key, text],
                ),
                Some(v) => conn.execute(
                    "UPDATE items SET version = version + 1, value = ?2
                     WHERE pk = ?1 AND version = ?3",
                    params![key, text, v as i64],
                ),
            }
            .map_err(err)?;
            Ok(changed == 1)
        })
        .await
    }
}
