//! The live subscription: a catch-up subscription to `$all` that resubscribes from the
//! last delivered position after a disconnect, backing off.

use std::time::Duration;

use ::kurrentdb::{SubscribeToAllOptions, Subscription, SubscriptionEvent};
use domain::store::{EventStream, RecordedEvent, StoreError};

use super::KurrentDbEventStore;
use super::mapping::{from_position, original};
use super::settings::{describe_error, is_transient};

/// The longest pause between two resubscription attempts.
pub(super) const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// Every event of the store after position `after`, live; ends only after an error that
/// a retry cannot fix.
pub(super) fn subscribe(store: KurrentDbEventStore, after: u64) -> EventStream {
    let state = SubscriptionState {
        store,
        last: after,
        subscription: None,
        failures: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, next_event))
}

struct SubscriptionState {
    store: KurrentDbEventStore,
    /// The position of the last event delivered (or the caller's `after`).
    last: u64,
    subscription: Option<Subscription>,
    /// Consecutive failed attempts (for the backoff).
    failures: u32,
    done: bool,
}

/// The pause before resubscription attempt `failures` (1, 2, ...): 100 ms doubling, at
/// most [`MAX_RESUBSCRIBE_DELAY`].
pub(super) fn resubscribe_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_millis(100u64.saturating_mul(1 << exponent)).min(MAX_RESUBSCRIBE_DELAY)
}

async fn next_event(
    mut state: SubscriptionState,
) -> Option<(Result<RecordedEvent, StoreError>, SubscriptionState)> {
    if state.done {
        return None;
    }
    loop {
        let subscription = match state.subscription.as_mut() {
            Some(subscription) => subscription,
            None => {
                let options = SubscribeToAllOptions::default()
                    .position(from_position(state.last))
                    .filter(state.store.filter())
                    .requires_leader(true);
                state
                    .subscription
                    .insert(state.store.client.subscribe_to_all(&options).await)
            }
        };
        match subscription.next_subscription_event().await {
            Ok(SubscriptionEvent::EventAppeared(event)) => {
                state.failures = 0;
                // The start position may be delivered again (and a resubscription repeats
                // nothing after `last`): keep only what is strictly after it.
                let position = original(&event).map_or(0, |e| e.position.commit);
                if position <= state.last {
                    continue;
                }
                match state.store.decode(&event) {
                    Ok(Some(recorded)) => {
                        state.last = recorded.position;
                        return Some((Ok(recorded), state));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        state.done = true;
                        return Some((Err(error), state));
                    }
                }
            }
            // Not on `Confirmed`: a server that confirms and then drops the subscription
            // at once must still see the backoff grow.
            Ok(SubscriptionEvent::CaughtUp(_)) => state.failures = 0,
            Ok(_) => {}
            Err(error) if is_transient(&error) => {
                state.subscription = None;
                state.failures = state.failures.saturating_add(1);
                let delay = resubscribe_delay(state.failures);
                tracing::warn!(
                    error = %describe_error(&error),
                    server = %state.store.target,
                    after = state.last,
                    retry_in_ms = delay.as_millis() as u64,
                    "KurrentDB subscription dropped; resubscribing from the last delivered position"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                state.done = true;
                return Some((Err(state.store.map_error(error)), state));
            }
        }
    }
}
