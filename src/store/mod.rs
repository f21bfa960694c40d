//! The durable store of users and their faces, behind a trait so that another database can
//! follow SQLite. It knows nothing of HTTP, images or engines beyond the records it keeps.

pub mod sqlite;

use async_trait::async_trait;

use crate::domain::{Email, FullName, UserId};

/// A user as stored.
#[derive(Clone, Debug)]
pub struct UserRecord {
    /// Internal row id, never reused; tokens are bound to it.
    pub rowid: i64,
    pub user_id: UserId,
    pub full_name: Option<String>,
    pub email: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub face_count: u32,
}

/// A face as stored.
#[derive(Clone, Debug)]
pub struct FaceRecord {
    pub face_id: String,
    pub user_id: UserId,
    pub engine: String,
    pub reference_path: Option<String>,
    pub descriptor: Option<Vec<f32>>,
    pub created_at: i64,
}

/// The profile given when a user is first registered.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub user_id: UserId,
    pub full_name: Option<FullName>,
    pub email: Option<Email>,
}

/// A face to record for a user.
#[derive(Clone, Debug)]
pub struct NewFace {
    pub face_id: String,
    pub engine: String,
    pub reference_path: Option<String>,
    pub descriptor: Option<Vec<f32>>,
}

/// Whether recording a face may create its user.
#[derive(Clone, Debug)]
pub enum FaceOwner {
    /// The user must not exist yet; it is created with the face.
    New(NewUser),
    /// The user must exist (and be this row: a user deleted and re-created meanwhile is not).
    Existing { user_id: UserId, rowid: i64 },
}

/// Keyset pagination over user ids, in ascending order.
#[derive(Clone, Debug)]
pub struct Page {
    pub limit: u32,
    /// Return users whose id sorts after this one.
    pub after: Option<UserId>,
}

/// A token signing key as stored.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER of the private key.
    pub private_der: Vec<u8>,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// Unix seconds.
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A refresh token as stored (only the hash of the token itself).
#[derive(Clone, Debug)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub family_id: String,
    pub user_rowid: i64,
    pub user_id: UserId,
    pub audience: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A refresh token to store.
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub family_id: String,
    pub user_rowid: i64,
    pub audience: String,
    pub created_at: i64,
    pub expires_at: i64,
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user already exists")]
    UserExists,
    #[error("user not found")]
    UserNotFound,
    #[error("{0}")]
    Backend(String),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Records a face, creating its user when asked to, in one transaction.
    async fn add_face(&self, owner: FaceOwner, face: NewFace) -> Result<UserRecord, StoreError>;
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// The user if it still exists as generation `rowid`: not deleted, nor deleted and
    /// registered again under the same id. Tokens and sessions are bound to this.
    async fn current_user(
        &self,
        user_id: &UserId,
        rowid: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.user(user_id).await?.filter(|u| u.rowid == rowid))
    }
    async fn list_users(&self, page: Page) -> Result<Vec<UserRecord>, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    async fn face(&self, face_id: &str) -> Result<Option<FaceRecord>, StoreError>;
    /// Every face enrolled with `engine`, for engines that rebuild an index at start-up.
    async fn faces_for_engine(&self, engine: &str) -> Result<Vec<FaceRecord>, StoreError>;
    /// Deletes the user and their faces, and queues the faces for deletion in the engine, in one
    /// transaction. Returns the deleted faces.
    async fn delete_user(&self, user_id: &UserId) -> Result<Vec<FaceRecord>, StoreError>;
    /// Faces of `engine` whose deletion in the engine is still owed.
    async fn pending_engine_deletions(&self, engine: &str) -> Result<Vec<String>, StoreError>;
    async fn clear_pending_engine_deletions(&self, face_ids: &[String]) -> Result<(), StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A number that changes whenever another process commits to the store, so in-memory
    /// copies (the local engine's index) know when to reload.
    async fn outside_change_marker(&self) -> Result<i64, StoreError>;

    /// Adds a signing key; every other key not yet retired is retired at `now`.
    async fn add_signing_key(&self, key: StoredKey, now: i64) -> Result<(), StoreError>;
    /// All signing keys, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Forgets keys retired before `cutoff`: no token they signed is still valid.
    async fn drop_keys_retired_before(&self, cutoff: i64) -> Result<usize, StoreError>;

    async fn add_refresh_token(&self, record: NewRefreshToken) -> Result<(), StoreError>;
    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// Marks a refresh token used, atomically; a second use revokes its whole family.
    async fn use_refresh_token(&self, token_hash: &str, now: i64)
        -> Result<RefreshUse, StoreError>;
    /// Revokes every token of the family. Returns how many were still live.
    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> Result<usize, StoreError>;

    /// Refuses an access token until `expires_at`.
    async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError>;
    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Drops revocation and refresh records that can no longer matter.
    async fn purge_expired_tokens(&self, now: i64) -> Result<(), StoreError>;
}
