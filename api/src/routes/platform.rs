//! Public endpoints: health, readiness, and the scope catalogue.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// `/healthz`, `/readyz`, `/scopes`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(list_scopes))
}

/// One scope of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeEntry {
    /// What a key's `scopes` holds, e.g. `work-orders:read`.
    #[schema(value_type = crate::openapi::ScopeName)]
    pub name: &'static str,
    /// What it allows.
    pub description: &'static str,
}

/// The scope catalogue: data scopes first, then management scopes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeCatalogue {
    pub items: Vec<ScopeEntry>,
    /// With a valid key: its organisation's custom scopes, by name (as
    /// `GET /organizations/{org}/scopes` lists them); without one, empty.
    pub custom: Vec<OrgScopeEntry>,
}

/// One of the calling key's organisation's custom scopes. (Its own schema, not the
/// `CustomScope` that `/organizations/{org}/scopes` answers with: this list is not that
/// resource, and schemathesis's link inference must not take it for one.)
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgScopeEntry {
    /// e.g. `billing:read`.
    pub name: String,
    /// What it allows.
    pub description: String,
}

/// The scope catalogue, each scope with what it allows (no key needed). With a valid key,
/// its organisation's custom scopes too; a missing or invalid key just leaves them out
/// (this call is not recorded in any key's usage).
#[utoipa::path(get, path = "/scopes", tag = "platform", responses((status = 200, body = ScopeCatalogue)))]
pub async fn list_scopes(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<ScopeCatalogue> {
    let mut custom = Vec::new();
    if let Some(token) = crate::auth::bearer_from_headers(&headers)
        && let Ok(key) = state.auth.authenticate(token).await
        && let Ok(Some(org)) = state.keys.load_org(key.org_id).await
    {
        custom = org
            .custom_scopes
            .into_iter()
            .map(|(scope, description)| OrgScopeEntry {
                name: scope.as_str().to_owned(),
                description,
            })
            .collect();
    }
    Json(ScopeCatalogue {
        items: domain::Scope::catalogue()
            .map(|(scope, description)| ScopeEntry {
                name: scope.as_str(),
                description,
            })
            .collect(),
        custom,
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "platform", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: the event store and the read-model database answer, and the revocation bus
/// is connected.
#[utoipa::path(get, path = "/readyz", tag = "platform", responses((status = 200, description = "ready"), (status = 503, description = "a store or the bus is down")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store_ok = state.store.head_position().await.is_ok();
    let db_ok = sqlx::query("SELECT 1")
        .execute(state.read_db.pool())
        .await
        .is_ok();
    let bus_ok = state.auth.bus().is_connected();
    let status = if store_ok && db_ok && bus_ok {
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
            "bus": if bus_ok { "up" } else { "down" },
        })),
    )
}
