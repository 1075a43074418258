//! Route modules; each exposes `fn router() -> OpenApiRouter<AppState>`.
//!
//! Each route is declared once: its `#[utoipa::path]` annotation gives the path, the
//! method, the OpenAPI operation and (in `security`) the scope it needs; `routes!` mounts
//! the handler from it, the served document is read from the same routers, and the auth
//! layer's access table ([`crate::auth::scopes::AccessTable`]) too.

pub mod audit;
pub mod custom_scopes;
pub mod data;
pub mod gateway;
pub mod keys;
pub mod platform;
pub mod usage;

use axum::http::{HeaderValue, header};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Every route that needs a key (the auth layer goes over these).
pub fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(keys::router())
        .merge(usage::router())
        .merge(audit::router())
        .merge(data::router())
        .merge(gateway::verify_router())
        .merge(custom_scopes::router())
}

/// The documented routes outside the auth layer: health, and the gateway endpoint, which
/// runs the auth order itself with the scope its route rules name.
pub fn public() -> OpenApiRouter<AppState> {
    platform::router().merge(gateway::gateway_router())
}

/// `ETag: "<version>"`.
pub fn etag(version: u64) -> (header::HeaderName, HeaderValue) {
    (
        header::ETAG,
        HeaderValue::from_str(&format!("\"{version}\""))
            .unwrap_or(HeaderValue::from_static("\"0\"")),
    )
}
