//! The shared feed against real stores: followers that start at different positions, fall
//! behind the live buffer, or come after every other follower left each get every event
//! exactly once and in global order, while appends run.
// Test helpers outside `#[test]` functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;

use std::time::Duration;

use domain::store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};
use futures::StreamExt;
use projections::Feed;
use projections::feed::FeedStream;
use uuid::Uuid;

/// Appends `n` events over 7 streams, `per_append` at a time.
async fn append(store: &dyn EventStore, n: usize, per_append: usize) {
    let mut i = 0;
    while i < n {
        let requests = (0..per_append.min(n - i))
            .map(|k| AppendRequest {
                stream: format!("feed-{}", (i + k) % 7),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "Tick".to_owned(),
                    schema_version: 1,
                    data: serde_json::json!({ "i": i + k }),
                    metadata: Metadata {
                        actor: "test".into(),
                        ..Metadata::default()
                    },
                }],
            })
            .collect();
        store.append_many(requests).await.unwrap();
        i += per_append;
    }
}

/// Every position in the store after `after`, in order.
async fn positions_after(store: &dyn EventStore, after: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut last = after;
    loop {
        let page = store.read_all(last, 1000).await.unwrap();
        let Some(end) = page.last() else {
            return out;
        };
        last = end.position;
        out.extend(page.iter().map(|e| e.position));
    }
}

/// Takes `n` events from `stream` (each read optionally followed by a pause), failing
/// after 60 s.
async fn take(mut stream: FeedStream, n: usize, pause: Option<Duration>) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    let collect = async {
        while got.len() < n {
            let event = stream.next().await.expect("the feed ended").unwrap();
            got.push(event.position);
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("the feed did not deliver in 60 s");
    got
}

async fn it_should_give_each_follower_every_event_once_in_order(env: Env) {
    // Arrange: a backlog, and followers at 0 and in the middle of it.
    append(env.store.as_ref(), 300, 50).await;
    let middle = positions_after(env.store.as_ref(), 0).await[149];
    let feed = Feed::new(env.store.clone());
    let a = feed.follow(0);
    let b = feed.follow(middle);

    // Act: both follow while 1,200 more events are appended in small batches.
    let writer = {
        let store = env.store.clone();
        tokio::spawn(async move { append(store.as_ref(), 1200, 3).await })
    };
    let (got_a, got_b) = tokio::join!(take(a, 1500, None), take(b, 1350, None));
    writer.await.unwrap();

    // Assert: exactly the store's positions after each start, in order.
    assert_eq!(got_a, positions_after(env.store.as_ref(), 0).await);
    assert_eq!(got_b, positions_after(env.store.as_ref(), middle).await);
}

async fn it_should_catch_up_a_follower_that_fell_behind_the_buffer(env: Env) {
    // Arrange: a live buffer of 4 events, a fast follower and a slow one.
    let feed = Feed::with_buffer(env.store.clone(), 4);
    let fast = feed.follow(0);
    let slow = feed.follow(0);

    // Act: 400 events arrive while the slow one pauses after each event it takes.
    let writer = {
        let store = env.store.clone();
        tokio::spawn(async move { append(store.as_ref(), 400, 5).await })
    };
    let (got_fast, got_slow) = tokio::join!(
        take(fast, 400, None),
        take(slow, 400, Some(Duration::from_millis(2)))
    );
    writer.await.unwrap();

    // Assert: both got all 400, once each, in order.
    let all = positions_after(env.store.as_ref(), 0).await;
    assert_eq!(all.len(), 400);
    assert_eq!(got_fast, all);
    assert_eq!(got_slow, all);
}

async fn it_should_restart_the_live_side_after_every_follower_left(env: Env) {
    // Arrange: a follower that reads a little and leaves.
    let feed = Feed::new(env.store.clone());
    append(env.store.as_ref(), 20, 5).await;
    let first = take(feed.follow(0), 20, None).await;
    let last_seen = *first.last().unwrap();

    // Act: events arrive with nobody following, then a new follower comes, then more.
    append(env.store.as_ref(), 20, 5).await;
    let next = feed.follow(last_seen);
    let writer = {
        let store = env.store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            append(store.as_ref(), 30, 1).await;
        })
    };
    let got = take(next, 50, None).await;
    writer.await.unwrap();

    // Assert: the new follower got everything after what the first one saw.
    assert_eq!(got, positions_after(env.store.as_ref(), last_seen).await);
}

test_support::backend_tests!(
    with common::env;
    it_should_give_each_follower_every_event_once_in_order,
    it_should_catch_up_a_follower_that_fell_behind_the_buffer,
    it_should_restart_the_live_side_after_every_follower_left,
);
