//! The key lifecycle through the management API, on the real binary, SQLite and Postgres:
//! the seeds' flow ("SAP ERP Integration"), validation, concurrency guards, idempotency,
//! tenancy, and a search of everything the run produced for the secret.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app};

/// Every response body the test saw, except those allowed to hold a secret.
struct Seen(Vec<String>);

impl Seen {
    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        self.0.push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// A response that is allowed to carry a secret (create, rotate): not recorded.
    async fn send_secret(
        &mut self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

fn keys_url(app: &TestApp, org: &str) -> String {
    app.url(&format!("/organizations/{org}/api-keys"))
}

async fn the_seeds_flow(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let mut seen = Seen(Vec::new());

    // Act: create "SAP ERP Integration".
    let (status, headers, created) = seen
        .send_secret(c.post(keys_url(&app, &org)).bearer_auth(&root).json(
            &json!({"name": "SAP ERP Integration", "scopes": ["work-orders:read", "assets:read"]}),
        ))
        .await;

    // Assert: 201 with the contract's fields and the secret once.
    assert_eq!(status, StatusCode::CREATED, "{created}");
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
        assert!(created.get(field).is_some(), "missing {field} in {created}");
    }
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kl_live_"));
    // The prefix is the token's first 26 characters: kl_live_ and 18 of the id's 22.
    assert_eq!(created["prefix"].as_str().unwrap(), &secret[..26]);
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["scopes"],
        json!(["assets:read", "work-orders:read"])
    );
    assert!(headers.get("etag").is_some());

    // List: prefix, status, created, last used; no secret; read-your-writes.
    let (status, _, list) = seen
        .send(c.get(keys_url(&app, &org)).bearer_auth(&root))
        .await;
    assert_eq!(status, StatusCode::OK);
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .expect("new key listed")
        .clone();
    assert_eq!(item["prefix"], created["prefix"]);
    assert_eq!(item["status"], "active");
    assert_eq!(item["name"], "SAP ERP Integration");
    assert!(item["created_at"].is_string());
    assert!(item.get("last_used_at").is_some());
    assert_eq!(item["total_calls"], 0);
    assert!(item.get("secret").is_none());
    assert!(list.get("next_cursor").is_some());

    // Details.
    let key_url = format!("{}/{id}", keys_url(&app, &org));
    let (status, headers, details) = seen.send(c.get(&key_url).bearer_auth(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(details["allowed_ips"], json!([]));
    assert!(details.get("expires_at").is_some());
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
            details["usage"].get(f).is_some(),
            "usage.{f} missing: {details}"
        );
    }
    let etag = headers["etag"].to_str().unwrap().to_owned();

    // Change scopes with If-Match; a stale If-Match is 412.
    let (status, _, changed) = seen
        .send(
            c.patch(&key_url)
                .bearer_auth(&root)
                .header("if-match", &etag)
                .json(&json!({"scopes": ["work-orders:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["scopes"], json!(["work-orders:read"]));
    let (status, _, stale) = seen
        .send(
            c.patch(&key_url)
                .bearer_auth(&root)
                .header("if-match", &etag)
                .json(&json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{stale}");
    assert_eq!(stale["code"], "precondition_failed");

    // The SAP key cannot manage keys: it holds no api-keys scope.
    let (status, _, body) = seen
        .send(c.get(keys_url(&app, &org)).bearer_auth(&secret))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "insufficient_scope");

    // Revoke (idempotent), then the key is refused at once.
    let (status, _, revoked) = seen
        .send(
            c.post(format!("{key_url}/revoke"))
                .bearer_auth(&root)
                .json(&json!({"reason": "leaked in a ticket"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    let (status, _, _) = seen
        .send(c.post(format!("{key_url}/revoke")).bearer_auth(&root))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = seen
        .send(c.get(keys_url(&app, &org)).bearer_auth(&secret))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        headers["www-authenticate"].to_str().unwrap(),
        r#"Bearer realm="keyledger", error="invalid_token""#
    );
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );

    // Rotate a manager key: both work during the grace period, with the same scopes.
    let (_, _, manager) = seen
        .send_secret(
            c.post(keys_url(&app, &org))
                .bearer_auth(&root)
                .json(&json!({"name": "BI export", "scopes": ["api-keys:read", "assets:read"]})),
        )
        .await;
    let manager_id = manager["id"].as_str().unwrap();
    let (status, _, rotated) = seen
        .send_secret(
            c.post(format!("{}/{manager_id}/rotate", keys_url(&app, &org)))
                .bearer_auth(&root)
                .json(&json!({"grace_period_seconds": 600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_ne!(rotated["id"], manager["id"]);
    assert_eq!(rotated["name"], "BI export");
    assert_eq!(rotated["scopes"], manager["scopes"]);
    assert_eq!(rotated["rotated_from"], manager["id"]);
    for token in [
        manager["secret"].as_str().unwrap(),
        rotated["secret"].as_str().unwrap(),
    ] {
        let (status, _, body) = seen
            .send(c.get(keys_url(&app, &org)).bearer_auth(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, _, old) = seen
        .send(
            c.get(format!("{}/{manager_id}", keys_url(&app, &org)))
                .bearer_auth(&root),
        )
        .await;
    assert!(old["expires_at"].is_string(), "{old}");
    assert_eq!(old["rotated_to"], rotated["id"]);

    // Rotation with no grace stops the old key at once.
    let (_, _, rotated_again) = seen
        .send_secret(
            c.post(format!(
                "{}/{}/rotate",
                keys_url(&app, &org),
                rotated["id"].as_str().unwrap()
            ))
            .bearer_auth(&root)
            .json(&json!({"grace_period_seconds": 0})),
        )
        .await;
    let (status, _, _) = seen
        .send(
            c.get(keys_url(&app, &org))
                .bearer_auth(rotated["secret"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = seen
        .send(
            c.get(keys_url(&app, &org))
                .bearer_auth(rotated_again["secret"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The CLI sees the same keys and never prints a secret.
    let listed = app.cli(&["keys", "list", &org, "--json"]);
    assert!(listed.contains(&id));

    // Assert: the SAP secret appears in no response other than the create response, in no
    // log line, and in no row of any table (events and read models).
    let hits_in_responses = seen.0.iter().filter(|b| b.contains(&secret)).count();
    assert_eq!(hits_in_responses, 0);
    assert!(!app.output_text().contains(&secret), "secret in the logs");
    let dump = app.dump_database().await;
    assert!(
        dump.contains("SAP ERP Integration"),
        "the dump should hold the key's rows"
    );
    assert!(!dump.contains(&secret), "secret in the database");
    // Nor does any read-model row hold the argon2 hash.
    for line in dump.lines().filter(|l| !l.starts_with("events")) {
        assert!(
            !line.contains("$argon2id$"),
            "hash outside the event store: {line}"
        );
    }
}

async fn bad_input_is_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let url = keys_url(&app, &org);
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
        let res = c
            .post(&url)
            .bearer_auth(&root)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["field"], field, "{body} -> {problem}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["status"], 422);
        assert!(
            problem["type"].is_string()
                && problem["title"].is_string()
                && problem["detail"].is_string()
        );
    }

    // IPv4 and IPv6 CIDRs are accepted.
    let res = c
        .post(&url)
        .bearer_auth(&root)
        .json(&json!({"name": "SCADA", "scopes": ["work-orders:write"], "allowed_ips": ["10.20.0.0/16", "2001:db8::/32", "192.0.2.7"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["allowed_ips"].as_array().unwrap().len(), 3);

    // Malformed JSON is 400; a huge body is 413; a non-JSON content type is 415.
    let res = c
        .post(&url)
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "malformed_json");
    let huge = json!({"name": "a", "pad": "x".repeat(200_000)});
    let res = c
        .post(&url)
        .bearer_auth(&root)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = c
        .post(&url)
        .bearer_auth(&root)
        .body("name=a")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Pagination: limit out of range is 422; pages never overlap.
    let res = c
        .get(format!("{url}?limit=0"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = c
        .get(format!("{url}?limit=101"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = c
        .get(format!("{url}?status=sleeping"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for i in 0..4 {
        let res = c
            .post(&url)
            .bearer_auth(&root)
            .json(&json!({"name": format!("page {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut u = format!("{url}?limit=2");
        if let Some(cur) = &cursor {
            u.push_str(&format!("&cursor={cur}"));
        }
        let page: Value = c
            .get(u)
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    // root + SCADA + 4 = 6 keys in 3 pages of 2.
    assert_eq!(ids.len(), 6);
    assert_eq!(pages, 3);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6);
    let res = c
        .get(format!("{url}?cursor=garbage"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn idempotency_tenancy_and_plans(backend: Backend) {
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let url = keys_url(&app, &org);

    // Same Idempotency-Key and body: the same response, one key. Other body: 422.
    let body = json!({"name": "ERP poller", "scopes": ["work-orders:read"]});
    let first: Value = c
        .post(&url)
        .bearer_auth(&root)
        .header("idempotency-key", "abc-1")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = c
        .post(&url)
        .bearer_auth(&root)
        .header("idempotency-key", "abc-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let second: Value = res.json().await.unwrap();
    assert_eq!(first, second);
    let res = c
        .post(&url)
        .bearer_auth(&root)
        .header("idempotency-key", "abc-1")
        .json(&json!({"name": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "idempotency_key_reused");
    let list: Value = c
        .get(format!("{url}?limit=100"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let named = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "ERP poller")
        .count();
    assert_eq!(named, 1);

    // A key cannot grant a scope it does not hold.
    let limited: Value = c
        .post(&url)
        .bearer_auth(&root)
        .json(&json!({"name": "delegate", "scopes": ["api-keys:create", "work-orders:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = c
        .post(&url)
        .bearer_auth(limited["secret"].as_str().unwrap())
        .json(&json!({"name": "escalate", "scopes": ["assets:write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "scope_not_held");
    // ... nor get one by omitting scopes (every data scope).
    let res = c
        .post(&url)
        .bearer_auth(limited["secret"].as_str().unwrap())
        .json(&json!({"name": "all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // ... nor by rotating a stronger key.
    let res = c
        .post(format!("{url}/{}/rotate", first["id"].as_str().unwrap()))
        .bearer_auth(limited["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "work-orders:read is held by the delegate"
    );

    // Another organisation's keys answer 404.
    let other: Value = serde_json::from_str(&app.cli(&[
        "orgs",
        "create",
        "--name",
        "Other Co",
        "--plan",
        "professional",
        "--json",
    ]))
    .unwrap();
    let other_org = other["org_id"].as_str().unwrap();
    let other_root = other["root_key"].as_str().unwrap();
    let res = c
        .get(format!("{url}/{}", first["id"].as_str().unwrap()))
        .bearer_auth(other_root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = c
        .get(format!(
            "{}/{}",
            keys_url(&app, other_org),
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(other_root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = c
        .post(format!("{url}/{}/revoke", first["id"].as_str().unwrap()))
        .bearer_auth(other_root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Professional: at most 10 active keys (the root key counts), even under 30
    // concurrent creates. A revoked key frees its slot.
    let other_url = keys_url(&app, other_org);
    let creates = (0..30).map(|i| {
        let c = c.clone();
        let u = other_url.clone();
        let k = other_root.to_owned();
        tokio::spawn(async move {
            c.post(u)
                .bearer_auth(k)
                .json(&json!({"name": format!("k{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let mut created = 0;
    let mut limited_count = 0;
    for h in creates {
        match h.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => limited_count += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let list: Value = c
        .get(format!("{other_url}?status=active&limit=100"))
        .bearer_auth(other_root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active = list["items"].as_array().unwrap();
    assert_eq!(active.len(), 10, "{list}");
    assert_eq!(created + 1, 10);
    assert_eq!(limited_count, 21);
    let victim = active.iter().find(|k| k["name"] != "root").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = c
        .delete(format!("{other_url}/{victim}"))
        .bearer_auth(other_root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = c
        .post(&other_url)
        .bearer_auth(other_root)
        .json(&json!({"name": "after revoke"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = c
        .post(&other_url)
        .bearer_auth(other_root)
        .json(&json!({"name": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "key_limit_reached");

    // Starter cannot create keys: 403 plan_required.
    app.cli(&["orgs", "set-plan", other_org, "starter"]);
    let res = c
        .post(&other_url)
        .bearer_auth(other_root)
        .json(&json!({"name": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "plan_required");
}

async fn openapi_and_docs(backend: Backend) {
    let app = spawn_app(backend).await;
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

/// A management call with `key`, answering (status, body).
async fn call(req: reqwest::RequestBuilder, key: &str) -> (StatusCode, Value) {
    let res = req.bearer_auth(key).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn key_management_policy(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let url = keys_url(&app, &org);
    let root_id: Value = c
        .get(app.url("/whoami"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root_url = format!("{url}/{}", root_id["id"].as_str().unwrap());
    let writer = app
        .create_key(
            &org,
            &root,
            json!({"name": "writer", "scopes": ["api-keys:write"]}),
        )
        .await;
    let writer = writer["secret"].as_str().unwrap();

    // An api-keys:write-only key cannot narrow or IP-lock the root key: 403.
    let (status, narrow) = call(
        c.patch(&root_url)
            .json(&json!({"scopes": ["api-keys:write"]})),
        writer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{narrow}");
    assert_eq!(narrow["code"], "key_not_subordinate");
    assert!(narrow["scope"].is_string(), "{narrow}");
    let (status, lock) = call(
        c.patch(&root_url)
            .json(&json!({"allowed_ips": ["203.0.113.7"]})),
        writer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{lock}");
    assert_eq!(lock["code"], "key_not_subordinate");
    let (_, root_now) = call(c.get(&root_url), &root).await;
    assert_eq!(root_now["allowed_ips"], json!([]));
    assert_eq!(root_now["scopes"].as_array().unwrap().len(), 12);
    // Nor rotate it (rotation needs api-keys:create, and then the subset rule).
    let creator = app
        .create_key(
            &org,
            &root,
            json!({"name": "creator", "scopes": ["api-keys:create"]}),
        )
        .await;
    let (status, rotate) = call(
        c.post(format!("{root_url}/rotate")),
        creator["secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{rotate}");
    assert_eq!(rotate["code"], "key_not_subordinate");

    // A restricted key cannot create an unrestricted child: 403 naming the field.
    let restricted = app
        .create_key(
            &org,
            &root,
            json!({"name": "restricted", "scopes": ["api-keys:create", "api-keys:write", "assets:read"],
                   "expires_at": "2090-01-01T00:00:00Z", "allowed_ips": ["127.0.0.0/8"],
                   "rate_limit_per_minute": 60}),
        )
        .await;
    let restricted = restricted["secret"].as_str().unwrap();
    let child = json!({"name": "child", "scopes": ["assets:read"],
                       "expires_at": "2090-01-01T00:00:00Z", "allowed_ips": ["127.0.0.1"],
                       "rate_limit_per_minute": 60});
    let loosen = |field: &str, value: Value| {
        let mut body = child.clone();
        match value {
            Value::Null => {
                body.as_object_mut().unwrap().remove(field);
            }
            v => body[field] = v,
        }
        body
    };
    for (field, value) in [
        ("expires_at", Value::Null),
        ("expires_at", json!("2091-01-01T00:00:00Z")),
        ("allowed_ips", Value::Null),
        ("allowed_ips", json!(["127.0.0.1", "192.0.2.0/24"])),
        ("rate_limit_per_minute", Value::Null),
        ("rate_limit_per_minute", json!(61)),
    ] {
        let (status, problem) =
            call(c.post(&url).json(&loosen(field, value.clone())), restricted).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{field} = {value}: {problem}"
        );
        assert_eq!(problem["code"], "restriction_not_held", "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let everything_off = json!({"name": "free", "scopes": ["assets:read"]});
    let (status, problem) = call(c.post(&url).json(&everything_off), restricted).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "restriction_not_held");

    // A restricted creator can create an equally or more restricted child: 201.
    let (status, equal) = call(c.post(&url).json(&child), restricted).await;
    assert_eq!(status, StatusCode::CREATED, "{equal}");
    let tighter = json!({"name": "tighter", "scopes": ["assets:read"],
                         "expires_at": "2089-01-01T00:00:00Z", "allowed_ips": ["127.0.0.1/32"],
                         "rate_limit_per_minute": 5});
    let (status, tighter) = call(c.post(&url).json(&tighter), restricted).await;
    assert_eq!(status, StatusCode::CREATED, "{tighter}");
    let tighter_url = format!("{url}/{}", tighter["id"].as_str().unwrap());

    // Loosening another key needs a key without that restriction.
    let (status, problem) = call(
        c.patch(&tighter_url).json(&json!({"allowed_ips": []})),
        restricted,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "restriction_not_held");
    assert_eq!(problem["field"], "allowed_ips");
    let (status, problem) = call(
        c.patch(&tighter_url).json(&json!({"expires_at": null})),
        restricted,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["field"], "expires_at");
    // ... as far as the actor's own restriction still bounds the result: allowed.
    let (status, widened) = call(
        c.patch(&tighter_url)
            .json(&json!({"allowed_ips": ["127.0.0.0/16"], "expires_at": "2090-01-01T00:00:00Z"})),
        restricted,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{widened}");
    assert_eq!(widened["allowed_ips"], json!(["127.0.0.0/16"]));
    let (status, lifted) = call(
        c.patch(&tighter_url)
            .json(&json!({"allowed_ips": [], "expires_at": null})),
        &root,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    assert_eq!(lifted["allowed_ips"], json!([]));
    assert_eq!(lifted["expires_at"], Value::Null);

    // Revoking stays open to any api-keys:revoke holder (incident response), even of a
    // stronger key.
    let responder = app
        .create_key(
            &org,
            &root,
            json!({"name": "responder", "scopes": ["api-keys:revoke"]}),
        )
        .await;
    let (status, revoked) = call(
        c.post(format!("{url}/{}/revoke", equal["id"].as_str().unwrap()))
            .json(&json!({"reason": "incident"})),
        responder["secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
}

async fn prefixes_tell_keys_apart(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let url = keys_url(&app, &org);

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
        let list: Value = app
            .client
            .get(format!("{url}?limit=100"))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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

#[tokio::test]
async fn seeds_flow_on_sqlite() {
    the_seeds_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn seeds_flow_on_postgres() {
    if postgres_url().is_some() {
        the_seeds_flow(Backend::Postgres).await;
    }
}

#[tokio::test]
async fn bad_input_on_sqlite() {
    bad_input_is_named(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_input_on_postgres() {
    if postgres_url().is_some() {
        bad_input_is_named(Backend::Postgres).await;
    }
}

#[tokio::test]
async fn idempotency_tenancy_and_plans_on_sqlite() {
    idempotency_tenancy_and_plans(Backend::Sqlite).await;
}

#[tokio::test]
async fn idempotency_tenancy_and_plans_on_postgres() {
    if postgres_url().is_some() {
        idempotency_tenancy_and_plans(Backend::Postgres).await;
    }
}

#[tokio::test]
async fn openapi_and_docs_on_sqlite() {
    openapi_and_docs(Backend::Sqlite).await;
}

#[tokio::test]
async fn key_management_policy_on_sqlite() {
    key_management_policy(Backend::Sqlite).await;
}

#[tokio::test]
async fn key_management_policy_on_postgres() {
    if postgres_url().is_some() {
        key_management_policy(Backend::Postgres).await;
    }
}

#[tokio::test]
async fn prefixes_tell_keys_apart_on_sqlite() {
    prefixes_tell_keys_apart(Backend::Sqlite).await;
}

#[tokio::test]
async fn prefixes_tell_keys_apart_on_postgres() {
    if postgres_url().is_some() {
        prefixes_tell_keys_apart(Backend::Postgres).await;
    }
}

// The values a revoke or a rotate sets are checked by the domain's value objects
// (`RevocationReason`, `GracePeriod`) before anything is loaded: 422 naming the field.

/// A fresh app with its bootstrap organisation and root key.
async fn bootstrapped(backend: Backend) -> (TestApp, String, String) {
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    (app, org, root)
}

/// A new key's URL.
async fn a_key(app: &TestApp, org: &str, root: &str, name: &str) -> String {
    let created = app.create_key(org, root, json!({"name": name})).await;
    format!("{}/{}", keys_url(app, org), created["id"].as_str().unwrap())
}

#[tokio::test]
async fn a_revocation_reason_is_measured_after_trimming_on_sqlite() {
    // Arrange
    let (app, org, root) = bootstrapped(Backend::Sqlite).await;
    let padded = a_key(&app, &org, &root, "padded").await;
    let long = a_key(&app, &org, &root, "long").await;
    let reason = "x".repeat(500);

    // Act
    let (padded_status, padded_body) = call(
        app.client
            .post(format!("{padded}/revoke"))
            .json(&json!({"reason": format!("  {reason}\n")})),
        &root,
    )
    .await;
    let (long_status, long_body) = call(
        app.client
            .post(format!("{long}/revoke"))
            .json(&json!({"reason": format!("{reason}x")})),
        &root,
    )
    .await;

    // Assert: 500 characters once trimmed are accepted; 501 are not.
    assert_eq!(padded_status, StatusCode::OK, "{padded_body}");
    assert_eq!(padded_body["status"], "revoked");
    assert_eq!(long_status, StatusCode::UNPROCESSABLE_ENTITY, "{long_body}");
    assert_eq!(long_body["field"], "reason");
    assert_eq!(long_body["code"], "validation_failed");
}

#[tokio::test]
async fn a_reason_with_a_nul_is_refused_even_for_a_revoked_key_on_sqlite() {
    // Arrange
    let (app, org, root) = bootstrapped(Backend::Sqlite).await;
    let key = a_key(&app, &org, &root, "gone").await;
    let (status, _) = call(app.client.post(format!("{key}/revoke")), &root).await;
    assert_eq!(status, StatusCode::OK);

    // Act
    let (status, problem) = call(
        app.client
            .post(format!("{key}/revoke"))
            .json(&json!({"reason": "again\u{0}"})),
        &root,
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "reason");
}

#[tokio::test]
async fn a_grace_period_outside_thirty_days_is_named_on_sqlite() {
    // Arrange
    let (app, org, root) = bootstrapped(Backend::Sqlite).await;
    let key = a_key(&app, &org, &root, "to rotate").await;

    for grace in [-1, 2_592_001, i64::MAX] {
        // Act
        let (status, problem) = call(
            app.client
                .post(format!("{key}/rotate"))
                .json(&json!({"grace_period_seconds": grace})),
            &root,
        )
        .await;

        // Assert
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{grace}: {problem}"
        );
        assert_eq!(problem["field"], "grace_period_seconds", "{grace}");
    }
    // The longest grace period is accepted.
    let (status, rotated) = call(
        app.client
            .post(format!("{key}/rotate"))
            .json(&json!({"grace_period_seconds": 2_592_000})),
        &root,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
}
