//! Every layer around the router, in one function, in order.

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::http::error::ApiError;
use crate::http::{bounds, metrics};

/// The largest JSON body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request may take before it is answered with 503 `unavailable` (problem+json)
/// and its handler is dropped. Well above the longest wait a handler makes on purpose
/// ([`crate::app::READ_YOUR_WRITES_TIMEOUT`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Wraps `router` in every layer. Each `.layer()` wraps the ones before it, so the last
/// one added sees the request first. Order of a request: header bounds (431, drop an
/// unacceptable request id) -> request id -> trace span -> problem+json for bare errors ->
/// request metrics -> propagate id -> timeout -> body limit -> panic catcher -> route
/// (-> auth layer -> handler).
pub fn layers(router: Router) -> Router {
    layers_with_timeout(router, REQUEST_TIMEOUT)
}

/// [`layers`] with another request timeout (tests use a short one).
fn layers_with_timeout(router: Router, timeout: Duration) -> Router {
    let x_request_id = HeaderName::from_static(bounds::REQUEST_ID);
    router
        // Innermost, so a panic anywhere in the auth layer or a handler becomes a logged
        // 500 inside the trace span (which carries the request id) and is counted.
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Its bare 503 (no body, no content type) is made problem+json by
        // `problem_for_bare_errors` below.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(middleware::from_fn(metrics::count_requests))
        .layer(middleware::from_fn(bounds::problem_for_bare_errors))
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
                .get(bounds::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .layer(middleware::from_fn(bounds::bound_request))
}

/// A panic in a handler or the auth layer: logged (by [`ApiError::Internal`]) with its
/// message, answered with the generic 500 problem+json.
fn answer_panic(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    ApiError::Internal(format!("panic: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::header;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn send(router: Router, path: &str) -> (StatusCode, String, serde_json::Value) {
        let res = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let content_type = res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn it_should_answer_a_panicking_handler_with_a_500_problem_without_the_message() {
        // Arrange
        let router = layers(Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("the secret detail");
                }
                "unreachable"
            }),
        ));

        // Act
        let (status, content_type, body) = send(router, "/boom").await;

        // Assert
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["code"], "internal");
        assert!(!body.to_string().contains("the secret detail"));
    }

    #[tokio::test]
    async fn it_should_answer_a_request_over_the_timeout_with_a_503_problem() {
        // Arrange
        let timeout = Duration::from_millis(50);
        let router = layers_with_timeout(
            Router::new().route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(timeout * 100).await;
                    "late"
                }),
            ),
            timeout,
        );

        // Act
        let (status, content_type, body) = send(router, "/slow").await;

        // Assert
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["code"], "unavailable");
    }
}
