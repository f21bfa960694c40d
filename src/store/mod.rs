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
}
