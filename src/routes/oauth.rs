//! OAuth2 endpoints: `POST /token` (OpenID Connect's authorization code grant and the
//! refresh-token grant), `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662, admins
//! only).

use axum::{
    extract::{rejection::FormRejection, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
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
use crate::{
    service::{self, ClientCredentials, CodeExchange},
    tokens::Introspection,
};
use base64::Engine as _;

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
    /// For `authorization_code`: the ID token (ES256) for the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// For `authorization_code`: the scopes granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl TokenResponse {
    fn of(pair: service::TokenPair, id_token: Option<String>, scope: Option<String>) -> Response {
        let body = Json(Self {
            token: pair.access_token.clone(),
            access_token: pair.access_token,
            token_type: "bearer".into(),
            expires_in: pair.expires_in.as_secs(),
            refresh_token: pair.refresh_token,
            id_token,
            scope,
        });
        // RFC 6749 5.1: tokens are not to be cached.
        (
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response()
    }
}

/// OAuth2 token endpoint: redeem an authorization code, or trade a refresh token.
///
/// `grant_type=authorization_code` (OpenID Connect): the client authenticates with
/// `client_secret_basic` or `client_secret_post` (a public client sends its `client_id` and the
/// PKCE `code_verifier`); the code is single-use, lives 60 s and is bound to the client, the
/// redirect URI and the PKCE challenge; presenting it twice revokes what it gave. The answer
/// adds `id_token` and `scope`.
///
/// `grant_type=refresh_token`: refresh tokens are single-use; presenting one that was already
/// used revokes every token of its session. An OpenID Connect session's client authenticates
/// as at the code exchange.
#[utoipa::path(
    post,
    path = "/token", operation_id = "request_tokens",
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A new token pair", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant` (unknown, expired, used or revoked; a code of another client or redirect URI, or a wrong PKCE verifier) or `unsupported_grant_type`", body = OAuthError),
        (status = 401, description = "`invalid_client`: unknown client or wrong secret", body = OAuthError),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Expected an application/x-www-form-urlencoded body",
        );
    };
    let credentials = match client_credentials(&headers, &form) {
        Ok(c) => c,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let answer = match form.grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = form.code.filter(|c| !c.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code is required",
                );
            };
            let exchange = CodeExchange {
                code,
                redirect_uri: form.redirect_uri,
                code_verifier: form.code_verifier,
            };
            state
                .facelock
                .redeem_code(exchange, credentials.as_ref(), &origin)
                .await
                .map(|t| TokenResponse::of(t.tokens, Some(t.id_token), Some(t.scope)))
        }
        "refresh_token" => {
            let Some(refresh_token) = form.refresh_token.filter(|t| !t.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            state
                .facelock
                .refresh(&refresh_token, credentials.as_ref(), &origin)
                .await
                .map(|pair| TokenResponse::of(pair, None, None))
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )
        }
    };
    answer.unwrap_or_else(|e| match e {
        service::Error::InvalidGrant => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The refresh token is unknown, expired, already used or revoked",
        ),
        service::Error::OAuth(refusal) if refusal.error == "invalid_client" => {
            let mut response =
                oauth_error(StatusCode::UNAUTHORIZED, refusal.error, refusal.description);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"facelock\""),
            );
            response
        }
        service::Error::OAuth(refusal) => {
            oauth_error(StatusCode::BAD_REQUEST, refusal.error, refusal.description)
        }
        e => ApiError::from(e).into_response(),
    })
}

/// The client's credentials: HTTP Basic (`client_secret_basic`, each part form-encoded as RFC
/// 6749 2.3.1 says) or the form's `client_id` and `client_secret`, never both.
fn client_credentials(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Option<ClientCredentials>, &'static str> {
    let from_form = form.client_id.clone().filter(|c| !c.is_empty());
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    let Some((_, encoded)) = basic else {
        return Ok(from_form.map(|client_id| ClientCredentials {
            client_id,
            secret: form.client_secret.clone().filter(|s| !s.is_empty()),
        }));
    };
    if form.client_secret.is_some() {
        return Err("send the client's secret in one way only");
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or("malformed Basic credentials")?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or("malformed Basic credentials")?;
    let unescape = |part: &str| -> String {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let client_id = unescape(id);
    if from_form.as_ref().is_some_and(|f| *f != client_id) {
        return Err("client_id differs from the Basic credentials");
    }
    Ok(Some(ClientCredentials {
        client_id,
        secret: Some(unescape(secret)),
    }))
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
