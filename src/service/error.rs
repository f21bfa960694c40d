//! What can go wrong in a Face Lock operation, in the domain's words. The HTTP edge maps each
//! variant to a status and a code in one place; the core never speaks HTTP.

use crate::{
    domain::InvalidInput,
    engine::EngineError,
    images::ImageError,
    store::StoreError,
    tokens::{TokenError, TokenProblem},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The photo could not be used, or the engine found no usable face in it.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// No enrolled face is similar enough (or the claimed user does not exist: the same answer,
    /// so nobody learns who is enrolled).
    #[error("no matching face")]
    NoMatch,
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The bearer token is missing or unusable.
    #[error("token refused: {0:?}")]
    Unauthenticated(TokenProblem),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("user not found")]
    UserNotFound,
    /// The face already belongs to another user.
    #[error("this face is already enrolled for another user")]
    FaceAlreadyEnrolled,
    /// The user id is taken and the caller may not add faces to it.
    #[error("user already exists")]
    UserExists,
    /// Too many failed logins against this user id: no face is tried until `retry_after`.
    #[error("the account is locked after too many failed logins")]
    AccountLocked { retry_after: std::time::Duration },
    /// Too many failed logins from this address: it must wait `retry_after`.
    #[error("too many failed logins from this address")]
    SlowDown { retry_after: std::time::Duration },
    /// A refresh token that is unknown, expired, used or revoked, or of a deleted user.
    #[error("the refresh token is unknown, expired, already used or revoked")]
    InvalidGrant,
    /// An application refused at the token endpoint, in OAuth's words.
    #[error(transparent)]
    OAuth(#[from] super::authorization::OAuthRefusal),
    /// No pending authorization request has this id (never issued, answered, or lapsed).
    #[error("the sign-in request is unknown, already answered or expired")]
    AuthorizationUnknown,
    #[error("the system has no randomness to offer")]
    Randomness,
    /// The engine cannot check liveness (it does not place face landmarks).
    #[error("this server's face engine cannot check liveness")]
    LivenessUnavailable,
    /// A single photo was sent where the server demands a liveness challenge.
    #[error("a liveness challenge is required")]
    LivenessRequired,
    /// The liveness challenge answered is unknown, expired or already used.
    #[error("liveness challenge {0:?}")]
    Challenge(crate::service::liveness::ChallengeProblem),
    /// The frames do not show a live head following the challenge.
    #[error("not live: {0}")]
    NotLive(#[from] crate::liveness::Refusal),
    #[error("the store failed")]
    Store(#[source] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("moving a reference photo into the store")]
    LegacyPhoto(#[from] crate::files::FileError),
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UserExists => Self::UserExists,
            StoreError::UserNotFound => Self::UserNotFound,
            other => Self::Store(other),
        }
    }
}
