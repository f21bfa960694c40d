//! OpenID Connect clients in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{backend, timestamp, SqliteStore};
use crate::store::{ClientStore, StoreError, StoredClient};

const COLUMNS: &str =
    "client_id, name, redirect_uris, post_logout_redirect_uris, secret_hash, created_at";

fn client(r: &Row<'_>) -> rusqlite::Result<StoredClient> {
    let uris = |i: usize| -> rusqlite::Result<Vec<String>> {
        let raw: String = r.get(i)?;
        serde_json::from_str(&raw).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
    };
    Ok(StoredClient {
        client_id: r.get(0)?,
        name: r.get(1)?,
        redirect_uris: uris(2)?,
        post_logout_redirect_uris: uris(3)?,
        secret_hash: r.get(4)?,
        created_at: timestamp(r.get(5)?),
    })
}

fn json(uris: &[String]) -> String {
    serde_json::Value::from(uris.to_vec()).to_string()
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn add_client(&self, c: &StoredClient) -> Result<(), StoreError> {
        let c = c.clone();
        self.run(move |conn| {
            let added = conn
                .execute(
                    "INSERT INTO oidc_clients (client_id, name, redirect_uris,
                         post_logout_redirect_uris, secret_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (client_id) DO NOTHING",
                    params![
                        c.client_id,
                        c.name,
                        json(&c.redirect_uris),
                        json(&c.post_logout_redirect_uris),
                        c.secret_hash,
                        c.created_at.unix_millis()
                    ],
                )
                .map_err(backend("registering a client"))?;
            if added == 0 {
                return Err(StoreError::ClientExists);
            }
            Ok(())
        })
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<StoredClient>, StoreError> {
        let client_id = client_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM oidc_clients WHERE client_id = ?1"),
                [client_id],
                client,
            )
            .optional()
            .map_err(backend("reading a client"))
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        self.run(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM oidc_clients ORDER BY client_id"
                ))
                .map_err(backend("listing clients"))?;
            let rows = stmt
                .query_map([], client)
                .map_err(backend("listing clients"))?;
            rows.collect::<Result<_, _>>()
                .map_err(backend("listing clients"))
        })
        .await
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let client_id = client_id.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM oidc_clients WHERE client_id = ?1", [client_id])
                .map(|n| n > 0)
                .map_err(backend("removing a client"))
        })
        .await
    }

    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreError> {
        let (client_id, secret_hash) = (client_id.to_owned(), secret_hash.to_owned());
        self.run(move |conn| {
            conn.execute(
                "UPDATE oidc_clients SET secret_hash = ?2
                 WHERE client_id = ?1 AND secret_hash IS NOT NULL",
                [client_id, secret_hash],
            )
            .map(|n| n > 0)
            .map_err(backend("replacing a client's secret"))
        })
        .await
    }
}
