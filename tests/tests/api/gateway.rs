//! Protecting other APIs: `POST /v1/keys/verify` for a service that checks keys itself,
//! and `/v1/gateway/auth` for a gateway, called directly here and through a real nginx
//! with `auth_request` (`deploy/nginx/keyledger-gateway.conf`) in [`nginx`].

mod nginx;

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, Backend, TestApp, spawn_app, spawn_app_with};

/// The rules the tests run with: invoices need `work-orders:read`, payments
/// `assets:write`; nothing else is covered.
pub(crate) const RULES: &str = r#"
[[route]]
method = "GET"
path = "/invoices/*"
scope = "work-orders:read"

[[route]]
method = "*"
path = "/payments/**"
scope = "assets:write"

[[route]]
method = "GET"
path = "/billing/**"
scope = "billing:read"
"#;

/// A rule file in a temp dir that lives as long as the returned guard.
pub(crate) fn rules_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(RULES.as_bytes())
        .unwrap();
    let path = path.display().to_string();
    (dir, path)
}

/// A key's `(id, secret)` after creating it with `body`.
async fn key(root: &Api<'_>, body: Value) -> (String, String) {
    let key = root.new_key(body).await;
    (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

/// `POST /v1/keys/verify` with the service's key.
async fn verify(service: &Api<'_>, body: Value) -> (StatusCode, Value) {
    let reply = service
        .call(Method::POST, "/v1/keys/verify", Some(body))
        .await;
    (reply.status, reply.body)
}

/// The key's lifetime usage and its routes, once the usage read model has caught up.
async fn usage_of(root: &Api<'_>, id: &str) -> (i64, Vec<(String, String, i64)>) {
    let usage = root.get(&format!("{}/usage", root.key_path(id))).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    let details = root.get_key(id).await;
    let routes = details.body["usage"]["by_route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["route"].as_str().unwrap().to_owned(),
                r["total_calls"].as_i64().unwrap(),
            )
        })
        .collect();
    (
        usage.body["all_time"]["total_calls"].as_i64().unwrap(),
        routes,
    )
}

async fn a_service_verifies_a_key_of_its_organisation_and_the_call_counts_as_its_usage(
    backend: Backend,
) {
    // Arrange: a service key (keys:verify) and the key its caller presents.
    let app = spawn_app(backend).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (_, service_key) = key(
        &root,
        json!({"name": "billing service", "scopes": ["keys:verify"]}),
    )
    .await;
    let (id, presented) = key(
        &root,
        json!({"name": "ERP", "scopes": ["work-orders:read"]}),
    )
    .await;
    let service = app.api(&org, &service_key);

    // Act
    let (status, verdict) = verify(
        &service,
        json!({"token": presented, "scopes": ["work-orders:read"], "route": "GET /invoices/{id}"}),
    )
    .await;

    // Assert: valid, with the key's fields and its limit; the call is in its usage.
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["code"], "valid");
    assert_eq!(verdict["key_id"], id.as_str());
    assert_eq!(verdict["org_id"], org.as_str());
    assert_eq!(verdict["name"], "ERP");
    assert_eq!(verdict["scopes"], json!(["work-orders:read"]));
    assert_eq!(verdict["environment"], "live");
    assert_eq!(verdict["rate_limit"]["limit"], 500);
    let (total, routes) = usage_of(&root, &id).await;
    assert_eq!(total, 1);
    assert_eq!(routes, vec![("GET".into(), "/invoices/{id}".into(), 1)]);
}

async fn verify_refuses_with_a_code_and_never_vouches_for_another_organisations_key(
    backend: Backend,
) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (_, service_key) = key(&root, json!({"name": "svc", "scopes": ["keys:verify"]})).await;
    let service = app.api(&org, &service_key);
    let (_, reader) = key(
        &root,
        json!({"name": "reader", "scopes": ["work-orders:read"]}),
    )
    .await;
    let (_, fenced) = key(
        &root,
        json!({"name": "fenced", "scopes": ["work-orders:read"], "allowed_ips": ["10.0.0.0/8"]}),
    )
    .await;
    let (revoked_id, revoked) = key(
        &root,
        json!({"name": "old", "scopes": ["work-orders:read"]}),
    )
    .await;
    assert_eq!(
        root.revoke_key(&revoked_id, None).await.status,
        StatusCode::OK
    );
    let (other_org, other_root, _) = app.cli_org("Other Co", "professional");
    let (_, foreign) = key(
        &app.api(&other_org, &other_root),
        json!({"name": "theirs", "scopes": ["work-orders:read"]}),
    )
    .await;

    // Act and Assert: each refusal has its code; a foreign key shows nothing of itself.
    for (body, code) in [
        (
            json!({"token": reader, "scopes": ["assets:read"]}),
            "insufficient_scope",
        ),
        (
            json!({"token": fenced, "ip": "192.168.1.7"}),
            "ip_not_allowed",
        ),
        (json!({"token": revoked}), "revoked"),
        (json!({"token": foreign}), "invalid_token"),
        (json!({"token": "kl_live_not-a-key"}), "invalid_token"),
    ] {
        let (status, verdict) = verify(&service, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {verdict}");
        assert_eq!(verdict["valid"], false, "{body}: {verdict}");
        assert_eq!(verdict["code"], code, "{body}: {verdict}");
    }
    let (_, foreign_verdict) = verify(&service, json!({"token": foreign})).await;
    assert_eq!(foreign_verdict["key_id"], Value::Null);
    // The fenced key from inside its range is valid.
    let (_, inside) = verify(&service, json!({"token": fenced, "ip": "10.1.2.3"})).await;
    assert_eq!(inside["code"], "valid", "{inside}");
}

async fn verify_needs_the_keys_verify_scope_and_names_a_bad_field(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (_, reader) = key(
        &root,
        json!({"name": "reader", "scopes": ["work-orders:read"]}),
    )
    .await;

    // Act
    let (without, body) = verify(&app.api(&org, &reader), json!({"token": reader})).await;
    let (bad_route, route_body) =
        verify(&root, json!({"token": reader, "route": "invoices"})).await;
    let (bad_scope, scope_body) = verify(&root, json!({"token": reader, "scopes": ["nope"]})).await;

    // Assert
    assert_eq!(without, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["scope"], "keys:verify");
    assert_eq!(bad_route, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(route_body["field"], "route");
    assert_eq!(bad_scope, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(scope_body["field"], "scopes[0]");
}

async fn verify_spends_the_verified_keys_rate_limit(backend: Backend) {
    // Arrange: a key allowed 2 calls a minute.
    let app = spawn_app(backend).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (id, limited) = key(
        &root,
        json!({"name": "slow", "scopes": ["work-orders:read"], "rate_limit_per_minute": 2}),
    )
    .await;

    // Act
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (_, verdict) = verify(
            &root,
            json!({"token": limited, "route": "GET /invoices/{id}"}),
        )
        .await;
        codes.push(verdict["code"].as_str().unwrap().to_owned());
    }

    // Assert: refused once the limit is spent, and the refusals are counted as 429s.
    assert_eq!(
        codes.first().map(String::as_str),
        Some("valid"),
        "{codes:?}"
    );
    assert_eq!(
        codes.last().map(String::as_str),
        Some("rate_limited"),
        "{codes:?}"
    );
    let usage = root.get(&format!("{}/usage", root.key_path(&id))).await;
    let limited_calls = codes.iter().filter(|c| *c == "rate_limited").count() as i64;
    assert_eq!(usage.body["all_time"]["total_calls"], 4, "{}", usage.text);
    assert_eq!(usage.body["all_time"]["rate_limited_calls"], limited_calls);
}

async fn a_verifying_services_own_limit_is_not_spent_by_its_verify_calls(backend: Backend) {
    // Arrange: a service key allowed 1 call a minute, and a key to verify.
    let app = spawn_app(backend).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (service_id, service_key) = key(
        &root,
        json!({"name": "svc", "scopes": ["keys:verify"], "rate_limit_per_minute": 1}),
    )
    .await;
    let (_, presented) = key(
        &root,
        json!({"name": "ERP", "scopes": ["work-orders:read"]}),
    )
    .await;
    let service = app.api(&org, &service_key);

    // Act
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(verify(&service, json!({"token": presented})).await.0);
    }

    // Assert: every verify answered; the service's calls are still recorded.
    assert_eq!(statuses, vec![StatusCode::OK; 3]);
    let (total, routes) = usage_of(&root, &service_id).await;
    assert_eq!(total, 3);
    assert_eq!(routes, vec![("POST".into(), "/v1/keys/verify".into(), 3)]);
}

async fn custom_scopes_are_declared_held_verified_by_the_gateway_and_deleted(backend: Backend) {
    // Arrange
    let (_dir, rules) = rules_file();
    let app = spawn_app_with(backend, &[("KEYLEDGER_GATEWAY_ROUTES", &rules)]).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let scopes = format!("/organizations/{org}/scopes");
    let declare = |name: &str| {
        root.call(
            Method::POST,
            &scopes,
            Some(json!({"name": name, "description": "Read invoices"})),
        )
    };

    // Act and Assert: declared once; a built-in or malformed name is refused.
    let declared = declare("billing:read").await;
    assert_eq!(declared.status, StatusCode::CREATED, "{}", declared.text);
    assert_eq!(
        declared.header("location"),
        format!("{scopes}/billing:read")
    );
    assert_eq!(declare("billing:read").await.status, StatusCode::CONFLICT);
    for bad in ["assets:read", "Billing", "billing read"] {
        let refused = declare(bad).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(refused.body["field"], "name", "{bad}");
    }
    let listed = root.get(&scopes).await;
    assert_eq!(
        listed.body["items"],
        json!([{"name": "billing:read", "description": "Read invoices"}])
    );
    // GET /scopes: the organisation's custom scopes with its key, none without one.
    let with_key = root.get("/scopes").await;
    assert_eq!(
        with_key.body["custom"],
        json!([{"name": "billing:read", "description": "Read invoices"}])
    );
    let anonymous = app.anonymous(&org).get("/scopes").await;
    assert_eq!(anonymous.body["custom"], json!([]));

    // A key may hold it, and only a declared one.
    let (_, holder) = key(
        &root,
        json!({"name": "billing", "scopes": ["billing:read"]}),
    )
    .await;
    let undeclared = root
        .create_key(json!({"name": "x", "scopes": ["reports:read"]}))
        .await;
    assert_eq!(undeclared.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(undeclared.body["field"], "scopes[0]");

    // verify and the gateway check it.
    let (_, valid) = verify(&root, json!({"token": holder, "scopes": ["billing:read"]})).await;
    assert_eq!(valid["code"], "valid", "{valid}");
    let (_, unheld) = verify(&root, json!({"token": holder, "scopes": ["reports:read"]})).await;
    assert_eq!(unheld["code"], "insufficient_scope", "{unheld}");
    let through = gateway(&app, Some(&holder), "GET", "/billing/invoices/7").await;
    assert_eq!(through.status(), StatusCode::OK);

    // Deleted: no new key may be given it; deleting again is a 404.
    let deleted = root
        .call(Method::DELETE, &format!("{scopes}/billing:read"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let after = root
        .create_key(json!({"name": "y", "scopes": ["billing:read"]}))
        .await;
    assert_eq!(
        after.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        after.text
    );
    let again = root
        .call(Method::DELETE, &format!("{scopes}/billing:read"), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

async fn declaring_a_scope_needs_api_keys_write(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (_, reader) = key(&root, json!({"name": "r", "scopes": ["api-keys:read"]})).await;
    let reader = app.api(&org, &reader);
    let scopes = format!("/organizations/{org}/scopes");

    // Act
    let refused = reader
        .call(
            Method::POST,
            &scopes,
            Some(json!({"name": "billing:read", "description": "d"})),
        )
        .await;
    let listed = reader.get(&scopes).await;

    // Assert
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["scope"], "api-keys:write");
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"], json!([]));
}

/// `GET /v1/gateway/auth` as nginx calls it.
async fn gateway(app: &TestApp, token: Option<&str>, method: &str, uri: &str) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url("/v1/gateway/auth"))
        .header("x-original-method", method)
        .header("x-original-uri", uri);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn the_gateway_endpoint_applies_its_route_rules(backend: Backend) {
    // Arrange
    let (_dir, rules) = rules_file();
    let app = spawn_app_with(backend, &[("KEYLEDGER_GATEWAY_ROUTES", &rules)]).await;
    let (org, root_key) = app.bootstrap();
    let root = app.api(&org, &root_key);
    let (id, reader) = key(
        &root,
        json!({"name": "reader", "scopes": ["work-orders:read"]}),
    )
    .await;

    // Act
    let allowed = gateway(&app, Some(&reader), "GET", "/invoices/42?expand=lines").await;
    let wrong_scope = gateway(&app, Some(&reader), "POST", "/payments/9/refund").await;
    let no_rule = gateway(&app, Some(&reader), "GET", "/reports/1").await;
    let no_key = gateway(&app, None, "GET", "/invoices/42").await;
    // Envoy's ext_authz: the original method and path, appended to the endpoint's path.
    let envoy = app
        .client
        .delete(app.url("/v1/gateway/auth/payments/3"))
        .bearer_auth(&root_key)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-keyledger-key-id"], id.as_str());
    assert_eq!(allowed.headers()["x-keyledger-org-id"], org.as_str());
    assert!(allowed.headers().contains_key("ratelimit-remaining"));
    assert_eq!(wrong_scope.status(), StatusCode::FORBIDDEN);
    let wrong: Value = wrong_scope.json().await.unwrap();
    assert_eq!(
        (wrong["code"].as_str(), wrong["scope"].as_str()),
        (Some("insufficient_scope"), Some("assets:write"))
    );
    assert_eq!(no_rule.status(), StatusCode::FORBIDDEN);
    let none: Value = no_rule.json().await.unwrap();
    assert_eq!(none["code"], "no_route_rule");
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(envoy.status(), StatusCode::OK);
    // Every identified call is in the key's usage, under its rule's pattern.
    let (total, routes) = usage_of(&root, &id).await;
    assert_eq!(total, 3);
    assert!(
        routes.contains(&("GET".into(), "/invoices/*".into(), 1)),
        "{routes:?}"
    );
    assert!(
        routes.contains(&("POST".into(), "/payments/**".into(), 1)),
        "{routes:?}"
    );
    assert!(
        routes.contains(&("GET".into(), "*".into(), 1)),
        "{routes:?}"
    );
}

test_support::backend_tests!(
    a_service_verifies_a_key_of_its_organisation_and_the_call_counts_as_its_usage,
    verify_refuses_with_a_code_and_never_vouches_for_another_organisations_key,
    verify_needs_the_keys_verify_scope_and_names_a_bad_field,
    verify_spends_the_verified_keys_rate_limit,
    a_verifying_services_own_limit_is_not_spent_by_its_verify_calls,
    the_gateway_endpoint_applies_its_route_rules,
    custom_scopes_are_declared_held_verified_by_the_gateway_and_deleted,
    declaring_a_scope_needs_api_keys_write,
);
