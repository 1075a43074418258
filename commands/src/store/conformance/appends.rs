//! Appends: expected versions, conflicts, atomic multi-stream appends, malformed appends.

use domain::store::{AppendRequest, ExpectedVersion, StoreError};
use uuid::Uuid;

use super::{
    TestDatabase, assert_strictly_increasing, assert_wrong_version, event, events, stream,
};

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
