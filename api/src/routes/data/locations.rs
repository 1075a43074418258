//! Locations: list and show. A location is created by naming it on an asset
//! (`"location": "Building A"`, see [`super::assets`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{ListRequest, Listing, PageQuery, PathId, col, get_one, list_page, query};
use super::{get_endpoint, list_endpoint};
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

list_endpoint!(
    /// List the organisation's locations, newest first.
    list_locations,
    "/organizations/{org}/locations",
    "locations",
    "locations:read",
    LOCATIONS,
    LocationPage
);

get_endpoint!(
    /// One location.
    get_location,
    "/organizations/{org}/locations/{id}",
    "locations",
    "location id",
    "locations:read",
    LOCATIONS,
    Location
);
