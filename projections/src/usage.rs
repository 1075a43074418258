//! The usage read model (projection `key_usage`) and its queries.
//!
//! Built from `ApiCallRecorded` on the `apikey-usage-<key id>` streams into three tables
//! of its own (never the `api_keys` row, so that rebuilding the key list never wipes
//! usage and usage never depends on the key list having run first):
//! - `key_usage`: one row per key, its lifetime counters and last call;
//! - `key_usage_routes`: one row per key, method and route template;
//! - `usage_series`: buckets per key (`scope = 'key'`) and per organisation (`'org'`), by
//!   minute, hour and day (UTC), only for buckets with calls.
//!
//! Every row holds the same counters: total, successful (1xx/2xx/3xx), client errors (4xx
//! except 429), server errors (5xx), rate limited (429), and the sum of latencies. A batch
//! of events is added up in memory first and each touched row is upserted once
//! (`counter = counter + batch's count`). Adding is not idempotent by itself: exactly-once
//! comes from the projector, which moves its checkpoint with a compare-and-set in the same
//! transaction, so a batch is either applied once with its checkpoint or not at all.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::events::{ApiCallRecorded, CallOutcome, UsageEvent};
use domain::ids::{KeyId, OrgId, StreamId};
use domain::store::RecordedEvent;
use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::db::ReadDb;
use crate::page::QueryError;
use crate::runtime::{Projection, ProjectionError};
use crate::sqlval::{column, timestamp};

const KEY_USAGE: &str = "key_usage";
const ROUTES: &str = "key_usage_routes";
const SERIES: &str = "usage_series";

/// The most buckets one series query may cover (10,000 minutes is about a week).
pub const MAX_BUCKETS: i64 = 10_000;

/// The counter columns every usage table has, in this order.
const COUNTERS: [&str; 6] = [
    "total_calls",
    "successful_calls",
    "client_error_calls",
    "server_error_calls",
    "rate_limited_calls",
    "latency_us_total",
];

/// Rows per multi-row upsert: at most 11 columns, so at most 1,100 bound values, well
/// under SQLite's and Postgres's limits.
const ROWS_PER_STATEMENT: usize = 100;

/// How long the projector collects usage events into one batch: well inside the lag
/// budget (p99 < 250 ms), long enough that a key called many times in a window has its
/// rows written once.
pub const COALESCE_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Maintains `key_usage`, `key_usage_routes` and `usage_series` from `ApiCallRecorded`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageProjection;

impl UsageProjection {
    /// The projection's (and its checkpoint's) name.
    pub const NAME: &'static str = "key_usage";
}

#[async_trait]
impl Projection for UsageProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[KEY_USAGE, ROUTES, SERIES]
    }

    /// Usage is counters: a window of calls becomes one batch, each touched row is
    /// upserted once per window ([`COALESCE_WINDOW`]).
    fn coalesce(&self) -> std::time::Duration {
        COALESCE_WINDOW
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        matches!(
            StreamId::parse(&event.stream),
            Some(StreamId::ApiKeyUsage(_))
        )
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, &[Arc::new(event.clone())]).await
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[Arc<RecordedEvent>],
    ) -> Result<(), ProjectionError> {
        let mut batch = Batch::default();
        for event in events {
            let Some(StreamId::ApiKeyUsage(key_id)) = StreamId::parse(&event.stream) else {
                continue;
            };
            // An event this release cannot read stops the projector (it retries) rather
            // than leave counts silently wrong.
            let decoded =
                UsageEvent::from_recorded(event).map_err(|e| ProjectionError::Decode {
                    position: event.position,
                    reason: e.to_string(),
                })?;
            let UsageEvent::ApiCallRecorded(call) = decoded;
            batch.add(key_id, &call);
        }
        batch.write(conn).await?;
        Ok(())
    }
}

/// The width of a series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    /// The stored and wire name: `minute`, `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// A bucket's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }

    /// A bucket's length.
    pub fn step(self) -> TimeDelta {
        TimeDelta::seconds(self.seconds())
    }

    /// The start of the bucket holding `at` (UTC: days start at midnight UTC).
    pub fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.seconds();
        let secs = at.timestamp().div_euclid(step) * step;
        // Rounding down a representable instant to a whole minute, hour or day stays
        // representable except within a day of chrono's minimum (year -262143).
        DateTime::from_timestamp(secs, 0).unwrap_or(at)
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A granularity other than `minute`, `hour` or `day`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("granularity must be one of minute, hour, day")]
pub struct UnknownGranularity;

impl FromStr for Granularity {
    type Err = UnknownGranularity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "minute" => Ok(Granularity::Minute),
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            _ => Err(UnknownGranularity),
        }
    }
}

/// Whose series: one key's, or a whole organisation's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope {
    /// One key (`scope = 'key'`).
    Key(KeyId),
    /// Every key of an organisation (`scope = 'org'`).
    Org(OrgId),
}

impl UsageScope {
    fn kind(self) -> &'static str {
        match self {
            UsageScope::Key(_) => "key",
            UsageScope::Org(_) => "org",
        }
    }

    fn id(self) -> String {
        match self {
            UsageScope::Key(id) => id.to_string(),
            UsageScope::Org(id) => id.to_string(),
        }
    }
}

/// Call counters, with the rates derived from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageCounts {
    /// Every recorded call.
    pub total_calls: i64,
    /// 1xx, 2xx and 3xx.
    pub successful_calls: i64,
    /// `client_error_calls + server_error_calls`.
    pub error_calls: i64,
    /// 4xx other than 429.
    pub client_error_calls: i64,
    /// 5xx.
    pub server_error_calls: i64,
    /// 429.
    pub rate_limited_calls: i64,
    /// `successful_calls / total_calls`, 0 to 1; `None` (JSON `null`) without calls,
    /// because "no calls" is not "every call failed".
    pub success_rate: Option<f64>,
    /// Mean latency in microseconds (rounded down); `None` without calls.
    pub avg_latency_us: Option<i64>,
    /// The sum of the calls' latencies, kept so that counts can be added up exactly.
    #[serde(skip)]
    pub latency_us_total: i64,
}

impl UsageCounts {
    /// Counts from the stored counters.
    pub fn new(
        successful_calls: i64,
        client_error_calls: i64,
        server_error_calls: i64,
        rate_limited_calls: i64,
        latency_us_total: i64,
    ) -> Self {
        let mut counts = UsageCounts {
            successful_calls,
            client_error_calls,
            server_error_calls,
            rate_limited_calls,
            latency_us_total,
            ..UsageCounts::default()
        };
        counts.derive();
        counts
    }

    /// The sum of several counts (e.g. a series' buckets).
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a UsageCounts>) -> Self {
        let mut total = UsageCounts::default();
        for c in items {
            total.successful_calls += c.successful_calls;
            total.client_error_calls += c.client_error_calls;
            total.server_error_calls += c.server_error_calls;
            total.rate_limited_calls += c.rate_limited_calls;
            total.latency_us_total += c.latency_us_total;
        }
        total.derive();
        total
    }

    fn derive(&mut self) {
        self.error_calls = self.client_error_calls + self.server_error_calls;
        self.total_calls = self.successful_calls + self.error_calls + self.rate_limited_calls;
        self.success_rate = (self.total_calls > 0).then(|| {
            // Counters stay far below 2^53, where the conversion is exact.
            #[allow(clippy::cast_precision_loss)]
            let rate = self.successful_calls as f64 / self.total_calls as f64;
            rate
        });
        self.avg_latency_us =
            (self.total_calls > 0).then(|| self.latency_us_total / self.total_calls);
    }

    fn read(row: &AnyRow, table: &'static str) -> Result<Self, QueryError> {
        Ok(UsageCounts::new(
            column(row, table, "successful_calls")?,
            column(row, table, "client_error_calls")?,
            column(row, table, "server_error_calls")?,
            column(row, table, "rate_limited_calls")?,
            column(row, table, "latency_us_total")?,
        ))
    }
}

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

// ------------------------------------------------------------------ batch writes

/// Counts added up in memory before they are written.
#[derive(Debug, Clone, Default)]
struct Tally {
    total: i64,
    successful: i64,
    client_error: i64,
    server_error: i64,
    rate_limited: i64,
    latency_us: i64,
    last_used_at: Option<DateTime<Utc>>,
}

impl Tally {
    fn add(&mut self, call: &ApiCallRecorded) {
        self.total += 1;
        match call.outcome() {
            CallOutcome::Success => self.successful += 1,
            CallOutcome::ClientError => self.client_error += 1,
            CallOutcome::ServerError => self.server_error += 1,
            CallOutcome::RateLimited => self.rate_limited += 1,
        }
        self.latency_us = self
            .latency_us
            .saturating_add(i64::try_from(call.latency_us).unwrap_or(i64::MAX));
        if self.last_used_at.is_none_or(|last| call.at > last) {
            self.last_used_at = Some(call.at);
        }
    }

    /// The values of [`COUNTERS`], in order.
    fn counters(&self) -> [Val; 6] {
        [
            Val::Int(self.total),
            Val::Int(self.successful),
            Val::Int(self.client_error),
            Val::Int(self.server_error),
            Val::Int(self.rate_limited),
            Val::Int(self.latency_us),
        ]
    }
}

/// One batch's calls, added up per row of each table. Ordered maps, so that rows are
/// written (and locked, on Postgres) in a stable order.
#[derive(Debug, Default)]
struct Batch {
    /// key id -> (org id, counts)
    keys: BTreeMap<String, (String, Tally)>,
    /// (key id, method, route) -> (org id, counts)
    routes: BTreeMap<(String, String, String), (String, Tally)>,
    /// (scope, scope id, granularity, bucket start) -> counts
    series: BTreeMap<(&'static str, String, Granularity, String), Tally>,
}

impl Batch {
    fn add(&mut self, key: KeyId, call: &ApiCallRecorded) {
        let key_id = key.to_string();
        let org_id = call.org_id.to_string();
        self.keys
            .entry(key_id.clone())
            .or_insert_with(|| (org_id.clone(), Tally::default()))
            .1
            .add(call);
        self.routes
            .entry((key_id.clone(), call.method.clone(), call.route.clone()))
            .or_insert_with(|| (org_id.clone(), Tally::default()))
            .1
            .add(call);
        for granularity in Granularity::ALL {
            let start = timestamp(granularity.floor(call.at));
            self.series
                .entry(("key", key_id.clone(), granularity, start.clone()))
                .or_default()
                .add(call);
            self.series
                .entry(("org", org_id.clone(), granularity, start))
                .or_default()
                .add(call);
        }
    }

    async fn write(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let keys: Vec<Vec<Val>> = self
            .keys
            .into_iter()
            .map(|(key_id, (org_id, t))| {
                let mut row = vec![Val::Text(key_id), Val::Text(org_id)];
                row.extend(t.counters());
                row.push(Val::OptText(t.last_used_at.map(timestamp)));
                row
            })
            .collect();
        upsert(
            conn,
            KEY_USAGE,
            &["key_id", "org_id"],
            &["key_id"],
            true,
            keys,
        )
        .await?;

        let routes: Vec<Vec<Val>> = self
            .routes
            .into_iter()
            .map(|((key_id, method, route), (org_id, t))| {
                let mut row = vec![
                    Val::Text(key_id),
                    Val::Text(method),
                    Val::Text(route),
                    Val::Text(org_id),
                ];
                row.extend(t.counters());
                row.push(Val::OptText(t.last_used_at.map(timestamp)));
                row
            })
            .collect();
        upsert(
            conn,
            ROUTES,
            &["key_id", "method", "route", "org_id"],
            &["key_id", "method", "route"],
            true,
            routes,
        )
        .await?;

        let series: Vec<Vec<Val>> = self
            .series
            .into_iter()
            .map(|((scope, scope_id, granularity, start), t)| {
                let mut row = vec![
                    Val::Text(scope.to_owned()),
                    Val::Text(scope_id),
                    Val::Text(granularity.as_str().to_owned()),
                    Val::Text(start),
                ];
                row.extend(t.counters());
                row
            })
            .collect();
        upsert(
            conn,
            SERIES,
            &["scope", "scope_id", "granularity", "bucket_start"],
            &["scope", "scope_id", "granularity", "bucket_start"],
            false,
            series,
        )
        .await
    }
}

/// A value to bind.
#[derive(Debug)]
enum Val {
    Text(String),
    Int(i64),
    OptText(Option<String>),
}

/// Upserts rows of `leading` columns, then [`COUNTERS`], then `last_used_at` if
/// `with_last_used`: a new row is inserted, an existing one gets the counts added and
/// keeps the later `last_used_at`.
async fn upsert(
    conn: &mut AnyConnection,
    table: &'static str,
    leading: &[&str],
    conflict: &[&str],
    with_last_used: bool,
    rows: Vec<Vec<Val>>,
) -> Result<(), sqlx::Error> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let sql = upsert_sql(table, leading, conflict, with_last_used, chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in chunk.into_iter().flatten() {
            query = match value {
                Val::Text(v) => query.bind(v),
                Val::Int(v) => query.bind(v),
                Val::OptText(v) => query.bind(v),
            };
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statement of [`upsert`]. Every fragment is a constant of this module; values go
/// through binds.
fn upsert_sql(
    table: &str,
    leading: &[&str],
    conflict: &[&str],
    with_last_used: bool,
    rows: usize,
) -> String {
    let mut columns: Vec<&str> = leading.to_vec();
    columns.extend(COUNTERS);
    if with_last_used {
        columns.push("last_used_at");
    }
    let width = columns.len();
    let values = (0..rows)
        .map(|r| {
            let params = (1..=width)
                .map(|c| format!("${}", r * width + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({params})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut set = COUNTERS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>();
    if with_last_used {
        set.push(format!(
            "last_used_at = CASE WHEN {table}.last_used_at IS NULL \
             OR excluded.last_used_at > {table}.last_used_at \
             THEN excluded.last_used_at ELSE {table}.last_used_at END"
        ));
    }
    format!(
        "INSERT INTO {table} ({}) VALUES {values} ON CONFLICT ({}) DO UPDATE SET {}",
        columns.join(", "),
        conflict.join(", "),
        set.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, h, m, s).unwrap()
    }

    #[test]
    fn it_should_round_down_to_the_bucket_start_in_utc() {
        let at = t(13, 47, 59) + TimeDelta::microseconds(123_456);
        assert_eq!(Granularity::Minute.floor(at), t(13, 47, 0));
        assert_eq!(Granularity::Hour.floor(at), t(13, 0, 0));
        assert_eq!(Granularity::Day.floor(at), t(0, 0, 0));
        assert_eq!(Granularity::Minute.floor(t(13, 47, 0)), t(13, 47, 0));
    }

    #[test]
    fn it_should_bound_the_number_of_buckets() {
        let from = t(0, 0, 0);
        // Exactly 10,000 minutes is allowed; one microsecond more is not.
        assert_eq!(
            check_range(Granularity::Minute, from, from + TimeDelta::minutes(10_000)).unwrap(),
            from
        );
        assert!(matches!(
            check_range(
                Granularity::Minute,
                from,
                from + TimeDelta::minutes(10_000) + TimeDelta::microseconds(1)
            ),
            Err(QueryError::TooManyBuckets {
                buckets: 10_001,
                ..
            })
        ));
        assert!(matches!(
            check_range(Granularity::Hour, from, from),
            Err(QueryError::BadRange(_))
        ));
        assert!(matches!(
            check_range(Granularity::Day, from, from - TimeDelta::days(1)),
            Err(QueryError::BadRange(_))
        ));
        // An unaligned start counts from its bucket.
        assert_eq!(
            check_range(Granularity::Hour, t(10, 30, 0), t(11, 0, 0)).unwrap(),
            t(10, 0, 0)
        );
    }

    #[test]
    fn it_should_classify_and_add_up_calls() {
        let mut tally = Tally::default();
        for (status, at) in [(200, t(1, 0, 0)), (302, t(3, 0, 0)), (404, t(2, 0, 0))] {
            tally.add(&ApiCallRecorded {
                org_id: OrgId::new_v7(),
                at,
                method: "GET".into(),
                route: "/whoami".into(),
                status,
                latency_us: 10,
                client_ip: None,
                request_id: None,
            });
        }
        for (status, field) in [(429, 4), (500, 3)] {
            let mut one = Tally::default();
            one.add(&ApiCallRecorded {
                org_id: OrgId::new_v7(),
                at: t(0, 0, 0),
                method: "GET".into(),
                route: "/".into(),
                status,
                latency_us: 1,
                client_ip: None,
                request_id: None,
            });
            let counters = one.counters();
            assert!(matches!(counters[field], Val::Int(1)), "{status}");
        }
        assert_eq!(
            (tally.total, tally.successful, tally.client_error),
            (3, 2, 1)
        );
        assert_eq!(tally.latency_us, 30);
        assert_eq!(tally.last_used_at, Some(t(3, 0, 0)));
        let counts = UsageCounts::new(2, 1, 0, 0, 30);
        assert_eq!(counts.total_calls, 3);
        assert_eq!(counts.avg_latency_us, Some(10));
        assert_eq!(UsageCounts::default().success_rate, None);
    }

    #[test]
    fn it_should_write_one_upsert_per_chunk_with_numbered_parameters() {
        let sql = upsert_sql("key_usage", &["key_id", "org_id"], &["key_id"], true, 2);
        assert!(
            sql.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9), ($10,"),
            "{sql}"
        );
        assert!(sql.contains("$18)"), "{sql}");
        assert!(sql.contains("ON CONFLICT (key_id) DO UPDATE SET total_calls = key_usage.total_calls + excluded.total_calls"), "{sql}");
    }
}
