//! `POST /organizations/{org}/api-keys/{id}/rotate`: a new key with the old one's name,
//! scopes, IPs and limits; the old key works for the grace period.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use domain::policy::Actor;
use domain::values::GracePeriod;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::CreatedKeyResponse;
use super::{created_answer, ctx, idempotent, optional_body};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::TenantKey;

/// `POST .../rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working: 0 to 2,592,000 (30 days); default 3600.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_period_seconds: Option<i64>,
}

/// Rotate a key: a new key with the same name, scopes, IPs and limits, and its secret;
/// the old key keeps working for the grace period, then stops.
#[utoipa::path(post, path = "/organizations/{org}/api-keys/{id}/rotate", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id"),
           ("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7E]{1,255}$", description = "1 to 255 visible ASCII characters: replays the first response to the same request; reused with another request it is a 422")),
    request_body(content = RotateKeyRequest, description = "optional: an empty body keeps the default grace period"),
    responses((status = 201, body = CreatedKeyResponse), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:create"])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    TenantKey { org_id, key_id: id }: TenantKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RotateKeyRequest = optional_body(&headers, &body)?;
    let grace = match request.grace_period_seconds {
        None => GracePeriod::DEFAULT,
        Some(seconds) => GracePeriod::from_seconds(seconds).map_err(ApiError::invalid)?,
    };
    let canonical = format!(
        "POST /organizations/{org_id}/api-keys/{id}/rotate\n{}",
        grace.seconds()
    );
    idempotent(&state, &principal, &headers, canonical, || async {
        // Rotation hands out a new secret with the old key's scopes: the handler refuses
        // (key_not_subordinate) unless the caller holds them all.
        let created = state
            .keys
            .rotate(
                &ctx(&principal, &headers),
                org_id,
                id,
                &Actor::key(&principal.key),
                grace.as_delta(),
            )
            .await?;
        state.auth.refresh(id).await;
        state.read_your_writes(created.written.position).await;
        created_answer(&created)
    })
    .await
}
