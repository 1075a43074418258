//! The SQLite event store: the embedded default.
//!
//! Appends run in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock
//! before the version check, so the check and the insert cannot race with another writer
//! (another pool or another process on the same file). Within one process appends also
//! queue on an async mutex, so that they wait in line instead of spinning in SQLite's busy
//! handler. Because there is one writer at a time, positions commit in increasing order
//! and a subscriber can never skip one.
//!
//! The append's checks, sealing and bookkeeping, the reads and the subscription are the
//! shared SQL core's (`store::sql`); this file holds the SQLite statements
//! (`sql/sqlite/*.sql`), the write lock, and SQLite's column types: ids, JSON and
//! timestamps are stored as text (RFC 3339 with microseconds, as the chain hashes them).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::chain;
use domain::store::{AppendOutcome, AppendRequest, RecordedEvent, StoreError};
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use tokio::sync::Mutex;

use super::codec::{self, RawEvent, SealedEvent, TypedColumns, column};
use super::sql::{Backend, InsertError, Inserted, SqlEventStore};

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle subscription looks for events appended by other processes (appends
/// through this store wake subscriptions at once): slow, so that an idle node sleeps.
const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// An [`EventStore`](domain::store::EventStore) on a SQLite file (WAL mode). Cheap to
/// clone: clones share the pool.
pub type SqliteEventStore = SqlEventStore<SqliteBackend>;

/// The SQLite back end of the SQL event store: what it keeps beyond the shared core.
#[derive(Clone)]
pub struct SqliteBackend {
    /// Serialises this process's appends (SQLite allows one writer at a time anyway).
    write_lock: Arc<Mutex<()>>,
}

impl SqlEventStore<SqliteBackend> {
    /// Opens (creating if missing) the SQLite database at `url`, e.g.
    /// `sqlite://keyledger.db` or `sqlite::memory:`, with WAL journaling, a busy timeout
    /// and foreign keys on. Does not migrate: call [`SqliteEventStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool_options = if in_memory {
            // An in-memory database lives as long as its connections: keep exactly one,
            // forever, so that every query sees the same database.
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(codec::unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (e.g. one shared with the read models). The pool should be
    /// configured as [`SqliteEventStore::connect`] does (WAL, busy timeout).
    pub fn from_pool(pool: SqlitePool) -> Self {
        SqlEventStore::new(
            pool,
            DEFAULT_POLL,
            SqliteBackend {
                write_lock: Arc::new(Mutex::new(())),
            },
        )
    }

    /// Applies the event store's migrations (versions 100..199), leaving other crates'
    /// migrations on the same database alone.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("event store migration failed: {e}")))
    }
}

/// JSON text for a `json_each(?)` parameter.
fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::InvalidAppend(format!("append cannot be encoded: {e}")))
}

#[async_trait]
impl Backend for SqliteBackend {
    type Db = sqlx::Sqlite;

    const READ_STREAM: &'static str = include_str!("sql/sqlite/read_stream.sql");
    const READ_ALL: &'static str = include_str!("sql/sqlite/read_all.sql");
    const STREAM_VERSION: &'static str = include_str!("sql/sqlite/stream_version.sql");
    const HEAD_POSITION: &'static str = include_str!("sql/sqlite/head_position.sql");
    const NAMES_CONSTRAINTS: bool = false;

    fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
        RawEvent::read(row, |position| {
            let event_id: String = column(row, "event_id", position)?;
            let data: String = column(row, "data", position)?;
            let metadata: String = column(row, "metadata", position)?;
            let recorded_at: String = column(row, "recorded_at", position)?;
            Ok(TypedColumns {
                event_id: uuid::Uuid::parse_str(&event_id).map_err(|e| e.to_string()),
                data: serde_json::from_str(&data).map_err(|e| e.to_string()),
                metadata: serde_json::from_str(&metadata).map_err(|e| e.to_string()),
                recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| format!("{recorded_at:?}: {e}")),
            })
        })?
        .into_recorded()
    }

    async fn append(
        store: &SqliteEventStore,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        codec::validate(&requests)?;
        let _writer = store.backend.write_lock.lock().await;
        // BEGIN IMMEDIATE takes the database's write lock now, not at the first insert, so
        // no other connection can append between our version check and our insert.
        let tx = store
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::unavailable)?;
        let (tx, written) = store.write(tx, &requests).await?;
        tx.commit().await.map_err(codec::unavailable)?;
        store.wake_subscribers();
        Ok(written.outcomes)
    }

    async fn versions(
        conn: &mut SqliteConnection,
        streams: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(include_str!("sql/sqlite/versions.sql"))
            .bind(json_text(&streams)?)
            .fetch_all(conn)
            .await
            .map_err(codec::unavailable)
    }

    async fn chain_heads(
        conn: &mut SqliteConnection,
        streams: &[&str],
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        sqlx::query_as(include_str!("sql/sqlite/chain_heads.sql"))
            .bind(json_text(&streams)?)
            .fetch_all(conn)
            .await
            .map_err(codec::unavailable)
    }

    async fn insert(
        conn: &mut SqliteConnection,
        rows: &[SealedEvent<'_>],
        recorded_at: &DateTime<Utc>,
    ) -> Result<Vec<Inserted>, InsertError> {
        // Every new row as a JSON array, inserted by one statement.
        let mut json_rows = Vec::with_capacity(rows.len());
        for row in rows {
            json_rows.push(serde_json::json!([
                row.event.event_id.to_string(),
                row.stream,
                codec::to_i64(row.version, "stream version")?,
                row.event.event_type,
                row.event.schema_version,
                row.event.data.to_string(),
                codec::metadata_json(&row.metadata)?.to_string(),
            ]));
        }
        let inserted = sqlx::query_as(include_str!("sql/sqlite/insert.sql"))
            .bind(json_text(&json_rows)?)
            .bind(chain::timestamp_text(recorded_at))
            .fetch_all(conn)
            .await?;
        Ok(inserted)
    }

    fn prepare_subscription(_store: &SqliteEventStore) -> Option<BoxFuture<'static, ()>> {
        None
    }
}
