//! Platform endpoints on both back ends.

use crate::helpers::{Backend, postgres_url, spawn_app};

async fn it_should_answer_health_and_readiness(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;

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

#[tokio::test]
async fn health_and_readiness_on_sqlite() {
    it_should_answer_health_and_readiness(Backend::Sqlite).await;
}

#[tokio::test]
async fn health_and_readiness_on_postgres() {
    if postgres_url().is_none() {
        return;
    }
    it_should_answer_health_and_readiness(Backend::Postgres).await;
}

/// Two nodes started at once on an empty Postgres create one organisation, not two.
#[tokio::test]
async fn two_first_starts_bootstrap_once_on_postgres() {
    let Some(admin) = postgres_url() else {
        return;
    };
    // Arrange: an empty database, two nodes racing.
    let (url, name) = crate::helpers::fresh_postgres_database(&admin).await;
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking({
            let url = url.clone();
            move || crate::helpers::spawn_node(&url, &[])
        }),
        tokio::task::spawn_blocking({
            let url = url.clone();
            move || crate::helpers::spawn_node(&url, &[])
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    // Assert: one OrganizationCreated in the store, one root key printed.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let orgs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrganizationCreated'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(orgs, 1);
    let printed = [a.output_text(), b.output_text()]
        .iter()
        .filter(|t| t.contains("store it now"))
        .count();
    assert_eq!(printed, 1);
    drop((a, b));
    pool.close().await;
    let admin_pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin_pool)
    .await;
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
