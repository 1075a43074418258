//! Tamper-refusing read models: the key list and the organisations check each
//! lifecycle event against its stream's hash chain before applying it
//! ([`domain::chain::ChainHead::check`], the check every reader runs), with the chain's
//! head stored beside the row (`chain_hash`, and `version`). A break marks the row
//! `integrity = 'broken'` for good (`integrity_version`: where it first showed), is
//! counted in `keyledger_integrity_failures_total{reader="projection"}` and logged at
//! ERROR once per process; the event's content is still applied, so that the row shows
//! what the stream now says, marked, instead of silently.

use domain::chain::{ChainBreak, ChainHead, first_report};
use domain::store::RecordedEvent;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::runtime::ProjectionError;
use crate::sqlval::{column, to_i64};

/// `integrity` of a row whose stream has a break.
pub const BROKEN: &str = "broken";
/// `integrity` of a row whose hashed events all check out.
pub const INTACT: &str = "intact";
/// `integrity` of a row with only events written before the chain existed.
pub const UNVERIFIABLE: &str = "unverifiable";

/// The marks to store on a row after applying an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marks {
    integrity: &'static str,
    integrity_version: Option<i64>,
    chain_hash: Option<String>,
}

/// Checks `event` against the chain head stored on `table`'s row `id` (none yet: the
/// stream's start). `None` when the row already includes this event (a replay: nothing
/// to apply); otherwise the marks to write with [`write`] once the event is applied.
pub(crate) async fn check(
    conn: &mut AnyConnection,
    table: &'static str,
    id: &str,
    event: &RecordedEvent,
) -> Result<Option<Marks>, ProjectionError> {
    // `table` is one of this crate's constants.
    let row: Option<AnyRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version, integrity, integrity_version, chain_hash FROM {table} WHERE id = $1"
    )))
    .bind(id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let (mut head, was_broken, integrity_version) = match &row {
        None => (ChainHead::new(), false, None),
        Some(row) => {
            let corrupt = |e| ProjectionError::Decode {
                position: event.position,
                reason: format!("{e}"),
            };
            let version: i64 = column(row, table, "version").map_err(corrupt)?;
            if version >= to_i64(event.stream_version) {
                return Ok(None);
            }
            let integrity: String = column(row, table, "integrity").map_err(corrupt)?;
            let broken_at: Option<i64> =
                column(row, table, "integrity_version").map_err(corrupt)?;
            let hash: Option<String> = column(row, table, "chain_hash").map_err(corrupt)?;
            let head = ChainHead {
                version: u64::try_from(version).unwrap_or(0),
                hash,
                hashed: integrity != UNVERIFIABLE,
            };
            (head, integrity == BROKEN, broken_at)
        }
    };
    let breaks = head.check(event);
    for broken in &breaks {
        report(broken);
    }
    let marks = if was_broken || !breaks.is_empty() {
        Marks {
            integrity: BROKEN,
            integrity_version: integrity_version.or(Some(to_i64(event.stream_version))),
            chain_hash: head.hash,
        }
    } else {
        Marks {
            integrity: if head.hashed { INTACT } else { UNVERIFIABLE },
            integrity_version: None,
            chain_hash: head.hash,
        }
    };
    Ok(Some(marks))
}

/// Stores `marks` on `table`'s row `id` (after the event's own statement).
pub(crate) async fn write(
    conn: &mut AnyConnection,
    table: &'static str,
    id: &str,
    marks: Marks,
) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET integrity = $1, integrity_version = $2, chain_hash = $3 \
         WHERE id = $4"
    )))
    .bind(marks.integrity)
    .bind(marks.integrity_version)
    .bind(marks.chain_hash)
    .bind(id.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts and logs a break as `commands::audit::report_break` does, with
/// `reader="projection"` (this crate does not depend on `commands`).
fn report(broken: &ChainBreak) {
    metrics::counter!(
        "keyledger_integrity_failures_total",
        "stream" => broken.stream_kind(),
        "reader" => "projection",
    )
    .increment(1);
    if first_report(broken) {
        tracing::error!(
            stream = %broken.stream,
            stream_version = broken.stream_version,
            position = broken.position,
            reader = "projection",
            "hash chain broken: {}; the read model marks it integrity = broken",
            broken.kind
        );
    } else {
        tracing::debug!(
            stream = %broken.stream,
            stream_version = broken.stream_version,
            "hash chain broken (already reported)"
        );
    }
}
