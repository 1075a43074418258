//! The usage read model against real stores: a known mix of `ApiCallRecorded` events is
//! appended straight to the event store, projected, and queried; counts must be exact
//! per key, route, bucket and organisation, after a restart mid-stream and after a
//! rebuild. Every case is a generic async function run on SQLite and (when configured)
//! on Postgres.
// Test helpers outside `#[test]` functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use domain::Scopes;
use domain::apikey::{self, Command, CreateKey};
use domain::events::{ApiCallRecorded, ApiKeyEvent, SecretHash, UsageEvent};
use domain::ids::{KeyId, OrgId};
use domain::store::{ExpectedVersion, Metadata};
use domain::token::{self, Environment};
use domain::values::{AllowedIps, KeyName};
use projections::usage::MAX_BUCKETS;
use projections::{
    Granularity, KeyListProjection, KeyQueries, Projection, Projector, QueryError, ReadDb,
    UsageCounts, UsageProjection, UsageQueries, UsageScope, rebuild,
};
use sqlx::{Column, Row};
use uuid::Uuid;

impl Env {
    fn usage(&self) -> UsageQueries {
        UsageQueries::new(self.db.clone())
    }

    fn projector(&self, projection: Arc<dyn Projection>, batch_size: usize) -> Projector {
        Projector::new(self.db.clone(), self.store.clone(), projection).with_batch_size(batch_size)
    }

    /// Runs `projector` until it has applied everything in the store, then stops it.
    async fn run(&self, projector: &Projector) {
        let head = self.store.head_position().await.unwrap();
        let handle = projector.clone().spawn();
        assert!(
            handle.wait_for(head, Duration::from_secs(30)).await,
            "{} did not reach {head}",
            handle.name()
        );
        handle.stop();
    }
}

/// 2026-01-01T10:00:00Z: the first minute of the mix.
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    base() + TimeDelta::seconds(secs)
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

const WORK_ORDERS: (&str, &str) = ("GET", "/organizations/{org}/work-orders");
const ASSETS: (&str, &str) = ("POST", "/organizations/{org}/assets");

/// Key A's calls: 7x200, 2x302, 3x404, 1x500, 4x429 over two routes and two minutes.
/// Minute 0 (10:00): work orders 4x200 2x302 1x404. Minute 1 (10:01): work orders 1x200,
/// then assets 2x200 2x404 1x500 4x429, the last at 10:01:41. Latency 100 us each.
fn mix_a() -> Vec<((&'static str, &'static str), i64, u16, u64)> {
    let mut calls = Vec::new();
    for (i, status) in [200, 200, 200, 200, 302, 302, 404].into_iter().enumerate() {
        calls.push((WORK_ORDERS, 5 * i as i64, status, 100));
    }
    calls.push((WORK_ORDERS, 60, 200, 100));
    for (i, status) in [200, 200, 404, 404, 500, 429, 429, 429, 429]
        .into_iter()
        .enumerate()
    {
        calls.push((ASSETS, 61 + 5 * i as i64, status, 100));
    }
    calls
}

/// Key B's calls: one in minute 0, a 503 an hour later, a 201 the next day.
fn mix_b() -> Vec<((&'static str, &'static str), i64, u16, u64)> {
    vec![
        (WORK_ORDERS, 50, 200, 10),
        (WORK_ORDERS, 3_600 + 10, 503, 20),
        (WORK_ORDERS, 86_400 + 5, 201, 30),
    ]
}

async fn append_calls(
    env: &Env,
    org: OrgId,
    key: KeyId,
    calls: &[((&'static str, &'static str), i64, u16, u64)],
) {
    // One event per append, interleaved by the caller, as the recorder's batches are.
    for &((method, route), secs, status, latency_us) in calls {
        let event: UsageEvent = ApiCallRecorded {
            org_id: org,
            at: at(secs),
            method: method.into(),
            route: route.into(),
            status,
            latency_us,
            client_ip: Some("192.0.2.1".parse().unwrap()),
            request_id: Some(Uuid::now_v7().to_string()),
        }
        .into();
        env.store
            .append(
                &key.usage_stream(),
                ExpectedVersion::Any,
                vec![event.to_new_event(Metadata {
                    actor: key.to_string(),
                    ..Metadata::default()
                })],
            )
            .await
            .unwrap();
    }
}

async fn create_key(env: &Env, org: OrgId, name: &str) -> KeyId {
    let id = KeyId::new_v7();
    let events = apikey::decide(
        &None,
        Command::CreateKey(Box::new(CreateKey {
            key_id: id,
            org_id: org,
            name: KeyName::parse(name).unwrap(),
            environment: Environment::Live,
            scopes: Scopes::parse(["work-orders:read"]).unwrap(),
            allowed_ips: AllowedIps::any(),
            expires_at: None,
            rate_limit_per_minute: None,
            secret_hash: SecretHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            prefix: token::prefix_of(Environment::Live, id),
            rotated_from: None,
            now: at(-60),
        })),
    )
    .unwrap();
    env.store
        .append(
            &id.stream(),
            ExpectedVersion::NoStream,
            ApiKeyEvent::to_new_events(&events, &Metadata::default()),
        )
        .await
        .unwrap();
    id
}

struct Fixture {
    org: OrgId,
    a: KeyId,
    b: KeyId,
    other_org: OrgId,
    other_key: KeyId,
}

/// Two keys of one organisation with the mixes above, and one key of another
/// organisation with a single call; the usage events are appended before the keys'
/// `KeyCreated`, which the usage read model must not need.
async fn arrange(env: &Env) -> Fixture {
    let f = Fixture {
        org: OrgId::new_v7(),
        a: KeyId::new_v7(),
        b: KeyId::new_v7(),
        other_org: OrgId::new_v7(),
        other_key: KeyId::new_v7(),
    };
    let (a, b) = (mix_a(), mix_b());
    // Interleave A and B so that batches hold both.
    let longest = a.len().max(b.len());
    for i in 0..longest {
        if let Some(call) = a.get(i) {
            append_calls(env, f.org, f.a, std::slice::from_ref(call)).await;
        }
        if let Some(call) = b.get(i) {
            append_calls(env, f.org, f.b, std::slice::from_ref(call)).await;
        }
    }
    append_calls(env, f.other_org, f.other_key, &[(WORK_ORDERS, 0, 200, 1)]).await;
    f
}

fn counts(c: &UsageCounts) -> (i64, i64, i64, i64, i64, i64) {
    (
        c.total_calls,
        c.successful_calls,
        c.client_error_calls,
        c.server_error_calls,
        c.rate_limited_calls,
        c.error_calls,
    )
}

async fn series(
    env: &Env,
    scope: UsageScope,
    granularity: Granularity,
) -> Vec<(String, (i64, i64, i64, i64, i64, i64))> {
    env.usage()
        .series(scope, granularity, at(-3_600), at(3 * 86_400))
        .await
        .unwrap()
        .iter()
        .map(|b| (b.start.clone(), counts(&b.counts)))
        .collect()
}

/// Every expected count, checked through the queries.
async fn assert_exact(env: &Env, f: &Fixture) {
    let q = env.usage();

    // Per key.
    let a = q.key_totals(f.org, f.a).await.unwrap();
    assert_eq!(counts(&a.counts), (17, 9, 3, 1, 4, 4));
    assert_eq!(a.counts.success_rate, Some(9.0 / 17.0));
    assert_eq!(a.counts.avg_latency_us, Some(100));
    assert_eq!(a.last_used_at.as_deref(), Some(text(at(101)).as_str()));
    let b = q.key_totals(f.org, f.b).await.unwrap();
    assert_eq!(counts(&b.counts), (3, 2, 0, 1, 0, 1));
    assert_eq!(b.counts.success_rate, Some(2.0 / 3.0));
    assert_eq!(b.counts.avg_latency_us, Some(20));
    assert_eq!(b.last_used_at.as_deref(), Some(text(at(86_405))).as_deref());
    // Another organisation's key looks unused.
    let hidden = q.key_totals(f.org, f.other_key).await.unwrap();
    assert_eq!(hidden.counts.total_calls, 0);
    assert_eq!(hidden.counts.success_rate, None);
    assert_eq!(hidden.last_used_at, None);

    // Per route, busiest first.
    let routes = q.by_route(f.org, f.a).await.unwrap();
    let got: Vec<_> = routes
        .iter()
        .map(|r| (r.method.as_str(), r.route.as_str(), counts(&r.counts)))
        .collect();
    assert_eq!(
        got,
        [
            (ASSETS.0, ASSETS.1, (9, 2, 2, 1, 4, 3)),
            (WORK_ORDERS.0, WORK_ORDERS.1, (8, 7, 1, 0, 0, 1)),
        ]
    );
    assert_eq!(
        routes[0].last_used_at.as_deref(),
        Some(text(at(101)).as_str())
    );
    assert_eq!(
        routes[1].last_used_at.as_deref(),
        Some(text(at(60)).as_str())
    );
    assert_eq!(routes[1].counts.success_rate, Some(7.0 / 8.0));
    assert!(q.by_route(f.other_org, f.a).await.unwrap().is_empty());

    // Per bucket, per key.
    let day1 = "2026-01-01T00:00:00.000000Z".to_owned();
    let day2 = "2026-01-02T00:00:00.000000Z".to_owned();
    assert_eq!(
        series(env, UsageScope::Key(f.a), Granularity::Minute).await,
        [
            (text(at(0)), (7, 6, 1, 0, 0, 1)),
            (text(at(60)), (10, 3, 2, 1, 4, 3)),
        ]
    );
    assert_eq!(
        series(env, UsageScope::Key(f.a), Granularity::Hour).await,
        [(text(at(0)), (17, 9, 3, 1, 4, 4))]
    );
    assert_eq!(
        series(env, UsageScope::Key(f.a), Granularity::Day).await,
        [(day1.clone(), (17, 9, 3, 1, 4, 4))]
    );
    assert_eq!(
        series(env, UsageScope::Key(f.b), Granularity::Minute).await,
        [
            (text(at(0)), (1, 1, 0, 0, 0, 0)),
            (text(at(3_600)), (1, 0, 0, 1, 0, 1)),
            (text(at(86_400)), (1, 1, 0, 0, 0, 0)),
        ]
    );
    assert_eq!(
        series(env, UsageScope::Key(f.b), Granularity::Hour).await,
        [
            (text(at(0)), (1, 1, 0, 0, 0, 0)),
            (text(at(3_600)), (1, 0, 0, 1, 0, 1)),
            (text(at(86_400)), (1, 1, 0, 0, 0, 0)),
        ]
    );
    assert_eq!(
        series(env, UsageScope::Key(f.b), Granularity::Day).await,
        [
            (day1.clone(), (2, 1, 0, 1, 0, 1)),
            (day2.clone(), (1, 1, 0, 0, 0, 0)),
        ]
    );

    // Per bucket, per organisation.
    assert_eq!(
        series(env, UsageScope::Org(f.org), Granularity::Minute).await,
        [
            (text(at(0)), (8, 7, 1, 0, 0, 1)),
            (text(at(60)), (10, 3, 2, 1, 4, 3)),
            (text(at(3_600)), (1, 0, 0, 1, 0, 1)),
            (text(at(86_400)), (1, 1, 0, 0, 0, 0)),
        ]
    );
    assert_eq!(
        series(env, UsageScope::Org(f.org), Granularity::Hour).await,
        [
            (text(at(0)), (18, 10, 3, 1, 4, 4)),
            (text(at(3_600)), (1, 0, 0, 1, 0, 1)),
            (text(at(86_400)), (1, 1, 0, 0, 0, 0)),
        ]
    );
    let days = env
        .usage()
        .series(
            UsageScope::Org(f.org),
            Granularity::Day,
            at(-3_600),
            at(3 * 86_400),
        )
        .await
        .unwrap();
    assert_eq!(
        days.iter()
            .map(|b| (b.start.clone(), counts(&b.counts)))
            .collect::<Vec<_>>(),
        [(day1, (19, 10, 3, 2, 4, 5)), (day2, (1, 1, 0, 0, 0, 0))]
    );
    assert_eq!(days[0].counts.success_rate, Some(10.0 / 19.0));
    // A window's totals are the sum of its buckets.
    assert_eq!(
        counts(&UsageCounts::sum(days.iter().map(|b| &b.counts))),
        (20, 11, 3, 2, 4, 5)
    );

    // Per organisation, lifetime.
    let org = q.org_totals(f.org).await.unwrap();
    assert_eq!(counts(&org.counts), (20, 11, 3, 2, 4, 5));
    assert_eq!(org.counts.success_rate, Some(11.0 / 20.0));
    assert_eq!(org.last_used_at.as_deref(), Some(text(at(86_405)).as_str()));
    let other = q.org_totals(f.other_org).await.unwrap();
    assert_eq!(counts(&other.counts), (1, 1, 0, 0, 0, 0));
    let nobody = q.org_totals(OrgId::new_v7()).await.unwrap();
    assert_eq!(counts(&nobody.counts), (0, 0, 0, 0, 0, 0));
    assert_eq!(nobody.counts.success_rate, None);

    // Windows: `from` is rounded down to its bucket, `to` is exclusive.
    let window = q
        .series(UsageScope::Key(f.a), Granularity::Minute, at(30), at(60))
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].start, text(at(0)));
    let window = q
        .series(UsageScope::Key(f.a), Granularity::Minute, at(60), at(61))
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].start, text(at(60)));
}

/// Every row of the usage tables, as text, in a stable order.
async fn raw_usage(db: &ReadDb) -> Vec<Vec<(String, String)>> {
    let mut all = Vec::new();
    for sql in [
        "SELECT * FROM key_usage ORDER BY key_id",
        "SELECT * FROM key_usage_routes ORDER BY key_id, method, route",
        "SELECT * FROM usage_series ORDER BY scope, scope_id, granularity, bucket_start",
    ] {
        let rows = sqlx::query(sql).fetch_all(db.pool()).await.unwrap();
        for row in &rows {
            all.push(
                row.columns()
                    .iter()
                    .map(|c| {
                        let i = c.ordinal();
                        let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                            format!("{v:?}")
                        } else {
                            panic!("column {} has an unexpected type", c.name())
                        };
                        (c.name().to_owned(), value)
                    })
                    .collect(),
            );
        }
    }
    all
}

// ------------------------------------------------------------------------- cases

async fn it_should_count_every_call_exactly_per_key_route_bucket_and_org(env: Env) {
    // Arrange
    let f = arrange(&env).await;

    // Act: everything in one batch.
    env.run(&env.projector(Arc::new(UsageProjection), 500))
        .await;

    // Assert
    assert_exact(&env, &f).await;
    let raw = raw_usage(&env.db).await;
    // 3 keys; A 2 routes, B 1, other 1; series: see the buckets above, per key and org.
    let tables = raw
        .iter()
        .map(|row| row.len())
        .fold((0, 0, 0), |(k, r, s), cols| match cols {
            9 => (k + 1, r, s),
            11 => (k, r + 1, s),
            10 => (k, r, s + 1),
            n => panic!("unexpected row width {n}"),
        });
    // Series rows: A 2+1+1, B 3+3+2, other key 1+1+1, org 4+3+2, other org 1+1+1.
    assert_eq!(tables, (3, 4, 4 + 8 + 3 + 9 + 3));
}

async fn it_should_stay_exact_across_a_stop_mid_stream_and_a_restart(env: Env) {
    // Arrange: half the calls, projected in small batches, then stopped part-way.
    let f = arrange(&env).await;
    let head = env.store.head_position().await.unwrap();
    let projector = env.projector(Arc::new(UsageProjection), 3);
    let handle = projector.clone().spawn();
    assert!(handle.wait_for(head / 2, Duration::from_secs(30)).await);
    handle.stop();
    // Let the abort land (a batch in flight is rolled back).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped_at = projector.checkpoint().await.unwrap();
    assert!(stopped_at >= head / 2 && stopped_at <= head, "{stopped_at}");

    // Act 1: a stale projector replays a batch it already applied: refused whole.
    let events = env.store.read_all(0, 1000).await.unwrap();
    let stale = projector.apply_batch(0, &events[..3]).await;
    assert!(
        stale.is_err(),
        "a replay past the checkpoint must be refused"
    );

    // Act 2: a fresh projector resumes from the checkpoint.
    env.run(&env.projector(Arc::new(UsageProjection), 3)).await;

    // Assert
    assert_eq!(projector.checkpoint().await.unwrap(), head);
    assert_exact(&env, &f).await;
}

async fn it_should_give_the_same_rows_after_a_rebuild(env: Env) {
    // Arrange: projected in batches of 4.
    let f = arrange(&env).await;
    let projector = env.projector(Arc::new(UsageProjection), 4);
    env.run(&projector).await;
    let before = raw_usage(&env.db).await;

    // Act: a rebuild (one batch of everything).
    let last = rebuild(&projector, |_, _| {}).await.unwrap();
    let rebuilt = raw_usage(&env.db).await;

    // Assert
    assert_eq!(last, env.store.head_position().await.unwrap());
    assert!(!before.is_empty());
    assert_eq!(rebuilt, before);
    assert_exact(&env, &f).await;
}

async fn it_should_show_usage_in_the_key_list_and_survive_its_rebuild(env: Env) {
    // Arrange: keys created after their usage was recorded (order must not matter), and
    // a key without calls.
    let f = arrange(&env).await;
    let created_a = create_key(&env, f.org, "a").await;
    let idle = create_key(&env, f.org, "idle").await;
    // The fixture's key ids are not the created ones; record A's mix on the created key.
    append_calls(&env, f.org, created_a, &mix_a()).await;
    let key_list = env.projector(Arc::new(KeyListProjection), 500);
    env.run(&env.projector(Arc::new(UsageProjection), 500))
        .await;
    env.run(&key_list).await;
    let keys = KeyQueries::new(env.db.clone());

    // Act
    let listed = keys.list(f.org, None, 50, None, at(0)).await.unwrap().items;
    rebuild(&key_list, |_, _| {}).await.unwrap();
    let after_rebuild = keys.get(f.org, created_a, at(0)).await.unwrap().unwrap();

    // Assert
    assert_eq!(listed.len(), 2);
    let a = listed
        .iter()
        .find(|r| r.id == created_a.to_string())
        .unwrap();
    assert_eq!(a.usage.total_calls, 17);
    assert_eq!(a.usage.successful_calls, 9);
    assert_eq!(a.usage.error_calls, 4);
    assert_eq!(a.usage.client_error_calls, 3);
    assert_eq!(a.usage.server_error_calls, 1);
    assert_eq!(a.usage.rate_limited_calls, 4);
    assert_eq!(a.usage.success_rate, Some(9.0 / 17.0));
    assert_eq!(
        a.usage.last_used_at.as_deref(),
        Some(text(at(101)).as_str())
    );
    let i = listed.iter().find(|r| r.id == idle.to_string()).unwrap();
    assert_eq!(i.usage.total_calls, 0);
    assert_eq!(i.usage.success_rate, None);
    assert_eq!(i.usage.last_used_at, None);
    assert_eq!(&after_rebuild, a);
}

async fn it_should_refuse_a_reversed_or_oversized_range(env: Env) {
    let q = env.usage();
    let scope = UsageScope::Org(OrgId::new_v7());
    assert!(matches!(
        q.series(scope, Granularity::Hour, at(10), at(10)).await,
        Err(QueryError::BadRange(_))
    ));
    assert!(matches!(
        q.series(
            scope,
            Granularity::Minute,
            at(0),
            at(60 * (MAX_BUCKETS + 1))
        )
        .await,
        Err(QueryError::TooManyBuckets { .. })
    ));
    // Exactly the most buckets, from midnight (a day's bucket start).
    let midnight = at(-36_000);
    assert!(
        q.series(
            scope,
            Granularity::Day,
            midnight,
            midnight + TimeDelta::days(MAX_BUCKETS)
        )
        .await
        .unwrap()
        .is_empty()
    );
}

// ------------------------------------------------------------------------- runners

test_support::backend_tests!(
    with common::env;
    it_should_count_every_call_exactly_per_key_route_bucket_and_org,
    it_should_stay_exact_across_a_stop_mid_stream_and_a_restart,
    it_should_give_the_same_rows_after_a_rebuild,
    it_should_show_usage_in_the_key_list_and_survive_its_rebuild,
    it_should_refuse_a_reversed_or_oversized_range,
);
