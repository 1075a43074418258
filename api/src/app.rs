//! The axum application: state, routes and layers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware;
use axum::routing::get;
use commands::keys::KeyService;
use domain::apikey;
use domain::plan::Plan;
use domain::store::EventStore;
use ipnet::IpNet;
use projections::keys::KeyQueries;
use projections::{ProjectorHandle, ReadDb};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::routes;

/// The largest JSON body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a management read waits for the read models to include this node's last
/// write (read-your-writes) before answering with what they have.
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a request handler may need.
pub struct App {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The read-model database.
    pub read_db: ReadDb,
    /// The write side's command handlers.
    pub keys: Arc<KeyService>,
    /// Key verification with this node's cache.
    pub auth: Authenticator,
    /// Key list and details.
    pub key_queries: KeyQueries,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// This node's projectors (read-your-writes waits for them).
    pub projectors: Vec<ProjectorHandle>,
    /// The global position of this node's last write.
    pub last_written: AtomicU64,
    /// Per-key rate limits and the plans they follow.
    pub limits: crate::auth::rate_limit::RateLimits,
    /// The group-commit writer of `ApiCallRecorded` events.
    pub usage: crate::usage::UsageRecorder,
}

impl App {
    /// Waits until every read model includes `position` (and remembers it as this node's
    /// last write, so later reads wait for it too).
    pub async fn read_your_writes(&self, position: u64) {
        self.last_written.fetch_max(position, Ordering::AcqRel);
        for p in &self.projectors {
            if !p.wait_for(position, READ_YOUR_WRITES_TIMEOUT).await {
                tracing::warn!(
                    projection = p.name(),
                    position,
                    "read model did not catch up in time; answering with what it has"
                );
            }
        }
    }

    /// The global position of this node's last write.
    pub fn last_written(&self) -> u64 {
        self.last_written.load(Ordering::Acquire)
    }

    /// The requests per minute `key` may make, by the domain's one rule
    /// ([`apikey::State::requests_per_minute`]: its plan's limit, or its own if lower).
    /// The plan comes from the rate limiter's cache, read from the store on a miss; when it
    /// cannot be read, the lowest plan's limit applies.
    pub async fn requests_per_minute(&self, key: &apikey::State) -> u32 {
        let plan = self
            .limits
            .plan(key.org_id, || async {
                self.keys
                    .load_org(key.org_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| (o.plan, o.version))
            })
            .await
            .unwrap_or(Plan::Starter);
        key.requests_per_minute(plan)
    }
}

/// Cheap to clone: handlers share one `App`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

/// The router shared by `main` and the tests, with every layer.
pub fn app(state: AppState) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
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
    Router::new()
        .merge(routes::platform::router())
        .merge(crate::openapi::router())
        .route("/metrics", get(crate::metrics::render))
        .merge(protected)
        // Errors no handler wrote are problem+json too: a path no route has (404), and a
        // method a route does not have (405; axum adds `Allow`). Set after every merge:
        // the 405 fallback applies to the routes registered before it.
        .fallback(crate::bounds::not_found)
        .method_not_allowed_fallback(crate::bounds::method_not_allowed)
        .with_state(state)
        // Layers: each `.layer()` wraps the ones before it, so the last one added sees the
        // request first. Order of a request: header bounds (431, drop an unacceptable
        // request id) -> request id -> trace span -> problem+json for bare errors ->
        // request metrics -> propagate id -> body limit -> route (-> auth layer -> handler).
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(middleware::from_fn(crate::metrics::count_requests))
        .layer(middleware::from_fn(crate::bounds::problem_for_bare_errors))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The route template, never the raw path (which may hold ids) or headers
            // (which hold the bearer token).
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .layer(middleware::from_fn(crate::bounds::bound_request))
}
