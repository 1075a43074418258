//! What both adapters share: validating appends, mapping sqlx errors, and turning raw
//! column values into a [`RecordedEvent`] without ever panicking on bad data.

use chrono::{DateTime, Utc};
use domain::store::{AppendRequest, Metadata, RecordedEvent, StoreError};
use uuid::Uuid;

/// Rejects malformed appends before any I/O: an empty batch, an empty stream name or a
/// request without events.
pub(crate) fn validate(requests: &[AppendRequest]) -> Result<(), StoreError> {
    if requests.is_empty() {
        return Err(StoreError::InvalidAppend("no streams to append to".into()));
    }
    for request in requests {
        if request.stream.is_empty() {
            return Err(StoreError::InvalidAppend("empty stream name".into()));
        }
        if request.events.is_empty() {
            return Err(StoreError::InvalidAppend(format!(
                "no events for stream {}",
                request.stream
            )));
        }
    }
    Ok(())
}

/// Any sqlx failure that is not a decoding problem or a known conflict: the store is
/// unreachable or broken.
pub(crate) fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Whether `error` is a unique-constraint violation (by SQLSTATE / extended code, through
/// `DatabaseError::is_unique_violation`, never by message text).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A `u64` -> `i64` conversion for binding; values beyond `i64::MAX` cannot be stored.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::InvalidAppend(format!("{what} {value} is too large")))
}

/// Saturating `usize` -> `i64` for LIMIT clauses.
pub(crate) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The serialised form of [`Metadata`]. Serialising a struct of strings cannot fail, but
/// if it ever did the append is refused rather than stored without metadata.
pub(crate) fn metadata_json(metadata: &Metadata) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(metadata)
        .map_err(|e| StoreError::InvalidAppend(format!("metadata cannot be encoded: {e}")))
}

/// One row as read from either backend, before validation.
pub(crate) struct RawEvent {
    pub position: i64,
    pub event_id: Result<Uuid, String>,
    pub stream: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i64,
    pub data: Result<serde_json::Value, String>,
    pub metadata: Result<serde_json::Value, String>,
    pub recorded_at: Result<DateTime<Utc>, String>,
}

impl RawEvent {
    /// Validates every field; a bad one is [`StoreError::Corrupt`] at this row's position.
    pub(crate) fn into_recorded(self) -> Result<RecordedEvent, StoreError> {
        let position = u64::try_from(self.position)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| corrupt_at(0, format!("invalid position {}", self.position)))?;
        let corrupt = |reason: String| corrupt_at(position, reason);
        let stream_version = u64::try_from(self.stream_version)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| corrupt(format!("invalid stream version {}", self.stream_version)))?;
        let schema_version = u32::try_from(self.schema_version)
            .map_err(|_| corrupt(format!("invalid schema version {}", self.schema_version)))?;
        let event_id = self
            .event_id
            .map_err(|e| corrupt(format!("invalid event id: {e}")))?;
        let data = self
            .data
            .map_err(|e| corrupt(format!("invalid data: {e}")))?;
        let metadata = self
            .metadata
            .map_err(|e| corrupt(format!("invalid metadata: {e}")))
            .and_then(|value| {
                serde_json::from_value::<Metadata>(value)
                    .map_err(|e| corrupt(format!("invalid metadata: {e}")))
            })?;
        let recorded_at = self
            .recorded_at
            .map_err(|e| corrupt(format!("invalid recorded_at: {e}")))?;
        if self.stream.is_empty() {
            return Err(corrupt("empty stream name".into()));
        }
        Ok(RecordedEvent {
            event_id,
            stream: self.stream,
            stream_version,
            position,
            event_type: self.event_type,
            schema_version,
            recorded_at,
            metadata,
            data,
        })
    }
}

pub(crate) fn corrupt_at(position: u64, reason: String) -> StoreError {
    StoreError::Corrupt { position, reason }
}

/// Reads a column, turning a decode failure (wrong type, NULL) into a `Corrupt` error at
/// the row's position.
pub(crate) fn column<'r, R, T>(row: &'r R, name: &str, position: i64) -> Result<T, StoreError>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    row.try_get::<T, _>(name).map_err(|e| {
        corrupt_at(
            u64::try_from(position).unwrap_or(0),
            format!("column {name}: {e}"),
        )
    })
}

/// [`StoreError::Unavailable`] with a message of our own.
pub(crate) fn unavailable_msg(message: &str) -> StoreError {
    StoreError::Unavailable(message.to_owned())
}
