//! Token signing keys.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;

/// A token signing key as stored.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER of the private key.
    pub private_der: Vec<u8>,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Adds a signing key; every other key not yet retired is retired at `now`.
    async fn add_signing_key(&self, key: StoredKey, now: Timestamp) -> Result<(), StoreError>;
    /// All signing keys, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Forgets keys retired before `cutoff`: no token they signed is still valid.
    async fn drop_keys_retired_before(&self, cutoff: Timestamp) -> Result<usize, StoreError>;
}
