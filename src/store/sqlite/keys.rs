//! Token signing keys in SQLite.

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use super::{backend, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    store::{KeyStore, StoreError, StoredKey, Vault},
};

const KEY_COLUMNS: &str = "kid, alg, private_der, public_jwk, created_at, retired_at";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    Ok(StoredKey {
        kid: row.get(0)?,
        alg: row.get(1)?,
        private_der: row.get(2)?,
        public_jwk: row.get(3)?,
        created_at: timestamp(row.get(4)?),
        retired_at: row.get::<_, Option<i64>>(5)?.map(timestamp),
    })
}

/// The key with its private part opened.
fn open_key(vault: &Vault, mut key: StoredKey) -> Result<StoredKey, StoreError> {
    key.private_der = vault.open(&key.kid, &key.private_der)?;
    Ok(key)
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn add_signing_key(&self, key: StoredKey, now: Timestamp) -> Result<(), StoreError> {
        let sealed = self.vault.seal(&key.kid, &key.private_der)?;
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("adding a signing key"))?;
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
                [now.unix_millis()],
            )
            .map_err(backend("retiring signing keys"))?;
            tx.execute(
                &format!(
                    "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)"
                ),
                params![
                    key.kid,
                    key.alg,
                    sealed,
                    key.public_jwk,
                    key.created_at.unix_millis()
                ],
            )
            .map_err(backend("adding a signing key"))?;
            tx.commit().map_err(backend("adding a signing key"))
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let vault = self.vault.clone();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"
                ))
                .map_err(backend("reading signing keys"))?;
            let rows = stmt
                .query_map([], key_from_row)
                .map_err(backend("reading signing keys"))?;
            rows.map(|row| open_key(&vault, row.map_err(backend("reading signing keys"))?))
                .collect()
        })
        .await
    }

    async fn drop_keys_retired_before(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
                [cutoff.unix_millis()],
            )
            .map_err(backend("dropping retired keys"))
        })
        .await
    }
}
