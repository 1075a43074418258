//! Usage analytics and `/whoami` through real HTTP: calls made by a key are recorded by
//! the auth layer, projected, and read back exactly from the usage endpoints, the key's
//! details and the key list; bad parameters answer 422 naming the field.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

/// `GET path` with `token`: (status, body).
async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let reply = app.get(token, path).await;
    (reply.status, reply.body)
}

/// `ApiCallRecorded` events in the store, for one key or (with `None`) every key.
async fn recorded_calls(app: &TestApp, key_id: Option<&str>) -> i64 {
    let pattern = format!("apikey-usage-{}", key_id.unwrap_or("%"));
    let sql = "SELECT count(*) FROM events WHERE stream LIKE $1 AND event_type = 'ApiCallRecorded'";
    test_support::sql::scalar(&app.database_url, sql, &pattern).await
}

/// `(total, successful, error, rate_limited)`.
type Counts = (i64, i64, i64, i64);

/// `(method, route, counts)` of one route's usage.
type RouteCounts = (String, String, Counts);

/// `(total, successful, error, rate_limited)` of a counters object.
fn counts(v: &Value) -> (i64, i64, i64, i64) {
    (
        v["total_calls"].as_i64().unwrap(),
        v["successful_calls"].as_i64().unwrap(),
        v["error_calls"].as_i64().unwrap(),
        v["rate_limited_calls"].as_i64().unwrap(),
    )
}

/// The sum of a series' buckets.
fn series_sum(series: &Value) -> (i64, i64, i64, i64) {
    series
        .as_array()
        .unwrap()
        .iter()
        .map(counts)
        .fold((0, 0, 0, 0), |a, b| {
            (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
        })
}

async fn whoami_shows_the_calling_key(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(
            &org,
            &root,
            json!({"name": "robot", "scopes": ["work-orders:read"], "rate_limit_per_minute": 40}),
        )
        .await;
    let token = key["secret"].as_str().unwrap();

    // Act
    let (status, me) = get(&app, token, "/whoami").await;
    let (_, again) = get(&app, token, "/whoami").await;
    let (root_status, root_me) = get(&app, &root, "/whoami").await;
    let anonymous = app.client.get(app.url("/whoami")).send().await.unwrap();

    // Assert
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], key["id"]);
    assert_eq!(me["org_id"], org.as_str());
    assert_eq!(me["name"], "robot");
    assert_eq!(me["prefix"], key["prefix"]);
    assert_eq!(me["scopes"], json!(["work-orders:read"]));
    assert_eq!(me["environment"], "live");
    assert_eq!(me["rate_limit"]["limit"], 40);
    assert_eq!(me["rate_limit"]["remaining"], 39);
    assert!(me["rate_limit"]["reset"].as_u64().is_some(), "{me}");
    assert_eq!(again["rate_limit"]["remaining"], 38);
    let text = me.to_string();
    assert!(!text.contains(token) && !text.contains("argon2"), "{text}");
    assert_eq!(root_status, StatusCode::OK);
    assert_eq!(root_me["rate_limit"]["limit"], 500, "enterprise plan");
    assert!(
        root_me["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("api-keys:read"))
    );
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn usage_counts_every_call_exactly(backend: Backend) {
    // Arrange: a key allowed 5 requests a minute, whose calls are read back by the root.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(
            &org,
            &root,
            json!({"name": "poller", "scopes": ["api-keys:read"], "rate_limit_per_minute": 5}),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    let token = key["secret"].as_str().unwrap();
    let list = format!("/organizations/{org}/api-keys");
    let missing = format!("{list}/{}", uuid::Uuid::now_v7());

    // Act: 2x200 whoami, 200 list, 403 create (no allowance taken: scope comes before
    // the rate limit), 404 details, 200 whoami, then 2x429 whoami.
    for (path, want) in [
        ("/whoami", StatusCode::OK),
        ("/whoami", StatusCode::OK),
        (list.as_str(), StatusCode::OK),
    ] {
        assert_eq!(get(&app, token, path).await.0, want, "{path}");
    }
    let refused = app
        .api(&org, token)
        .create_key(json!({"name": "nope"}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for (path, want) in [
        (missing.as_str(), StatusCode::NOT_FOUND),
        ("/whoami", StatusCode::OK),
        ("/whoami", StatusCode::TOO_MANY_REQUESTS),
        ("/whoami", StatusCode::TOO_MANY_REQUESTS),
    ] {
        assert_eq!(get(&app, token, path).await.0, want, "{path}");
    }
    // The recorder is durable by default: every call is in the store before its response.
    assert_eq!(recorded_calls(&app, Some(id)).await, 8);

    // Assert: the key's usage, by minute (the calls may straddle a minute boundary).
    let (status, usage) = get(
        &app,
        &root,
        &format!("{list}/{id}/usage?granularity=minute"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["key_id"], id);
    assert_eq!(usage["granularity"], "minute");
    assert!(usage["from"].as_str().unwrap().ends_with(":00.000000Z"));
    assert!(usage["to"].as_str().unwrap().ends_with('Z'));
    assert_eq!(counts(&usage["totals"]), (8, 4, 2, 2), "{usage}");
    assert_eq!(usage["totals"]["client_error_calls"], 2);
    assert_eq!(usage["totals"]["server_error_calls"], 0);
    assert_eq!(usage["totals"]["success_rate"], 0.5);
    assert_eq!(counts(&usage["all_time"]), (8, 4, 2, 2));
    assert!(usage["all_time"]["last_used_at"].is_string());
    let buckets = usage["series"].as_array().unwrap();
    assert!((1..=2).contains(&buckets.len()), "{usage}");
    assert_eq!(series_sum(&usage["series"]), (8, 4, 2, 2));
    for b in buckets {
        assert!(b["start"].as_str().unwrap().ends_with(":00.000000Z"), "{b}");
        assert!(b["success_rate"].is_number(), "{b}");
    }
    // The default: hourly buckets over the last 24 hours.
    let (_, hourly) = get(&app, &root, &format!("{list}/{id}/usage")).await;
    assert_eq!(hourly["granularity"], "hour");
    assert_eq!(series_sum(&hourly["series"]), (8, 4, 2, 2));
    let (_, daily) = get(&app, &root, &format!("{list}/{id}/usage?granularity=day")).await;
    assert_eq!(series_sum(&daily["series"]), (8, 4, 2, 2));

    // The key's details and the list show the same counts, and the routes.
    let (_, details) = get(&app, &root, &format!("{list}/{id}")).await;
    assert_eq!(counts(&details["usage"]), (8, 4, 2, 2), "{details}");
    assert_eq!(details["usage"]["success_rate"], 0.5);
    assert_eq!(details["total_calls"], 8);
    let routes: Vec<RouteCounts> = details["usage"]["by_route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["route"].as_str().unwrap().to_owned(),
                counts(r),
            )
        })
        .collect();
    let mut want: Vec<RouteCounts> = vec![
        ("GET".to_owned(), "/whoami".to_owned(), (5, 3, 0, 2)),
        (
            "GET".to_owned(),
            "/organizations/{org}/api-keys".to_owned(),
            (1, 1, 0, 0),
        ),
        (
            "GET".to_owned(),
            "/organizations/{org}/api-keys/{id}".to_owned(),
            (1, 0, 1, 0),
        ),
        (
            "POST".to_owned(),
            "/organizations/{org}/api-keys".to_owned(),
            (1, 0, 1, 0),
        ),
    ];
    // Busiest first; ties by method, then route.
    want.sort_by(|a, b| b.2.0.cmp(&a.2.0).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    assert_eq!(routes, want);
    let (_, page) = get(&app, &root, &list).await;
    let listed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap();
    assert_eq!(listed["total_calls"], 8);
    assert_eq!(listed["success_rate"], 0.5);
    assert!(listed["last_used_at"].is_string());

    // Organisation-wide: the key's 8 calls and the root's: its create, the three usage
    // reads, the details and the list (each recorded before its response).
    let (status, org_usage) = get(
        &app,
        &root,
        &format!("/organizations/{org}/usage?granularity=minute"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{org_usage}");
    assert_eq!(org_usage["org_id"], org.as_str());
    assert_eq!(
        counts(&org_usage["all_time"]),
        (14, 10, 2, 2),
        "{org_usage}"
    );
    assert_eq!(counts(&org_usage["totals"]), (14, 10, 2, 2));
    assert_eq!(series_sum(&org_usage["series"]), (14, 10, 2, 2));
    // The org read itself is now recorded as well: 15 in the store.
    assert_eq!(recorded_calls(&app, None).await, 15);
}

async fn usage_parameters_and_tenancy(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let (other_org, other_root, other_key) = app.cli_org("Other Co", "enterprise");
    let (_, other_me) = get(&app, &other_root, "/whoami").await;
    assert_eq!(other_me["id"], other_key.as_str());
    let (_, me) = get(&app, &root, "/whoami").await;
    let own = format!(
        "/organizations/{org}/api-keys/{}/usage",
        me["id"].as_str().unwrap()
    );
    let org_path = format!("/organizations/{org}/usage");
    let data_only = app
        .create_key(
            &org,
            &root,
            json!({"name": "data", "scopes": ["work-orders:read"]}),
        )
        .await;

    // Act + Assert: bad values answer 422 naming the field, on both endpoints.
    for path in [&own, &org_path] {
        for (query, field) in [
            ("granularity=week", "granularity"),
            ("from=yesterday", "from"),
            ("to=2026-02-30T00:00:00Z", "to"),
            ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
            (
                "granularity=minute&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
                "from",
            ),
            ("colour=red", "query"),
        ] {
            let (status, problem) = get(&app, &root, &format!("{path}?{query}")).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{query}: {problem}"
            );
            assert_eq!(problem["code"], "validation_failed", "{problem}");
            assert_eq!(problem["field"], field, "{query}: {problem}");
        }
        // A window with no calls: zero totals and an empty series.
        let (status, empty) = get(
            &app,
            &root,
            &format!("{path}?granularity=day&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{empty}");
        assert_eq!(empty["from"], "2020-01-01T00:00:00.000000Z");
        assert_eq!(empty["to"], "2020-02-01T00:00:00.000000Z");
        assert_eq!(counts(&empty["totals"]), (0, 0, 0, 0));
        assert_eq!(empty["totals"]["success_rate"], Value::Null);
        assert_eq!(empty["series"], json!([]));
    }

    // Another organisation's key, or organisation, is not found; so is a made-up key.
    for path in [
        format!("/organizations/{org}/api-keys/{other_key}/usage"),
        format!("/organizations/{other_org}/api-keys/{other_key}/usage"),
        format!("/organizations/{other_org}/usage"),
        format!(
            "/organizations/{org}/api-keys/{}/usage",
            uuid::Uuid::now_v7()
        ),
        format!("/organizations/{org}/api-keys/not-a-key/usage"),
    ] {
        let (status, problem) = get(&app, &root, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
    }
    // Usage needs api-keys:read.
    let (status, problem) = get(&app, data_only["secret"].as_str().unwrap(), &org_path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["code"], "insufficient_scope");
    assert_eq!(problem["scope"], "api-keys:read");

    // The endpoints are in the OpenAPI document.
    let doc = app.anonymous(&org).openapi().await.body;
    for path in [
        "/organizations/{org}/api-keys/{id}/usage",
        "/organizations/{org}/usage",
        "/whoami",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} not documented"
        );
    }
}

test_support::backend_tests!(
    whoami_shows_the_calling_key,
    usage_counts_every_call_exactly,
    usage_parameters_and_tenancy,
);
