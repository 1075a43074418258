//! The router shared by `main` and the tests: every resource's routes, the auth layer over
//! those that need a key, the OpenAPI document read from the same routes, the problem+json
//! fallbacks, then every layer ([`super::middleware::layers`]).

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::get;

use crate::app::AppState;
use crate::auth::scopes::{AccessTable, AccessTableError};
use crate::http::{bounds, metrics};
use crate::{openapi, routes};

/// The router shared by `main` and the tests, with every layer. Fails only when a route's
/// annotation names no scope or an unknown one (a start-up error).
pub fn app(state: AppState) -> Result<Router, AccessTableError> {
    // Every route that needs a key sits behind the auth layer. It is a `route_layer`: it
    // runs only for matched routes, after routing, so it knows the route template. Its
    // access table is read from the very routes it guards.
    let protected = routes::protected();
    let access = Arc::new(AccessTable::from_openapi(protected.get_openapi())?);
    let protected = protected.route_layer(middleware::from_fn_with_state(
        (state.clone(), access),
        crate::auth::authenticate,
    ));
    let (api, document) = utoipa_axum::router::OpenApiRouter::with_openapi(openapi::base())
        .merge(routes::public())
        .merge(protected)
        .split_for_parts();
    let router = api
        .merge(openapi::router(openapi::complete_document(document)))
        .merge(crate::console::router())
        .route("/metrics", get(metrics::render))
        // Errors no handler wrote are problem+json too: a path no route has (404), and a
        // method a route does not have (405; axum adds `Allow`). Set after every merge:
        // the 405 fallback applies to the routes registered before it.
        .fallback(bounds::not_found)
        .method_not_allowed_fallback(bounds::method_not_allowed)
        .with_state(state);
    Ok(super::middleware::layers(router))
}
