//! OpenID Connect authorization grants: an application's request, held from `/authorize`
//! until the user has shown their face, then the code it was answered with, redeemed at most
//! once at `/token`, on whichever server each step reaches.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;

/// A grant as the store keeps it. The request and the login are the service's own records,
/// serialised; the store only orders their life: pending, answered with a code, redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGrant {
    /// Random, unguessable: the handle the login page answers with.
    pub id: String,
    pub client_id: String,
    /// The authorization request (JSON).
    pub request: String,
    pub created_at: Timestamp,
    /// Until the login, when the request lapses; after it, when the code does.
    pub expires_at: Timestamp,
    /// The SHA-256 of the code the login was answered with.
    pub code_hash: Option<String>,
    /// Who logged in, and how (JSON).
    pub login: Option<String>,
    pub redeemed_at: Option<Timestamp>,
}

/// What redeeming a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeRedemption {
    /// It had not been redeemed; it now is. The grant as it was (its expiry is the caller's
    /// to check).
    Redeemed(StoredGrant),
    /// It was redeemed before: whatever it issued is to be revoked.
    Replayed(StoredGrant),
    /// No such code.
    Unknown,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    async fn add_grant(&self, grant: &StoredGrant) -> Result<(), StoreError>;
    /// Grant `id` if it still waits for its login at `now`.
    async fn pending_grant(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredGrant>, StoreError>;
    /// Answers pending grant `id` with a code, in one statement (of two logins finishing at
    /// once, exactly one gets the grant back); `None` if it was answered before or lapsed.
    async fn answer_grant(
        &self,
        id: &str,
        code_hash: &str,
        login: &str,
        now: Timestamp,
        code_expires_at: Timestamp,
    ) -> Result<Option<StoredGrant>, StoreError>;
    /// Marks the code redeemed at `now`, in one statement: of two redemptions at once, exactly
    /// one gets [`CodeRedemption::Redeemed`].
    async fn redeem_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<CodeRedemption, StoreError>;
    /// Forgets grants that expired before `before`.
    async fn purge_grants(&self, before: Timestamp) -> Result<(), StoreError>;
}
