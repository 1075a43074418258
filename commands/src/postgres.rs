//! The Postgres event store: production.
//!
//! **Ordering guard.** Positions come from an identity sequence, which hands out values
//! when rows are inserted, not when transactions commit. Two concurrent appends can take
//! positions `p` and `p + 1` and commit in the opposite order; a subscriber that has
//! already read past `p + 1` would then never see `p`. Every append therefore takes a
//! transaction-scoped advisory lock ([`ORDERING_LOCK_KEY`]) *before* inserting, and holds
//! it until it commits: positions are assigned and committed in the same order, and a
//! reader that sees position `n` has already been able to see everything below it. The
//! price is that appends are serialised; [`EventStore::append_many`] lets a caller (the
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

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain::{self, HashInput};
use domain::store::{
    AppendOutcome, AppendRequest, EventStore, EventStream, ExpectedVersion, RecordedEvent,
    StoreError,
};
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use tokio::sync::{OnceCell, watch};

use crate::codec::{self, RawEvent, column};
use crate::subscription;

/// The advisory lock every append holds from before its inserts until its commit
/// (`pg_advisory_xact_lock`). The value spells "klevents" in ASCII; any constant works as
/// long as every writer uses the same one.
pub const ORDERING_LOCK_KEY: i64 = 0x6b6c_6576_656e_7473;
/// The LISTEN/NOTIFY channel appends notify on (payload: the last position appended).
pub const NOTIFY_CHANNEL: &str = "keyledger_events";
/// How often an idle subscription reads anyway, in case a notification was lost.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Events per read while a subscription catches up.
const SUBSCRIPTION_BATCH: usize = 500;

/// A `SELECT` of every column of `events`, followed by `$rest`.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, event_id, stream, stream_version, event_type, schema_version, ",
            "data, metadata, recorded_at FROM events ",
            $rest
        )
    };
}

/// An [`EventStore`] on Postgres. Cheap to clone: clones share the pool and the listener.
#[derive(Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    ordering_guard: bool,
    poll: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    /// Bumped after this process's commits and on every notification.
    wake: watch::Sender<u64>,
    /// Set once the LISTEN task has been started (or failed to start).
    listener: OnceCell<()>,
    /// Dropped with the store; the LISTEN task stops when it sees that.
    shutdown: watch::Sender<()>,
}

impl PostgresEventStore {
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
        Self {
            pool,
            ordering_guard: true,
            poll: DEFAULT_POLL,
            shared: Arc::new(Shared {
                wake: watch::Sender::new(0),
                listener: OnceCell::new(),
                shutdown: watch::Sender::new(()),
            }),
        }
    }

    /// **For tests that prove the guard matters only.** `false` stops appends from taking
    /// the ordering lock, so concurrent appends may commit out of position order and a
    /// subscriber may skip an event. Never turn it off in a running system.
    pub fn with_ordering_guard(self, on: bool) -> Self {
        Self {
            ordering_guard: on,
            ..self
        }
    }

    /// Sets how often idle subscriptions read without a notification (default 1 s).
    pub fn with_poll_interval(self, poll: Duration) -> Self {
        Self { poll, ..self }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
    /// it back). [`EventStore::append_many`] is `begin_append(..).await?.commit().await`;
    /// this half-way point exists so that tests can hold a transaction open.
    pub async fn begin_append(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<PendingAppend, StoreError> {
        codec::validate(&requests)?;
        let mut tx = self.pool.begin().await.map_err(codec::unavailable)?;
        if self.ordering_guard {
            // Must be its own statement, before the version check: a statement's snapshot
            // is taken when it starts, so only a statement that starts after the lock is
            // granted sees the previous holder's commit.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ORDERING_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(codec::unavailable)?;
        }
        // Postgres keeps microseconds: hash exactly what will be stored.
        let recorded_at = Utc::now().trunc_subsecs(6);

        let streams: Vec<&str> = {
            let mut seen: Vec<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        // One index-only probe per stream (a correlated MAX uses the (stream, version)
        // index backwards); `WHERE stream = ANY(..) GROUP BY stream` scans every row of
        // every stream instead, which made appends to a long stream O(stream length).
        let rows = sqlx::query(
            "SELECT s.stream, COALESCE((SELECT MAX(e.stream_version) FROM events e \
             WHERE e.stream = s.stream), 0)::bigint AS version \
             FROM UNNEST($1::text[]) AS s(stream)",
        )
        .bind(&streams)
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
        // The hash of each chained stream's last event, read under the same lock.
        let mut heads = Self::chain_heads(&mut tx, &streams).await?;

        let total: usize = requests.iter().map(|r| r.events.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut stream_col = Vec::with_capacity(total);
        let mut version_col = Vec::with_capacity(total);
        let mut types = Vec::with_capacity(total);
        let mut schemas = Vec::with_capacity(total);
        let mut data = Vec::with_capacity(total);
        let mut metadata = Vec::with_capacity(total);
        // (stream, version of the request's last event) in request order.
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
                let mut sealed = event.metadata.clone();
                prev_hash = chain::seal(
                    HashInput {
                        stream: &request.stream,
                        stream_version: version,
                        event_id: event.event_id,
                        event_type: &event.event_type,
                        schema_version: event.schema_version,
                        recorded_at: &recorded_at,
                        data: &event.data,
                        metadata: &event.metadata,
                        prev_hash: prev_hash.as_deref(),
                    },
                    &mut sealed,
                );
                ids.push(event.event_id);
                stream_col.push(request.stream.as_str());
                version_col.push(codec::to_i64(version, "stream version")?);
                types.push(event.event_type.as_str());
                schemas.push(i64::from(event.schema_version));
                data.push(&event.data);
                metadata.push(codec::metadata_json(&sealed)?);
            }
            if let Some(hash) = prev_hash {
                // The same stream may be named again later in this append.
                heads.insert(request.stream.clone(), hash);
            }
            versions.insert(request.stream.clone(), version);
            last_events.push((request.stream.clone(), version));
        }

        // One statement for the whole batch. WITH ORDINALITY + ORDER BY makes the identity
        // values follow the order of the events in the request.
        let inserted = sqlx::query(
            "INSERT INTO events (event_id, stream, stream_version, event_type, schema_version, \
             data, metadata, recorded_at) \
             SELECT e.event_id, e.stream, e.stream_version, e.event_type, e.schema_version, \
             e.data, e.metadata, $8 \
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], \
             $6::jsonb[], $7::jsonb[]) WITH ORDINALITY \
             AS e(event_id, stream, stream_version, event_type, schema_version, data, metadata, n) \
             ORDER BY e.n \
             RETURNING stream, stream_version, position",
        )
        .bind(&ids)
        .bind(&stream_col)
        .bind(&version_col)
        .bind(&types)
        .bind(&schemas)
        .bind(&data)
        .bind(&metadata)
        .bind(recorded_at)
        .fetch_all(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(rows) => rows,
            Err(error) if codec::is_unique_violation(&error) => {
                drop(tx);
                return Err(self.explain_unique_violation(&requests, &error).await);
            }
            Err(error) => return Err(codec::unavailable(error)),
        };
        let mut positions: HashMap<(String, i64), i64> = HashMap::with_capacity(inserted.len());
        let mut max_position = 0_i64;
        for row in inserted {
            let stream: String = row.try_get("stream").map_err(codec::unavailable)?;
            let version: i64 = row.try_get("stream_version").map_err(codec::unavailable)?;
            let position: i64 = row.try_get("position").map_err(codec::unavailable)?;
            max_position = max_position.max(position);
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

        // Delivered to listeners (in every process) when, and only if, the transaction
        // commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(max_position.to_string())
            .execute(&mut *tx)
            .await
            .map_err(codec::unavailable)?;

        Ok(PendingAppend {
            tx,
            outcomes,
            shared: Arc::clone(&self.shared),
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
        let total: usize = requests.iter().map(|r| r.events.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut stream_col = Vec::with_capacity(total);
        let mut types = Vec::with_capacity(total);
        let mut schemas = Vec::with_capacity(total);
        let mut data = Vec::with_capacity(total);
        let mut metadata = Vec::with_capacity(total);
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
                ids.push(event.event_id);
                stream_col.push(request.stream.as_str());
                types.push(event.event_type.as_str());
                schemas.push(i64::from(event.schema_version));
                data.push(&event.data);
                metadata.push(codec::metadata_json(&sealed)?);
            }
            let count = per_stream.entry(request.stream.as_str()).or_insert(0);
            *count += request.events.len() as u64;
            upto.push(*count);
        }
        let rows = sqlx::query(
            "SELECT out_stream, out_version, out_position FROM keyledger_append_unchained(\
             $1, $2, $3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::jsonb[], \
             $8::jsonb[], $9, $10)",
        )
        .bind(self.ordering_guard)
        .bind(ORDERING_LOCK_KEY)
        .bind(&ids)
        .bind(&stream_col)
        .bind(&types)
        .bind(&schemas)
        .bind(&data)
        .bind(&metadata)
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
        for row in rows {
            let stream: String = row.try_get("out_stream").map_err(codec::unavailable)?;
            let version: i64 = row.try_get("out_version").map_err(codec::unavailable)?;
            let position: i64 = row.try_get("out_position").map_err(codec::unavailable)?;
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
        self.shared.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(outcomes)
    }

    /// The stored hash of the last event of every hash-chained stream among `streams`
    /// (streams without events, or whose last event predates chaining, are absent).
    async fn chain_heads(
        tx: &mut sqlx::PgConnection,
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
            "SELECT s.stream, (SELECT e.metadata->>'hash' FROM events e \
             WHERE e.stream = s.stream ORDER BY e.stream_version DESC LIMIT 1) AS hash \
             FROM UNNEST($1::text[]) AS s(stream)",
        )
        .bind(&chained)
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

    /// Explains a unique violation: a duplicate event id, or (with the ordering guard
    /// off, or a writer outside this protocol) a stream that moved on.
    async fn explain_unique_violation(
        &self,
        requests: &[AppendRequest],
        error: &sqlx::Error,
    ) -> StoreError {
        if let sqlx::Error::Database(db) = error
            && db.constraint() == Some("events_event_id_key")
        {
            return StoreError::InvalidAppend(
                "an event id in this append is already stored".into(),
            );
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
        // A concurrent writer took the versions we computed, then the expectation (e.g.
        // `Any`) still holds: it is a conflict all the same.
        let actual = self.stream_version(&first.stream).await.unwrap_or(0);
        StoreError::WrongExpectedVersion {
            stream: first.stream.clone(),
            expected: first.expected,
            actual,
        }
    }

    /// Starts the LISTEN task once per store (and its clones). If the listener cannot
    /// connect, subscriptions still work by polling.
    async fn ensure_listener(pool: PgPool, shared: Arc<Shared>) {
        shared
            .listener
            .get_or_init(|| async {
                // A pool of one of its own, so that the long-lived LISTEN connection does not
                // take a slot from the appenders; PgListener uses it to reconnect.
                let options = (*pool.connect_options()).clone();
                let listener_pool = PgPoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with(options);
                let listener = match PgListener::connect_with(&listener_pool).await {
                    Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                        Ok(()) => listener,
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
                    listener,
                    Arc::downgrade(&shared),
                    shared.shutdown.subscribe(),
                ));
            })
            .await;
    }
}

/// Wakes subscriptions on every notification until the store is dropped. Holds only a
/// weak reference, so that it does not keep the store alive.
async fn run_listener(
    mut listener: PgListener,
    shared: Weak<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received,
            _ = shutdown.changed() => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // On `Ok(None)` the connection was lost (and notifications with it): wake anyway so
        // that subscriptions read what they may have missed. `try_recv` reconnects.
        let failed = received.is_err();
        if let Err(error) = received {
            tracing::warn!(%error, "event store listener failed; retrying");
        }
        shared.wake.send_modify(|n| *n = n.wrapping_add(1));
        drop(shared);
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
    shared: Arc<Shared>,
}

impl PendingAppend {
    /// Where the append will leave each stream once committed, in request order.
    pub fn outcomes(&self) -> &[AppendOutcome] {
        &self.outcomes
    }

    /// Commits the append (releasing the ordering lock) and wakes local subscriptions.
    pub async fn commit(self) -> Result<Vec<AppendOutcome>, StoreError> {
        self.tx.commit().await.map_err(codec::unavailable)?;
        self.shared.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(self.outcomes)
    }
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row
        .try_get("position")
        .map_err(|e| codec::corrupt_at(0, format!("column position: {e}")))?;
    let recorded_at: DateTime<Utc> = column(row, "recorded_at", position)?;
    RawEvent {
        position,
        event_id: Ok(column(row, "event_id", position)?),
        stream: column(row, "stream", position)?,
        stream_version: column(row, "stream_version", position)?,
        event_type: column(row, "event_type", position)?,
        schema_version: column(row, "schema_version", position)?,
        data: Ok(column(row, "data", position)?),
        metadata: Ok(column(row, "metadata", position)?),
        recorded_at: Ok(recorded_at),
    }
    .into_recorded()
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if requests
            .iter()
            .all(|r| r.expected == ExpectedVersion::Any && !chain::is_chained_stream(&r.stream))
        {
            return self.append_unchained(requests).await;
        }
        self.begin_append(requests).await?.commit().await
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
            "WHERE stream = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
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
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0)::bigint FROM events WHERE stream = $1",
        )
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
        let rows = sqlx::query(select_events!(
            "WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after)
        .bind(codec::limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(codec::unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        // With the ordering guard, every committed position is safe to read: nothing below
        // the maximum can still commit.
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0)::bigint FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(codec::unavailable)?;
        u64::try_from(head).map_err(|_| codec::corrupt_at(0, format!("negative head {head}")))
    }

    fn subscribe_all(&self, after: u64) -> EventStream {
        let prepare = Self::ensure_listener(self.pool.clone(), Arc::clone(&self.shared));
        subscription::subscribe(
            self.clone(),
            after,
            subscription::Config {
                batch: SUBSCRIPTION_BATCH,
                poll: self.poll,
                wake: self.shared.wake.subscribe(),
                prepare: Some(Box::pin(prepare)),
            },
        )
    }
}
