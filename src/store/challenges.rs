//! Liveness challenges: issued by one server, answered at most once, on whichever server the
//! answer reaches.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;

/// A challenge as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChallenge {
    /// Random, unguessable: the handle a client answers with.
    pub id: String,
    /// What the person was asked to do, in the challenge's own words (`turn_left,turn_right`).
    pub actions: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What spending a challenge found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeSpend {
    /// It was unused and unexpired; it is now used.
    Spent(StoredChallenge),
    /// No such challenge (never issued, or purged long after it expired).
    Unknown,
    /// It expired before it was answered (and is now used all the same).
    Expired,
    /// It was answered before.
    Used,
}

#[async_trait]
pub trait ChallengeStore: Send + Sync {
    async fn save_challenge(&self, challenge: &StoredChallenge) -> Result<(), StoreError>;
    /// Marks challenge `id` used at `now`, in one statement: of two servers spending it at
    /// once, exactly one gets [`ChallengeSpend::Spent`].
    async fn spend_challenge(&self, id: &str, now: Timestamp)
        -> Result<ChallengeSpend, StoreError>;
    /// Forgets challenges that expired before `before`.
    async fn purge_challenges(&self, before: Timestamp) -> Result<(), StoreError>;
}

impl ChallengeSpend {
    /// The answer when the spending update returned `row`.
    pub(super) fn of_updated(row: StoredChallenge, now: Timestamp) -> Self {
        if row.expires_at <= now {
            Self::Expired
        } else {
            Self::Spent(row)
        }
    }

    /// The answer when the spending update returned nothing: used before if a row with the
    /// id `exists`, unknown otherwise.
    pub(super) fn of_unchanged(exists: bool) -> Self {
        if exists {
            Self::Used
        } else {
            Self::Unknown
        }
    }
}
