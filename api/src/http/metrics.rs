//! Prometheus metrics (`GET /metrics`): requests by route and status, authentication
//! failures by reason, argon2 verifications, cache hits and misses, usage-writer batch
//! sizes and commit latency, projector lag.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Some(h.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("keyledger_usage_batch_size".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            )
        });
    let handle = match builder.and_then(|b| b.install_recorder()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            return None;
        }
    };
    let _ = HANDLE.set(handle.clone());
    Some(handle)
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    // Projector lag: how far each read model is behind the store's head.
    if let Ok(head) = state.store.head_position().await {
        for p in &state.projectors {
            metrics::gauge!("keyledger_projector_lag_events", "projection" => p.name())
                .set(head.saturating_sub(p.position()) as f64);
        }
    }
    let body = HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Counts every request by method, route template and status, with its latency.
/// (Layers added with `Router::layer` run after routing, so the template is known.)
pub async fn count_requests(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    // Label values come from fixed sets: a made-up method is `other`, a path no route has
    // is `unmatched`, so clients cannot add series.
    let method = crate::http::bounds::method_label(req.method());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(
        "keyledger_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "keyledger_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    res
}
