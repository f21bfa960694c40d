//! Liveness challenges in PostgreSQL, spent once by whichever server the answer reaches.

use async_trait::async_trait;

use super::{backend, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    store::{ChallengeSpend, ChallengeStore, StoreError, StoredChallenge},
};

#[async_trait]
impl ChallengeStore for PostgresStore {
    async fn save_challenge(&self, c: &StoredChallenge) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO liveness_challenges (id, actions, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &c.id,
                    &c.actions,
                    &c.created_at.unix_millis(),
                    &c.expires_at.unix_millis(),
                ],
            )
            .await
            .map(|_| ())
            .map_err(backend("saving a liveness challenge"))
    }

    async fn spend_challenge(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<ChallengeSpend, StoreError> {
        let conn = self.conn().await?;
        let updated = conn
            .query_opt(
                "UPDATE liveness_challenges SET used_at = $2
                 WHERE id = $1 AND used_at IS NULL
                 RETURNING id, actions, created_at, expires_at",
                &[&id, &now.unix_millis()],
            )
            .await
            .map_err(backend("spending a liveness challenge"))?;
        if let Some(r) = updated {
            let row = StoredChallenge {
                id: r.get(0),
                actions: r.get(1),
                created_at: timestamp(r.get(2)),
                expires_at: timestamp(r.get(3)),
            };
            return Ok(ChallengeSpend::of_updated(row, now));
        }
        let exists = conn
            .query_opt("SELECT 1 FROM liveness_challenges WHERE id = $1", &[&id])
            .await
            .map_err(backend("spending a liveness challenge"))?
            .is_some();
        Ok(ChallengeSpend::of_unchanged(exists))
    }

    async fn purge_challenges(&self, before: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM liveness_challenges WHERE expires_at < $1",
                &[&before.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("purging liveness challenges"))
    }
}
