//! The durable store, split by capability: [`UserStore`] (users, their faces and the engine
//! deletion queue), [`KeyStore`] (token signing keys), [`TokenStore`] (refresh-token sessions
//! and revoked access tokens), [`LockoutStore`] (failed logins per account), [`AuditStore`]
//! (the audit trail), [`ChallengeStore`] (liveness challenges), [`ClientStore`] (OpenID
//! Connect clients) and [`GrantStore`] (their authorization requests and codes). [`Store`] is
//! all of them plus health, what a backend implements; each backend keeps one file per
//! capability. It knows nothing of HTTP, images or engines beyond the records it keeps.

pub mod audit;
pub mod challenges;
pub mod clients;
pub mod counters;
pub mod grants;
pub mod keys;
pub mod lockouts;
pub mod postgres;
pub mod sqlite;
pub mod tokens;
pub mod users;
pub mod vault;

use async_trait::async_trait;

use crate::clock::Timestamp;

pub use audit::{AuditQuery, AuditRecord, AuditStore};
pub use challenges::{ChallengeSpend, ChallengeStore, StoredChallenge};
pub use clients::{ClientStore, StoredClient};
pub use counters::CounterStore;
pub use grants::{CodeRedemption, GrantStore, StoredGrant};
pub use keys::{KeyStore, StoredKey};
pub use lockouts::{Admission, LockoutRule, LockoutStore};
pub use tokens::{NewRefreshToken, RefreshRecord, RefreshUse, TokenStore};
pub use users::{
    BatchFace, FaceBatch, FaceBatches, FaceChange, FaceChanges, FaceOwner, FaceRecord, FacesSent,
    NewFace, NewUser, ReferencePhoto, UserStore,
};
pub use vault::{MasterKey, Vault, VaultError};

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user already exists")]
    UserExists,
    #[error("user not found")]
    UserNotFound,
    #[error("a client with this id exists")]
    ClientExists,
    /// The database failed or refused the operation.
    #[error("the database failed: {context}")]
    Backend {
        context: &'static str,
        #[source]
        source: Cause,
    },
    /// The disk (or the database server's) has no room left for the write: the operator's
    /// to fix, nothing stored is lost, and reads still work.
    #[error("the storage is full while {context}")]
    Full {
        context: &'static str,
        #[source]
        source: Cause,
    },
    /// A stored value no longer parses: damage, or a newer server's data.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl StoreError {
    pub fn backend(context: &'static str, source: impl Into<Cause>) -> Self {
        let source = source.into();
        if is_storage_full(&*source) {
            return Self::Full { context, source };
        }
        Self::Backend { context, source }
    }
}

/// Whether a backend's error says the storage has no room left: SQLite's `SQLITE_FULL`,
/// PostgreSQL's `53100 disk_full`, or a file write's `ENOSPC`.
fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(rusqlite::Error::SqliteFailure(failure, _)) = e.downcast_ref::<rusqlite::Error>() {
        return failure.code == rusqlite::ErrorCode::DiskFull;
    }
    if let Some(e) = e.downcast_ref::<tokio_postgres::Error>() {
        return e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL);
    }
    if let Some(e) = e.downcast_ref::<std::io::Error>() {
        return e.kind() == std::io::ErrorKind::StorageFull;
    }
    false
}

/// Everything a store backend offers.
#[async_trait]
pub trait Store:
    UserStore
    + KeyStore
    + TokenStore
    + LockoutStore
    + AuditStore
    + CounterStore
    + ChallengeStore
    + ClientStore
    + GrantStore
{
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A number that changes whenever another process commits to the store, so in-memory
    /// copies (the local engine's index) know when to reload.
    async fn outside_change_marker(&self) -> Result<i64, StoreError>;
    /// Re-seals the data key under `new` (master key rotation); `old` must open it.
    async fn reseal_data_key(&self, old: &MasterKey, new: &MasterKey) -> Result<(), StoreError>;
    /// A counter that moves when another process changes users, faces or keys, for stores
    /// that can tell at once; `None`: other processes' changes are found by polling
    /// [`Store::outside_change_marker`].
    fn change_feed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Whether servers on other machines share this store (then limits count in it).
    fn is_shared(&self) -> bool {
        false
    }
    /// Forgets change records older than `before` (for stores that keep them).
    async fn purge_change_log(&self, _before: Timestamp) -> Result<(), StoreError> {
        Ok(())
    }
}
