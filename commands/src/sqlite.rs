//! The SQLite event store: the embedded default.
//!
//! Appends run in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock
//! before the version check, so the check and the insert cannot race with another writer
//! (another pool or another process on the same file). Within one process appends also
//! queue on an async mutex, so that they wait in line instead of spinning in SQLite's busy
//! handler. Because there is one writer at a time, positions commit in increasing order
//! and a subscriber can never skip one.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain::{self, HashInput};
use domain::store::{
    AppendOutcome, AppendRequest, EventStore, EventStream, RecordedEvent, StoreError,
};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use tokio::sync::{Mutex, watch};

use crate::codec::{self, RawEvent, column};
use crate::subscription;

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle subscription looks for events appended by other processes (appends
/// through this store wake subscriptions at once): slow, so that an idle node sleeps.
const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// Events per read while a subscription catches up.
const SUBSCRIPTION_BATCH: usize = 500;

/// A `SELECT` of every column of `events`, followed by `$rest`: a `&'static str`, so
/// queries stay literal SQL.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, event_id, stream, stream_version, event_type, schema_version, ",
            "data, metadata, recorded_at FROM events ",
            $rest
        )
    };
}

/// An [`EventStore`] on a SQLite file (WAL mode). Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct SqliteEventStore {
    pool: SqlitePool,
    poll: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    /// Serialises this process's appends (SQLite allows one writer at a time anyway).
    write_lock: Mutex<()>,
    /// Bumped after every commit, to wake this process's subscriptions at once.
    wake: watch::Sender<u64>,
}

impl SqliteEventStore {
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
        Self {
            pool,
            poll: DEFAULT_POLL,
            shared: Arc::new(Shared {
                write_lock: Mutex::new(()),
                wake: watch::Sender::new(0),
            }),
        }
    }

    /// Sets how often idle subscriptions poll for other processes' appends (default 500 ms).
    /// Appends made through this store (or its clones) wake subscriptions at once anyway.
    pub fn with_poll_interval(self, poll: Duration) -> Self {
        Self { poll, ..self }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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

    async fn current_version<'e, E>(executor: E, stream: &str) -> Result<u64, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream = ?",
        )
        .bind(stream)
        .fetch_one(executor)
        .await
        .map_err(codec::unavailable)?;
        u64::try_from(version).map_err(|_| StoreError::Corrupt {
            position: 0,
            reason: format!("stream {stream} has negative version {version}"),
        })
    }

    /// The stored hash of the last event of every hash-chained stream among `streams`
    /// (streams without events, or whose last event predates chaining, are absent).
    async fn chain_heads(
        tx: &mut sqlx::SqliteConnection,
        streams: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        let chained: Vec<&str> = streams
            .iter()
            .copied()
            .filter(|s| chain::is_chained_stream(s))
            .collect();
        let mut heads = HashMap::with_capacity(chained.len());
        if chained.is_empty() {
            return Ok(heads);
        }
        let rows = sqlx::query(
            "SELECT s.value AS stream, (SELECT json_extract(e.metadata, '$.hash') FROM events e \
             WHERE e.stream = s.value ORDER BY e.stream_version DESC LIMIT 1) AS hash \
             FROM json_each(?) AS s",
        )
        .bind(json_text(&chained)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::unavailable)?;
        for row in rows {
            let stream: String = row.try_get("stream").map_err(codec::unavailable)?;
            let hash: Option<String> = row.try_get("hash").map_err(codec::unavailable)?;
            if let Some(hash) = hash {
                heads.insert(stream, hash);
            }
        }
        Ok(heads)
    }

    /// Explains a unique violation. Under the write lock the version check already
    /// passed, so this is a duplicate event id, unless a writer outside this protocol
    /// moved a stream on.
    async fn explain_unique_violation(&self, requests: &[AppendRequest]) -> StoreError {
        for request in requests {
            match Self::current_version(&self.pool, &request.stream).await {
                Ok(actual) if !request.expected.matches(actual) => {
                    return StoreError::WrongExpectedVersion {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual,
                    };
                }
                Ok(_) => {}
                Err(error) => return error,
            }
        }
        StoreError::InvalidAppend("an event id in this append is already stored".into())
    }
}

/// JSON text for a `json_each(?)` parameter.
fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::InvalidAppend(format!("append cannot be encoded: {e}")))
}

fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row
        .try_get("position")
        .map_err(|e| codec::corrupt_at(0, format!("column position: {e}")))?;
    let event_id: String = column(row, "event_id", position)?;
    let data: String = column(row, "data", position)?;
    let metadata: String = column(row, "metadata", position)?;
    let recorded_at: String = column(row, "recorded_at", position)?;
    RawEvent {
        position,
        event_id: uuid::Uuid::parse_str(&event_id).map_err(|e| e.to_string()),
        stream: column(row, "stream", position)?,
        stream_version: column(row, "stream_version", position)?,
        event_type: column(row, "event_type", position)?,
        schema_version: column(row, "schema_version", position)?,
        data: serde_json::from_str(&data).map_err(|e| e.to_string()),
        metadata: serde_json::from_str(&metadata).map_err(|e| e.to_string()),
        recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{recorded_at:?}: {e}")),
    }
    .into_recorded()
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        codec::validate(&requests)?;
        let _writer = self.shared.write_lock.lock().await;
        // BEGIN IMMEDIATE takes the database's write lock now, not at the first insert, so
        // no other connection can append between our version check and our insert.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::unavailable)?;
        // Microseconds: what is stored is exactly what the chain's hash covers.
        let now = Utc::now().trunc_subsecs(6);
        let recorded_at = chain::timestamp_text(&now);

        // Current versions of every stream named, in one statement (one index probe each).
        let streams: Vec<&str> = {
            let mut seen: Vec<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let rows = sqlx::query(
            "SELECT s.value AS stream, COALESCE((SELECT MAX(e.stream_version) FROM events e \
             WHERE e.stream = s.value), 0) AS version FROM json_each(?) AS s",
        )
        .bind(json_text(&streams)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::unavailable)?;
        let mut versions: HashMap<String, u64> = HashMap::with_capacity(rows.len());
        for row in rows {
            let stream: String = row.try_get("stream").map_err(codec::unavailable)?;
            let version: i64 = row.try_get("version").map_err(codec::unavailable)?;
            let version = u64::try_from(version).map_err(|_| {
                codec::corrupt_at(0, format!("stream {stream} has negative version {version}"))
            })?;
            versions.insert(stream, version);
        }
        // The hash of each chained stream's last event, read under the same write lock.
        let mut heads = Self::chain_heads(&mut tx, &streams).await?;

        // Every new row as a JSON array, inserted by one statement.
        let mut new_rows = Vec::with_capacity(requests.iter().map(|r| r.events.len()).sum());
        let mut last_events = Vec::with_capacity(requests.len());
        for request in &requests {
            let current = versions.get(&request.stream).copied().unwrap_or(0);
            if !request.expected.matches(current) {
                return Err(StoreError::WrongExpectedVersion {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    actual: current,
                });
            }
            let mut version = current;
            let mut prev_hash = heads.remove(&request.stream);
            for event in &request.events {
                version += 1;
                let mut metadata = event.metadata.clone();
                prev_hash = chain::seal(
                    HashInput {
                        stream: &request.stream,
                        stream_version: version,
                        event_id: event.event_id,
                        event_type: &event.event_type,
                        schema_version: event.schema_version,
                        recorded_at: &now,
                        data: &event.data,
                        metadata: &event.metadata,
                        prev_hash: prev_hash.as_deref(),
                    },
                    &mut metadata,
                );
                new_rows.push(serde_json::json!([
                    event.event_id.to_string(),
                    request.stream,
                    codec::to_i64(version, "stream version")?,
                    event.event_type,
                    event.schema_version,
                    event.data.to_string(),
                    codec::metadata_json(&metadata)?.to_string(),
                ]));
            }
            if let Some(hash) = prev_hash {
                // The same stream may be named again later in this append.
                heads.insert(request.stream.clone(), hash);
            }
            versions.insert(request.stream.clone(), version);
            last_events.push((request.stream.clone(), version));
        }
        let inserted = sqlx::query(
            "INSERT INTO events (event_id, stream, stream_version, event_type, schema_version, \
             data, metadata, recorded_at) \
             SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), \
             json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), \
             json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), \
             json_extract(j.value, '$[6]'), ?2 \
             FROM json_each(?1) AS j ORDER BY j.key \
             RETURNING stream, stream_version, position",
        )
        .bind(json_text(&new_rows)?)
        .bind(&recorded_at)
        .fetch_all(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(rows) => rows,
            Err(error) if codec::is_unique_violation(&error) => {
                drop(tx);
                return Err(self.explain_unique_violation(&requests).await);
            }
            Err(error) => return Err(codec::unavailable(error)),
        };
        let mut positions: HashMap<(String, i64), i64> = HashMap::with_capacity(inserted.len());
        for row in inserted {
            let stream: String = row.try_get("stream").map_err(codec::unavailable)?;
            let version: i64 = row.try_get("stream_version").map_err(codec::unavailable)?;
            let position: i64 = row.try_get("position").map_err(codec::unavailable)?;
            positions.insert((stream, version), position);
        }
        let mut outcomes = Vec::with_capacity(last_events.len());
        for (stream, version) in last_events {
            let key = (stream, codec::to_i64(version, "stream version")?);
            let position = positions.get(&key).copied().ok_or_else(|| {
                StoreError::Unavailable(format!("insert returned no position for {key:?}"))
            })?;
            outcomes.push(AppendOutcome {
                stream_version: version,
                position: u64::try_from(position).unwrap_or(0),
            });
        }
        tx.commit().await.map_err(codec::unavailable)?;
        self.shared.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(outcomes)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let Ok(from_version) = i64::try_from(from_version) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(select_events!(
            "WHERE stream = ? AND stream_version >= ? ORDER BY stream_version LIMIT ?"
        ))
        .bind(stream)
        .bind(from_version)
        .bind(codec::limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(codec::unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Self::current_version(&self.pool, stream).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(select_events!(
            "WHERE position > ? ORDER BY position LIMIT ?"
        ))
        .bind(after)
        .bind(codec::limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(codec::unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(codec::unavailable)?;
        u64::try_from(head).map_err(|_| codec::corrupt_at(0, format!("negative head {head}")))
    }

    fn subscribe_all(&self, after: u64) -> EventStream {
        subscription::subscribe(
            self.clone(),
            after,
            subscription::Config {
                batch: SUBSCRIPTION_BATCH,
                poll: self.poll,
                wake: self.shared.wake.subscribe(),
                prepare: None,
            },
        )
    }
}
