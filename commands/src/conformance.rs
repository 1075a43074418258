//! The event store conformance suite: what every [`EventStore`] adapter must do, as
//! generic async functions over a [`TestDatabase`], run once per adapter (see
//! `commands/tests/sqlite_store.rs` and `postgres_store.rs`). Enabled by the
//! `conformance` cargo feature so that a future adapter (KurrentDB) can reuse it.
//!
//! Use [`event_store_conformance_tests!`](crate::event_store_conformance_tests) to
//! generate one `#[tokio::test]` per case.
// Test support: a failed assertion (a panic) is how a case reports a failing adapter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::store::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
};
use futures::StreamExt;
use uuid::Uuid;

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

/// Appends then reads back a stream: envelope and payload survive the round trip.
pub async fn appends_and_reads_a_stream(db: &dyn TestDatabase) {
    // Arrange
    let store = db.open().await;
    let s = stream();
    let written = events(1, 3);
    // Act
    let outcome = store
        .append(&s, ExpectedVersion::NoStream, written.clone())
        .await
        .unwrap();
    let read = store.read_stream(&s, 1, 100).await.unwrap();
    // Assert
    assert_eq!(outcome.stream_version, 3);
    assert_eq!(read.len(), 3);
    assert_eq!(outcome.position, read[2].position);
    for (i, (recorded, new)) in read.iter().zip(&written).enumerate() {
        assert_eq!(recorded.stream, s);
        assert_eq!(recorded.stream_version, i as u64 + 1);
        assert_eq!(recorded.event_id, new.event_id);
        assert_eq!(recorded.event_type, new.event_type);
        assert_eq!(recorded.schema_version, new.schema_version);
        assert_eq!(recorded.data, new.data);
        assert_eq!(recorded.metadata, new.metadata);
        assert!(recorded.position >= 1);
        assert!(
            (chrono::Utc::now() - recorded.recorded_at)
                .num_seconds()
                .abs()
                < 60
        );
    }
    assert_strictly_increasing(&read);
    assert!(
        store
            .read_stream(&stream(), 1, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `NoStream`, `Exact(n)` (including `Exact(0)`) and `Any` behave as documented.
pub async fn honours_expected_versions(db: &dyn TestDatabase) {
    let store = db.open().await;
    let s = stream();
    assert_eq!(
        store
            .append(&s, ExpectedVersion::NoStream, events(1, 1))
            .await
            .unwrap()
            .stream_version,
        1
    );
    assert_wrong_version(
        store
            .append(&s, ExpectedVersion::NoStream, events(2, 1))
            .await,
        1,
    );
    assert_wrong_version(
        store
            .append(&s, ExpectedVersion::Exact(0), events(2, 1))
            .await,
        1,
    );
    assert_eq!(
        store
            .append(&s, ExpectedVersion::Exact(1), events(2, 2))
            .await
            .unwrap()
            .stream_version,
        3
    );
    assert_wrong_version(
        store
            .append(&s, ExpectedVersion::Exact(1), events(4, 1))
            .await,
        3,
    );
    assert_wrong_version(
        store
            .append(&s, ExpectedVersion::Exact(9), events(4, 1))
            .await,
        3,
    );
    assert_eq!(
        store
            .append(&s, ExpectedVersion::Any, events(4, 1))
            .await
            .unwrap()
            .stream_version,
        4
    );
    let fresh = stream();
    assert_eq!(
        store
            .append(&fresh, ExpectedVersion::Exact(0), events(1, 1))
            .await
            .unwrap()
            .stream_version,
        1
    );
    let fresh = stream();
    assert_eq!(
        store
            .append(&fresh, ExpectedVersion::Any, events(1, 2))
            .await
            .unwrap()
            .stream_version,
        2
    );
    assert_wrong_version(
        store
            .append(&stream(), ExpectedVersion::Exact(1), events(1, 1))
            .await,
        0,
    );
}

/// A failed append writes nothing.
pub async fn a_conflict_leaves_the_stream_unchanged(db: &dyn TestDatabase) {
    let store = db.open().await;
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, events(1, 2))
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    assert_wrong_version(
        store
            .append(&s, ExpectedVersion::Exact(1), events(3, 5))
            .await,
        2,
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), 2);
    assert_eq!(store.read_stream(&s, 1, 100).await.unwrap().len(), 2);
    assert_eq!(store.head_position().await.unwrap(), head);
}

/// 50 writers (on two store instances) race at the same expected version: one wins,
/// the others get `WrongExpectedVersion`, and the stream holds exactly the winner's events.
pub async fn exactly_one_of_fifty_concurrent_appenders_wins(db: &dyn TestDatabase) {
    // Arrange
    let first = db.open().await;
    let second = db.open().await;
    let s = stream();
    first
        .append(&s, ExpectedVersion::NoStream, events(0, 1))
        .await
        .unwrap();
    // Act
    let mut tasks = Vec::new();
    for i in 0..50_u64 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let s = s.clone();
        let batch = events(i * 10, 2);
        tasks.push(tokio::spawn(async move {
            let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
            (
                ids,
                store.append(&s, ExpectedVersion::Exact(1), batch).await,
            )
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (ids, result) = task.await.unwrap();
        match result {
            Ok(outcome) => winners.push((ids, outcome)),
            Err(StoreError::WrongExpectedVersion { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    // Assert
    assert_eq!(winners.len(), 1, "exactly one appender must win");
    let (ids, outcome) = &winners[0];
    assert_eq!(outcome.stream_version, 3);
    let stored = first.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(stored.len(), 3);
    let stored_ids: Vec<Uuid> = stored[1..].iter().map(|e| e.event_id).collect();
    assert_eq!(&stored_ids, ids);
    assert_eq!(first.read_all(0, 1000).await.unwrap().len(), 3);
}

/// One conflicting request fails the whole `append_many`.
pub async fn append_many_is_all_or_nothing(db: &dyn TestDatabase) {
    let store = db.open().await;
    let (a, b, c) = (stream(), stream(), stream());
    store
        .append(&a, ExpectedVersion::NoStream, events(1, 1))
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    let result = store
        .append_many(vec![
            AppendRequest {
                stream: a.clone(),
                expected: ExpectedVersion::Exact(1),
                events: events(2, 2),
            },
            AppendRequest {
                stream: b.clone(),
                expected: ExpectedVersion::NoStream,
                events: events(1, 3),
            },
            AppendRequest {
                stream: c.clone(),
                expected: ExpectedVersion::Exact(7),
                events: events(1, 1),
            },
        ])
        .await;
    match result {
        Err(StoreError::WrongExpectedVersion { stream, actual, .. }) => {
            assert_eq!(stream, c);
            assert_eq!(actual, 0);
        }
        other => panic!("expected WrongExpectedVersion on {c}, got {other:?}"),
    }
    assert_eq!(store.stream_version(&a).await.unwrap(), 1);
    assert_eq!(store.stream_version(&b).await.unwrap(), 0);
    assert_eq!(store.stream_version(&c).await.unwrap(), 0);
    assert_eq!(store.head_position().await.unwrap(), head);
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 1);
}

/// `append_many` outcomes follow request order, also with one stream named twice.
pub async fn append_many_reports_outcomes_in_request_order(db: &dyn TestDatabase) {
    let store = db.open().await;
    let (a, b) = (stream(), stream());
    let outcomes = store
        .append_many(vec![
            AppendRequest {
                stream: a.clone(),
                expected: ExpectedVersion::NoStream,
                events: events(1, 2),
            },
            AppendRequest {
                stream: b.clone(),
                expected: ExpectedVersion::Any,
                events: events(1, 1),
            },
            AppendRequest {
                stream: a.clone(),
                expected: ExpectedVersion::Exact(2),
                events: events(3, 3),
            },
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].stream_version, 2);
    assert_eq!(outcomes[1].stream_version, 1);
    assert_eq!(outcomes[2].stream_version, 5);
    assert!(outcomes[0].position < outcomes[1].position);
    assert!(outcomes[1].position < outcomes[2].position);
    let all = store.read_all(0, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_strictly_increasing(&all);
    assert_eq!(all[1].position, outcomes[0].position);
    assert_eq!(all[2].position, outcomes[1].position);
    assert_eq!(all[5].position, outcomes[2].position);
    let a_events = store.read_stream(&a, 1, 100).await.unwrap();
    let versions: Vec<u64> = a_events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
}

/// Empty batches, empty streams and empty stream names are `InvalidAppend`.
pub async fn rejects_malformed_appends(db: &dyn TestDatabase) {
    let store = db.open().await;
    assert!(matches!(
        store.append_many(vec![]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        store.append(&stream(), ExpectedVersion::Any, vec![]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        store.append("", ExpectedVersion::Any, events(1, 1)).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert_eq!(store.head_position().await.unwrap(), 0);
}

/// An event id is stored once: a second append with the same id fails and writes nothing.
pub async fn rejects_a_duplicate_event_id(db: &dyn TestDatabase) {
    let store = db.open().await;
    let e = event(1);
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .unwrap();
    let other = stream();
    let result = store
        .append(&other, ExpectedVersion::Any, vec![event(2), e])
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(_))),
        "expected InvalidAppend, got {result:?}"
    );
    assert_eq!(store.stream_version(&other).await.unwrap(), 0);
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 1);
}

/// `read_all` returns everything in global order; pages concatenate to the whole.
pub async fn reads_all_in_global_order_with_paging(db: &dyn TestDatabase) {
    let store = db.open().await;
    let streams: Vec<String> = (0..5).map(|_| stream()).collect();
    let mut expected_ids = Vec::new();
    for round in 0..5_u64 {
        for s in &streams {
            let e = event(round);
            expected_ids.push(e.event_id);
            store
                .append(s, ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
        }
    }
    let all = store.read_all(0, 1000).await.unwrap();
    assert_eq!(all.len(), 25);
    assert_strictly_increasing(&all);
    let ids: Vec<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, expected_ids);

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        assert!(page[0].position > after);
        after = last.position;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let head = store.head_position().await.unwrap();
    assert_eq!(head, all[24].position);
    assert!(store.read_all(head, 10).await.unwrap().is_empty());
    assert_eq!(
        store.read_all(all[9].position, 1000).await.unwrap(),
        all[10..].to_vec()
    );
}

/// `read_stream` starts at a version and honours its limit.
pub async fn reads_a_stream_from_a_version(db: &dyn TestDatabase) {
    let store = db.open().await;
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, events(1, 10))
        .await
        .unwrap();
    store
        .append(&stream(), ExpectedVersion::NoStream, events(1, 3))
        .await
        .unwrap();
    let versions = |events: Vec<RecordedEvent>| -> Vec<u64> {
        events.iter().map(|e| e.stream_version).collect()
    };
    assert_eq!(
        versions(store.read_stream(&s, 4, 3).await.unwrap()),
        vec![4, 5, 6]
    );
    assert_eq!(
        versions(store.read_stream(&s, 9, 100).await.unwrap()),
        vec![9, 10]
    );
    assert_eq!(
        versions(store.read_stream(&s, 0, 100).await.unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert!(store.read_stream(&s, 11, 100).await.unwrap().is_empty());
    assert!(
        store
            .read_stream(&s, u64::MAX, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.read_stream(&s, 1, 0).await.unwrap().is_empty());
}

/// `stream_version` and `head_position` are 0 when empty and track appends.
pub async fn reports_stream_version_and_head_position(db: &dyn TestDatabase) {
    let store = db.open().await;
    let (a, b) = (stream(), stream());
    assert_eq!(store.head_position().await.unwrap(), 0);
    assert_eq!(store.stream_version(&a).await.unwrap(), 0);
    let first = store
        .append(&a, ExpectedVersion::NoStream, events(1, 4))
        .await
        .unwrap();
    assert_eq!(store.stream_version(&a).await.unwrap(), 4);
    assert_eq!(store.head_position().await.unwrap(), first.position);
    let second = store
        .append(&b, ExpectedVersion::NoStream, events(1, 2))
        .await
        .unwrap();
    assert_eq!(store.stream_version(&b).await.unwrap(), 2);
    assert_eq!(store.stream_version(&a).await.unwrap(), 4);
    assert!(second.position > first.position);
    assert_eq!(store.head_position().await.unwrap(), second.position);
}

async fn collect(
    subscription: &mut domain::store::EventStream,
    count: usize,
    within: Duration,
) -> Vec<RecordedEvent> {
    let mut received = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + within;
    while received.len() < count {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(Some(Ok(event))) => received.push(event),
            Ok(Some(Err(error))) => panic!("subscription failed: {error}"),
            Ok(None) => panic!("subscription ended after {} events", received.len()),
            Err(_) => panic!("timed out with {} of {count} events", received.len()),
        }
    }
    received
}

/// Catch up over more than one batch, then live events from several concurrent writers
/// and a second instance: each delivered exactly once, in global order, nothing more.
pub async fn subscription_catches_up_then_goes_live(db: &dyn TestDatabase) {
    // Arrange: 1203 stored events, more than two catch-up batches.
    let store = db.open().await;
    let other = db.open().await;
    let mut expected: HashSet<Uuid> = HashSet::new();
    for chunk in 0..12_u64 {
        let batch = events(chunk * 100, 100);
        expected.extend(batch.iter().map(|e| e.event_id));
        store
            .append(&stream(), ExpectedVersion::NoStream, batch)
            .await
            .unwrap();
    }
    let batch = events(0, 3);
    expected.extend(batch.iter().map(|e| e.event_id));
    store
        .append(&stream(), ExpectedVersion::NoStream, batch)
        .await
        .unwrap();

    // Act: subscribe, then write concurrently from 4 tasks on this instance and 1 on another.
    let mut subscription = store.subscribe_all(0);
    let caught_up = collect(&mut subscription, 1203, Duration::from_secs(30)).await;
    let mut writers = Vec::new();
    for w in 0..5_u64 {
        let target = if w == 4 { other.clone() } else { store.clone() };
        writers.push(tokio::spawn(async move {
            let s = stream();
            let mut ids = Vec::new();
            for i in 0..20_u64 {
                let e = event(w * 100 + i);
                ids.push(e.event_id);
                target
                    .append(&s, ExpectedVersion::Exact(i), vec![e])
                    .await
                    .unwrap();
            }
            ids
        }));
    }
    let live = collect(&mut subscription, 100, Duration::from_secs(30)).await;
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }

    // Assert
    let all: Vec<RecordedEvent> = caught_up.into_iter().chain(live).collect();
    assert_strictly_increasing(&all);
    let ids: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len(), "an event was delivered twice");
    assert_eq!(ids, expected);
    assert_eq!(
        all,
        store.read_all(0, 10_000).await.unwrap(),
        "not the global order"
    );
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(extra.is_err(), "unexpected extra event: {extra:?}");
}

/// `subscribe_all(after)` starts strictly after `after`.
pub async fn subscription_starts_after_the_given_position(db: &dyn TestDatabase) {
    let store = db.open().await;
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, events(1, 5))
        .await
        .unwrap();
    let all = store.read_all(0, 100).await.unwrap();
    let mut subscription = store.subscribe_all(all[2].position);
    let received = collect(&mut subscription, 2, Duration::from_secs(10)).await;
    assert_eq!(received, all[3..].to_vec());
    let head = store.head_position().await.unwrap();
    let mut at_head = store.subscribe_all(head);
    store
        .append(&s, ExpectedVersion::Exact(5), events(6, 1))
        .await
        .unwrap();
    let received = collect(&mut at_head, 1, Duration::from_secs(10)).await;
    assert_eq!(received[0].stream_version, 6);
}

/// A subscriber on one instance sees what another instance (process) appends.
pub async fn subscription_sees_appends_from_another_instance(db: &dyn TestDatabase) {
    let subscriber = db.open().await;
    let writer = db.open().await;
    let mut subscription = subscriber.subscribe_all(0);
    // Let the subscription reach its idle wait first, so this is a live delivery.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = stream();
    let written = events(1, 3);
    writer
        .append(&s, ExpectedVersion::NoStream, written.clone())
        .await
        .unwrap();
    let received = collect(&mut subscription, 3, Duration::from_secs(5)).await;
    let ids: Vec<Uuid> = received.iter().map(|e| e.event_id).collect();
    let want: Vec<Uuid> = written.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, want);
}

/// Lifecycle streams (`apikey-<id>`, `org-<id>`) are hash-chained by the adapter: each
/// event's `prev_hash` is its predecessor's `hash`, across appends and within one
/// `append_many` naming a stream twice; a caller's own hash is replaced; usage and other
/// streams carry none; and the whole store verifies.
pub async fn chains_lifecycle_streams(db: &dyn TestDatabase) {
    let store = db.open().await;
    let key = format!("apikey-{}", Uuid::now_v7());
    let org = format!("org-{}", Uuid::now_v7());
    let usage = format!("apikey-usage-{}", Uuid::now_v7());
    let mut forged = events(1, 2);
    forged[0].metadata.hash = Some("forged".into());
    forged[1].metadata.prev_hash = Some("forged".into());
    store
        .append(&key, ExpectedVersion::NoStream, forged)
        .await
        .unwrap();
    store
        .append_many(vec![
            AppendRequest {
                stream: key.clone(),
                expected: ExpectedVersion::Exact(2),
                events: events(3, 1),
            },
            AppendRequest {
                stream: org.clone(),
                expected: ExpectedVersion::NoStream,
                events: events(1, 1),
            },
            AppendRequest {
                stream: usage.clone(),
                expected: ExpectedVersion::Any,
                events: forged_usage(),
            },
            AppendRequest {
                stream: key.clone(),
                expected: ExpectedVersion::Any,
                events: events(4, 1),
            },
        ])
        .await
        .unwrap();

    let chain = store.read_stream(&key, 1, 100).await.unwrap();
    assert_eq!(chain.len(), 4);
    assert_eq!(chain[0].metadata.prev_hash, None);
    for pair in chain.windows(2) {
        assert!(pair[0].metadata.hash.is_some());
        assert_ne!(pair[0].metadata.hash.as_deref(), Some("forged"));
        assert_eq!(pair[1].metadata.prev_hash, pair[0].metadata.hash);
    }
    for event in &chain {
        assert_eq!(
            event.metadata.hash,
            Some(domain::chain::HashInput::of(event).hash()),
            "stored hash of version {} matches its content",
            event.stream_version
        );
    }
    let org_events = store.read_stream(&org, 1, 100).await.unwrap();
    assert!(org_events[0].metadata.hash.is_some());
    let usage_events = store.read_stream(&usage, 1, 100).await.unwrap();
    assert_eq!(usage_events[0].metadata.hash, None);
    assert_eq!(usage_events[0].metadata.prev_hash, None);

    let report = crate::audit::verify_all(store.as_ref()).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.checked, 5);
}

fn forged_usage() -> Vec<NewEvent> {
    let mut usage = events(1, 1);
    usage[0].metadata.hash = Some("forged".into());
    usage
}

/// Runs SQL directly against an adapter's database, around the store: how the tamper
/// tests alter, delete and reorder stored events.
#[async_trait]
pub trait RawSql: Send + Sync {
    /// Executes one statement; panics on failure.
    async fn execute(&self, sql: &str);
}

/// Tampering with stored rows is caught by `audit::verify_all`, which names the event
/// where each chain breaks: an altered event in the middle of a stream, an altered last
/// event, a deleted event (named by the event after the gap) and two events whose
/// versions were swapped. Untouched streams stay intact.
pub async fn verify_names_tampered_events(store: Arc<dyn EventStore>, sql: &dyn RawSql) {
    let mut streams = Vec::new();
    for _ in 0..5 {
        let stream = format!("apikey-{}", Uuid::now_v7());
        for n in 1..=4 {
            store
                .append(&stream, ExpectedVersion::Exact(n - 1), events(n, 1))
                .await
                .unwrap();
        }
        streams.push(stream);
    }
    let position = |events: &[RecordedEvent], version: u64| {
        events
            .iter()
            .find(|e| e.stream_version == version)
            .map(|e| e.position)
            .unwrap()
    };
    let mut by_stream = Vec::new();
    for stream in &streams {
        by_stream.push(store.read_stream(stream, 1, 100).await.unwrap());
    }
    let intact = crate::audit::verify_all(store.as_ref()).await.unwrap();
    assert!(intact.is_intact(), "{:?}", intact.breaks);

    let altered = position(&by_stream[0], 2);
    sql.execute(&format!(
        "UPDATE events SET data = '{{\"n\": 999}}' WHERE position = {altered}"
    ))
    .await;
    let altered_last = position(&by_stream[1], 4);
    sql.execute(&format!(
        "UPDATE events SET event_type = 'KeyRevoked' WHERE position = {altered_last}"
    ))
    .await;
    let deleted = position(&by_stream[2], 2);
    let after_deleted = position(&by_stream[2], 3);
    sql.execute(&format!("DELETE FROM events WHERE position = {deleted}"))
        .await;
    let (swap_a, swap_b) = (position(&by_stream[3], 2), position(&by_stream[3], 3));
    sql.execute(&format!(
        "UPDATE events SET stream_version = -1 WHERE position = {swap_a}"
    ))
    .await;
    sql.execute(&format!(
        "UPDATE events SET stream_version = 2 WHERE position = {swap_b}"
    ))
    .await;
    sql.execute(&format!(
        "UPDATE events SET stream_version = 3 WHERE position = {swap_a}"
    ))
    .await;

    let report = crate::audit::verify_all(store.as_ref()).await.unwrap();
    assert!(!report.is_intact());
    let first = report.first_break().unwrap();
    assert_eq!(first.position, altered, "{first}");
    assert_eq!(first.stream, streams[0]);
    assert_eq!(first.stream_version, 2);
    assert_eq!(first.kind, domain::chain::BreakKind::Altered);
    let at = |position: u64| {
        report
            .breaks
            .iter()
            .filter(|b| b.position == position)
            .map(|b| b.kind.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(at(altered_last), [domain::chain::BreakKind::Altered]);
    assert_eq!(
        at(after_deleted),
        [domain::chain::BreakKind::Missing { from: 2, to: 2 }]
    );
    assert!(
        at(swap_a).contains(&domain::chain::BreakKind::Altered),
        "{:?}",
        report.breaks
    );
    assert!(
        !report.breaks.iter().any(|b| b.stream == streams[4]),
        "the untouched stream is intact"
    );
}
