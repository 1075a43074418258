//! Auditing, on the real binary, SQLite and Postgres: a key's history over HTTP (JSON and
//! NDJSON, usage merged, time filters, tenancy, no secret or hash), `keyledger audit`
//! (state after each event, state at a moment, export) and `keyledger audit verify`
//! naming an event altered or deleted with SQL behind the store's back.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

fn events_url(app: &TestApp, org: &str, key: &str, query: &str) -> String {
    app.url(&format!(
        "/organizations/{org}/api-keys/{key}/events{query}"
    ))
}

/// Runs the CLI and returns (success, stdout, stderr), whatever the exit code.
fn cli_status(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyledger-blackbox"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYLEDGER_DATABASE_URL", &app.database_url)
        .env("USER", "tester")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run_sql(app: &TestApp, sql: &str) {
    if app.database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

async fn get_json(app: &TestApp, url: &str, key: &str) -> (StatusCode, String, Value) {
    let res = app.client.get(url).bearer_auth(key).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, body)
}

fn assert_clean(body: &str, secrets: &[&str]) {
    assert!(!body.contains("$argon2"), "a hash leaked: {body}");
    assert!(!body.contains("secret_hash"), "a hash field leaked: {body}");
    for secret in secrets {
        assert!(!body.contains(secret), "a secret leaked: {body}");
    }
}

async fn key_history(backend: Backend) {
    // Arrange: a key whose scopes change, and a reader key that makes calls (usage).
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let created: Value = c
        .post(app.url(&format!("/organizations/{org}/api-keys")))
        .bearer_auth(&root)
        .json(&json!({"name": "erp", "scopes": ["work-orders:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["id"].as_str().unwrap().to_owned();
    let key_secret = created["secret"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let patched = c
        .patch(app.url(&format!("/organizations/{org}/api-keys/{key}")))
        .bearer_auth(&root)
        .json(&json!({"scopes": ["work-orders:read", "assets:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let reader: Value = c
        .post(app.url(&format!("/organizations/{org}/api-keys")))
        .bearer_auth(&root)
        .json(&json!({"name": "auditor", "scopes": ["api-keys:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader_id = reader["id"].as_str().unwrap().to_owned();
    let reader_secret = reader["secret"].as_str().unwrap().to_owned();
    let secrets = [root.as_str(), key_secret.as_str(), reader_secret.as_str()];

    // Act + Assert: JSON history, in order, with every envelope field.
    let (status, text, body) =
        get_json(&app, &events_url(&app, &org, &key, ""), &reader_secret).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_clean(&text, &secrets);
    let items = body["items"].as_array().unwrap();
    let types: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["KeyCreated", "ScopesChanged"]);
    for field in [
        "event_id",
        "stream",
        "stream_version",
        "position",
        "type",
        "schema_version",
        "recorded_at",
        "actor",
        "request_id",
        "correlation_id",
        "causation_id",
        "data",
    ] {
        assert!(
            items[0].get(field).is_some(),
            "missing {field} in {}",
            items[0]
        );
    }
    assert_eq!(items[0]["stream"], format!("apikey-{key}"));
    assert_eq!(items[1]["stream_version"], 2);
    assert_eq!(
        items[1]["data"]["after"],
        json!(["assets:read", "work-orders:read"])
    );
    assert!(items[0]["data"]["prefix"].is_string());

    // NDJSON: the same events, one per line.
    let res = c
        .get(events_url(&app, &org, &key, ""))
        .bearer_auth(&reader_secret)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    assert_clean(&text, &secrets);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["type"], "ScopesChanged");

    // include=usage: the reader's own calls so far are in its usage stream (durable
    // before each response), merged in position order.
    let (status, text, body) = get_json(
        &app,
        &events_url(&app, &org, &reader_id, "?include=usage"),
        &reader_secret,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_clean(&text, &secrets);
    let items = body["items"].as_array().unwrap();
    let usage: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "ApiCallRecorded")
        .collect();
    assert!(usage.len() >= 3, "{text}");
    assert_eq!(usage[0]["stream"], format!("apikey-usage-{reader_id}"));
    let positions: Vec<u64> = items
        .iter()
        .map(|i| i["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let (_, _, without) = get_json(
        &app,
        &events_url(&app, &org, &reader_id, ""),
        &reader_secret,
    )
    .await;
    assert_eq!(without["items"].as_array().unwrap().len(), 1);

    // from / to on recorded_at; bad values are 422 naming the field.
    let second = lines[1]["recorded_at"].as_str().unwrap().to_owned();
    let (_, _, body) = get_json(
        &app,
        &events_url(
            &app,
            &org,
            &key,
            &format!("?from={}", second.replace('+', "%2B")),
        ),
        &reader_secret,
    )
    .await;
    let types: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ScopesChanged"]);
    let first = lines[0]["recorded_at"].as_str().unwrap().to_owned();
    let (_, _, body) = get_json(
        &app,
        &events_url(&app, &org, &key, &format!("?to={first}")),
        &reader_secret,
    )
    .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    for (query, field) in [
        ("?from=yesterday", "from"),
        ("?to=2025-13-01", "to"),
        ("?include=everything", "include"),
    ] {
        let (status, text, problem) =
            get_json(&app, &events_url(&app, &org, &key, query), &reader_secret).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {text}");
        assert_eq!(problem["field"], field, "{query}: {text}");
    }

    // Tenancy: another organisation's key, or this key under another org, is 404.
    let other = app.cli(&[
        "orgs",
        "create",
        "--name",
        "other",
        "--plan",
        "enterprise",
        "--json",
    ]);
    let other: Value = serde_json::from_str(other.trim()).unwrap();
    let other_org = other["org_id"].as_str().unwrap();
    let other_root = other["root_key"].as_str().unwrap();
    let (status, _, _) = get_json(&app, &events_url(&app, other_org, &key, ""), other_root).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other_key = other["root_key_id"].as_str().unwrap();
    let (status, _, _) = get_json(&app, &events_url(&app, &org, other_key, ""), &root).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get_json(&app, &events_url(&app, &org, &key, ""), &key_secret).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "needs api-keys:read");

    // CLI: the state after each event, and at a moment before / after the change.
    let replay = app.cli(&["audit", &key, "--json"]);
    assert_clean(&replay, &secrets);
    let states: Vec<Value> = replay
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(states.len(), 2, "{replay}");
    assert_eq!(states[0]["type"], "KeyCreated");
    assert_eq!(states[0]["state"]["scopes"], json!(["work-orders:read"]));
    assert_eq!(
        states[1]["state"]["scopes"],
        json!(["assets:read", "work-orders:read"])
    );
    assert_eq!(states[1]["state"]["status"], "active");
    let table = app.cli(&["audit", &key]);
    assert!(
        table.contains("KeyCreated") && table.contains("ScopesChanged"),
        "{table}"
    );
    let before: Value =
        serde_json::from_str(app.cli(&["audit", &key, "--at", &first, "--json"]).trim()).unwrap();
    assert_eq!(before["scopes"], json!(["work-orders:read"]));
    let after: Value =
        serde_json::from_str(app.cli(&["audit", &key, "--at", &second, "--json"]).trim()).unwrap();
    assert_eq!(after["scopes"], json!(["assets:read", "work-orders:read"]));
    let never = app.cli(&["audit", &key, "--at", "2001-01-01T00:00:00Z", "--json"]);
    assert_eq!(never.trim(), "null");

    // Export: every event of the org's streams, redacted.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    app.cli(&[
        "audit",
        "export",
        "--org",
        &org,
        "--output",
        file.to_str().unwrap(),
    ]);
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_clean(&exported, &secrets);
    let exported: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(exported.iter().any(|e| e["type"] == "OrganizationCreated"));
    assert!(exported.iter().any(|e| e["type"] == "ScopesChanged"));
    assert!(exported.iter().any(|e| e["type"] == "ApiCallRecorded"));
    assert!(
        !exported
            .iter()
            .any(|e| e["stream"] == format!("org-{other_org}"))
    );

    // Verify: intact, then altered and deleted rows are named.
    let (ok, out, err) = cli_status(&app, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    let altered = lines[1]["position"].as_u64().unwrap();
    run_sql(
        &app,
        &format!(
            "UPDATE events SET data = '{{\"before\": [], \"after\": [\"users:read\"]}}' WHERE position = {altered}"
        ),
    )
    .await;
    let (ok, out, err) = cli_status(&app, &["audit", "verify", "--org", &org]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!(
            "position {altered} (stream apikey-{key}, version 2)"
        )),
        "{out}{err}"
    );
    let deleted = org_event_position(&app, &org, 2);
    run_sql(
        &app,
        &format!("DELETE FROM events WHERE position = {deleted}"),
    )
    .await;
    let (ok, out, err) = cli_status(&app, &["audit", "verify"]);
    assert!(!ok);
    assert!(out.contains(&format!("position {altered} ")), "{out}");
    assert!(
        out.contains("version 2 is missing"),
        "the deletion is named too: {out}{err}"
    );
}

/// The position of the org stream's event at `version`, found through the export.
fn org_event_position(app: &TestApp, org: &str, version: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    app.cli(&[
        "audit",
        "export",
        "--org",
        org,
        "--output",
        file.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&file).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["stream"] == format!("org-{org}") && e["stream_version"] == version)
        .and_then(|e| e["position"].as_u64())
        .unwrap()
}

#[tokio::test]
async fn key_history_on_sqlite() {
    key_history(Backend::Sqlite).await;
}

#[tokio::test]
async fn key_history_on_postgres() {
    if !Backend::Postgres.skipped() {
        key_history(Backend::Postgres).await;
    }
}
