//! The management API: create, list, show, change, revoke and rotate keys, one file per
//! endpoint (`read.rs` holds list and show, `revoke.rs` both ways to revoke); the views
//! they answer with are in `views.rs`, the field parsers shared by create and change in
//! `fields.rs`, and what several endpoints share is here.
//!
//! Scopes: `api-keys:read` (list, show), `api-keys:create` (create, rotate),
//! `api-keys:write` (change), `api-keys:revoke` (revoke). A key cannot grant a scope it
//! does not hold itself, neither by creating, changing nor rotating a key.

mod create;
mod fields;
mod read;
mod revoke;
mod rotate;
mod update;
mod views;

pub use create::*;
pub use read::*;
pub use revoke::*;
pub use rotate::*;
pub use update::*;
pub use views::*;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::keys::{CommandContext, CreatedKey};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::parse_json;
use crate::idempotency::{self, Begin};
use crate::routes::etag;

/// Makes the custom scopes of `org` known to this node before `names` are parsed, when
/// one of them is a well-formed name it does not know yet (declared on another node):
/// loading the organisation's events declares its scopes.
pub(super) async fn learn_scopes(
    state: &AppState,
    org: domain::ids::OrgId,
    names: Option<&[String]>,
) {
    let unknown = names.into_iter().flatten().any(|n| {
        domain::scope::Scope::lookup(n).is_none() && domain::scope::check_custom_name(n).is_ok()
    });
    if unknown && let Err(e) = state.keys.load_org(org).await {
        tracing::warn!(error = %e, "cannot load the organisation's custom scopes");
    }
}

/// The management routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
}

pub(crate) fn ctx(principal: &Principal, headers: &HeaderMap) -> CommandContext {
    CommandContext {
        actor: principal.actor(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        correlation_id: None,
    }
}

/// The 201 of a create or a rotate: the new key with its secret (shown once), its version
/// as `ETag` and its `Location`.
pub(super) fn created_answer(
    created: &CreatedKey,
) -> Result<(StatusCode, HeaderMap, serde_json::Value), ApiError> {
    let mut extra = HeaderMap::new();
    let (k, v) = etag(created.key.version);
    extra.insert(k, v);
    if let Ok(loc) = header::HeaderValue::from_str(&format!(
        "/organizations/{}/api-keys/{}",
        created.key.org_id, created.key.id
    )) {
        extra.insert(header::LOCATION, loc);
    }
    let body = serde_json::to_value(created_response(created))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((StatusCode::CREATED, extra, body))
}

/// Parses an optional JSON body (an empty body is the default request).
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json(body)
}

/// Runs `work` under the request's `Idempotency-Key`, if it has one.
pub(super) async fn idempotent<F, Fut>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: String,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, HeaderMap, serde_json::Value), ApiError>>,
{
    let Some(idem_key) = idempotency::header_key(headers)? else {
        let (status, extra, body) = work().await?;
        return Ok((status, extra, Json(body)).into_response());
    };
    let token = crate::auth::bearer_from_headers(headers).unwrap_or_default();
    match idempotency::begin(
        &state.read_db,
        &principal.actor(),
        token,
        &idem_key,
        request.as_bytes(),
    )
    .await?
    {
        Begin::Replay { status, body } => {
            let mut res = (status, Json(body)).into_response();
            if !status.is_success() {
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/problem+json"),
                );
            }
            res.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            Ok(res)
        }
        Begin::New(guard) => match work().await {
            Ok((status, extra, body)) => {
                guard.complete(status, &body).await;
                Ok((status, extra, Json(body)).into_response())
            }
            Err(e) => {
                let (status, _) = e.status_and_code();
                if status.is_server_error() {
                    guard.abandon().await;
                } else {
                    let problem = serde_json::to_value(e.problem()).unwrap_or_default();
                    guard.complete(status, &problem).await;
                }
                Err(e)
            }
        },
    }
}
