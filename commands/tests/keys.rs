//! The key lifecycle's command handlers (`commands::keys::KeyService`) against SQLite
//! (always) and Postgres (when `KEYLEDGER_TEST_POSTGRES_URL` is set; unset, the Postgres
//! cases print a line and pass; set but unreachable, they fail). The same generic cases
//! run on both; each gets a fresh database.
// Test helpers outside #[test] fns fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use commands::conformance::TestDatabase;
use commands::hashing::verify_token;
use commands::keys::{
    BOOTSTRAP_ORG_ID, CommandContext, CommandError, CreatedKey, KeyPatch, KeyService, NewKey,
};
use domain::policy::{Actor, Authority, PolicyError, Restrictions};
use domain::store::EventStore;
use domain::{
    AllowedIps, Environment, KeyName, KeyStatus, OrgId, OrgName, Plan, Scope, Scopes, apikey,
    organization,
};
use test_support::Backend;

mod common;

use common::StoreDb;

test_support::backend_tests!(
    with StoreDb::new;
    each #[tokio::test(flavor = "multi_thread", worker_threads = 4)];
    creates_an_organization_with_a_root_key,
    a_starter_organization_cannot_create_keys,
    a_plan_change_lets_an_organization_create_keys,
    the_key_limit_holds_under_thirty_concurrent_creates,
    an_expired_key_frees_its_slot,
    enterprise_has_no_key_limit,
    a_key_cannot_grant_a_scope_it_does_not_hold,
    another_organizations_key_is_not_found,
    update_key_appends_every_change_at_once,
    update_key_with_a_stale_if_match_fails,
    concurrent_updates_naming_one_version_let_exactly_one_win,
    revoking_twice_is_a_no_op,
    rotation_keeps_both_keys_active_during_the_grace_period,
    concurrent_bootstraps_create_one_organization,
    bootstrap_does_nothing_on_a_non_empty_store,
    no_secret_reaches_the_store,
    a_write_only_key_cannot_change_or_rotate_the_root_key,
    a_restricted_key_cannot_create_a_less_restricted_child,
    a_restricted_key_cannot_loosen_another_key_beyond_its_own_restrictions,
    a_subordinate_key_is_rotated_with_its_restrictions,
    a_key_with_a_legacy_prefix_keeps_it_and_can_still_be_rotated,
);

// ---------------------------------------------------------------- helpers

fn ctx() -> CommandContext {
    CommandContext {
        actor: "cli:test".into(),
        request_id: Some("req-1".into()),
        correlation_id: Some("corr-1".into()),
    }
}

fn new_key(name: &str) -> NewKey {
    NewKey {
        name: KeyName::parse(name).unwrap(),
        scopes: None,
        environment: Environment::Test,
        allowed_ips: AllowedIps::any(),
        expires_at: None,
        rate_limit_per_minute: None,
    }
}

/// An API key actor holding `names` and no restriction.
fn holding(names: &[&str]) -> Actor {
    Actor::Key(Authority {
        scopes: scopes(names),
        restrictions: Restrictions::default(),
    })
}

fn scopes(names: &[&str]) -> Scopes {
    Scopes::parse(names.iter().copied()).unwrap()
}

async fn service(db: &StoreDb) -> KeyService {
    KeyService::new(db.open().await)
}

async fn org(svc: &KeyService, plan: Plan) -> (organization::State, CreatedKey) {
    svc.create_organization(
        &ctx(),
        OrgName::parse("acme").unwrap(),
        plan,
        Environment::Test,
    )
    .await
    .unwrap()
}

/// How many `KeyCreated` events the store holds for `org`.
async fn key_created_count(store: &Arc<dyn EventStore>, org: OrgId) -> usize {
    let mut count = 0;
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 500).await.unwrap();
        let Some(last) = batch.last() else {
            return count;
        };
        after = last.position;
        count += batch
            .iter()
            .filter(|e| e.event_type == "KeyCreated" && e.data["org_id"] == serde_json::json!(org))
            .count();
    }
}

// ---------------------------------------------------------------- cases

async fn creates_an_organization_with_a_root_key(db: StoreDb) {
    // Arrange
    let svc = service(&db).await;

    // Act
    let (org, root) = org(&svc, Plan::Professional).await;

    // Assert
    assert_eq!(org.plan, Plan::Professional);
    assert_eq!(org.issued_keys, vec![root.key.id]);
    assert_eq!(root.key.org_id, org.id);
    assert_eq!(root.key.scopes, Scope::all());
    assert_eq!(root.key.status(Utc::now()), KeyStatus::Active);
    assert_eq!(root.token.key_id(), root.key.id);
    assert_eq!(root.written.version, 1);
    assert!(root.written.position >= 3, "org events and KeyCreated");
    assert_eq!(
        svc.load_key(root.key.id).await.unwrap(),
        Some(root.key.clone())
    );
    assert_eq!(svc.load_org(org.id).await.unwrap(), Some(org.clone()));
    assert_eq!(
        svc.list_org_key_ids(org.id).await.unwrap(),
        vec![root.key.id]
    );

    let token = root.token.expose_secret().to_owned();
    assert!(verify_token(&token, &root.key.secret_hash));
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    assert!(!verify_token(&altered, &root.key.secret_hash));

    let events = svc
        .store()
        .read_stream(&root.key.id.stream(), 1, 10)
        .await
        .unwrap();
    assert_eq!(events[0].metadata.actor, "cli:test");
    assert_eq!(events[0].metadata.request_id.as_deref(), Some("req-1"));
    assert_eq!(events[0].metadata.correlation_id.as_deref(), Some("corr-1"));
}

async fn a_starter_organization_cannot_create_keys(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Starter).await;

    let result = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await;

    assert!(
        matches!(
            result,
            Err(CommandError::Org(organization::Error::PlanRequired {
                plan: Plan::Starter
            }))
        ),
        "{result:?}"
    );
    assert_eq!(key_created_count(svc.store(), org.id).await, 1, "root only");
}

async fn a_plan_change_lets_an_organization_create_keys(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Starter).await;

    let changed = svc
        .change_plan(&ctx(), org.id, Plan::Professional)
        .await
        .unwrap();
    let unchanged = svc
        .change_plan(&ctx(), org.id, Plan::Professional)
        .await
        .unwrap();

    assert_eq!(changed.version, 3);
    assert_eq!(unchanged, changed, "same plan: nothing written");
    svc.create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();
    let missing = OrgId::new_v7();
    assert!(matches!(
        svc.change_plan(&ctx(), missing, Plan::Enterprise).await,
        Err(CommandError::Org(organization::Error::NotFound))
    ));
}

async fn the_key_limit_holds_under_thirty_concurrent_creates(db: StoreDb) {
    // Arrange: two services on separate pools, as two nodes would be.
    let a = service(&db).await;
    let b = service(&db).await;
    let (org, _root) = org(&a, Plan::Professional).await;

    // Act
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                svc.create_key(&ctx(), org.id, &Actor::Operator, new_key(&format!("k{i}")))
                    .await
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(key) => created.push(key),
            Err(CommandError::Org(organization::Error::KeyLimitReached { limit: 10 })) => {
                refused += 1;
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }

    // Assert: the organisation holds 10 active keys, the root key among them.
    assert_eq!(created.len(), 9);
    assert_eq!(refused, 21);
    assert_eq!(
        key_created_count(a.store(), org.id).await,
        9 + 1,
        "9 and the root"
    );
    assert_eq!(
        a.load_org(org.id).await.unwrap().unwrap().issued_keys.len(),
        10
    );

    // Revoking one frees a slot, for one key only.
    let freed = created[3].key.id;
    a.revoke(&ctx(), org.id, freed, Some("rotated out".into()))
        .await
        .unwrap();
    a.create_key(&ctx(), org.id, &Actor::Operator, new_key("again"))
        .await
        .unwrap();
    let full = a
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("too many"))
        .await;
    assert!(
        matches!(
            full,
            Err(CommandError::Org(organization::Error::KeyLimitReached {
                limit: 10
            }))
        ),
        "{full:?}"
    );
}

async fn an_expired_key_frees_its_slot(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Professional).await;
    let mut short = new_key("short-lived");
    short.expires_at = Some(Utc::now() + TimeDelta::milliseconds(1500));
    svc.create_key(&ctx(), org.id, &Actor::Operator, short)
        .await
        .unwrap();
    // The root, the short-lived key and 8 more: 10 active keys.
    for i in 0..8 {
        svc.create_key(&ctx(), org.id, &Actor::Operator, new_key(&format!("k{i}")))
            .await
            .unwrap();
    }
    let full = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("full"))
        .await;
    assert!(
        matches!(
            full,
            Err(CommandError::Org(organization::Error::KeyLimitReached {
                limit: 10
            }))
        ),
        "{full:?}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;

    svc.create_key(&ctx(), org.id, &Actor::Operator, new_key("after expiry"))
        .await
        .unwrap();
}

async fn enterprise_has_no_key_limit(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;

    for i in 0..15 {
        svc.create_key(&ctx(), org.id, &Actor::Operator, new_key(&format!("k{i}")))
            .await
            .unwrap();
    }

    assert_eq!(key_created_count(svc.store(), org.id).await, 16);
}

async fn a_key_cannot_grant_a_scope_it_does_not_hold(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let granter = holding(&["api-keys:create", "work-orders:read"]);

    let mut asks_more = new_key("more");
    asks_more.scopes = Some(scopes(&["work-orders:read", "assets:write"]));
    let explicit = svc.create_key(&ctx(), org.id, &granter, asks_more).await;
    // Omitted scopes mean every data scope, which this granter does not hold either.
    let defaulted = svc
        .create_key(&ctx(), org.id, &granter, new_key("all"))
        .await;
    let mut within = new_key("within");
    within.scopes = Some(scopes(&["work-orders:read"]));
    let allowed = svc
        .create_key(&ctx(), org.id, &granter, within)
        .await
        .unwrap();

    assert!(
        matches!(explicit, Err(CommandError::Policy(PolicyError::ScopeNotHeld(s))) if s == Scope::ASSETS_WRITE),
        "{explicit:?}"
    );
    assert!(
        matches!(
            defaulted,
            Err(CommandError::Policy(PolicyError::ScopeNotHeld(_)))
        ),
        "{defaulted:?}"
    );
    // Widening an existing key is granting too; narrowing is not.
    let widen = KeyPatch {
        scopes: Some(scopes(&["work-orders:read", "users:read"])),
        ..KeyPatch::default()
    };
    let widened = svc
        .update_key(&ctx(), org.id, allowed.key.id, &granter, widen, None)
        .await;
    assert!(
        matches!(widened, Err(CommandError::Policy(PolicyError::ScopeNotHeld(s))) if s == Scope::USERS_READ),
        "{widened:?}"
    );
    let (_, root) = svc
        .create_organization(
            &ctx(),
            OrgName::parse("b").unwrap(),
            Plan::Enterprise,
            Environment::Test,
        )
        .await
        .unwrap();
    // Narrowing a key that holds more than the granter is managing a stronger key: refused
    // (see the policy cases below).
    let narrow = KeyPatch {
        scopes: Some(scopes(&["api-keys:read"])),
        ..KeyPatch::default()
    };
    let narrowed = svc
        .update_key(&ctx(), root.key.org_id, root.key.id, &granter, narrow, None)
        .await;
    assert!(
        matches!(
            narrowed,
            Err(CommandError::Policy(PolicyError::NotSubordinate { .. }))
        ),
        "{narrowed:?}"
    );
}

async fn another_organizations_key_is_not_found(db: StoreDb) {
    let svc = service(&db).await;
    let (mine, _) = org(&svc, Plan::Enterprise).await;
    let (theirs, their_root) = org(&svc, Plan::Enterprise).await;
    let id = their_root.key.id;

    let revoke = svc.revoke(&ctx(), mine.id, id, None).await;
    let update = svc
        .update_key(
            &ctx(),
            mine.id,
            id,
            &Actor::Operator,
            KeyPatch {
                name: Some(KeyName::parse("mine now").unwrap()),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let rotate = svc
        .rotate(&ctx(), mine.id, id, &Actor::Operator, TimeDelta::zero())
        .await;
    let missing_org = svc
        .create_key(&ctx(), OrgId::new_v7(), &Actor::Operator, new_key("k"))
        .await;
    let missing_key = svc
        .revoke(&ctx(), mine.id, domain::KeyId::new_v7(), None)
        .await;

    let key_not_found = |e: &CommandError| matches!(e, CommandError::Key(apikey::Error::NotFound));
    assert!(revoke.as_ref().is_err_and(key_not_found), "{revoke:?}");
    assert!(update.as_ref().is_err_and(key_not_found), "{update:?}");
    assert!(rotate.as_ref().is_err_and(key_not_found), "{rotate:?}");
    assert!(
        matches!(
            missing_org,
            Err(CommandError::Org(organization::Error::NotFound))
        ),
        "{missing_org:?}"
    );
    assert!(
        missing_key.as_ref().is_err_and(key_not_found),
        "{missing_key:?}"
    );
    let key = svc.load_key(id).await.unwrap().unwrap();
    assert_eq!(key.version, 1, "untouched");
    assert_eq!(key.org_id, theirs.id);
}

async fn update_key_appends_every_change_at_once(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let key = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();
    let expires_at = Utc::now() + TimeDelta::days(7);
    let patch = KeyPatch {
        name: Some(KeyName::parse("renamed").unwrap()),
        scopes: Some(scopes(&["assets:read"])),
        allowed_ips: Some(AllowedIps::parse(["10.0.0.0/8"]).unwrap()),
        expires_at: Some(Some(expires_at)),
    };

    let written = svc
        .update_key(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            patch.clone(),
            Some(1),
        )
        .await
        .unwrap();
    let again = svc
        .update_key(&ctx(), org.id, key.key.id, &Actor::Operator, patch, None)
        .await
        .unwrap();

    assert_eq!(written.version, 5);
    assert_eq!(again, written, "nothing changed: nothing written");
    let events = svc
        .store()
        .read_stream(&key.key.id.stream(), 2, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.position <= written.position));
    assert_eq!(events[3].position, written.position);
    let state = svc.load_key(key.key.id).await.unwrap().unwrap();
    assert_eq!(state.name.as_str(), "renamed");
    assert_eq!(state.scopes, scopes(&["assets:read"]));
    assert_eq!(
        state.allowed_ips.to_strings(),
        vec!["10.0.0.0/8".to_owned()]
    );
    assert_eq!(state.expires_at, Some(expires_at));

    let past = svc
        .update_key(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            KeyPatch {
                name: Some(KeyName::parse("not applied").unwrap()),
                expires_at: Some(Some(Utc::now() - TimeDelta::seconds(1))),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    assert!(
        matches!(
            past,
            Err(CommandError::Key(apikey::Error::InvalidExpiry(_)))
        ),
        "{past:?}"
    );
    assert_eq!(
        svc.load_key(key.key.id).await.unwrap().unwrap().version,
        5,
        "all or nothing"
    );
    let mut expired = new_key("past");
    expired.expires_at = Some(Utc::now() - TimeDelta::seconds(1));
    let create = svc
        .create_key(&ctx(), org.id, &Actor::Operator, expired)
        .await;
    assert!(
        matches!(
            create,
            Err(CommandError::Key(apikey::Error::InvalidExpiry(_)))
        ),
        "{create:?}"
    );
}

async fn update_key_with_a_stale_if_match_fails(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let key = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();
    let rename = |name: &str| KeyPatch {
        name: Some(KeyName::parse(name).unwrap()),
        ..KeyPatch::default()
    };
    svc.update_key(
        &ctx(),
        org.id,
        key.key.id,
        &Actor::Operator,
        rename("first"),
        Some(1),
    )
    .await
    .unwrap();

    let stale = svc
        .update_key(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            rename("second"),
            Some(1),
        )
        .await;

    assert!(
        matches!(stale, Err(CommandError::PreconditionFailed { current: 2 })),
        "{stale:?}"
    );
    assert_eq!(
        svc.load_key(key.key.id)
            .await
            .unwrap()
            .unwrap()
            .name
            .as_str(),
        "first"
    );
}

async fn concurrent_updates_naming_one_version_let_exactly_one_win(db: StoreDb) {
    // Arrange: two services on separate pools, as two nodes would be.
    let a = service(&db).await;
    let b = service(&db).await;
    let (org, _) = org(&a, Plan::Enterprise).await;
    let key = a
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();

    // Act: eight renames, each decided on version 1 (`If-Match: "1"`).
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
            let id = key.key.id;
            tokio::spawn(async move {
                let rename = KeyPatch {
                    name: Some(KeyName::parse(&format!("n{i}")).unwrap()),
                    ..KeyPatch::default()
                };
                svc.update_key(&ctx(), org.id, id, &Actor::Operator, rename, Some(1))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(written) => {
                won += 1;
                assert_eq!(written.version, 2);
            }
            // The losers decided again on version 2, which their If-Match does not name.
            Err(CommandError::PreconditionFailed { current: 2 }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }

    // Assert: one rename landed, and only one.
    assert_eq!(won, 1);
    assert_eq!(a.load_key(key.key.id).await.unwrap().unwrap().version, 2);
}

async fn revoking_twice_is_a_no_op(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let key = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();

    let first = svc
        .revoke(&ctx(), org.id, key.key.id, Some("leaked".into()))
        .await
        .unwrap();
    let second = svc
        .revoke(&ctx(), org.id, key.key.id, Some("again".into()))
        .await
        .unwrap();

    assert_eq!(first.version, 2);
    assert_eq!(second, first);
    let state = svc.load_key(key.key.id).await.unwrap().unwrap();
    assert_eq!(state.status(Utc::now()), KeyStatus::Revoked);
    assert_eq!(state.revocation_reason.as_deref(), Some("leaked"));
    let rename = svc
        .update_key(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            KeyPatch {
                name: Some(KeyName::parse("zombie").unwrap()),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    assert!(
        matches!(rename, Err(CommandError::Key(apikey::Error::Revoked))),
        "{rename:?}"
    );
    let rotate = svc
        .rotate(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            TimeDelta::zero(),
        )
        .await;
    assert!(
        matches!(rotate, Err(CommandError::Key(apikey::Error::Revoked))),
        "{rotate:?}"
    );
    let long = svc
        .revoke(&ctx(), org.id, key.key.id, Some("x".repeat(10_000)))
        .await;
    assert!(
        long.is_ok(),
        "a revoked key's revoke is a no-op whatever the reason"
    );
}

async fn rotation_keeps_both_keys_active_during_the_grace_period(db: StoreDb) {
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Professional).await;
    let mut spec = new_key("ci");
    spec.scopes = Some(scopes(&["work-orders:read", "assets:read"]));
    spec.allowed_ips = AllowedIps::parse(["192.168.0.0/16"]).unwrap();
    spec.rate_limit_per_minute = Some(domain::RateLimit::parse(42).unwrap());
    let old = svc
        .create_key(&ctx(), org.id, &Actor::Operator, spec)
        .await
        .unwrap();
    let grace = TimeDelta::hours(1);

    let before = Utc::now();
    let new = svc
        .rotate(&ctx(), org.id, old.key.id, &Actor::Operator, grace)
        .await
        .unwrap();
    let after = Utc::now();

    let old_state = svc.load_key(old.key.id).await.unwrap().unwrap();
    let new_state = svc.load_key(new.key.id).await.unwrap().unwrap();
    assert_eq!(new_state, new.key);
    assert_eq!(old_state.status(Utc::now()), KeyStatus::Active);
    assert_eq!(new_state.status(Utc::now()), KeyStatus::Active);
    let old_expiry = old_state.expires_at.unwrap();
    assert!(old_expiry >= before + grace && old_expiry <= after + grace);
    assert_eq!(old_state.rotated_to, Some(new.key.id));
    assert_eq!(new_state.rotated_from, Some(old.key.id));
    assert_eq!(new_state.name, old_state.name);
    assert_eq!(new_state.scopes, old_state.scopes);
    assert_eq!(new_state.allowed_ips, old_state.allowed_ips);
    assert_eq!(new_state.environment, old_state.environment);
    assert_eq!(
        new_state.rate_limit_per_minute,
        old_state.rate_limit_per_minute
    );
    assert_eq!(new_state.expires_at, None, "the old key had no expiry");
    assert_eq!(new.written.version, 1);
    assert_eq!(new.token.key_id(), new.key.id);
    assert!(verify_token(
        new.token.expose_secret(),
        &new_state.secret_hash
    ));
    assert!(!verify_token(
        old.token.expose_secret(),
        &new_state.secret_hash
    ));
    let issued = svc.list_org_key_ids(org.id).await.unwrap();
    assert!(issued.contains(&new.key.id));

    let twice = svc
        .rotate(&ctx(), org.id, old.key.id, &Actor::Operator, grace)
        .await;
    assert!(
        matches!(twice, Err(CommandError::Key(apikey::Error::AlreadyRotated { successor })) if successor == new.key.id),
        "{twice:?}"
    );
    let too_long = svc
        .rotate(
            &ctx(),
            org.id,
            new.key.id,
            &Actor::Operator,
            TimeDelta::days(31),
        )
        .await;
    assert!(
        matches!(
            too_long,
            Err(CommandError::Key(apikey::Error::InvalidGracePeriod(_)))
        ),
        "{too_long:?}"
    );
}

async fn concurrent_bootstraps_create_one_organization(db: StoreDb) {
    let a = service(&db).await;
    let b = service(&db).await;

    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { a.bootstrap(Environment::Live).await }),
        tokio::spawn(async move { b.bootstrap(Environment::Live).await }),
    );
    let results = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];

    let winners: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1);
    let (org, root) = &winners[0];
    assert_eq!(org.id, BOOTSTRAP_ORG_ID);
    assert_eq!(org.name.as_str(), "default");
    assert_eq!(org.plan, Plan::Enterprise);
    assert_eq!(root.key.scopes, Scope::all());
    assert_eq!(root.key.environment, Environment::Live);
    let svc = service(&db).await;
    assert_eq!(key_created_count(svc.store(), BOOTSTRAP_ORG_ID).await, 1);
    assert!(svc.bootstrap(Environment::Live).await.unwrap().is_none());
    let events = svc.store().read_all(0, 100).await.unwrap();
    assert_eq!(
        events.len(),
        3,
        "OrganizationCreated, KeyIssued, KeyCreated"
    );
    assert_eq!(events[0].metadata.actor, "system");
}

async fn bootstrap_does_nothing_on_a_non_empty_store(db: StoreDb) {
    let svc = service(&db).await;
    org(&svc, Plan::Starter).await;

    let result = svc.bootstrap(Environment::Live).await.unwrap();

    assert!(result.is_none());
    assert!(svc.load_org(BOOTSTRAP_ORG_ID).await.unwrap().is_none());
}

async fn no_secret_reaches_the_store(db: StoreDb) {
    let svc = service(&db).await;
    let (org, root) = org(&svc, Plan::Enterprise).await;
    let key = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();
    let rotated = svc
        .rotate(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            TimeDelta::zero(),
        )
        .await
        .unwrap();

    let events = svc.store().read_all(0, 1000).await.unwrap();
    let dump = serde_json::to_string(&events).unwrap();

    for token in [&root.token, &key.token, &rotated.token] {
        let secret = token.expose_secret();
        assert!(!dump.contains(secret), "a token reached the store");
        // Not even the secret part after the id.
        let tail = &secret[secret.len() - 40..];
        assert!(!dump.contains(tail), "a token's secret reached the store");
        assert!(!format!("{token:?}").contains(tail));
    }
    assert!(dump.contains("$argon2id$"), "hashes are stored");
}

// ---------------------------------------------------------------- logs and spans

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_or_hash_reaches_a_log_line_or_span() {
    // Arrange: every span and event at TRACE, with span fields, into a buffer.
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let db = StoreDb::new(Backend::Sqlite).await;
    let svc = service(&db).await;

    // Act
    let (org, root) = svc.bootstrap(Environment::Live).await.unwrap().unwrap();
    let key = svc
        .create_key(&ctx(), org.id, &Actor::Operator, new_key("k"))
        .await
        .unwrap();
    let rotated = svc
        .rotate(
            &ctx(),
            org.id,
            key.key.id,
            &Actor::Operator,
            TimeDelta::minutes(5),
        )
        .await
        .unwrap();
    svc.revoke(&ctx(), org.id, rotated.key.id, None)
        .await
        .unwrap();

    // Assert
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("API key created"), "logs were captured");
    assert!(logs.contains(&key.key.id.to_string()), "ids are logged");
    for created in [&root, &key, &rotated] {
        let secret = created.token.expose_secret();
        assert!(
            !logs.contains(&secret[secret.len() - 40..]),
            "a secret was logged"
        );
        assert!(
            !logs.contains(created.key.secret_hash.expose()),
            "a hash was logged"
        );
    }
    assert!(!logs.contains("$argon2"), "a hash was logged");
}

// ---------------------------------------------------------------- key policy

/// A key made by an operator in `org`, and the actor it is when it acts.
async fn acting_key(
    svc: &KeyService,
    org: OrgId,
    names: &[&str],
    shape: impl FnOnce(&mut NewKey),
) -> (CreatedKey, Actor) {
    let mut spec = new_key("actor");
    spec.scopes = Some(scopes(names));
    shape(&mut spec);
    let key = svc
        .create_key(&ctx(), org, &Actor::Operator, spec)
        .await
        .unwrap();
    let actor = Actor::key(&key.key);
    (key, actor)
}

fn restriction_refused(result: &Result<impl std::fmt::Debug, CommandError>, field: &str) -> bool {
    matches!(
        result,
        Err(CommandError::Policy(PolicyError::RestrictionNotHeld { restriction, .. }))
            if restriction.field() == field
    )
}

async fn a_write_only_key_cannot_change_or_rotate_the_root_key(db: StoreDb) {
    // Arrange: the root key holds every scope; the actor only api-keys:write.
    let svc = service(&db).await;
    let (org, root) = org(&svc, Plan::Enterprise).await;
    let (_, writer) = acting_key(&svc, org.id, &["api-keys:write"], |_| {}).await;

    // Act
    let narrow = svc
        .update_key(
            &ctx(),
            org.id,
            root.key.id,
            &writer,
            KeyPatch {
                scopes: Some(scopes(&["api-keys:write"])),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let ip_lock = svc
        .update_key(
            &ctx(),
            org.id,
            root.key.id,
            &writer,
            KeyPatch {
                allowed_ips: Some(AllowedIps::parse(["203.0.113.7"]).unwrap()),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let rename = svc
        .update_key(
            &ctx(),
            org.id,
            root.key.id,
            &writer,
            KeyPatch {
                name: Some(KeyName::parse("mine").unwrap()),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let rotate = svc
        .rotate(&ctx(), org.id, root.key.id, &writer, TimeDelta::zero())
        .await;

    // Assert: every one refused, naming a scope the writer lacks; the root key unchanged.
    for (what, result) in [
        ("narrow", &narrow),
        ("ip lock", &ip_lock),
        ("rename", &rename),
    ] {
        assert!(
            matches!(result, Err(CommandError::Policy(PolicyError::NotSubordinate { scope })) if *scope != Scope::API_KEYS_WRITE),
            "{what}: {result:?}"
        );
    }
    assert!(
        matches!(
            rotate,
            Err(CommandError::Policy(PolicyError::NotSubordinate { .. }))
        ),
        "{rotate:?}"
    );
    assert_eq!(
        svc.load_key(root.key.id).await.unwrap(),
        Some(root.key.clone())
    );
    // An operator is not bound by key policy.
    svc.update_key(
        &ctx(),
        org.id,
        root.key.id,
        &Actor::Operator,
        KeyPatch {
            name: Some(KeyName::parse("root (renamed)").unwrap()),
            ..KeyPatch::default()
        },
        None,
    )
    .await
    .unwrap();
}

async fn a_restricted_key_cannot_create_a_less_restricted_child(db: StoreDb) {
    // Arrange: a creator with an expiry, an allowlist and a low rate limit.
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let expiry = Utc::now() + TimeDelta::days(1);
    let (_, creator) = acting_key(&svc, org.id, &["api-keys:create", "assets:read"], |k| {
        k.expires_at = Some(expiry);
        k.allowed_ips = AllowedIps::parse(["10.0.0.0/8"]).unwrap();
        k.rate_limit_per_minute = Some(domain::RateLimit::parse(10).unwrap());
    })
    .await;
    let child = |shape: &dyn Fn(&mut NewKey)| {
        let mut k = new_key("child");
        k.scopes = Some(scopes(&["assets:read"]));
        k.expires_at = Some(expiry);
        k.allowed_ips = AllowedIps::parse(["10.1.0.0/16"]).unwrap();
        k.rate_limit_per_minute = Some(domain::RateLimit::parse(10).unwrap());
        shape(&mut k);
        k
    };
    let before = key_created_count(svc.store(), org.id).await;

    // Act
    let unrestricted = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| {
                k.expires_at = None;
                k.allowed_ips = AllowedIps::any();
                k.rate_limit_per_minute = None;
            }),
        )
        .await;
    let later = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| k.expires_at = Some(expiry + TimeDelta::seconds(1))),
        )
        .await;
    let anywhere = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| k.allowed_ips = AllowedIps::any()),
        )
        .await;
    let outside = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| k.allowed_ips = AllowedIps::parse(["192.168.0.0/24"]).unwrap()),
        )
        .await;
    let plan_rate = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| k.rate_limit_per_minute = None),
        )
        .await;
    let faster = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| k.rate_limit_per_minute = Some(domain::RateLimit::parse(11).unwrap())),
        )
        .await;
    let refused = key_created_count(svc.store(), org.id).await;
    let equal = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| {
                k.allowed_ips = AllowedIps::parse(["10.0.0.0/8"]).unwrap();
            }),
        )
        .await
        .unwrap();
    let tighter = svc
        .create_key(
            &ctx(),
            org.id,
            &creator,
            child(&|k| {
                k.expires_at = Some(expiry - TimeDelta::hours(1));
                k.rate_limit_per_minute = Some(domain::RateLimit::parse(1).unwrap());
            }),
        )
        .await
        .unwrap();

    // Assert
    assert!(
        restriction_refused(&unrestricted, "expires_at"),
        "{unrestricted:?}"
    );
    assert!(restriction_refused(&later, "expires_at"), "{later:?}");
    assert!(
        restriction_refused(&anywhere, "allowed_ips"),
        "{anywhere:?}"
    );
    assert!(restriction_refused(&outside, "allowed_ips"), "{outside:?}");
    assert!(
        restriction_refused(&plan_rate, "rate_limit_per_minute"),
        "{plan_rate:?}"
    );
    assert!(
        restriction_refused(&faster, "rate_limit_per_minute"),
        "{faster:?}"
    );
    assert_eq!(refused, before, "a refused create appends nothing");
    assert_eq!(equal.key.expires_at, Some(expiry));
    assert_eq!(
        tighter.key.rate_limit_per_minute.map(|r| r.per_minute()),
        Some(1)
    );
}

async fn a_restricted_key_cannot_loosen_another_key_beyond_its_own_restrictions(db: StoreDb) {
    // Arrange: an IP-locked, expiring actor, and a tighter target it may manage.
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let actor_expiry = Utc::now() + TimeDelta::days(1);
    let (_, actor) = acting_key(&svc, org.id, &["api-keys:write", "assets:read"], |k| {
        k.expires_at = Some(actor_expiry);
        k.allowed_ips = AllowedIps::parse(["10.0.0.0/8"]).unwrap();
    })
    .await;
    let (target, _) = acting_key(&svc, org.id, &["assets:read"], |k| {
        k.expires_at = Some(Utc::now() + TimeDelta::hours(1));
        k.allowed_ips = AllowedIps::parse(["10.1.0.0/16"]).unwrap();
    })
    .await;
    let id = target.key.id;

    // Act
    let no_ips = svc
        .update_key(
            &ctx(),
            org.id,
            id,
            &actor,
            KeyPatch {
                allowed_ips: Some(AllowedIps::any()),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let other_net = svc
        .update_key(
            &ctx(),
            org.id,
            id,
            &actor,
            KeyPatch {
                allowed_ips: Some(AllowedIps::parse(["10.1.0.0/16", "192.168.1.0/24"]).unwrap()),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let no_expiry = svc
        .update_key(
            &ctx(),
            org.id,
            id,
            &actor,
            KeyPatch {
                expires_at: Some(None),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let past_actor = svc
        .update_key(
            &ctx(),
            org.id,
            id,
            &actor,
            KeyPatch {
                expires_at: Some(Some(actor_expiry + TimeDelta::hours(1))),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    let unchanged = svc.load_key(id).await.unwrap().unwrap();
    let within = svc
        .update_key(
            &ctx(),
            org.id,
            id,
            &actor,
            KeyPatch {
                allowed_ips: Some(AllowedIps::parse(["10.0.0.0/9"]).unwrap()),
                expires_at: Some(Some(actor_expiry)),
                ..KeyPatch::default()
            },
            None,
        )
        .await;
    // A key without those restrictions (same scopes) may lift them.
    let (_, free) = acting_key(&svc, org.id, &["api-keys:write", "assets:read"], |_| {}).await;
    let lifted = svc
        .update_key(
            &ctx(),
            org.id,
            id,
            &free,
            KeyPatch {
                allowed_ips: Some(AllowedIps::any()),
                expires_at: Some(None),
                ..KeyPatch::default()
            },
            None,
        )
        .await;

    // Assert
    assert!(restriction_refused(&no_ips, "allowed_ips"), "{no_ips:?}");
    assert!(
        restriction_refused(&other_net, "allowed_ips"),
        "{other_net:?}"
    );
    assert!(
        restriction_refused(&no_expiry, "expires_at"),
        "{no_expiry:?}"
    );
    assert!(
        restriction_refused(&past_actor, "expires_at"),
        "{past_actor:?}"
    );
    assert_eq!(unchanged, target.key, "refused changes append nothing");
    within.unwrap();
    lifted.unwrap();
    let now = svc.load_key(id).await.unwrap().unwrap();
    assert!(now.allowed_ips.is_empty());
    assert_eq!(now.expires_at, None);
}

async fn a_subordinate_key_is_rotated_with_its_restrictions(db: StoreDb) {
    // Arrange: a target with every restriction, and a narrow, unrestricted-scope actor.
    let svc = service(&db).await;
    let (org, _) = org(&svc, Plan::Enterprise).await;
    let (target, _) = acting_key(&svc, org.id, &["assets:read"], |k| {
        k.expires_at = Some(Utc::now() + TimeDelta::days(3));
        k.allowed_ips = AllowedIps::parse(["10.1.0.0/16"]).unwrap();
        k.rate_limit_per_minute = Some(domain::RateLimit::parse(7).unwrap());
    })
    .await;
    let (_, actor) = acting_key(&svc, org.id, &["api-keys:create", "assets:read"], |_| {}).await;

    // Act
    let successor = svc
        .rotate(&ctx(), org.id, target.key.id, &actor, TimeDelta::minutes(1))
        .await
        .unwrap();

    // Assert: the successor is never looser than the key it replaces.
    assert_eq!(
        Restrictions::of(&successor.key),
        Restrictions::of(&target.key)
    );
    assert_eq!(successor.key.scopes, target.key.scopes);
}

async fn a_key_with_a_legacy_prefix_keeps_it_and_can_still_be_rotated(db: StoreDb) {
    // Arrange: a key as the first releases wrote it, with an 8-character id prefix.
    use domain::events::{ApiKeyEvent, KeyCreated, OrganizationEvent};
    use domain::store::{AppendRequest, ExpectedVersion};
    use domain::{KeyId, Token, token};
    let svc = service(&db).await;
    let (org, root) = org(&svc, Plan::Enterprise).await;
    let key_id = KeyId::new_v7();
    let token = Token::generate(Environment::Test, key_id);
    let legacy =
        token.expose_secret()[..token::ENV_PREFIX_LEN + token::LEGACY_PREFIX_ID_CHARS].to_owned();
    let org_version = svc.store().stream_version(&org.id.stream()).await.unwrap();
    let org_events = organization::decide(
        &Some(org.clone()),
        organization::Command::IssueKey {
            key_id,
            name: KeyName::parse("old").unwrap(),
            keys: vec![root.key.clone()],
            now: Utc::now(),
            scopes: Scope::data_scopes(),
        },
    )
    .unwrap();
    let created: ApiKeyEvent = KeyCreated {
        key_id,
        org_id: org.id,
        name: KeyName::parse("old").unwrap(),
        environment: Environment::Test,
        scopes: scopes(&["assets:read"]),
        allowed_ips: AllowedIps::any(),
        expires_at: None,
        rate_limit_per_minute: None,
        secret_hash: commands::hashing::hash_token(token.expose_secret()).unwrap(),
        prefix: legacy.clone(),
        rotated_from: None,
        created_at: Utc::now(),
    }
    .into();
    let metadata = ctx().metadata();
    svc.store()
        .append_many(vec![
            AppendRequest {
                stream: org.id.stream(),
                expected: ExpectedVersion::Exact(org_version),
                events: OrganizationEvent::to_new_events(&org_events, &metadata),
            },
            AppendRequest {
                stream: key_id.stream(),
                expected: ExpectedVersion::NoStream,
                events: ApiKeyEvent::to_new_events(&[created], &metadata),
            },
        ])
        .await
        .unwrap();

    // Act
    let loaded = svc.load_key(key_id).await.unwrap().unwrap();
    let successor = svc
        .rotate(&ctx(), org.id, key_id, &Actor::Operator, TimeDelta::zero())
        .await
        .unwrap();

    // Assert: the stored prefix is kept (and is still the token's start); its token still
    // verifies; the successor gets today's prefix.
    assert_eq!(loaded.prefix, legacy);
    assert!(token.expose_secret().starts_with(&loaded.prefix));
    assert!(verify_token(token.expose_secret(), &loaded.secret_hash));
    assert_eq!(successor.key.prefix.len(), token::PREFIX_LEN);
    assert_eq!(successor.key.prefix, successor.token.prefix());
    assert!(
        successor
            .token
            .expose_secret()
            .starts_with(&successor.key.prefix)
    );
}
