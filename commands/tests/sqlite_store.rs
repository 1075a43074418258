//! The event store conformance suite against SQLite (a temp file per test), plus
//! SQLite-specific cases.
// Test helpers outside #[test] fns fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use commands::SqliteEventStore;
use domain::store::{EventStore, ExpectedVersion, StoreError};
use test_support::{Backend, TestDb};

mod common;

use common::{cleanup, fresh_sqlite};

commands::event_store_conformance_tests!(fresh_sqlite, cleanup);

/// A migrated SQLite event store on a fresh database (kept alive by the [`TestDb`]).
async fn sqlite_store() -> (SqliteEventStore, TestDb) {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = SqliteEventStore::connect(db.url()).await.unwrap();
    store.migrate().await.unwrap();
    (store, db)
}

async fn store_with_bad_row(column: &str, value: &str) -> (SqliteEventStore, u64, TestDb) {
    let (store, db) = sqlite_store().await;
    store
        .append(
            "good",
            ExpectedVersion::NoStream,
            commands::conformance::events(1, 1),
        )
        .await
        .unwrap();
    let sql = format!(
        "INSERT INTO events (event_id, stream, stream_version, event_type, schema_version, \
         data, metadata, recorded_at) VALUES ('{}', 'bad', 1, 'T', 1, '{{}}', \
         '{{\"actor\":\"x\"}}', '2024-01-01T00:00:00Z')",
        uuid::Uuid::now_v7()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .unwrap();
    let update = format!("UPDATE events SET {column} = {value} WHERE stream = 'bad'");
    sqlx::query(sqlx::AssertSqlSafe(update))
        .execute(store.pool())
        .await
        .unwrap();
    let position = store.head_position().await.unwrap();
    (store, position, db)
}

async fn assert_corrupt(column: &str, value: &str) {
    let (store, bad, _db) = store_with_bad_row(column, value).await;
    match store.read_all(0, 100).await {
        Err(StoreError::Corrupt { position, reason }) => {
            assert_eq!(position, bad);
            assert!(!reason.is_empty());
        }
        other => panic!("{column} = {value}: expected Corrupt, got {other:?}"),
    }
    if column != "stream_version" {
        assert!(matches!(
            store.read_stream("bad", 1, 10).await,
            Err(StoreError::Corrupt { .. })
        ));
    }
    // The good row before it still reads.
    assert_eq!(store.read_all(0, 1).await.unwrap().len(), 1);
    // A subscription yields the good event, then the error, then ends.
    use futures::StreamExt;
    let mut subscription = store.subscribe_all(0);
    assert!(subscription.next().await.unwrap().is_ok());
    assert!(matches!(
        subscription.next().await,
        Some(Err(StoreError::Corrupt { .. }))
    ));
    assert!(subscription.next().await.is_none());
}

#[tokio::test]
async fn invalid_json_data_is_corrupt() {
    assert_corrupt("data", "'{not json'").await;
}

#[tokio::test]
async fn invalid_json_metadata_is_corrupt() {
    assert_corrupt("metadata", "'[1,'").await;
}

#[tokio::test]
async fn metadata_of_the_wrong_shape_is_corrupt() {
    assert_corrupt("metadata", "'{\"actor\": 5}'").await;
}

#[tokio::test]
async fn a_negative_version_is_corrupt() {
    assert_corrupt("stream_version", "-1").await;
}

#[tokio::test]
async fn a_bad_timestamp_is_corrupt() {
    assert_corrupt("recorded_at", "'yesterday'").await;
}

#[tokio::test]
async fn a_bad_event_id_is_corrupt() {
    assert_corrupt("event_id", "'not-a-uuid'").await;
}

#[tokio::test]
async fn data_of_the_wrong_type_is_corrupt() {
    // A blob where JSON text belongs (NOT NULL forbids the NULL case).
    assert_corrupt("data", "x'00ff'").await;
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = SqliteEventStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    store
        .append(
            "s",
            ExpectedVersion::NoStream,
            commands::conformance::events(1, 2),
        )
        .await
        .unwrap();
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn migrations_tolerate_other_crates_migrations_and_rerun() {
    let db = TestDb::empty(Backend::Sqlite).await;
    let store = SqliteEventStore::connect(db.url()).await.unwrap();
    store.migrate().await.unwrap();
    // Pretend another crate applied its own migration on the same database.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'someone else', TRUE, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.unwrap();
    SqliteEventStore::connect(db.url())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
}

#[tokio::test]
async fn open_event_store_picks_the_backend_by_scheme() {
    let db = TestDb::empty(Backend::Sqlite).await;
    let store = commands::open_event_store(db.url()).await.unwrap();
    assert_eq!(store.head_position().await.unwrap(), 0);
    match commands::open_event_store("mysql://localhost/x").await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("mysql")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("mysql:// must be refused"),
    }
}

struct SqliteSql(sqlx::SqlitePool);

#[async_trait]
impl commands::conformance::RawSql for SqliteSql {
    async fn execute(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.0)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn verify_names_events_altered_deleted_or_reordered_with_sql() {
    let (store, _db) = sqlite_store().await;
    let sql = SqliteSql(store.pool().clone());
    commands::conformance::verify_names_tampered_events(Arc::new(store), &sql).await;
}
