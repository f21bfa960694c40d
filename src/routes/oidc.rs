//! OpenID Connect's browser-facing endpoints: `GET /authorize` holds an application's request
//! and sends the browser to the login page; `GET`/`POST /authorize/{request_id}` are what that
//! page (or any client: an operator's own page, a native app) calls to show the request and
//! sign in with a face; `/userinfo` and `/end_session` serve the application afterwards. The
//! token endpoint is [`super::oauth::token`].

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{bearer_token, EngineQuota, RequestOrigin, RequestQuota},
    forms::{EndSessionQuery, Multipart, SignInForm},
    AppState,
};
use crate::{
    oidc::{AuthorizeError, AuthorizeParams},
    service::{EndSession, UserInfo},
    tokens::TokenProblem,
};

/// A page for a browser that cannot be sent back to its application. `message` is always one
/// of this server's own sentences, never a request's text.
fn page(status: StatusCode, title: &'static str, message: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body style=\"font-family: system-ui, sans-serif; \
         max-width: 32rem; margin: 3rem auto; padding: 0 1rem\"><h1>{title}</h1><p>{message}</p>\
         </body></html>"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// OpenID Connect authorization endpoint.
///
/// Checks the application's request (authorization code flow with PKCE) and sends the browser
/// (303) to the hosted login page `/login?request=<id>`. An unknown client or a redirect URI
/// it has not registered gets an error page and is never redirected to; any other error goes
/// back to the redirect URI with `error`, `error_description`, `state` and `iss`. `prompt=none`
/// answers `login_required`: every sign-in is a face at the camera.
#[utoipa::path(
    get,
    path = "/authorize", operation_id = "start_sign_in",
    tag = "openid",
    params(AuthorizeParams),
    responses(
        (status = 303, description = "To the login page, or back to the application with an error"),
        (status = 400, description = "An error page: the client or its redirect URI is not registered", content_type = "text/html"),
        (status = 429, description = "An error page: too many requests from this address (`FACELOCK_RATE_LIMIT_PER_MINUTE`)", content_type = "text/html"),
    )
)]
pub async fn authorize(
    State(state): State<AppState>,
    quota: Result<RequestQuota, ApiError>,
    query: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    if quota.is_err() {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Cannot sign in",
            "Too many sign-in requests from this address. Wait a minute, then go back to the \
             application and sign in again.",
        );
    }
    let Ok(Query(params)) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "Cannot sign in",
            "The application sent a malformed sign-in request (a parameter repeated, or not \
             text).",
        );
    };
    match state.facelock.authorize(params).await {
        Ok(id) => Redirect::to(&format!("/login?request={id}")).into_response(),
        Err(AuthorizeError::Unredirectable(why)) => {
            page(StatusCode::BAD_REQUEST, "Cannot sign in", why)
        }
        Err(AuthorizeError::Redirect {
            to,
            error,
            description,
        }) => Redirect::to(&to.error(state.facelock.tokens().issuer(), error, &description))
            .into_response(),
    }
}

/// A pending sign-in request, as a login page shows it.
#[derive(Serialize, ToSchema)]
pub struct PendingSignIn {
    pub client_id: String,
    /// The application's name, as its operator registered it.
    pub client_name: String,
    /// A single photo will not do: answer a liveness challenge.
    pub liveness_required: bool,
    /// The user the application named (`login_hint`): the face is checked against this user
    /// only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
}

/// Describe a pending sign-in request.
///
/// For a login page: which application asks, and whether it demands liveness.
#[utoipa::path(
    get,
    path = "/authorize/{request_id}", operation_id = "pending_sign_in",
    tag = "openid",
    params(("request_id" = String, Path, description = "The `request` of the login page's URL")),
    responses(
        (status = 200, body = PendingSignIn),
        (status = 404, description = "`AUTHORIZATION_UNKNOWN`", body = ErrorBody),
    )
)]
pub async fn pending(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<PendingSignIn>, ApiError> {
    let pending = state.facelock.pending_login(&request_id).await?;
    Ok(Json(PendingSignIn {
        client_id: pending.client_id,
        client_name: pending.client_name,
        liveness_required: pending.liveness_required,
        login_hint: pending.login_hint.map(|u| u.to_string()),
    }))
}

/// Where to send the browser next.
#[derive(Serialize, ToSchema)]
pub struct NextStep {
    /// The application's redirect URI with `code` (or `error`), `state` and `iss`.
    pub redirect_to: String,
}

/// Sign in to an application with a face.
///
/// Takes the same evidence as `POST /verify/` (a photo, or a liveness challenge's frames when
/// the request demands liveness) and, when the face matches, answers the application's request
/// with a code: send the browser to `redirect_to`. A face that does not match leaves the request
/// pending; the lockout, the address delay and the audit trail apply as at `/verify/`.
#[utoipa::path(
    post,
    path = "/authorize/{request_id}", operation_id = "sign_in",
    tag = "openid",
    params(("request_id" = String, Path, description = "The `request` of the login page's URL")),
    request_body(content = SignInForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Signed in: send the browser on", body = NextStep),
        (status = 400, description = "`NO_MATCH`, `NO_FACE`, `AMBIGUOUS_FACES`, `EXTREME_POSE`, `INVALID_IMAGE`, `BAD_REQUEST`, `LIVENESS_REQUIRED`, `CHALLENGE_UNKNOWN`, `CHALLENGE_EXPIRED`, `CHALLENGE_USED`, `LIVENESS_FACE_CHANGED`, `LIVENESS_MOTION_MISSING`, `LIVENESS_FLAT`, `MULTIPLE_FACES`", body = ErrorBody),
        (status = 404, description = "`AUTHORIZATION_UNKNOWN`", body = ErrorBody),
        (status = 413, description = "The body or the image is too large", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_IMAGE`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`, `ACCOUNT_LOCKED`; see Retry-After", body = ErrorBody),
        (status = 501, description = "`LIVENESS_UNAVAILABLE`", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn sign_in(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    Path(request_id): Path<String>,
    _quota: EngineQuota,
    form: Multipart<SignInForm>,
) -> Result<Json<NextStep>, ApiError> {
    let mut form = form.data;
    let redirect_to = state
        .facelock
        .sign_in(&request_id, form.take_evidence()?, &origin)
        .await?;
    Ok(Json(NextStep { redirect_to }))
}

/// Decline to sign in.
///
/// Ends the request; the application is told `access_denied`.
#[utoipa::path(
    post,
    path = "/authorize/{request_id}/decline", operation_id = "decline_sign_in",
    tag = "openid",
    params(("request_id" = String, Path, description = "The `request` of the login page's URL")),
    responses(
        (status = 200, description = "Send the browser on", body = NextStep),
        (status = 404, description = "`AUTHORIZATION_UNKNOWN`", body = ErrorBody),
    )
)]
pub async fn decline(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<NextStep>, ApiError> {
    let redirect_to = state.facelock.decline(&request_id).await?;
    Ok(Json(NextStep { redirect_to }))
}

/// OpenID Connect userinfo endpoint.
///
/// Takes an access token issued through the authorization code flow (`Authorization: Bearer`)
/// and answers `sub`, with `name` under the `profile` scope and `email` under `email`.
#[utoipa::path(
    get,
    path = "/userinfo", operation_id = "get_userinfo",
    tag = "openid",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserInfo),
        (status = 401, description = "Missing, malformed, expired or revoked token, or one not issued through OpenID Connect", body = ErrorBody),
    )
)]
pub async fn userinfo(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Json<UserInfo>, ApiError> {
    let token = bearer_token(&headers)?.ok_or(ApiError::Unauthorized(TokenProblem::Missing))?;
    Ok(Json(state.facelock.userinfo(token).await?))
}

/// OpenID Connect userinfo endpoint (POST, as the specification also allows).
#[utoipa::path(
    post,
    path = "/userinfo", operation_id = "post_userinfo",
    tag = "openid",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserInfo),
        (status = 401, description = "Missing, malformed, expired or revoked token, or one not issued through OpenID Connect", body = ErrorBody),
    )
)]
pub async fn userinfo_post(
    state: State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Json<UserInfo>, ApiError> {
    userinfo(state, headers).await
}

/// OpenID Connect logout (RP-initiated).
///
/// Ends the session `id_token_hint` names (its refresh and access tokens, as `/revoke` does)
/// and sends the browser (303) to `post_logout_redirect_uri` when the client registered it,
/// with `state`; without one, a page says the user is signed out. An unregistered URI is never
/// redirected to.
#[utoipa::path(
    get,
    path = "/end_session", operation_id = "end_session",
    tag = "openid",
    params(EndSessionQuery),
    responses(
        (status = 303, description = "To the client's post-logout redirect URI"),
        (status = 200, description = "Signed out (a page)", content_type = "text/html"),
        (status = 422, description = "`id_token_hint` is not this server's, or `post_logout_redirect_uri` is not registered", body = ErrorBody),
    )
)]
pub async fn end_session(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    query: Result<Query<EndSessionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let request = EndSession {
        id_token_hint: q.id_token_hint.filter(|t| !t.is_empty()),
        client_id: q.client_id.filter(|c| !c.is_empty()),
        post_logout_redirect_uri: q.post_logout_redirect_uri.filter(|u| !u.is_empty()),
        state: q.state,
    };
    Ok(match state.facelock.end_session(request, &origin).await? {
        Some(to) => Redirect::to(&to).into_response(),
        None => page(
            StatusCode::OK,
            "Signed out",
            "You are signed out of the application.",
        ),
    })
}
