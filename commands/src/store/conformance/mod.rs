//! The event store conformance suite: what every [`EventStore`] adapter must do, as
//! generic async functions over a [`TestDatabase`], run once per adapter (see
//! `commands/tests/sqlite_store.rs`, `postgres_store.rs` and `kurrentdb_store.rs`).
//! Enabled by the `conformance` cargo feature.
//!
//! The cases: `appends` (expected versions, conflicts, atomicity), `reads` (global
//! order, paging, subscriptions), `chain` (hash chains and tamper detection).
//!
//! Use [`event_store_conformance_tests!`](crate::event_store_conformance_tests) to
//! generate one `#[tokio::test]` per case.
// Test support: a failed assertion (a panic) is how a case reports a failing adapter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod appends;
mod chain;
mod reads;

use std::sync::Arc;

use async_trait::async_trait;
use domain::store::{EventStore, Metadata, NewEvent, RecordedEvent, StoreError};
use uuid::Uuid;

pub use appends::*;
pub use chain::*;
pub use reads::*;

/// A fresh, empty database for one test case.
#[async_trait]
pub trait TestDatabase: Send + Sync {
    /// Opens a new store on this database, as another process would: its own pool, its
    /// own wake-ups. Every call returns a separate instance; schema already migrated.
    async fn open(&self) -> Arc<dyn EventStore>;
}

/// Generates one `#[tokio::test]` per conformance case. `$fresh` is an async fn
/// returning `Option<impl TestDatabase>` (`None` skips the test, e.g. no Postgres URL)
/// and `$cleanup` an async fn taking that database by value.
#[macro_export]
macro_rules! event_store_conformance_tests {
    ($fresh:path, $cleanup:path) => {
        $crate::event_store_conformance_tests!(@cases $fresh, $cleanup;
            appends_and_reads_a_stream,
            honours_expected_versions,
            a_conflict_leaves_the_stream_unchanged,
            exactly_one_of_fifty_concurrent_appenders_wins,
            append_many_is_all_or_nothing,
            append_many_reports_outcomes_in_request_order,
            rejects_malformed_appends,
            rejects_a_duplicate_event_id,
            reads_all_in_global_order_with_paging,
            reads_a_stream_from_a_version,
            reports_stream_version_and_head_position,
            subscription_catches_up_then_goes_live,
            subscription_starts_after_the_given_position,
            subscription_sees_appends_from_another_instance,
            chains_lifecycle_streams,
        );
    };
    (@cases $fresh:path, $cleanup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(db) = $fresh().await else { return };
                $crate::conformance::$case(&db).await;
                $cleanup(db).await;
            }
        )*
    };
}

/// A test event with payload `{"n": n}`.
pub fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestEvent".into(),
        schema_version: 1,
        data: serde_json::json!({ "n": n, "text": "ünïcødé \"quoted\"" }),
        metadata: Metadata {
            actor: "cli:test".into(),
            request_id: Some(format!("req-{n}")),
            correlation_id: Some("corr".into()),
            causation_id: None,
            prev_hash: None,
            hash: None,
        },
    }
}

/// `count` test events numbered from `from`.
pub fn events(from: u64, count: u64) -> Vec<NewEvent> {
    (from..from + count).map(event).collect()
}

fn stream() -> String {
    format!("test-{}", Uuid::now_v7().simple())
}

fn assert_wrong_version(result: Result<impl std::fmt::Debug, StoreError>, want_actual: u64) {
    match result {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, want_actual),
        other => panic!("expected WrongExpectedVersion (actual {want_actual}), got {other:?}"),
    }
}

fn assert_strictly_increasing(events: &[RecordedEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions not strictly increasing: {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
}
