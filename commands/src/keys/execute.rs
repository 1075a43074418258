//! The one command loop, written once for every command (disintegrate's
//! `DecisionMaker::make`): load what the decision needs, decide with the pure aggregates,
//! append everything decided in one atomic `append_many`, each stream at exactly the
//! version it was read at (`NoStream` for a stream that did not exist), and when another
//! writer moved one of those streams on, decide again on the new state, a bounded number
//! of times, with a small jittered backoff. Because every attempt decides afresh, a
//! command is retried only while it is still valid: one that the winner's events make
//! invalid (a rotated key, a reached key limit, a stale `If-Match`) is refused by the
//! re-decision.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use domain::aggregate::Aggregate;
use domain::chain::CheckedFold;
use domain::events::DomainEvent;
use domain::store::{AppendRequest, EventStore, ExpectedVersion, Metadata, StoreError};

use super::{CommandContext, CommandError, Written};

/// How many times a command is decided before contention is reported as
/// [`CommandError::Contention`].
pub(crate) const MAX_ATTEMPTS: u32 = 25;

/// Events per `read_stream` call while loading an aggregate.
const PAGE: usize = 1000;

/// One command's decision (disintegrate's `Decision`): what it is about, and how it
/// decides from what it reads.
pub(crate) trait Decision {
    /// What the command answers besides where it left the store.
    type Output;

    /// The stream the command is about: the answer's [`Written::version`] is its version
    /// after the command (or as read, when nothing was appended).
    fn stream(&self) -> String;

    /// Reads what the decision needs through `tx`, decides, and records there what to
    /// append. Runs again on a fresh [`Attempt`] after a lost race, so it must not depend
    /// on what an earlier attempt read; what it computes once and reuses (a hashed token,
    /// keys known not to count) it keeps in `self`.
    async fn decide(&mut self, tx: &mut Attempt) -> Result<Self::Output, CommandError>;
}

/// Runs a command to the end: decides, appends everything decided at once, and on a lost
/// race (nothing was written) decides again, up to [`MAX_ATTEMPTS`] times.
pub(crate) async fn execute<D: Decision>(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    decision: &mut D,
) -> Result<(D::Output, Written), CommandError> {
    let main = decision.stream();
    let mut backoff = Backoff::default();
    loop {
        let mut attempt = Attempt::new(store.clone(), ctx.metadata());
        let decided = decision.decide(&mut attempt).await?;
        match attempt.commit(&main).await? {
            Some(written) => return Ok((decided, written)),
            None => backoff.wait().await?,
        }
    }
}

/// One attempt at a command: the streams it read, at which versions, and what it decided
/// to append to them.
pub(crate) struct Attempt {
    store: Arc<dyn EventStore>,
    metadata: Metadata,
    /// Every stream read: its version and the global position of its last event.
    read: HashMap<String, (u64, u64)>,
    /// What to append, in the order it was recorded.
    appends: Vec<AppendRequest>,
}

impl Attempt {
    fn new(store: Arc<dyn EventStore>, metadata: Metadata) -> Attempt {
        Attempt {
            store,
            metadata,
            read: HashMap::new(),
            appends: Vec::new(),
        }
    }

    /// Replays `stream` into `A`'s state (its hash chain checked: [`load`]); whatever is
    /// later appended to it expects the version read here.
    pub(crate) async fn load<A: Aggregate>(
        &mut self,
        stream: &str,
    ) -> Result<A::State, CommandError> {
        let loaded = load::<A>(self.store.as_ref(), stream).await?;
        self.read
            .insert(stream.to_owned(), (loaded.version, loaded.position));
        Ok(loaded.state)
    }

    /// The store, for reads whose versions do not matter to the append (the states a
    /// decision only counts).
    pub(crate) fn store(&self) -> &dyn EventStore {
        self.store.as_ref()
    }

    /// The version `stream` was read at (0: no stream, or not read).
    pub(crate) fn version(&self, stream: &str) -> u64 {
        self.read.get(stream).map_or(0, |&(version, _)| version)
    }

    /// Records `events` for `stream`, to be appended at the version it was read at (a
    /// stream not read must not exist yet), with the command's metadata. Streams are
    /// appended in the order they were recorded; no events, no append.
    pub(crate) fn append<E: DomainEvent>(&mut self, stream: &str, events: &[E]) {
        if events.is_empty() {
            return;
        }
        let expected = match self.version(stream) {
            0 => ExpectedVersion::NoStream,
            version => ExpectedVersion::Exact(version),
        };
        self.appends.push(AppendRequest {
            stream: stream.to_owned(),
            expected,
            events: events
                .iter()
                .map(|e| e.to_new_event(self.metadata.clone()))
                .collect(),
        });
    }

    /// Appends everything recorded, all or nothing: where that left `main`, or `None` when
    /// another writer moved a stream on first (nothing was written).
    async fn commit(self, main: &str) -> Result<Option<Written>, CommandError> {
        let (read_version, read_position) = self.read.get(main).copied().unwrap_or((0, 0));
        if self.appends.is_empty() {
            return Ok(Some(Written {
                position: read_position,
                version: read_version,
            }));
        }
        let main_request = self.appends.iter().position(|r| r.stream == main);
        match self.store.append_many(self.appends).await {
            Ok(outcomes) => Ok(Some(Written {
                position: outcomes.iter().map(|o| o.position).max().unwrap_or(0),
                version: main_request
                    .and_then(|i| outcomes.get(i))
                    .map_or(read_version, |o| o.stream_version),
            })),
            Err(StoreError::WrongExpectedVersion { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// An aggregate's state as loaded, with where its stream ends.
pub(crate) struct Loaded<S> {
    pub(crate) state: S,
    /// The stream's version (0 = no stream).
    pub(crate) version: u64,
    /// The global position of the stream's last event (0 = no stream).
    pub(crate) position: u64,
}

/// Replays a stream into an aggregate's state, checking its hash chain on the way
/// ([`CheckedFold`]): every command and every key cache fill goes through here, so a broken
/// chain is refused with [`CommandError::Integrity`] (reported once:
/// [`crate::audit::report_break`]) instead of being decided on. The check is one sha256 per
/// event already read, and runs only when a stream is folded (a command, or a cache fill),
/// never per authenticated request.
pub(crate) async fn load<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Loaded<A::State>, CommandError> {
    let mut fold = CheckedFold::<A>::new();
    loop {
        let batch = store.read_stream(stream, fold.version + 1, PAGE).await?;
        let full = batch.len() == PAGE;
        for recorded in &batch {
            let decoded = fold.apply(recorded);
            if let Some(broken) = fold.first_break() {
                crate::audit::report_break(crate::audit::Reader::Commands, broken);
                return Err(CommandError::Integrity(Box::new(broken.clone())));
            }
            decoded.map_err(|e| StoreError::Corrupt {
                position: e.position,
                reason: e.to_string(),
            })?;
        }
        if !full {
            return Ok(Loaded {
                state: fold.state,
                version: fold.version,
                position: fold.position,
            });
        }
    }
}

/// Counts a command's attempts and sleeps between them: a short, jittered, growing
/// backoff, so that racing writers spread out instead of colliding again.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// Waits before the next attempt, or gives up after [`MAX_ATTEMPTS`].
    async fn wait(&mut self) -> Result<(), CommandError> {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            tracing::warn!(attempts = self.attempts, "gave up under contention");
            return Err(CommandError::Contention {
                attempts: self.attempts,
            });
        }
        tracing::debug!(attempt = self.attempts, "concurrent write; deciding again");
        let cap_ms = u64::from(self.attempts.min(10)) * 4;
        let jitter_ms = u64::from(OsRng.next_u32()) % (cap_ms + 1);
        tokio::time::sleep(Duration::from_millis(1 + jitter_ms)).await;
        Ok(())
    }
}
