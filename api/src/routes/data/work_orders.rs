//! Work orders: list (with a `status` filter), create, show, and change status, title,
//! priority or description.
//!
//! A new work order is `Open`. `completed_at` is set when it becomes `Completed`, kept
//! while it stays `Completed` and cleared if it is reopened; any status may follow any
//! other (the contract names no forbidden transition).

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
    Column, ListRequest, Listing, Order, body_id, col, created, db_error, exists, get_one,
    list_page, new_id, path_id, present, query, since, text_field, timestamp,
};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{AppJson, Tenant};
use crate::routes::data::PathId;

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// How urgent a work order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "Low",
            Priority::Medium => "Medium",
            Priority::High => "High",
            Priority::Critical => "Critical",
        }
    }

    fn from_stored(s: &str) -> Option<Self> {
        [
            Priority::Low,
            Priority::Medium,
            Priority::High,
            Priority::Critical,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// Where a work order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum WorkOrderStatus {
    Open,
    InProgress,
    Completed,
    Cancelled,
}

impl WorkOrderStatus {
    const ALL: [WorkOrderStatus; 4] = [
        WorkOrderStatus::Open,
        WorkOrderStatus::InProgress,
        WorkOrderStatus::Completed,
        WorkOrderStatus::Cancelled,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkOrderStatus::Open => "Open",
            WorkOrderStatus::InProgress => "InProgress",
            WorkOrderStatus::Completed => "Completed",
            WorkOrderStatus::Cancelled => "Cancelled",
        }
    }

    fn from_stored(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// `POST /organizations/{org}/work-orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkOrderRequest {
    /// 1 to 200 characters as sent, not blank (stored trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    pub priority: Priority,
    /// At most 10,000 characters; blank means none. Line breaks and tabs are kept; other
    /// control characters are refused.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// An asset of the same organisation.
    #[serde(default)]
    pub asset_id: Option<String>,
}

/// `PATCH /organizations/{org}/work-orders/{id}`: only the fields present change (at
/// least one is required); `"description": null` removes the description.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkOrderRequest {
    #[serde(default)]
    pub status: Option<WorkOrderStatus>,
    /// 1 to 200 characters as sent, not blank (stored trimmed), no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    /// At most 10,000 characters; null or blank removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Option<String>>,
}

/// `?status=&updated_since=&completed_since=&limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderListQuery {
    /// `Open`, `InProgress`, `Completed` or `Cancelled`.
    #[param(value_type = Option<WorkOrderStatus>)]
    pub status: Option<String>,
    /// RFC 3339. Only the work orders created or changed strictly after this time, oldest
    /// change first (`updated_at`, then `id`, ascending): pass the `updated_at` of the last
    /// one you received to get each later change once. Changes of the last second are
    /// left for the next poll.
    #[param(value_type = Option<String>, format = DateTime)]
    pub updated_since: Option<String>,
    /// RFC 3339. Only the work orders that became `Completed` strictly after this time (and
    /// still are), in completion order (`completed_at`, then `id`, ascending) unless
    /// `updated_since` is also given: pass the `completed_at` of the last one you received.
    /// Completions of the last second are left for the next poll.
    #[param(value_type = Option<String>, format = DateTime)]
    pub completed_since: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A work order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkOrder {
    pub id: String,
    pub org_id: String,
    pub title: String,
    pub priority: Priority,
    pub description: Option<String>,
    pub status: WorkOrderStatus,
    pub asset_id: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub updated_at: String,
    /// When it last became `Completed`; null unless it is `Completed`.
    pub completed_at: Option<String>,
    /// The id of the API key that created it.
    pub created_by: String,
}

/// A page of work orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderPage {
    pub items: Vec<WorkOrder>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const SELECT: &str = "SELECT id, org_id, title, priority, description, status, asset_id, \
    created_at, updated_at, completed_at, created_by FROM work_orders";

const RETURNING: &str = "RETURNING id, org_id, title, priority, description, status, asset_id, \
    created_at, updated_at, completed_at, created_by";

const WORK_ORDERS: Listing<WorkOrder> = Listing {
    select: SELECT,
    row: work_order,
    place: |w, column| match column {
        Column::Created => (Some(&w.created_at), &w.id),
        Column::Updated => (Some(&w.updated_at), &w.id),
        Column::Completed => (w.completed_at.as_deref(), &w.id),
    },
};

fn work_order(row: &AnyRow) -> Result<WorkOrder, ApiError> {
    let priority: String = col(row, "priority")?;
    let status: String = col(row, "status")?;
    Ok(WorkOrder {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        title: col(row, "title")?,
        priority: Priority::from_stored(&priority)
            .ok_or_else(|| ApiError::Internal(format!("stored priority {priority:?}")))?,
        description: col(row, "description")?,
        status: WorkOrderStatus::from_stored(&status)
            .ok_or_else(|| ApiError::Internal(format!("stored status {status:?}")))?,
        asset_id: col(row, "asset_id")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        completed_at: col(row, "completed_at")?,
        created_by: col(row, "created_by")?,
    })
}

/// A description as stored: trimmed, blank meaning none.
fn description(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let raw = raw?;
    // Counted as sent, like the document's `maxLength`.
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        errors.push(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
        return None;
    }
    let text = Some(raw.trim()).filter(|d| !d.is_empty())?;
    // Line breaks and tabs are text here; NUL and the other control characters are not.
    if let Err(e) = domain::values::check_multi_line(text) {
        errors.push(FieldError::new("description", e.to_string()));
        return None;
    }
    Some(text.to_owned())
}

/// Open a work order.
#[utoipa::path(post, path = "/organizations/{org}/work-orders", tag = "work-orders",
    params(("org" = String, Path, description = "organisation id")),
    request_body = CreateWorkOrderRequest,
    responses((status = 201, body = WorkOrder), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["work-orders:write"])))]
pub async fn create_work_order(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    AppJson(body): AppJson<CreateWorkOrderRequest>,
) -> Result<Response, ApiError> {
    let org_id = org_id.to_string();
    let mut errors = Vec::new();
    let title = text_field("title", &body.title, MAX_TITLE_CHARS, &mut errors);
    let description = description(body.description.as_deref(), &mut errors);
    let asset_id = match body.asset_id.as_deref() {
        None => None,
        Some(raw) => match body_id("asset_id", raw) {
            Ok(id) => Some(id),
            Err(ApiError::Validation(mut e)) => {
                errors.append(&mut e);
                None
            }
            Err(e) => return Err(e),
        },
    };
    let (Some(title), true) = (title, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let db = &state.read_db;
    if let Some(asset) = &asset_id
        && !exists(db.pool(), "assets", &org_id, asset).await?
    {
        return Err(ApiError::field(
            "asset_id",
            "no asset with this id in this organisation",
        ));
    }
    let now = timestamp(Utc::now());
    let order = WorkOrder {
        id: new_id(),
        org_id: org_id.clone(),
        title,
        priority: body.priority,
        description,
        status: WorkOrderStatus::Open,
        asset_id,
        created_at: now.clone(),
        updated_at: now,
        completed_at: None,
        created_by: principal.actor(),
    };
    sqlx::query(
        "INSERT INTO work_orders (id, org_id, title, priority, description, status, asset_id, \
         created_at, updated_at, completed_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&order.id)
    .bind(&order.org_id)
    .bind(&order.title)
    .bind(order.priority.as_str())
    .bind(&order.description)
    .bind(order.status.as_str())
    .bind(&order.asset_id)
    .bind(&order.created_at)
    .bind(&order.updated_at)
    .bind(&order.completed_at)
    .bind(&order.created_by)
    .execute(db.pool())
    .await
    .map_err(db_error)?;
    let path = format!("/organizations/{org_id}/work-orders/{}", order.id);
    Ok(created(path, &order))
}

/// List the organisation's work orders, optionally of one status: newest first, or with
/// `updated_since` (`completed_since`) those changed (completed) after it, oldest first.
#[utoipa::path(get, path = "/organizations/{org}/work-orders", tag = "work-orders",
    params(("org" = String, Path, description = "organisation id"), WorkOrderListQuery),
    responses((status = 200, body = WorkOrderPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["work-orders:read"])))]
pub async fn list_work_orders(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    q: Result<Query<WorkOrderListQuery>, QueryRejection>,
) -> Result<Json<WorkOrderPage>, ApiError> {
    let q = query(q)?;
    // Present but empty is not a value (the document says enum): 422.
    let status = match q.status.as_deref() {
        None => None,
        Some(raw) => Some(WorkOrderStatus::from_stored(raw).ok_or_else(|| {
            ApiError::field(
                "status",
                "must be one of Open, InProgress, Completed, Cancelled",
            )
        })?),
    };
    let mut request = ListRequest::new(q.limit.as_deref(), q.cursor.as_deref());
    request.filters = status
        .map(|s| ("status", s.as_str().to_owned()))
        .into_iter()
        .collect();
    let updated = q
        .updated_since
        .as_deref()
        .map(|raw| since("updated_since", raw))
        .transpose()?;
    let completed = q
        .completed_since
        .as_deref()
        .map(|raw| since("completed_since", raw))
        .transpose()?;
    request.order = match (updated, completed) {
        (Some(updated), Some(completed)) => {
            // Both: changed after one time and completed after the other, in change order.
            request.filters_after.push((Column::Completed, completed));
            Order::ChangedAfter(Column::Updated, updated)
        }
        (Some(updated), None) => Order::ChangedAfter(Column::Updated, updated),
        (None, Some(completed)) => Order::ChangedAfter(Column::Completed, completed),
        (None, None) => Order::Newest,
    };
    let page = list_page(&state.read_db, &WORK_ORDERS, org_id, request).await?;
    Ok(Json(WorkOrderPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

get_endpoint!(
    /// One work order.
    get_work_order,
    "/organizations/{org}/work-orders/{id}",
    "work-orders",
    "work order id",
    "work-orders:read",
    WORK_ORDERS,
    WorkOrder
);

/// Change a work order's status, title, priority or description.
#[utoipa::path(patch, path = "/organizations/{org}/work-orders/{id}", tag = "work-orders",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "work order id")),
    request_body = UpdateWorkOrderRequest,
    responses((status = 200, body = WorkOrder), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["work-orders:write"])))]
pub async fn update_work_order(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
    AppJson(body): AppJson<UpdateWorkOrderRequest>,
) -> Result<Json<WorkOrder>, ApiError> {
    let id = path_id(&id)?;
    if body.status.is_none()
        && body.title.is_none()
        && body.priority.is_none()
        && body.description.is_none()
    {
        return Err(ApiError::field(
            "body",
            "give at least one of status, title, priority, description",
        ));
    }
    let mut errors = Vec::new();
    let title = body
        .title
        .as_deref()
        .map(|t| text_field("title", t, MAX_TITLE_CHARS, &mut errors));
    let description = body
        .description
        .as_ref()
        .map(|d| description(d.as_deref(), &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // One statement, so that concurrent changes cannot interleave between a read and a
    // write. SET expressions see the row as it was before this update (on both back
    // ends), which is what `completed_at` needs: stamped only on the way into Completed.
    let sql = format!(
        "UPDATE work_orders SET \
           title = COALESCE($3, title), \
           priority = COALESCE($4, priority), \
           description = CASE WHEN $5 = 1 THEN $6 ELSE description END, \
           completed_at = CASE \
             WHEN $7 IS NULL THEN completed_at \
             WHEN $7 <> 'Completed' THEN NULL \
             WHEN status = 'Completed' THEN completed_at \
             ELSE $8 END, \
           status = COALESCE($7, status), \
           updated_at = $8 \
         WHERE org_id = $1 AND id = $2 {RETURNING}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id.to_string())
        .bind(id)
        .bind(title.flatten())
        .bind(body.priority.map(|p| p.as_str().to_owned()))
        .bind(i64::from(description.is_some()))
        .bind(description.flatten())
        .bind(body.status.map(|s| s.as_str().to_owned()))
        .bind(timestamp(Utc::now()))
        .fetch_optional(state.read_db.pool())
        .await
        .map_err(db_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(work_order(&row)?))
}
