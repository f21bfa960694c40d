//! `/demo`: a page to enrol and log in with a webcam, calling the same API a client calls.
//! Its files are compiled into the binary: no CDN, no build step, nothing to install.

use axum::{
    http::{header, HeaderValue},
    response::Response,
    routing::get,
    Router,
};

const PAGE: &str = include_str!("demo/index.html");
const SCRIPT: &str = include_str!("demo/demo.js");
const STYLE: &str = include_str!("demo/demo.css");

/// The page loads only its own files and talks only to this server; the camera is allowed to
/// this origin alone, and no other site may frame the page (a framed camera page invites
/// clickjacking).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; media-src 'self' blob: mediastream:; img-src 'self' data: blob:; \
                      base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The demo's routes, to merge into the application when the demo is on.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/demo",
            get(|| async { file(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/demo/",
            get(|| async { file(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/demo/demo.js",
            get(|| async { file(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/demo/demo.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
}

/// A demo file: the camera is allowed to this origin alone.
fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = super::embedded::file(body, content_type, POLICY);
    response.headers_mut().insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(self), microphone=()"),
    );
    response
}
