//! How read models store values that the `Any` driver has no type for.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::page::QueryError;

/// A timestamp as stored: RFC 3339, UTC, always six fractional digits and a `Z`, so that
/// text order is time order on both back ends.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads back a stored timestamp (or one from a cursor) and returns it canonical.
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Stream versions and positions fit in `BIGINT` (the stores use `BIGINT` too).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A column of a row, with the table named on failure.
pub(crate) fn column<'r, T>(
    row: &'r AnyRow,
    table: &'static str,
    name: &str,
) -> Result<T, QueryError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(|e| QueryError::Corrupt {
        table,
        reason: format!("column {name}: {e}"),
    })
}

/// A JSON array of strings stored as text.
pub(crate) fn string_array(
    row: &AnyRow,
    table: &'static str,
    name: &str,
) -> Result<Vec<String>, QueryError> {
    let text: String = column(row, table, name)?;
    serde_json::from_str(&text).map_err(|e| QueryError::Corrupt {
        table,
        reason: format!("column {name}: {e}"),
    })
}
