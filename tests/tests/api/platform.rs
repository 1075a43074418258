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
