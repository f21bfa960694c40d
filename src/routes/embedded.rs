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

/// The policy of the webcam pages (`/demo`, `/login`): only this server's files and API, the
/// camera for this origin alone, and never in a frame (a framed camera page invites
/// clickjacking).
const CAMERA_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                             connect-src 'self'; media-src 'self' blob: mediastream:; \
                             img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; \
                             frame-ancestors 'none'";

/// A file of a webcam page: `body` as `content_type` under [`CAMERA_POLICY`], the camera
/// allowed to this origin alone.
pub(super) fn camera_page_file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = file(body, content_type, CAMERA_POLICY);
    response.headers_mut().insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(self), microphone=()"),
    );
    response
}
