//! The admin console (`/console`): served by the real binary, with no key, as HTML and its
//! assets, each with the console's security headers (DESIGN section 9). Its behaviour in a
//! browser is tested by tests/console/run.sh (Playwright and chromium).

use crate::helpers::{Backend, spawn_app};

/// Every console path and the content type it answers with.
const ASSETS: &[(&str, &str)] = &[
    ("/console", "text/html; charset=utf-8"),
    ("/console/", "text/html; charset=utf-8"),
    ("/console/app.js", "text/javascript; charset=utf-8"),
    ("/console/app.css", "text/css; charset=utf-8"),
    ("/console/favicon.svg", "image/svg+xml"),
    (
        "/console/vendor/uplot-1.6.32.esm.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/console/vendor/uplot-1.6.32.min.css",
        "text/css; charset=utf-8",
    ),
];

#[tokio::test]
async fn the_console_and_its_assets_answer_without_a_key_with_their_types_and_security_headers() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;

    for (path, content_type) in ASSETS {
        // Act
        let res = app.client.get(app.url(path)).send().await.unwrap();

        // Assert
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(h["content-type"], *content_type, "{path}");
        assert_eq!(h["content-security-policy"], "default-src 'self'", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert!(h.contains_key("cache-control"), "{path}");
        assert!(h.contains_key("etag"), "{path}");
        assert!(!res.bytes().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn the_console_page_loads_only_its_own_script_and_style_sheets() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;

    // Act
    let page = app
        .client
        .get(app.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert: the labels the outside tests look for, and nothing inline.
    for label in [
        ">API key</label>",
        ">Sign in</button>",
        ">Create API key</button>",
        ">Status</label>",
        ">Success rate</th>",
    ] {
        assert!(page.contains(label), "{label}");
    }
    assert!(page.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="));
}

#[tokio::test]
async fn an_unchanged_console_file_answers_304_and_an_unknown_one_404_problem_json() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let first = app
        .client
        .get(app.url("/console/app.js"))
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].clone();

    // Act
    let again = app
        .client
        .get(app.url("/console/app.js"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    let missing = app
        .client
        .get(app.url("/console/nope.js"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["x-frame-options"], "DENY");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}
