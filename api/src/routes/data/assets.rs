//! Assets (list, create) and locations (list).
//!
//! Locations have no endpoint of their own in the contract: an asset created with
//! `"location": "Building A"` finds the organisation's location of that exact name, or
//! creates it, in the same transaction as the asset. An asset may instead name an
//! existing location by `location_id`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{
    Listing, PageQuery, body_id, col, db_error, list_page, new_id, query, text_field, timestamp,
};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{AppJson, Tenant};

/// The longest asset or location name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest asset kind, in characters.
pub const MAX_KIND_CHARS: usize = 100;

/// `POST /organizations/{org}/assets`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssetRequest {
    /// 1 to 200 characters as sent, not blank (stored trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// What it is (`"HVAC"`, `"Pump"`): 1 to 100 characters, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub kind: Option<String>,
    /// An existing location of the same organisation.
    #[serde(default)]
    pub location_id: Option<String>,
    /// A location name (1 to 200 characters): the organisation's location of that exact
    /// name, created if there is none. Not together with `location_id`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub location: Option<String>,
}

/// An asset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Asset {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub kind: Option<String>,
    pub location_id: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The id of the API key that created it.
    pub created_by: String,
}

/// A page of assets, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetPage {
    pub items: Vec<Asset>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

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

const SELECT_ASSETS: &str =
    "SELECT id, org_id, name, kind, location_id, created_at, created_by FROM assets";
const SELECT_LOCATIONS: &str = "SELECT id, org_id, name, created_at FROM locations";

const ASSETS: Listing<Asset> = Listing {
    select: SELECT_ASSETS,
    row: asset,
    place: |a| (&a.created_at, &a.id),
};

const LOCATIONS: Listing<Location> = Listing {
    select: SELECT_LOCATIONS,
    row: location,
    place: |l| (&l.created_at, &l.id),
};

fn asset(row: &AnyRow) -> Result<Asset, ApiError> {
    Ok(Asset {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        location_id: col(row, "location_id")?,
        created_at: col(row, "created_at")?,
        created_by: col(row, "created_by")?,
    })
}

fn location(row: &AnyRow) -> Result<Location, ApiError> {
    Ok(Location {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
    })
}

/// Where a new asset is.
enum Place {
    Nowhere,
    Existing(String),
    Named(String),
}

impl CreateAssetRequest {
    fn validate(&self) -> Result<(String, Option<String>, Place), ApiError> {
        let mut errors: Vec<FieldError> = Vec::new();
        let name = text_field("name", &self.name, MAX_NAME_CHARS, &mut errors);
        let kind = match &self.kind {
            Some(k) => text_field("kind", k, MAX_KIND_CHARS, &mut errors),
            None => None,
        };
        let place = match (&self.location_id, &self.location) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "location",
                    "give either location or location_id, not both",
                ));
                Place::Nowhere
            }
            (Some(id), None) => match body_id("location_id", id) {
                Ok(id) => Place::Existing(id),
                Err(ApiError::Validation(mut e)) => {
                    errors.append(&mut e);
                    Place::Nowhere
                }
                Err(e) => return Err(e),
            },
            (None, Some(name)) => text_field("location", name, MAX_NAME_CHARS, &mut errors)
                .map_or(Place::Nowhere, Place::Named),
            (None, None) => Place::Nowhere,
        };
        match name {
            Some(name) if errors.is_empty() => Ok((name, kind, place)),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// Add an asset, optionally at a location (by id, or by name: found or created).
#[utoipa::path(post, path = "/organizations/{org}/assets", tag = "assets",
    params(("org" = String, Path, description = "organisation id")),
    request_body = CreateAssetRequest,
    responses((status = 201, body = Asset), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["assets:write"])))]
pub async fn create_asset(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    AppJson(body): AppJson<CreateAssetRequest>,
) -> Result<Response, ApiError> {
    let org_id = org_id.to_string();
    let (name, kind, place) = body.validate()?;
    let now = timestamp(Utc::now());
    let mut asset = Asset {
        id: new_id(),
        org_id: org_id.clone(),
        name,
        kind,
        location_id: None,
        created_at: now.clone(),
        created_by: principal.actor(),
    };
    // The location (if named) and the asset are written together or not at all (on
    // SQLite the transaction takes the write lock up front: see `begin_write`).
    let db = &state.read_db;
    let mut tx = db.begin_write().await.map_err(db_error)?;
    asset.location_id = match place {
        Place::Nowhere => None,
        Place::Existing(id) => {
            // Another organisation's location is as unknown as a missing one.
            let found = sqlx::query("SELECT id FROM locations WHERE org_id = $1 AND id = $2")
                .bind(&asset.org_id)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if found.is_none() {
                return Err(ApiError::field(
                    "location_id",
                    "no location with this id in this organisation",
                ));
            }
            Some(id)
        }
        Place::Named(name) => {
            sqlx::query(
                "INSERT INTO locations (id, org_id, name, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, name) DO NOTHING",
            )
            .bind(new_id())
            .bind(&asset.org_id)
            .bind(&name)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            let row = sqlx::query("SELECT id FROM locations WHERE org_id = $1 AND name = $2")
                .bind(&asset.org_id)
                .bind(&name)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            Some(col(&row, "id")?)
        }
    };
    sqlx::query(
        "INSERT INTO assets (id, org_id, name, kind, location_id, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&asset.id)
    .bind(&asset.org_id)
    .bind(&asset.name)
    .bind(&asset.kind)
    .bind(&asset.location_id)
    .bind(&asset.created_at)
    .bind(&asset.created_by)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let mut res = (StatusCode::CREATED, Json(&asset)).into_response();
    if let Ok(loc) =
        axum::http::HeaderValue::from_str(&format!("/organizations/{org_id}/assets/{}", asset.id))
    {
        res.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(res)
}

/// List the organisation's assets, newest first.
#[utoipa::path(get, path = "/organizations/{org}/assets", tag = "assets",
    params(("org" = String, Path, description = "organisation id"), PageQuery),
    responses((status = 200, body = AssetPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["assets:read"])))]
pub async fn list_assets(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<AssetPage>, ApiError> {
    let q = query(q)?;
    let at = (q.limit.as_deref(), q.cursor.as_deref());
    let page = list_page(&state.read_db, &ASSETS, org_id, None, at).await?;
    Ok(Json(AssetPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
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
    let at = (q.limit.as_deref(), q.cursor.as_deref());
    let page = list_page(&state.read_db, &LOCATIONS, org_id, None, at).await?;
    Ok(Json(LocationPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
