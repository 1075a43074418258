//! What the OpenAPI document promises, checked by hand where schemathesis found the server
//! answering otherwise (issue 11, item 2): each test is one miss it found, fixed.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, spawn_app};

/// A 422 problem+json naming `field`.
async fn assert_names(res: reqwest::Response, field: &str, what: &str) {
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "{what}");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "validation_failed", "{what}: {problem}");
    assert_eq!(problem["field"], field, "{what}: {problem}");
}

#[tokio::test]
async fn an_empty_query_parameter_is_a_422_naming_it_on_every_list_and_usage_endpoint() {
    // Arrange: the document says `limit` is an integer and `status`, `granularity` enums,
    // `from` / `to` date-times: an empty value is none of those.
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(&org, &root, serde_json::json!({"name": "k"}))
        .await;
    let id = key["id"].as_str().unwrap();
    let cases: Vec<(String, &str)> = vec![
        (format!("/organizations/{org}/api-keys?limit="), "limit"),
        (format!("/organizations/{org}/api-keys?status="), "status"),
        (
            format!("/organizations/{org}/api-keys?status=active&limit="),
            "limit",
        ),
        (format!("/organizations/{org}/work-orders?limit="), "limit"),
        (
            format!("/organizations/{org}/work-orders?status="),
            "status",
        ),
        (format!("/organizations/{org}/assets?limit="), "limit"),
        (format!("/organizations/{org}/locations?limit="), "limit"),
        (
            format!("/organizations/{org}/usage?granularity="),
            "granularity",
        ),
        (format!("/organizations/{org}/usage?from="), "from"),
        (format!("/organizations/{org}/usage?to="), "to"),
        (
            format!("/organizations/{org}/api-keys/{id}/usage?granularity="),
            "granularity",
        ),
        (
            format!("/organizations/{org}/api-keys/{id}/usage?from="),
            "from",
        ),
        (
            format!("/organizations/{org}/api-keys/{id}/usage?to="),
            "to",
        ),
        (
            format!("/organizations/{org}/api-keys/{id}/events?from="),
            "from",
        ),
        (
            format!("/organizations/{org}/api-keys/{id}/events?to="),
            "to",
        ),
    ];

    for (path, field) in cases {
        // Act
        let res = app
            .client
            .get(app.url(&path))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap();

        // Assert
        assert_names(res, field, &path).await;
    }

    // A parameter left out still takes its default, and an empty `cursor` (a string, as
    // the document says) is the first page.
    for path in [
        format!("/organizations/{org}/api-keys"),
        format!("/organizations/{org}/api-keys?cursor="),
        format!("/organizations/{org}/work-orders?cursor="),
        format!("/organizations/{org}/assets"),
    ] {
        let res = app
            .client
            .get(app.url(&path))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_a_422_naming_the_body() {
    // Arrange: serde reads a struct from an array of its fields in order, so `[null,
    // null]` used to pass for an empty key change (and reach the If-Match check).
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(&org, &root, serde_json::json!({"name": "k"}))
        .await;
    let id = key["id"].as_str().unwrap();
    let cases = [
        (
            "PATCH",
            format!("/organizations/{org}/api-keys/{id}"),
            "[null, null]",
        ),
        ("POST", format!("/organizations/{org}/api-keys"), r#"["k"]"#),
        (
            "POST",
            format!("/organizations/{org}/api-keys/{id}/revoke"),
            "[null]",
        ),
        (
            "POST",
            format!("/organizations/{org}/api-keys/{id}/rotate"),
            "3600",
        ),
        (
            "POST",
            format!("/organizations/{org}/work-orders"),
            r#"["t", "Low"]"#,
        ),
        ("POST", format!("/organizations/{org}/assets"), "null"),
    ];

    for (method, path, body) in cases {
        // Act
        let res = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&root)
            .header("content-type", "application/json")
            .header("if-match", "\"0\"")
            .body(body)
            .send()
            .await
            .unwrap();

        // Assert
        assert_names(res, "body", &format!("{method} {path} {body}")).await;
    }
    // Nothing changed: the key is still active at its first version.
    let res = app
        .client
        .get(app.url(&format!("/organizations/{org}/api-keys/{id}")))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    let details: Value = res.json().await.unwrap();
    assert_eq!(details["status"], "active");
    assert_eq!(details["version"], key["version"]);
}

#[tokio::test]
async fn the_audit_filters_take_only_what_the_document_says() {
    // Arrange: `include` is the enum `[usage]`, `from` / `to` are date-times.
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(&org, &root, serde_json::json!({"name": "k"}))
        .await;
    let events = format!(
        "/organizations/{org}/api-keys/{}/events",
        key["id"].as_str().unwrap()
    );

    // Act / Assert: anything but `usage` is a 422 naming `include`, the empty value and
    // lists included.
    for query in [
        "include=",
        "include=usage,usage",
        "include=%20usage",
        "include=Usage",
    ] {
        let res = app
            .client
            .get(app.url(&format!("{events}?{query}")))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap();
        assert_names(res, "include", query).await;
    }
    // `usage` itself, and an offset whose `+` arrived unencoded (a space), are taken.
    for query in [
        "include=usage",
        "from=2020-01-01T00:00:00+00:00&to=2999-01-01T00:00:00%2B01:00",
    ] {
        let res = app
            .client
            .get(app.url(&format!("{events}?{query}")))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{query}");
        let body: Value = res.json().await.unwrap();
        assert!(!body["items"].as_array().unwrap().is_empty(), "{query}");
    }
}
