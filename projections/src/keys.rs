//! The key list read model (projection `key_list`, table `api_keys`) and its queries.
//!
//! One row per key, built from the lifecycle stream `apikey-<id>`. A row never holds the
//! token's secret or its hash: `KeyCreated` carries the hash, and it is never copied.
//! Status is not stored: it depends on the clock, so it is computed at query time from
//! `revoked_at` and `expires_at` (revoked wins over expired), in SQL for the status
//! filter and in Rust for the row, with the same rule on the same stored text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::apikey::KeyStatus;
use domain::events::ApiKeyEvent;
use domain::ids::{KeyId, OrgId, StreamId};
use domain::store::RecordedEvent;
use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::db::ReadDb;
use crate::integrity;
use crate::page::{Cursor, valid_limit};
pub use crate::page::{Page, QueryError};
use crate::runtime::{Projection, ProjectionError};
use crate::sqlval::{column, parse_timestamp, string_array, timestamp, to_i64};

const TABLE: &str = "api_keys";

/// Maintains `api_keys` from every `ApiKeyEvent`.
///
/// Handlers are idempotent: `KeyCreated` inserts with `ON CONFLICT DO NOTHING`, every
/// other event updates only `WHERE version < <its stream version>`, so replaying an
/// event already applied changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyListProjection;

impl KeyListProjection {
    /// The projection's (and its checkpoint's) name.
    pub const NAME: &'static str = "key_list";
}

#[async_trait]
impl Projection for KeyListProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        matches!(StreamId::parse(&event.stream), Some(StreamId::ApiKey(_)))
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let Some(StreamId::ApiKey(key_id)) = StreamId::parse(&event.stream) else {
            return Ok(());
        };
        let id = key_id.to_string();
        // The chain first: an event already applied is skipped (as every statement
        // below would skip it), any other one is checked against the stored head.
        let Some(marks) = integrity::check(conn, TABLE, &id, event).await? else {
            return Ok(());
        };
        // An event this release cannot read stops the projector (it retries) rather than
        // leave a row silently wrong.
        let decoded = ApiKeyEvent::from_recorded(event).map_err(|e| ProjectionError::Decode {
            position: event.position,
            reason: e.to_string(),
        })?;
        let version = to_i64(event.stream_version);
        let actor = event.metadata.actor.clone();
        match decoded {
            ApiKeyEvent::KeyCreated(e) => {
                // Everything but `secret_hash`.
                sqlx::query(
                    "INSERT INTO api_keys (id, org_id, name, prefix, environment, scopes, \
                     allowed_ips, created_at, created_by, expires_at, rotated_from, \
                     rate_limit_per_minute, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id.clone())
                .bind(e.org_id.to_string())
                .bind(e.name.as_str().to_owned())
                .bind(e.prefix)
                .bind(e.environment.as_str())
                .bind(json_array(e.scopes.names()))
                .bind(json_array(e.allowed_ips.to_strings()))
                .bind(timestamp(e.created_at))
                .bind(actor)
                .bind(e.expires_at.map(timestamp))
                .bind(e.rotated_from.map(|k| k.to_string()))
                .bind(e.rate_limit_per_minute.map(|r| i64::from(r.per_minute())))
                .bind(version)
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::KeyRenamed(e) => {
                sqlx::query(
                    "UPDATE api_keys SET name = $1, version = $2 WHERE id = $3 AND version < $2",
                )
                .bind(e.name.as_str().to_owned())
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ScopesChanged(e) => {
                sqlx::query(
                    "UPDATE api_keys SET scopes = $1, version = $2 WHERE id = $3 AND version < $2",
                )
                .bind(json_array(e.after.names()))
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::AllowedIpsChanged(e) => {
                sqlx::query(
                    "UPDATE api_keys SET allowed_ips = $1, version = $2 \
                     WHERE id = $3 AND version < $2",
                )
                .bind(json_array(e.after.to_strings()))
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ExpiryChanged(e) => {
                sqlx::query(
                    "UPDATE api_keys SET expires_at = $1, version = $2 \
                     WHERE id = $3 AND version < $2",
                )
                .bind(e.expires_at.map(timestamp))
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::KeyRotated(e) => {
                // As the aggregate does: the old key points at its successor and stops at
                // the end of the grace period.
                sqlx::query(
                    "UPDATE api_keys SET rotated_to = $1, expires_at = $2, version = $3 \
                     WHERE id = $4 AND version < $3",
                )
                .bind(e.successor_id.to_string())
                .bind(timestamp(e.old_key_expires_at))
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::KeyRevoked(e) => {
                // The first revocation is the one that counts (as in the aggregate).
                sqlx::query(
                    "UPDATE api_keys SET \
                     revoked_by = CASE WHEN revoked_at IS NULL THEN $1 ELSE revoked_by END, \
                     revocation_reason = \
                         CASE WHEN revoked_at IS NULL THEN $2 ELSE revocation_reason END, \
                     revoked_at = COALESCE(revoked_at, $3), \
                     version = $4 \
                     WHERE id = $5 AND version < $4",
                )
                .bind(actor)
                .bind(e.reason)
                .bind(timestamp(e.revoked_at))
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
        }
        integrity::write(conn, TABLE, &id, marks).await
    }
}

fn json_array<S: Serialize>(items: Vec<S>) -> String {
    // A vector of strings always serializes.
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}

/// One key as the management API shows it. Never a secret or a hash.
///
/// Ids are hyphenated UUIDs; timestamps are RFC 3339 UTC text with microseconds
/// (`2026-01-02T03:04:05.123456Z`), as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRow {
    /// The key's id.
    pub id: String,
    /// Its organisation.
    pub org_id: String,
    /// Its name.
    pub name: String,
    /// The displayed prefix: the token's first characters, `kl_live_<18 id chars>` (keys of
    /// the first releases: 8).
    pub prefix: String,
    /// `live` or `test`.
    pub environment: String,
    /// `active`, `revoked` or `expired` at the query's `now` ([`KeyStatus::as_str`]).
    pub status: String,
    /// Scope names, sorted.
    pub scopes: Vec<String>,
    /// Allowed networks as CIDRs, sorted; empty means anywhere.
    pub allowed_ips: Vec<String>,
    /// When it was created.
    pub created_at: String,
    /// Who created it (the acting key id or `cli:<user>`); `None` if unrecorded.
    pub created_by: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Why, if a reason was given.
    pub revocation_reason: Option<String>,
    /// When it stops (or stopped) working; for a rotated key, the end of the grace period.
    pub expires_at: Option<String>,
    /// The key it replaced, if made by a rotation.
    pub rotated_from: Option<String>,
    /// Its successor, if rotated.
    pub rotated_to: Option<String>,
    /// Its own rate limit (requests per minute); `None`: the plan's.
    pub rate_limit_per_minute: Option<i64>,
    /// The stream version of the last lifecycle event applied (the `ETag`).
    pub version: i64,
    /// Whether the key's stream passes its hash-chain check: `intact`, `broken` (an
    /// event was altered, deleted or reordered in the store: the key cannot
    /// authenticate nor be changed; what the row shows is what the tampered stream says)
    /// or `unverifiable` (only events written before the chain existed).
    pub integrity: String,
    /// The stream version where the first break showed (`broken` only).
    pub integrity_version: Option<i64>,
    /// Call counters.
    pub usage: KeyUsage,
}

/// A key's call counters, from the usage read model (`key_usage`); zero before its
/// first call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyUsage {
    /// Every recorded call.
    pub total_calls: i64,
    /// 1xx, 2xx and 3xx.
    pub successful_calls: i64,
    /// 4xx other than 429, plus 5xx: `client_error_calls + server_error_calls`.
    pub error_calls: i64,
    /// 4xx other than 429.
    pub client_error_calls: i64,
    /// 5xx.
    pub server_error_calls: i64,
    /// 429.
    pub rate_limited_calls: i64,
    /// `successful_calls / total_calls`, 0 to 1; `None` (JSON `null`) before the first
    /// call, because a key that was never used has no success rate (0 would read as
    /// "every call failed").
    pub success_rate: Option<f64>,
    /// When the last call arrived.
    pub last_used_at: Option<String>,
}

/// Reads of the key list.
#[derive(Debug, Clone)]
pub struct KeyQueries {
    /// The read-model database.
    pub db: ReadDb,
}

/// The key's row (`k`) and its counters from the usage read model (`u`, projection
/// `key_usage`), zero when the key has no calls yet. The usage columns of `api_keys`
/// itself are not read: they predate the usage read model and stay only because applied
/// migrations are never edited.
const COLUMNS: &str = "k.id, k.org_id, k.name, k.prefix, k.environment, k.scopes, \
    k.allowed_ips, k.created_at, k.created_by, k.revoked_at, k.revoked_by, \
    k.revocation_reason, k.expires_at, k.rotated_from, k.rotated_to, \
    k.rate_limit_per_minute, k.version, k.integrity, k.integrity_version, \
    COALESCE(u.total_calls, 0) AS total_calls, \
    COALESCE(u.successful_calls, 0) AS successful_calls, \
    COALESCE(u.client_error_calls, 0) AS client_error_calls, \
    COALESCE(u.server_error_calls, 0) AS server_error_calls, \
    COALESCE(u.rate_limited_calls, 0) AS rate_limited_calls, \
    u.last_used_at AS last_used_at";

/// `api_keys` with its usage, for [`COLUMNS`].
const FROM: &str = "api_keys k LEFT JOIN key_usage u ON u.key_id = k.id";

impl KeyQueries {
    /// Queries on `db`.
    pub fn new(db: ReadDb) -> Self {
        KeyQueries { db }
    }

    /// One page of an organisation's keys, newest first (`created_at DESC, id DESC`),
    /// optionally only those with `status` at `now`. `limit` must be 1 to 100 (else
    /// [`QueryError::BadLimit`]); `cursor` is a previous page's `next_cursor` (else
    /// [`QueryError::BadCursor`]).
    pub async fn list(
        &self,
        org: OrgId,
        status: Option<KeyStatus>,
        limit: u32,
        cursor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Page<KeyRow>, QueryError> {
        if !valid_limit(limit) {
            return Err(QueryError::BadLimit(limit));
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let now = timestamp(now);

        // Every fragment is a constant of this function; values go through binds.
        let mut sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE k.org_id = $1");
        let mut binds = vec![org.to_string()];
        match status {
            None => {}
            Some(KeyStatus::Revoked) => sql.push_str(" AND k.revoked_at IS NOT NULL"),
            Some(KeyStatus::Expired) => {
                let p = push_bind(&mut binds, now.clone());
                sql.push_str(&format!(
                    " AND k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at <= {p}"
                ));
            }
            Some(KeyStatus::Active) => {
                let p = push_bind(&mut binds, now.clone());
                sql.push_str(&format!(
                    " AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > {p})"
                ));
            }
        }
        if let Some(after) = after {
            let at = push_bind(&mut binds, after.sort_key);
            let id = push_bind(&mut binds, after.id);
            sql.push_str(&format!(
                " AND (k.created_at < {at} OR (k.created_at = {at} AND k.id < {id}))"
            ));
        }
        let limit_param = format!("${}", binds.len() + 1);
        sql.push_str(&format!(
            " ORDER BY k.created_at DESC, k.id DESC LIMIT {limit_param}"
        ));

        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        // One more than asked tells whether there is a next page.
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(self.db.pool())
            .await?;
        let rows = rows
            .iter()
            .map(|row| key_row(row, &now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(rows, limit, |row| {
            Cursor::new(row.created_at.clone(), row.id.clone())
        }))
    }

    /// One key of `org`, with its status at `now`; `None` if it does not exist or
    /// belongs to another organisation.
    pub async fn get(
        &self,
        org: OrgId,
        id: KeyId,
        now: DateTime<Utc>,
    ) -> Result<Option<KeyRow>, QueryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE k.id = $1 AND k.org_id = $2"
        )))
        .bind(id.to_string())
        .bind(org.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| key_row(&row, &timestamp(now))).transpose()
    }
}

/// Adds a bound value and returns its placeholder.
fn push_bind(binds: &mut Vec<String>, value: String) -> String {
    binds.push(value);
    format!("${}", binds.len())
}

/// A cursor of this list: a stored `created_at` and a key id, both checked and made
/// canonical so that the comparison in SQL is the one the first page used.
fn decode_cursor(text: &str) -> Result<Cursor, QueryError> {
    let cursor = Cursor::decode(text)?;
    let at = parse_timestamp(&cursor.sort_key).ok_or(QueryError::BadCursor)?;
    let id: KeyId = cursor.id.parse().map_err(|_| QueryError::BadCursor)?;
    Ok(Cursor::new(timestamp(at), id.to_string()))
}

/// The status rule, on stored text: revoked if revoked at all; expired if the expiry is
/// at or before `now`; else active. The SQL filter in [`KeyQueries::list`] is the same.
fn status_at(revoked_at: Option<&str>, expires_at: Option<&str>, now: &str) -> KeyStatus {
    if revoked_at.is_some() {
        KeyStatus::Revoked
    } else if expires_at.is_some_and(|at| at <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

fn key_row(row: &AnyRow, now: &str) -> Result<KeyRow, QueryError> {
    let revoked_at: Option<String> = column(row, TABLE, "revoked_at")?;
    let expires_at: Option<String> = column(row, TABLE, "expires_at")?;
    let status = status_at(revoked_at.as_deref(), expires_at.as_deref(), now);
    let created_by: String = column(row, TABLE, "created_by")?;
    let total_calls: i64 = column(row, TABLE, "total_calls")?;
    let successful_calls: i64 = column(row, TABLE, "successful_calls")?;
    let client_error_calls: i64 = column(row, TABLE, "client_error_calls")?;
    let server_error_calls: i64 = column(row, TABLE, "server_error_calls")?;
    let success_rate = (total_calls > 0).then(|| {
        // Counters stay far below 2^53, where the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let rate = successful_calls as f64 / total_calls as f64;
        rate
    });
    Ok(KeyRow {
        id: column(row, TABLE, "id")?,
        org_id: column(row, TABLE, "org_id")?,
        name: column(row, TABLE, "name")?,
        prefix: column(row, TABLE, "prefix")?,
        environment: column(row, TABLE, "environment")?,
        status: status.as_str().to_owned(),
        scopes: string_array(row, TABLE, "scopes")?,
        allowed_ips: string_array(row, TABLE, "allowed_ips")?,
        created_at: column(row, TABLE, "created_at")?,
        created_by: Some(created_by).filter(|a| !a.is_empty()),
        revoked_at,
        revoked_by: column(row, TABLE, "revoked_by")?,
        revocation_reason: column(row, TABLE, "revocation_reason")?,
        expires_at,
        rotated_from: column(row, TABLE, "rotated_from")?,
        rotated_to: column(row, TABLE, "rotated_to")?,
        rate_limit_per_minute: column(row, TABLE, "rate_limit_per_minute")?,
        version: column(row, TABLE, "version")?,
        integrity: column(row, TABLE, "integrity")?,
        integrity_version: column(row, TABLE, "integrity_version")?,
        usage: KeyUsage {
            total_calls,
            successful_calls,
            error_calls: client_error_calls + server_error_calls,
            client_error_calls,
            server_error_calls,
            rate_limited_calls: column(row, TABLE, "rate_limited_calls")?,
            success_rate,
            last_used_at: column(row, TABLE, "last_used_at")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_let_revocation_win_over_expiry() {
        let now = "2026-01-01T00:00:00.000000Z";
        let past = Some("2025-01-01T00:00:00.000000Z");
        let future = Some("2027-01-01T00:00:00.000000Z");
        assert_eq!(status_at(None, None, now), KeyStatus::Active);
        assert_eq!(status_at(None, future, now), KeyStatus::Active);
        assert_eq!(status_at(None, past, now), KeyStatus::Expired);
        assert_eq!(status_at(None, Some(now), now), KeyStatus::Expired);
        assert_eq!(status_at(past, future, now), KeyStatus::Revoked);
        assert_eq!(status_at(future, past, now), KeyStatus::Revoked);
    }

    #[test]
    fn it_should_refuse_a_cursor_of_another_shape() {
        assert!(matches!(
            decode_cursor(&Cursor::new("yesterday", KeyId::new_v7().to_string()).encode()),
            Err(QueryError::BadCursor)
        ));
        assert!(matches!(
            decode_cursor(&Cursor::new("2026-01-01T00:00:00Z", "not-a-uuid").encode()),
            Err(QueryError::BadCursor)
        ));
        let id = KeyId::new_v7();
        let ok =
            decode_cursor(&Cursor::new("2026-01-01T00:00:00Z", id.to_string()).encode()).unwrap();
        assert_eq!(ok.sort_key, "2026-01-01T00:00:00.000000Z");
        assert_eq!(ok.id, id.to_string());
    }
}
