//! Locations: list and show. A location is created by naming it on an asset
//! (`"location": "Building A"`, see [`super::assets`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{ListRequest, Listing, PageQuery, PathId, col, get_one, list_page, query};
use crate::app::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Tenant;

/// A location.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Location {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A page of locations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LocationPage {
    pub items: Vec<Location>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const LOCATIONS: Listing<Location> = Listing {
    select: "SELECT id, org_id, name, created_at FROM locations",
    row: location,
    place: |l, _| (Some(&l.created_at), &l.id),
};

fn location(row: &AnyRow) -> Result<Location, ApiError> {
    Ok(Location {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
    })
}

/// List the organisation's locations, newest first.
#[utoipa::path(get, path = "/organizations/{org}/locations", tag = "locations",
    params(("org" = String, Path, description = "organisation id"), PageQuery),
    responses((status = 200, body = LocationPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["locations:read"])))]
pub async fn list_locations(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<LocationPage>, ApiError> {
    let q = query(q)?;
    let request = ListRequest::new(q.limit.as_deref(), q.cursor.as_deref());
    let page = list_page(&state.read_db, &LOCATIONS, org_id, request).await?;
    Ok(Json(LocationPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One location.
#[utoipa::path(get, path = "/organizations/{org}/locations/{id}", tag = "locations",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "location id")),
    responses((status = 200, body = Location), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = ["locations:read"])))]
pub async fn get_location(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
) -> Result<Json<Location>, ApiError> {
    get_one(&state.read_db, &LOCATIONS, org_id, &id)
        .await
        .map(Json)
}
