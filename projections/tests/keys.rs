//! The key list and organisations read models against real stores: events made by the
//! domain's `decide`, appended to the event store, projected, then queried. Every case
//! is a generic async function run on SQLite and (when configured) on Postgres.
// Test helpers outside `#[test]` functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use domain::apikey::{self, Command, CreateKey, KeyStatus};
use domain::events::{
    ApiCallRecorded, ApiKeyEvent, ExpiryChanged, OrganizationCreated, OrganizationEvent,
    PlanChanged, SecretHash, UsageEvent,
};
use domain::ids::{KeyId, OrgId};
use domain::store::{ExpectedVersion, Metadata, NewEvent};
use domain::token::{self, Environment};
use domain::values::{AllowedIps, KeyName, OrgName, RateLimit};
use domain::{Plan, Scope, Scopes};
use projections::{
    KeyListProjection, KeyQueries, KeyRow, OrgQueries, OrganizationsProjection, Projection,
    Projector, ProjectorHandle, QueryError, ReadDb, UsageProjection, all_projections, rebuild,
};
use sqlx::{Column, Row};
use uuid::Uuid;

/// Stands in for an argon2id PHC string; distinctive enough to find anywhere.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$SECRETHASHMARKER0123456789abcdef";

impl Env {
    fn keys(&self) -> KeyQueries {
        KeyQueries::new(self.db.clone())
    }

    /// Starts every projection of the crate.
    fn start(&self) -> Vec<ProjectorHandle> {
        all_projections()
            .into_iter()
            .map(|p| Projector::new(self.db.clone(), self.store.clone(), p).spawn())
            .collect()
    }

    /// Waits until every projector has applied everything in the store.
    async fn sync(&self, handles: &[ProjectorHandle]) {
        let head = self.store.head_position().await.unwrap();
        for h in handles {
            assert!(
                h.wait_for(head, Duration::from_secs(30)).await,
                "{} did not reach {head}",
                h.name()
            );
        }
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn actor(who: &str) -> Metadata {
    Metadata {
        actor: who.to_owned(),
        ..Metadata::default()
    }
}

/// A key's stream on the write side: state folded from what was appended.
struct Key {
    id: KeyId,
    state: Option<apikey::State>,
}

impl Key {
    async fn create(env: &Env, org: OrgId, name: &str, created_at: DateTime<Utc>) -> Key {
        let id = KeyId::new_v7();
        let mut key = Key { id, state: None };
        key.run(
            env,
            Command::CreateKey(Box::new(CreateKey {
                key_id: id,
                org_id: org,
                name: KeyName::parse(name).unwrap(),
                environment: Environment::Live,
                scopes: Scopes::parse(["work-orders:read", "assets:read"]).unwrap(),
                allowed_ips: AllowedIps::parse(["10.0.0.0/8"]).unwrap(),
                expires_at: None,
                rate_limit_per_minute: Some(RateLimit::parse(42).unwrap()),
                secret_hash: SecretHash::new(HASH),
                prefix: token::prefix_of(Environment::Live, id),
                rotated_from: None,
                now: created_at,
            })),
            "cli:alice",
        )
        .await;
        key
    }

    /// Decides `command` against the state and appends what it decided.
    async fn run(&mut self, env: &Env, command: Command, who: &str) {
        let events = apikey::decide(&self.state, command).unwrap();
        self.append(env, events, who).await;
    }

    /// Appends events as given (e.g. ones `decide` would refuse, like a past expiry).
    async fn append(&mut self, env: &Env, events: Vec<ApiKeyEvent>, who: &str) {
        let version = self.state.as_ref().map_or(0, |s| s.version);
        for e in &events {
            self.state = apikey::evolve(self.state.take(), e);
        }
        env.store
            .append(
                &self.id.stream(),
                ExpectedVersion::Exact(version),
                ApiKeyEvent::to_new_events(&events, &actor(who)),
            )
            .await
            .unwrap();
    }
}

async fn create_org(env: &Env, name: &str, plan: Plan) -> OrgId {
    let id = OrgId::new_v7();
    let event: OrganizationEvent = OrganizationCreated {
        org_id: id,
        name: OrgName::parse(name).unwrap(),
        plan,
    }
    .into();
    env.store
        .append(
            &id.stream(),
            ExpectedVersion::NoStream,
            vec![event.to_new_event(actor("cli:root"))],
        )
        .await
        .unwrap();
    id
}

/// Events of other streams that the key list must ignore.
async fn append_noise(env: &Env, key: KeyId) {
    let call: UsageEvent = ApiCallRecorded {
        org_id: OrgId::from_uuid(uuid::Uuid::nil()),
        at: at(0),
        method: "GET".into(),
        route: "/whoami".into(),
        status: 200,
        latency_us: 10,
        client_ip: None,
        request_id: None,
    }
    .into();
    env.store
        .append(
            &key.usage_stream(),
            ExpectedVersion::Any,
            vec![call.to_new_event(actor(&key.to_string()))],
        )
        .await
        .unwrap();
    env.store
        .append(
            "data-work-orders",
            ExpectedVersion::Any,
            vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "SomethingElse".into(),
                schema_version: 1,
                data: serde_json::json!({"x": 1}),
                metadata: actor("test"),
            }],
        )
        .await
        .unwrap();
}

async fn all_rows(keys: &KeyQueries, org: OrgId, now: DateTime<Utc>) -> Vec<KeyRow> {
    keys.list(org, None, 100, None, now).await.unwrap().items
}

// ------------------------------------------------------------------------- cases

async fn it_should_list_a_created_key_with_zero_usage(env: Env) {
    // Arrange
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Enterprise).await;
    let key = Key::create(&env, org, "ci", at(5)).await;
    // Another key's calls: none of them may show on this key.
    append_noise(&env, KeyId::new_v7()).await;

    // Act
    env.sync(&handles).await;
    let page = env.keys().list(org, None, 50, None, at(10)).await.unwrap();

    // Assert
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next_cursor, None);
    let row = &page.items[0];
    assert_eq!(row.id, key.id.to_string());
    assert_eq!(row.org_id, org.to_string());
    assert_eq!(row.name, "ci");
    assert_eq!(row.prefix, token::prefix_of(Environment::Live, key.id));
    assert_eq!(row.environment, "live");
    assert_eq!(row.status, "active");
    assert_eq!(row.scopes, ["assets:read", "work-orders:read"]);
    assert_eq!(row.allowed_ips, ["10.0.0.0/8"]);
    assert_eq!(row.created_at, text(at(5)));
    assert_eq!(row.created_by.as_deref(), Some("cli:alice"));
    assert_eq!(row.rate_limit_per_minute, Some(42));
    assert_eq!(row.version, 1);
    assert_eq!(
        (row.revoked_at.as_deref(), row.expires_at.as_deref()),
        (None, None)
    );
    assert_eq!(row.usage.total_calls, 0);
    assert_eq!(row.usage.successful_calls, 0);
    assert_eq!(row.usage.error_calls, 0);
    assert_eq!(row.usage.rate_limited_calls, 0);
    assert_eq!(row.usage.success_rate, None);
    assert_eq!(row.usage.last_used_at, None);
    let json = serde_json::to_value(row).unwrap();
    assert_eq!(json["usage"]["success_rate"], serde_json::Value::Null);
    assert_eq!(json["status"], "active");

    let got = env.keys().get(org, key.id, at(10)).await.unwrap();
    assert_eq!(got.as_ref(), Some(row));
}

async fn it_should_show_every_change_and_the_revocation(env: Env) {
    // Arrange
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Enterprise).await;
    let mut key = Key::create(&env, org, "ci", at(0)).await;
    let expiry = at(86_400);

    // Act
    key.run(
        &env,
        Command::Rename {
            name: KeyName::parse("deploy").unwrap(),
        },
        "cli:bob",
    )
    .await;
    key.run(
        &env,
        Command::ChangeScopes {
            scopes: Scopes::parse(["locations:read"]).unwrap(),
        },
        "cli:bob",
    )
    .await;
    key.run(
        &env,
        Command::ChangeAllowedIps {
            allowed_ips: AllowedIps::parse(["192.0.2.0/24", "::1"]).unwrap(),
        },
        "cli:bob",
    )
    .await;
    key.run(
        &env,
        Command::ChangeExpiry {
            expires_at: Some(expiry),
            now: at(1),
        },
        "cli:bob",
    )
    .await;
    env.sync(&handles).await;
    let changed = env.keys().get(org, key.id, at(2)).await.unwrap().unwrap();

    key.run(
        &env,
        Command::Revoke {
            reason: Some("leaked".into()),
            now: at(3),
        },
        "cli:carol",
    )
    .await;
    env.sync(&handles).await;
    let revoked = env.keys().get(org, key.id, at(4)).await.unwrap().unwrap();

    // Assert
    assert_eq!(changed.name, "deploy");
    assert_eq!(changed.scopes, ["locations:read"]);
    assert_eq!(changed.allowed_ips, ["192.0.2.0/24", "::1/128"]);
    assert_eq!(changed.expires_at, Some(text(expiry)));
    assert_eq!(changed.status, "active");
    assert_eq!(changed.version, 5);
    assert_eq!(changed.revoked_at, None);

    assert_eq!(revoked.status, "revoked");
    assert_eq!(revoked.revoked_at, Some(text(at(3))));
    assert_eq!(revoked.revoked_by.as_deref(), Some("cli:carol"));
    assert_eq!(revoked.revocation_reason.as_deref(), Some("leaked"));
    assert_eq!(revoked.version, 6);
    assert_eq!(revoked.created_by.as_deref(), Some("cli:alice"));
    // Revocation wins over expiry, even after the expiry.
    let later = env.keys().get(org, key.id, at(100_000)).await.unwrap();
    assert_eq!(later.unwrap().status, "revoked");
}

async fn it_should_compute_expiry_and_filter_by_status(env: Env) {
    // Arrange: one key of each status, plus one that expires later.
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Enterprise).await;
    let active = Key::create(&env, org, "active", at(0)).await;
    let mut revoked = Key::create(&env, org, "revoked", at(1)).await;
    revoked
        .run(
            &env,
            Command::Revoke {
                reason: None,
                now: at(2),
            },
            "cli:bob",
        )
        .await;
    let mut expired = Key::create(&env, org, "expired", at(3)).await;
    // `decide` refuses a past expiry; the projection must still honour one.
    expired
        .append(
            &env,
            vec![
                ExpiryChanged {
                    expires_at: Some(at(4)),
                }
                .into(),
            ],
            "cli:bob",
        )
        .await;
    let mut later = Key::create(&env, org, "later", at(5)).await;
    later
        .run(
            &env,
            Command::ChangeExpiry {
                expires_at: Some(at(1000)),
                now: at(6),
            },
            "cli:bob",
        )
        .await;
    env.sync(&handles).await;
    let keys = env.keys();
    let now = at(10);

    // Act
    let names = |rows: Vec<KeyRow>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let only = |status| {
        let keys = keys.clone();
        async move {
            names(
                keys.list(org, Some(status), 100, None, now)
                    .await
                    .unwrap()
                    .items,
            )
        }
    };

    // Assert
    assert_eq!(only(KeyStatus::Active).await, ["later", "active"]);
    assert_eq!(only(KeyStatus::Revoked).await, ["revoked"]);
    assert_eq!(only(KeyStatus::Expired).await, ["expired"]);
    let statuses: Vec<(String, String)> = all_rows(&keys, org, now)
        .await
        .into_iter()
        .map(|r| (r.name, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("later".to_owned(), "active".to_owned()),
            ("expired".to_owned(), "expired".to_owned()),
            ("revoked".to_owned(), "revoked".to_owned()),
            ("active".to_owned(), "active".to_owned()),
        ]
    );
    // At exactly its expiry a key is expired; a future `now` expires "later" too.
    let at_expiry = keys.get(org, later.id, at(1000)).await.unwrap().unwrap();
    assert_eq!(at_expiry.status, "expired");
    let future = keys
        .list(org, Some(KeyStatus::Expired), 100, None, at(1000))
        .await
        .unwrap();
    assert_eq!(names(future.items), ["later", "expired"]);
    assert_eq!(
        keys.get(org, active.id, at(1000))
            .await
            .unwrap()
            .unwrap()
            .status,
        "active"
    );
}

async fn it_should_page_through_seven_keys_three_at_a_time(env: Env) {
    // Arrange: seven keys; three share a creation time, so the id breaks the tie.
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Enterprise).await;
    let times = [0, 1, 2, 2, 2, 3, 4];
    let mut created = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let key = Key::create(&env, org, &format!("k{i}"), at(*t)).await;
        created.push((text(at(*t)), key.id.to_string()));
    }
    env.sync(&handles).await;
    created.sort();
    created.reverse();
    let expected: Vec<String> = created.into_iter().map(|(_, id)| id).collect();
    let keys = env.keys();

    // Act
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = keys
            .list(org, None, 3, cursor.as_deref(), at(10))
            .await
            .unwrap();
        pages.push(page.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let seen: Vec<String> = pages.concat();
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7, "duplicates");
    assert_eq!(seen, expected);
    // Exactly a multiple of the limit: the last full page has no cursor.
    let page = keys.list(org, None, 7, None, at(10)).await.unwrap();
    assert_eq!((page.items.len(), page.next_cursor), (7, None));
    // A status filter pages too.
    let page = keys
        .list(org, Some(KeyStatus::Active), 5, None, at(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    let rest = keys
        .list(
            org,
            Some(KeyStatus::Active),
            5,
            page.next_cursor.as_deref(),
            at(10),
        )
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.next_cursor), (2, None));
}

async fn it_should_refuse_a_bad_cursor_or_limit(env: Env) {
    let org = OrgId::new_v7();
    let keys = env.keys();
    for bad in ["nope", "!!", "djF8eXxa"] {
        let err = keys.list(org, None, 3, Some(bad), at(0)).await.unwrap_err();
        assert!(matches!(err, QueryError::BadCursor), "{bad}: {err}");
    }
    for limit in [0, 101] {
        let err = keys.list(org, None, limit, None, at(0)).await.unwrap_err();
        assert!(matches!(err, QueryError::BadLimit(n) if n == limit));
    }
}

async fn it_should_hide_keys_from_another_organisation(env: Env) {
    // Arrange
    let handles = env.start();
    let mine = create_org(&env, "mine", Plan::Enterprise).await;
    let theirs = create_org(&env, "theirs", Plan::Professional).await;
    let key = Key::create(&env, mine, "ci", at(0)).await;
    env.sync(&handles).await;
    let keys = env.keys();

    // Act
    let listed = keys.list(theirs, None, 100, None, at(1)).await.unwrap();
    let got = keys.get(theirs, key.id, at(1)).await.unwrap();
    let unknown = keys.get(mine, KeyId::new_v7(), at(1)).await.unwrap();

    // Assert
    assert!(listed.items.is_empty());
    assert_eq!(listed.next_cursor, None);
    assert_eq!(got, None);
    assert_eq!(unknown, None);
    assert!(keys.get(mine, key.id, at(1)).await.unwrap().is_some());
}

async fn it_should_show_a_rotation_on_both_keys(env: Env) {
    // Arrange
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Enterprise).await;
    let mut old = Key::create(&env, org, "ci", at(0)).await;
    let successor = KeyId::new_v7();

    // Act
    old.run(
        &env,
        Command::Rotate {
            successor_id: successor,
            grace_period: TimeDelta::hours(1),
            now: at(10),
        },
        "cli:bob",
    )
    .await;
    let mut new = Key {
        id: successor,
        state: None,
    };
    new.run(
        &env,
        Command::CreateKey(Box::new(CreateKey {
            key_id: successor,
            org_id: org,
            name: KeyName::parse("ci").unwrap(),
            environment: Environment::Live,
            scopes: Scope::data_scopes(),
            allowed_ips: AllowedIps::any(),
            expires_at: None,
            rate_limit_per_minute: None,
            secret_hash: SecretHash::new(HASH),
            prefix: token::prefix_of(Environment::Live, successor),
            rotated_from: Some(old.id),
            now: at(10),
        })),
        "cli:bob",
    )
    .await;
    env.sync(&handles).await;
    let keys = env.keys();

    // Assert
    let old_row = keys.get(org, old.id, at(11)).await.unwrap().unwrap();
    assert_eq!(old_row.rotated_to, Some(successor.to_string()));
    assert_eq!(old_row.expires_at, Some(text(at(3610))));
    assert_eq!(old_row.status, "active");
    assert_eq!(
        keys.get(org, old.id, at(3610))
            .await
            .unwrap()
            .unwrap()
            .status,
        "expired"
    );
    let new_row = keys.get(org, successor, at(11)).await.unwrap().unwrap();
    assert_eq!(new_row.rotated_from, Some(old.id.to_string()));
    assert_eq!(new_row.rate_limit_per_minute, None);
    assert!(new_row.allowed_ips.is_empty());
}

/// Every stored column of `api_keys` as text, row by row.
async fn raw_api_keys(db: &ReadDb) -> Vec<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT * FROM api_keys ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|c| {
                    let i = c.ordinal();
                    let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                        format!("{v:?}")
                    } else {
                        panic!("column {} has an unexpected type", c.name())
                    };
                    (c.name().to_owned(), value)
                })
                .collect()
        })
        .collect()
}

async fn it_should_give_identical_rows_after_a_replay_and_a_rebuild(env: Env) {
    // Arrange: a bit of everything, projected once.
    let org = create_org(&env, "acme", Plan::Professional).await;
    let mut a = Key::create(&env, org, "a", at(0)).await;
    let mut b = Key::create(&env, org, "b", at(1)).await;
    for name in ["a2", "a3"] {
        a.run(
            &env,
            Command::Rename {
                name: KeyName::parse(name).unwrap(),
            },
            "cli:bob",
        )
        .await;
    }
    b.run(
        &env,
        Command::Revoke {
            reason: Some("done".into()),
            now: at(2),
        },
        "cli:bob",
    )
    .await;
    append_noise(&env, a.id).await;
    let projector = Projector::new(
        env.db.clone(),
        env.store.clone(),
        Arc::new(KeyListProjection),
    );
    let handle = projector.clone().spawn();
    env.sync(std::slice::from_ref(&handle)).await;
    handle.stop();
    let before = raw_api_keys(&env.db).await;
    let listed = all_rows(&env.keys(), org, at(5)).await;

    // Act 1: the same events applied again on top (as a replay without a reset would).
    let head = env.store.head_position().await.unwrap();
    let events = env.store.read_all(0, 1000).await.unwrap();
    projector.apply_batch(head, &events).await.unwrap();
    let replayed = raw_api_keys(&env.db).await;

    // Act 2: older events of a stream alone, out of order (only the version guard and
    // `ON CONFLICT DO NOTHING` keep them from winding the row back).
    let stale: Vec<_> = env.store.read_stream(&a.id.stream(), 1, 2).await.unwrap();
    assert_eq!(stale[1].data["name"], "a2");
    {
        let mut conn = env.db.pool().acquire().await.unwrap();
        for event in stale.iter().rev() {
            KeyListProjection.apply(&mut conn, event).await.unwrap();
        }
    }
    let after_stale = raw_api_keys(&env.db).await;

    // Act 3: a rebuild from position 0.
    let last = rebuild(&projector, |_, _| {}).await.unwrap();
    let rebuilt = raw_api_keys(&env.db).await;

    // Assert
    assert_eq!(before.len(), 2);
    assert_eq!(replayed, before);
    assert_eq!(after_stale, before);
    assert!(listed.iter().any(|r| r.name == "a3" && r.version == 3));
    assert_eq!(last, head);
    assert_eq!(rebuilt, before);
    assert_eq!(all_rows(&env.keys(), org, at(5)).await, listed);
}

async fn it_should_never_store_the_secret_hash(env: Env) {
    // Arrange
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Enterprise).await;
    let mut key = Key::create(&env, org, "ci", at(0)).await;
    key.run(
        &env,
        Command::Revoke {
            reason: None,
            now: at(1),
        },
        "cli:bob",
    )
    .await;
    env.sync(&handles).await;

    // Act
    let raw = raw_api_keys(&env.db).await;
    let json = serde_json::to_string(&all_rows(&env.keys(), org, at(2)).await).unwrap();

    // Assert: the store has the hash; the read model does not.
    let stored = env
        .store
        .read_stream(&key.id.stream(), 1, 10)
        .await
        .unwrap();
    assert_eq!(stored[0].data["secret_hash"], HASH);
    assert_eq!(raw.len(), 1);
    for (column, value) in &raw[0] {
        assert!(!value.contains(HASH), "column {column} holds the hash");
        assert!(!value.contains("argon2"), "column {column}: {value}");
        assert!(!value.contains("SECRETHASHMARKER"), "column {column}");
    }
    assert!(!json.contains("SECRETHASHMARKER") && !json.contains("argon2"));
    assert!(!json.contains("secret"), "{json}");
}

async fn it_should_project_organisations(env: Env) {
    // Arrange
    let handles = env.start();
    let org = create_org(&env, "acme", Plan::Starter).await;
    let changed: OrganizationEvent = PlanChanged {
        plan: Plan::Professional,
    }
    .into();
    env.store
        .append(
            &org.stream(),
            ExpectedVersion::Exact(1),
            vec![changed.to_new_event(actor("cli:root"))],
        )
        .await
        .unwrap();
    env.sync(&handles).await;
    let orgs = OrgQueries::new(env.db.clone());

    // Act
    let row = orgs.get(org).await.unwrap().unwrap();
    let created_at = DateTime::parse_from_rfc3339(&row.created_at).unwrap();
    let stop = all_projections()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>();

    // Assert
    assert_eq!(row.id, org.to_string());
    assert_eq!(row.name, "acme");
    assert_eq!(row.plan, "professional");
    assert_eq!(row.version, 2);
    assert!(created_at.with_timezone(&Utc) <= Utc::now());
    assert_eq!(orgs.get(OrgId::new_v7()).await.unwrap(), None);
    assert_eq!(
        stop,
        [
            KeyListProjection.name(),
            OrganizationsProjection.name(),
            UsageProjection.name()
        ]
    );
    assert_eq!(stop, ["key_list", "organizations", "key_usage"]);
}

// ------------------------------------------------------------------------- runners

test_support::backend_tests!(
    with common::env;
    it_should_list_a_created_key_with_zero_usage,
    it_should_show_every_change_and_the_revocation,
    it_should_compute_expiry_and_filter_by_status,
    it_should_page_through_seven_keys_three_at_a_time,
    it_should_refuse_a_bad_cursor_or_limit,
    it_should_hide_keys_from_another_organisation,
    it_should_show_a_rotation_on_both_keys,
    it_should_give_identical_rows_after_a_replay_and_a_rebuild,
    it_should_never_store_the_secret_hash,
    it_should_project_organisations,
);
