//! The request bodies of the API, each one type that is both what the handler receives (parsed
//! into domain types at the edge) and what the OpenAPI document describes. Multipart failures
//! become the API's JSON errors: 413 when the body limit is hit, 422 for a missing or invalid
//! field, 400 for a body that is not multipart at all.

use axum::{
    body::Bytes,
    extract::multipart::{MultipartError, MultipartRejection},
    http::StatusCode,
};
use axum_typed_multipart::{
    async_trait, BaseMultipart, FieldMetadata, TryFromChunks, TryFromMultipart, TypedMultipartError,
};
use futures_core::Stream;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::{
    domain::{Email, FullName, InvalidField, Similarity, UserId},
    service::{Evidence, LivenessProof},
};

/// A multipart form parsed into `T`, failing with the API's errors.
pub type Multipart<T> = BaseMultipart<T, ApiError>;

/// Multipart body of `POST /register/`.
#[derive(TryFromMultipart, ToSchema)]
pub struct RegisterForm {
    /// 1-128 characters of letters, digits, `_`, `.` and `-`.
    #[form_data(limit = "4KiB")]
    #[schema(value_type = String, example = "user123", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    pub user_id: UserId,
    /// At most 200 characters.
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub full_name: Text<FullName>,
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>, format = Email, max_length = 254)]
    pub email: Text<Email>,
    /// A JPEG, PNG or WebP photo with exactly one face. Not sent with `challenge_id`.
    #[form_data(limit = "unlimited")]
    #[schema(value_type = Option<String>, format = Binary)]
    pub face_image: Option<Bytes>,
    /// The `challenge_id` of `POST /liveness/challenge`, answered by `frames`: the most
    /// frontal frame is enrolled.
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>)]
    pub challenge_id: Text<String>,
    /// 3 to 15 frames taken while the person follows the challenge (repeat the part).
    #[form_data(limit = "unlimited", default)]
    #[schema(value_type = Vec<String>, format = Binary)]
    pub frames: Vec<Bytes>,
}

/// Multipart body of `POST /verify/`: a photo (`face_image`), or the answer to a liveness
/// challenge (`challenge_id` and `frames`).
#[derive(TryFromMultipart, ToSchema)]
pub struct VerifyForm {
    /// A JPEG, PNG or WebP photo of the person logging in. Not sent with `challenge_id`.
    #[form_data(limit = "unlimited")]
    #[schema(value_type = Option<String>, format = Binary)]
    pub face_image: Option<Bytes>,
    /// The `challenge_id` of `POST /liveness/challenge`, answered by `frames`.
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>)]
    pub challenge_id: Text<String>,
    /// 3 to 15 JPEG, PNG or WebP frames, in the order taken, while the person follows the
    /// challenge (repeat the part). Send them as the camera took them, not mirrored.
    #[form_data(limit = "unlimited", default)]
    #[schema(value_type = Vec<String>, format = Binary)]
    pub frames: Vec<Bytes>,
    /// Minimum similarity, 0-100. It can only raise the server's floor
    /// (`FACELOCK_MIN_SIMILARITY`), never lower it; when omitted the floor applies.
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<f32>, example = 90.0, minimum = 0, maximum = 100)]
    pub similarity_threshold: Text<Similarity>,
    /// Check this claimed identity only (1:1) instead of searching every user (1:N).
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    pub user_id: Text<UserId>,
    /// The audience (`aud`) of the token: one of `FACELOCK_AUDIENCE`; the first by default.
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>)]
    pub audience: Text<String>,
}

/// `take_evidence` for the forms that carry a face: `face_image`, or `challenge_id` with
/// `frames`.
macro_rules! carries_evidence {
    ($($form:ty),*) => {$(
        impl $form {
            /// What the form shows of the person: the photo, or the frames answering a
            /// challenge.
            pub fn take_evidence(&mut self) -> Result<Evidence, ApiError> {
                evidence(
                    self.face_image.take(),
                    self.challenge_id.0.take(),
                    std::mem::take(&mut self.frames),
                )
            }
        }
    )*};
}

carries_evidence!(RegisterForm, VerifyForm, SignInForm);

/// A photo, or a challenge's id with its frames: one or the other.
fn evidence(
    face_image: Option<Bytes>,
    challenge_id: Option<String>,
    frames: Vec<Bytes>,
) -> Result<Evidence, ApiError> {
    match (challenge_id, face_image) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "face_image",
            "send either face_image or challenge_id with frames, not both",
        )),
        (Some(challenge_id), None) => Ok(Evidence::Live(LivenessProof {
            challenge_id,
            frames: frames.into_iter().map(Vec::from).collect(),
        })),
        (None, _) if !frames.is_empty() => Err(ApiError::validation(
            "challenge_id",
            "frames answer a liveness challenge: send its challenge_id",
        )),
        (None, Some(image)) => Ok(Evidence::Photo(image.into())),
        (None, None) => Err(ApiError::validation("face_image", "field required")),
    }
}

/// Multipart body of `POST /compare/`.
#[derive(TryFromMultipart, ToSchema)]
pub struct CompareForm {
    #[form_data(limit = "unlimited")]
    #[schema(value_type = String, format = Binary)]
    pub source_image: Bytes,
    #[form_data(limit = "unlimited")]
    #[schema(value_type = String, format = Binary)]
    pub target_image: Bytes,
}

/// Form body of `POST /token`.
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// `authorization_code` (OpenID Connect) or `refresh_token`.
    #[serde(default)]
    #[schema(required = true)]
    pub grant_type: String,
    /// For `refresh_token`.
    pub refresh_token: Option<String>,
    /// For `authorization_code`: the code the redirect carried.
    pub code: Option<String>,
    /// For `authorization_code`: the redirect URI of the authorization request.
    pub redirect_uri: Option<String>,
    /// For `authorization_code`: the PKCE secret behind the request's `code_challenge`.
    pub code_verifier: Option<String>,
    /// `client_secret_post`, or a public client naming itself.
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
}

/// Multipart body of `POST /authorize/{request_id}`: the same face evidence `/verify/` takes.
#[derive(TryFromMultipart, ToSchema)]
pub struct SignInForm {
    /// A JPEG, PNG or WebP photo of the person signing in. Not sent with `challenge_id`, nor
    /// when the request demands liveness.
    #[form_data(limit = "unlimited")]
    #[schema(value_type = Option<String>, format = Binary)]
    pub face_image: Option<Bytes>,
    /// The `challenge_id` of `POST /liveness/challenge`, answered by `frames`.
    #[form_data(limit = "4KiB", default)]
    #[schema(value_type = Option<String>)]
    pub challenge_id: Text<String>,
    /// 3 to 15 frames taken while the person follows the challenge.
    #[form_data(limit = "unlimited", default)]
    #[schema(value_type = Vec<String>, format = Binary)]
    pub frames: Vec<Bytes>,
}

/// Query of the OpenID Connect logout endpoint.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndSessionQuery {
    /// An ID token this server issued to the client (expired ones too): the session to end.
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    /// Where to send the browser afterwards: one of the client's registered post-logout URIs.
    pub post_logout_redirect_uri: Option<String>,
    /// Passed back to `post_logout_redirect_uri`.
    pub state: Option<String>,
}

/// Form body of `POST /revoke` and `POST /introspect`.
#[derive(Deserialize, ToSchema)]
pub struct TokenHandleForm {
    /// An access token or a refresh token.
    #[serde(default)]
    #[schema(required = true)]
    pub token: String,
    /// `access_token` or `refresh_token` (optional; the token's form decides).
    pub token_type_hint: Option<String>,
}

/// An optional text field parsed into `T`; blank counts as absent, as HTML forms send it.
pub struct Text<T>(pub Option<T>);

impl<T> Default for Text<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> Text<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

/// Domain values a form field can hold.
pub trait FieldValue: Sized {
    fn parse_field(raw: &str) -> Result<Self, InvalidField>;
}

impl FieldValue for UserId {
    fn parse_field(raw: &str) -> Result<Self, InvalidField> {
        UserId::parse(raw)
    }
}

impl FieldValue for Email {
    fn parse_field(raw: &str) -> Result<Self, InvalidField> {
        Email::parse(raw)
    }
}

impl FieldValue for FullName {
    fn parse_field(raw: &str) -> Result<Self, InvalidField> {
        FullName::parse(raw)
    }
}

impl FieldValue for String {
    fn parse_field(raw: &str) -> Result<Self, InvalidField> {
        Ok(raw.to_owned())
    }
}

impl FieldValue for Similarity {
    fn parse_field(raw: &str) -> Result<Self, InvalidField> {
        raw.trim()
            .parse::<f32>()
            .map_err(|_| InvalidField("must be a number from 0 to 100".into()))
            .and_then(Similarity::new)
    }
}

async fn parse_chunks<T: FieldValue>(
    chunks: impl Stream<Item = Result<Bytes, TypedMultipartError>> + Send + Sync + Unpin,
    metadata: FieldMetadata,
) -> Result<Option<T>, TypedMultipartError> {
    let field_name = metadata.name.clone().unwrap_or_default();
    let text = String::try_from_chunks(chunks, metadata).await?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    T::parse_field(&text)
        .map(Some)
        .map_err(|e| TypedMultipartError::WrongFieldType {
            field_name,
            wanted_type: std::any::type_name::<T>().into(),
            source: e.into(),
        })
}

#[async_trait]
impl<T: FieldValue + Send + Sync> TryFromChunks for Text<T> {
    async fn try_from_chunks(
        chunks: impl Stream<Item = Result<Bytes, TypedMultipartError>> + Send + Sync + Unpin,
        metadata: FieldMetadata,
    ) -> Result<Self, TypedMultipartError> {
        parse_chunks(chunks, metadata).await.map(Text)
    }
}

/// A required field: blank is as good as missing.
#[async_trait]
impl TryFromChunks for UserId {
    async fn try_from_chunks(
        chunks: impl Stream<Item = Result<Bytes, TypedMultipartError>> + Send + Sync + Unpin,
        metadata: FieldMetadata,
    ) -> Result<Self, TypedMultipartError> {
        let field_name = metadata.name.clone().unwrap_or_default();
        parse_chunks(chunks, metadata)
            .await?
            .ok_or(TypedMultipartError::MissingField { field_name })
    }
}

impl From<TypedMultipartError> for ApiError {
    fn from(e: TypedMultipartError) -> Self {
        use TypedMultipartError as E;
        match e {
            E::InvalidRequest { source } => rejection(&source),
            E::InvalidRequestBody { source } => multipart_error(&source),
            E::MissingField { field_name } => ApiError::validation(field_name, "field required"),
            E::WrongFieldType {
                field_name, source, ..
            } => ApiError::validation(field_name, source.to_string()),
            E::FieldTooLarge { field_name, .. } => ApiError::validation(field_name, "is too long"),
            E::DuplicateField { field_name } => {
                ApiError::validation(field_name, "the field is given more than once")
            }
            E::UnknownField { field_name } => ApiError::validation(field_name, "unknown field"),
            E::InvalidEnumValue { field_name, .. } => {
                ApiError::validation(field_name, "is not an accepted value")
            }
            E::NamelessField => ApiError::validation("form", "a field has no name"),
            other => ApiError::internal(other.to_string()),
        }
    }
}

fn rejection(rejection: &MultipartRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(
            "Expected a multipart/form-data body (Content-Type: multipart/form-data)".into(),
        )
    }
}

fn multipart_error(e: &MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE || hit_body_limit(e) {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!("Malformed multipart body: {}", e.body_text()))
    }
}

/// Whether the body limit middleware cut the stream (axum only recognises its own limit).
fn hit_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
