//! Batch writes of the usage read model: a batch's calls added up in memory per row of
//! each table, then each touched row upserted once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::events::{ApiCallRecorded, CallOutcome};
use domain::ids::KeyId;
use sqlx::AnyConnection;

use super::{COUNTERS, Granularity, KEY_USAGE, ROUTES, ROWS_PER_STATEMENT, SERIES};
use crate::sqlval::timestamp;

/// Counts added up in memory before they are written.
#[derive(Debug, Clone, Default)]
pub(super) struct Tally {
    pub(super) total: i64,
    pub(super) successful: i64,
    pub(super) client_error: i64,
    pub(super) server_error: i64,
    pub(super) rate_limited: i64,
    pub(super) latency_us: i64,
    pub(super) last_used_at: Option<DateTime<Utc>>,
}

impl Tally {
    pub(super) fn add(&mut self, call: &ApiCallRecorded) {
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
    pub(super) fn counters(&self) -> [Val; 6] {
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
pub(super) struct Batch {
    /// key id -> (org id, counts)
    keys: BTreeMap<String, (String, Tally)>,
    /// (key id, method, route) -> (org id, counts)
    routes: BTreeMap<(String, String, String), (String, Tally)>,
    /// (scope, scope id, granularity, bucket start) -> counts
    series: BTreeMap<(&'static str, String, Granularity, String), Tally>,
}

impl Batch {
    pub(super) fn add(&mut self, key: KeyId, call: &ApiCallRecorded) {
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

    pub(super) async fn write(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
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
pub(super) enum Val {
    Text(String),
    Int(i64),
    OptText(Option<String>),
}

/// Upserts rows of `leading` columns, then [`COUNTERS`], then `last_used_at` if
/// `with_last_used`: a new row is inserted, an existing one gets the counts added and
/// keeps the later `last_used_at`.
pub(super) async fn upsert(
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
pub(super) fn upsert_sql(
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
