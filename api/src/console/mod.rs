//! The admin console (DESIGN section 9): a single page served from the binary at
//! `GET /console`, with its script, style sheet and the vendored chart library (uPlot) under
//! `/console/...`. Every file is embedded at compile time (`include_bytes!`): no CDN, no
//! file system at run time.
//!
//! The page is a client of the public JSON API only: it sends the signed-in key as
//! `Authorization: Bearer` on the same origin, so these routes need no key and sit outside
//! the auth layer (the files are the same for everyone and hold no data).
//!
//! Every console response carries `Content-Security-Policy: default-src 'self'` (no inline
//! script or style, nothing from another origin), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`. Cache: the page,
//! script and style sheet are `no-cache` with a content `ETag` (a new binary is picked up at
//! once, an unchanged file answers 304); the vendored files carry their version in their name
//! and are `immutable`.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// The console's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'";

/// How long a file may be reused without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caching {
    /// Ask every time (`ETag` / `If-None-Match` makes that cheap).
    Revalidate,
    /// The name carries the version: keep it a year.
    Immutable,
}

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    caching: Caching,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file the console serves. The vendored names keep uPlot's version (see
/// `api/console/vendor/README.md`).
const ASSETS: &[Asset] = &[
    Asset {
        path: "/console",
        content_type: HTML,
        body: include_bytes!("../../console/index.html"),
        caching: Caching::Revalidate,
    },
    Asset {
        path: "/console/app.js",
        content_type: JS,
        body: include_bytes!("../../console/app.js"),
        caching: Caching::Revalidate,
    },
    Asset {
        path: "/console/app.css",
        content_type: CSS,
        body: include_bytes!("../../console/app.css"),
        caching: Caching::Revalidate,
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: SVG,
        body: include_bytes!("../../console/favicon.svg"),
        caching: Caching::Revalidate,
    },
    Asset {
        path: "/console/vendor/uplot-1.6.32.esm.js",
        content_type: JS,
        body: include_bytes!("../../console/vendor/uplot-1.6.32.esm.js"),
        caching: Caching::Immutable,
    },
    Asset {
        path: "/console/vendor/uplot-1.6.32.min.css",
        content_type: CSS,
        body: include_bytes!("../../console/vendor/uplot-1.6.32.min.css"),
        caching: Caching::Immutable,
    },
];

/// Each asset's strong `ETag` (the first 16 bytes of its SHA-256, hex), computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// `GET /console` (and `/console/`), its script, style sheet and vendored files.
pub fn router() -> Router<AppState> {
    routes()
}

/// [`router`] for any state (no route reads it).
fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router =
        Router::new().route("/console/", get(|h: HeaderMap| async move { serve(0, &h) }));
    for (index, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.path,
            get(move |h: HeaderMap| async move { serve(index, &h) }),
        );
    }
    router
}

/// The headers every console response carries.
fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Answers asset `index`: 200 with the body, or 304 when `If-None-Match` names its ETag.
fn serve(index: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), ETAGS.get(index)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    security_headers(headers);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(match asset.caching {
            Caching::Revalidate => "no-cache",
            Caching::Immutable => "public, max-age=31536000, immutable",
        }),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        routes()
    }

    async fn get_path(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn it_should_serve_every_asset_with_its_type_and_the_security_headers() {
        for asset in ASSETS {
            let res = get_path(asset.path, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{}", asset.path);
            let h = res.headers();
            assert_eq!(
                h[header::CONTENT_TYPE],
                asset.content_type,
                "{}",
                asset.path
            );
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], "default-src 'self'");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(h.contains_key(header::ETAG));
        }
    }

    #[tokio::test]
    async fn it_should_answer_304_when_the_browser_already_has_the_file() {
        let first = get_path("/console/app.js", None).await;
        let tag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        let again = get_path("/console/app.js", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::X_FRAME_OPTIONS], "DENY");
    }

    #[tokio::test]
    async fn it_should_let_vendored_files_be_cached_and_ask_again_for_the_page() {
        let page = get_path("/console", None).await;
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        let lib = get_path("/console/vendor/uplot-1.6.32.esm.js", None).await;
        assert!(
            lib.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }

    #[test]
    fn it_should_load_no_script_or_style_inline_or_from_another_origin() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("<style"), "inline style");
        assert!(!html.contains("style="), "style attribute");
        assert!(!html.contains("http://") && !html.contains("https://"));
        for asset in ASSETS {
            if asset.path.ends_with(".js") || asset.path == "/console" {
                // Every path the page and script name is one this module serves.
                let text = std::str::from_utf8(asset.body).unwrap();
                for needle in ["src=\"/console", "href=\"/console", "from \"/console"] {
                    for (at, _) in text.match_indices(needle) {
                        let rest = &text[at + needle.len() - "/console".len()..];
                        let path = rest.split('"').next().unwrap();
                        assert!(
                            ASSETS.iter().any(|a| a.path == path),
                            "{} refers to {path}, which is not served",
                            asset.path
                        );
                    }
                }
            }
        }
    }
}
