//! The auth layer: one middleware over every route that needs a key, in the order of
//! DESIGN section 6. Each step has its module here, named for what it checks; each failure
//! has its status:
//!
//! 1. a bearer token, well-formed, checksum right (no I/O)            else 401 ([`verify`])
//! 2. a known key, not revoked or expired, of this server's environment else 401 ([`verify`]:
//!    the key cache; [`proof`]: bounded argon2 work for tokens not yet proven)
//! 3. the client IP within the key's allowed CIDRs                    else 403 `ip_not_allowed`
//!    ([`client_ip`])
//! 4. the key holds the route's scope                                else 403 `insufficient_scope`
//!    ([`scopes`]: declared in the route's annotation)
//! 5. within the key's rate limit (GCRA; the plan's, or the key's lower one) else 429 +
//!    `Retry-After` ([`rate_limit`])
//! 6. the handler runs; then `ApiCallRecorded` is appended for every call from step 3 on
//!    (403 and 429 included; [`crate::usage`]), and every response to an identified key
//!    carries the `RateLimit-*` headers.
//!
//! [`authenticate`] below is the order itself; the modules hold the steps.

pub mod client_ip;
pub mod proof;
pub mod rate_limit;
pub mod scopes;
pub mod verify;

pub use verify::{
    AuthFailure, Authenticator, CacheConfig, Principal, RateLimitState, bearer_from_headers,
};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::apikey;
use domain::events::ApiCallRecorded;
use domain::scope::Scope;

use self::client_ip::client_ip_of;
use self::scopes::{Access, AccessTable};
use crate::app::{App, AppState};
use crate::http::error::ApiError;

/// The middleware; install with `axum::middleware::from_fn_with_state` as a
/// `route_layer`, so the matched route template is known.
pub async fn authenticate(
    State((state, access)): State<(AppState, Arc<AccessTable>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let at = Utc::now();
    let app = &state;
    let environment = app.auth.environment();

    // Before anything else: does the route have this method at all? A method it lacks is
    // a 405 with `Allow` (no key needed to learn that), never a scope refusal.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let Some(required) = access.access(&method, &route) else {
        return method_not_allowed(&access, &route);
    };

    // 1 and 2: who is calling. A failure here identifies no key: it is counted in
    // metrics, never in a key's stream.
    let Some(token) = bearer_from_headers(req.headers()).map(str::to_owned) else {
        return unauthenticated(AuthFailure::Missing, environment);
    };
    let key = match app.auth.authenticate(&token).await {
        Ok(key) => key,
        Err(failure) => return unauthenticated(failure, environment),
    };
    drop(token);

    let request_id = request_id_of(req.headers());
    let client_ip = client_ip_of(req.extensions(), req.headers(), &app.trusted_proxies);

    // 3 to 5, then 6: the handler. A verifying service's own limit is not spent by its
    // verify calls: the verified key's is (else one busy service would be held to one
    // key's limit for all its callers). Its calls are still recorded.
    let admitted = if required == Access::Scope(Scope::KEYS_VERIFY) {
        admit_unlimited(app, &key, client_ip, &[required]).await
    } else {
        admit(app, &key, client_ip, &[required]).await
    };
    let (mut response, limit_state) = match admitted {
        Err(refusal) => (refusal.error.into_response(), refusal.limit),
        Ok(limit_state) => {
            req.extensions_mut().insert(Principal { key: key.clone() });
            req.extensions_mut().insert(limit_state);
            (next.run(req).await, limit_state)
        }
    };
    set_rate_limit_headers(response.headers_mut(), limit_state);
    let call = Call {
        started,
        at,
        method: method.to_string(),
        route,
        client_ip,
        request_id,
    };
    record(app, &key, call, response.status().as_u16()).await;
    response
}

/// Steps 3 to 5 refused an identified key: the error, and the key's rate-limit state
/// (unspent) for the `RateLimit-*` headers.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub limit: RateLimitState,
}

/// Steps 3 to 5 of the order for a key that steps 1 and 2 identified: where from (its
/// allowed IPs), what for (every scope of `required`), how often (its rate limit, spent
/// only when the first two pass). The one place these checks are written: the auth layer,
/// `POST /v1/keys/verify` and the gateway endpoint all call it.
pub async fn admit(
    app: &App,
    key: &apikey::State,
    client_ip: Option<IpAddr>,
    required: &[Access],
) -> Result<RateLimitState, Refusal> {
    let per_minute = app.requests_per_minute(key).await;
    where_and_what(app, key, per_minute, client_ip, required)?;
    // 5. How often.
    app.limits
        .check(key.id, per_minute)
        .map_err(|exceeded| Refusal {
            error: ApiError::RateLimited {
                retry_after_secs: exceeded.retry_after_seconds,
            },
            limit: exceeded.state,
        })
}

/// Steps 3 and 4 only: the key's rate limit is shown, not spent.
pub async fn admit_unlimited(
    app: &App,
    key: &apikey::State,
    client_ip: Option<IpAddr>,
    required: &[Access],
) -> Result<RateLimitState, Refusal> {
    let per_minute = app.requests_per_minute(key).await;
    where_and_what(app, key, per_minute, client_ip, required)?;
    Ok(app.limits.peek(key.id, per_minute))
}

/// Steps 3 (where from) and 4 (what for).
fn where_and_what(
    app: &App,
    key: &apikey::State,
    per_minute: u32,
    client_ip: Option<IpAddr>,
    required: &[Access],
) -> Result<(), Refusal> {
    let refuse = |error| Refusal {
        error,
        limit: app.limits.peek(key.id, per_minute),
    };
    // 3. Where from.
    if let Some(ip) = client_ip
        && !key.allowed_ips.permits(ip)
    {
        return Err(refuse(ApiError::IpNotAllowed));
    }
    // 4. What for.
    for access in required {
        if let Access::Scope(scope) = access
            && !key.scopes.contains(*scope)
        {
            return Err(refuse(ApiError::InsufficientScope(
                scope.as_str().to_owned(),
            )));
        }
    }
    Ok(())
}

/// One call of an identified key, as step 6 records it.
#[derive(Debug)]
pub struct Call {
    /// When the request arrived (for its latency).
    pub started: Instant,
    pub at: chrono::DateTime<Utc>,
    pub method: String,
    /// A route template (never a raw path: usage groups by it).
    pub route: String,
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<String>,
}

/// Step 6: appends the call's `ApiCallRecorded` with the status it was answered with (in
/// durable mode, returns once it is committed).
pub async fn record(app: &App, key: &apikey::State, call: Call, status: u16) {
    let event = ApiCallRecorded {
        org_id: key.org_id,
        at: call.at,
        method: call.method,
        route: call.route,
        status,
        latency_us: u64::try_from(call.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        client_ip: call.client_ip,
        request_id: call.request_id,
    };
    if !app.usage.record(key.id, event).await {
        // Durable mode could not commit the event: say so rather than pretend.
        tracing::error!(key_id = %key.id, "usage event not recorded");
    }
}

/// The request id the request-id layer left in the headers.
pub fn request_id_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The 405 for a method the route lacks, with `Allow` from the access table. A route
/// behind the layer with no entry at all is a bug: refused (fail closed), not served.
fn method_not_allowed(access: &AccessTable, route: &str) -> Response {
    let allowed = access.methods_of(route);
    if allowed.is_empty() {
        tracing::error!(
            route,
            "route behind the auth layer is missing from the access table"
        );
        return ApiError::Internal(format!("route {route} has no access rule")).into_response();
    }
    let mut res = ApiError::MethodNotAllowed.into_response();
    if let Ok(v) = HeaderValue::from_str(&allowed.join(",")) {
        res.headers_mut().insert(axum::http::header::ALLOW, v);
    }
    res
}

pub fn unauthenticated(failure: AuthFailure, environment: domain::token::Environment) -> Response {
    metrics::counter!("keyledger_auth_failures_total", "reason" => failure.as_str()).increment(1);
    failure.to_error(environment).into_response()
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset`, and the IETF draft's structured
/// `RateLimit-Policy` and `RateLimit` fields.
pub fn set_rate_limit_headers(headers: &mut HeaderMap, s: RateLimitState) {
    let pairs = [
        ("ratelimit-limit", s.limit.to_string()),
        ("ratelimit-remaining", s.remaining.to_string()),
        ("ratelimit-reset", s.reset_seconds.to_string()),
        (
            "ratelimit-policy",
            format!("\"per-key\";q={};w=60", s.limit),
        ),
        (
            "ratelimit",
            format!("\"per-key\";r={};t={}", s.remaining, s.reset_seconds),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}
