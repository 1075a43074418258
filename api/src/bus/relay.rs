//! The revocation relay: a follower of the event store that publishes a notice for every
//! change to a key that the auth layer reads, and for every plan change (the rate limiter
//! caches plans). It runs as a projection (checkpoint
//! `revocation_relay` in the read-model database, one leader per cluster), publishing
//! before the checkpoint commits: a crash between a command's append and its node-local
//! publish, or between a publish and the checkpoint, loses nothing (at worst a notice goes
//! out twice, which receivers ignore by version). While the bus is down, publishing fails
//! and the relay retries from its checkpoint.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use domain::bus::{Notice, PlanNotice, RevocationBus, RevocationNotice};
use domain::events::{ApiKeyEvent, OrganizationEvent};
use domain::ids::StreamId;
use domain::store::{EventStore, RecordedEvent};
use projections::{Projection, ProjectionError, ReadDb};
use sqlx::AnyConnection;

/// The relay's checkpoint name.
pub const NAME: &str = "revocation_relay";

/// Publishes key change notices from the event store.
pub struct RevocationRelay {
    bus: Arc<dyn RevocationBus>,
}

impl RevocationRelay {
    /// A relay publishing on `bus`.
    pub fn new(bus: Arc<dyn RevocationBus>) -> Self {
        Self { bus }
    }
}

/// The notice for a recorded event, if it is a key change the auth layer reads. An event
/// this release cannot decode still gives a notice: reloading a key is always safe.
pub fn notice_for(event: &RecordedEvent) -> Option<Notice> {
    match StreamId::parse(&event.stream)? {
        StreamId::ApiKey(key_id) => match ApiKeyEvent::from_recorded(event) {
            Ok(decoded) => RevocationNotice::for_event(key_id, event.stream_version, &decoded)
                .map(Notice::from),
            Err(_) => Some(Notice::Key(RevocationNotice {
                key_id,
                stream_version: event.stream_version,
            })),
        },
        // Only a plan change: the rate limiter caches the plan.
        StreamId::Organization(org_id) => match OrganizationEvent::from_recorded(event) {
            Ok(decoded) => {
                PlanNotice::for_event(org_id, event.stream_version, &decoded).map(Notice::from)
            }
            Err(_) => Some(Notice::Plan(PlanNotice {
                org_id,
                stream_version: event.stream_version,
            })),
        },
        _ => None,
    }
}

#[async_trait]
impl Projection for RevocationRelay {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        notice_for(event).is_some()
    }

    async fn apply(
        &self,
        _conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if let Some(notice) = notice_for(event) {
            self.bus
                .publish(notice)
                .await
                .map_err(|e| ProjectionError::Sink(e.to_string()))?;
            metrics::counter!("keyledger_relay_published_total").increment(1);
        }
        Ok(())
    }
}

/// On the relay's first start against a store, begins at the store's head: changes made
/// before any relay ran were never cached under a relay's watch, and replaying a long
/// history would only make every node reload keys for nothing.
pub async fn start_at_head(db: &ReadDb, store: &dyn EventStore) -> Result<(), ProjectionError> {
    let head = store.head_position().await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(NAME)
    .bind(i64::try_from(head).unwrap_or(i64::MAX))
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true))
    .execute(db.pool())
    .await?;
    Ok(())
}
