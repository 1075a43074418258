//! IoT devices (each on an asset of the organisation) and their sensor readings.
//!
//! Read with `iot:read`; devices are registered and readings ingested with `assets:write`:
//! a device and its readings are facts about an asset, written by whatever integration
//! maintains the assets (a BMS or SCADA gateway), so no further scope is needed.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{
    ListRequest, Listing, PageQuery, PathId, col, created, db_error, exists, get_child, get_one,
    list_page, new_id, parent, query, ref_id, text_field, timestamp,
};
use super::{get_endpoint, list_endpoint};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{AppJson, Tenant};

/// The longest device name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest device kind, metric or unit, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// `POST /organizations/{org}/iot-devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRequest {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The asset it is installed on (of the same organisation).
    pub asset_id: String,
    /// What it is (`"temperature sensor"`): 1 to 100 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub kind: Option<String>,
}

/// An IoT device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub org_id: String,
    pub asset_id: String,
    pub name: String,
    pub kind: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The id of the API key that registered it.
    pub created_by: String,
}

/// A page of devices, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<Device>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /organizations/{org}/iot-devices/{id}/readings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReadingRequest {
    /// What was measured (`"temperature"`): 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub metric: String,
    /// The measured value.
    pub value: f64,
    /// The unit (`"°C"`): 1 to 100 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub unit: Option<String>,
    /// RFC 3339: when it was measured; now when left out.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub recorded_at: Option<String>,
}

/// One sensor reading.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reading {
    pub id: String,
    pub org_id: String,
    pub device_id: String,
    pub metric: String,
    pub value: f64,
    pub unit: Option<String>,
    /// RFC 3339 UTC: when it was measured.
    pub recorded_at: String,
    /// RFC 3339 UTC: when it was received.
    pub created_at: String,
    /// The id of the API key that sent it.
    pub created_by: String,
}

/// A page of readings, newest received first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingPage {
    pub items: Vec<Reading>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `{org}`, `{id}` (the device) and `{reading}`.
#[derive(Debug, Deserialize)]
pub struct ReadingPath {
    pub id: String,
    pub reading: String,
}

const DEVICES: Listing<Device> = Listing {
    select: "SELECT id, org_id, asset_id, name, kind, created_at, created_by FROM iot_devices",
    row: device,
    place: |d, _| (Some(&d.created_at), &d.id),
};

const READINGS: Listing<Reading> = Listing {
    select: "SELECT id, org_id, device_id, metric, value, unit, recorded_at, created_at, \
             created_by FROM sensor_readings",
    row: reading,
    place: |r, _| (Some(&r.created_at), &r.id),
};

fn device(row: &AnyRow) -> Result<Device, ApiError> {
    Ok(Device {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        asset_id: col(row, "asset_id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        created_at: col(row, "created_at")?,
        created_by: col(row, "created_by")?,
    })
}

fn reading(row: &AnyRow) -> Result<Reading, ApiError> {
    Ok(Reading {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        device_id: col(row, "device_id")?,
        metric: col(row, "metric")?,
        value: col(row, "value")?,
        unit: col(row, "unit")?,
        recorded_at: col(row, "recorded_at")?,
        created_at: col(row, "created_at")?,
        created_by: col(row, "created_by")?,
    })
}

/// An optional one-line label (kind, unit).
fn label(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    raw.and_then(|text| text_field(field, text, MAX_LABEL_CHARS, errors))
}

/// Register a device on an asset.
#[utoipa::path(post, path = "/organizations/{org}/iot-devices", tag = "iot",
    params(("org" = String, Path, description = "organisation id")),
    request_body = CreateDeviceRequest,
    responses((status = 201, body = Device), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["assets:write"])))]
pub async fn create_device(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    AppJson(body): AppJson<CreateDeviceRequest>,
) -> Result<Response, ApiError> {
    let org_id = org_id.to_string();
    let mut errors = Vec::new();
    let name = text_field("name", &body.name, MAX_NAME_CHARS, &mut errors);
    let kind = label("kind", body.kind.as_deref(), &mut errors);
    let asset_id = ref_id("asset_id", &body.asset_id, &mut errors);
    let (Some(name), Some(asset_id), true) = (name, asset_id, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let db = state.read_db.pool();
    if !exists(db, "assets", &org_id, &asset_id).await? {
        return Err(ApiError::field(
            "asset_id",
            "no asset with this id in this organisation",
        ));
    }
    let device = Device {
        id: new_id(),
        org_id: org_id.clone(),
        asset_id,
        name,
        kind,
        created_at: timestamp(Utc::now()),
        created_by: principal.actor(),
    };
    sqlx::query(
        "INSERT INTO iot_devices (id, org_id, asset_id, name, kind, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&device.id)
    .bind(&device.org_id)
    .bind(&device.asset_id)
    .bind(&device.name)
    .bind(&device.kind)
    .bind(&device.created_at)
    .bind(&device.created_by)
    .execute(db)
    .await
    .map_err(db_error)?;
    let path = format!("/organizations/{org_id}/iot-devices/{}", device.id);
    Ok(created(path, &device))
}

list_endpoint!(
    /// List the organisation's IoT devices, newest first.
    list_devices,
    "/organizations/{org}/iot-devices",
    "iot",
    "iot:read",
    DEVICES,
    DevicePage
);

get_endpoint!(
    /// One IoT device.
    get_device,
    "/organizations/{org}/iot-devices/{id}",
    "iot",
    "device id",
    "iot:read",
    DEVICES,
    Device
);

/// Ingest one sensor reading of a device.
#[utoipa::path(post, path = "/organizations/{org}/iot-devices/{id}/readings", tag = "iot",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "device id")),
    request_body = CreateReadingRequest,
    responses((status = 201, body = Reading), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["assets:write"])))]
pub async fn create_reading(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
    body: Result<AppJson<CreateReadingRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let org_id = org_id.to_string();
    // The parent first: a body is never read for a path the key cannot see.
    let device_id = parent(&state.read_db, "iot_devices", &org_id, &id).await?;
    let AppJson(body) = body?;
    let mut errors = Vec::new();
    let metric = text_field("metric", &body.metric, MAX_LABEL_CHARS, &mut errors);
    let unit = label("unit", body.unit.as_deref(), &mut errors);
    let now = timestamp(Utc::now());
    let recorded_at = match body.recorded_at.as_deref() {
        None => Some(now.clone()),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|at| timestamp(at.with_timezone(&Utc)))
            .map_err(|_| {
                errors.push(FieldError::new(
                    "recorded_at",
                    "must be an RFC 3339 timestamp",
                ))
            })
            .ok(),
    };
    if !body.value.is_finite() {
        errors.push(FieldError::new("value", "must be a finite number"));
    }
    let (Some(metric), Some(recorded_at), true) = (metric, recorded_at, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let reading = Reading {
        id: new_id(),
        org_id: org_id.clone(),
        device_id,
        metric,
        value: body.value,
        unit,
        recorded_at,
        created_at: now,
        created_by: principal.actor(),
    };
    sqlx::query(
        "INSERT INTO sensor_readings (id, org_id, device_id, metric, value, unit, recorded_at, \
         created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&reading.id)
    .bind(&reading.org_id)
    .bind(&reading.device_id)
    .bind(&reading.metric)
    .bind(reading.value)
    .bind(&reading.unit)
    .bind(&reading.recorded_at)
    .bind(&reading.created_at)
    .bind(&reading.created_by)
    .execute(state.read_db.pool())
    .await
    .map_err(db_error)?;
    let path = format!(
        "/organizations/{org_id}/iot-devices/{}/readings/{}",
        reading.device_id, reading.id
    );
    Ok(created(path, &reading))
}

/// List a device's readings, newest received first.
#[utoipa::path(get, path = "/organizations/{org}/iot-devices/{id}/readings", tag = "iot",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "device id"), PageQuery),
    responses((status = 200, body = ReadingPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["iot:read"])))]
pub async fn list_readings(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ReadingPage>, ApiError> {
    let device_id = parent(&state.read_db, "iot_devices", &org_id.to_string(), &id).await?;
    let q = query(q)?;
    let mut request = ListRequest::new(q.limit.as_deref(), q.cursor.as_deref());
    request.filters.push(("device_id", device_id));
    let page = list_page(&state.read_db, &READINGS, org_id, request).await?;
    Ok(Json(ReadingPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One reading of a device.
#[utoipa::path(get, path = "/organizations/{org}/iot-devices/{id}/readings/{reading}", tag = "iot",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "device id"),
           ("reading" = String, Path, description = "reading id")),
    responses((status = 200, body = Reading), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = ["iot:read"])))]
pub async fn get_reading(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(ReadingPath { id, reading }): Path<ReadingPath>,
) -> Result<Json<Reading>, ApiError> {
    let at = (id.as_str(), reading.as_str());
    get_child(&state.read_db, &READINGS, org_id, at, |c| &c.device_id)
        .await
        .map(Json)
}
