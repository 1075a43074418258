//! Form submissions on work orders (a technician's checklist or inspection form).
//!
//! Read with `forms:read`; submitted with `work-orders:write`: a submission is part of the
//! work done on a work order, sent by the same field app that updates it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{
    ListRequest, Listing, PageQuery, PathId, col, created, db_error, exists, get_child, list_page,
    new_id, parent, query, ref_id, text_field, timestamp,
};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, Tenant};

/// The longest form name, in characters.
pub const MAX_FORM_CHARS: usize = 200;

/// `POST /organizations/{org}/work-orders/{id}/form-submissions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFormSubmissionRequest {
    /// Which form (`"Safety checklist"`): 1 to 200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub form: String,
    /// The answers, as a JSON object (field name to answer).
    #[schema(value_type = Object)]
    pub answers: Map<String, Value>,
    /// The user (technician) of the organisation who filled it in.
    #[serde(default)]
    pub submitted_by: Option<String>,
}

/// A form submission.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FormSubmission {
    pub id: String,
    pub org_id: String,
    pub work_order_id: String,
    pub form: String,
    #[schema(value_type = Object)]
    pub answers: Map<String, Value>,
    pub submitted_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The id of the API key that sent it.
    pub created_by: String,
}

/// A page of form submissions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormSubmissionPage {
    pub items: Vec<FormSubmission>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `{org}`, `{id}` (the work order) and `{submission}`.
#[derive(Debug, Deserialize)]
pub struct SubmissionPath {
    pub id: String,
    pub submission: String,
}

const SUBMISSIONS: Listing<FormSubmission> = Listing {
    select: "SELECT id, org_id, work_order_id, form, answers, submitted_by, created_at, \
             created_by FROM form_submissions",
    row: submission,
    place: |f, _| (Some(&f.created_at), &f.id),
};

fn submission(row: &AnyRow) -> Result<FormSubmission, ApiError> {
    let answers: String = col(row, "answers")?;
    Ok(FormSubmission {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        work_order_id: col(row, "work_order_id")?,
        form: col(row, "form")?,
        answers: serde_json::from_str(&answers)
            .map_err(|e| ApiError::Internal(format!("stored form answers: {e}")))?,
        submitted_by: col(row, "submitted_by")?,
        created_at: col(row, "created_at")?,
        created_by: col(row, "created_by")?,
    })
}

/// Submit a form on a work order.
#[utoipa::path(post, path = "/organizations/{org}/work-orders/{id}/form-submissions", tag = "forms",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "work order id")),
    request_body = CreateFormSubmissionRequest,
    responses((status = 201, body = FormSubmission), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["work-orders:write"])))]
pub async fn create_form_submission(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
    body: Result<AppJson<CreateFormSubmissionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let org_id = org_id.to_string();
    // The parent first: a body is never read for a path the key cannot see.
    let work_order_id = parent(&state.read_db, "work_orders", &org_id, &id).await?;
    let AppJson(body) = body?;
    let mut errors = Vec::new();
    let form = text_field("form", &body.form, MAX_FORM_CHARS, &mut errors);
    let submitted_by = body
        .submitted_by
        .as_deref()
        .map(|raw| ref_id("submitted_by", raw, &mut errors));
    let (Some(form), true) = (form, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let submitted_by = submitted_by.flatten();
    let db = state.read_db.pool();
    if let Some(user) = &submitted_by
        && !exists(db, "org_users", &org_id, user).await?
    {
        return Err(ApiError::field(
            "submitted_by",
            "no user with this id in this organisation",
        ));
    }
    let answers = serde_json::to_string(&body.answers)
        .map_err(|e| ApiError::Internal(format!("form answers: {e}")))?;
    let found = FormSubmission {
        id: new_id(),
        org_id: org_id.clone(),
        work_order_id,
        form,
        answers: body.answers,
        submitted_by,
        created_at: timestamp(Utc::now()),
        created_by: principal.actor(),
    };
    sqlx::query(
        "INSERT INTO form_submissions (id, org_id, work_order_id, form, answers, submitted_by, \
         created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&found.id)
    .bind(&found.org_id)
    .bind(&found.work_order_id)
    .bind(&found.form)
    .bind(answers)
    .bind(&found.submitted_by)
    .bind(&found.created_at)
    .bind(&found.created_by)
    .execute(db)
    .await
    .map_err(db_error)?;
    let path = format!(
        "/organizations/{org_id}/work-orders/{}/form-submissions/{}",
        found.work_order_id, found.id
    );
    Ok(created(path, &found))
}

/// List a work order's form submissions, newest first.
#[utoipa::path(get, path = "/organizations/{org}/work-orders/{id}/form-submissions", tag = "forms",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "work order id"), PageQuery),
    responses((status = 200, body = FormSubmissionPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["forms:read"])))]
pub async fn list_form_submissions(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(PathId { id }): Path<PathId>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<FormSubmissionPage>, ApiError> {
    let work_order_id = parent(&state.read_db, "work_orders", &org_id.to_string(), &id).await?;
    let q = query(q)?;
    let mut request = ListRequest::new(q.limit.as_deref(), q.cursor.as_deref());
    request.filters.push(("work_order_id", work_order_id));
    let page = list_page(&state.read_db, &SUBMISSIONS, org_id, request).await?;
    Ok(Json(FormSubmissionPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One form submission of a work order.
#[utoipa::path(get, path = "/organizations/{org}/work-orders/{id}/form-submissions/{submission}", tag = "forms",
    params(("org" = String, Path, description = "organisation id"), ("id" = String, Path, description = "work order id"),
           ("submission" = String, Path, description = "form submission id")),
    responses((status = 200, body = FormSubmission), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = ["forms:read"])))]
pub async fn get_form_submission(
    State(state): State<AppState>,
    Tenant(org_id): Tenant,
    Path(SubmissionPath { id, submission }): Path<SubmissionPath>,
) -> Result<Json<FormSubmission>, ApiError> {
    let at = (id.as_str(), submission.as_str());
    get_child(&state.read_db, &SUBMISSIONS, org_id, at, |c| {
        &c.work_order_id
    })
    .await
    .map(Json)
}
