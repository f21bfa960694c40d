//! OpenID Connect clients: the applications that may send users to Face Lock to sign in,
//! registered by the operator and seen by every server sharing the store.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;

/// A client as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    /// Shown to the user on the login page.
    pub name: String,
    /// Where authorization answers may be sent, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Where the browser may be sent after logging out, compared exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// The SHA-256 of a confidential client's secret (hex); `None` for a public client.
    pub secret_hash: Option<String>,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Registers a client; [`StoreError::ClientExists`] if its id is taken.
    async fn add_client(&self, client: &StoredClient) -> Result<(), StoreError>;
    async fn client(&self, client_id: &str) -> Result<Option<StoredClient>, StoreError>;
    /// Every client, by id.
    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError>;
    /// Removes a client; whether there was one.
    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreError>;
    /// Replaces a confidential client's secret hash; whether there was such a client.
    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreError>;
}
