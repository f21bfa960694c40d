//! `/demo`: a page to enrol and log in with a webcam, calling the same API a client calls.
//! Its files are compiled into the binary: no CDN, no build step, nothing to install.

use axum::{response::Response, routing::get, Router};

const PAGE: &str = include_str!("demo/index.html");
const SCRIPT: &str = include_str!("demo/demo.js");
const STYLE: &str = include_str!("demo/demo.css");

/// The routes of the page and its files.
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

fn file(body: &'static str, content_type: &'static str) -> Response {
    super::embedded::camera_page_file(body, content_type)
}
