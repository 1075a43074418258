//! Usage analytics and `GET /whoami`.
//!
//! - `GET /organizations/{org}/api-keys/{id}/usage` and `GET /organizations/{org}/usage`
//!   (`api-keys:read`): a series of buckets (`granularity=minute|hour|day`, default hour;
//!   `from` inclusive, rounded down to its bucket, default `to` minus 24 hours; `to`
//!   exclusive, default now; at most 10,000 buckets), the window's totals (the sum of the
//!   series), and lifetime totals. Read from the usage read model, after it has caught up
//!   with every call recorded before the request (bounded wait).
//! - `GET /whoami` (any valid key): the key itself and its rate-limit state.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use domain::ids::KeyId;
use projections::usage::{
    Bucket, Granularity, RouteUsage, UsageCounts, UsageProjection, UsageQueries, UsageScope,
    UsageTotals, check_range,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Principal, RateLimitState};
use crate::http::error::{ApiError, Problem};

/// The window when `from` is not given: the 24 hours before `to`.
const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);

/// How long a usage read waits for the usage read model to include every call recorded
/// before the request; after that it answers with what the read model has.
const FRESHNESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The usage routes and `/whoami`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(key_usage))
        .routes(routes!(org_usage))
        .routes(routes!(whoami))
}

/// `?granularity=&from=&to=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// `minute`, `hour` (default) or `day`.
    #[param(value_type = Option<GranularityName>)]
    pub granularity: Option<String>,
    /// RFC 3339; inclusive, rounded down to its bucket. Default: `to` minus 24 hours.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// RFC 3339; exclusive. Default: now.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
}

/// A series' bucket size (documentation only).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum GranularityName {
    Minute,
    Hour,
    Day,
}

/// Call counters.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageCountsView {
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
    /// `successful_calls / total_calls`, 0 to 1; null without calls.
    pub success_rate: Option<f64>,
    /// Mean latency in microseconds; null without calls.
    pub avg_latency_us: Option<i64>,
}

/// Lifetime counters and the last call.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageTotalsView {
    #[serde(flatten)]
    pub counts: UsageCountsView,
    pub last_used_at: Option<String>,
}

/// One bucket of a series (only buckets with calls are listed).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BucketView {
    /// The bucket's first instant, RFC 3339 UTC.
    pub start: String,
    #[serde(flatten)]
    pub counts: UsageCountsView,
}

/// One key's calls to one route template.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RouteUsageView {
    pub method: String,
    /// The route template, e.g. `/organizations/{org}/work-orders`.
    pub route: String,
    #[serde(flatten)]
    pub counts: UsageCountsView,
    pub last_used_at: Option<String>,
}

/// `GET /organizations/{org}/api-keys/{id}/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyUsageResponse {
    pub key_id: String,
    /// `minute`, `hour` or `day`.
    pub granularity: String,
    /// The first bucket's start (`from` rounded down to its bucket).
    pub from: String,
    /// Exclusive.
    pub to: String,
    /// Over the window: the sum of `series`.
    pub totals: UsageCountsView,
    /// Since the key's first call.
    pub all_time: UsageTotalsView,
    /// Oldest first; only buckets with calls.
    pub series: Vec<BucketView>,
}

/// `GET /organizations/{org}/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgUsageResponse {
    pub org_id: String,
    /// `minute`, `hour` or `day`.
    pub granularity: String,
    /// The first bucket's start (`from` rounded down to its bucket).
    pub from: String,
    /// Exclusive.
    pub to: String,
    /// Over the window, every key of the organisation: the sum of `series`.
    pub totals: UsageCountsView,
    /// Since the organisation's first call.
    pub all_time: UsageTotalsView,
    /// Oldest first; only buckets with calls.
    pub series: Vec<BucketView>,
}

/// A key's rate-limit state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RateLimitView {
    /// Requests per minute (the plan's, or the key's lower override).
    pub limit: u32,
    /// Requests it may still make now.
    pub remaining: u32,
    /// Seconds until the allowance is whole again.
    pub reset: u64,
}

/// `GET /whoami`: the calling key (never its secret or hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    /// `live` or `test`.
    pub environment: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit: RateLimitView,
}

impl From<UsageCounts> for UsageCountsView {
    fn from(c: UsageCounts) -> Self {
        UsageCountsView {
            total_calls: c.total_calls,
            successful_calls: c.successful_calls,
            error_calls: c.error_calls,
            client_error_calls: c.client_error_calls,
            server_error_calls: c.server_error_calls,
            rate_limited_calls: c.rate_limited_calls,
            success_rate: c.success_rate,
            avg_latency_us: c.avg_latency_us,
        }
    }
}

impl From<UsageTotals> for UsageTotalsView {
    fn from(t: UsageTotals) -> Self {
        UsageTotalsView {
            counts: t.counts.into(),
            last_used_at: t.last_used_at,
        }
    }
}

impl From<Bucket> for BucketView {
    fn from(b: Bucket) -> Self {
        BucketView {
            start: b.start,
            counts: b.counts.into(),
        }
    }
}

impl From<RouteUsage> for RouteUsageView {
    fn from(r: RouteUsage) -> Self {
        RouteUsageView {
            method: r.method,
            route: r.route,
            counts: r.counts.into(),
            last_used_at: r.last_used_at,
        }
    }
}

/// A checked window.
struct Window {
    granularity: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Window {
    /// Parses and checks the query (422 naming the field), with its defaults.
    fn parse(query: Result<Query<UsageQuery>, QueryRejection>) -> Result<Self, ApiError> {
        let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
        // Present but empty is not a value (the document says enum / date-time): 422.
        let granularity = match query.granularity.as_deref() {
            None => Granularity::Hour,
            Some(raw) => raw
                .parse::<Granularity>()
                .map_err(|e| ApiError::field("granularity", e.to_string()))?,
        };
        let to = match query.to.as_deref() {
            None => Utc::now(),
            Some(raw) => parse_time("to", raw)?,
        };
        let from = match query.from.as_deref() {
            None => to - DEFAULT_WINDOW,
            Some(raw) => parse_time("from", raw)?,
        };
        // 422 naming `to` for a reversed range, `from` for too many buckets.
        let from = check_range(granularity, from, to)?;
        Ok(Window {
            granularity,
            from,
            to,
        })
    }
}

pub(crate) fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    // An unencoded `+` in a query string arrives as a space: take it back.
    let raw = raw.trim().replace(' ', "+");
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::field(
                field,
                "must be an RFC 3339 date and time, e.g. 2026-01-02T03:04:05Z",
            )
        })
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Waits (bounded) until the usage read model includes every event in the store now, so
/// that a read shows every call recorded before it.
async fn fresh_usage(state: &AppState) -> Result<(), ApiError> {
    let Some(projector) = state
        .projectors
        .iter()
        .find(|p| p.name() == UsageProjection::NAME)
    else {
        return Ok(());
    };
    let head = state
        .store
        .head_position()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if !projector.wait_for(head, FRESHNESS_TIMEOUT).await {
        tracing::warn!(
            position = head,
            "usage read model did not catch up in time; answering with what it has"
        );
    }
    Ok(())
}

/// A key's usage: a series of buckets, the window's totals and lifetime totals.
#[utoipa::path(get, path = "/organizations/{org}/api-keys/{id}/usage", tag = "usage",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id"), UsageQuery),
    responses((status = 200, body = KeyUsageResponse), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn key_usage(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, id)): Path<(String, String)>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<KeyUsageResponse>, ApiError> {
    let org_id = principal.require_org(&org)?;
    let key_id: KeyId = id.parse().map_err(|_| ApiError::NotFound)?;
    let window = Window::parse(query)?;
    // The key must be this organisation's: read from the event store, so a key works
    // here the moment its create call returned.
    state
        .keys
        .load_key(key_id)
        .await?
        .filter(|k| k.org_id == org_id)
        .ok_or(ApiError::NotFound)?;
    fresh_usage(&state).await?;
    let queries = UsageQueries::new(state.read_db.clone());
    let series = queries
        .series(
            UsageScope::Key(key_id),
            window.granularity,
            window.from,
            window.to,
        )
        .await?;
    let all_time = queries.key_totals(org_id, key_id).await?;
    Ok(Json(KeyUsageResponse {
        key_id: key_id.to_string(),
        granularity: window.granularity.as_str().to_owned(),
        from: text(window.from),
        to: text(window.to),
        totals: UsageCounts::sum(series.iter().map(|b| &b.counts)).into(),
        all_time: all_time.into(),
        series: series.into_iter().map(BucketView::from).collect(),
    }))
}

/// The organisation's usage over all its keys: a series, the window's totals and
/// lifetime totals.
#[utoipa::path(get, path = "/organizations/{org}/usage", tag = "usage",
    params(("org" = String, Path, description = "organisation id"), UsageQuery),
    responses((status = 200, body = OrgUsageResponse), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn org_usage(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<OrgUsageResponse>, ApiError> {
    let org_id = principal.require_org(&org)?;
    let window = Window::parse(query)?;
    fresh_usage(&state).await?;
    let queries = UsageQueries::new(state.read_db.clone());
    let series = queries
        .series(
            UsageScope::Org(org_id),
            window.granularity,
            window.from,
            window.to,
        )
        .await?;
    let all_time = queries.org_totals(org_id).await?;
    Ok(Json(OrgUsageResponse {
        org_id: org_id.to_string(),
        granularity: window.granularity.as_str().to_owned(),
        from: text(window.from),
        to: text(window.to),
        totals: UsageCounts::sum(series.iter().map(|b| &b.counts)).into(),
        all_time: all_time.into(),
        series: series.into_iter().map(BucketView::from).collect(),
    }))
}

/// The calling key: its id, organisation, scopes, environment and rate-limit state.
#[utoipa::path(get, path = "/whoami", tag = "usage",
    responses((status = 200, body = WhoAmI), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn whoami(
    State(state): State<AppState>,
    principal: Principal,
    limit: Option<Extension<RateLimitState>>,
) -> Result<Json<WhoAmI>, ApiError> {
    let key = &principal.key;
    let limit = match limit {
        // The auth layer's state after it took this request.
        Some(Extension(limit)) => limit,
        None => {
            // Without the auth layer's state: the key's limit as the auth layer computes
            // it and its allowance as last seen.
            let per_minute = state.requests_per_minute(key).await;
            state.limits.peek(key.id, per_minute)
        }
    };
    Ok(Json(WhoAmI {
        id: key.id.to_string(),
        org_id: key.org_id.to_string(),
        name: key.name.as_str().to_owned(),
        prefix: key.prefix.clone(),
        scopes: key.scopes.names().iter().map(|s| (*s).to_owned()).collect(),
        environment: key.environment.as_str().to_owned(),
        expires_at: key.expires_at,
        rate_limit: RateLimitView {
            limit: limit.limit,
            remaining: limit.remaining,
            reset: limit.reset_seconds,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(q: &str) -> Result<Window, ApiError> {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        Window::parse(Query::try_from_uri(&uri))
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn it_should_default_to_hourly_buckets_over_the_last_day() {
        let w = window("").unwrap();
        assert_eq!(w.granularity, Granularity::Hour);
        assert!(w.to - w.from >= TimeDelta::hours(24));
        assert!(w.to - w.from < TimeDelta::hours(25));
    }

    #[test]
    fn it_should_name_the_bad_field() {
        assert_eq!(
            field_of(window("granularity=week").err().unwrap()),
            "granularity"
        );
        assert_eq!(field_of(window("from=yesterday").err().unwrap()), "from");
        assert_eq!(
            field_of(window("to=2026-13-01T00:00:00Z").err().unwrap()),
            "to"
        );
        assert_eq!(
            field_of(
                window("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z")
                    .err()
                    .unwrap()
            ),
            "to"
        );
        assert_eq!(
            field_of(
                window("granularity=minute&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z")
                    .err()
                    .unwrap()
            ),
            "from"
        );
        assert_eq!(field_of(window("color=red").err().unwrap()), "query");
        assert_eq!(field_of(window("to=").err().unwrap()), "to");
        assert_eq!(field_of(window("from=").err().unwrap()), "from");
        assert_eq!(
            field_of(window("granularity=").err().unwrap()),
            "granularity"
        );
    }

    #[test]
    fn it_should_round_from_down_and_accept_an_offset() {
        let w = window("granularity=day&from=2026-01-02T10:00:00%2B02:00&to=2026-01-05T00:00:00Z")
            .unwrap();
        assert_eq!(text(w.from), "2026-01-02T00:00:00.000000Z");
        // An unencoded `+` (a space once decoded) is taken back.
        let w = window("from=2026-01-02T10:00:00+02:00&to=2026-01-03T00:00:00Z").unwrap();
        assert_eq!(text(w.from), "2026-01-02T08:00:00.000000Z");
    }
}
