//! `GET /v1/gateway/auth`: a gateway asks whether to forward a call. The key comes from
//! `Authorization`; the call from `X-Original-Method` and `X-Original-URI` (nginx), or
//! Envoy's own method and path (`ext_authz` appends it to this path, or sends
//! `X-Envoy-Original-Path`); the client from `X-Forwarded-For` when the gateway is a
//! trusted proxy. The route rules give the scope; then the auth layer's own steps run.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::GATEWAY_PATH;
use crate::app::AppState;
use crate::auth::client_ip::client_ip_of;
use crate::auth::scopes::Access;
use crate::auth::{
    AuthFailure, Call, admit, bearer_from_headers, record, request_id_of, set_rate_limit_headers,
    unauthenticated,
};
use crate::http::error::{ApiError, Problem};

/// The call the gateway asks about: its method and path.
fn original_call(req: &Request) -> (String, String) {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let method = header("x-original-method")
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| req.method().as_str().to_owned());
    let uri = header("x-original-uri")
        .or_else(|| header("x-envoy-original-path"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let rest = req
                .uri()
                .path()
                .strip_prefix(GATEWAY_PATH)
                .unwrap_or_default();
            if rest.is_empty() {
                "/".to_owned()
            } else {
                rest.to_owned()
            }
        });
    let path = uri.split(['?', '#']).next().unwrap_or("/").to_owned();
    (method, path)
}

/// Ask whether a gateway may forward a call: 200 with `X-Keyledger-Key-Id`,
/// `X-Keyledger-Org-Id` and the `RateLimit-*` headers for the gateway to pass upstream;
/// else 401, 403 (`no_route_rule` when no rule covers the call) or 429 with problem+json.
/// The call is recorded in the key's usage under its rule's path pattern.
#[utoipa::path(get, path = "/v1/gateway/auth", tag = "verify",
    params(("X-Original-Method" = Option<String>, Header, description = "the method of the call the gateway asks about (nginx); default: this request's method"),
           ("X-Original-URI" = Option<String>, Header, description = "the path and query of that call (nginx)")),
    responses((status = 200, description = "Forward the call: the key's id and organisation are in `X-Keyledger-Key-Id` and `X-Keyledger-Org-Id`"),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn gateway_auth(State(state): State<AppState>, req: Request) -> Response {
    let (started, at) = (Instant::now(), Utc::now());
    let environment = state.auth.environment();
    let Some(token) = bearer_from_headers(req.headers()) else {
        return unauthenticated(AuthFailure::Missing, environment);
    };
    let key = match state.auth.authenticate(token).await {
        Ok(key) => key,
        Err(failure) => return unauthenticated(failure, environment),
    };
    let (method, path) = original_call(&req);
    let client_ip = client_ip_of(req.extensions(), req.headers(), &state.trusted_proxies);
    let rule = state.gateway.matching(&method, &path);
    let (route, verdict) = match rule {
        None => {
            let limit = state
                .limits
                .peek(key.id, state.requests_per_minute(&key).await);
            (
                "*".to_owned(),
                Err((
                    ApiError::NoRouteRule {
                        method: method.clone(),
                        path,
                    },
                    limit,
                )),
            )
        }
        Some(rule) => (
            rule.pattern.clone(),
            admit(&state, &key, client_ip, &[Access::Scope(rule.scope)])
                .await
                .map_err(|r| (r.error, r.limit)),
        ),
    };
    let (mut response, limit) = match verdict {
        Ok(limit) => {
            let mut headers = HeaderMap::new();
            for (name, value) in [
                ("x-keyledger-key-id", key.id.to_string()),
                ("x-keyledger-org-id", key.org_id.to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
            ((StatusCode::OK, headers).into_response(), limit)
        }
        Err((error, limit)) => (error.into_response(), limit),
    };
    set_rate_limit_headers(response.headers_mut(), limit);
    let call = Call {
        started,
        at,
        method,
        route,
        client_ip,
        request_id: request_id_of(req.headers()),
    };
    record(&state, &key, call, response.status().as_u16()).await;
    response
}
