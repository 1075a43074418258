//! Bounds on what a client can make the server keep or say: the request id, the size of
//! the header section, metric label values, and the bodies of errors that axum or hyper
//! produce before any handler runs (404, 405, 413, 415, 431), which are made problem+json
//! like every other error.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest client-chosen request id kept (DESIGN section 6).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The largest header section (names, values and their separators) a request may have
/// before it is answered 431. hyper refuses larger ones itself (about 400 KiB, or more than
/// 100 headers) with an empty body; this bound, well below those, lets keyledger answer
/// every usual case with problem+json.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Whether a client's `X-Request-Id` is kept: 1 to 128 printable ASCII characters
/// (space to `~`). Anything else (too long, control characters, non-ASCII) is replaced by a
/// generated id, so a client cannot make the server store or echo arbitrary bytes.
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        && bytes.iter().any(|b| *b != b' ')
}

/// The outermost request step: refuses an oversized header section (431) and drops an
/// unacceptable `X-Request-Id`, so that the request id layer after it generates one (and
/// the response echoes that).
pub async fn bound_request(mut req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        // "name: value\r\n"
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    let headers = req.headers_mut();
    let ids = headers.get_all(REQUEST_ID).iter().count();
    if ids > 1
        || headers
            .get(REQUEST_ID)
            .is_some_and(|v| !acceptable_request_id(v))
    {
        headers.remove(REQUEST_ID);
    }
    next.run(req).await
}

/// Turns an error response produced outside keyledger's handlers (axum's 404 and 405,
/// a body-limit 413, a 415, a 431, the request timeout's 503) into problem+json, keeping its headers (`Allow` on a
/// 405). Responses that are problem+json already pass untouched.
pub async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let error = match res.status() {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge,
        // The request timeout's answer has no body and no content type; a 503 of a
        // handler (`/readyz`'s JSON) keeps its body.
        StatusCode::SERVICE_UNAVAILABLE if !res.headers().contains_key(header::CONTENT_TYPE) => {
            ApiError::Unavailable("the request did not complete within the request timeout".into())
        }
        _ => return res,
    };
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return res;
    }
    let (parts, _) = res.into_parts();
    let mut problem = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// The 404 for a path no route has.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The 405 for a method a route does not have (axum adds `Allow`).
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A metric label for a method, from a fixed set: a made-up method name counts as
/// `other`, so clients cannot add metric series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_keep_a_short_printable_request_id() {
        assert!(acceptable_request_id(&HeaderValue::from_static(
            "req-123 abc/DEF:_~"
        )));
        let max = "a".repeat(MAX_REQUEST_ID_LEN);
        assert!(acceptable_request_id(
            &HeaderValue::from_str(&max).expect("ascii")
        ));
    }

    #[test]
    fn it_should_refuse_a_long_blank_or_unprintable_request_id() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        assert!(!acceptable_request_id(
            &HeaderValue::from_str(&long).expect("ascii")
        ));
        assert!(!acceptable_request_id(&HeaderValue::from_static("")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("   ")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("a\tb")));
        assert!(!acceptable_request_id(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").expect("opaque bytes")
        ));
    }

    #[test]
    fn it_should_label_made_up_methods_as_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        let made_up = Method::from_bytes(b"FROBNICATE").expect("a token");
        assert_eq!(method_label(&made_up), "other");
    }
}
