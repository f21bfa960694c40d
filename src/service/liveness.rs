//! Liveness challenges: issued at random, answered once with a burst of frames, judged by
//! [`crate::liveness::judge`] on the engine's landmarks.

use std::sync::Arc;

use super::{Error, FaceLock, Origin};
use crate::{
    clock::Timestamp,
    domain::InvalidInput,
    engine::Upload,
    images::{self, ImageError},
    liveness::{self, Action, FrameFace},
    store::{ChallengeSpend, StoredChallenge},
};

/// The most pixels a liveness frame may have: a video frame, not a camera's still (1080p is
/// 2.1 million, 1440p 3.7). Up to 15 frames are analysed per answer, so frames of the full
/// upload limit would let one request buy seconds of CPU.
pub const MAX_FRAME_PIXELS: u64 = 4_000_000;

/// A challenge handed to a client.
pub struct IssuedChallenge {
    pub id: String,
    pub actions: Vec<Action>,
    pub instructions: String,
    pub expires_at: Timestamp,
}

/// A client's answer to a challenge: the frames taken while the person followed it.
pub struct LivenessProof {
    pub challenge_id: String,
    pub frames: Vec<Vec<u8>>,
}

/// Why a challenge cannot be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeProblem {
    Unknown,
    Expired,
    Used,
}

impl FaceLock {
    /// A new challenge: random motions to make, answerable once within
    /// [`liveness::CHALLENGE_TTL`]. An address that must wait after failed logins waits for
    /// challenges too, and a challenge counts as a failed attempt of the address until it is
    /// answered: fetching challenges until one fits a recording runs into the address's delay
    /// (with 104 sequences, after about 50 fetches on average).
    pub async fn issue_challenge(&self, origin: &Origin) -> Result<IssuedChallenge, Error> {
        if !self.engine.observes_liveness() {
            return Err(Error::LivenessUnavailable);
        }
        self.refuse_if_delayed(origin).await?;
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).map_err(|e| {
            Error::Engine(crate::engine::EngineError::internal(format!(
                "no randomness for a challenge: {e}"
            )))
        })?;
        let actions = liveness::actions_for(u32::from_le_bytes(random));
        let now = Timestamp::now();
        let stored = StoredChallenge {
            id: uuid::Uuid::new_v4().simple().to_string(),
            actions: liveness::encode_actions(&actions),
            created_at: now,
            expires_at: now + liveness::CHALLENGE_TTL,
        };
        self.store.save_challenge(&stored).await?;
        if let Some(address) = origin.address {
            self.address_failures.failed(address).await;
        }
        Ok(IssuedChallenge {
            instructions: liveness::instructions(&actions),
            id: stored.id,
            actions,
            expires_at: stored.expires_at,
        })
    }

    /// Spends the proof's challenge and judges its frames; the frame to log in with (the most
    /// frontal) when a live head followed the challenge. The challenge is spent whatever the
    /// verdict: a refused answer cannot be tried again with other frames. Spending it takes back
    /// the failure its fetch counted against the answering address; a refused answer then counts
    /// as any failed login does.
    pub(super) async fn check_liveness(
        &self,
        proof: LivenessProof,
        origin: &Origin,
    ) -> Result<Arc<Upload>, Error> {
        if !self.engine.observes_liveness() {
            return Err(Error::LivenessUnavailable);
        }
        let count = proof.frames.len();
        if !(liveness::MIN_FRAMES..=liveness::MAX_FRAMES).contains(&count) {
            return Err(InvalidInput::new(
                "frames",
                format!(
                    "send {} to {} frames (got {count})",
                    liveness::MIN_FRAMES,
                    liveness::MAX_FRAMES
                ),
            )
            .into());
        }
        // Each frame's size is read from its header before the challenge is spent or anything
        // decoded: a burst of huge frames costs the server no work. (A frame whose header
        // cannot be read is refused when it is decoded, as before.)
        for frame in &proof.frames {
            let Ok((width, height)) = images::dimensions(frame) else {
                continue;
            };
            if u64::from(width) * u64::from(height) > MAX_FRAME_PIXELS {
                return Err(ImageError::TooLarge {
                    width,
                    height,
                    max_pixels: MAX_FRAME_PIXELS,
                }
                .into());
            }
        }
        let actions = match self
            .store
            .spend_challenge(&proof.challenge_id, Timestamp::now())
            .await?
        {
            ChallengeSpend::Spent(c) => {
                if let Some(address) = origin.address {
                    self.address_failures.forgive(address).await;
                }
                liveness::decode_actions(&c.actions).ok_or_else(|| {
                    Error::Store(crate::store::StoreError::Corrupt(format!(
                        "liveness challenge with unknown actions {:?}",
                        c.actions
                    )))
                })?
            }
            ChallengeSpend::Unknown => return Err(Error::Challenge(ChallengeProblem::Unknown)),
            ChallengeSpend::Expired => return Err(Error::Challenge(ChallengeProblem::Expired)),
            ChallengeSpend::Used => return Err(Error::Challenge(ChallengeProblem::Used)),
        };
        // One frame at a time, each decoded frame dropped once seen: a burst of large frames
        // never holds more than one of them decoded. The login frame is decoded again. Bulk
        // work: however many answers arrive, they leave a core to single photos.
        let mut frames = proof.frames;
        let faces = crate::fair::as_bulk(async {
            let mut faces: Vec<FrameFace> = Vec::with_capacity(count);
            for bytes in &frames {
                let upload = self.prepare_image(bytes.clone()).await?;
                faces.push(self.engine.observe(upload).await?);
            }
            Ok::<_, Error>(faces)
        })
        .await?;
        let similarity = |a: &[f32], b: &[f32]| self.engine.descriptor_similarity(a, b);
        let floor = self.accounts.policy().threshold(None).value();
        let verdict =
            liveness::judge(&actions, &faces, &similarity, floor).map_err(Error::NotLive)?;
        tracing::info!(
            frames = count,
            login_frame = verdict.login_frame,
            residual = verdict.residual,
            "liveness challenge passed"
        );
        self.prepare_image(frames.swap_remove(verdict.login_frame))
            .await
    }
}
