//! `/login`: the hosted sign-in page an application's users are sent to by `/authorize`, and
//! `/assets/camera.js`, the camera code it shares with `/demo`. Compiled into the binary; the
//! page loads nothing from elsewhere and talks only to this server.

use axum::{response::Response, routing::get, Router};

const PAGE: &str = include_str!("login/index.html");
const SCRIPT: &str = include_str!("login/login.js");
const STYLE: &str = include_str!("login/login.css");
const CAMERA: &str = include_str!("camera.js");

/// The routes of the page and its files.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/login",
            get(|| async { file(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/login/login.js",
            get(|| async { file(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/login/login.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/camera.js",
            get(|| async { file(CAMERA, "text/javascript; charset=utf-8") }),
        )
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    super::embedded::camera_page_file(body, content_type)
}
