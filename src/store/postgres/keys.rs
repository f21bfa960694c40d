//! Token signing keys in PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{backend, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    store::{KeyStore, StoreError, StoredKey},
};

fn key_from_row(row: &Row) -> StoredKey {
    StoredKey {
        kid: row.get(0),
        alg: row.get(1),
        private_der: row.get(2),
        public_jwk: row.get(3),
        created_at: timestamp(row.get(4)),
        retired_at: row.get::<_, Option<i64>>(5).map(timestamp),
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn add_signing_key(&self, key: StoredKey, now: Timestamp) -> Result<(), StoreError> {
        let sealed = self.vault.seal(&key.kid, &key.private_der)?;
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(backend("adding a signing key"))?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
            &[&now.unix_millis()],
        )
        .await
        .map_err(backend("retiring signing keys"))?;
        tx.execute(
            "INSERT INTO signing_keys (kid, alg, private_der, public_jwk, created_at, retired_at)
             VALUES ($1, $2, $3, $4, $5, NULL)",
            &[
                &key.kid,
                &key.alg,
                &sealed,
                &key.public_jwk,
                &key.created_at.unix_millis(),
            ],
        )
        .await
        .map_err(backend("adding a signing key"))?;
        tx.commit().await.map_err(backend("adding a signing key"))
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.conn()
            .await?
            .query(
                "SELECT kid, alg, private_der, public_jwk, created_at, retired_at
                 FROM signing_keys ORDER BY created_at DESC, seq DESC",
                &[],
            )
            .await
            .map_err(backend("reading signing keys"))?
            .iter()
            .map(|row| {
                let mut key = key_from_row(row);
                key.private_der = self.vault.open(&key.kid, &key.private_der)?;
                Ok(key)
            })
            .collect()
    }

    async fn drop_keys_retired_before(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
                &[&cutoff.unix_millis()],
            )
            .await
            .map(|n| n as usize)
            .map_err(backend("dropping retired keys"))
    }
}
