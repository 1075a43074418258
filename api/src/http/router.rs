//! The router shared by `main` and the tests: every resource's routes, the auth layer over
//! those that need a key, the problem+json fallbacks, then every layer
//! ([`super::middleware::layers`]).

use axum::Router;
use axum::middleware;
use axum::routing::get;

use crate::app::AppState;
use crate::http::{bounds, metrics};
use crate::routes;

/// The router shared by `main` and the tests, with every layer.
pub fn app(state: AppState) -> Router {
    // Every route that needs a key sits behind the auth layer. It is a `route_layer`: it
    // runs only for matched routes, after routing, so it knows the route template.
    let protected = Router::new()
        .merge(routes::keys::router())
        .merge(routes::usage::router())
        .merge(routes::audit::router())
        .merge(routes::data::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ));
    let router = Router::new()
        .merge(routes::platform::router())
        .merge(crate::openapi::router())
        .route("/metrics", get(metrics::render))
        .merge(protected)
        // Errors no handler wrote are problem+json too: a path no route has (404), and a
        // method a route does not have (405; axum adds `Allow`). Set after every merge:
        // the 405 fallback applies to the routes registered before it.
        .fallback(bounds::not_found)
        .method_not_allowed_fallback(bounds::method_not_allowed)
        .with_state(state);
    super::middleware::layers(router)
}
