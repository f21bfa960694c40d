//! Files compiled into the binary (the webcam page, ReDoc), served with the headers every such
//! file needs: its type, its page's Content-Security-Policy, no type sniffing, no referrer,
//! and no caching past the binary that holds it.

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};

/// `body` as `content_type` under `policy`.
pub(super) fn file(
    body: &'static str,
    content_type: &'static str,
    policy: &'static str,
) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(policy),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // The files change with the binary; a browser asks again rather than run old code.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
