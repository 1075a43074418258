//! Route modules; each exposes `fn router() -> OpenApiRouter<AppState>`.
//!
//! Each route is declared once: its `#[utoipa::path]` annotation gives the path, the
//! method, the OpenAPI operation and (in `security`) the scope it needs; `routes!` mounts
//! the handler from it, the served document is read from the same routers, and the auth
//! layer's access table ([`crate::auth::scopes::AccessTable`]) too.

pub mod audit;
pub mod data;
pub mod keys;
pub mod platform;
pub mod usage;

use axum::http::{HeaderMap, HeaderValue, header};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::http::error::ApiError;

/// Every route that needs a key (the auth layer goes over these).
pub fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(keys::router())
        .merge(usage::router())
        .merge(audit::router())
        .merge(data::router())
}

/// The documented routes that need no key (health).
pub fn public() -> OpenApiRouter<AppState> {
    platform::router()
}

/// `ETag: "<version>"`.
pub fn etag(version: u64) -> (header::HeaderName, HeaderValue) {
    (
        header::ETAG,
        HeaderValue::from_str(&format!("\"{version}\""))
            .unwrap_or(HeaderValue::from_static("\"0\"")),
    )
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`), if the header is present.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not visible ASCII".into()))?
        .trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    raw.parse::<u64>().map(Some).map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match must be a version from this resource's ETag, got {raw:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_read_if_match_in_every_usual_form() {
        for (raw, want) in [("\"3\"", 3), ("W/\"4\"", 4), ("5", 5)] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_MATCH, HeaderValue::from_static(raw));
            assert_eq!(if_match(&h).unwrap(), Some(want));
        }
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(if_match(&h).is_err());
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
    }
}
