//! The projector runtime against real stores: checkpoints move with the rows, a restart
//! resumes without double counting, a rebuild replays from 0, and two projectors on one
//! read model never double count (the checkpoint compare-and-set).
// Test helpers outside `#[test]` functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use test_support::Backend;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::store::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent,
};
use projections::{Projection, ProjectionError, Projector, ReadDb, rebuild};
use sqlx::AnyConnection;
use uuid::Uuid;

/// Counts events per type: a read model whose every row is checkable.
struct CountingProjection;

#[async_trait]
impl Projection for CountingProjection {
    fn name(&self) -> &'static str {
        "test_counts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["test_counts"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO test_counts (event_type, n) VALUES ($1, 1) \
             ON CONFLICT (event_type) DO UPDATE SET n = test_counts.n + 1",
        )
        .bind(event.event_type.clone())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// A fresh [`Env`] with the `test_counts` table.
async fn counted_env(backend: Backend) -> Env {
    with_counts_table(common::env(backend).await).await
}

async fn with_counts_table(env: Env) -> Env {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS test_counts (event_type TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    )
    .execute(env.db.pool())
    .await
    .unwrap();
    env
}

/// Appends `n` events over 10 streams, three event types, in batches of 100.
async fn seed(store: &dyn EventStore, n: usize) {
    let types = ["Alpha", "Beta", "Gamma"];
    let mut i = 0;
    while i < n {
        let mut requests = Vec::new();
        for _ in 0..100.min(n - i) {
            requests.push(AppendRequest {
                stream: format!("test-{}", i % 10),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: types[i % 3].to_owned(),
                    schema_version: 1,
                    data: serde_json::json!({ "i": i }),
                    metadata: Metadata {
                        actor: "test".into(),
                        ..Metadata::default()
                    },
                }],
            });
            i += 1;
        }
        store.append_many(requests).await.unwrap();
    }
}

async fn counts(db: &ReadDb) -> (i64, Vec<(String, i64)>) {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_type, n FROM test_counts ORDER BY event_type")
            .fetch_all(db.pool())
            .await
            .unwrap();
    (rows.iter().map(|r| r.1).sum(), rows)
}

async fn checkpoint(db: &ReadDb) -> i64 {
    sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'test_counts'")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

fn expected_counts(n: i64) -> Vec<(String, i64)> {
    let per = |k: i64| (n - k + 2) / 3;
    vec![
        ("Alpha".to_owned(), per(0)),
        ("Beta".to_owned(), per(1)),
        ("Gamma".to_owned(), per(2)),
    ]
}

async fn it_should_resume_after_a_stop_without_double_counting(env: Env) {
    // Arrange: 3000 events, a projector applying small batches.
    seed(env.store.as_ref(), 3000).await;
    let projector = Projector::new(
        env.db.clone(),
        env.store.clone(),
        Arc::new(CountingProjection),
    )
    .with_batch_size(25);

    // Act: stop it mid-stream.
    let handle = projector.clone().spawn();
    assert!(handle.wait_for(500, Duration::from_secs(60)).await);
    handle.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Assert: what is stored matches the stored checkpoint exactly, mid-stream.
    let at_stop = checkpoint(&env.db).await;
    assert!((500..3000).contains(&at_stop), "stopped at {at_stop}");
    assert_eq!(counts(&env.db).await.0, at_stop);

    // Act: restart, and append more while it runs (live).
    let handle = projector.clone().spawn();
    seed(env.store.as_ref(), 600).await;
    assert!(handle.wait_for(3600, Duration::from_secs(60)).await);

    // Assert: every event counted once.
    let (total, rows) = counts(&env.db).await;
    assert_eq!(total, 3600);
    assert_eq!(checkpoint(&env.db).await, 3600);
    let mut expected = expected_counts(3000);
    for (e, add) in expected.iter_mut().zip(expected_counts(600)) {
        e.1 += add.1;
    }
    assert_eq!(rows, expected);
    handle.stop();
}

async fn it_should_rebuild_from_zero_under_a_running_projector(env: Env) {
    // Arrange: a projector that is up to date.
    seed(env.store.as_ref(), 1000).await;
    let projector = Projector::new(
        env.db.clone(),
        env.store.clone(),
        Arc::new(CountingProjection),
    );
    let handle = projector.clone().spawn();
    assert!(handle.wait_for(1000, Duration::from_secs(60)).await);

    // Act: rebuild from another projector instance (as the CLI would), then append more.
    let mut calls = 0;
    let last = rebuild(&projector, |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .await
    .unwrap();
    seed(env.store.as_ref(), 100).await;

    // Assert: no double count, the running projector resynced from the rebuilt
    // checkpoint.
    assert_eq!(last, 1000);
    assert!(calls >= 2);
    assert!(handle.wait_for(1100, Duration::from_secs(60)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (total, _) = counts(&env.db).await;
    assert_eq!(total, 1100);
    assert_eq!(checkpoint(&env.db).await, 1100);
}

async fn it_should_not_double_count_with_two_projectors(env: Env) {
    // Arrange: two projectors on the same read model (a leadership failure).
    let a = Projector::new(
        env.db.clone(),
        env.store.clone(),
        Arc::new(CountingProjection),
    )
    .with_batch_size(10)
    .spawn();
    let b = Projector::new(
        env.db.clone(),
        env.store.clone(),
        Arc::new(CountingProjection),
    )
    .with_batch_size(7)
    .spawn();

    // Act
    seed(env.store.as_ref(), 1500).await;

    // Assert
    assert!(a.wait_for(1500, Duration::from_secs(60)).await);
    assert!(b.wait_for(1500, Duration::from_secs(60)).await);
    assert_eq!(counts(&env.db).await.0, 1500);
}

/// Two nodes (each its own pools) on one Postgres: exactly one leads; when it dies, the
/// other takes over and goes on from the leader's checkpoint, with exact counts.
async fn it_should_hand_over_leadership_when_the_leader_dies(env: Env) {
    // Arrange: node A starts first and leads; node B has pools of its own.
    let a = Projector::new(
        env.db.clone(),
        env.store.clone(),
        Arc::new(CountingProjection),
    )
    .with_batch_size(10)
    .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !a.is_leader() {
        assert!(std::time::Instant::now() < deadline, "A never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_store = commands::open_event_store(&env.url).await.unwrap();
    let b_db = ReadDb::connect(&env.url).await.unwrap();
    let b = Projector::new(b_db.clone(), b_store, Arc::new(CountingProjection))
        .with_batch_size(7)
        .spawn();

    // Act 1: events while A leads.
    seed(env.store.as_ref(), 600).await;

    // Assert 1: both see the read model reach the head (B through the checkpoint table),
    // and only A projects.
    assert!(a.wait_for(600, Duration::from_secs(60)).await);
    assert!(b.wait_for(600, Duration::from_secs(60)).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(a.is_leader());
    assert!(!b.is_leader(), "two leaders at once");
    assert_eq!(counts(&env.db).await.0, 600);

    // Act 2: A dies (its task and the connection holding the lock go away), and more
    // events come.
    a.stop();
    drop(a);
    seed(env.store.as_ref(), 900).await;

    // Assert 2: B takes over and projects exactly the rest.
    assert!(b.wait_for(1500, Duration::from_secs(60)).await);
    assert!(b.is_leader(), "B did not take over");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (total, rows) = counts(&b_db).await;
    assert_eq!(total, 1500);
    assert_eq!(rows, expected_counts(1500));
    assert_eq!(checkpoint(&b_db).await, 1500);
}

#[tokio::test]
async fn postgres_leadership_hand_over() {
    if Backend::Postgres.skipped() {
        return;
    }
    it_should_hand_over_leadership_when_the_leader_dies(counted_env(Backend::Postgres).await).await;
}

/// Counts only `Gamma` events: most batches hold nothing for it.
struct GammaOnly;

#[async_trait]
impl Projection for GammaOnly {
    fn name(&self) -> &'static str {
        "test_counts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["test_counts"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.event_type == "Gamma"
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        CountingProjection.apply(conn, event).await
    }
}

async fn it_should_move_the_checkpoint_past_batches_it_does_not_handle(env: Env) {
    // The back end's flush interval of a checkpoint reached through unhandled batches.
    let flush = match env.db.backend() {
        projections::Backend::Sqlite => projections::runtime::CHECKPOINT_FLUSH_SQLITE,
        projections::Backend::Postgres => projections::runtime::CHECKPOINT_FLUSH,
    };
    // Arrange: a projector that handles a third of the events, fed one event per batch
    // so that most batches hold nothing for it.
    let projector =
        Projector::new(env.db.clone(), env.store.clone(), Arc::new(GammaOnly)).with_batch_size(1);
    let handle = projector.clone().spawn();

    // Act
    seed(env.store.as_ref(), 300).await;

    // Assert: the position reaches the head at once; the stored checkpoint follows within
    // the flush interval; nothing is counted twice, across a restart too.
    assert!(handle.wait_for(300, Duration::from_secs(60)).await);
    tokio::time::sleep(flush * 3).await;
    assert_eq!(checkpoint(&env.db).await, 300);
    assert_eq!(counts(&env.db).await.1, vec![("Gamma".to_owned(), 100)]);
    handle.stop();
    let handle = projector.spawn();
    seed(env.store.as_ref(), 30).await;
    assert!(handle.wait_for(330, Duration::from_secs(60)).await);
    tokio::time::sleep(flush * 3).await;
    assert_eq!(counts(&env.db).await.1, vec![("Gamma".to_owned(), 110)]);
    assert_eq!(checkpoint(&env.db).await, 330);
}

#[tokio::test]
async fn sqlite_write_transaction_survives_a_commit_between_its_read_and_its_write() {
    let env = counted_env(Backend::Sqlite).await;
    let insert = |name: &'static str| {
        sqlx::query("INSERT INTO test_counts (event_type, n) VALUES ($1, 1)").bind(name)
    };
    let count = "SELECT COUNT(*) FROM test_counts";

    // A deferred transaction that reads first cannot write after another writer committed
    // in between: SQLite answers "database is locked" at once, whatever the busy timeout.
    let mut deferred = env.db.pool().begin().await.unwrap();
    let _: i64 = sqlx::query_scalar(count)
        .fetch_one(&mut *deferred)
        .await
        .unwrap();
    insert("Other").execute(env.db.pool()).await.unwrap();
    let refused = insert("Deferred").execute(&mut *deferred).await;
    assert!(
        refused.is_err(),
        "a stale read snapshot was upgraded to a write"
    );
    drop(deferred);

    // Act: the same sequence in a write transaction; the other writer starts between our
    // read and our write.
    let mut tx = env.db.begin_write().await.unwrap();
    let _: i64 = sqlx::query_scalar(count).fetch_one(&mut *tx).await.unwrap();
    let other = {
        let db = env.db.clone();
        tokio::spawn(async move { insert("Later").execute(db.pool()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    insert("Mine").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    // Assert: both writes landed; the other writer waited for the lock.
    other.await.unwrap().unwrap();
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM test_counts ORDER BY event_type")
            .fetch_all(env.db.pool())
            .await
            .unwrap();
    assert_eq!(rows, ["Later", "Mine", "Other"]);
}

test_support::backend_tests!(
    with counted_env;
    it_should_resume_after_a_stop_without_double_counting,
    it_should_rebuild_from_zero_under_a_running_projector,
    it_should_not_double_count_with_two_projectors,
    it_should_move_the_checkpoint_past_batches_it_does_not_handle,
);
