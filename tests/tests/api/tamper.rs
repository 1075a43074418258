//! Tamper-refusing, on the real binary, SQLite and Postgres: rows of the event store are
//! edited with SQL behind the store's back (a `KeyCreated` given `work-orders:write`, an
//! organisation renamed, a key's hashes stripped as if written before the chain
//! existed); then a freshly started node refuses the tampered key (401
//! `key_integrity`), its commands (409 `key_integrity`) and the tampered organisation's
//! (409 `org_integrity`); `projections rebuild` marks the key `broken`; `keyledger audit
//! KEY` and `/events` mark the event; the metric counts; one ERROR line per break; and
//! the untouched and the legacy keys keep working.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_node};

/// Runs `sql` behind the store's back and checks that it changed something.
async fn run_sql(app: &TestApp, sql: &str) {
    assert!(app.sql(sql).await > 0, "{sql} changed nothing");
}

/// `SET data = <data with field set to the JSON value>` in the back end's dialect.
fn set_data_field(app: &TestApp, field: &str, value: &Value) -> String {
    if app.database_url.starts_with("sqlite:") {
        format!("data = json_set(data, '$.{field}', json('{value}'))")
    } else {
        format!("data = jsonb_set(data, '{{{field}}}', '{value}'::jsonb)")
    }
}

/// `SET metadata = <metadata without hash and prev_hash>`.
fn strip_hashes(app: &TestApp) -> &'static str {
    if app.database_url.starts_with("sqlite:") {
        "metadata = json_remove(metadata, '$.hash', '$.prev_hash')"
    } else {
        "metadata = metadata - 'hash' - 'prev_hash'"
    }
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    // The paths here name their organisation themselves.
    let reply = app.api("", key).call(method, path, body).await;
    (reply.status, reply.headers, reply.body)
}

/// The text without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn wait_ready(app: &TestApp) {
    for _ in 0..200 {
        if let Ok(res) = app.client.get(app.url("/readyz")).send().await
            && res.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("node not ready:\n{}", app.output_text());
}

async fn given_rows_edited_with_sql_a_fresh_node_refuses_and_marks_them(backend: Backend) {
    // Arrange: a key that may only read work orders, an untouched key, a key whose
    // events lose their hashes (as if written before the chain existed), and a second
    // organisation whose stream will be edited.
    let first = spawn_app(backend).await;
    let (org, root) = first.bootstrap();
    let reader = first
        .create_key(
            &org,
            &root,
            json!({"name": "reader", "scopes": ["work-orders:read"]}),
        )
        .await;
    let (reader_id, reader_secret) = (
        reader["id"].as_str().unwrap().to_owned(),
        reader["secret"].as_str().unwrap().to_owned(),
    );
    let untouched = first
        .create_key(
            &org,
            &root,
            json!({"name": "untouched", "scopes": ["work-orders:read"]}),
        )
        .await;
    let legacy = first
        .create_key(
            &org,
            &root,
            json!({"name": "legacy", "scopes": ["work-orders:read"]}),
        )
        .await;
    let (other_org, other_root, _) = first.cli_org("other", "enterprise");
    let orders = format!("/organizations/{org}/work-orders");
    let (status, _, _) = call(
        &first,
        reqwest::Method::POST,
        &orders,
        &reader_secret,
        Some(json!({"title": "t", "priority": "Low"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "read-only before tampering");

    // Act: edit rows behind the store's back.
    let key_stream = format!("apikey-{reader_id}");
    let scopes = json!(["work-orders:read", "work-orders:write"]);
    run_sql(
        &first,
        &format!(
            "UPDATE events SET {} WHERE stream = '{key_stream}' AND stream_version = 1",
            set_data_field(&first, "scopes", &scopes)
        ),
    )
    .await;
    run_sql(
        &first,
        &format!(
            "UPDATE events SET {} WHERE stream = 'org-{other_org}' AND stream_version = 1",
            set_data_field(&first, "name", &json!("renamed"))
        ),
    )
    .await;
    let legacy_id = legacy["id"].as_str().unwrap();
    run_sql(
        &first,
        &format!(
            "UPDATE events SET {} WHERE stream = 'apikey-{legacy_id}'",
            strip_hashes(&first)
        ),
    )
    .await;
    let node = spawn_node(&first.database_url, &[]);
    wait_ready(&node).await;

    // Assert: the fresh node refuses the tampered key, with WWW-Authenticate, on every
    // route, and does not let it write.
    for _ in 0..3 {
        let (status, headers, body) = call(
            &node,
            reqwest::Method::POST,
            &orders,
            &reader_secret,
            Some(json!({"title": "t", "priority": "Low"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "key_integrity", "{body}");
        assert!(
            headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap().contains("invalid_token"))
        );
        assert!(
            !body["detail"].as_str().unwrap().contains(&key_stream),
            "the detail names no internals: {body}"
        );
    }
    let (status, _, body) =
        call(&node, reqwest::Method::GET, "/whoami", &reader_secret, None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("key_integrity"))
    );
    // The untouched and the legacy keys work.
    for key in [&untouched, &legacy] {
        let secret = key["secret"].as_str().unwrap();
        let (status, _, body) = call(&node, reqwest::Method::GET, &orders, secret, None).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", key["name"]);
    }

    // Its commands answer 409 key_integrity.
    let key_path = format!("/organizations/{org}/api-keys/{reader_id}");
    for (method, path, body) in [
        (
            reqwest::Method::PATCH,
            key_path.clone(),
            Some(json!({"name": "x"})),
        ),
        (
            reqwest::Method::POST,
            format!("{key_path}/revoke"),
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            format!("{key_path}/rotate"),
            Some(json!({})),
        ),
    ] {
        let (status, _, answer) = call(&node, method.clone(), &path, &root, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "key_integrity", "{answer}");
    }
    // The tampered organisation's commands answer 409 org_integrity; its root key (an
    // intact stream) still authenticates.
    let (status, _, answer) = call(
        &node,
        reqwest::Method::POST,
        &format!("/organizations/{other_org}/api-keys"),
        &other_root,
        Some(json!({"name": "new"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "org_integrity", "{answer}");
    // Creating keys in an intact organisation with a broken key among its keys works.
    node.create_key(
        &org,
        &root,
        json!({"name": "after", "scopes": ["work-orders:read"]}),
    )
    .await;

    // The metric counts, and one ERROR line names the stream and version, however many
    // times the key was presented.
    let metrics = node.metrics_text().await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("keyledger_integrity_failures_total")
                && l.contains("stream=\"apikey\"")
                && l.contains("reader=\"commands\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(counted >= 1.0, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("keyledger_integrity_failures_total")
                && l.contains("stream=\"org\"")),
        "{metrics}"
    );
    let output = strip_ansi(&node.output_text());
    let errors: Vec<&str> = output
        .lines()
        .filter(|l| {
            l.contains("ERROR") && l.contains("hash chain broken") && l.contains(&key_stream)
        })
        .collect();
    assert_eq!(errors.len(), 1, "one ERROR line per break:\n{output}");
    assert!(errors[0].contains("stream_version=1"), "{}", errors[0]);

    // The read model: rebuilt from the store, the key is marked, not silently copied.
    let (ok, out, err) = node.cli_status(&["projections", "rebuild"]);
    assert!(ok, "{out}{err}");
    let (status, _, details) = call(&node, reqwest::Method::GET, &key_path, &root, None).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["integrity"], "broken", "{details}");
    assert_eq!(details["integrity_version"], 1, "{details}");
    let (_, _, list) = call(
        &node,
        reqwest::Method::GET,
        &format!("/organizations/{org}/api-keys"),
        &root,
        None,
    )
    .await;
    let integrity_of = |id: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .map(|k| k["integrity"].clone())
            .unwrap()
    };
    assert_eq!(integrity_of(&reader_id), "broken", "{list}");
    assert_eq!(integrity_of(untouched["id"].as_str().unwrap()), "intact");
    assert_eq!(integrity_of(legacy_id), "unverifiable");

    // Audit replay marks the event: the CLI (text and JSON, exit non-zero) and /events.
    let (ok, out, err) = node.cli_status(&["audit", &reader_id]);
    assert!(!ok, "a broken history fails the command: {out}");
    assert!(out.contains("INTEGRITY BROKEN at version 1"), "{out}");
    assert!(err.contains("hash chain broken"), "{err}");
    let (_, out, _) = node.cli_status(&["audit", &reader_id, "--json"]);
    let first_line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first_line["integrity"], "broken", "{out}");
    let (_, out, _) = node.cli_status(&["audit", untouched["id"].as_str().unwrap(), "--json"]);
    assert!(!out.contains("integrity"), "{out}");
    let (status, _, events) = call(
        &node,
        reqwest::Method::GET,
        &format!("{key_path}/events"),
        &root,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let items = events["items"].as_array().unwrap();
    assert_eq!(items[0]["integrity"], "broken", "{events}");
    assert!(
        items[0]["integrity_problem"]
            .as_str()
            .unwrap()
            .contains("altered"),
        "{events}"
    );
    assert!(
        items[1..].iter().all(|e| e.get("integrity").is_none()),
        "{events}"
    );
    drop(node);
}

test_support::backend_tests!(given_rows_edited_with_sql_a_fresh_node_refuses_and_marks_them,);
