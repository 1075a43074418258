//! The Postgres event store: production.
//!
//! **Ordering guard.** Positions come from an identity sequence, which hands out values
//! when rows are inserted, not when transactions commit. Two concurrent appends can take
//! positions `p` and `p + 1` and commit in the opposite order; a subscriber that has
//! already read past `p + 1` would then never see `p`. Every append therefore takes a
//! transaction-scoped advisory lock ([`ORDERING_LOCK_KEY`]) *before* inserting, and holds
//! it until it commits: positions are assigned and committed in the same order, and a
//! reader that sees position `n` has already been able to see everything below it. The
//! price is that appends are serialised; `EventStore::append_many` lets a caller (the
//! usage writer's group commit) put many streams into one transaction.
//!
//! **Live subscriptions** wake on `NOTIFY keyledger_events` (sent inside the append
//! transaction, so delivered on commit, also to other processes) and poll every second
//! as a fallback for lost notifications or a lost listener connection (an idle node
//! sleeps between polls).
//!
//! **Group commits in one round trip.** Appends to unchained streams with no version
//! expectation (the usage writer's batches) call `keyledger_append_unchained` (migration
//! 101) outside an explicit transaction: lock, versions, insert, notification and commit
//! in one round trip, so the ordering lock is held for the function and the commit only.
//!
//! Every other append goes through the shared SQL core (`store::sql`: version checks,
//! chain sealing, bookkeeping); this file holds the Postgres statements
//! (`sql/postgres/*.sql`), the ordering lock, the notification and the listener.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain;
use domain::store::{
    AppendOutcome, AppendRequest, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use tokio::sync::{OnceCell, watch};
use uuid::Uuid;

use super::codec::{self, RawEvent, SealedEvent, TypedColumns, column};
use super::sql::{Backend, InsertError, Inserted, SqlEventStore};

/// The advisory lock every append holds from before its inserts until its commit
/// (`pg_advisory_xact_lock`). The value spells "klevents" in ASCII; any constant works as
/// long as every writer uses the same one.
pub const ORDERING_LOCK_KEY: i64 = 0x6b6c_6576_656e_7473;
/// The LISTEN/NOTIFY channel appends notify on (payload: the last position appended).
pub const NOTIFY_CHANNEL: &str = "keyledger_events";
/// How often an idle subscription reads anyway, in case a notification was lost.
const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// An [`EventStore`](domain::store::EventStore) on Postgres. Cheap to clone: clones share
/// the pool and the listener.
pub type PostgresEventStore = SqlEventStore<PostgresBackend>;

/// The Postgres back end of the SQL event store: what it keeps beyond the shared core.
#[derive(Clone)]
pub struct PostgresBackend {
    ordering_guard: bool,
    listener: Arc<Listener>,
}

/// The LISTEN task, shared by a store and its clones.
struct Listener {
    /// Set once the task has been started (or failed to start).
    started: OnceCell<()>,
    /// Dropped with the store; the task stops when it sees that.
    shutdown: watch::Sender<()>,
}

impl SqlEventStore<PostgresBackend> {
    /// Connects to `url` (`postgres://...`). Does not migrate: call
    /// [`PostgresEventStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await
            .map_err(codec::unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (e.g. one shared with the read models).
    pub fn from_pool(pool: PgPool) -> Self {
        SqlEventStore::new(
            pool,
            DEFAULT_POLL,
            PostgresBackend {
                ordering_guard: true,
                listener: Arc::new(Listener {
                    started: OnceCell::new(),
                    shutdown: watch::Sender::new(()),
                }),
            },
        )
    }

    /// **For tests that prove the guard matters only.** `false` stops appends from taking
    /// the ordering lock, so concurrent appends may commit out of position order and a
    /// subscriber may skip an event. Never turn it off in a running system.
    pub fn with_ordering_guard(mut self, on: bool) -> Self {
        self.backend.ordering_guard = on;
        self
    }

    /// Applies the event store's migrations (versions 100..199), leaving other crates'
    /// migrations on the same database alone.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("event store migration failed: {e}")))
    }

    /// Runs an append up to, but not including, its commit: the ordering lock is held
    /// and positions are assigned until [`PendingAppend::commit`] (or the drop that rolls
    /// it back). `EventStore::append_many` is `begin_append(..).await?.commit().await`
    /// (but for the one-round-trip group commit); this half-way point exists so that
    /// tests can hold a transaction open.
    pub async fn begin_append(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<PendingAppend, StoreError> {
        codec::validate(&requests)?;
        let mut tx = self.pool.begin().await.map_err(codec::unavailable)?;
        if self.backend.ordering_guard {
            // Must be its own statement, before the version check: a statement's snapshot
            // is taken when it starts, so only a statement that starts after the lock is
            // granted sees the previous holder's commit.
            sqlx::query(include_str!("sql/postgres/ordering_lock.sql"))
                .bind(ORDERING_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(codec::unavailable)?;
        }
        let (mut tx, written) = self.write(tx, &requests).await?;
        // Delivered to listeners (in every process) when, and only if, the transaction
        // commits.
        sqlx::query(include_str!("sql/postgres/notify.sql"))
            .bind(NOTIFY_CHANNEL)
            .bind(written.max_position.to_string())
            .execute(&mut *tx)
            .await
            .map_err(codec::unavailable)?;
        Ok(PendingAppend {
            tx,
            outcomes: written.outcomes,
            wake: Arc::clone(&self.wake),
        })
    }

    /// Appends to unchained streams without version expectations (the usage writer's
    /// group commits) in one round trip: one call of `keyledger_append_unchained`
    /// (migration 101), outside an explicit transaction, so that the call is its own
    /// transaction. The function takes the same ordering lock as [`Self::begin_append`]
    /// before a statement of its own assigns versions and positions, so positions still
    /// commit in order.
    async fn append_unchained(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        codec::validate(&requests)?;
        let recorded_at = Utc::now().trunc_subsecs(6);
        let mut columns = Columns::with_capacity(requests.iter().map(|r| r.events.len()).sum());
        // Events per stream so far, after each request: its last event's version is the
        // stream's new version minus what later requests add to the same stream.
        let mut per_stream: HashMap<&str, u64> = HashMap::with_capacity(requests.len());
        let mut upto = Vec::with_capacity(requests.len());
        for request in &requests {
            for event in &request.events {
                // What `chain::seal` does on an unchained stream: no caller-planted hashes.
                let mut sealed = event.metadata.clone();
                sealed.prev_hash = None;
                sealed.hash = None;
                columns.push(&request.stream, event, &sealed)?;
            }
            let count = per_stream.entry(request.stream.as_str()).or_insert(0);
            *count += request.events.len() as u64;
            upto.push(*count);
        }
        let rows: Result<Vec<Inserted>, sqlx::Error> =
            sqlx::query_as(include_str!("sql/postgres/append_unchained.sql"))
                .bind(self.backend.ordering_guard)
                .bind(ORDERING_LOCK_KEY)
                .bind(&columns.ids)
                .bind(&columns.streams)
                .bind(&columns.types)
                .bind(&columns.schemas)
                .bind(&columns.data)
                .bind(&columns.metadata)
                .bind(recorded_at)
                .bind(NOTIFY_CHANNEL)
                .fetch_all(&self.pool)
                .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) if codec::is_unique_violation(&error) => {
                return Err(self.explain_unique_violation(&requests, &error).await);
            }
            Err(error) => return Err(codec::unavailable(error)),
        };
        let mut positions: HashMap<(String, i64), i64> = HashMap::with_capacity(rows.len());
        let mut heads: HashMap<String, i64> = HashMap::with_capacity(per_stream.len());
        for (stream, version, position) in rows {
            let head = heads.entry(stream.clone()).or_insert(version);
            *head = (*head).max(version);
            positions.insert((stream, version), position);
        }
        let mut outcomes = Vec::with_capacity(requests.len());
        for (request, upto) in requests.iter().zip(upto) {
            let stream_total = per_stream
                .get(request.stream.as_str())
                .copied()
                .unwrap_or(0);
            let head = heads.get(&request.stream).copied().unwrap_or(0);
            let version = head - codec::to_i64(stream_total - upto, "stream version")?;
            let position = positions
                .get(&(request.stream.clone(), version))
                .copied()
                .ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "append returned no position for {} at {version}",
                        request.stream
                    ))
                })?;
            outcomes.push(AppendOutcome {
                stream_version: u64::try_from(version).unwrap_or(0),
                position: u64::try_from(position).unwrap_or(0),
            });
        }
        self.wake_subscribers();
        Ok(outcomes)
    }
}

/// New rows as the array parameters of an `UNNEST`, one vector per column (versions
/// aside: the one-round-trip group commit leaves them to the database).
struct Columns<'a> {
    ids: Vec<Uuid>,
    streams: Vec<&'a str>,
    types: Vec<&'a str>,
    schemas: Vec<i64>,
    data: Vec<&'a serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl<'a> Columns<'a> {
    fn with_capacity(rows: usize) -> Self {
        Self {
            ids: Vec::with_capacity(rows),
            streams: Vec::with_capacity(rows),
            types: Vec::with_capacity(rows),
            schemas: Vec::with_capacity(rows),
            data: Vec::with_capacity(rows),
            metadata: Vec::with_capacity(rows),
        }
    }

    /// Adds `event` of `stream`, to be stored with `metadata` (already sealed).
    fn push(
        &mut self,
        stream: &'a str,
        event: &'a NewEvent,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        self.ids.push(event.event_id);
        self.streams.push(stream);
        self.types.push(event.event_type.as_str());
        self.schemas.push(i64::from(event.schema_version));
        self.data.push(&event.data);
        self.metadata.push(codec::metadata_json(metadata)?);
        Ok(())
    }
}

/// Starts the LISTEN task once per store (and its clones). If the listener cannot
/// connect, subscriptions still work by polling.
async fn ensure_listener(pool: PgPool, listener: Arc<Listener>, wake: Weak<watch::Sender<u64>>) {
    listener
        .started
        .get_or_init(|| async {
            // A pool of one of its own, so that the long-lived LISTEN connection does not
            // take a slot from the appenders; PgListener uses it to reconnect.
            let options = (*pool.connect_options()).clone();
            let listener_pool = PgPoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with(options);
            let pg_listener = match PgListener::connect_with(&listener_pool).await {
                Ok(mut pg_listener) => match pg_listener.listen(NOTIFY_CHANNEL).await {
                    Ok(()) => pg_listener,
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN failed; subscriptions will poll");
                        return;
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "no LISTEN connection; subscriptions will poll");
                    return;
                }
            };
            tokio::spawn(run_listener(
                pg_listener,
                wake,
                listener.shutdown.subscribe(),
            ));
        })
        .await;
}

/// Wakes subscriptions on every notification until the store is dropped. Holds only a
/// weak reference, so that it does not keep the store's wake-ups alive.
async fn run_listener(
    mut listener: PgListener,
    wake: Weak<watch::Sender<u64>>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received,
            _ = shutdown.changed() => return,
        };
        let Some(wake) = wake.upgrade() else {
            return;
        };
        // On `Ok(None)` the connection was lost (and notifications with it): wake anyway so
        // that subscriptions read what they may have missed. `try_recv` reconnects.
        let failed = received.is_err();
        if let Err(error) = received {
            tracing::warn!(%error, "event store listener failed; retrying");
        }
        wake.send_modify(|n| *n = n.wrapping_add(1));
        drop(wake);
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// An append whose rows are inserted but not yet committed: it holds the ordering lock.
/// Dropping it rolls the append back.
pub struct PendingAppend {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    outcomes: Vec<AppendOutcome>,
    wake: Arc<watch::Sender<u64>>,
}

impl PendingAppend {
    /// Where the append will leave each stream once committed, in request order.
    pub fn outcomes(&self) -> &[AppendOutcome] {
        &self.outcomes
    }

    /// Commits the append (releasing the ordering lock) and wakes local subscriptions.
    pub async fn commit(self) -> Result<Vec<AppendOutcome>, StoreError> {
        self.tx.commit().await.map_err(codec::unavailable)?;
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(self.outcomes)
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    type Db = sqlx::Postgres;

    const READ_STREAM: &'static str = include_str!("sql/postgres/read_stream.sql");
    const READ_ALL: &'static str = include_str!("sql/postgres/read_all.sql");
    const STREAM_VERSION: &'static str = include_str!("sql/postgres/stream_version.sql");
    const HEAD_POSITION: &'static str = include_str!("sql/postgres/head_position.sql");
    const NAMES_CONSTRAINTS: bool = true;

    fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
        RawEvent::read(row, |position| {
            Ok(TypedColumns {
                event_id: Ok(column(row, "event_id", position)?),
                data: Ok(column(row, "data", position)?),
                metadata: Ok(column(row, "metadata", position)?),
                recorded_at: Ok(column(row, "recorded_at", position)?),
            })
        })?
        .into_recorded()
    }

    async fn append(
        store: &PostgresEventStore,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if requests
            .iter()
            .all(|r| r.expected == ExpectedVersion::Any && !chain::is_chained_stream(&r.stream))
        {
            return store.append_unchained(requests).await;
        }
        store.begin_append(requests).await?.commit().await
    }

    async fn versions(
        conn: &mut PgConnection,
        streams: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(include_str!("sql/postgres/versions.sql"))
            .bind(streams)
            .fetch_all(conn)
            .await
            .map_err(codec::unavailable)
    }

    async fn chain_heads(
        conn: &mut PgConnection,
        streams: &[&str],
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        sqlx::query_as(include_str!("sql/postgres/chain_heads.sql"))
            .bind(streams)
            .fetch_all(conn)
            .await
            .map_err(codec::unavailable)
    }

    async fn insert(
        conn: &mut PgConnection,
        rows: &[SealedEvent<'_>],
        recorded_at: &DateTime<Utc>,
    ) -> Result<Vec<Inserted>, InsertError> {
        let mut columns = Columns::with_capacity(rows.len());
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows {
            columns.push(row.stream, row.event, &row.metadata)?;
            versions.push(codec::to_i64(row.version, "stream version")?);
        }
        let inserted = sqlx::query_as(include_str!("sql/postgres/insert.sql"))
            .bind(&columns.ids)
            .bind(&columns.streams)
            .bind(&versions)
            .bind(&columns.types)
            .bind(&columns.schemas)
            .bind(&columns.data)
            .bind(&columns.metadata)
            .bind(recorded_at)
            .fetch_all(conn)
            .await?;
        Ok(inserted)
    }

    fn prepare_subscription(store: &PostgresEventStore) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(ensure_listener(
            store.pool.clone(),
            Arc::clone(&store.backend.listener),
            Arc::downgrade(&store.wake),
        )))
    }
}
