//! The token issuer: ES256 access tokens (JWT, RFC 9068 profile, RFC 8725 practices) signed with
//! keys kept in the store and published as a JWKS, or HS tokens with the original's shared
//! secret; single-use refresh tokens grouped in sessions; revocation.
//!
//! It mints and checks tokens and keeps their records; whether the user behind a token still
//! exists, and what role they have, is the service's decision.

pub mod issuer;
pub mod keyring;
pub mod secret;

pub use issuer::{Claims, IdTokenClaims, Introspection, Issued, SessionGrant, TokenService};

use crate::store::StoreError;

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Missing,
    Malformed,
    Expired,
    Invalid,
    Revoked,
}

/// How a user proved who they are, as tokens say it (`amr`, RFC 8176).
pub const AMR_FACE: &str = "face";
/// Added to `amr` when the face login passed a liveness challenge.
pub const AMR_LIVENESS: &str = "liveness";

/// How surely the person at the camera is the user, as a token's `acr` says it: a backend
/// demands [`Assurance::FaceAndLiveness`] before a sensitive action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assurance {
    /// A photo of the face matched: anyone holding a good picture of the user gets this far.
    Face,
    /// A burst of frames matched and showed a live head following a random challenge.
    FaceAndLiveness,
}

impl Assurance {
    pub const ALL: [Assurance; 2] = [Self::Face, Self::FaceAndLiveness];

    /// The `amr` values (RFC 8176).
    pub fn amr(self) -> Vec<String> {
        match self {
            Self::Face => vec![AMR_FACE.into()],
            Self::FaceAndLiveness => vec![AMR_FACE.into(), AMR_LIVENESS.into()],
        }
    }

    /// The `acr` value, listed in the discovery document.
    pub fn acr(self) -> &'static str {
        match self {
            Self::Face => "urn:facelock:acr:face",
            Self::FaceAndLiveness => "urn:facelock:acr:face-liveness",
        }
    }
}

/// A failure of the issuer itself (never the caller's token: that is a [`TokenProblem`]).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing a token")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("the system has no randomness to offer")]
    Randomness(#[source] getrandom::Error),
    #[error("ID tokens are signed with ES256 keys, and this server signs with a shared secret")]
    IdTokensNeedKeys,
    #[error("no signing key: run `facelock keys rotate`")]
    NoSigningKey,
    #[error("stored signing key {kid} is damaged: {reason}")]
    DamagedKey { kid: String, reason: String },
    #[error("encoding a new private key: {0}")]
    KeyEncoding(String),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
}
