//! The axum application: state, routes and layers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use domain::store::EventStore;
use projections::ReadDb;
use serde_json::json;

/// Everything a request handler may need.
pub struct App {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The read-model database.
    pub read_db: ReadDb,
}

/// Cheap to clone: handlers share one `App`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

/// The router shared by `main` and the tests.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the event store and the read-model database answer.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store_ok = state.0.store.head_position().await.is_ok();
    let db_ok = sqlx::query("SELECT 1")
        .execute(state.0.read_db.pool())
        .await
        .is_ok();
    let status = if store_ok && db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "unavailable" },
            "event_store": if store_ok { "up" } else { "down" },
            "read_models": if db_ok { "up" } else { "down" },
        })),
    )
}
