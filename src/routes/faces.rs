//! Enrolment, verification and comparison of faces.

use axum::{
    extract::{multipart::MultipartRejection, Multipart, State},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::form::Form;
use crate::{
    auth::{AuthUser, MaybeAuthUser},
    domain::{Email, FullName},
    error::{ApiError, ErrorBody},
    rate_limit::EngineQuota,
    service::{Actor, Registration},
    state::AppState,
};

/// Multipart body of `POST /register/`.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct RegisterForm {
    /// 1-128 characters of letters, digits, `_`, `.` and `-`.
    #[schema(example = "user123")]
    user_id: String,
    full_name: Option<String>,
    email: Option<String>,
    /// A JPEG, PNG or WebP photo with exactly one face.
    #[schema(value_type = String, format = Binary)]
    face_image: Vec<u8>,
}

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
    path = "/register/",
    tag = "faces",
    request_body(content = RegisterForm, content_type = "multipart/form-data"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Face enrolled", body = RegisterResponse),
        (status = 400, description = "No face, several faces, a face too poor to enrol (code names the reason), or an undecodable image", body = ErrorBody),
        (status = 401, description = "A bearer token was sent and is not valid", body = ErrorBody),
        (status = 403, description = "The user id is an administrator's and the caller is not an admin", body = ErrorBody),
        (status = 409, description = "The user id exists and the caller may not add faces to it", body = ErrorBody),
        (status = 413, description = "The body or the image is too large", body = ErrorBody),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody),
        (status = 415, description = "The file is not a JPEG, PNG or WebP image", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 502, description = "The face service refused the server's credentials", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    MaybeAuthUser(caller): MaybeAuthUser,
    _quota: EngineQuota,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<RegisterResponse>, ApiError> {
    let mut form = Form::read(multipart, &["face_image"]).await?;
    let registration = Registration {
        user_id: form
            .user_id("user_id")?
            .ok_or_else(|| ApiError::validation("user_id", "field required"))?,
        full_name: form.parsed("full_name", FullName::parse)?,
        email: form.parsed("email", Email::parse)?,
        image: form.file("face_image")?,
    };
    let registered = state
        .facelock
        .register(
            registration,
            caller.as_ref().map_or(Actor::Anonymous, Actor::Caller),
        )
        .await?;
    Ok(Json(RegisterResponse {
        success: true,
        user_id: registered.user.user_id.to_string(),
        face_id: registered.face_id,
        message: "User registered successfully".into(),
    }))
}

/// Multipart body of `POST /verify/`.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct VerifyForm {
    /// A JPEG, PNG or WebP photo of the person logging in.
    #[schema(value_type = String, format = Binary)]
    face_image: Vec<u8>,
    /// Minimum similarity, 0-100. It can only raise the server's floor
    /// (`FACELOCK_MIN_SIMILARITY`), never lower it; when omitted the floor applies.
    #[schema(example = 90.0)]
    similarity_threshold: Option<f32>,
    /// Check this claimed identity only (1:1) instead of searching every user (1:N).
    user_id: Option<String>,
    /// The audience (`aud`) of the token: one of `FACELOCK_AUDIENCE`; the first by default.
    audience: Option<String>,
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
    path = "/verify/",
    tag = "faces",
    request_body(content = VerifyForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Face matched; token issued", body = VerifyResponse),
        (status = 400, description = "No face, no matching face (`NO_MATCH`), several faces of similar size, or an undecodable image", body = ErrorBody),
        (status = 413, description = "The body or the image is too large", body = ErrorBody),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody),
        (status = 415, description = "The file is not a JPEG, PNG or WebP image", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 502, description = "The face service refused the server's credentials", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    _quota: EngineQuota,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let mut form = Form::read(multipart, &["face_image"]).await?;
    let threshold = form.similarity("similarity_threshold")?;
    let claimed = form.user_id("user_id")?;
    let audience = state
        .tokens
        .audience(form.text("audience"))
        .ok_or_else(|| {
            ApiError::validation("audience", "is not one of the configured audiences")
        })?;
    let image = form.file("face_image")?;
    let verified = state.facelock.verify(image, threshold, claimed).await?;
    let access = state
        .tokens
        .issue(
            &verified.user,
            verified.role,
            Some(verified.similarity.value()),
            &audience,
        )
        .await
        .map_err(ApiError::internal)?;
    let session = state
        .tokens
        .start_session(&verified.user, access, &audience)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(VerifyResponse {
        success: true,
        user_id: verified.user.user_id.to_string(),
        similarity: session.access.claims.similarity.unwrap_or_default(),
        message: "Face verified successfully".into(),
        token: session.access.token,
        token_type: "bearer".into(),
        expires_in: session.expires_in,
        refresh_token: session.refresh_token,
    }))
}

/// Multipart body of `POST /compare/`.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct CompareForm {
    #[schema(value_type = String, format = Binary)]
    source_image: Vec<u8>,
    #[schema(value_type = String, format = Binary)]
    target_image: Vec<u8>,
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
    path = "/compare/",
    tag = "faces",
    request_body(content = CompareForm, content_type = "multipart/form-data"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Similarity computed", body = CompareResponse),
        (status = 400, description = "No face in an image, or an undecodable image", body = ErrorBody),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
        (status = 413, description = "The body or an image is too large", body = ErrorBody),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody),
        (status = 415, description = "A file is not a JPEG, PNG or WebP image", body = ErrorBody),
        (status = 422, description = "A field is missing", body = ErrorBody),
        (status = 503, description = "The face engine is throttled or down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn compare(
    State(state): State<AppState>,
    _caller: AuthUser,
    _quota: EngineQuota,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<CompareResponse>, ApiError> {
    let mut form = Form::read(multipart, &["source_image", "target_image"]).await?;
    let source = form.file("source_image")?;
    let target = form.file("target_image")?;
    let similarity = state.facelock.compare(source, target).await?;
    let threshold = state.facelock.effective_threshold(None);
    Ok(Json(CompareResponse {
        similarity: (similarity.value() * 100.0).round() / 100.0,
        is_match: similarity >= threshold,
        threshold: threshold.value(),
    }))
}
