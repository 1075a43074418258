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

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::events::UsageEvent;
use domain::ids::{KeyId, OrgId, StreamId};
use domain::store::RecordedEvent;
use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::page::QueryError;
use crate::runtime::{Projection, ProjectionError};
use crate::sqlval::column;

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

mod batch;
mod queries;

use self::batch::Batch;
pub use self::queries::{Bucket, RouteUsage, UsageQueries, UsageTotals, check_range};

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::events::ApiCallRecorded;

    use super::batch::{Tally, Val, upsert_sql};
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
