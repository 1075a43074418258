//! The management API: create, list, show, change, revoke and rotate keys.
//!
//! Scopes: `api-keys:read` (list, show), `api-keys:create` (create, rotate),
//! `api-keys:write` (change), `api-keys:revoke` (revoke). A key cannot grant a scope it
//! does not hold itself, neither by creating, changing nor rotating a key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::keys::{CommandContext, CreatedKey, KeyPatch, NewKey};
use domain::apikey::KeyStatus;
use domain::ids::KeyId;
use domain::policy::Actor;
use domain::scope::{Scope, Scopes};
use domain::token::Environment;
use domain::values::{AllowedIps, Expiry, GracePeriod, KeyName, RateLimit, RevocationReason};
use projections::keys::KeyRow;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{AppJson, from_value, parse_json};
use crate::idempotency::{self, Begin};
use crate::routes::{etag, if_match};

/// The management routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
}

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

/// `POST .../rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working: 0 to 2,592,000 (30 days); default 3600.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_period_seconds: Option<i64>,
}

/// Distinguishes a field set to null from a missing one.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `?status=&limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `active`, `revoked` or `expired`.
    #[param(value_type = Option<KeyStatusName>)]
    pub status: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A key's status, as lists, details and the `status` filter name it (documentation only).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyStatusName {
    Active,
    Revoked,
    Expired,
}

/// `live` or `test` (documentation only).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EnvironmentName {
    Live,
    Test,
}

/// A new key, with its secret: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyResponse {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub prefix: String,
    /// The full key. It is not stored and cannot be shown again.
    pub secret: String,
    pub scopes: Vec<String>,
    pub environment: String,
    pub allowed_ips: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<u32>,
    pub rotated_from: Option<String>,
    pub version: u64,
}

/// One key in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub status: String,
    pub environment: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub total_calls: i64,
    /// Successful (2xx/3xx) over all calls, 0 to 1; null before the first call.
    pub success_rate: Option<f64>,
    /// The key's hash-chain check: `intact`, `broken` (its stored history was altered:
    /// it cannot authenticate nor be changed) or `unverifiable` (written before the
    /// chain existed).
    pub integrity: String,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPage {
    pub items: Vec<KeySummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Usage of one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    pub total_calls: i64,
    pub successful_calls: i64,
    pub error_calls: i64,
    pub rate_limited_calls: i64,
    pub success_rate: Option<f64>,
    pub last_used_at: Option<String>,
    /// Per method and route template, busiest first.
    pub by_route: Vec<crate::routes::usage::RouteUsageView>,
}

/// A key's details (never its secret or hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDetails {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub prefix: String,
    pub status: String,
    pub environment: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub created_at: String,
    pub created_by: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
    pub rate_limit_per_minute: Option<i64>,
    pub last_used_at: Option<String>,
    pub total_calls: i64,
    pub success_rate: Option<f64>,
    pub usage: UsageSummary,
    /// The stream version, also sent as the `ETag`; send it back in `If-Match`.
    pub version: u64,
    /// `intact`, `broken` or `unverifiable`, as in the list.
    pub integrity: String,
    /// The stream version where the first break showed (`broken` only).
    pub integrity_version: Option<i64>,
}

impl From<KeyRow> for KeySummary {
    fn from(r: KeyRow) -> Self {
        KeySummary {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            status: r.status,
            environment: r.environment,
            scopes: r.scopes,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.usage.last_used_at,
            total_calls: r.usage.total_calls,
            success_rate: r.usage.success_rate,
            integrity: r.integrity,
        }
    }
}

impl From<KeyRow> for KeyDetails {
    fn from(r: KeyRow) -> Self {
        KeyDetails {
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            prefix: r.prefix,
            status: r.status,
            environment: r.environment,
            scopes: r.scopes,
            allowed_ips: r.allowed_ips,
            created_at: r.created_at,
            created_by: r.created_by,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            revoked_by: r.revoked_by,
            rotated_from: r.rotated_from,
            rotated_to: r.rotated_to,
            rate_limit_per_minute: r.rate_limit_per_minute,
            last_used_at: r.usage.last_used_at.clone(),
            total_calls: r.usage.total_calls,
            success_rate: r.usage.success_rate,
            usage: UsageSummary {
                total_calls: r.usage.total_calls,
                successful_calls: r.usage.successful_calls,
                error_calls: r.usage.error_calls,
                rate_limited_calls: r.usage.rate_limited_calls,
                success_rate: r.usage.success_rate,
                last_used_at: r.usage.last_used_at,
                by_route: Vec::new(),
            },
            version: u64::try_from(r.version).unwrap_or(0),
            integrity: r.integrity,
            integrity_version: r.integrity_version,
        }
    }
}

fn created_response(created: &CreatedKey) -> CreatedKeyResponse {
    let key = &created.key;
    CreatedKeyResponse {
        id: key.id.to_string(),
        org_id: key.org_id.to_string(),
        name: key.name.as_str().to_owned(),
        prefix: key.prefix.clone(),
        secret: created.token.expose_secret().to_owned(),
        scopes: key.scopes.names().iter().map(|s| (*s).to_owned()).collect(),
        environment: key.environment.as_str().to_owned(),
        allowed_ips: key.allowed_ips.to_strings(),
        status: key.status(Utc::now()).to_string(),
        created_at: key.created_at,
        expires_at: key.expires_at,
        rate_limit_per_minute: key.rate_limit_per_minute.map(RateLimit::per_minute),
        rotated_from: key.rotated_from.map(|k| k.to_string()),
        version: key.version,
    }
}

fn ctx(principal: &Principal, headers: &HeaderMap) -> CommandContext {
    CommandContext {
        actor: principal.actor(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        correlation_id: None,
    }
}

fn parse_scopes(field: &str, names: &[String], errors: &mut Vec<FieldError>) -> Option<Scopes> {
    let mut scopes = Scopes::new();
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        match Scope::parse(name) {
            Ok(s) => {
                scopes.insert(s);
            }
            Err(e) => {
                ok = false;
                errors.push(FieldError::new(format!("{field}[{i}]"), e.to_string()));
            }
        }
    }
    ok.then_some(scopes)
}

fn parse_ips(field: &str, entries: &[String], errors: &mut Vec<FieldError>) -> Option<AllowedIps> {
    let mut ok = true;
    for (i, entry) in entries.iter().enumerate() {
        if let Err(e) = domain::values::Cidr::parse(entry) {
            ok = false;
            errors.push(FieldError::new(format!("{field}[{i}]"), e.to_string()));
        }
    }
    if !ok {
        return None;
    }
    match AllowedIps::parse(entries.iter()) {
        Ok(ips) => Some(ips),
        Err(e) => {
            errors.push(FieldError::new(field, e.to_string()));
            None
        }
    }
}

fn parse_name(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<KeyName> {
    KeyName::parse(raw)
        .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
        .ok()
}

fn parse_expiry(at: DateTime<Utc>, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    Expiry::parse(at, Utc::now())
        .map(Expiry::at)
        .map_err(|e| errors.push(e.into()))
        .ok()
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

fn key_id(raw: &str) -> Result<KeyId, ApiError> {
    raw.parse::<KeyId>().map_err(|_| ApiError::NotFound)
}

/// Parses an optional JSON body (an empty body is the default request).
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json(body)
}

/// Runs `work` under the request's `Idempotency-Key`, if it has one.
async fn idempotent<F, Fut>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: String,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, HeaderMap, serde_json::Value), ApiError>>,
{
    let Some(idem_key) = idempotency::header_key(headers)? else {
        let (status, extra, body) = work().await?;
        return Ok((status, extra, Json(body)).into_response());
    };
    let token = crate::auth::bearer_from_headers(headers).unwrap_or_default();
    match idempotency::begin(
        &state.read_db,
        &principal.actor(),
        token,
        &idem_key,
        request.as_bytes(),
    )
    .await?
    {
        Begin::Replay { status, body } => {
            let mut res = (status, Json(body)).into_response();
            if !status.is_success() {
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/problem+json"),
                );
            }
            res.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            Ok(res)
        }
        Begin::New(guard) => match work().await {
            Ok((status, extra, body)) => {
                guard.complete(status, &body).await;
                Ok((status, extra, Json(body)).into_response())
            }
            Err(e) => {
                let (status, _) = e.status_and_code();
                if status.is_server_error() {
                    guard.abandon().await;
                } else {
                    let problem = serde_json::to_value(e.problem()).unwrap_or_default();
                    guard.complete(status, &problem).await;
                }
                Err(e)
            }
        },
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
    Path(org): Path<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let org_id = principal.require_org(&org)?;
    let request = format!("POST /organizations/{org}/api-keys\n{body}");
    idempotent(&state, &principal, &headers, request, || async {
        let new = from_value::<CreateKeyRequest>(body.clone())?.validate()?;
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
        let mut extra = HeaderMap::new();
        let (k, v) = etag(created.key.version);
        extra.insert(k, v);
        if let Ok(loc) = header::HeaderValue::from_str(&format!(
            "/organizations/{org}/api-keys/{}",
            created.key.id
        )) {
            extra.insert(header::LOCATION, loc);
        }
        let body = serde_json::to_value(created_response(&created))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((StatusCode::CREATED, extra, body))
    })
    .await
}

/// List the organisation's keys, newest first.
#[utoipa::path(get, path = "/organizations/{org}/api-keys", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ListQuery),
    responses((status = 200, body = KeyPage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyPage>, ApiError> {
    let org_id = principal.require_org(&org)?;
    let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    // Present but empty is not a value (the document says enum / integer): 422.
    let status =
        match query.status.as_deref() {
            None => None,
            Some(raw) => Some(raw.parse::<KeyStatus>().map_err(|_| {
                ApiError::field("status", "must be one of active, revoked, expired")
            })?),
        };
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(ApiError::field("limit", "must be an integer from 1 to 100")),
        },
    };
    state.read_your_writes(state.last_written()).await;
    let page = state
        .key_queries
        .list(
            org_id,
            status,
            limit,
            query.cursor.as_deref().filter(|c| !c.is_empty()),
            Utc::now(),
        )
        .await?;
    Ok(Json(KeyPage {
        items: page.items.into_iter().map(KeySummary::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A key's details, with its version as `ETag`.
#[utoipa::path(get, path = "/organizations/{org}/api-keys/{id}", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyDetails), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let org_id = principal.require_org(&org)?;
    let id = key_id(&id)?;
    state.read_your_writes(state.last_written()).await;
    let row = state
        .key_queries
        .get(org_id, id, Utc::now())
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut details = KeyDetails::from(row);
    details.usage.by_route = projections::UsageQueries::new(state.read_db.clone())
        .by_route(org_id, id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(([etag(details.version)], Json(details)).into_response())
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
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    AppJson(body): AppJson<UpdateKeyRequest>,
) -> Result<Response, ApiError> {
    let org_id = principal.require_org(&org)?;
    let id = key_id(&id)?;
    let expected = if_match(&headers)?;
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
    get_key(State(state), principal, Path((org, id.to_string()))).await
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
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RevokeKeyRequest = optional_body(&headers, &body)?;
    revoke(state, principal, org, id, headers, request.reason).await
}

/// Revoke a key (idempotent); the same as `POST .../revoke` without a reason.
#[utoipa::path(delete, path = "/organizations/{org}/api-keys/{id}", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyDetails), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["api-keys:revoke"])))]
pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    revoke(state, principal, org, id, headers, None).await
}

async fn revoke(
    state: AppState,
    principal: Principal,
    org: String,
    id: String,
    headers: HeaderMap,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    let org_id = principal.require_org(&org)?;
    let id = key_id(&id)?;
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
    get_key(State(state), principal, Path((org, id.to_string()))).await
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
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org_id = principal.require_org(&org)?;
    let id = key_id(&id)?;
    let request: RotateKeyRequest = optional_body(&headers, &body)?;
    let grace = match request.grace_period_seconds {
        None => GracePeriod::DEFAULT,
        Some(seconds) => GracePeriod::from_seconds(seconds).map_err(ApiError::invalid)?,
    };
    let canonical = format!(
        "POST /organizations/{org}/api-keys/{id}/rotate\n{}",
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
        let mut extra = HeaderMap::new();
        let (k, v) = etag(created.key.version);
        extra.insert(k, v);
        if let Ok(loc) = header::HeaderValue::from_str(&format!(
            "/organizations/{org}/api-keys/{}",
            created.key.id
        )) {
            extra.insert(header::LOCATION, loc);
        }
        let body = serde_json::to_value(created_response(&created))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((StatusCode::CREATED, extra, body))
    })
    .await
}
