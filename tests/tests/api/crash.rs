//! Durable usage under a crash: `kill -9` the server while clients are calling it, start
//! it again on the same database, and find a usage event for every response a client
//! received (a durable response is sent only after its `ApiCallRecorded` is committed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app_with, spawn_node};

/// Usage events stored for the given keys (read straight from the event store).
async fn usage_events(app: &TestApp, key_ids: &[String]) -> i64 {
    let mut total = 0;
    for id in key_ids {
        total += app.usage_events(id).await;
    }
    total
}

async fn given_durable_usage_when_the_server_is_killed_under_load_then_every_answered_call_has_its_event(
    backend: Backend,
) {
    // Arrange: durable usage, four keys, sixteen clients calling /whoami in a loop.
    let mut app = spawn_app_with(backend, &[("KEYLEDGER_USAGE_DURABILITY", "durable")]).await;
    let (org, root) = app.bootstrap();
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..4 {
        let key = app
            .create_key(
                &org,
                &root,
                json!({"name": format!("load {i}"), "scopes": ["api-keys:read"]}),
            )
            .await;
        ids.push(key["id"].as_str().unwrap().to_owned());
        tokens.push(key["secret"].as_str().unwrap().to_owned());
    }
    let whoami = app.url("/whoami");
    for token in &tokens {
        // The node's first verification of a key runs argon2: not part of the load.
        let res = app
            .client
            .get(&whoami)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..16 {
        let token = tokens[c % tokens.len()].clone();
        let answered = answered.clone();
        let whoami = whoami.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Until the server is gone: every 2xx or 4xx the client got is counted.
            while let Ok(res) = client.get(&whoami).bearer_auth(&token).send().await {
                let status = res.status();
                if res.bytes().await.is_err() {
                    break;
                }
                if status.is_success() || status.is_client_error() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // Load for at least 2.5 s and until 300 calls were answered (or 30 s passed: a
    // loaded CI machine answers slowly; the assertion below still wants more than 100).
    let loading = std::time::Instant::now();
    while loading.elapsed() < Duration::from_millis(2500)
        || (answered.load(Ordering::SeqCst) < 300 && loading.elapsed() < Duration::from_secs(30))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Act: kill -9 under load, then start the server again on the same database.
    app.kill_9();
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.load(Ordering::SeqCst);
    let restarted = spawn_node(&app.database_url, &[]);
    let res = restarted
        .client
        .get(restarted.url("/healthz"))
        .send()
        .await
        .unwrap();

    // Assert
    assert!(res.status().is_success());
    assert!(
        answered > 100,
        "the load produced only {answered} responses"
    );
    let stored = usage_events(&app, &ids).await;
    assert!(
        u64::try_from(stored).unwrap() >= answered,
        "{answered} responses were sent but only {stored} usage events are stored"
    );
    drop(restarted);
}

test_support::backend_tests!(
    each #[tokio::test(flavor = "multi_thread", worker_threads = 4)];
    given_durable_usage_when_the_server_is_killed_under_load_then_every_answered_call_has_its_event,
);
