//! Platform endpoints on both back ends.

use crate::helpers::{Backend, TestDb, spawn_app_on, spawn_node};

/// On a first start (an empty database: the node migrates it).
async fn health_and_readiness_answer_on_a_first_start(backend: Backend) {
    // Arrange
    let app = spawn_app_on(TestDb::empty(backend).await, &[]);

    // Act
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();

    // Assert
    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["event_store"], "up");
    assert_eq!(body["read_models"], "up");
}

test_support::backend_tests!(health_and_readiness_answer_on_a_first_start);

/// Two nodes started at once on an empty Postgres create one organisation, not two.
#[tokio::test]
async fn two_first_starts_bootstrap_once_on_postgres() {
    if Backend::Postgres.skipped() {
        return;
    }
    // Arrange: an empty database (not even migrated), two nodes racing.
    let db = TestDb::empty(Backend::Postgres).await;
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking({
            let url = db.url().to_owned();
            move || spawn_node(&url, &[])
        }),
        tokio::task::spawn_blocking({
            let url = db.url().to_owned();
            move || spawn_node(&url, &[])
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    // Assert: one OrganizationCreated in the store, one root key printed.
    let orgs = test_support::sql::scalar(
        db.url(),
        "SELECT count(*) FROM events WHERE event_type = $1",
        "OrganizationCreated",
    )
    .await;
    assert_eq!(orgs, 1);
    let printed = [a.output_text(), b.output_text()]
        .iter()
        .filter(|t| t.contains("store it now"))
        .count();
    assert_eq!(printed, 1);
}

/// Bad configuration stops start-up with one line naming the variable.
#[test]
fn bad_configuration_names_the_variable() {
    let cases = [
        ("KEYLEDGER_LISTEN", "not-an-address"),
        ("KEYLEDGER_ENVIRONMENT", "staging"),
        ("KEYLEDGER_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("KEYLEDGER_DATABASE_URL", "mysql://localhost/x"),
    ];
    for (var, value) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyledger-blackbox"))
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("KEYLEDGER_LISTEN", "127.0.0.1:0")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} should stop start-up");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(first.contains(var), "{var}: {stderr}");
    }
}
