//! The envelope: how an event is stored in KurrentDB (its custom metadata holds what the
//! SQL back ends keep in columns of their own), encoded, sealed, validated and decoded.

use std::collections::HashSet;

use ::kurrentdb::EventData;
use chrono::{DateTime, Utc};
use domain::chain;
use domain::store::{AppendRequest, Metadata, NewEvent, RecordedEvent, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::mapping::revision_to_version;
use crate::store::codec;

/// The custom metadata of an event: [`Metadata`] plus what the SQL adapters keep in
/// columns of their own.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredMetadata {
    #[serde(flatten)]
    pub metadata: Metadata,
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
}

/// The parts of a stored event, before validation.
pub(super) struct RawParts<'a> {
    /// Stream name without the store's prefix.
    pub stream: String,
    /// KurrentDB revision (from 0).
    pub revision: u64,
    /// Our position (already mapped).
    pub position: u64,
    /// The event type.
    pub event_type: String,
    /// The event id.
    pub event_id: Uuid,
    /// The data bytes (JSON).
    pub data: &'a [u8],
    /// The custom metadata bytes (JSON).
    pub custom_metadata: &'a [u8],
    /// The server's timestamp, used when the metadata has no `recorded_at`.
    pub created: DateTime<Utc>,
}

/// Validates and decodes a stored event; a bad part is [`StoreError::Corrupt`].
pub(super) fn decode_parts(raw: RawParts<'_>) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| codec::corrupt_at(raw.position, reason);
    let data: serde_json::Value =
        serde_json::from_slice(raw.data).map_err(|e| corrupt(format!("invalid data: {e}")))?;
    let stored: StoredMetadata = serde_json::from_slice(raw.custom_metadata)
        .map_err(|e| corrupt(format!("invalid metadata: {e}")))?;
    let recorded_at = match &stored.recorded_at {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| corrupt(format!("invalid recorded_at {text:?}: {e}")))?
            .with_timezone(&Utc),
        None => raw.created,
    };
    Ok(RecordedEvent {
        event_id: raw.event_id,
        stream: raw.stream,
        stream_version: revision_to_version(raw.revision),
        position: raw.position,
        event_type: raw.event_type,
        schema_version: stored.schema_version,
        recorded_at,
        metadata: stored.metadata,
        data,
    })
}

/// Encodes one event for KurrentDB (its metadata already sealed).
pub(super) fn encode_event(
    event: &NewEvent,
    sealed: Metadata,
    recorded_at: &DateTime<Utc>,
) -> Result<EventData, StoreError> {
    let stored = StoredMetadata {
        metadata: sealed,
        schema_version: event.schema_version,
        recorded_at: Some(chain::timestamp_text(recorded_at)),
    };
    EventData::json(&event.event_type, &event.data)
        .and_then(|data| data.id(event.event_id).metadata_as_json(&stored))
        .map_err(|e| StoreError::InvalidAppend(format!("event cannot be encoded: {e}")))
}

/// Seals and encodes a request's events on top of version `current` whose hash is
/// `head_hash` (unchained streams get their hashes cleared).
pub(super) fn seal_events(
    request: &AppendRequest,
    current: u64,
    head_hash: Option<String>,
    recorded_at: &DateTime<Utc>,
) -> Result<Vec<EventData>, StoreError> {
    let (sealed, _) = codec::seal(request, current, head_hash, recorded_at);
    sealed
        .into_iter()
        .map(|sealed| encode_event(sealed.event, sealed.metadata, recorded_at))
        .collect()
}

/// What KurrentDB needs beyond [`codec::validate`]: no `$` names (system streams and
/// events), and no event id twice in one call.
pub(super) fn validate(requests: &[AppendRequest]) -> Result<(), StoreError> {
    codec::validate(requests)?;
    let mut ids = HashSet::new();
    for request in requests {
        if request.stream.starts_with('$') {
            return Err(StoreError::InvalidAppend(format!(
                "stream {} starts with '$', which KurrentDB reserves for system streams",
                request.stream
            )));
        }
        for event in &request.events {
            if event.event_type.is_empty() || event.event_type.starts_with('$') {
                return Err(StoreError::InvalidAppend(format!(
                    "event type {:?} is empty or starts with '$' (system events)",
                    event.event_type
                )));
            }
            if !ids.insert(event.event_id) {
                return Err(StoreError::InvalidAppend(format!(
                    "event id {} appears twice in one append",
                    event.event_id
                )));
            }
        }
    }
    Ok(())
}
