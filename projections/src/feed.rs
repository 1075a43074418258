//! One read of the event store per process, shared by every projector.
//!
//! Without it, each projector (key list, organisations, integrity, usage, the revocation
//! relay) runs its own `subscribe_all`: every event, usage events included, is read from
//! the store and decoded once per projector, although most projectors handle only key and
//! organisation events. A [`Feed`] keeps one live subscription and hands the same decoded
//! event (`Arc<RecordedEvent>`) to every projector that follows it.
//!
//! A follower first catches up with `read_all` from its own position, then takes events
//! from the shared live subscription, skipping those it has already seen. It subscribes to
//! the live side *before* it catches up, so nothing can fall between the two: any event
//! broadcast before that moment was already committed and visible, so the catch-up reads
//! it. A follower that falls more than the buffer behind (it was busy committing) goes
//! back to `read_all` from where it is, and rejoins; one that finds the live side ended (a
//! store error) restarts it. Each event is still delivered exactly once and in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use domain::store::{EventStore, RecordedEvent, StoreError};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

/// Events per `read_all` while catching up.
const CATCH_UP_BATCH: usize = 1_000;

/// Live events kept for followers that are momentarily busy (a few seconds of calls at
/// full load; each slot is a pointer).
const LIVE_BUFFER: usize = 32_768;

/// A stream of shared events, in global order.
pub type FeedStream = BoxStream<'static, Result<Arc<RecordedEvent>, StoreError>>;

/// The shared subscription; cheap to clone.
#[derive(Clone)]
pub struct Feed {
    store: Arc<dyn EventStore>,
    buffer: usize,
    live: Arc<Mutex<Option<broadcast::Sender<Arc<RecordedEvent>>>>>,
}

impl Feed {
    /// A feed over `store`; the live subscription starts with the first follower.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self::with_buffer(store, LIVE_BUFFER)
    }

    /// A feed whose live side keeps `buffer` events for busy followers (at least 1); a
    /// follower further behind reads the store instead.
    pub fn with_buffer(store: Arc<dyn EventStore>, buffer: usize) -> Self {
        Self {
            store,
            buffer: buffer.max(1),
            live: Arc::new(Mutex::new(None)),
        }
    }

    /// The store this feed reads.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Every event with position `> after`, each once and in order; ends after the first
    /// error (which it yields), as `EventStore::subscribe_all` does.
    pub fn follow(&self, after: u64) -> FeedStream {
        futures::stream::unfold(Follower::new(self.clone(), after), Follower::next).boxed()
    }

    /// A receiver of the live side, starting it (from the store's head) if it is not
    /// running. The receiver exists before the live task reads anything.
    async fn receiver(&self) -> Result<broadcast::Receiver<Arc<RecordedEvent>>, StoreError> {
        if let Some(tx) = self.running() {
            return Ok(tx.subscribe());
        }
        let head = self.store.head_position().await?;
        let mut slot = self.live.lock().map_err(poisoned)?;
        if let Some(tx) = slot.as_ref().filter(|tx| tx.receiver_count() > 0) {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.buffer);
        *slot = Some(tx.clone());
        drop(slot);
        let mut events = self.store.subscribe_all(head);
        tokio::spawn(async move {
            while let Some(item) = events.next().await {
                match item {
                    // No follower left: stop reading; the next follower starts it again.
                    Ok(event) => {
                        if tx.send(Arc::new(event)).is_err() {
                            break;
                        }
                    }
                    // Dropping the sender tells every follower; each goes back to reading
                    // the store, which reports the error itself if it persists.
                    Err(e) => {
                        tracing::warn!(error = %e, "shared event subscription ended; followers resubscribe");
                        break;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// The live side's sender, if its task still runs and has followers.
    fn running(&self) -> Option<broadcast::Sender<Arc<RecordedEvent>>> {
        let slot = self.live.lock().ok()?;
        slot.as_ref().filter(|tx| tx.receiver_count() > 0).cloned()
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("the shared subscription's lock is poisoned".into())
}

struct Follower {
    feed: Feed,
    /// The position of the last event delivered (or the caller's `after`).
    last: u64,
    /// Read from the store, not yet delivered.
    buffer: VecDeque<RecordedEvent>,
    /// The live side (subscribed before the catch-up that precedes it).
    live: Option<broadcast::Receiver<Arc<RecordedEvent>>>,
    /// The store must be read before live events are taken (just subscribed, or lagged).
    backlog: bool,
    /// Read one event at a time (after a corrupt row was met in a batch), so that the
    /// good events before it are delivered first, as `subscribe_all` does.
    careful: bool,
    failed: bool,
}

impl Follower {
    fn new(feed: Feed, after: u64) -> Self {
        Self {
            feed,
            last: after,
            buffer: VecDeque::new(),
            live: None,
            backlog: true,
            careful: false,
            failed: false,
        }
    }

    async fn next(mut self) -> Option<(Result<Arc<RecordedEvent>, StoreError>, Self)> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.last = event.position;
                return Some((Ok(Arc::new(event)), self));
            }
            if self.live.is_none() {
                // Subscribe before catching up, so nothing falls between the two.
                match self.feed.receiver().await {
                    Ok(rx) => {
                        self.live = Some(rx);
                        self.backlog = true;
                    }
                    Err(e) => return self.fail(e),
                }
            }
            if self.backlog {
                let limit = if self.careful { 1 } else { CATCH_UP_BATCH };
                match self.feed.store.read_all(self.last, limit).await {
                    // A short read reached the head as of now, after the subscription:
                    // from here on the live side has everything.
                    Ok(events) => {
                        self.backlog = events.len() == limit;
                        self.buffer.extend(events);
                    }
                    Err(StoreError::Corrupt { .. }) if !self.careful => self.careful = true,
                    Err(e) => return self.fail(e),
                }
                continue;
            }
            let Some(rx) = self.live.as_mut() else {
                continue;
            };
            match rx.recv().await {
                Ok(event) if event.position <= self.last => {}
                Ok(event) => {
                    self.last = event.position;
                    return Some((Ok(event), self));
                }
                // Fell behind the buffer: read the store from where we are, then rejoin
                // (the receiver goes on from the oldest event it still holds).
                Err(broadcast::error::RecvError::Lagged(_)) => self.backlog = true,
                // The live side ended (a store error): start it again.
                Err(broadcast::error::RecvError::Closed) => self.live = None,
            }
        }
    }

    fn fail(mut self, error: StoreError) -> Option<(Result<Arc<RecordedEvent>, StoreError>, Self)> {
        self.failed = true;
        Some((Err(error), self))
    }
}
