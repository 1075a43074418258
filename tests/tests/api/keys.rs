//! The key lifecycle through the management API, on the real binary, SQLite and Postgres:
//! the seeds' flow ("SAP ERP Integration"), validation, concurrency guards, idempotency,
//! tenancy, the key-management policy, and a search of everything a test produced for
//! the secrets it made. One behaviour per test; each test starts a node of its own.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, Backend, TestApp, spawn_app};

/// A fresh node with its bootstrap organisation and root key.
async fn bootstrapped(backend: Backend) -> (TestApp, String, String) {
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    (app, org, root)
}

/// A key's `(id, secret)`.
fn id_and_secret(key: &Value) -> (String, String) {
    (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

/// The seeds' key: "SAP ERP Integration", reading work orders and assets.
async fn sap_key(root: &Api<'_>) -> Value {
    root.new_key(
        json!({"name": "SAP ERP Integration", "scopes": ["work-orders:read", "assets:read"]}),
    )
    .await
}

/// `secret` (of the key called `name`) is in exactly one response (the one that made it),
/// in no log line, and in no row of any table (events and read models); no read-model row
/// holds an argon2 hash.
async fn assert_secret_shown_once(app: &TestApp, secret: &str, name: &str) {
    let replies = app.replies();
    let holding: Vec<&String> = replies.iter().filter(|b| b.contains(secret)).collect();
    assert_eq!(
        holding.len(),
        1,
        "the secret in {} responses",
        holding.len()
    );
    assert!(!app.output_text().contains(secret), "secret in the logs");
    let dump = app.dump_database().await;
    assert!(dump.contains(name), "the dump should hold the key's rows");
    assert!(!dump.contains(secret), "secret in the database");
    for line in dump.lines().filter(|l| !l.starts_with("events")) {
        assert!(
            !line.contains("$argon2id$"),
            "hash outside the event store: {line}"
        );
    }
}

async fn a_created_key_shows_its_secret_once_and_is_listed_with_the_contracts_fields(
    backend: Backend,
) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);

    // Act: create "SAP ERP Integration".
    let created = root
        .create_key(
            json!({"name": "SAP ERP Integration", "scopes": ["work-orders:read", "assets:read"]}),
        )
        .await;

    // Assert: 201 with the contract's fields and the secret once.
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let created_key = &created.body;
    for field in [
        "id",
        "name",
        "prefix",
        "secret",
        "scopes",
        "environment",
        "allowed_ips",
        "status",
        "created_at",
        "expires_at",
    ] {
        assert!(
            created_key.get(field).is_some(),
            "missing {field} in {created_key}"
        );
    }
    let (id, secret) = id_and_secret(created_key);
    assert!(secret.starts_with("kl_live_"));
    // The prefix is the token's first 26 characters: kl_live_ and 18 of the id's 22.
    assert_eq!(created.str("prefix"), &secret[..26]);
    assert_eq!(created_key["status"], "active");
    assert_eq!(
        created_key["scopes"],
        json!(["assets:read", "work-orders:read"])
    );
    assert!(created.headers.get("etag").is_some());

    // List: prefix, status, created, last used; no secret; read-your-writes.
    let list = root.list_keys("").await;
    assert_eq!(list.status, StatusCode::OK);
    let item = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .expect("new key listed")
        .clone();
    assert_eq!(item["prefix"], created_key["prefix"]);
    assert_eq!(item["status"], "active");
    assert_eq!(item["name"], "SAP ERP Integration");
    assert!(item["created_at"].is_string());
    assert!(item.get("last_used_at").is_some());
    assert_eq!(item["total_calls"], 0);
    assert!(item.get("secret").is_none());
    assert!(list.body.get("next_cursor").is_some());

    // Details.
    let details = root.get_key(&id).await;
    assert_eq!(details.status, StatusCode::OK);
    assert_eq!(details.body["allowed_ips"], json!([]));
    assert!(details.body.get("expires_at").is_some());
    for f in [
        "total_calls",
        "successful_calls",
        "error_calls",
        "rate_limited_calls",
        "success_rate",
        "last_used_at",
        "by_route",
    ] {
        assert!(
            details.body["usage"].get(f).is_some(),
            "usage.{f} missing: {}",
            details.text
        );
    }
    assert!(details.headers.get("etag").is_some());

    // The CLI sees the same key and never prints a secret.
    let listed = app.cli(&["keys", "list", &org, "--json"]);
    assert!(listed.contains(&id));
    assert_secret_shown_once(&app, &secret, "SAP ERP Integration").await;
}

async fn a_change_with_the_current_etag_applies_and_a_stale_one_is_412(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);
    let (id, secret) = id_and_secret(&sap_key(&root).await);
    let etag = root.get_key(&id).await.header("etag").to_owned();

    // Act
    let changed = root
        .patch_key_if_match(&id, &etag, json!({"scopes": ["work-orders:read"]}))
        .await;
    let stale = root
        .patch_key_if_match(&id, &etag, json!({"name": "x"}))
        .await;

    // Assert
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["scopes"], json!(["work-orders:read"]));
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    assert_eq!(stale.body["code"], "precondition_failed");
    assert_secret_shown_once(&app, &secret, "SAP ERP Integration").await;
}

async fn a_key_without_an_api_keys_scope_cannot_manage_keys(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let (_, secret) = id_and_secret(&sap_key(&app.api(&org, &root)).await);

    // Act
    let listed = app.api(&org, &secret).list_keys("").await;

    // Assert
    assert_eq!(listed.status, StatusCode::FORBIDDEN, "{}", listed.text);
    assert_eq!(listed.body["code"], "insufficient_scope");
}

async fn a_revoked_key_is_refused_at_once_and_revoking_again_changes_nothing(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);
    let (id, secret) = id_and_secret(&sap_key(&root).await);

    // Act
    let revoked = root
        .revoke_key(&id, Some(json!({"reason": "leaked in a ticket"})))
        .await;
    let again = root.revoke_key(&id, None).await;
    let refused = app.api(&org, &secret).list_keys("").await;

    // Assert
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.body["status"], "revoked");
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(
        refused.header("www-authenticate"),
        r#"Bearer realm="keyledger", error="invalid_token""#
    );
    assert_eq!(refused.header("content-type"), "application/problem+json");
    assert_secret_shown_once(&app, &secret, "SAP ERP Integration").await;
}

/// A manager key ("BI export") rotated with `grace_period_seconds`: (old, new).
async fn rotated_manager(root: &Api<'_>, grace: i64) -> (Value, Value) {
    let manager = root
        .new_key(json!({"name": "BI export", "scopes": ["api-keys:read", "assets:read"]}))
        .await;
    let rotated = root
        .rotate_key(
            manager["id"].as_str().unwrap(),
            Some(json!({"grace_period_seconds": grace})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
    (manager, rotated.body)
}

async fn during_the_grace_period_a_rotated_key_and_its_successor_both_work(backend: Backend) {
    // Arrange
    let (app, org, root_key) = bootstrapped(backend).await;
    let root = app.api(&org, &root_key);

    // Act
    let (manager, rotated) = rotated_manager(&root, 600).await;

    // Assert: a new key with the same name and scopes, pointing back; both work.
    assert_ne!(rotated["id"], manager["id"]);
    assert_eq!(rotated["name"], "BI export");
    assert_eq!(rotated["scopes"], manager["scopes"]);
    assert_eq!(rotated["rotated_from"], manager["id"]);
    for key in [&manager, &rotated] {
        let listed = app
            .api(&org, key["secret"].as_str().unwrap())
            .list_keys("")
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    }
    let old = root.get_key(manager["id"].as_str().unwrap()).await.body;
    assert!(old["expires_at"].is_string(), "{old}");
    assert_eq!(old["rotated_to"], rotated["id"]);
    for key in [&manager, &rotated] {
        assert_secret_shown_once(&app, key["secret"].as_str().unwrap(), "BI export").await;
    }
}

async fn a_rotation_without_grace_stops_the_old_key_at_once(backend: Backend) {
    // Arrange: a rotated key (the successor of another) rotated again, with no grace.
    let (app, org, root_key) = bootstrapped(backend).await;
    let root = app.api(&org, &root_key);
    let (_, rotated) = rotated_manager(&root, 600).await;

    // Act
    let again = root
        .rotate_key(
            rotated["id"].as_str().unwrap(),
            Some(json!({"grace_period_seconds": 0})),
        )
        .await;

    // Assert
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    let old = app
        .api(&org, rotated["secret"].as_str().unwrap())
        .list_keys("")
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = app.api(&org, again.str("secret")).list_keys("").await;
    assert_eq!(new.status, StatusCode::OK);
}

async fn a_bad_create_body_is_a_422_naming_the_field_and_cidrs_of_both_families_are_accepted(
    backend: Backend,
) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);
    let long = "x".repeat(101);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": long}), "name"),
        (
            json!({"name": "a", "scopes": ["work-orders:read", "nope:read"]}),
            "scopes[1]",
        ),
        (
            json!({"name": "a", "allowed_ips": ["10.0.0.0/33"]}),
            "allowed_ips[0]",
        ),
        (
            json!({"name": "a", "allowed_ips": ["2001:db8::/129"]}),
            "allowed_ips[0]",
        ),
        (
            json!({"name": "a", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (json!({"name": "a", "expires_at": "tomorrow"}), "expires_at"),
        (json!({"name": "a", "colour": "red"}), "colour"),
        (json!({"name": 5}), "name"),
        (json!({"name": "a", "scopes": "work-orders:read"}), "scopes"),
        (
            json!({"name": "a", "environment": "staging"}),
            "environment",
        ),
        (
            json!({"name": "a", "rate_limit_per_minute": 0}),
            "rate_limit_per_minute",
        ),
        (json!({}), "name"),
    ];
    for (body, field) in cases {
        // Act
        let refused = root.create_key(body.clone()).await;

        // Assert
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(refused.header("content-type"), "application/problem+json");
        let problem = &refused.body;
        assert_eq!(problem["field"], field, "{body} -> {problem}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["status"], 422);
        assert!(
            problem["type"].is_string()
                && problem["title"].is_string()
                && problem["detail"].is_string()
        );
    }

    // IPv4 and IPv6 CIDRs (and a lone address) are accepted.
    let accepted = root
        .new_key(json!({"name": "SCADA", "scopes": ["work-orders:write"], "allowed_ips": ["10.20.0.0/16", "2001:db8::/32", "192.0.2.7"]}))
        .await;
    assert_eq!(accepted["allowed_ips"].as_array().unwrap().len(), 3);
}

async fn malformed_json_is_400_a_huge_body_413_and_a_body_that_is_not_json_415(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);
    let post = || root.request(reqwest::Method::POST, &root.keys_path());

    // Act
    let malformed = root
        .send(
            post()
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    let huge = root
        .create_key(json!({"name": "a", "pad": "x".repeat(200_000)}))
        .await;
    let form = root.send(post().body("name=a")).await;

    // Assert
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "malformed_json");
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

async fn a_list_limit_status_or_cursor_out_of_range_is_422(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);

    for query in [
        "?limit=0",
        "?limit=101",
        "?status=sleeping",
        "?cursor=garbage",
    ] {
        // Act
        let refused = root.list_keys(query).await;

        // Assert
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            refused.text
        );
    }
}

async fn pages_of_the_key_list_cover_every_key_once(backend: Backend) {
    // Arrange: the root key and five more.
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);
    for i in 0..5 {
        root.new_key(json!({"name": format!("page {i}")})).await;
    }

    // Act: pages of two.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cur) => format!("?limit=2&cursor={cur}"),
            None => "?limit=2".to_owned(),
        };
        let page = root.list_keys(&query).await.body;
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    // Assert: 6 keys in 3 pages of 2, none twice.
    assert_eq!(ids.len(), 6);
    assert_eq!(pages, 3);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6);
}

async fn a_reused_idempotency_key_replays_the_response_once_and_refuses_another_body(
    backend: Backend,
) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let root = app.api(&org, &root);
    let body = json!({"name": "ERP poller", "scopes": ["work-orders:read"]});
    let create = |body: &Value| {
        root.request(reqwest::Method::POST, &root.keys_path())
            .header("idempotency-key", "abc-1")
            .json(body)
    };

    // Act
    let first = root.send(create(&body)).await;
    let second = root.send(create(&body)).await;
    let other = root.send(create(&json!({"name": "other"}))).await;

    // Assert: the same response, one key; another body under the same key is 422.
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body, second.body);
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["code"], "idempotency_key_reused");
    let list = root.list_keys("?limit=100").await.body;
    let named = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "ERP poller")
        .count();
    assert_eq!(named, 1);
}

async fn a_key_cannot_grant_a_scope_it_does_not_hold_but_may_rotate_a_key_within_its_own(
    backend: Backend,
) {
    // Arrange: a delegate that may create keys and read work orders.
    let (app, org, root_key) = bootstrapped(backend).await;
    let root = app.api(&org, &root_key);
    let poller = root
        .new_key(json!({"name": "ERP poller", "scopes": ["work-orders:read"]}))
        .await;
    let delegate = root
        .new_key(json!({"name": "delegate", "scopes": ["api-keys:create", "work-orders:read"]}))
        .await;
    let delegate = app.api(&org, delegate["secret"].as_str().unwrap());

    // Act
    let escalate = delegate
        .create_key(json!({"name": "escalate", "scopes": ["assets:write"]}))
        .await;
    // Omitted scopes mean every data scope.
    let all = delegate.create_key(json!({"name": "all"})).await;
    let rotated = delegate
        .rotate_key(poller["id"].as_str().unwrap(), None)
        .await;

    // Assert
    assert_eq!(escalate.status, StatusCode::FORBIDDEN);
    assert_eq!(escalate.body["code"], "scope_not_held");
    assert_eq!(all.status, StatusCode::FORBIDDEN);
    assert_eq!(
        rotated.status,
        StatusCode::CREATED,
        "work-orders:read is held by the delegate"
    );
}

async fn another_organizations_keys_are_not_found(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let key = app
        .api(&org, &root)
        .new_key(json!({"name": "ERP poller", "scopes": ["work-orders:read"]}))
        .await;
    let id = key["id"].as_str().unwrap();
    let (other_org, other_root, _) = app.cli_org("Other Co", "professional");

    // Act: the other organisation's root key, on this organisation's path and its own.
    let through_ours = app.api(&org, &other_root);
    let through_theirs = app.api(&other_org, &other_root);
    let answers = [
        through_ours.get_key(id).await,
        through_theirs.get_key(id).await,
        through_ours.revoke_key(id, None).await,
    ];

    // Assert
    for answer in answers {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
    }
}

async fn another_organizations_path_is_not_found_whatever_the_body_or_headers(backend: Backend) {
    // Arrange: a key of this organisation, and another organisation's root key.
    let (app, org, root) = bootstrapped(backend).await;
    let key = app
        .api(&org, &root)
        .new_key(json!({"name": "ERP poller", "scopes": ["work-orders:read"]}))
        .await;
    let id = key["id"].as_str().unwrap();
    let (_, other_root, _) = app.cli_org("Other Co", "professional");
    let through_ours = app.api(&org, &other_root);

    // Act: requests that would be 422, 400 or 415 on the caller's own organisation.
    let answers = [
        through_ours
            .create_key(json!({"name": 5, "colour": "red"}))
            .await,
        through_ours
            .patch_key(id, json!({"scopes": ["no:such"]}))
            .await,
        through_ours
            .patch_key_if_match(id, "\"not-a-version\"", json!({"name": "x"}))
            .await,
        through_ours
            .send(
                through_ours
                    .request(Method::POST, &through_ours.keys_path())
                    .header("content-type", "text/plain")
                    .body("name=x"),
            )
            .await,
    ];

    // Assert: the tenant is checked first; nothing about the body or headers is told.
    for answer in answers {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
        assert_eq!(answer.body["code"], "not_found", "{}", answer.text);
    }
}

async fn the_key_limit_holds_under_thirty_concurrent_creates_and_a_revoked_key_frees_a_slot(
    backend: Backend,
) {
    // Arrange: a professional organisation (at most 10 active keys, the root key counts).
    let (app, _, _) = bootstrapped(backend).await;
    let (org, root_key, _) = app.cli_org("Other Co", "professional");
    let root = app.api(&org, &root_key);
    let url = app.url(&root.keys_path());

    // Act: 30 creates at once.
    let creates = (0..30).map(|i| {
        let (c, url, key) = (app.client.clone(), url.clone(), root_key.clone());
        tokio::spawn(async move {
            c.post(url)
                .bearer_auth(key)
                .json(&json!({"name": format!("k{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let mut created = 0;
    let mut limited = 0;
    for h in creates {
        match h.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }

    // Assert: 10 active keys; revoking one frees a slot for one key only.
    let list = root.list_keys("?status=active&limit=100").await.body;
    let active = list["items"].as_array().unwrap();
    assert_eq!(active.len(), 10, "{list}");
    assert_eq!(created + 1, 10);
    assert_eq!(limited, 21);
    let victim = active.iter().find(|k| k["name"] != "root").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(root.delete_key(&victim).await.status, StatusCode::OK);
    let after = root.create_key(json!({"name": "after revoke"})).await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.text);
    let too_many = root.create_key(json!({"name": "one too many"})).await;
    assert_eq!(too_many.status, StatusCode::FORBIDDEN);
    assert_eq!(too_many.body["code"], "key_limit_reached");
}

async fn a_starter_organization_cannot_create_keys(backend: Backend) {
    // Arrange: a professional organisation moved to starter by the CLI.
    let (app, _, _) = bootstrapped(backend).await;
    let (org, root, _) = app.cli_org("Other Co", "professional");
    app.cli(&["orgs", "set-plan", &org, "starter"]);

    // Act
    let refused = app
        .api(&org, &root)
        .create_key(json!({"name": "nope"}))
        .await;

    // Assert
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.body["code"], "plan_required");
}

/// The root key's id (from `/whoami`).
async fn root_id(root: &Api<'_>) -> String {
    root.whoami().await.str("id").to_owned()
}

async fn a_write_only_key_cannot_narrow_ip_lock_or_rotate_the_root_key(backend: Backend) {
    // Arrange
    let (app, org, root_key) = bootstrapped(backend).await;
    let root = app.api(&org, &root_key);
    let root_id = root_id(&root).await;
    let writer = root
        .new_key(json!({"name": "writer", "scopes": ["api-keys:write"]}))
        .await;
    let writer = app.api(&org, writer["secret"].as_str().unwrap());
    let creator = root
        .new_key(json!({"name": "creator", "scopes": ["api-keys:create"]}))
        .await;
    let creator = app.api(&org, creator["secret"].as_str().unwrap());

    // Act
    let narrow = writer
        .patch_key(&root_id, json!({"scopes": ["api-keys:write"]}))
        .await;
    let lock = writer
        .patch_key(&root_id, json!({"allowed_ips": ["203.0.113.7"]}))
        .await;
    // Rotation needs api-keys:create, and then the subset rule.
    let rotate = creator.rotate_key(&root_id, None).await;

    // Assert: 403, and the root key is as it was.
    assert_eq!(narrow.status, StatusCode::FORBIDDEN, "{}", narrow.text);
    assert_eq!(narrow.body["code"], "key_not_subordinate");
    assert!(narrow.body["scope"].is_string(), "{}", narrow.text);
    assert_eq!(lock.status, StatusCode::FORBIDDEN, "{}", lock.text);
    assert_eq!(lock.body["code"], "key_not_subordinate");
    assert_eq!(rotate.status, StatusCode::FORBIDDEN, "{}", rotate.text);
    assert_eq!(rotate.body["code"], "key_not_subordinate");
    let root_now = root.get_key(&root_id).await.body;
    assert_eq!(root_now["allowed_ips"], json!([]));
    assert_eq!(
        root_now["scopes"].as_array().unwrap().len(),
        domain::Scope::all().len()
    );
}

/// A creator that expires in 2090, may call from 127.0.0.0/8 at 60 a minute.
async fn restricted_creator<'a>(app: &'a TestApp, org: &str, root: &Api<'_>) -> Api<'a> {
    let restricted = root
        .new_key(
            json!({"name": "restricted", "scopes": ["api-keys:create", "api-keys:write", "assets:read"],
                   "expires_at": "2090-01-01T00:00:00Z", "allowed_ips": ["127.0.0.0/8"],
                   "rate_limit_per_minute": 60}),
        )
        .await;
    app.api(org, restricted["secret"].as_str().unwrap())
}

/// A child exactly as restricted as [`restricted_creator`].
fn equal_child() -> Value {
    json!({"name": "child", "scopes": ["assets:read"],
           "expires_at": "2090-01-01T00:00:00Z", "allowed_ips": ["127.0.0.1"],
           "rate_limit_per_minute": 60})
}

async fn a_restricted_key_creates_only_children_as_restricted_as_itself(backend: Backend) {
    // Arrange
    let (app, org, root) = bootstrapped(backend).await;
    let restricted = restricted_creator(&app, &org, &app.api(&org, &root)).await;
    let loosen = |field: &str, value: Value| {
        let mut body = equal_child();
        match value {
            Value::Null => {
                body.as_object_mut().unwrap().remove(field);
            }
            v => body[field] = v,
        }
        body
    };

    // Act + Assert: each restriction dropped or loosened is 403 naming the field.
    for (field, value) in [
        ("expires_at", Value::Null),
        ("expires_at", json!("2091-01-01T00:00:00Z")),
        ("allowed_ips", Value::Null),
        ("allowed_ips", json!(["127.0.0.1", "192.0.2.0/24"])),
        ("rate_limit_per_minute", Value::Null),
        ("rate_limit_per_minute", json!(61)),
    ] {
        let refused = restricted.create_key(loosen(field, value.clone())).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{field} = {value}: {}",
            refused.text
        );
        assert_eq!(
            refused.body["code"], "restriction_not_held",
            "{}",
            refused.text
        );
        assert_eq!(refused.body["field"], field, "{}", refused.text);
    }
    let everything_off = restricted
        .create_key(json!({"name": "free", "scopes": ["assets:read"]}))
        .await;
    assert_eq!(
        everything_off.status,
        StatusCode::FORBIDDEN,
        "{}",
        everything_off.text
    );
    assert_eq!(everything_off.body["code"], "restriction_not_held");

    // An equally or more restricted child: 201.
    let equal = restricted.create_key(equal_child()).await;
    assert_eq!(equal.status, StatusCode::CREATED, "{}", equal.text);
    let tighter = restricted
        .create_key(json!({"name": "tighter", "scopes": ["assets:read"],
                           "expires_at": "2089-01-01T00:00:00Z", "allowed_ips": ["127.0.0.1/32"],
                           "rate_limit_per_minute": 5}))
        .await;
    assert_eq!(tighter.status, StatusCode::CREATED, "{}", tighter.text);
}

async fn a_restricted_key_loosens_another_key_only_as_far_as_its_own_restrictions(
    backend: Backend,
) {
    // Arrange: a tighter key made by the restricted creator.
    let (app, org, root_key) = bootstrapped(backend).await;
    let root = app.api(&org, &root_key);
    let restricted = restricted_creator(&app, &org, &root).await;
    let tighter = restricted
        .new_key(json!({"name": "tighter", "scopes": ["assets:read"],
                        "expires_at": "2089-01-01T00:00:00Z", "allowed_ips": ["127.0.0.1/32"],
                        "rate_limit_per_minute": 5}))
        .await;
    let tighter = tighter["id"].as_str().unwrap();

    // Act
    let unlocked = restricted
        .patch_key(tighter, json!({"allowed_ips": []}))
        .await;
    let unexpiring = restricted
        .patch_key(tighter, json!({"expires_at": null}))
        .await;
    let widened = restricted
        .patch_key(
            tighter,
            json!({"allowed_ips": ["127.0.0.0/16"], "expires_at": "2090-01-01T00:00:00Z"}),
        )
        .await;
    let lifted = root
        .patch_key(tighter, json!({"allowed_ips": [], "expires_at": null}))
        .await;

    // Assert: beyond its own restriction is 403 naming the field; within it, allowed; a
    // key without the restriction lifts it.
    assert_eq!(unlocked.status, StatusCode::FORBIDDEN, "{}", unlocked.text);
    assert_eq!(unlocked.body["code"], "restriction_not_held");
    assert_eq!(unlocked.body["field"], "allowed_ips");
    assert_eq!(
        unexpiring.status,
        StatusCode::FORBIDDEN,
        "{}",
        unexpiring.text
    );
    assert_eq!(unexpiring.body["field"], "expires_at");
    assert_eq!(widened.status, StatusCode::OK, "{}", widened.text);
    assert_eq!(widened.body["allowed_ips"], json!(["127.0.0.0/16"]));
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.text);
    assert_eq!(lifted.body["allowed_ips"], json!([]));
    assert_eq!(lifted.body["expires_at"], Value::Null);
}

async fn any_revoke_holder_may_revoke_a_stronger_key(backend: Backend) {
    // Arrange: incident response needs no more than api-keys:revoke.
    let (app, org, root_key) = bootstrapped(backend).await;
    let root = app.api(&org, &root_key);
    let restricted = restricted_creator(&app, &org, &root).await;
    let child = restricted.new_key(equal_child()).await;
    let responder = root
        .new_key(json!({"name": "responder", "scopes": ["api-keys:revoke"]}))
        .await;

    // Act
    let revoked = app
        .api(&org, responder["secret"].as_str().unwrap())
        .revoke_key(
            child["id"].as_str().unwrap(),
            Some(json!({"reason": "incident"})),
        )
        .await;

    // Assert
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.body["status"], "revoked");
}

async fn openapi_and_docs(backend: Backend) {
    let app = spawn_app(backend).await;
    let spec = app.anonymous("").openapi().await.body;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(spec["paths"]["/organizations/{org}/api-keys"]["post"].is_object());
    assert!(spec["paths"]["/organizations/{org}/api-keys/{id}/rotate"]["post"].is_object());
    // /docs answers 200 itself (no redirect), and its assets come from the binary.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let docs = no_redirect.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"));
    assert!(
        !html.contains("cdn."),
        "docs must not load assets from a CDN"
    );
    for asset in [
        "/swagger-ui/swagger-ui.css",
        "/swagger-ui/swagger-ui-bundle.js",
        "/swagger-ui/swagger-initializer.js",
    ] {
        let res = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
    }
}

async fn prefixes_tell_keys_apart(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let url = app.url(&format!("/organizations/{org}/api-keys"));

    // Act: the issue's reproduction, 12 creates at once (they gave 3 duplicates).
    let creates = (0..12).map(|i| {
        let (c, url, root) = (app.client.clone(), url.clone(), root.clone());
        tokio::spawn(async move {
            let res = c
                .post(&url)
                .bearer_auth(&root)
                .json(&json!({"name": format!("parallel {i}"), "scopes": ["assets:read"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()
        })
    });
    let mut created = Vec::new();
    for task in creates {
        created.push(task.await.unwrap());
    }

    // Assert: distinct, each the token's first characters, the same everywhere.
    let mut prefixes: Vec<&str> = created
        .iter()
        .map(|k| k["prefix"].as_str().unwrap())
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    assert_eq!(prefixes.len(), 12, "{prefixes:?}");
    // This test is about prefixes, not read-your-writes (tested elsewhere): wait until the
    // list holds all twelve (the SQLite projectors can retry on a busy database under load).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let list: Value = loop {
        let list = app.api(&org, &root).list_keys("?limit=100").await.body;
        let items = list["items"].as_array().map_or(0, Vec::len);
        // The twelve and the root key.
        if items > created.len() || std::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let cli_list: Value =
        serde_json::from_str(&app.cli(&["keys", "list", &org, "--json"])).unwrap();
    for key in &created {
        let (id, prefix) = (key["id"].as_str().unwrap(), key["prefix"].as_str().unwrap());
        assert_eq!(prefix.len(), 26);
        assert!(key["secret"].as_str().unwrap().starts_with(prefix));
        let listed = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap();
        assert_eq!(listed["prefix"], prefix, "list");
        let details: Value = app
            .client
            .get(format!("{url}/{id}"))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(details["prefix"], prefix, "details");
        let in_cli = cli_list
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap();
        assert_eq!(in_cli["prefix"], prefix, "keys list --json");
    }
    // One key through `keys show`, the plain `keys list`, `audit --json` and the events API.
    let (id, prefix) = (
        created[0]["id"].as_str().unwrap(),
        created[0]["prefix"].as_str().unwrap(),
    );
    let shown: Value = serde_json::from_str(&app.cli(&["keys", "show", id])).unwrap();
    assert_eq!(shown["prefix"], prefix, "keys show");
    let table = app.cli(&["keys", "list", &org]);
    let row = table.lines().find(|l| l.starts_with(id)).unwrap();
    assert!(row.contains(prefix), "keys list: {row}");
    let audit = app.cli(&["audit", id, "--json"]);
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first["state"]["prefix"], prefix, "audit");
    let events: Value = app
        .client
        .get(format!("{url}/{id}/events"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["items"][0]["data"]["prefix"], prefix, "events");
}

// The values a revoke or a rotate sets are checked by the domain's value objects
// (`RevocationReason`, `GracePeriod`) before anything is loaded: 422 naming the field.

/// A new key's id.
async fn a_key(root: &Api<'_>, name: &str) -> String {
    root.new_key(json!({"name": name})).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_revocation_reason_is_measured_after_trimming_on_sqlite() {
    // Arrange
    let (app, org, root) = bootstrapped(Backend::Sqlite).await;
    let root = app.api(&org, &root);
    let padded = a_key(&root, "padded").await;
    let long = a_key(&root, "long").await;
    let reason = "x".repeat(500);

    // Act
    let padded = root
        .revoke_key(&padded, Some(json!({"reason": format!("  {reason}\n")})))
        .await;
    let long = root
        .revoke_key(&long, Some(json!({"reason": format!("{reason}x")})))
        .await;

    // Assert: 500 characters once trimmed are accepted; 501 are not.
    assert_eq!(padded.status, StatusCode::OK, "{}", padded.text);
    assert_eq!(padded.body["status"], "revoked");
    assert_eq!(
        long.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        long.text
    );
    assert_eq!(long.body["field"], "reason");
    assert_eq!(long.body["code"], "validation_failed");
}

#[tokio::test]
async fn a_reason_with_a_nul_is_refused_even_for_a_revoked_key_on_sqlite() {
    // Arrange
    let (app, org, root) = bootstrapped(Backend::Sqlite).await;
    let root = app.api(&org, &root);
    let key = a_key(&root, "gone").await;
    assert_eq!(root.revoke_key(&key, None).await.status, StatusCode::OK);

    // Act
    let refused = root
        .revoke_key(&key, Some(json!({"reason": "again\u{0}"})))
        .await;

    // Assert
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["field"], "reason");
}

#[tokio::test]
async fn a_grace_period_outside_thirty_days_is_named_on_sqlite() {
    // Arrange
    let (app, org, root) = bootstrapped(Backend::Sqlite).await;
    let root = app.api(&org, &root);
    let key = a_key(&root, "to rotate").await;

    for grace in [-1, 2_592_001, i64::MAX] {
        // Act
        let refused = root
            .rotate_key(&key, Some(json!({"grace_period_seconds": grace})))
            .await;

        // Assert
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{grace}: {}",
            refused.text
        );
        assert_eq!(refused.body["field"], "grace_period_seconds", "{grace}");
    }
    // The longest grace period is accepted.
    let rotated = root
        .rotate_key(&key, Some(json!({"grace_period_seconds": 2_592_000})))
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
}

#[tokio::test]
async fn openapi_and_docs_on_sqlite() {
    openapi_and_docs(Backend::Sqlite).await;
}

test_support::backend_tests!(
    a_created_key_shows_its_secret_once_and_is_listed_with_the_contracts_fields,
    a_change_with_the_current_etag_applies_and_a_stale_one_is_412,
    a_key_without_an_api_keys_scope_cannot_manage_keys,
    a_revoked_key_is_refused_at_once_and_revoking_again_changes_nothing,
    during_the_grace_period_a_rotated_key_and_its_successor_both_work,
    a_rotation_without_grace_stops_the_old_key_at_once,
    a_bad_create_body_is_a_422_naming_the_field_and_cidrs_of_both_families_are_accepted,
    malformed_json_is_400_a_huge_body_413_and_a_body_that_is_not_json_415,
    a_list_limit_status_or_cursor_out_of_range_is_422,
    pages_of_the_key_list_cover_every_key_once,
    a_reused_idempotency_key_replays_the_response_once_and_refuses_another_body,
    a_key_cannot_grant_a_scope_it_does_not_hold_but_may_rotate_a_key_within_its_own,
    another_organizations_keys_are_not_found,
    another_organizations_path_is_not_found_whatever_the_body_or_headers,
    the_key_limit_holds_under_thirty_concurrent_creates_and_a_revoked_key_frees_a_slot,
    a_starter_organization_cannot_create_keys,
    a_write_only_key_cannot_narrow_ip_lock_or_rotate_the_root_key,
    a_restricted_key_creates_only_children_as_restricted_as_itself,
    a_restricted_key_loosens_another_key_only_as_far_as_its_own_restrictions,
    any_revoke_holder_may_revoke_a_stronger_key,
    prefixes_tell_keys_apart,
);
