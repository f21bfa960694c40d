//! One error type for every 4xx and 5xx the API returns, and the one JSON body they share:
//! `{"detail": "...", "code": "...", "request_id": "..."}`.
//!
//! `detail` is a human sentence, as FastAPI's errors have, so clients of the original keep
//! working; `code` is stable and machine-readable. Internal failures are logged once, here, with
//! their cause chain, and reach the client as an opaque 500 that only carries the request id.
//! The core's [`service::Error`] is mapped to statuses in one place: `From<service::Error>`.

use std::borrow::Cow;

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{
    domain::InvalidInput, engine::EngineError, images::ImageError, service, tokens::TokenProblem,
};

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in a sentence.
    #[schema(example = "No face detected in the image")]
    pub detail: String,
    /// Stable machine-readable code.
    #[schema(example = "NO_FACE")]
    pub code: String,
    /// The request id, also sent as the `x-request-id` header; quote it when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `NO_FACE`: the image holds no detectable face.
    #[error("No face detected in the image")]
    NoFace,
    /// 400 `MULTIPLE_FACES`: enrolment needs exactly one face.
    #[error("More than one face in the image; enrol with a photo of one person")]
    MultipleFaces,
    /// 400 `AMBIGUOUS_FACES`: verification found several faces of similar size.
    #[error("Several faces of similar size in the image; cannot tell whose login it is")]
    AmbiguousFaces,
    /// 400 with a quality code such as `LOW_SHARPNESS`: the face is too poor to enrol.
    #[error("{detail}")]
    PoorQuality { code: &'static str, detail: String },
    /// 400 `NO_MATCH`: no enrolled face is similar enough.
    #[error("No matching face found")]
    NoMatch,
    /// 400 `INVALID_IMAGE`: a known image format whose bytes cannot be decoded.
    #[error("{0}")]
    InvalidImage(String),
    /// 415 `UNSUPPORTED_IMAGE`: not a JPEG, PNG or WebP.
    #[error("The file is not a JPEG, PNG or WebP image")]
    UnsupportedImage,
    /// 413 `IMAGE_TOO_LARGE`: the decoded image would exceed the pixel limit.
    #[error("{0}")]
    ImageTooLarge(String),
    /// 413 `PAYLOAD_TOO_LARGE`: the request body is over the configured limit.
    #[error("The request body is too large")]
    PayloadTooLarge,
    /// 408 `BODY_TOO_SLOW`: the body fell behind `FACELOCK_MIN_BODY_BYTES_PER_SEC`.
    #[error("The request body arrived too slowly; send it again on a better connection")]
    BodyTooSlow,
    /// 400 `BAD_REQUEST`: the request cannot be read (malformed multipart, say).
    #[error("{0}")]
    BadRequest(String),
    /// 422 `VALIDATION_ERROR`: a field is missing or invalid.
    #[error("{field}: {message}")]
    Validation {
        field: Cow<'static, str>,
        message: String,
    },
    /// 401 with `WWW-Authenticate: Bearer`: a missing, malformed, expired, forged or revoked
    /// token.
    #[error("{}", token_detail(*.0))]
    Unauthorized(TokenProblem),
    /// 403 `FORBIDDEN`: a valid token without the right for this action.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404 `USER_NOT_FOUND`.
    #[error("User not found")]
    UserNotFound,
    /// 404 `AUTHORIZATION_UNKNOWN`: no sign-in request waits under this id (never issued,
    /// answered already, or lapsed after ten minutes).
    #[error("This sign-in request is unknown, already answered or expired; go back to the application and sign in again")]
    AuthorizationUnknown,
    /// 409 `FACE_ALREADY_ENROLLED`: the face belongs to another user.
    #[error("This face is already enrolled for another user")]
    FaceAlreadyEnrolled,
    /// 409 `USER_EXISTS`: the user id is taken and the caller may not add faces to it.
    #[error("A user with this user_id already exists")]
    UserExists,
    /// 429 `RATE_LIMITED` with `Retry-After`: too many engine requests, or too many failed
    /// logins, from this client.
    #[error("Too many requests; try again later")]
    RateLimited { retry_after_secs: u32 },
    /// 429 `ACCOUNT_LOCKED` with `Retry-After`: too many failed logins for this user id.
    #[error("Too many failed logins for this account; try again later")]
    AccountLocked { retry_after_secs: u32 },
    /// 502 `UPSTREAM_AUTH`: the face service refused our credentials (an operator problem).
    #[error("The face service refused the server's credentials")]
    UpstreamAuth,
    /// 503 `ENGINE_UNAVAILABLE` with `Retry-After`: the face engine is throttled or down.
    #[error("The face engine is temporarily unavailable; try again shortly")]
    Unavailable { retry_after_secs: u32 },
    /// 400 `CHALLENGE_UNKNOWN`, `CHALLENGE_EXPIRED` or `CHALLENGE_USED`: the liveness challenge
    /// cannot be answered; fetch a new one.
    #[error("{}", challenge_detail(*.0))]
    ChallengeRefused(service::ChallengeProblem),
    /// 400 `LIVENESS_FACE_CHANGED`, `LIVENESS_MOTION_MISSING` or `LIVENESS_FLAT`: the frames do
    /// not show a live head following the challenge.
    #[error("{}", not_live_detail(&.0))]
    NotLive(crate::liveness::Refusal),
    /// 400 `LIVENESS_REQUIRED`: this server logs in (or enrols a new user id) only after a
    /// liveness challenge.
    #[error("This server requires a liveness check: fetch POST /liveness/challenge and send its challenge_id with frames")]
    LivenessRequired,
    /// 501 `LIVENESS_UNAVAILABLE`: the configured face engine cannot check liveness.
    #[error("This server's face engine cannot check liveness")]
    LivenessUnavailable,
    /// 503 `STORAGE_FULL` with `Retry-After`: the store has no room for the write; nothing
    /// was stored, and an operator must free space.
    #[error("The server's storage is full; nothing was stored. Try again later")]
    StorageFull(#[source] Cause),
    /// 500 `INTERNAL`: logged with its cause chain, never shown to the caller.
    #[error("Internal server error")]
    Internal(#[source] Cause),
}

fn challenge_detail(problem: service::ChallengeProblem) -> &'static str {
    use service::ChallengeProblem as P;
    match problem {
        P::Unknown => "Unknown liveness challenge",
        P::Expired => "The liveness challenge has expired; fetch a new one",
        P::Used => "The liveness challenge was already answered; fetch a new one",
    }
}

fn not_live_detail(refusal: &crate::liveness::Refusal) -> String {
    use crate::liveness::Refusal as R;
    match refusal {
        R::FaceChanged { frame } => {
            format!("Frame {frame} shows another face than an earlier frame")
        }
        R::MotionMissing { seen } if seen.is_empty() => {
            "The frames do not show the head moving as the challenge asked".to_owned()
        }
        R::MotionMissing { seen } => format!(
            "The frames show the head moving {} ({}), not as the challenge asked",
            if seen.len() == 1 { "once" } else { "in turn" },
            crate::liveness::encode_actions(seen).replace(',', ", ")
        ),
        R::Flat { .. } => "The face moved as a flat picture does, not as a head turning".to_owned(),
    }
}

fn token_detail(problem: TokenProblem) -> &'static str {
    match problem {
        TokenProblem::Missing => "Not authenticated",
        TokenProblem::Malformed => "Malformed bearer token",
        TokenProblem::Expired => "Token has expired",
        TokenProblem::Invalid => "Could not validate credentials",
        TokenProblem::Revoked => "Token has been revoked",
    }
}

impl ApiError {
    pub fn validation(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            NoFace
            | MultipleFaces
            | AmbiguousFaces
            | PoorQuality { .. }
            | NoMatch
            | InvalidImage(_)
            | BadRequest(_)
            | ChallengeRefused(_)
            | NotLive(_)
            | LivenessRequired => StatusCode::BAD_REQUEST,
            LivenessUnavailable => StatusCode::NOT_IMPLEMENTED,
            UnsupportedImage => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ImageTooLarge(_) | PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            UserNotFound | AuthorizationUnknown => StatusCode::NOT_FOUND,
            UserExists | FaceAlreadyEnrolled => StatusCode::CONFLICT,
            RateLimited { .. } | AccountLocked { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamAuth => StatusCode::BAD_GATEWAY,
            Unavailable { .. } | StorageFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            NoFace => "NO_FACE",
            MultipleFaces => "MULTIPLE_FACES",
            AmbiguousFaces => "AMBIGUOUS_FACES",
            PoorQuality { code, .. } => code,
            NoMatch => "NO_MATCH",
            InvalidImage(_) => "INVALID_IMAGE",
            UnsupportedImage => "UNSUPPORTED_IMAGE",
            ImageTooLarge(_) => "IMAGE_TOO_LARGE",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            BodyTooSlow => "BODY_TOO_SLOW",
            BadRequest(_) => "BAD_REQUEST",
            Validation { .. } => "VALIDATION_ERROR",
            Unauthorized(TokenProblem::Missing) => "NOT_AUTHENTICATED",
            Unauthorized(TokenProblem::Expired) => "TOKEN_EXPIRED",
            Unauthorized(TokenProblem::Revoked) => "TOKEN_REVOKED",
            Unauthorized(_) => "INVALID_TOKEN",
            Forbidden(_) => "FORBIDDEN",
            UserNotFound => "USER_NOT_FOUND",
            AuthorizationUnknown => "AUTHORIZATION_UNKNOWN",
            UserExists => "USER_EXISTS",
            FaceAlreadyEnrolled => "FACE_ALREADY_ENROLLED",
            RateLimited { .. } => "RATE_LIMITED",
            AccountLocked { .. } => "ACCOUNT_LOCKED",
            UpstreamAuth => "UPSTREAM_AUTH",
            Unavailable { .. } => "ENGINE_UNAVAILABLE",
            ChallengeRefused(service::ChallengeProblem::Unknown) => "CHALLENGE_UNKNOWN",
            ChallengeRefused(service::ChallengeProblem::Expired) => "CHALLENGE_EXPIRED",
            ChallengeRefused(service::ChallengeProblem::Used) => "CHALLENGE_USED",
            NotLive(crate::liveness::Refusal::FaceChanged { .. }) => "LIVENESS_FACE_CHANGED",
            NotLive(crate::liveness::Refusal::MotionMissing { .. }) => "LIVENESS_MOTION_MISSING",
            NotLive(crate::liveness::Refusal::Flat { .. }) => "LIVENESS_FLAT",
            LivenessRequired => "LIVENESS_REQUIRED",
            LivenessUnavailable => "LIVENESS_UNAVAILABLE",
            StorageFull(_) => "STORAGE_FULL",
            Internal(_) => "INTERNAL",
        }
    }
}

/// Carried in the response extensions so the envelope middleware can add the request id.
#[derive(Clone, Debug)]
struct ErrorInfo {
    detail: String,
    code: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %crate::telemetry::error_chain(cause.as_ref()), "internal error");
        }
        if let ApiError::StorageFull(cause) = &self {
            tracing::error!(cause = %crate::telemetry::error_chain(cause.as_ref()), "the storage is full: free space");
        }
        let status = self.status();
        let info = ErrorInfo {
            detail: self.to_string(),
            code: self.code().to_owned(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                detail: info.detail.clone(),
                code: info.code.clone(),
                request_id: None,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                let challenge = match self.code() {
                    "NOT_AUTHENTICATED" => "Bearer",
                    _ => "Bearer error=\"invalid_token\"",
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            ApiError::StorageFull(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(60u32));
            }
            ApiError::Unavailable { retry_after_secs }
            | ApiError::RateLimited { retry_after_secs }
            | ApiError::AccountLocked { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response.extensions_mut().insert(info);
        response
    }
}

/// Gives every error response, including those made by the framework and middleware (404, 405,
/// 408, 413, a caught panic), the JSON body above with the request id filled in.
pub async fn error_envelope(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_page {
        // A page for a person's browser (a sign-in request that cannot be sent back).
        return response;
    }
    if is_json && response.extensions().get::<ErrorInfo>().is_none() {
        // A handler's own documented JSON (the OAuth2 error, an unhealthy /health): an error
        // body among them gets its request id too.
        return with_request_id(response, request_id).await;
    }
    let (mut parts, body) = response.into_parts();
    let info = match parts.extensions.remove::<ErrorInfo>() {
        Some(info) => info,
        None => {
            let (code, detail) = generic_error(status);
            ErrorInfo {
                detail: detail.into(),
                code: code.into(),
            }
        }
    };
    drop(body);
    let body = ErrorBody {
        detail: info.detail,
        code: info.code,
        request_id,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Adds `request_id` to a JSON error body of our shape (`detail` and `code`) that lacks one.
async fn with_request_id(response: Response, request_id: Option<String>) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let mut json: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(json) => json,
        Err(_) => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    if let (Some(object), Some(id)) = (json.as_object_mut(), request_id) {
        if object.contains_key("detail")
            && object.contains_key("code")
            && !object.contains_key("request_id")
        {
            object.insert("request_id".into(), id.into());
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

pub(super) fn generic_error(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", "Not Found"),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "Method Not Allowed"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ("TIMEOUT", "The request took too long")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "The request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("UNSUPPORTED_MEDIA_TYPE", "Unsupported content type")
        }
        StatusCode::UNPROCESSABLE_ENTITY => ("VALIDATION_ERROR", "The request is invalid"),
        StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", "Too many requests"),
        s if s.is_client_error() => ("BAD_REQUEST", "Bad request"),
        _ => ("INTERNAL", "Internal server error"),
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        use service::Error as E;
        match e {
            E::Engine(e) => e.into(),
            E::Image(e) => e.into(),
            E::NoMatch => ApiError::NoMatch,
            E::Invalid(i) => i.into(),
            E::Unauthenticated(problem) => ApiError::Unauthorized(problem),
            E::Forbidden(why) => ApiError::Forbidden(why),
            E::UserNotFound => ApiError::UserNotFound,
            E::UserExists => ApiError::UserExists,
            E::FaceAlreadyEnrolled => ApiError::FaceAlreadyEnrolled,
            E::AccountLocked { retry_after } => ApiError::AccountLocked {
                retry_after_secs: whole_seconds(retry_after),
            },
            E::SlowDown { retry_after } => ApiError::RateLimited {
                retry_after_secs: whole_seconds(retry_after),
            },
            E::Challenge(problem) => ApiError::ChallengeRefused(problem),
            E::NotLive(refusal) => ApiError::NotLive(refusal),
            E::LivenessRequired => ApiError::LivenessRequired,
            E::LivenessUnavailable => ApiError::LivenessUnavailable,
            // Only the token endpoint meets these, and it answers in OAuth's own shape.
            E::InvalidGrant | E::OAuth(_) => ApiError::BadRequest(e.to_string()),
            E::AuthorizationUnknown => ApiError::AuthorizationUnknown,
            E::Store(e @ crate::store::StoreError::Full { .. })
            | E::Token(crate::tokens::TokenError::Store(
                e @ crate::store::StoreError::Full { .. },
            )) => ApiError::StorageFull(e.into()),
            e @ (E::Store(_) | E::Token(_) | E::LegacyPhoto(_) | E::Task(_) | E::Randomness) => {
                ApiError::internal(e)
            }
        }
    }
}

/// A wait as `Retry-After` seconds: rounded up, at least 1.
fn whole_seconds(d: std::time::Duration) -> u32 {
    (d.as_millis().div_ceil(1000)).clamp(1, u128::from(u32::MAX)) as u32
}

impl From<InvalidInput> for ApiError {
    fn from(i: InvalidInput) -> Self {
        ApiError::validation(i.field, i.message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NoFace => ApiError::NoFace,
            EngineError::MultipleFaces => ApiError::MultipleFaces,
            EngineError::AmbiguousFaces => ApiError::AmbiguousFaces,
            EngineError::PoorQuality(q) => ApiError::PoorQuality {
                code: q.code(),
                detail: q.detail().into(),
            },
            EngineError::InvalidImage(msg) => ApiError::InvalidImage(msg),
            EngineError::ImageTooLarge(msg) => ApiError::ImageTooLarge(msg),
            EngineError::Throttled => ApiError::Unavailable {
                retry_after_secs: 5,
            },
            EngineError::Unavailable(cause) => {
                tracing::warn!(%cause, "face engine unavailable");
                ApiError::Unavailable {
                    retry_after_secs: 30,
                }
            }
            EngineError::AccessDenied(cause) => {
                tracing::error!(%cause, "face engine refused our credentials");
                ApiError::UpstreamAuth
            }
            e @ EngineError::Internal(_) => ApiError::internal(e),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Empty => ApiError::validation("face_image", "the uploaded file is empty"),
            ImageError::UnknownFormat => ApiError::UnsupportedImage,
            ImageError::TooLarge { .. } | ImageError::TooMuchMemory { .. } => {
                ApiError::ImageTooLarge(e.to_string())
            }
            ImageError::Corrupt(_) | ImageError::TooSmall { .. } => {
                ApiError::InvalidImage(e.to_string())
            }
            e @ ImageError::Encode(_) => ApiError::internal(e),
        }
    }
}
