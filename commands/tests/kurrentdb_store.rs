//! The event store conformance suite against KurrentDB / EventStoreDB, plus
//! KurrentDB-specific cases. Needs the `kurrentdb` feature:
//! `cargo test -p commands --features kurrentdb --test kurrentdb_store`.
//!
//! Set `KEYLEDGER_TEST_KURRENTDB_URL` (e.g. `esdb://127.0.0.1:2113?tls=false` for the
//! insecure node of `docker-compose.yml`) to run them; unset, each test prints a line and
//! passes. Set but unreachable, they fail. KurrentDB has no per-test databases: each test
//! gets a store with a stream prefix of its own (`kltest<uuid>-`), so tests neither see
//! nor disturb each other's (or anyone's) events; nothing is deleted afterwards.
//!
//! One conformance case is left out, because KurrentDB does not do what it checks:
//! `rejects_a_duplicate_event_id` (KurrentDB keeps no index of event ids across streams;
//! see `a_duplicate_event_id_in_another_stream_is_stored` below for what it does instead).
//! `append_many_is_all_or_nothing` runs and passes: the adapter checks every expectation
//! before it writes; what it cannot promise (a conflict appearing between two of the
//! sequential appends) is documented in `commands::kurrentdb`.
// Test helpers outside #[test] fns fail loudly on purpose.
#![cfg(feature = "kurrentdb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use commands::conformance::{TestDatabase, event, events};
use commands::kurrentdb::{KurrentDbEventStore, KurrentDbOptions};
use domain::store::{EventStore, ExpectedVersion};

struct KurrentDb {
    url: String,
    prefix: String,
}

impl KurrentDb {
    async fn store(&self) -> KurrentDbEventStore {
        let options = KurrentDbOptions {
            stream_prefix: self.prefix.clone(),
            ..KurrentDbOptions::default()
        };
        KurrentDbEventStore::connect_with(&self.url, options)
            .await
            .expect("KEYLEDGER_TEST_KURRENTDB_URL is set but KurrentDB is unreachable")
    }
}

#[async_trait]
impl TestDatabase for KurrentDb {
    async fn open(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store().await)
    }
}

async fn fresh() -> Option<KurrentDb> {
    let Ok(url) = std::env::var("KEYLEDGER_TEST_KURRENTDB_URL") else {
        eprintln!("KEYLEDGER_TEST_KURRENTDB_URL is not set: skipping this KurrentDB test");
        return None;
    };
    let prefix = format!("kltest{}-", uuid::Uuid::now_v7().simple());
    Some(KurrentDb { url, prefix })
}

/// Nothing to drop: the test's streams stay, under their own prefix.
async fn cleanup(_db: KurrentDb) {}

commands::event_store_conformance_tests!(@cases fresh, cleanup;
    appends_and_reads_a_stream,
    honours_expected_versions,
    a_conflict_leaves_the_stream_unchanged,
    exactly_one_of_fifty_concurrent_appenders_wins,
    append_many_is_all_or_nothing,
    append_many_reports_outcomes_in_request_order,
    rejects_malformed_appends,
    reads_all_in_global_order_with_paging,
    reads_a_stream_from_a_version,
    reports_stream_version_and_head_position,
    subscription_catches_up_then_goes_live,
    subscription_starts_after_the_given_position,
    subscription_sees_appends_from_another_instance,
    chains_lifecycle_streams,
);

/// The documented difference: KurrentDB does not reject an event id already stored in
/// another stream (the SQL adapters do).
#[tokio::test]
async fn a_duplicate_event_id_in_another_stream_is_stored() {
    let Some(db) = fresh().await else { return };
    let store = db.store().await;
    let e = event(1);
    store
        .append("a", ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .unwrap();
    store
        .append("b", ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 2);
}

/// A retried append (same events, same expectation) is recognised by the server and
/// stored once.
#[tokio::test]
async fn a_retried_append_is_idempotent() {
    let Some(db) = fresh().await else { return };
    let store = db.store().await;
    let batch = events(1, 2);
    let first = store
        .append("s", ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    let again = store
        .append("s", ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(store.stream_version("s").await.unwrap(), 2);
}

/// Without a prefix the store sees the whole database, but never a system event.
#[tokio::test]
async fn read_all_and_head_skip_system_events() {
    let Some(db) = fresh().await else { return };
    let store = KurrentDbEventStore::connect(&db.url).await.unwrap();
    let prefixed = db.store().await;
    let outcome = prefixed
        .append("s", ExpectedVersion::NoStream, events(1, 1))
        .await
        .unwrap();
    assert!(store.head_position().await.unwrap() >= outcome.position);
    for event in store.read_all(0, 1000).await.unwrap() {
        assert!(!event.stream.starts_with('$'), "{}", event.stream);
        assert!(!event.event_type.starts_with('$'), "{}", event.event_type);
    }
}

#[tokio::test]
async fn open_event_store_opens_kurrentdb_urls() {
    let Some(db) = fresh().await else { return };
    let store = commands::open_event_store(&db.url).await.unwrap();
    assert!(store.head_position().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_chained_streams() {
    let Some(db) = fresh().await else { return };
    let store = db.store().await;
    let key = format!("apikey-{}", uuid::Uuid::now_v7());
    for n in 1..=3 {
        store
            .append(&key, ExpectedVersion::Exact(n - 1), events(n, 1))
            .await
            .unwrap();
    }
    let report = commands::audit::verify_all(&store).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.checked, 3);
}
