//! OpenID Connect clients in PostgreSQL, seen by every server at once.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{backend, timestamp, PostgresStore};
use crate::store::{ClientStore, StoreError, StoredClient};

const COLUMNS: &str =
    "client_id, name, redirect_uris, post_logout_redirect_uris, secret_hash, created_at";

fn client(r: &Row) -> Result<StoredClient, StoreError> {
    let uris = |i: usize| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(r.get::<_, &str>(i))
            .map_err(|e| StoreError::Corrupt(format!("a client's redirect URIs: {e}")))
    };
    Ok(StoredClient {
        client_id: r.get(0),
        name: r.get(1),
        redirect_uris: uris(2)?,
        post_logout_redirect_uris: uris(3)?,
        secret_hash: r.get(4),
        created_at: timestamp(r.get(5)),
    })
}

fn json(uris: &[String]) -> String {
    serde_json::Value::from(uris.to_vec()).to_string()
}

#[async_trait]
impl ClientStore for PostgresStore {
    async fn add_client(&self, c: &StoredClient) -> Result<(), StoreError> {
        let added = self
            .conn()
            .await?
            .execute(
                "INSERT INTO oidc_clients (client_id, name, redirect_uris,
                     post_logout_redirect_uris, secret_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id) DO NOTHING",
                &[
                    &c.client_id,
                    &c.name,
                    &json(&c.redirect_uris),
                    &json(&c.post_logout_redirect_uris),
                    &c.secret_hash,
                    &c.created_at.unix_millis(),
                ],
            )
            .await
            .map_err(backend("registering a client"))?;
        if added == 0 {
            return Err(StoreError::ClientExists);
        }
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<Option<StoredClient>, StoreError> {
        self.conn()
            .await?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM oidc_clients WHERE client_id = $1"),
                &[&client_id],
            )
            .await
            .map_err(backend("reading a client"))?
            .as_ref()
            .map(client)
            .transpose()
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        self.conn()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM oidc_clients ORDER BY client_id"),
                &[],
            )
            .await
            .map_err(backend("listing clients"))?
            .iter()
            .map(client)
            .collect()
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM oidc_clients WHERE client_id = $1",
                &[&client_id],
            )
            .await
            .map(|n| n > 0)
            .map_err(backend("removing a client"))
    }

    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreError> {
        self.conn()
            .await?
            .execute(
                "UPDATE oidc_clients SET secret_hash = $2
                 WHERE client_id = $1 AND secret_hash IS NOT NULL",
                &[&client_id, &secret_hash],
            )
            .await
            .map(|n| n > 0)
            .map_err(backend("replacing a client's secret"))
    }
}
