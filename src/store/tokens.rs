//! Sessions (refresh-token families) and revoked access tokens.

use async_trait::async_trait;

use super::StoreError;
use crate::{clock::Timestamp, domain::UserId};

/// A refresh token as stored (only the hash of the token itself).
#[derive(Clone, Debug)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub family_id: String,
    pub user_generation: i64,
    pub user_id: UserId,
    pub audience: String,
    /// The scopes of an OpenID Connect session (space-separated); `None` for a face login at
    /// `/verify/`.
    pub scope: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A refresh token to store.
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub family_id: String,
    pub user_generation: i64,
    pub audience: String,
    pub scope: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug)]
pub enum RefreshUse {
    /// Unknown token.
    Unknown,
    /// The token was valid and is now used; the record as it was before.
    Fresh(RefreshRecord),
    /// The token had been used or revoked before: its family is now revoked.
    Replayed(RefreshRecord),
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn add_refresh_token(&self, record: NewRefreshToken) -> Result<(), StoreError>;
    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// Marks a refresh token used, atomically; a second use revokes its whole family.
    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError>;
    /// Revokes every token of the family. Returns how many were still live.
    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError>;
    /// Refuses an access token until `expires_at`.
    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp)
        -> Result<(), StoreError>;
    /// Whether an access token is refused: its `jti` was revoked, or its session (`sid`, the
    /// refresh family it belongs to) was, by a logout or a replayed refresh token.
    async fn is_access_token_revoked(
        &self,
        jti: &str,
        session: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Drops revocation and refresh records that can no longer matter.
    async fn purge_expired_tokens(&self, now: Timestamp) -> Result<(), StoreError>;
}
