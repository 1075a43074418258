//! Auditing, on the real binary, SQLite and Postgres: a key's history over HTTP (JSON and
//! NDJSON, usage merged, time filters, tenancy, no secret or hash), `keyledger audit`
//! (state after each event, state at a moment, export) and `keyledger audit verify`
//! naming an event altered or deleted with SQL behind the store's back.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

fn assert_clean(body: &str, secrets: &[&str]) {
    assert!(!body.contains("$argon2"), "a hash leaked: {body}");
    assert!(!body.contains("secret_hash"), "a hash field leaked: {body}");
    for secret in secrets {
        assert!(!body.contains(secret), "a secret leaked: {body}");
    }
}

/// A node whose key "erp" had its scopes changed, and a reader key "auditor" that made
/// calls (usage).
struct History {
    app: TestApp,
    org: String,
    root: String,
    /// The changed key.
    key: String,
    key_secret: String,
    reader_id: String,
    reader_secret: String,
}

impl History {
    async fn new(backend: Backend) -> History {
        let app = spawn_app(backend).await;
        let (org, root) = app.bootstrap();
        let root_api = app.api(&org, &root);
        let created = root_api
            .new_key(json!({"name": "erp", "scopes": ["work-orders:read"]}))
            .await;
        let key = created["id"].as_str().unwrap().to_owned();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let patched = root_api
            .patch_key(&key, json!({"scopes": ["work-orders:read", "assets:read"]}))
            .await;
        assert_eq!(patched.status, StatusCode::OK);
        let reader = root_api
            .new_key(json!({"name": "auditor", "scopes": ["api-keys:read"]}))
            .await;
        History {
            key,
            key_secret: created["secret"].as_str().unwrap().to_owned(),
            reader_id: reader["id"].as_str().unwrap().to_owned(),
            reader_secret: reader["secret"].as_str().unwrap().to_owned(),
            app,
            org,
            root,
        }
    }

    fn secrets(&self) -> [&str; 3] {
        [&self.root, &self.key_secret, &self.reader_secret]
    }

    /// `GET ../api-keys/{id}/events{query}` as the reader.
    async fn events(&self, id: &str, query: &str) -> crate::helpers::Reply {
        self.app
            .api(&self.org, &self.reader_secret)
            .key_events(id, query)
            .await
    }

    /// The changed key's history as NDJSON lines.
    async fn ndjson(&self) -> Vec<Value> {
        let reader = self.app.api(&self.org, &self.reader_secret);
        let reply = reader
            .send(
                reader
                    .request(
                        reqwest::Method::GET,
                        &format!("{}/events", reader.key_path(&self.key)),
                    )
                    .header("accept", "application/x-ndjson"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-type"), "application/x-ndjson");
        assert_clean(&reply.text, &self.secrets());
        reply
            .text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn a_keys_history_holds_every_event_in_order_as_json_and_ndjson(backend: Backend) {
    // Arrange
    let h = History::new(backend).await;

    // Act
    let json = h.events(&h.key, "").await;
    let lines = h.ndjson().await;

    // Assert: in order, with every envelope field, no secret; NDJSON the same, a line each.
    assert_eq!(json.status, StatusCode::OK, "{}", json.text);
    assert_clean(&json.text, &h.secrets());
    let items = json.body["items"].as_array().unwrap();
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
    assert_eq!(items[0]["stream"], format!("apikey-{}", h.key));
    assert_eq!(items[1]["stream_version"], 2);
    assert_eq!(
        items[1]["data"]["after"],
        json!(["assets:read", "work-orders:read"])
    );
    assert!(items[0]["data"]["prefix"].is_string());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["type"], "ScopesChanged");
}

async fn a_keys_history_merges_its_usage_in_position_order_when_asked(backend: Backend) {
    // Arrange: the reader's calls so far are in its usage stream (durable before each
    // response).
    let h = History::new(backend).await;
    h.events(&h.key, "").await;
    h.events(&h.key, "").await;

    // Act
    let with = h.events(&h.reader_id, "?include=usage").await;
    let without = h.events(&h.reader_id, "").await;

    // Assert
    assert_eq!(with.status, StatusCode::OK, "{}", with.text);
    assert_clean(&with.text, &h.secrets());
    let items = with.body["items"].as_array().unwrap();
    let usage: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "ApiCallRecorded")
        .collect();
    assert!(usage.len() >= 3, "{}", with.text);
    assert_eq!(usage[0]["stream"], format!("apikey-usage-{}", h.reader_id));
    let positions: Vec<u64> = items
        .iter()
        .map(|i| i["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(without.body["items"].as_array().unwrap().len(), 1);
}

async fn a_keys_history_filters_on_recorded_at_and_names_a_bad_filter(backend: Backend) {
    // Arrange
    let h = History::new(backend).await;
    let lines = h.ndjson().await;
    let first = lines[0]["recorded_at"].as_str().unwrap().to_owned();
    let second = lines[1]["recorded_at"].as_str().unwrap().to_owned();

    // Act
    let from = h
        .events(&h.key, &format!("?from={}", second.replace('+', "%2B")))
        .await;
    let to = h.events(&h.key, &format!("?to={first}")).await;

    // Assert
    let types: Vec<&str> = from.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ScopesChanged"]);
    assert_eq!(to.body["items"].as_array().unwrap().len(), 1);
    for (query, field) in [
        ("?from=yesterday", "from"),
        ("?to=2025-13-01", "to"),
        ("?include=everything", "include"),
    ] {
        let refused = h.events(&h.key, query).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            refused.text
        );
        assert_eq!(refused.body["field"], field, "{query}: {}", refused.text);
    }
}

async fn a_keys_history_is_not_found_from_another_organisation_and_needs_api_keys_read(
    backend: Backend,
) {
    // Arrange
    let h = History::new(backend).await;
    let (other_org, other_root, other_key) = h.app.cli_org("other", "enterprise");

    // Act
    let theirs = h
        .app
        .api(&other_org, &other_root)
        .key_events(&h.key, "")
        .await;
    let not_ours = h.app.api(&h.org, &h.root).key_events(&other_key, "").await;
    let unscoped = h
        .app
        .api(&h.org, &h.key_secret)
        .key_events(&h.key, "")
        .await;

    // Assert
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(not_ours.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unscoped.status,
        StatusCode::FORBIDDEN,
        "needs api-keys:read"
    );
}

async fn the_cli_replays_a_keys_state_after_each_event_and_at_a_moment(backend: Backend) {
    // Arrange
    let h = History::new(backend).await;
    let lines = h.ndjson().await;
    let first = lines[0]["recorded_at"].as_str().unwrap().to_owned();
    let second = lines[1]["recorded_at"].as_str().unwrap().to_owned();

    // Act
    let replay = h.app.cli(&["audit", &h.key, "--json"]);
    let table = h.app.cli(&["audit", &h.key]);
    let before = h.app.cli(&["audit", &h.key, "--at", &first, "--json"]);
    let after = h.app.cli(&["audit", &h.key, "--at", &second, "--json"]);
    let never = h
        .app
        .cli(&["audit", &h.key, "--at", "2001-01-01T00:00:00Z", "--json"]);

    // Assert
    assert_clean(&replay, &h.secrets());
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
    assert!(
        table.contains("KeyCreated") && table.contains("ScopesChanged"),
        "{table}"
    );
    let before: Value = serde_json::from_str(before.trim()).unwrap();
    assert_eq!(before["scopes"], json!(["work-orders:read"]));
    let after: Value = serde_json::from_str(after.trim()).unwrap();
    assert_eq!(after["scopes"], json!(["assets:read", "work-orders:read"]));
    assert_eq!(never.trim(), "null");
}

/// `keyledger audit export --org ORG` into a temp file: every event, one per line.
fn export(app: &TestApp, org: &str) -> (String, Vec<Value>) {
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
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, events)
}

async fn an_export_holds_every_event_of_the_organisation_redacted(backend: Backend) {
    // Arrange
    let h = History::new(backend).await;
    h.events(&h.key, "").await;
    let (other_org, _, _) = h.app.cli_org("other", "enterprise");

    // Act
    let (text, exported) = export(&h.app, &h.org);

    // Assert
    assert_clean(&text, &h.secrets());
    assert!(exported.iter().any(|e| e["type"] == "OrganizationCreated"));
    assert!(exported.iter().any(|e| e["type"] == "ScopesChanged"));
    assert!(exported.iter().any(|e| e["type"] == "ApiCallRecorded"));
    assert!(
        !exported
            .iter()
            .any(|e| e["stream"] == format!("org-{other_org}"))
    );
}

async fn audit_verify_names_events_altered_or_deleted_with_sql(backend: Backend) {
    // Arrange
    let h = History::new(backend).await;
    let lines = h.ndjson().await;
    let (ok, out, err) = h.app.cli_status(&["audit", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("intact"), "{out}");

    // Act 1: alter the key's second event.
    let altered = lines[1]["position"].as_u64().unwrap();
    h.app
        .sql(&format!(
            "UPDATE events SET data = '{{\"before\": [], \"after\": [\"users:read\"]}}' WHERE position = {altered}"
        ))
        .await;
    let (ok, out, err) = h.app.cli_status(&["audit", "verify", "--org", &h.org]);

    // Assert 1
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!(
            "position {altered} (stream apikey-{}, version 2)",
            h.key
        )),
        "{out}{err}"
    );

    // Act 2: delete the organisation stream's second event.
    let (_, exported) = export(&h.app, &h.org);
    let deleted = exported
        .iter()
        .find(|e| e["stream"] == format!("org-{}", h.org) && e["stream_version"] == 2)
        .and_then(|e| e["position"].as_u64())
        .unwrap();
    h.app
        .sql(&format!("DELETE FROM events WHERE position = {deleted}"))
        .await;
    let (ok, out, err) = h.app.cli_status(&["audit", "verify"]);

    // Assert 2
    assert!(!ok);
    assert!(out.contains(&format!("position {altered} ")), "{out}");
    assert!(
        out.contains("version 2 is missing"),
        "the deletion is named too: {out}{err}"
    );
}

test_support::backend_tests!(
    a_keys_history_holds_every_event_in_order_as_json_and_ndjson,
    a_keys_history_merges_its_usage_in_position_order_when_asked,
    a_keys_history_filters_on_recorded_at_and_names_a_bad_filter,
    a_keys_history_is_not_found_from_another_organisation_and_needs_api_keys_read,
    the_cli_replays_a_keys_state_after_each_event_and_at_a_moment,
    an_export_holds_every_event_of_the_organisation_redacted,
    audit_verify_names_events_altered_or_deleted_with_sql,
);
