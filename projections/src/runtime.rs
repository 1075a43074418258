//! The projector runtime: catch up from the checkpoint, then follow the live store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use domain::store::{EventStore, RecordedEvent, StoreError};
use futures::StreamExt;
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{Backend, ReadDb};
use crate::feed::Feed;

/// How often a node that does not lead a projection tries to take the lead (and updates
/// its view of the stored checkpoint).
const LEADER_RETRY: Duration = Duration::from_millis(500);

/// How often a leader checks that the connection holding its lock is still alive.
const LEADER_PING: Duration = Duration::from_secs(1);

/// How often `wait_for` on a node that does not lead reads the stored checkpoint.
const FOLLOWER_POLL: Duration = Duration::from_millis(5);

/// What can stop a projector.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read-model database failed.
    #[error("read-model database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A migration of the read-model schema failed.
    #[error("read-model migration failed: {0}")]
    Migration(String),
    /// The configuration is wrong (bad URL, unknown projection name).
    #[error("{0}")]
    Config(String),
    /// An event could not be understood by a projection.
    #[error("cannot project event at position {position}: {reason}")]
    Decode {
        /// The event's global position.
        position: u64,
        /// Why.
        reason: String,
    },
    /// Where a projection sends its output (e.g. the revocation bus) refused an event:
    /// the batch is rolled back and retried from the checkpoint.
    #[error("projection output unavailable: {0}")]
    Sink(String),
    /// Someone else moved this projection's checkpoint (a rebuild, or a second
    /// projector): the batch was rolled back and the projector resumes from the stored
    /// checkpoint.
    #[error("checkpoint of {name} moved under us: expected {expected}, found {found:?}")]
    CheckpointMoved {
        /// The projection.
        name: String,
        /// The position this projector last committed.
        expected: u64,
        /// What the table holds now.
        found: Option<u64>,
    },
}

/// A read model maintained from the event stream.
///
/// `apply` runs inside the projector's transaction, with the checkpoint update, so it
/// must only use the connection it is given.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A stable name, the key of its checkpoint row (e.g. `key_list`).
    fn name(&self) -> &'static str;

    /// The tables that hold this projection's rows: a rebuild empties them.
    fn tables(&self) -> &'static [&'static str];

    /// Whether this projection cares about `event` at all (a cheap test on the envelope,
    /// e.g. its stream). The runtime skips the transaction for a batch with no such
    /// event and moves the checkpoint lazily instead; `apply` must still ignore events
    /// it does not care about. Default: every event.
    fn handles(&self, event: &RecordedEvent) -> bool {
        let _ = event;
        true
    }

    /// Applies one event. Events this projection does not care about are ignored.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;

    /// How long the projector may keep collecting events for this projection before it
    /// commits them (default: zero, commit what is ready). A projection of counters
    /// (usage) sets a window so that a burst of calls becomes one larger batch, with each
    /// touched row written once, at the price of that much extra lag.
    fn coalesce(&self) -> Duration {
        Duration::ZERO
    }

    /// Applies consecutive events in order, inside the projector's transaction. The
    /// default applies them one by one; a projection may override it to aggregate the
    /// batch in memory (counters) and write each row once.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[Arc<RecordedEvent>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// Runs one projection against one read-model database.
#[derive(Clone)]
pub struct Projector {
    db: ReadDb,
    feed: Feed,
    projection: Arc<dyn Projection>,
    batch_size: usize,
}

impl Projector {
    /// A projector applying up to 500 ready events per transaction, reading the store
    /// through a feed of its own.
    pub fn new(db: ReadDb, store: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> Self {
        Self::with_feed(db, Feed::new(store), projection)
    }

    /// A projector following a shared feed: every projector of a process given the same
    /// [`Feed`] reads and decodes each event once between them.
    pub fn with_feed(db: ReadDb, feed: Feed, projection: Arc<dyn Projection>) -> Self {
        Self {
            db,
            feed,
            projection,
            batch_size: 500,
        }
    }

    /// Sets how many already-available events go into one transaction (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The stored checkpoint, creating the row (at 0) if this projection is new.
    pub async fn checkpoint(&self) -> Result<u64, ProjectionError> {
        let name = self.projection.name();
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_text())
        .execute(self.db.pool())
        .await?;
        let pos: i64 =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_one(self.db.pool())
                .await?;
        Ok(u64::try_from(pos).unwrap_or(0))
    }

    /// Applies `events` (which must directly follow `after`) in one transaction with the
    /// checkpoint, and returns the new checkpoint.
    pub async fn apply_batch(
        &self,
        after: u64,
        events: &[RecordedEvent],
    ) -> Result<u64, ProjectionError> {
        let Some(last) = events.last() else {
            return Ok(after);
        };
        let relevant: Vec<Arc<RecordedEvent>> = events
            .iter()
            .filter(|e| self.projection.handles(e))
            .map(|e| Arc::new(e.clone()))
            .collect();
        self.commit(after, &relevant, last.position).await
    }

    /// Applies `events` and moves the checkpoint from `expected` to `to` in one
    /// transaction (a compare-and-set: if a rebuild or another projector moved it,
    /// nothing of this batch is kept).
    async fn commit(
        &self,
        expected: u64,
        events: &[Arc<RecordedEvent>],
        to: u64,
    ) -> Result<u64, ProjectionError> {
        let mut tx = self.db.begin_write().await?;
        if !events.is_empty() {
            self.projection.apply_batch(&mut tx, events).await?;
        }
        let updated = sqlx::query(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
             WHERE name = $3 AND position = $4",
        )
        .bind(to_i64(to))
        .bind(now_text())
        .bind(self.projection.name())
        .bind(to_i64(expected))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            drop(tx);
            let found: Option<i64> =
                sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                    .bind(self.projection.name())
                    .fetch_optional(self.db.pool())
                    .await?;
            return Err(ProjectionError::CheckpointMoved {
                name: self.projection.name().to_owned(),
                expected,
                found: found.and_then(|f| u64::try_from(f).ok()),
            });
        }
        tx.commit().await?;
        Ok(to)
    }

    /// Follows the store until the task is aborted, retrying with a back-off on errors.
    /// The returned handle reports the committed position.
    ///
    /// On Postgres, only the node holding the projection's advisory lock projects (one
    /// active projector per read model across the cluster): the lock is a session lock
    /// on a connection of its own, held while leading and checked every second; when
    /// that connection drops, Postgres releases the lock, this node stops projecting and
    /// another node takes over within [`LEADER_RETRY`]. Correctness does not rest on the
    /// lock: the checkpoint compare-and-set already keeps two projectors from double
    /// counting during a hand-over. On SQLite there is one node and no lock.
    pub fn spawn(self) -> ProjectorHandle {
        let (tx, rx) = watch::channel(0u64);
        let (lead_tx, lead_rx) = watch::channel(false);
        let name = self.projection.name();
        let db = self.db.clone();
        let task = tokio::spawn(async move {
            match self.db.backend() {
                Backend::Sqlite => {
                    lead_tx.send_replace(true);
                    self.run(&tx).await;
                }
                Backend::Postgres => self.run_when_leading(&tx, &lead_tx).await,
            }
        });
        ProjectorHandle {
            name,
            db,
            position: rx,
            leading: lead_rx,
            task,
        }
    }

    /// Follows the store for ever, retrying with a back-off on errors.
    async fn run(&self, tx: &watch::Sender<u64>) {
        let name = self.projection.name();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.follow(tx).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(ProjectionError::CheckpointMoved { .. }) => {
                    tracing::info!(projection = name, "checkpoint moved; resuming from it");
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Err(e) => {
                    tracing::error!(projection = name, error = %e, "projector failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Postgres: tries to take the projection's advisory lock; projects while holding it,
    /// otherwise keeps the handle's position in step with the stored checkpoint.
    async fn run_when_leading(&self, tx: &watch::Sender<u64>, leading: &watch::Sender<bool>) {
        let name = self.projection.name();
        let key = lock_key(name);
        let mut conn: Option<AnyConnection> = None;
        loop {
            match self.try_lead(&mut conn, key).await {
                Ok(true) => {
                    tracing::info!(projection = name, "leading this projection");
                    leading.send_replace(true);
                    if let Some(lock) = conn.as_mut() {
                        tokio::select! {
                            () = self.run(tx) => {}
                            () = hold(lock) => {
                                tracing::warn!(projection = name, "lost the projection's lock; no longer projecting");
                            }
                        }
                    }
                    leading.send_replace(false);
                    // The lock's connection is gone (or broken): never reuse it.
                    conn = None;
                }
                Ok(false) => {
                    if let Ok(p) = stored_checkpoint(&self.db, name).await {
                        tx.send_if_modified(|cur| {
                            let moved = *cur != p;
                            *cur = p;
                            moved
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "cannot try the projection's lock");
                    conn = None;
                }
            }
            tokio::time::sleep(LEADER_RETRY).await;
        }
    }

    /// Takes the lock on a dedicated connection (kept in `conn` for the next try when
    /// another node holds it).
    async fn try_lead(
        &self,
        conn: &mut Option<AnyConnection>,
        key: i64,
    ) -> Result<bool, ProjectionError> {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(self.db.pool().acquire().await?.detach()),
        };
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *c)
            .await?;
        Ok(got)
    }

    /// One subscription's worth of work: from the stored checkpoint until an error.
    ///
    /// A batch with no event this projection handles (most batches, for most
    /// projections, are usage events) opens no transaction: the position moves in memory
    /// at once (so read-your-writes on this node is immediate), and the stored checkpoint
    /// follows within [`CHECKPOINT_FLUSH`] (SQLite: [`CHECKPOINT_FLUSH_SQLITE`]), or with the next batch that has work. Under
    /// load this saves a write transaction (and its fsync) per batch per projection.
    async fn follow(&self, position: &watch::Sender<u64>) -> Result<(), ProjectionError> {
        let mut stored = self.checkpoint().await?;
        let mut last = stored;
        position.send_replace(last);
        let mut events = self.feed.follow(last).ready_chunks(self.batch_size);
        let mut flush = tokio::time::interval(match self.db.backend() {
            Backend::Sqlite => CHECKPOINT_FLUSH_SQLITE,
            Backend::Postgres => CHECKPOINT_FLUSH,
        });
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                chunk = events.next() => {
                    let Some(chunk) = chunk else { break };
                    let mut relevant: Vec<Arc<RecordedEvent>> = Vec::with_capacity(chunk.len());
                    let mut end = None;
                    let mut ended = false;
                    collect(&*self.projection, chunk, &mut relevant, &mut end)?;
                    // Coalesce: keep reading what arrives within the projection's window
                    // (measured from the first relevant event) into the same batch.
                    let window = self.projection.coalesce();
                    if !relevant.is_empty() && !window.is_zero() {
                        let deadline = tokio::time::Instant::now() + window;
                        while relevant.len() < COALESCE_MAX {
                            match tokio::time::timeout_at(deadline, events.next()).await {
                                Ok(Some(more)) => {
                                    collect(&*self.projection, more, &mut relevant, &mut end)?;
                                }
                                Ok(None) => {
                                    ended = true;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    let Some(end) = end else { continue };
                    if relevant.is_empty() {
                        last = end;
                    } else {
                        stored = self.commit(stored, &relevant, end).await?;
                        last = stored;
                    }
                    position.send_replace(last);
                    if ended {
                        break;
                    }
                }
                _ = flush.tick(), if last > stored => {
                    stored = self.commit(stored, &[], last).await?;
                }
            }
        }
        Ok(())
    }
}

/// The most events one coalesced batch collects (see [`Projection::coalesce`]).
const COALESCE_MAX: usize = 20_000;

/// Moves the events of `chunk` this projection handles into `relevant`, and the chunk's
/// last position into `end`.
fn collect(
    projection: &dyn Projection,
    chunk: Vec<Result<Arc<RecordedEvent>, StoreError>>,
    relevant: &mut Vec<Arc<RecordedEvent>>,
    end: &mut Option<u64>,
) -> Result<(), ProjectionError> {
    for event in chunk {
        let event = event?;
        *end = Some(event.position);
        if projection.handles(&event) {
            relevant.push(event);
        }
    }
    Ok(())
}

/// How soon the stored checkpoint follows a position reached through batches that held
/// nothing for the projection, on Postgres: other nodes' read-your-writes polls the stored
/// checkpoint, and a commit there is cheap.
pub const CHECKPOINT_FLUSH: Duration = Duration::from_millis(50);

/// The same on SQLite. There is one node, whose read-your-writes uses the position in
/// memory; the stored checkpoint only says where a restart resumes (replaying a little
/// more is harmless: the checkpoint moves with the rows). Every flush is a write
/// transaction and an fsync under the database's one write lock, which the usage
/// writer's group commits wait for: four projectors at 50 ms would take it 80 times a
/// second under load.
pub const CHECKPOINT_FLUSH_SQLITE: Duration = Duration::from_secs(1);

/// Returns when the connection holding a projection's lock stops answering.
async fn hold(conn: &mut AnyConnection) {
    loop {
        tokio::time::sleep(LEADER_PING).await;
        if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
            return;
        }
    }
}

/// The advisory-lock key of a projection: a stable 64-bit FNV-1a hash of its name.
/// Advisory locks are per database, so clusters on different databases never meet.
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "keyledger.projection.".bytes().chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// The checkpoint stored for `name` (0 when there is none yet).
async fn stored_checkpoint(db: &ReadDb, name: &str) -> Result<u64, ProjectionError> {
    let pos: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    Ok(pos.and_then(|p| u64::try_from(p).ok()).unwrap_or(0))
}

/// A running projector.
#[derive(Debug)]
pub struct ProjectorHandle {
    name: &'static str,
    db: ReadDb,
    position: watch::Receiver<u64>,
    leading: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl ProjectorHandle {
    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The position of the last event committed to the read model (by this node when
    /// it leads; as last read from the checkpoint table when another node does).
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Whether this node is the one projecting (always, on SQLite).
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until the read model includes `position`; false on timeout. This is how
    /// management reads give read-your-writes, on every node: the leader's projector
    /// reports its progress directly; a node that does not lead reads the checkpoint the
    /// leader commits with its rows.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut rx = self.position.clone();
        loop {
            if *rx.borrow_and_update() >= position {
                return true;
            }
            let leading = self.is_leader();
            if !leading
                && let Ok(p) = stored_checkpoint(&self.db, self.name).await
                && p >= position
            {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let wait = if leading {
                left
            } else {
                left.min(FOLLOWER_POLL)
            };
            match tokio::time::timeout(wait, rx.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                // The projector task is gone: nothing will report progress any more.
                Ok(Err(_)) => tokio::time::sleep(left.min(FOLLOWER_POLL)).await,
            }
        }
    }

    /// Stops the projector. A batch in flight is rolled back, never half-applied; the
    /// lock (if held) goes with its connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ProjectorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Empties a projection's tables, resets its checkpoint to 0 (one transaction), then
/// replays the whole store into it. `progress(done, total)` is called after each batch.
pub async fn rebuild(
    projector: &Projector,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ProjectionError> {
    let name = projector.projection.name();
    projector.checkpoint().await?;
    {
        let mut tx = projector.db.begin_write().await?;
        for table in projector.projection.tables() {
            // Table names are compile-time constants of the projection, never input.
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE projection_checkpoints SET position = 0, updated_at = $1 WHERE name = $2",
        )
        .bind(now_text())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let total = projector.feed.store().head_position().await?;
    let mut last = 0;
    progress(0, total);
    while last < total {
        let page = projector
            .feed
            .store()
            .read_all(last, projector.batch_size.max(1000))
            .await?;
        if page.is_empty() {
            break;
        }
        last = projector.apply_batch(last, &page).await?;
        progress(last.min(total), total);
    }
    Ok(last)
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
