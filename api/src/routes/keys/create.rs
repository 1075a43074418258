//! `POST /organizations/{org}/api-keys`: create a key.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commands::keys::NewKey;
use domain::policy::Actor;
use domain::token::Environment;
use domain::values::{AllowedIps, RateLimit};
use serde::Deserialize;
use utoipa::ToSchema;

use super::fields::{parse_expiry, parse_ips, parse_name, parse_scopes};
use super::views::{CreatedKeyResponse, EnvironmentName};
use super::{created_answer, ctx, idempotent, learn_scopes};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{AppJson, Tenant, from_value};

/// `POST /organizations/{org}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1 to 100 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Omitted: every data scope. Only scopes the calling key holds may be granted.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::openapi::ScopeName>>)]
    pub scopes: Option<Vec<String>>,
    /// `live` (default) or `test`.
    #[serde(default)]
    #[schema(value_type = Option<EnvironmentName>)]
    pub environment: Option<String>,
    /// IPv4/IPv6 CIDRs or addresses; empty or omitted: anywhere.
    #[serde(default)]
    pub allowed_ips: Option<Vec<String>>,
    /// RFC 3339, in the future.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// 1 to 1,000,000; lower than the plan's to throttle this key.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_limit_per_minute: Option<u64>,
}

impl CreateKeyRequest {
    fn validate(self) -> Result<NewKey, ApiError> {
        let mut errors = Vec::new();
        let name = parse_name("name", &self.name, &mut errors);
        let scopes = match &self.scopes {
            Some(names) => parse_scopes("scopes", names, &mut errors).map(Some),
            None => Some(None),
        };
        let environment = match self.environment.as_deref() {
            None => Some(Environment::Live),
            Some(raw) => raw
                .parse::<Environment>()
                .map_err(|_| {
                    errors.push(FieldError::new(
                        "environment",
                        "must be \"live\" or \"test\"",
                    ))
                })
                .ok(),
        };
        let allowed_ips = match &self.allowed_ips {
            Some(entries) => parse_ips("allowed_ips", entries, &mut errors),
            None => Some(AllowedIps::any()),
        };
        let expires_at = match self.expires_at {
            Some(at) => parse_expiry(at, &mut errors).map(Some),
            None => Some(None),
        };
        let rate_limit = match self.rate_limit_per_minute {
            Some(n) => RateLimit::parse(n)
                .map_err(|e| errors.push(FieldError::new("rate_limit_per_minute", e.to_string())))
                .ok()
                .map(Some),
            None => Some(None),
        };
        match (
            name,
            scopes,
            environment,
            allowed_ips,
            expires_at,
            rate_limit,
        ) {
            (
                Some(name),
                Some(scopes),
                Some(environment),
                Some(allowed_ips),
                Some(expires_at),
                Some(rate_limit_per_minute),
            ) if errors.is_empty() => Ok(NewKey {
                name,
                scopes,
                environment,
                allowed_ips,
                expires_at,
                rate_limit_per_minute,
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// Create a key. The response holds its secret, shown once.
#[utoipa::path(post, path = "/organizations/{org}/api-keys", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"),
           ("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7E]{1,255}$", description = "1 to 255 visible ASCII characters: replays the first response to the same request; reused with another request it is a 422")),
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKeyResponse), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:create"])))]
pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    headers: HeaderMap,
    AppJson(body): AppJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let request = format!("POST /organizations/{org_id}/api-keys\n{body}");
    idempotent(&state, &principal, &headers, request, || async {
        let request = from_value::<CreateKeyRequest>(body.clone())?;
        learn_scopes(&state, org_id, request.scopes.as_deref()).await;
        let new = request.validate()?;
        let created = state
            .keys
            .create_key(
                &ctx(&principal, &headers),
                org_id,
                &Actor::key(&principal.key),
                new,
            )
            .await?;
        state.read_your_writes(created.written.position).await;
        created_answer(&created)
    })
    .await
}
