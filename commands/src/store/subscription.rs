//! The subscription loop of the SQL back ends: catch up with `read_all` in batches,
//! then wait for a wake-up (an append in this process, a Postgres notification) or a
//! short poll interval (appends by other processes), and read again.
//!
//! The stream is built with `futures::stream::unfold`: there is no background task, so
//! dropping the stream stops everything.

use std::collections::VecDeque;
use std::time::Duration;

use domain::store::{EventStore, EventStream, RecordedEvent, StoreError};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// How a subscription reads and waits.
pub(crate) struct Config {
    /// Events per `read_all` call.
    pub batch: usize,
    /// How long to wait for a wake-up before reading again anyway.
    pub poll: Duration,
    /// Bumped (any new value) whenever new events may have been committed.
    pub wake: watch::Receiver<u64>,
    /// Awaited once before the first read (e.g. start the Postgres listener, so that no
    /// notification sent after the first read is missed).
    pub prepare: Option<BoxFuture<'static, ()>>,
}

struct State<S> {
    store: S,
    /// The position of the last event delivered (or the caller's `after`).
    last: u64,
    buffer: VecDeque<RecordedEvent>,
    config: Config,
    /// Read one event at a time (after a corrupt row was met in a batch).
    careful: bool,
    failed: bool,
}

/// Every event with position `> after`, each exactly once and in order. Ends after the
/// first error (which it yields).
pub(crate) fn subscribe<S>(store: S, after: u64, config: Config) -> EventStream
where
    S: EventStore + 'static,
{
    let state = State {
        store,
        last: after,
        buffer: VecDeque::new(),
        config,
        careful: false,
        failed: false,
    };
    Box::pin(futures::stream::unfold(state, next))
}

async fn next<S: EventStore>(
    mut state: State<S>,
) -> Option<(Result<RecordedEvent, StoreError>, State<S>)> {
    if state.failed {
        return None;
    }
    if let Some(prepare) = state.config.prepare.take() {
        prepare.await;
    }
    loop {
        if let Some(event) = state.buffer.pop_front() {
            state.last = event.position;
            return Some((Ok(event), state));
        }
        // Mark the current wake-up value as seen *before* reading: an append that commits
        // after this line bumps the value again, so `changed()` below cannot miss it.
        state.config.wake.borrow_and_update();
        let limit = if state.careful { 1 } else { state.config.batch };
        match state.store.read_all(state.last, limit).await {
            // A corrupt row somewhere in the batch: deliver the good events before it one
            // at a time, then the error.
            Err(StoreError::Corrupt { .. }) if !state.careful => state.careful = true,
            Err(error) => {
                state.failed = true;
                return Some((Err(error), state));
            }
            Ok(events) if events.is_empty() => {
                let poll = tokio::time::sleep(state.config.poll);
                tokio::pin!(poll);
                tokio::select! {
                    changed = state.config.wake.changed() => {
                        // The sender lives in the store, which this stream owns, so it is
                        // not dropped; if it were, fall back to plain polling.
                        if changed.is_err() {
                            poll.await;
                        }
                    }
                    () = &mut poll => {}
                }
            }
            Ok(events) => {
                // The store returns positions > last in increasing order; keep only those
                // that strictly increase so that an adapter bug can never duplicate one.
                let mut last = state.last;
                for event in events {
                    if event.position > last {
                        last = event.position;
                        state.buffer.push_back(event);
                    }
                }
            }
        }
    }
}
