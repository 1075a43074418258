//! The SQL event store, written once for SQLite and Postgres: [`SqlEventStore`] over a
//! [`Backend`].
//!
//! The shared core owns everything that does not depend on the database: the version
//! checks of an append, the sealing of chained streams, the bookkeeping of the insert's
//! positions, the explanation of a unique violation, the reads and their row decoding,
//! and the subscription. A back end ([`crate::store::sqlite`],
//! [`crate::store::postgres`]) supplies its statements (one per file in
//! `sql/<back end>/`), how it binds lists and new rows, how it types the columns that
//! differ, and the transaction around the shared write: how an append takes the write
//! lock, and what it does on commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain;
use domain::store::{
    AppendOutcome, AppendRequest, EventStore, EventStream, RecordedEvent, StoreError,
};
use futures::future::BoxFuture;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};
use tokio::sync::watch;

use super::codec::{self, SealedEvent};
use super::subscription;

/// Events per read while a subscription catches up.
const SUBSCRIPTION_BATCH: usize = 500;

/// A database connection of back end `B` (what a transaction dereferences to).
pub type Connection<B> = <<B as Backend>::Db as Database>::Connection;

/// `(stream, stream_version, position)` of an inserted row.
pub type Inserted = (String, i64, i64);

/// What one SQL database does its own way. Implemented by
/// [`SqliteBackend`](crate::store::sqlite::SqliteBackend) and
/// [`PostgresBackend`](crate::store::postgres::PostgresBackend); not meant to be
/// implemented elsewhere.
#[async_trait]
pub trait Backend: Clone + Send + Sync + Sized + 'static {
    /// The sqlx driver.
    type Db: Database;

    /// Events of stream `$1` with version `>= $2`, at most `$3`, by version.
    const READ_STREAM: &'static str;
    /// Events with position `> $1`, at most `$2`, by position.
    const READ_ALL: &'static str;
    /// The version of stream `$1` (0: no events), as a BIGINT.
    const STREAM_VERSION: &'static str;
    /// The highest position (0: no events), as a BIGINT.
    const HEAD_POSITION: &'static str;
    /// Whether the database names the constraint a unique violation broke (Postgres), so
    /// that a duplicate event id is told from a stream that moved on. Where it does not
    /// (SQLite), a violation that no moved stream explains is taken for the event id:
    /// with one writer at a time, nothing else can collide.
    const NAMES_CONSTRAINTS: bool;

    /// Decodes one row of the `SELECT`s above (every column of `events`), through
    /// [`codec::RawEvent`].
    fn decode(row: &<Self::Db as Database>::Row) -> Result<RecordedEvent, StoreError>;

    /// The whole append: validation, the write transaction and lock around
    /// [`SqlEventStore::write`], the commit and the wake-up.
    async fn append(
        store: &SqlEventStore<Self>,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError>;

    /// `(stream, version)` of each of `streams` (0: no events), one index probe each.
    async fn versions(
        conn: &mut Connection<Self>,
        streams: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// `(stream, hash)` of each of `streams`: the `hash` in the metadata of its last
    /// event (`None`: no events, or the last predates chaining).
    async fn chain_heads(
        conn: &mut Connection<Self>,
        streams: &[&str],
    ) -> Result<Vec<(String, Option<String>)>, StoreError>;

    /// Inserts `rows` in their order (positions follow it), all recorded at
    /// `recorded_at`, in one statement.
    async fn insert(
        conn: &mut Connection<Self>,
        rows: &[SealedEvent<'_>],
        recorded_at: &DateTime<Utc>,
    ) -> Result<Vec<Inserted>, InsertError>;

    /// Awaited once by a subscription before its first read (Postgres starts its
    /// listener, so that no notification sent after that read is missed).
    fn prepare_subscription(store: &SqlEventStore<Self>) -> Option<BoxFuture<'static, ()>>;
}

/// Why [`Backend::insert`] failed.
pub enum InsertError {
    /// A unique constraint: a duplicate event id, or a stream that moved on.
    Unique(sqlx::Error),
    /// Anything else.
    Store(StoreError),
}

impl From<sqlx::Error> for InsertError {
    fn from(error: sqlx::Error) -> Self {
        if codec::is_unique_violation(&error) {
            InsertError::Unique(error)
        } else {
            InsertError::Store(codec::unavailable(error))
        }
    }
}

impl From<StoreError> for InsertError {
    fn from(error: StoreError) -> Self {
        InsertError::Store(error)
    }
}

/// An [`EventStore`] on a SQL database, the back end `B` saying how. Cheap to clone:
/// clones share the pool, the wake-ups and the back end's own state.
pub struct SqlEventStore<B: Backend> {
    pub(crate) pool: Pool<B::Db>,
    pub(crate) poll: Duration,
    /// Bumped whenever new events may have been committed (this process's commits; on
    /// Postgres also every notification), to wake subscriptions.
    pub(crate) wake: Arc<watch::Sender<u64>>,
    pub(crate) backend: B,
}

// By hand: a derive would ask for `B::Db: Clone`, which sqlx's drivers are not.
impl<B: Backend> Clone for SqlEventStore<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            poll: self.poll,
            wake: Arc::clone(&self.wake),
            backend: self.backend.clone(),
        }
    }
}

/// What an append left behind, before its commit.
pub(crate) struct Written {
    /// Where each request left its stream, in request order.
    pub outcomes: Vec<AppendOutcome>,
    /// The highest position inserted.
    pub max_position: i64,
}

impl<B: Backend> SqlEventStore<B> {
    pub(crate) fn new(pool: Pool<B::Db>, poll: Duration, backend: B) -> Self {
        Self {
            pool,
            poll,
            wake: Arc::new(watch::Sender::new(0)),
            backend,
        }
    }

    /// Sets how often an idle subscription reads without being woken (SQLite: appends by
    /// other processes, default 500 ms; Postgres: a lost notification, default 1 s).
    /// Appends made through this store (or its clones) wake subscriptions at once anyway.
    pub fn with_poll_interval(self, poll: Duration) -> Self {
        Self { poll, ..self }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &Pool<B::Db> {
        &self.pool
    }

    /// Wakes this process's subscriptions (after a commit).
    pub(crate) fn wake_subscribers(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl<B: Backend> SqlEventStore<B>
where
    Self: EventStore,
{
    /// The shared part of every append, inside the back end's write transaction and
    /// after it holds the write lock: read the current version and chain head of every
    /// stream named, check each request's expected version (following a stream named
    /// twice), seal the chained streams, insert, and map the inserted positions to
    /// outcomes. On a unique violation the transaction is rolled back and the violation
    /// explained; any error leaves nothing written.
    pub(crate) async fn write(
        &self,
        mut tx: Transaction<'static, B::Db>,
        requests: &[AppendRequest],
    ) -> Result<(Transaction<'static, B::Db>, Written), StoreError> {
        // Microseconds: what is stored is exactly what the chain's hash covers.
        let recorded_at = Utc::now().trunc_subsecs(6);
        let streams: Vec<&str> = {
            let mut seen: Vec<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let mut versions: HashMap<String, u64> = HashMap::with_capacity(streams.len());
        for (stream, version) in B::versions(&mut *tx, &streams).await? {
            let version = u64::try_from(version).map_err(|_| {
                codec::corrupt_at(0, format!("stream {stream} has negative version {version}"))
            })?;
            versions.insert(stream, version);
        }
        // The hash of each chained stream's last event, read under the same lock.
        let chained: Vec<&str> = streams
            .iter()
            .copied()
            .filter(|s| chain::is_chained_stream(s))
            .collect();
        let mut heads: HashMap<String, String> = HashMap::with_capacity(chained.len());
        if !chained.is_empty() {
            for (stream, hash) in B::chain_heads(&mut *tx, &chained).await? {
                if let Some(hash) = hash {
                    heads.insert(stream, hash);
                }
            }
        }

        let mut rows = Vec::with_capacity(requests.iter().map(|r| r.events.len()).sum());
        // (stream, version of the request's last event) in request order.
        let mut last_events = Vec::with_capacity(requests.len());
        for request in requests {
            let current = versions.get(&request.stream).copied().unwrap_or(0);
            if !request.expected.matches(current) {
                return Err(StoreError::WrongExpectedVersion {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    actual: current,
                });
            }
            let head = heads.remove(&request.stream);
            let (sealed, head) = codec::seal(request, current, head, &recorded_at);
            rows.extend(sealed);
            if let Some(hash) = head {
                // The same stream may be named again later in this append.
                heads.insert(request.stream.clone(), hash);
            }
            let version = current + request.events.len() as u64;
            versions.insert(request.stream.clone(), version);
            last_events.push((request.stream.as_str(), version));
        }

        let inserted = B::insert(&mut *tx, &rows, &recorded_at).await;
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(InsertError::Unique(error)) => {
                // Roll back (and free the connection) before looking at the streams.
                drop(tx);
                return Err(self.explain_unique_violation(requests, &error).await);
            }
            Err(InsertError::Store(error)) => return Err(error),
        };
        let mut positions: HashMap<(String, i64), i64> = HashMap::with_capacity(inserted.len());
        let mut max_position = 0_i64;
        for (stream, version, position) in inserted {
            max_position = max_position.max(position);
            positions.insert((stream, version), position);
        }
        let mut outcomes = Vec::with_capacity(last_events.len());
        for (stream, version) in last_events {
            let key = (stream.to_owned(), codec::to_i64(version, "stream version")?);
            let position = positions.get(&key).copied().ok_or_else(|| {
                StoreError::Unavailable(format!("insert returned no position for {key:?}"))
            })?;
            outcomes.push(AppendOutcome {
                stream_version: version,
                position: u64::try_from(position).unwrap_or(0),
            });
        }
        let written = Written {
            outcomes,
            max_position,
        };
        Ok((tx, written))
    }

    /// Explains a unique violation: a duplicate event id, or a stream that moved on (a
    /// writer outside this protocol, or on Postgres with the ordering guard off). See
    /// [`Backend::NAMES_CONSTRAINTS`].
    pub(crate) async fn explain_unique_violation(
        &self,
        requests: &[AppendRequest],
        error: &sqlx::Error,
    ) -> StoreError {
        let duplicate_id =
            StoreError::InvalidAppend("an event id in this append is already stored".into());
        if let sqlx::Error::Database(db) = error
            && db.constraint() == Some("events_event_id_key")
        {
            return duplicate_id;
        }
        let Some(first) = requests.first() else {
            return codec::unavailable_msg("unique violation on an empty append");
        };
        for request in requests {
            match self.stream_version(&request.stream).await {
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
        if !B::NAMES_CONSTRAINTS {
            return duplicate_id;
        }
        // A concurrent writer took the versions we computed, then the expectation (e.g.
        // `Any`) still holds: it is a conflict all the same.
        let actual = self.stream_version(&first.stream).await.unwrap_or(0);
        StoreError::WrongExpectedVersion {
            stream: first.stream.clone(),
            expected: first.expected,
            actual,
        }
    }
}

/// The reads are the same statements' shapes on every back end; the bounds say what they
/// ask of the sqlx driver (SQLite and Postgres both provide it): a pool that runs
/// queries, text and BIGINT parameters, and BIGINT scalars.
#[async_trait]
impl<B: Backend> EventStore for SqlEventStore<B>
where
    for<'c> &'c mut Connection<B>: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    i64: for<'q> Encode<'q, B::Db> + Type<B::Db>,
    (i64,): for<'r> FromRow<'r, <B::Db as Database>::Row>,
{
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        B::append(self, requests).await
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
        let rows = sqlx::query(B::READ_STREAM)
            .bind(stream)
            .bind(from_version)
            .bind(codec::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(codec::unavailable)?;
        rows.iter().map(B::decode).collect()
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(B::STREAM_VERSION)
            .bind(stream)
            .fetch_one(&self.pool)
            .await
            .map_err(codec::unavailable)?;
        u64::try_from(version).map_err(|_| {
            codec::corrupt_at(0, format!("stream {stream} has negative version {version}"))
        })
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(B::READ_ALL)
            .bind(after)
            .bind(codec::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(codec::unavailable)?;
        rows.iter().map(B::decode).collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        // One writer at a time (SQLite), or the ordering guard (Postgres): every committed
        // position is safe to read, since nothing below the maximum can still commit.
        let head: i64 = sqlx::query_scalar(B::HEAD_POSITION)
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
                wake: self.wake.subscribe(),
                prepare: B::prepare_subscription(self),
            },
        )
    }
}
