//! The projector runtime: catch up from the checkpoint, then follow the live store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use domain::store::{EventStore, RecordedEvent, StoreError};
use futures::StreamExt;
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::ReadDb;

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

    /// Applies one event. Events this projection does not care about are ignored.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
}

/// Runs one projection against one read-model database.
#[derive(Clone)]
pub struct Projector {
    db: ReadDb,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    batch_size: usize,
}

impl Projector {
    /// A projector applying up to 500 ready events per transaction.
    pub fn new(db: ReadDb, store: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> Self {
        Self {
            db,
            store,
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
        let mut tx = self.db.pool().begin().await?;
        for event in events {
            self.projection.apply(&mut tx, event).await?;
        }
        // Compare-and-set on the checkpoint: if a rebuild or another projector moved it,
        // nothing of this batch is kept.
        let updated = sqlx::query(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
             WHERE name = $3 AND position = $4",
        )
        .bind(to_i64(last.position))
        .bind(now_text())
        .bind(self.projection.name())
        .bind(to_i64(after))
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
                expected: after,
                found: found.and_then(|f| u64::try_from(f).ok()),
            });
        }
        tx.commit().await?;
        Ok(last.position)
    }

    /// Follows the store until the task is aborted, retrying with a back-off on errors.
    /// The returned handle reports the committed position.
    pub fn spawn(self) -> ProjectorHandle {
        let (tx, rx) = watch::channel(0u64);
        let name = self.projection.name();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                match self.follow(&tx).await {
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
        });
        ProjectorHandle {
            name,
            position: rx,
            task,
        }
    }

    /// One subscription's worth of work: from the stored checkpoint until an error.
    async fn follow(&self, position: &watch::Sender<u64>) -> Result<(), ProjectionError> {
        let mut last = self.checkpoint().await?;
        position.send_replace(last);
        let mut events = self.store.subscribe_all(last).ready_chunks(self.batch_size);
        while let Some(chunk) = events.next().await {
            let batch = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
            last = self.apply_batch(last, &batch).await?;
            position.send_replace(last);
        }
        Ok(())
    }
}

/// A running projector.
#[derive(Debug)]
pub struct ProjectorHandle {
    name: &'static str,
    position: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl ProjectorHandle {
    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The position of the last event committed to the read model.
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Waits until the read model includes `position`; false on timeout. This is how
    /// management reads give read-your-writes.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.position.clone();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the projector. A batch in flight is rolled back, never half-applied.
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
        let mut tx = projector.db.pool().begin().await?;
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
    let total = projector.store.head_position().await?;
    let mut last = 0;
    progress(0, total);
    while last < total {
        let page = projector
            .store
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
