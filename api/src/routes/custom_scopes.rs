//! An organisation's custom scopes (DESIGN section 11): `POST`, `GET`
//! `/organizations/{org}/scopes` and `DELETE .../scopes/{name}`. Declaring and deleting
//! are events in the organisation's stream; keys may then hold the scope like a built-in
//! one (same escalation rules), and verify and the gateway's rules check it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::ids::OrgId;
use domain::organization::{self, MAX_CUSTOM_SCOPES};
use domain::scope::{Scope, check_custom_name};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, Tenant};
use crate::routes::keys::ctx;

/// The custom-scope routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(declare_scope, list_custom_scopes))
        .routes(routes!(delete_scope))
}

/// `POST /organizations/{org}/scopes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareScopeRequest {
    /// `resource:action`, lowercase letters, digits and `-` (e.g. `billing:read`), at most
    /// 64 characters, not a built-in scope's name.
    #[schema(
        min_length = 3,
        max_length = 64,
        pattern = "^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*$"
    )]
    pub name: String,
    /// What it allows: 1 to 200 characters, one line.
    #[schema(min_length = 1, max_length = 200)]
    pub description: String,
}

/// A custom scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomScope {
    pub name: String,
    pub description: String,
}

/// The organisation's custom scopes, by name (at most 100: one page).
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomScopePage {
    pub items: Vec<CustomScope>,
    /// Always null: the list is never longer than one page.
    pub next_cursor: Option<String>,
}

async fn org_state(state: &AppState, org: OrgId) -> Result<organization::State, ApiError> {
    state.keys.load_org(org).await?.ok_or(ApiError::NotFound)
}

/// Declare a custom scope that keys of the organisation may then hold.
#[utoipa::path(post, path = "/organizations/{org}/scopes", tag = "verify",
    params(("org" = String, Path, description = "organisation id")),
    request_body = DeclareScopeRequest,
    responses((status = 201, body = CustomScope), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:write"])))]
pub async fn declare_scope(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    headers: HeaderMap,
    AppJson(body): AppJson<DeclareScopeRequest>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if let Ok(builtin) = Scope::parse(name) {
        return Err(ApiError::field(
            "name",
            format!("{builtin} is a built-in scope"),
        ));
    }
    check_custom_name(name).map_err(|e| ApiError::field("name", e.to_string()))?;
    // The name is interned once declared: check the organisation's room first, so a
    // refused request never adds a name to the process.
    let org = org_state(&state, org_id).await?;
    if org.custom_scopes.len() >= MAX_CUSTOM_SCOPES && Scope::lookup(name).is_none() {
        return Err(organization::Error::TooManyScopes.into());
    }
    let scope = Scope::declare(name).map_err(|e| ApiError::field("name", e.to_string()))?;
    let written = state
        .keys
        .declare_scope(&ctx(&principal, &headers), org_id, scope, body.description)
        .await?;
    state.read_your_writes(written.position).await;
    let org = org_state(&state, org_id).await?;
    let description = org.custom_scopes.get(&scope).cloned().unwrap_or_default();
    let mut res = (
        StatusCode::CREATED,
        Json(CustomScope {
            name: scope.as_str().to_owned(),
            description,
        }),
    )
        .into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/organizations/{org_id}/scopes/{scope}")) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// The organisation's custom scopes (the built-in ones are `GET /scopes`).
#[utoipa::path(get, path = "/organizations/{org}/scopes", tag = "verify",
    params(("org" = String, Path, description = "organisation id")),
    responses((status = 200, body = CustomScopePage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn list_custom_scopes(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
) -> Result<Json<CustomScopePage>, ApiError> {
    let org = org_state(&state, org_id).await?;
    Ok(Json(CustomScopePage {
        items: org
            .custom_scopes
            .into_iter()
            .map(|(scope, description)| CustomScope {
                name: scope.as_str().to_owned(),
                description,
            })
            .collect(),
        next_cursor: None,
    }))
}

/// `{name}` of the path.
#[derive(Debug, Deserialize)]
pub struct ScopePath {
    pub name: String,
}

/// Delete a custom scope: no key may be given it from now on (keys that hold it keep the
/// name).
#[utoipa::path(delete, path = "/organizations/{org}/scopes/{name}", tag = "verify",
    params(("org" = String, Path, description = "organisation id"), ("name" = String, Path, description = "the custom scope")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = ["api-keys:write"])))]
pub async fn delete_scope(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    Path(ScopePath { name }): Path<ScopePath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    if Scope::lookup(&name).is_none() {
        // Perhaps declared on another node: loading the organisation makes it known.
        org_state(&state, org_id).await?;
    }
    let scope = Scope::lookup(&name)
        .filter(Scope::is_custom)
        .ok_or(ApiError::NotFound)?;
    match state
        .keys
        .delete_scope(&ctx(&principal, &headers), org_id, scope)
        .await
    {
        Ok(written) => {
            state.read_your_writes(written.position).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(commands::CommandError::Org(organization::Error::ScopeNotDeclared { .. })) => {
            Err(ApiError::NotFound)
        }
        Err(e) => Err(e.into()),
    }
}
