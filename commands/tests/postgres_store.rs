//! The event store conformance suite against Postgres, plus the ordering guard proof and
//! Postgres-specific cases.
//!
//! Set `KEYLEDGER_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`)
//! to run them; unset, each test prints a line and passes. Set but unreachable, they fail.
//! Each test gets a database of its own (`test_support::TestDb`), dropped at the end.
// Test helpers outside #[test] fns fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commands::conformance::events;
use commands::{PostgresEventStore, postgres::ORDERING_LOCK_KEY};
use domain::store::{AppendRequest, EventStore, ExpectedVersion, StoreError};
use futures::StreamExt;
use test_support::{Backend, TestDb};

mod common;

use common::{StoreDb, cleanup, fresh_postgres};

commands::event_store_conformance_tests!(fresh_postgres, cleanup);

impl StoreDb {
    /// A migrated Postgres event store on this database.
    async fn store(&self) -> PostgresEventStore {
        let store = PostgresEventStore::connect(self.url()).await.unwrap();
        store.migrate().await.unwrap();
        store
    }
}

fn request(stream: &str) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected: ExpectedVersion::NoStream,
        events: events(1, 1),
    }
}

/// Starts the subscription (listener, first read) and checks that it is idle.
async fn assert_idle(subscription: &mut domain::store::EventStream) {
    let next = tokio::time::timeout(Duration::from_millis(150), subscription.next()).await;
    assert!(next.is_err(), "expected no event, got {next:?}");
}

/// With the guard, an append that started later (B) waits for the open one (A), so a
/// subscriber receives A and then B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ordering_guard_keeps_a_subscriber_from_skipping_a_late_commit() {
    let Some(db) = fresh_postgres().await else {
        return;
    };
    // Arrange
    let store = db
        .store()
        .await
        .with_poll_interval(Duration::from_millis(50));
    let mut subscription = store.subscribe_all(0);
    assert_idle(&mut subscription).await;
    // Act: A holds its transaction open; B starts while A is in flight.
    let a = store.begin_append(vec![request("a")]).await.unwrap();
    let a_position = a.outcomes()[0].position;
    let b = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append("b", ExpectedVersion::NoStream, events(1, 1))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "B must wait for A's ordering lock");
    assert_idle(&mut subscription).await;
    a.commit().await.unwrap();
    let b_position = b.await.unwrap().unwrap().position;
    // Assert
    let first = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await;
    let second = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await;
    let first = first.unwrap().unwrap().unwrap();
    let second = second.unwrap().unwrap().unwrap();
    assert_eq!((first.stream.as_str(), first.position), ("a", a_position));
    assert_eq!((second.stream.as_str(), second.position), ("b", b_position));
    assert!(a_position < b_position);
    drop(subscription);
}

/// The proof that the guard matters: without it, B takes a higher position, commits
/// first, and is delivered; A commits later at a lower position and is never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_ordering_guard_a_subscriber_skips_a_late_commit() {
    let Some(db) = fresh_postgres().await else {
        return;
    };
    // Arrange
    let store = db
        .store()
        .await
        .with_ordering_guard(false)
        .with_poll_interval(Duration::from_millis(50));
    let mut subscription = store.subscribe_all(0);
    assert_idle(&mut subscription).await;
    // Act
    let a = store.begin_append(vec![request("a")]).await.unwrap();
    let a_position = a.outcomes()[0].position;
    let b_position = store
        .append("b", ExpectedVersion::NoStream, events(1, 1))
        .await
        .unwrap()
        .position;
    assert!(a_position < b_position);
    let delivered = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await;
    let delivered = delivered.unwrap().unwrap().unwrap();
    assert_eq!(
        (delivered.stream.as_str(), delivered.position),
        ("b", b_position)
    );
    a.commit().await.unwrap();
    // Assert: A is stored before B, but the subscriber has passed it for good.
    let all = store.read_all(0, 10).await.unwrap();
    let order: Vec<(&str, u64)> = all
        .iter()
        .map(|e| (e.stream.as_str(), e.position))
        .collect();
    assert_eq!(order, vec![("a", a_position), ("b", b_position)]);
    let late = tokio::time::timeout(Duration::from_secs(1), subscription.next()).await;
    assert!(
        late.is_err(),
        "the unguarded subscriber should have skipped A, got {late:?}"
    );
    drop(subscription);
}

/// The usage writer's one-round-trip group commit (unchained streams, `Any`) takes the
/// same ordering lock: it waits for an open append and takes a later position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_commit_to_usage_streams_waits_for_the_ordering_lock() {
    let Some(db) = fresh_postgres().await else {
        return;
    };
    // Arrange
    let store = db.store().await;
    let a = store.begin_append(vec![request("a")]).await.unwrap();
    let a_position = a.outcomes()[0].position;
    // Act
    let b = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append_many(vec![
                    AppendRequest {
                        stream: "apikey-usage-x".into(),
                        expected: ExpectedVersion::Any,
                        events: events(1, 2),
                    },
                    AppendRequest {
                        stream: "apikey-usage-y".into(),
                        expected: ExpectedVersion::Any,
                        events: events(1, 1),
                    },
                ])
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !b.is_finished(),
        "the group commit must wait for A's ordering lock"
    );
    a.commit().await.unwrap();
    let outcomes = b.await.unwrap().unwrap();
    // Assert
    assert_eq!(outcomes[0].stream_version, 2);
    assert_eq!(outcomes[1].stream_version, 1);
    assert!(a_position < outcomes[0].position);
    assert!(outcomes[0].position < outcomes[1].position);
    let x = store.read_stream("apikey-usage-x", 1, 10).await.unwrap();
    assert_eq!(
        x.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(x.iter().all(|e| e.metadata.hash.is_none()));
}

/// The guard really is a lock other writers wait on (a writer in another process that
/// takes the same key is ordered too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_append_holds_the_ordering_lock() {
    let Some(db) = fresh_postgres().await else {
        return;
    };
    let store = db.store().await;
    let pending = store.begin_append(vec![request("a")]).await.unwrap();
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(ORDERING_LOCK_KEY)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!free);
    drop(pending); // rolls back
    assert_eq!(store.head_position().await.unwrap(), 0);
}

async fn assert_corrupt(column: &str, value: &str) {
    let Some(db) = fresh_postgres().await else {
        return;
    };
    let store = db.store().await;
    store
        .append("good", ExpectedVersion::NoStream, events(1, 1))
        .await
        .unwrap();
    let insert = format!(
        "INSERT INTO events (event_id, stream, stream_version, event_type, schema_version, \
         data, metadata, recorded_at) VALUES ('{}', 'bad', 1, 'T', 1, '{{}}', \
         '{{\"actor\":\"x\"}}', now())",
        uuid::Uuid::now_v7()
    );
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .execute(store.pool())
        .await
        .unwrap();
    let update = format!("UPDATE events SET {column} = {value} WHERE stream = 'bad'");
    sqlx::query(sqlx::AssertSqlSafe(update))
        .execute(store.pool())
        .await
        .unwrap();
    let bad = store.head_position().await.unwrap();
    match store.read_all(0, 100).await {
        Err(StoreError::Corrupt { position, .. }) => assert_eq!(position, bad),
        other => panic!("{column} = {value}: expected Corrupt, got {other:?}"),
    }
    let mut subscription = store.subscribe_all(0);
    assert!(subscription.next().await.unwrap().is_ok());
    assert!(matches!(
        subscription.next().await,
        Some(Err(StoreError::Corrupt { .. }))
    ));
    assert!(subscription.next().await.is_none());
    drop(subscription);
}

#[tokio::test]
async fn a_negative_version_is_corrupt() {
    assert_corrupt("stream_version", "-1").await;
}

#[tokio::test]
async fn metadata_of_the_wrong_shape_is_corrupt() {
    assert_corrupt("metadata", "'{\"actor\": 5}'").await;
}

#[tokio::test]
async fn a_schema_version_out_of_range_is_corrupt() {
    assert_corrupt("schema_version", "5000000000").await;
}

#[tokio::test]
async fn migrations_tolerate_other_crates_migrations_and_rerun() {
    if Backend::Postgres.skipped() {
        return;
    }
    let db = StoreDb(TestDb::empty(Backend::Postgres).await);
    let store = db.store().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'someone else', TRUE, '\\x00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.unwrap();
    db.store().await;
}

#[tokio::test]
async fn open_event_store_opens_postgres_urls() {
    if Backend::Postgres.skipped() {
        return;
    }
    let db = TestDb::empty(Backend::Postgres).await;
    let store = commands::open_event_store(db.url()).await.unwrap();
    store
        .append("s", ExpectedVersion::NoStream, events(1, 1))
        .await
        .unwrap();
    assert_eq!(store.head_position().await.unwrap(), 1);
    let postgresql = db.url().replacen("postgres://", "postgresql://", 1);
    assert!(commands::open_event_store(&postgresql).await.is_ok());
    drop(store);
}

struct PgSql(sqlx::PgPool);

#[async_trait]
impl commands::conformance::RawSql for PgSql {
    async fn execute(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.0)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_events_altered_deleted_or_reordered_with_sql() {
    let Some(db) = fresh_postgres().await else {
        return;
    };
    let store = db.store().await;
    let sql = PgSql(store.pool().clone());
    commands::conformance::verify_names_tampered_events(Arc::new(store), &sql).await;
}
