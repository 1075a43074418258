//! `POST /organizations/{org}/api-keys/{id}/revoke` and `DELETE .../api-keys/{id}`:
//! revoke a key (idempotent).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use domain::values::RevocationReason;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::KeyDetails;
use super::{ctx, details, optional_body};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::TenantKey;

/// `POST .../revoke`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyRequest {
    /// Why: at most 500 characters; line breaks and tabs are kept, other control
    /// characters are refused.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Revoke a key (idempotent). It stops at once on this node, and on every node as soon as
/// they hear of it.
#[utoipa::path(post, path = "/organizations/{org}/api-keys/{id}/revoke", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id")),
    request_body(content = RevokeKeyRequest, description = "optional: an empty body revokes without a reason"),
    responses((status = 200, body = KeyDetails), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["api-keys:revoke"])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    key: TenantKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RevokeKeyRequest = optional_body(&headers, &body)?;
    revoke(state, principal, key, headers, request.reason).await
}

/// Revoke a key (idempotent); the same as `POST .../revoke` without a reason.
#[utoipa::path(delete, path = "/organizations/{org}/api-keys/{id}", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyDetails), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["api-keys:revoke"])))]
pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    key: TenantKey,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    revoke(state, principal, key, headers, None).await
}

async fn revoke(
    state: AppState,
    principal: Principal,
    TenantKey { org_id, key_id: id }: TenantKey,
    headers: HeaderMap,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    // Refused before anything is loaded, as any other invalid field.
    let reason = RevocationReason::parse_optional(reason.as_deref())
        .map_err(ApiError::invalid)?
        .map(String::from);
    let written = state
        .keys
        .revoke(&ctx(&principal, &headers), org_id, id, reason)
        .await?;
    // In force on this node before the response returns.
    state.auth.refresh(id).await;
    state.read_your_writes(written.position).await;
    details(&state, org_id, id).await
}
