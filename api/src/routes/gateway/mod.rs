//! Protecting other APIs with keyledger's keys (DESIGN section 11): `POST /v1/keys/verify`
//! for a service that checks a key itself, and `GET /v1/gateway/auth` for a gateway
//! (nginx `auth_request`, Envoy HTTP `ext_authz`) that asks keyledger before it forwards a
//! call. Both run the auth layer's own steps ([`crate::auth::admit`], [`crate::auth::record`]):
//! the same key cache, revocation fan-out, rate limits and usage events.

mod auth;
mod rules;
mod verify;

pub use auth::*;
pub use rules::{GatewayRules, Rule, RulesError};
pub use verify::*;

use axum::routing::{any, post};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// `POST /v1/keys/verify`: behind the auth layer (the caller's key needs `keys:verify`).
pub fn verify_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_key))
}

/// `/v1/gateway/auth`, outside the auth layer: it runs the order itself, with the scope
/// its route rules give the original call. Documented as `GET` (nginx's subrequest);
/// every method is answered, and Envoy's `ext_authz` may append the original path
/// (`/v1/gateway/auth/<path>`).
pub fn gateway_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(gateway_auth))
        .route(
            GATEWAY_PATH,
            post(gateway_auth)
                .put(gateway_auth)
                .patch(gateway_auth)
                .delete(gateway_auth)
                .options(gateway_auth),
        )
        .route("/v1/gateway/auth/{*path}", any(gateway_auth))
}

/// Where gateways send their checks.
pub const GATEWAY_PATH: &str = "/v1/gateway/auth";
