//! `POST /token`: the OAuth2 token endpoint. Face Lock issues tokens through `/verify/`, so
//! every grant here is refused with the standard OAuth2 error body (RFC 6749, section 5.2).

use axum::{http::StatusCode, Json};
use serde::Serialize;
use utoipa::ToSchema;

/// OAuth2 error response.
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    #[schema(example = "unsupported_grant_type")]
    pub error: String,
    pub error_description: String,
    /// The same sentence as `error_description`, as every error of this API has.
    pub detail: String,
    #[schema(example = "UNSUPPORTED_GRANT_TYPE")]
    pub code: String,
}

/// OAuth2 token endpoint (no grant supported: use `/verify/`).
#[utoipa::path(
    post,
    path = "/token",
    tag = "auth",
    request_body(content_type = "application/x-www-form-urlencoded", description = "An OAuth2 token request"),
    responses((status = 400, description = "Always: `unsupported_grant_type`", body = OAuthError))
)]
pub async fn token() -> (StatusCode, Json<OAuthError>) {
    let description = "Face Lock issues tokens through face verification: POST /verify/";
    (
        StatusCode::BAD_REQUEST,
        Json(OAuthError {
            error: "unsupported_grant_type".into(),
            error_description: description.into(),
            detail: description.into(),
            code: "UNSUPPORTED_GRANT_TYPE".into(),
        }),
    )
}
