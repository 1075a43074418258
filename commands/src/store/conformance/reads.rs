//! Reads and subscriptions: global order, paging, versions, catch-up then live.

use std::collections::HashSet;
use std::time::Duration;

use domain::store::{ExpectedVersion, RecordedEvent};
use futures::StreamExt;
use uuid::Uuid;

use super::{TestDatabase, assert_strictly_increasing, event, events, stream};

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
