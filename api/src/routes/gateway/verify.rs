//! `POST /v1/keys/verify`: a service of the organisation asks whether a key its caller
//! presented may make a call. The verified key's rate limit is spent and the call recorded
//! as its usage, as if it had called keyledger's own routes.

use std::net::IpAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use domain::apikey::{self, KeyStatus};
use domain::scope::{Scope, check_custom_name};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::scopes::Access;
use crate::auth::{AuthFailure, Call, Principal, RateLimitState, Refusal, admit, record};
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::AppJson;
use crate::routes::usage::RateLimitView;

/// `POST /v1/keys/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key the service's caller presented.
    #[schema(min_length = 1, max_length = 512)]
    pub token: String,
    /// Scopes the key must hold, every one of them.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::openapi::ScopeName>>)]
    pub scopes: Option<Vec<String>>,
    /// The call being made, `METHOD /route/template` (e.g. `GET /invoices/{id}`): recorded
    /// as the key's usage. Default `VERIFY *`.
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[A-Za-z]{1,10} /\S{0,243}$")]
    pub route: Option<String>,
    /// The service's caller's IP address, checked against the key's allowed IPs (an
    /// addition to DESIGN: without it the allowlist cannot be applied).
    #[serde(default)]
    pub ip: Option<String>,
}

/// Why a key was refused, or `valid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerifyCode {
    Valid,
    InvalidToken,
    Revoked,
    Expired,
    InsufficientScope,
    IpNotAllowed,
    RateLimited,
}

/// The verdict. The key's fields are present when the token is a key of the caller's
/// organisation (`invalid_token` shows none).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    pub code: VerifyCode,
    pub key_id: Option<String>,
    pub org_id: Option<String>,
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// `live` or `test`.
    pub environment: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The verified key's limit after this call (absent for a key that is not active).
    pub rate_limit: Option<RateLimitView>,
}

impl VerifyResponse {
    fn invalid() -> Self {
        VerifyResponse {
            valid: false,
            code: VerifyCode::InvalidToken,
            key_id: None,
            org_id: None,
            name: None,
            scopes: None,
            environment: None,
            expires_at: None,
            rate_limit: None,
        }
    }

    fn of(key: &apikey::State, code: VerifyCode, limit: Option<RateLimitState>) -> Self {
        VerifyResponse {
            valid: code == VerifyCode::Valid,
            code,
            key_id: Some(key.id.to_string()),
            org_id: Some(key.org_id.to_string()),
            name: Some(key.name.as_str().to_owned()),
            scopes: Some(key.scopes.names().iter().map(|s| (*s).to_owned()).collect()),
            environment: Some(key.environment.as_str().to_owned()),
            expires_at: key.expires_at,
            rate_limit: limit.map(RateLimitView::from),
        }
    }
}

/// A verify request, checked.
struct Checked {
    required: Vec<Access>,
    /// A well-formed custom scope no key of this node holds (none has declared it): the
    /// key cannot hold it.
    unheld: Option<String>,
    method: String,
    route: String,
    ip: Option<IpAddr>,
}

impl VerifyRequest {
    fn check(&self) -> Result<Checked, ApiError> {
        let mut errors = Vec::new();
        if self.token.is_empty() || self.token.len() > 512 {
            errors.push(FieldError::new("token", "must be 1 to 512 characters"));
        }
        let mut required = Vec::new();
        let mut unheld = None;
        for (i, name) in self.scopes.iter().flatten().enumerate() {
            match Scope::lookup(name) {
                Some(scope) => required.push(Access::Scope(scope)),
                // Never interned from a request: a key holding it would have made it known.
                None if check_custom_name(name).is_ok() => unheld = Some(name.clone()),
                None => errors.push(FieldError::new(
                    format!("scopes[{i}]"),
                    format!("{name:?} is not a scope name"),
                )),
            }
        }
        let (method, route) = match self.route.as_deref() {
            None => ("VERIFY".to_owned(), "*".to_owned()),
            Some(raw) => match parse_route(raw) {
                Some((m, r)) => (m, r),
                None => {
                    errors.push(FieldError::new(
                        "route",
                        "must be `METHOD /path`, e.g. `GET /invoices/{id}` (at most 256 \
                         characters, no spaces in the path)",
                    ));
                    (String::new(), String::new())
                }
            },
        };
        let ip = match self.ip.as_deref() {
            None => None,
            Some(raw) => match raw.trim().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    errors.push(FieldError::new("ip", "is not an IPv4 or IPv6 address"));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(Checked {
            required,
            unheld,
            method,
            route,
            ip,
        })
    }
}

/// `METHOD /path` -> (upper-case method, path).
fn parse_route(raw: &str) -> Option<(String, String)> {
    if raw.len() > 256 {
        return None;
    }
    let (method, path) = raw.split_once(' ')?;
    let method_ok =
        (1..=10).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_alphabetic());
    let path_ok = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    (method_ok && path_ok).then(|| (method.to_ascii_uppercase(), path.to_owned()))
}

impl From<RateLimitState> for RateLimitView {
    fn from(s: RateLimitState) -> Self {
        RateLimitView {
            limit: s.limit,
            remaining: s.remaining,
            reset: s.reset_seconds,
        }
    }
}

/// Verify a key of this organisation for a service of its own: 200 with the verdict
/// (`valid: false` and a `code` when refused). A valid or refused-after-identification
/// key's call is recorded in its usage with the given `route`, and its rate limit spent
/// when it passes.
#[utoipa::path(post, path = "/v1/keys/verify", tag = "verify",
    request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse, description = "The verdict"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 422, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = ["keys:verify"])))]
pub async fn verify_key(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(body): AppJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let checked = body.check()?;
    let (started, at) = (Instant::now(), Utc::now());
    let key = match state.auth.identify(&body.token).await {
        Ok(key) if key.org_id == principal.org_id() => key,
        // Another organisation's key is as unknown as a made-up one.
        Ok(_) => return Ok(Json(VerifyResponse::invalid())),
        // Work bounds on unproven tokens hold here too: the caller is told to wait.
        Err(failure @ (AuthFailure::TooManyFailures { .. } | AuthFailure::Busy)) => {
            return Err(failure.to_error(state.auth.environment()));
        }
        Err(_) => return Ok(Json(VerifyResponse::invalid())),
    };
    match key.status(at) {
        KeyStatus::Revoked => return Ok(Json(VerifyResponse::of(&key, VerifyCode::Revoked, None))),
        KeyStatus::Expired => return Ok(Json(VerifyResponse::of(&key, VerifyCode::Expired, None))),
        KeyStatus::Active => {}
    }
    let admitted = match &checked.unheld {
        None => admit(&state, &key, checked.ip, &checked.required).await,
        Some(name) => Err(Refusal {
            error: ApiError::InsufficientScope(name.clone()),
            limit: state
                .limits
                .peek(key.id, state.requests_per_minute(&key).await),
        }),
    };
    let (code, status, limit) = match admitted {
        Ok(limit) => (VerifyCode::Valid, 200, limit),
        Err(Refusal { error, limit }) => {
            let code = match error {
                ApiError::IpNotAllowed => VerifyCode::IpNotAllowed,
                ApiError::InsufficientScope(_) => VerifyCode::InsufficientScope,
                _ => VerifyCode::RateLimited,
            };
            (code, error.status_and_code().0.as_u16(), limit)
        }
    };
    let call = Call {
        started,
        at,
        method: checked.method,
        route: checked.route,
        client_ip: checked.ip,
        request_id: None,
    };
    record(&state, &key, call, status).await;
    Ok(Json(VerifyResponse::of(&key, code, Some(limit))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_read_a_route_as_method_and_path() {
        assert_eq!(
            parse_route("get /invoices/{id}"),
            Some(("GET".into(), "/invoices/{id}".into()))
        );
        for bad in [
            "GET",
            "GET invoices",
            "GET /a b",
            "G3T /a",
            " /a",
            "GETTINGSOMETHING /a",
        ] {
            assert_eq!(parse_route(bad), None, "{bad}");
        }
    }
}
