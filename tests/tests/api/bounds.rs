//! Bounded inputs and honest statuses (issue 11, item 5): every error body is
//! problem+json, a wrong method is a 405 with `Allow`, a client's request id is kept only
//! when short and printable, metric labels come from fixed sets, and no client input makes
//! an ERROR log line.

use reqwest::Method;

use crate::helpers::{Backend, TestApp, spawn_app};

fn assert_problem(res: &reqwest::Response, status: u16) {
    assert_eq!(res.status().as_u16(), status);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "status {status}");
}

async fn problem_code(res: reqwest::Response) -> String {
    let body: serde_json::Value = res.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// No ERROR line was logged while handling a request (inside a `request` span): client
/// input never makes one. (Background tasks' own errors are not about client input.)
fn assert_no_error_lines(app: &TestApp) {
    let text = app.output_text();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("request"))
        .collect();
    assert!(
        errors.is_empty(),
        "ERROR log lines from client input: {errors:#?}"
    );
}

#[tokio::test]
async fn an_unknown_path_is_a_problem_json_404() {
    let app = spawn_app(Backend::Sqlite).await;

    let res = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();

    assert_problem(&res, 404);
    assert_eq!(problem_code(res).await, "not_found");
}

#[tokio::test]
async fn a_method_a_route_lacks_is_a_405_with_allow_before_any_key_is_asked_for() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(&org, &root, serde_json::json!({"name": "k"}))
        .await;
    let key_path = format!(
        "/organizations/{org}/api-keys/{}",
        key["id"].as_str().unwrap()
    );

    // Act: PUT on a key (with and without a key), POST on a platform route, a made-up method.
    let with_key = app
        .client
        .put(app.url(&key_path))
        .bearer_auth(&root)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let without_key = app.client.put(app.url(&key_path)).send().await.unwrap();
    let platform = app.client.post(app.url("/healthz")).send().await.unwrap();
    let made_up = app
        .client
        .request(
            Method::from_bytes(b"FROBNICATE").unwrap(),
            app.url("/whoami"),
        )
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();

    // Assert
    for res in [&with_key, &without_key] {
        assert_problem(res, 405);
        let allow = res.headers()["allow"].to_str().unwrap().to_owned();
        for m in ["GET", "PATCH", "DELETE"] {
            assert!(allow.contains(m), "Allow: {allow}");
        }
        assert!(!allow.contains("PUT"), "Allow: {allow}");
    }
    assert_eq!(problem_code(with_key).await, "method_not_allowed");
    assert_problem(&platform, 405);
    assert!(
        platform.headers()["allow"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_problem(&made_up, 405);
    // HEAD follows GET.
    let head = app
        .client
        .head(app.url("/whoami"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // The made-up method adds no metric series.
    let metrics = app.metrics_text().await;
    assert!(!metrics.contains("FROBNICATE"));
    assert!(metrics.contains("method=\"other\""));
    assert_no_error_lines(&app);
}

#[tokio::test]
async fn a_long_or_unprintable_request_id_is_replaced_and_never_stored() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let (_org, root) = app.bootstrap();
    let long = "r".repeat(60 * 1024);

    // Act
    let replaced = app
        .client
        .get(app.url("/whoami"))
        .bearer_auth(&root)
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    let kept = app
        .client
        .get(app.url("/whoami"))
        .bearer_auth(&root)
        .header("x-request-id", "erp-poll-0042")
        .send()
        .await
        .unwrap();

    // Assert: the long one is replaced by a generated id, echoed; the short one is echoed.
    assert_eq!(replaced.status(), 200);
    let echoed = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(
        echoed.len() <= 128 && uuid::Uuid::parse_str(echoed).is_ok(),
        "{echoed}"
    );
    assert_eq!(kept.headers()["x-request-id"], "erp-poll-0042");
    // Wait for the usage events, then look at every stored row.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dump = app.dump_database().await;
    assert!(
        !dump.contains(&"r".repeat(129)),
        "a long request id was stored"
    );
    assert!(dump.contains("erp-poll-0042"));
    assert_no_error_lines(&app);
}

#[tokio::test]
async fn oversized_headers_and_bodies_and_wrong_media_types_are_problem_json() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let keys = app.url(&format!("/organizations/{org}/api-keys"));

    // Act
    let mut big_headers = app.client.get(app.url("/whoami")).bearer_auth(&root);
    for i in 0..20 {
        big_headers = big_headers.header(format!("x-filler-{i}"), "f".repeat(4 * 1024));
    }
    let headers_431 = big_headers.send().await.unwrap();
    let body_413 = app
        .client
        .post(&keys)
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{}\"}}", "n".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    let media_415 = app
        .client
        .post(&keys)
        .bearer_auth(&root)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();

    // Assert
    assert_problem(&headers_431, 431);
    assert_eq!(problem_code(headers_431).await, "headers_too_large");
    assert_problem(&body_413, 413);
    assert_problem(&media_415, 415);
    assert_no_error_lines(&app);
}
