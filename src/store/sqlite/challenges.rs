//! Liveness challenges in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{backend, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    store::{ChallengeSpend, ChallengeStore, StoreError, StoredChallenge},
};

#[async_trait]
impl ChallengeStore for SqliteStore {
    async fn save_challenge(&self, c: &StoredChallenge) -> Result<(), StoreError> {
        let c = c.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO liveness_challenges (id, actions, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    c.id,
                    c.actions,
                    c.created_at.unix_millis(),
                    c.expires_at.unix_millis()
                ],
            )
            .map(|_| ())
            .map_err(backend("saving a liveness challenge"))
        })
        .await
    }

    async fn spend_challenge(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<ChallengeSpend, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let updated = conn
                .query_row(
                    "UPDATE liveness_challenges SET used_at = ?2
                     WHERE id = ?1 AND used_at IS NULL
                     RETURNING id, actions, created_at, expires_at",
                    params![id, now.unix_millis()],
                    |r| {
                        Ok(StoredChallenge {
                            id: r.get(0)?,
                            actions: r.get(1)?,
                            created_at: timestamp(r.get(2)?),
                            expires_at: timestamp(r.get(3)?),
                        })
                    },
                )
                .optional()
                .map_err(backend("spending a liveness challenge"))?;
            if let Some(row) = updated {
                return Ok(ChallengeSpend::of_updated(row, now));
            }
            let exists = conn
                .query_row(
                    "SELECT 1 FROM liveness_challenges WHERE id = ?1",
                    [&id],
                    |_| Ok(()),
                )
                .optional()
                .map_err(backend("spending a liveness challenge"))?
                .is_some();
            Ok(ChallengeSpend::of_unchanged(exists))
        })
        .await
    }

    async fn purge_challenges(&self, before: Timestamp) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM liveness_challenges WHERE expires_at < ?1",
                [before.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("purging liveness challenges"))
        })
        .await
    }
}
