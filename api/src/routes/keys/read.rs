//! `GET /organizations/{org}/api-keys` (the list) and `GET .../api-keys/{id}` (a key's
//! details).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::apikey::KeyStatus;
use domain::ids::{KeyId, OrgId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{KeyDetails, KeyPage, KeyStatusName, KeySummary};
use crate::app::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Tenant, TenantKey};
use crate::routes::etag;

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

/// List the organisation's keys, newest first.
#[utoipa::path(get, path = "/organizations/{org}/api-keys", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"), ListQuery),
    responses((status = 200, body = KeyPage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn list_keys(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KeyPage>, ApiError> {
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
    TenantKey { org_id, key_id }: TenantKey,
) -> Result<Response, ApiError> {
    state.read_your_writes(state.last_written()).await;
    details(&state, org_id, key_id).await
}

/// A key's details as `get_key` answers them (also the answer to a change or a revoke),
/// as the read model has them now.
pub(super) async fn details(
    state: &AppState,
    org_id: OrgId,
    id: KeyId,
) -> Result<Response, ApiError> {
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
