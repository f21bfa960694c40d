//! Liveness challenges: what a client asks for before sending a burst of frames to `/verify/`.

use axum::{extract::State, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{EngineQuota, RequestOrigin},
    AppState,
};
use crate::{clock::Timestamp, liveness};

#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// Send it back as `challenge_id` with the frames, once, before `expires_in` runs out.
    pub challenge_id: String,
    /// What the person does, in order: `turn_left`, `turn_right`, `tilt_left` or `tilt_right`
    /// (their own left and right; a tilt brings the head towards that shoulder), starting from
    /// and coming back to the camera after each.
    #[schema(example = json!(["turn_left", "tilt_right", "turn_right", "tilt_left"]))]
    pub actions: Vec<String>,
    /// The actions in a sentence, to show the person.
    #[schema(
        example = "Look at the camera, then turn your head to your left, then tilt your head towards your right shoulder, then turn your head to your right, then tilt your head towards your left shoulder, coming back to the camera after each"
    )]
    pub instructions: String,
    /// Seconds left to answer.
    #[schema(example = 60)]
    pub expires_in: u64,
    /// When the challenge expires (RFC 3339).
    pub expires_at: String,
    /// How many frames to send, at least and at most.
    #[schema(example = 5)]
    pub min_frames: usize,
    #[schema(example = 15)]
    pub max_frames: usize,
}

/// Get a liveness challenge.
///
/// A one-time challenge, drawn at random (one of 104 sequences of four turns and tilts): the
/// client films the person following it, 5-15 frames (about 2 per second), then sends them to
/// `POST /verify/` as repeated `frames` parts with `challenge_id`. The token then says `amr:
/// ["face", "liveness"]`. Fetching a challenge spends one request of the client's rate limit
/// and counts as a failed login attempt of the address until it is answered.
#[utoipa::path(
    post,
    path = "/liveness/challenge", operation_id = "liveness_challenge",
    tag = "faces",
    responses(
        (status = 200, description = "A challenge to answer once", body = ChallengeResponse),
        (status = 429, description = "`RATE_LIMITED`: too many requests or failed logins from this client; see Retry-After", body = ErrorBody),
        (status = 501, description = "`LIVENESS_UNAVAILABLE`: the configured face engine cannot check liveness", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn challenge(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    _quota: EngineQuota,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let issued = state.facelock.issue_challenge(&origin).await?;
    Ok(Json(ChallengeResponse {
        challenge_id: issued.id,
        actions: issued.actions.iter().map(|a| a.code().to_owned()).collect(),
        instructions: issued.instructions,
        expires_in: (issued.expires_at - Timestamp::now())
            .as_millis()
            .div_ceil(1000) as u64,
        expires_at: issued.expires_at.rfc3339(),
        min_frames: liveness::MIN_FRAMES,
        max_frames: liveness::MAX_FRAMES,
    }))
}
