//! `PATCH /organizations/{org}/api-keys/{id}`: change a key's name, scopes, allowed IPs
//! or expiry, guarded by `If-Match`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commands::keys::KeyPatch;
use domain::policy::Actor;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::fields::{parse_expiry, parse_ips, parse_name, parse_scopes};
use super::views::KeyDetails;
use super::{ctx, details, learn_scopes};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, IfMatch, TenantKey};

/// `PATCH /organizations/{org}/api-keys/{id}`: only the fields present change;
/// `"expires_at": null` removes the expiry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    /// 1 to 100 characters (trimmed), no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// The new scope set (replaces the old one).
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::openapi::ScopeName>>)]
    pub scopes: Option<Vec<String>>,
    /// The new allowlist (replaces the old one); `[]` allows anywhere.
    #[serde(default)]
    pub allowed_ips: Option<Vec<String>>,
    /// A future time, or null for no expiry.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Distinguishes a field set to null from a missing one.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl UpdateKeyRequest {
    fn validate(self) -> Result<KeyPatch, ApiError> {
        let mut errors = Vec::new();
        let name = self
            .name
            .as_deref()
            .map(|n| parse_name("name", n, &mut errors));
        let scopes = self
            .scopes
            .as_deref()
            .map(|s| parse_scopes("scopes", s, &mut errors));
        let allowed_ips = self
            .allowed_ips
            .as_deref()
            .map(|s| parse_ips("allowed_ips", s, &mut errors));
        let expires_at = self
            .expires_at
            .map(|at| at.and_then(|at| parse_expiry(at, &mut errors)));
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(KeyPatch {
            name: name.flatten(),
            scopes: scopes.flatten(),
            allowed_ips: allowed_ips.flatten(),
            expires_at,
        })
    }
}

/// Change a key's name, scopes, allowed IPs or expiry. `If-Match` guards against lost
/// updates (412).
#[utoipa::path(patch, path = "/organizations/{org}/api-keys/{id}", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id"),
           ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#, description = "the ETag of the version being changed (`\"3\"`); another version is a 412")),
    request_body = UpdateKeyRequest,
    responses((status = 200, body = KeyDetails), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:write"])))]
pub async fn update_key(
    State(state): State<AppState>,
    principal: Principal,
    TenantKey { org_id, key_id: id }: TenantKey,
    IfMatch(expected): IfMatch,
    headers: HeaderMap,
    AppJson(body): AppJson<UpdateKeyRequest>,
) -> Result<Response, ApiError> {
    learn_scopes(&state, org_id, body.scopes.as_deref()).await;
    let patch = body.validate()?;
    let written = state
        .keys
        .update_key(
            &ctx(&principal, &headers),
            org_id,
            id,
            &Actor::key(&principal.key),
            patch,
            expected,
        )
        .await?;
    state.auth.refresh(id).await;
    state.read_your_writes(written.position).await;
    details(&state, org_id, id).await
}
