//! The organisation's users: the technicians and supervisors work orders and form
//! submissions name. Not API keys and not console logins: people of the customer's
//! organisation, as its ERP or HR system knows them.
//!
//! Read with `users:read`; created with `users:write`, a data scope of its own so that an
//! HR or identity sync can maintain users without touching work orders or keys.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{
    ListRequest, Listing, PageQuery, PathId, col, created, db_error, get_one, list_page, new_id,
    query, text_field, timestamp,
};
use super::{get_endpoint, list_endpoint};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{AppJson, Tenant};

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest email address, in characters.
pub const MAX_EMAIL_CHARS: usize = 254;

/// What a user does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum Role {
    #[default]
    Technician,
    Supervisor,
    Manager,
}

impl Role {
    const ALL: [Role; 3] = [Role::Technician, Role::Supervisor, Role::Manager];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Technician => "Technician",
            Role::Supervisor => "Supervisor",
            Role::Manager => "Manager",
        }
    }
}

/// `POST /organizations/{org}/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Unique within the organisation (compared without case): `local@domain`.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// `Technician` when left out.
    #[serde(default)]
    pub role: Option<Role>,
}

/// A user of the organisation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// Lower case.
    pub email: String,
    pub role: Role,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The id of the API key that created it.
    pub created_by: String,
}

/// A page of users, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const USERS: Listing<User> = Listing {
    select: "SELECT id, org_id, name, email, role, created_at, created_by FROM org_users",
    row: user,
    place: |u, _| (Some(&u.created_at), &u.id),
};

fn user(row: &AnyRow) -> Result<User, ApiError> {
    let role: String = col(row, "role")?;
    Ok(User {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        name: col(row, "name")?,
        email: col(row, "email")?,
        role: Role::ALL
            .into_iter()
            .find(|r| r.as_str() == role)
            .ok_or_else(|| ApiError::Internal(format!("stored role {role:?}")))?,
        created_at: col(row, "created_at")?,
        created_by: col(row, "created_by")?,
    })
}

/// An email address, lower-cased: one `@` with text on both sides, no spaces.
fn email(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let text = text_field("email", raw, MAX_EMAIL_CHARS, errors)?.to_lowercase();
    let well_formed = match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.contains(char::is_whitespace)
        }
        None => false,
    };
    if well_formed {
        Some(text)
    } else {
        errors.push(FieldError::new(
            "email",
            "must be an address like name@example.com",
        ));
        None
    }
}

/// Add a user (technician) to the organisation.
#[utoipa::path(post, path = "/organizations/{org}/users", tag = "users",
    params(("org" = String, Path, description = "organisation id")),
    request_body = CreateUserRequest,
    responses((status = 201, body = User), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["users:write"])))]
pub async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    Tenant(org_id): Tenant,
    AppJson(body): AppJson<CreateUserRequest>,
) -> Result<Response, ApiError> {
    let org_id = org_id.to_string();
    let mut errors = Vec::new();
    let name = text_field("name", &body.name, MAX_NAME_CHARS, &mut errors);
    let email = email(&body.email, &mut errors);
    let (Some(name), Some(email), true) = (name, email, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let user = User {
        id: new_id(),
        org_id: org_id.clone(),
        name,
        email,
        role: body.role.unwrap_or_default(),
        created_at: timestamp(Utc::now()),
        created_by: principal.actor(),
    };
    // The unique index decides between concurrent creates with the same address.
    let inserted = sqlx::query(
        "INSERT INTO org_users (id, org_id, name, email, role, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id, email) DO NOTHING",
    )
    .bind(&user.id)
    .bind(&user.org_id)
    .bind(&user.name)
    .bind(&user.email)
    .bind(user.role.as_str())
    .bind(&user.created_at)
    .bind(&user.created_by)
    .execute(state.read_db.pool())
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::field(
            "email",
            "another user of this organisation has this address",
        ));
    }
    let path = format!("/organizations/{org_id}/users/{}", user.id);
    Ok(created(path, &user))
}

list_endpoint!(
    /// List the organisation's users, newest first.
    list_users,
    "/organizations/{org}/users",
    "users",
    "users:read",
    USERS,
    UserPage
);

get_endpoint!(
    /// One user of the organisation.
    get_user,
    "/organizations/{org}/users/{id}",
    "users",
    "user id",
    "users:read",
    USERS,
    User
);
