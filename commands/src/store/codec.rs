//! What every adapter shares: validating appends, sealing new events on their hash chain,
//! mapping sqlx errors, and turning raw column values into a [`RecordedEvent`] without
//! ever panicking on bad data.

use chrono::{DateTime, Utc};
use domain::chain::{self, HashInput};
use domain::store::{AppendRequest, Metadata, NewEvent, RecordedEvent, StoreError};
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

/// A new event with its stream version and its sealed metadata (`prev_hash` and `hash`
/// set on a chained stream, cleared on any other), ready to be written.
pub struct SealedEvent<'a> {
    /// The stream it is appended to.
    pub stream: &'a str,
    /// Its version within the stream.
    pub version: u64,
    /// The event as the caller gave it (its own metadata unsealed).
    pub event: &'a NewEvent,
    /// The metadata to store.
    pub metadata: Metadata,
}

/// Seals a request's events on top of version `current` of their stream, whose last
/// event's hash is `head` (`None`: no events yet, or not chained): the one place where
/// the adapters call [`chain::seal`]. Returns the events and the stream's new head hash
/// (`None` on unchained streams). `recorded_at` must be what the store will keep
/// (microseconds), since the hash covers it.
pub(crate) fn seal<'a>(
    request: &'a AppendRequest,
    current: u64,
    head: Option<String>,
    recorded_at: &DateTime<Utc>,
) -> (Vec<SealedEvent<'a>>, Option<String>) {
    let mut prev_hash = head;
    let mut sealed = Vec::with_capacity(request.events.len());
    for (version, event) in (current + 1..).zip(&request.events) {
        let mut metadata = event.metadata.clone();
        prev_hash = chain::seal(
            HashInput {
                stream: &request.stream,
                stream_version: version,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at,
                data: &event.data,
                metadata: &event.metadata,
                prev_hash: prev_hash.as_deref(),
            },
            &mut metadata,
        );
        sealed.push(SealedEvent {
            stream: &request.stream,
            version,
            event,
            metadata,
        });
    }
    (sealed, prev_hash)
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

/// The columns of `events` whose SQL types differ between the back ends (a UUID, JSON
/// and a timestamp on Postgres; text on SQLite), as a back end read them: a value, or
/// why it is not one.
pub(crate) struct TypedColumns {
    pub event_id: Result<Uuid, String>,
    pub data: Result<serde_json::Value, String>,
    pub metadata: Result<serde_json::Value, String>,
    pub recorded_at: Result<DateTime<Utc>, String>,
}

/// One row as read from either SQL back end, before validation.
pub(crate) struct RawEvent {
    pub position: i64,
    pub stream: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i64,
    pub typed: TypedColumns,
}

impl RawEvent {
    /// Reads a row of `events`: the columns both back ends type alike here, the others
    /// through `typed` (given the row's position, for its errors). A column that does not
    /// decode is [`StoreError::Corrupt`] at the row's position.
    pub(crate) fn read<R>(
        row: &R,
        typed: impl FnOnce(i64) -> Result<TypedColumns, StoreError>,
    ) -> Result<RawEvent, StoreError>
    where
        R: sqlx::Row,
        for<'a> &'a str: sqlx::ColumnIndex<R>,
        i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let position: i64 = row
            .try_get("position")
            .map_err(|e| corrupt_at(0, format!("column position: {e}")))?;
        Ok(RawEvent {
            position,
            stream: column(row, "stream", position)?,
            stream_version: column(row, "stream_version", position)?,
            event_type: column(row, "event_type", position)?,
            schema_version: column(row, "schema_version", position)?,
            typed: typed(position)?,
        })
    }

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
        let typed = self.typed;
        let event_id = typed
            .event_id
            .map_err(|e| corrupt(format!("invalid event id: {e}")))?;
        let data = typed
            .data
            .map_err(|e| corrupt(format!("invalid data: {e}")))?;
        let metadata = typed
            .metadata
            .map_err(|e| corrupt(format!("invalid metadata: {e}")))
            .and_then(|value| {
                serde_json::from_value::<Metadata>(value)
                    .map_err(|e| corrupt(format!("invalid metadata: {e}")))
            })?;
        let recorded_at = typed
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
