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

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::events::ApiCallRecorded;

use self::client_ip::client_ip_of;
use self::scopes::{Access, AccessTable};
use crate::app::AppState;
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

    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let client_ip = client_ip_of(req.extensions(), req.headers(), &app.trusted_proxies);

    let per_minute = app.requests_per_minute(&key).await;

    let (mut response, limit_state) = 'checks: {
        // 3. Where from.
        if let Some(ip) = client_ip
            && !key.allowed_ips.permits(ip)
        {
            break 'checks (
                ApiError::IpNotAllowed.into_response(),
                app.limits.peek(key.id, per_minute),
            );
        }
        // 4. What for.
        match required {
            Access::AnyKey => {}
            Access::Scope(scope) if key.scopes.contains(scope) => {}
            Access::Scope(scope) => {
                break 'checks (
                    ApiError::InsufficientScope(scope.as_str().to_owned()).into_response(),
                    app.limits.peek(key.id, per_minute),
                );
            }
        }
        // 5. How often.
        match app.limits.check(key.id, per_minute) {
            Err(exceeded) => {
                let res = ApiError::RateLimited {
                    retry_after_secs: exceeded.retry_after_seconds,
                }
                .into_response();
                break 'checks (res, exceeded.state);
            }
            Ok(limit_state) => {
                // 6. The handler.
                req.extensions_mut().insert(Principal { key: key.clone() });
                req.extensions_mut().insert(limit_state);
                (next.run(req).await, limit_state)
            }
        }
    };

    set_rate_limit_headers(response.headers_mut(), limit_state);

    let status = response.status().as_u16();
    let call = ApiCallRecorded {
        org_id: key.org_id,
        at,
        method: method.to_string(),
        route,
        status,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        client_ip,
        request_id,
    };
    if !app.usage.record(key.id, call).await {
        // Durable mode could not commit the event: say so rather than pretend.
        tracing::error!(key_id = %key.id, "usage event not recorded");
    }
    response
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

fn unauthenticated(failure: AuthFailure, environment: domain::token::Environment) -> Response {
    metrics::counter!("keyledger_auth_failures_total", "reason" => failure.as_str()).increment(1);
    failure.to_error(environment).into_response()
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset`, and the IETF draft's structured
/// `RateLimit-Policy` and `RateLimit` fields.
fn set_rate_limit_headers(headers: &mut HeaderMap, s: RateLimitState) {
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
