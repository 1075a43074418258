//! The hash chain: lifecycle streams are sealed by the adapter, and tampering with the
//! stored rows is caught by `audit::verify_all`.

use std::sync::Arc;

use async_trait::async_trait;
use domain::store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use uuid::Uuid;

use super::{TestDatabase, events};

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
