//! Assets: list (newest first, or changed since a time), create, show and change.
//!
//! An asset created with `"location": "Building A"` finds the organisation's location of
//! that exact name, or creates it, in the same transaction as the asset. An asset may
//! instead name an existing location by `location_id`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};

use super::get_endpoint;
use super::{
    Column, ListRequest, Listing, Order, PathId, body_id, col, created, db_error, exists, get_one,
    list_page, new_id, path_id, present, query, since, text_field, timestamp,
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
    /// RFC 3339 UTC: when it was created or last changed.
    pub updated_at: String,
    /// The id of the API key that created it.
    pub created_by: String,
}

/// A page of assets, newest first (or oldest change first with `updated_since`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetPage {
    pub items: Vec<Asset>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `PATCH /organizations/{org}/assets/{id}`: only the fields present change (at least
/// one is required); `"kind": null` and `"location_id": null` remove them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAssetRequest {
    /// 1 to 200 characters (trimmed), no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// 1 to 100 characters, no control characters; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    pub kind: Option<Option<String>>,
    /// An existing location of the same organisation; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub location_id: Option<Option<String>>,
}

/// `?updated_since=&limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AssetListQuery {
    /// RFC 3339. Only the assets created or changed strictly after this time, oldest change
    /// first (`updated_at`, then `id`, ascending): pass the `updated_at` of the last asset
    /// you received to get each later change once. Changes of the last second are left for
    /// the next poll.
    #[param(value_type = Option<String>, format = DateTime)]
    pub updated_since: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

const COLUMNS: &str = "id, org_id, name, kind, location_id, created_at, updated_at, created_by";

const ASSETS: Listing<Asset> = Listing {
    select: "SELECT id, org_id, name, kind, location_id, created_at, updated_at, created_by \
             FROM assets",
    row: asset,
    place: |a, column| match column {
        Column::Updated => (Some(&a.updated_at), &a.id),
        _ => (Some(&a.created_at), &a.id),
    },
};

fn asset(row: &AnyRow) -> Result<Asset, ApiError> {
    Ok(Asset {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        location_id: col(row, "location_id")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        created_by: col(row, "created_by")?,
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
        updated_at: now.clone(),
        created_by: principal.actor(),
    };
    // The location (if named) and the asset are written together or not at all (on
    // SQLite the transaction takes the write lock up front: see `begin_write`).
    let db = &state.read_db;
    let mut tx = db.begin_write().await.map_err(db_error)?;
    asset.location_id = match place {
        Place::Nowhere => None,
        Place::Existing(id) => {
            if !exists(&mut *tx, "locations", &asset.org_id, &id).await? {
                return Err(no_location());
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
        "INSERT INTO assets (id, org_id, name, kind, location_id, created_at, updated_at, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&asset.id)
    .bind(&asset.org_id)
    .bind(&asset.name)
    .bind(&asset.kind)
    .bind(&asset.location_id)
    .bind(&asset.created_at)
    .bind(&asset.updated_at)
    .bind(&asset.created_by)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let path = format!("/organizations/{org_id}/assets/{}", asset.id);
    Ok(created(path, &asset))
}

fn no_location() -> ApiError {
    ApiError::field(
        "location_id",
        "no location with this id in this organisation",
    )
}

/// List the organisation's assets: newest first, or with `updated_since` those changed
/// after it, oldest change first.
#[utoipa::path(get, path = "/organizations/{org}/assets", tag = "assets",
    params(("org" = String, Path, description = "organisation id"), AssetListQuery),
    responses((status = 200, body = AssetPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["assets:read"])))]
pub async fn list_assets(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    q: Result<Query<AssetListQuery>, QueryRejection>,
) -> Result<Json<AssetPage>, ApiError> {
    let q = query(q)?;
    let mut request = ListRequest::new(q.limit.as_deref(), q.cursor.as_deref());
    if let Some(raw) = q.updated_since.as_deref() {
        let after = since("updated_since", raw)?;
        request.order = Order::ChangedAfter(Column::Updated, after);
    }
    let page = list_page(&state.read_db, &ASSETS, org_id, request).await?;
    Ok(Json(AssetPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

get_endpoint!(
    /// One asset.
    get_asset,
    "/organizations/{org}/assets/{id}",
    "assets",
    "asset id",
    "assets:read",
    ASSETS,
    Asset
);

/// Change an asset's name, kind or location.
#[utoipa::path(patch, path = "/organizations/{org}/assets/{id}", tag = "assets",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "asset id")),
    request_body = UpdateAssetRequest,
    responses((status = 200, body = Asset), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["assets:write"])))]
pub async fn update_asset(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
    AppJson(body): AppJson<UpdateAssetRequest>,
) -> Result<Json<Asset>, ApiError> {
    let id = path_id(&id)?;
    let org_id = org_id.to_string();
    if body.name.is_none() && body.kind.is_none() && body.location_id.is_none() {
        return Err(ApiError::field(
            "body",
            "give at least one of name, kind, location_id",
        ));
    }
    let mut errors = Vec::new();
    let name = body
        .name
        .as_deref()
        .and_then(|n| text_field("name", n, MAX_NAME_CHARS, &mut errors));
    let kind = body.kind.as_ref().map(|k| {
        k.as_deref()
            .and_then(|k| text_field("kind", k, MAX_KIND_CHARS, &mut errors))
    });
    let location_id = match &body.location_id {
        Some(Some(raw)) => match body_id("location_id", raw) {
            Ok(id) => Some(Some(id)),
            Err(ApiError::Validation(mut e)) => {
                errors.append(&mut e);
                None
            }
            Err(e) => return Err(e),
        },
        Some(None) => Some(None),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let db = state.read_db.pool();
    if let Some(Some(location)) = &location_id
        && !exists(db, "locations", &org_id, location).await?
    {
        return Err(no_location());
    }
    let sql = format!(
        "UPDATE assets SET \
           name = COALESCE($3, name), \
           kind = CASE WHEN $4 = 1 THEN $5 ELSE kind END, \
           location_id = CASE WHEN $6 = 1 THEN $7 ELSE location_id END, \
           updated_at = $8 \
         WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .bind(name)
        .bind(i64::from(kind.is_some()))
        .bind(kind.flatten())
        .bind(i64::from(location_id.is_some()))
        .bind(location_id.flatten())
        .bind(timestamp(Utc::now()))
        .fetch_optional(db)
        .await
        .map_err(db_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(asset(&row)?))
}
