//! Reads of the usage read model: lifetime totals, by route, and series.

use chrono::{DateTime, Utc};
use domain::ids::{KeyId, OrgId};
use serde::Serialize;
use sqlx::any::AnyRow;

use super::{Granularity, KEY_USAGE, MAX_BUCKETS, ROUTES, SERIES, UsageCounts, UsageScope};
use crate::db::ReadDb;
use crate::page::QueryError;
use crate::sqlval::{column, timestamp};

/// Lifetime usage of a key or an organisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageTotals {
    /// The counters.
    #[serde(flatten)]
    pub counts: UsageCounts,
    /// When the last call arrived (RFC 3339 UTC, microseconds); `None` before the first.
    pub last_used_at: Option<String>,
}

/// One key's calls to one route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteUsage {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// The route template, e.g. `/organizations/{org}/work-orders`.
    pub route: String,
    /// The counters.
    #[serde(flatten)]
    pub counts: UsageCounts,
    /// When the last call to this route arrived.
    pub last_used_at: Option<String>,
}

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's first instant (RFC 3339 UTC, microseconds).
    pub start: String,
    /// The counters.
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// Reads of the usage read model.
#[derive(Debug, Clone)]
pub struct UsageQueries {
    /// The read-model database.
    pub db: ReadDb,
}

const SUMS: &str = "CAST(COALESCE(SUM(successful_calls), 0) AS BIGINT) AS successful_calls, \
    CAST(COALESCE(SUM(client_error_calls), 0) AS BIGINT) AS client_error_calls, \
    CAST(COALESCE(SUM(server_error_calls), 0) AS BIGINT) AS server_error_calls, \
    CAST(COALESCE(SUM(rate_limited_calls), 0) AS BIGINT) AS rate_limited_calls, \
    CAST(COALESCE(SUM(latency_us_total), 0) AS BIGINT) AS latency_us_total, \
    MAX(last_used_at) AS last_used_at";

impl UsageQueries {
    /// Queries on `db`.
    pub fn new(db: ReadDb) -> Self {
        UsageQueries { db }
    }

    /// A key's calls per method and route template, busiest first; empty for a key
    /// without calls or of another organisation.
    pub async fn by_route(&self, org: OrgId, key: KeyId) -> Result<Vec<RouteUsage>, QueryError> {
        let rows = sqlx::query(
            "SELECT method, route, successful_calls, client_error_calls, server_error_calls, \
             rate_limited_calls, latency_us_total, last_used_at \
             FROM key_usage_routes WHERE key_id = $1 AND org_id = $2 \
             ORDER BY total_calls DESC, method, route",
        )
        .bind(key.to_string())
        .bind(org.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RouteUsage {
                    method: column(row, ROUTES, "method")?,
                    route: column(row, ROUTES, "route")?,
                    counts: UsageCounts::read(row, ROUTES)?,
                    last_used_at: column(row, ROUTES, "last_used_at")?,
                })
            })
            .collect()
    }

    /// A key's lifetime totals (zero for a key without calls or of another organisation).
    pub async fn key_totals(&self, org: OrgId, key: KeyId) -> Result<UsageTotals, QueryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMS} FROM key_usage WHERE key_id = $1 AND org_id = $2"
        )))
        .bind(key.to_string())
        .bind(org.to_string())
        .fetch_one(self.db.pool())
        .await?;
        totals(&row)
    }

    /// An organisation's lifetime totals, over all its keys.
    pub async fn org_totals(&self, org: OrgId) -> Result<UsageTotals, QueryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMS} FROM key_usage WHERE org_id = $1"
        )))
        .bind(org.to_string())
        .fetch_one(self.db.pool())
        .await?;
        totals(&row)
    }

    /// The buckets of `scope` at `granularity` from the bucket holding `from` (inclusive)
    /// to `to` (exclusive), oldest first; only buckets with calls. A reversed or empty
    /// range is [`QueryError::BadRange`]; one of more than [`MAX_BUCKETS`] buckets is
    /// [`QueryError::TooManyBuckets`] (see [`check_range`]).
    ///
    /// A key's series is not checked against an organisation: callers check that the key
    /// is the caller's organisation's first.
    pub async fn series(
        &self,
        scope: UsageScope,
        granularity: Granularity,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Bucket>, QueryError> {
        let from = check_range(granularity, from, to)?;
        let rows = sqlx::query(
            "SELECT bucket_start, successful_calls, client_error_calls, server_error_calls, \
             rate_limited_calls, latency_us_total \
             FROM usage_series \
             WHERE scope = $1 AND scope_id = $2 AND granularity = $3 \
             AND bucket_start >= $4 AND bucket_start < $5 \
             ORDER BY bucket_start",
        )
        .bind(scope.kind())
        .bind(scope.id())
        .bind(granularity.as_str())
        .bind(timestamp(from))
        .bind(timestamp(to))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Bucket {
                    start: column(row, SERIES, "bucket_start")?,
                    counts: UsageCounts::read(row, SERIES)?,
                })
            })
            .collect()
    }
}

/// Checks a series range and returns its start rounded down to its bucket: `to` must be
/// after `from` ([`QueryError::BadRange`]), and the range may hold at most
/// [`MAX_BUCKETS`] buckets ([`QueryError::TooManyBuckets`]).
pub fn check_range(
    granularity: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<DateTime<Utc>, QueryError> {
    if to <= from {
        return Err(QueryError::BadRange("`to` must be after `from`".into()));
    }
    let start = granularity.floor(from);
    let step_us = granularity.seconds() * 1_000_000;
    let buckets = (to - start).num_microseconds().map_or(i64::MAX, |us| {
        us.div_euclid(step_us) + i64::from(us % step_us != 0)
    });
    if buckets > MAX_BUCKETS {
        return Err(QueryError::TooManyBuckets {
            buckets,
            max: MAX_BUCKETS,
        });
    }
    Ok(start)
}

fn totals(row: &AnyRow) -> Result<UsageTotals, QueryError> {
    Ok(UsageTotals {
        counts: UsageCounts::read(row, KEY_USAGE)?,
        last_used_at: column(row, KEY_USAGE, "last_used_at")?,
    })
}
