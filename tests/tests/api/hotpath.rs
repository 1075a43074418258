//! The auth layer through real HTTP: the order of checks, the headers, rate limits,
//! IP allowlists behind trusted proxies, environments, and the usage events it records.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, spawn_app_with};

async fn the_rate_limit_headers_count_down_and_every_identified_call_is_recorded(backend: Backend) {
    // Arrange: a key that may read keys, 3 requests a minute.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(
            &org,
            &root,
            json!({"name": "poller", "scopes": ["api-keys:read"], "rate_limit_per_minute": 3}),
        )
        .await;
    let token = key["secret"].as_str().unwrap();
    let list = app.url(&format!("/organizations/{org}/api-keys"));

    // Act + Assert: the whole allowance in a burst, with the headers counting down.
    for remaining in [2, 1, 0] {
        let res = app
            .client
            .get(&list)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], remaining.to_string().as_str());
        assert!(h.get("ratelimit-reset").is_some());
        assert_eq!(h["ratelimit-policy"], "\"per-key\";q=3;w=60");
        assert!(
            h["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"per-key\";r=")
        );
    }
    // A scope failure comes before the rate limit (step 4 before 5), with the headers.
    let res = app
        .client
        .post(&list)
        .bearer_auth(token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("ratelimit-limit").is_some());
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "insufficient_scope");
    assert_eq!(problem["scope"], "api-keys:create");
    // Over the limit: 429 with Retry-After.
    let res = app
        .client
        .get(&list)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "retry after {retry}");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");

    // Failed authentications identify no key: no usage event, but a metric.
    let res = app
        .client
        .get(&list)
        .bearer_auth("kl_live_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Every identified call was recorded, durably, before its response: 3 + 403 + 429.
    let id = key["id"].as_str().unwrap();
    assert_eq!(app.usage_events(id).await, 5);

    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("keyledger_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyledger_auth_failures_total{reason=\"malformed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyledger_argon2_verifications_total"),
        "{metrics}"
    );
    assert!(metrics.contains("keyledger_usage_batch_size"), "{metrics}");
    assert!(
        metrics.contains("keyledger_projector_lag_events"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ip_allowlist_believes_forwarded_for_only_from_trusted_proxies() {
    // Arrange: one server trusting loopback as a proxy, one trusting nobody.
    for (trusted, forwarded_allowed) in [("127.0.0.1/32", true), ("", false)] {
        let env: Vec<(&str, &str)> = if trusted.is_empty() {
            vec![]
        } else {
            vec![("KEYLEDGER_TRUSTED_PROXIES", trusted)]
        };
        let app = spawn_app_with(Backend::Sqlite, &env).await;
        let (org, root) = app.bootstrap();
        let key = app.create_key( &org, &root, json!({"name": "plant", "scopes": ["api-keys:read"], "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"]})).await;
        let token = key["secret"].as_str().unwrap();
        let list = app.url(&format!("/organizations/{org}/api-keys"));

        // Act: from 127.0.0.1 directly, and claiming 10.1.2.3 through the "proxy".
        let direct = app
            .client
            .get(&list)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let via = app
            .client
            .get(&list)
            .bearer_auth(token)
            .header("x-forwarded-for", "10.1.2.3")
            .send()
            .await
            .unwrap();
        let spoofed = app
            .client
            .get(&list)
            .bearer_auth(token)
            .header("x-forwarded-for", "10.1.2.3, 203.0.113.5")
            .send()
            .await
            .unwrap();

        // Assert
        assert_eq!(direct.status(), StatusCode::FORBIDDEN);
        let problem: Value = direct.json().await.unwrap();
        assert_eq!(problem["code"], "ip_not_allowed");
        let expected = if forwarded_allowed {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(via.status(), expected, "trusted={trusted:?}");
        // The rightmost untrusted hop is the client: a prefix the client wrote is ignored.
        assert_eq!(spoofed.status(), StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn a_test_key_on_a_live_server_is_refused_saying_so() {
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(
            &org,
            &root,
            json!({"name": "sandbox", "environment": "test", "scopes": ["api-keys:read"]}),
        )
        .await;
    let token = key["secret"].as_str().unwrap();
    assert!(token.starts_with("kl_test_"));
    let res = app
        .client
        .get(app.url(&format!("/organizations/{org}/api-keys")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("test key"),
        "{problem}"
    );
    assert_eq!(app.usage_events(key["id"].as_str().unwrap()).await, 0);
}

#[tokio::test]
async fn a_live_key_on_a_test_server_is_refused_saying_so() {
    let app = spawn_app_with(Backend::Sqlite, &[("KEYLEDGER_ENVIRONMENT", "test")]).await;
    let (org, root) = app.bootstrap();
    assert!(
        root.starts_with("kl_test_"),
        "a test server bootstraps a test root key"
    );
    let key = app
        .create_key(
            &org,
            &root,
            json!({"name": "prod", "environment": "live", "scopes": ["api-keys:read"]}),
        )
        .await;
    let res = app
        .client
        .get(app.url(&format!("/organizations/{org}/api-keys")))
        .bearer_auth(key["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("live key"),
        "{problem}"
    );
}

/// In async mode responses do not wait for their usage events; a graceful shutdown must
/// still write every one of them before the process exits.
async fn a_graceful_shutdown_drains_the_usage_writer(backend: Backend) {
    // Arrange: batches that fill slowly (up to 5 s), responses that do not wait.
    let mut app = spawn_app_with(
        backend,
        &[
            ("KEYLEDGER_USAGE_DURABILITY", "async"),
            ("KEYLEDGER_USAGE_MAX_DELAY_MS", "5000"),
            ("KEYLEDGER_USAGE_BATCH_SIZE", "1000"),
        ],
    )
    .await;
    let (org, root) = app.bootstrap();
    let key = app
        .create_key(
            &org,
            &root,
            json!({"name": "drain", "scopes": ["api-keys:read"]}),
        )
        .await;
    let token = key["secret"].as_str().unwrap().to_owned();
    let id = key["id"].as_str().unwrap().to_owned();
    for _ in 0..25 {
        let res = app
            .client
            .get(app.url("/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    // Act: SIGTERM while the batch is still open.
    let exited = tokio::task::block_in_place(|| app.terminate(std::time::Duration::from_secs(30)));

    // Assert
    assert!(
        exited,
        "keyledger did not exit cleanly:\n{}",
        app.output_text()
    );
    assert_eq!(app.usage_events(&id).await, 25);
}

test_support::backend_tests!(
    the_rate_limit_headers_count_down_and_every_identified_call_is_recorded,
    #[tokio::test(flavor = "multi_thread")]
    a_graceful_shutdown_drains_the_usage_writer,
);

#[tokio::test]
async fn a_plan_change_by_the_cli_beside_a_running_node_reaches_its_rate_limiter_on_sqlite() {
    // Arrange: the node has the enterprise plan (500 a minute) cached.
    let app = spawn_app(Backend::Sqlite).await;
    let (org, root) = app.bootstrap();
    let limit_now = || async {
        let res = app
            .client
            .get(app.url("/whoami"))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap();
        res.headers()["ratelimit-limit"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(limit_now().await, "500");

    // Act: the CLI, another process, changes the plan.
    app.cli(&["orgs", "set-plan", &org, "professional"]);

    // Assert: the relay announces it on the in-process bus, well within the 30 s cache.
    let started = std::time::Instant::now();
    while limit_now().await != "100" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "still the old plan's limit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!("CLI plan change -> new limit: {:?}", started.elapsed());
}
