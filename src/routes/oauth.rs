//! OAuth2 endpoints: `POST /token` (the refresh-token grant; face logins go through
//! `/verify/`), `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662, admins only).

use axum::{
    extract::{rejection::FormRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Form, Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{Authenticated, RequestOrigin},
    forms::{TokenForm, TokenHandleForm},
    AppState,
};
use crate::{service, tokens::Introspection};

/// OAuth2 error response (RFC 6749, section 5.2).
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    #[schema(example = "invalid_grant")]
    pub error: String,
    pub error_description: String,
    /// The same sentence as `error_description`, as every error of this API has.
    pub detail: String,
    #[schema(example = "INVALID_GRANT")]
    pub code: String,
    /// The request id, also sent as the `x-request-id` header; quote it when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(OAuthError {
            error: error.into(),
            error_description: description.into(),
            detail: description.into(),
            code: error.to_ascii_uppercase(),
            // Filled in by the error envelope, as on every error.
            request_id: None,
        }),
    )
        .into_response()
}

/// A token pair: OAuth2's field names, and `/verify/`'s `token` beside them.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// The same access token under the name `/verify/` gives it.
    pub token: String,
    /// Always `bearer`, as from `/verify/` (OAuth2 compares it without case).
    pub token_type: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// The next refresh token; the one presented is spent.
    pub refresh_token: String,
}

/// OAuth2 token endpoint: trade a refresh token for a new access and refresh token.
///
/// Refresh tokens are single-use. Presenting one that was already used revokes every token of
/// its session (it has been stolen, or replayed). Other grants answer `unsupported_grant_type`.
#[utoipa::path(
    post,
    path = "/token", operation_id = "refresh_token",
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A new token pair", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant` (unknown, expired, used or revoked) or `unsupported_grant_type`", body = OAuthError),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Expected an application/x-www-form-urlencoded body",
        );
    };
    if form.grant_type != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Face Lock issues tokens through face verification (POST /verify/) and refreshes them with grant_type=refresh_token",
        );
    }
    let Some(refresh_token) = form.refresh_token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    match state.facelock.refresh(&refresh_token, &origin).await {
        Ok(pair) => Json(TokenResponse {
            token: pair.access_token.clone(),
            access_token: pair.access_token,
            token_type: "bearer".into(),
            expires_in: pair.expires_in.as_secs(),
            refresh_token: pair.refresh_token,
        })
        .into_response(),
        Err(service::Error::InvalidGrant) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The refresh token is unknown, expired, already used or revoked",
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The `token` field of a revocation or introspection request.
fn token_param(form: Result<Form<TokenHandleForm>, FormRejection>) -> Option<String> {
    form.ok().map(|Form(f)| f.token).filter(|t| !t.is_empty())
}

fn missing_token() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "token is required",
    )
}

/// Revoke a token (RFC 7009).
///
/// A refresh token revokes its whole session; an access token is refused until it expires.
/// Answers 200 whether or not the token was known, so it reveals nothing.
#[utoipa::path(
    post,
    path = "/revoke", operation_id = "revoke_token",
    tag = "auth",
    request_body(content = TokenHandleForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or unknown"),
        (status = 400, description = "`invalid_request`: no token", body = OAuthError),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    form: Result<Form<TokenHandleForm>, FormRejection>,
) -> Response {
    let Some(token) = token_param(form) else {
        return missing_token();
    };
    match state.facelock.revoke(&token).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Introspect a token (RFC 7662); admins only.
///
/// `active` is false for anything not currently valid: unknown, forged, expired, revoked, or of
/// a deleted user. For an active token the answer carries its claims.
#[utoipa::path(
    post,
    path = "/introspect", operation_id = "introspect_token",
    tag = "auth",
    request_body(content = TokenHandleForm, content_type = "application/x-www-form-urlencoded"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's state", body = Introspection),
        (status = 400, description = "`invalid_request`: no token", body = OAuthError),
        (status = 401, description = "Missing, malformed, expired or revoked caller token", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
    )
)]
pub async fn introspect(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    Authenticated(caller): Authenticated,
    form: Result<Form<TokenHandleForm>, FormRejection>,
) -> Response {
    let Some(token) = token_param(form) else {
        return missing_token();
    };
    match state.facelock.introspect(&caller, &token, &origin).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
