//! The data API integrators use: work orders (and their form submissions), assets (and
//! their IoT devices and readings), locations and users of one organisation.
//!
//! These resources are plain tables in the read-model database (`api/migrations/*/30[123]_*.sql`),
//! written directly by the handlers: they are not event-sourced. Every query filters on
//! the caller's organisation, so another tenant's rows answer 404 (or 422 when named as a
//! reference in a body). Lists page newest first with the shared opaque cursor
//! ([`projections::page`]), exactly like the key list, or, polled with `updated_since` /
//! `completed_since`, oldest change first ([`Order`], [`list_page`]).
//!
//! Each route's scope is in its annotation (the auth layer enforces it). Who writes what:
//! `work-orders:write` work orders and their form submissions (read with `forms:read`);
//! `assets:write` assets, IoT devices and readings (read with `iot:read`); `users:write`
//! users (read with `users:read`). Locations are created by naming them on an asset.

pub mod assets;
pub mod forms;
pub mod iot;
pub mod locations;
pub mod users;
pub mod work_orders;

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use projections::ReadDb;
use projections::page::{Cursor, DEFAULT_LIMIT, Page, valid_limit};
use serde::Deserialize;
use sqlx::any::AnyRow;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::http::error::ApiError;

/// `GET .../{id}`: one resource of the organisation, declared once (its annotation and
/// handler): `get_endpoint!(/// doc, get_asset, "/organizations/{org}/assets/{id}",
/// "assets", "asset id", "assets:read", ASSETS, Asset)`.
macro_rules! get_endpoint {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $tag:literal, $what:literal,
     $scope:literal, $listing:ident, $item:ident) => {
        $(#[doc = $doc])*
        #[utoipa::path(get, path = $path, tag = $tag,
            params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = $what)),
            responses((status = 200, body = $item), (status = 401, body = Problem), (status = 403, body = Problem),
                      (status = 404, body = Problem)),
            security(("bearer" = [$scope])))]
        pub async fn $name(
            State(state): State<AppState>,
            Tenant(org_id): Tenant,
            Path(PathId { id }): Path<PathId>,
        ) -> Result<Json<$item>, ApiError> {
            get_one(&state.read_db, &$listing, org_id, &id)
                .await
                .map(Json)
        }
    };
}

/// `GET` of a plain list (`?limit=&cursor=`, newest first), declared once:
/// `list_endpoint!(/// doc, list_users, "/organizations/{org}/users", "users", "users:read",
/// USERS, UserPage)`.
macro_rules! list_endpoint {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $tag:literal, $scope:literal,
     $listing:ident, $page:ident) => {
        $(#[doc = $doc])*
        #[utoipa::path(get, path = $path, tag = $tag,
            params(("org" = String, Path, description = "organisation id"), PageQuery),
            responses((status = 200, body = $page), (status = 401, body = Problem), (status = 403, body = Problem),
                      (status = 404, body = Problem), (status = 422, body = Problem)),
            security(("bearer" = [$scope])))]
        pub async fn $name(
            State(state): State<AppState>,
            Tenant(org_id): Tenant,
            q: Result<Query<PageQuery>, QueryRejection>,
        ) -> Result<Json<$page>, ApiError> {
            let q = query(q)?;
            let request = ListRequest::new(q.limit.as_deref(), q.cursor.as_deref());
            let page = list_page(&state.read_db, &$listing, org_id, request).await?;
            Ok(Json($page {
                items: page.items,
                next_cursor: page.next_cursor,
            }))
        }
    };
}
use {get_endpoint, list_endpoint};

/// The data API's routes.
pub fn router() -> OpenApiRouter<AppState> {
    use self::assets::*;
    use self::forms::*;
    use self::iot::*;
    use self::locations::*;
    use self::users::*;
    use self::work_orders::*;
    OpenApiRouter::new()
        .routes(routes!(list_work_orders, create_work_order))
        .routes(routes!(get_work_order, update_work_order))
        .routes(routes!(list_assets, create_asset))
        .routes(routes!(get_asset, update_asset))
        .routes(routes!(list_locations))
        .routes(routes!(get_location))
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device))
        .routes(routes!(list_readings, create_reading))
        .routes(routes!(get_reading))
        .routes(routes!(list_form_submissions, create_form_submission))
        .routes(routes!(get_form_submission))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user))
}

/// A timestamp as stored: RFC 3339 UTC with six fractional digits and a `Z`, so that text
/// order is time order on both back ends.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// 201 with `body` and `Location: {path}`.
fn created<T: serde::Serialize>(path: String, body: &T) -> Response {
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&path) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

/// Distinguishes a field set to null (`Some(None)`) from a missing one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A fresh, time-ordered id.
fn new_id() -> String {
    Uuid::now_v7().hyphenated().to_string()
}

/// The `{id}` of a resource's path (its `{org}` is the [`crate::http::extract::Tenant`]).
#[derive(Debug, Deserialize)]
pub struct PathId {
    pub id: String,
}

/// An id from a path: anything that is not a UUID cannot exist (404).
fn path_id(raw: &str) -> Result<String, ApiError> {
    Uuid::parse_str(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::NotFound)
}

/// An id named in a body (`asset_id`, `location_id`): 422 naming the field unless it is a
/// UUID.
fn body_id(field: &str, raw: &str) -> Result<String, ApiError> {
    Uuid::parse_str(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::field(field, "is not an id (expected a UUID)"))
}

/// [`body_id`], collecting the error with the others of the body.
fn ref_id(
    field: &str,
    raw: &str,
    errors: &mut Vec<crate::http::error::FieldError>,
) -> Option<String> {
    match Uuid::parse_str(raw) {
        Ok(u) => Some(u.hyphenated().to_string()),
        Err(_) => {
            errors.push(crate::http::error::FieldError::new(
                field,
                "is not an id (expected a UUID)",
            ));
            None
        }
    }
}

/// A read-model database failure: 503 when the database is unreachable or the pool is
/// exhausted, else 500 (the cause is logged, never shown).
fn db_error(e: sqlx::Error) -> ApiError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ApiError::Unavailable(e.to_string())
        }
        other => ApiError::Internal(format!("read-model database: {other}")),
    }
}

/// A column of a row (500 if the stored row does not have the expected shape).
fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, ApiError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::Row::try_get(row, name)
        .map_err(|e| ApiError::Internal(format!("data API row, column {name}: {e}")))
}

/// Checks a one-line text field: its length in characters (as sent) and no
/// control character (NUL included, which Postgres cannot store); returns it trimmed.
fn text_field(
    field: &str,
    raw: &str,
    max: usize,
    errors: &mut Vec<crate::http::error::FieldError>,
) -> Option<String> {
    let trimmed = raw.trim();
    // Counted as sent, like the document's `maxLength`.
    let n = raw.chars().count();
    if trimmed.is_empty() {
        errors.push(crate::http::error::FieldError::new(
            field,
            "must not be empty",
        ));
        None
    } else if n > max {
        errors.push(crate::http::error::FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
        None
    } else if let Err(e) = domain::values::check_single_line(trimmed) {
        errors.push(crate::http::error::FieldError::new(field, e.to_string()));
        None
    } else {
        Some(trimmed.to_owned())
    }
}

/// `?limit=&cursor=` of the asset and location lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Reads a query string, naming the offending parameter on failure (422).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::field("query", e.body_text()))
}

/// A page request, validated: the size and where the previous page ended.
struct PageRequest {
    limit: u32,
    after: Option<Cursor>,
}

impl PageRequest {
    /// `limit` 1 to 100 (default 50) and a cursor made by this list: else 422 naming
    /// `limit` or `cursor`.
    fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ApiError> {
        // Present but empty is not a value (the document says integer): 422.
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if valid_limit(n) => n,
                _ => return Err(ApiError::field("limit", "must be an integer from 1 to 100")),
            },
        };
        let after = match cursor {
            None | Some("") => None,
            Some(text) => Some(decode_cursor(text).ok_or_else(|| {
                ApiError::field("cursor", "is not a cursor from a previous page")
            })?),
        };
        Ok(Self { limit, after })
    }
}

/// A cursor of these lists: a stored timestamp and a UUID, both put back in canonical
/// form so that they compare like the stored values.
fn decode_cursor(text: &str) -> Option<Cursor> {
    let cursor = Cursor::decode(text).ok()?;
    let at = DateTime::parse_from_rfc3339(&cursor.sort_key)
        .ok()?
        .with_timezone(&Utc);
    let id = Uuid::parse_str(&cursor.id).ok()?;
    Some(Cursor::new(timestamp(at), id.hyphenated().to_string()))
}

/// A timestamp column a list can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Created,
    Updated,
    Completed,
}

impl Column {
    const fn sql(self) -> &'static str {
        match self {
            Column::Created => "created_at",
            Column::Updated => "updated_at",
            Column::Completed => "completed_at",
        }
    }
}

/// How long a change waits before polling lists show it. A change is stamped before it
/// commits, so a later-stamped change could be read before an earlier-stamped one commits;
/// a poller that moved its mark past the first would then never see the second. Leaving
/// out the last second's changes (shown on the next poll) closes that gap for every write
/// that commits within a second of its stamp.
pub const POLL_SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// How a list pages: newest first (`created_at DESC, id DESC`), or, for incremental
/// polling, the rows whose `column` is strictly after a timestamp, oldest change first
/// (`column ASC, id ASC`), so that a poller resuming from the last change it saw gets
/// every later change once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Order {
    Newest,
    ChangedAfter(Column, String),
}

/// What a list of one resource needs: its `SELECT columns FROM table`, how a row reads,
/// and where a row stands in an order (the value of the order's column, and its id, for
/// the cursor).
struct Listing<T> {
    select: &'static str,
    row: fn(&AnyRow) -> Result<T, ApiError>,
    place: fn(&T, Column) -> (Option<&str>, &str),
}

/// One list request: the equality filters (`column = value`; the columns are constants of
/// the callers), further "strictly after" filters (`column > value`), the order, and
/// `limit` and `cursor` as the query string gave them.
struct ListRequest<'q> {
    filters: Vec<(&'static str, String)>,
    filters_after: Vec<(Column, String)>,
    order: Order,
    limit: Option<&'q str>,
    cursor: Option<&'q str>,
}

impl<'q> ListRequest<'q> {
    /// Newest first, unfiltered.
    fn new(limit: Option<&'q str>, cursor: Option<&'q str>) -> Self {
        Self {
            filters: Vec::new(),
            filters_after: Vec::new(),
            order: Order::Newest,
            limit,
            cursor,
        }
    }
}

/// A `?updated_since=` or `?completed_since=` value: RFC 3339 (422 naming `field`
/// otherwise), in stored form.
fn since(field: &str, raw: &str) -> Result<String, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| timestamp(at.with_timezone(&Utc)))
        .map_err(|_| ApiError::field(field, "must be an RFC 3339 timestamp"))
}

/// One page of `{select} WHERE org_id = $1 [AND filter = ...]` in the request's order,
/// resuming strictly after the cursor (422 naming `limit` or `cursor` when invalid).
///
/// `select` and the column names are constants of the callers; every value is a bind.
async fn list_page<T>(
    db: &ReadDb,
    listing: &Listing<T>,
    org: domain::ids::OrgId,
    request: ListRequest<'_>,
) -> Result<Page<T>, ApiError> {
    let page = PageRequest::parse(request.limit, request.cursor)?;
    let mut sql = format!("{} WHERE org_id = $1", listing.select);
    let mut binds = vec![org.to_string()];
    for (column, value) in request.filters {
        binds.push(value);
        sql.push_str(&format!(" AND {column} = ${}", binds.len()));
    }
    for (column, value) in request.filters_after {
        binds.push(value);
        sql.push_str(&format!(" AND {} > ${}", column.sql(), binds.len()));
    }
    let (column, before, direction) = match request.order {
        Order::Newest => (Column::Created, "<", "DESC"),
        Order::ChangedAfter(column, after) => {
            binds.push(after);
            let after = binds.len();
            binds.push(timestamp(Utc::now() - POLL_SETTLE));
            let settled = binds.len();
            let name = column.sql();
            sql.push_str(&format!(" AND {name} > ${after} AND {name} <= ${settled}"));
            (column, ">", "ASC")
        }
    };
    let name = column.sql();
    if let Some(after) = page.after {
        binds.push(after.sort_key);
        let at = binds.len();
        binds.push(after.id);
        let id = binds.len();
        sql.push_str(&format!(
            " AND ({name} {before} ${at} OR ({name} = ${at} AND id {before} ${id}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY {name} {direction}, id {direction} LIMIT ${}",
        binds.len() + 1
    ));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in binds {
        q = q.bind(value);
    }
    // One more than asked tells whether there is a next page.
    let rows = q
        .bind(i64::from(page.limit) + 1)
        .fetch_all(db.pool())
        .await
        .map_err(db_error)?;
    let items = rows
        .iter()
        .map(listing.row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, page.limit, |item| {
        let (key, id) = (listing.place)(item, column);
        Cursor::new(key.unwrap_or_default().to_owned(), id.to_owned())
    }))
}

/// Reads one row of `{select} WHERE org_id = $1 AND id = $2` (404 when there is none:
/// a malformed id, another organisation's row, or no row).
async fn get_one<T>(
    db: &ReadDb,
    listing: &Listing<T>,
    org: domain::ids::OrgId,
    raw_id: &str,
) -> Result<T, ApiError> {
    let id = path_id(raw_id)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{} WHERE org_id = $1 AND id = $2",
        listing.select
    )))
    .bind(org.to_string())
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .map_err(db_error)?
    .ok_or(ApiError::NotFound)?;
    (listing.row)(&row)
}

/// The id of a parent resource in the path (`{id}` of `.../iot-devices/{id}/readings`),
/// when the organisation has a row of `table` with it (else 404).
async fn parent(
    db: &ReadDb,
    table: &'static str,
    org: &str,
    raw: &str,
) -> Result<String, ApiError> {
    let id = path_id(raw)?;
    if exists(db.pool(), table, org, &id).await? {
        Ok(id)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A child resource by id, when it belongs to the parent the path names (else 404).
async fn get_child<T>(
    db: &ReadDb,
    listing: &Listing<T>,
    org: domain::ids::OrgId,
    (parent_raw, child_raw): (&str, &str),
    parent_of: fn(&T) -> &str,
) -> Result<T, ApiError> {
    let child = get_one(db, listing, org, child_raw).await?;
    if path_id(parent_raw)? == parent_of(&child) {
        Ok(child)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Whether the organisation has a row of `table` with this id (a reference named in a
/// body: another organisation's row is as unknown as a missing one).
async fn exists<'e, E>(
    executor: E,
    table: &'static str,
    org: &str,
    id: &str,
) -> Result<bool, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let found = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.to_owned())
    .bind(id.to_owned())
    .fetch_optional(executor)
    .await
    .map_err(db_error)?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_refuse_limits_outside_1_to_100() {
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(PageRequest::parse(Some(bad), None).is_err(), "{bad}");
        }
        assert_eq!(PageRequest::parse(Some("100"), None).unwrap().limit, 100);
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn it_should_put_a_cursor_back_in_canonical_form() {
        let id = Uuid::now_v7();
        let text = Cursor::new("2026-01-02T03:04:05.1Z", id.simple().to_string()).encode();
        let cursor = decode_cursor(&text).unwrap();
        assert_eq!(cursor.sort_key, "2026-01-02T03:04:05.100000Z");
        assert_eq!(cursor.id, id.hyphenated().to_string());
        assert!(decode_cursor(&Cursor::new("yesterday", id.to_string()).encode()).is_none());
        assert!(decode_cursor(&Cursor::new("2026-01-02T03:04:05Z", "x").encode()).is_none());
    }

    #[test]
    fn it_should_trim_text_and_count_characters_as_sent_not_bytes() {
        let mut errors = Vec::new();
        assert_eq!(
            text_field("title", "  é  ", 5, &mut errors).as_deref(),
            Some("é")
        );
        assert_eq!(
            text_field("title", "éé", 2, &mut errors).as_deref(),
            Some("éé")
        );
        assert!(text_field("title", "   ", 200, &mut errors).is_none());
        assert!(text_field("title", " é ", 2, &mut errors).is_none());
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "title");
    }

    #[test]
    fn it_should_refuse_nul_and_other_control_characters_naming_the_field() {
        let mut errors = Vec::new();
        assert!(text_field("kind", "Pu\u{0}mp", 100, &mut errors).is_none());
        assert!(text_field("location", "A\nB", 100, &mut errors).is_none());
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "kind");
        assert!(
            errors[0].message.contains("control"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].field, "location");
    }
}
