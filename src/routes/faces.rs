//! Enrolment, verification and comparison of faces.

use axum::{extract::State, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{Authenticated, EngineQuota, MaybeAuthenticated, RequestOrigin},
    forms::{CompareForm, Multipart, RegisterForm, VerifyForm},
    AppState,
};
use crate::service::{Actor, LoginRequest, Registration};

#[derive(Serialize, ToSchema)]
pub struct RegisterResponse {
    pub success: bool,
    pub user_id: String,
    /// The engine's id of the enrolled face.
    pub face_id: String,
    #[schema(example = "User registered successfully")]
    pub message: String,
}

/// Enrol a face.
///
/// Creates the user with this face. For a user id that already exists, the caller must send a
/// bearer token of that user or of an admin, and the face is added to the user; otherwise 409.
#[utoipa::path(
    post,
    path = "/register/", operation_id = "register_face",
    tag = "faces",
    request_body(content = RegisterForm, content_type = "multipart/form-data"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Face enrolled", body = RegisterResponse),
        (status = 400, description = "`NO_FACE`; `MULTIPLE_FACES`; a face too poor to enrol (`SMALL_BOUNDING_BOX`, `LOW_SHARPNESS`, `LOW_BRIGHTNESS`, `EXTREME_POSE`, `LOW_CONFIDENCE`, `LOW_FACE_QUALITY`); `INVALID_IMAGE`: undecodable; `BAD_REQUEST`: not a multipart body; `LIVENESS_REQUIRED`: a single photo for a new user id where FACELOCK_REGISTRATION=liveness; with frames: `CHALLENGE_UNKNOWN`, `CHALLENGE_EXPIRED`, `CHALLENGE_USED`, `LIVENESS_FACE_CHANGED`, `LIVENESS_MOTION_MISSING`, `LIVENESS_FLAT`", body = ErrorBody),
        (status = 401, description = "A bearer token was sent and is not valid", body = ErrorBody),
        (status = 403, description = "The user id is an administrator's and the caller is not an admin, or FACELOCK_REGISTRATION=admin and the caller is not an admin", body = ErrorBody),
        (status = 409, description = "`USER_EXISTS`: the user id exists and the caller may not add faces to it; `FACE_ALREADY_ENROLLED`: the face belongs to another user", body = ErrorBody),
        (status = 413, description = "The body or the image is too large", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: too many requests from this client; see Retry-After", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_IMAGE`: the file is not a JPEG, PNG or WebP image", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 502, description = "The face service refused the server's credentials", body = ErrorBody),
        (status = 501, description = "`LIVENESS_UNAVAILABLE`: frames were sent and the face engine cannot check liveness", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    _quota: EngineQuota,
    form: Multipart<RegisterForm>,
) -> Result<Json<RegisterResponse>, ApiError> {
    let mut form = form.data;
    let registration = Registration {
        evidence: form.take_evidence()?,
        user_id: form.user_id,
        full_name: form.full_name.into_inner(),
        email: form.email.into_inner(),
        origin,
    };
    let actor = caller.as_ref().map_or(Actor::Anonymous, Actor::Caller);
    let registered = state.facelock.register(registration, actor).await?;
    Ok(Json(RegisterResponse {
        success: true,
        user_id: registered.user.user_id.to_string(),
        face_id: registered.face_id,
        message: "User registered successfully".into(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    pub success: bool,
    pub user_id: String,
    /// Similarity of the match, 0-100.
    #[schema(example = 99.85)]
    pub similarity: f32,
    #[schema(example = "Face verified successfully")]
    pub message: String,
    /// Signed access token (JWT) for the matched user.
    pub token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until `token` expires.
    pub expires_in: u64,
    /// Single-use refresh token: `POST /token` with `grant_type=refresh_token` trades it for a
    /// new pair. Presenting it twice revokes the session.
    pub refresh_token: String,
}

/// Verify a face and get a token.
///
/// Searches the enrolled faces for the dominant face in the photo (or only the faces of
/// `user_id`, when given) and, on a match at or above the threshold, returns a signed JWT.
#[utoipa::path(
    post,
    path = "/verify/", operation_id = "verify_face",
    tag = "faces",
    request_body(content = VerifyForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Face matched; token issued", body = VerifyResponse),
        (status = 400, description = "`NO_MATCH`: no enrolled face matches (also for an unknown `user_id`); `NO_FACE`; `AMBIGUOUS_FACES`: several faces of similar size; `EXTREME_POSE`: the face is turned too far from the camera to log in (the local engine); `INVALID_IMAGE`: undecodable; `BAD_REQUEST`: not a multipart body; `LIVENESS_REQUIRED`: a single photo where the server demands liveness; with frames: `MULTIPLE_FACES`, `CHALLENGE_UNKNOWN`, `CHALLENGE_EXPIRED`, `CHALLENGE_USED`, `LIVENESS_FACE_CHANGED`, `LIVENESS_MOTION_MISSING`, `LIVENESS_FLAT`", body = ErrorBody),
        (status = 413, description = "The body or the image is too large", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: too many requests or failed logins from this client; `ACCOUNT_LOCKED`: too many failed logins for this `user_id`. See Retry-After", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_IMAGE`: the file is not a JPEG, PNG or WebP image", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 502, description = "The face service refused the server's credentials", body = ErrorBody),
        (status = 501, description = "`LIVENESS_UNAVAILABLE`: frames were sent and the face engine cannot check liveness", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    _quota: EngineQuota,
    form: Multipart<VerifyForm>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let mut form = form.data;
    let session = state
        .facelock
        .login(LoginRequest {
            evidence: form.take_evidence()?,
            min_similarity: form.similarity_threshold.into_inner(),
            claimed: form.user_id.into_inner(),
            audience: form.audience.into_inner(),
            origin,
        })
        .await
        .map_err(ApiError::from);
    state.facelock.metrics().verify_outcome(match &session {
        Ok(_) => "success",
        Err(e) => e.code(),
    });
    let session = session?;
    Ok(Json(VerifyResponse {
        success: true,
        user_id: session.user.user_id.to_string(),
        similarity: round2(session.similarity.value()),
        message: "Face verified successfully".into(),
        token: session.tokens.access_token,
        token_type: "bearer".into(),
        expires_in: session.tokens.expires_in.as_secs(),
        refresh_token: session.tokens.refresh_token,
    }))
}

/// Similarities are reported to two decimals.
fn round2(value: f32) -> f32 {
    (value * 100.0).round() / 100.0
}

#[derive(Serialize, ToSchema)]
pub struct CompareResponse {
    /// Similarity of the dominant faces, 0-100.
    pub similarity: f32,
    /// Whether the similarity reaches the server's threshold.
    #[serde(rename = "match")]
    pub is_match: bool,
    /// The threshold applied (the server's floor).
    pub threshold: f32,
}

/// Compare the faces of two photos.
///
/// For integrators and evaluation: the similarity of the dominant face of each image and
/// whether it would count as a match. Needs a bearer token; enrols nothing.
#[utoipa::path(
    post,
    path = "/compare/", operation_id = "compare_faces",
    tag = "faces",
    request_body(content = CompareForm, content_type = "multipart/form-data"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Similarity computed", body = CompareResponse),
        (status = 400, description = "`NO_FACE` in an image; `AMBIGUOUS_FACES`; `EXTREME_POSE`: a face turned too far from the camera to compare (the local engine); `INVALID_IMAGE`: undecodable; `BAD_REQUEST`: not a multipart body", body = ErrorBody),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
        (status = 413, description = "The body or an image is too large", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: too many requests from this client; see Retry-After", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_IMAGE`: a file is not a JPEG, PNG or WebP image", body = ErrorBody),
        (status = 422, description = "A field is missing", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn compare(
    State(state): State<AppState>,
    _caller: Authenticated,
    _quota: EngineQuota,
    form: Multipart<CompareForm>,
) -> Result<Json<CompareResponse>, ApiError> {
    let form = form.data;
    let comparison = state
        .facelock
        .compare(form.source_image.into(), form.target_image.into())
        .await?;
    Ok(Json(CompareResponse {
        similarity: round2(comparison.similarity.value()),
        is_match: comparison.is_match,
        threshold: comparison.threshold.value(),
    }))
}
