//! OpenID Connect grants in PostgreSQL, each step taken once by whichever server it reaches.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{backend, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    store::{CodeRedemption, GrantStore, StoreError, StoredGrant},
};

const COLUMNS: &str =
    "id, client_id, request, created_at, expires_at, code_hash, login, redeemed_at";

fn grant(r: &Row) -> StoredGrant {
    StoredGrant {
        id: r.get(0),
        client_id: r.get(1),
        request: r.get(2),
        created_at: timestamp(r.get(3)),
        expires_at: timestamp(r.get(4)),
        code_hash: r.get(5),
        login: r.get(6),
        redeemed_at: r.get::<_, Option<i64>>(7).map(timestamp),
    }
}

#[async_trait]
impl GrantStore for PostgresStore {
    async fn add_grant(&self, g: &StoredGrant) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO oidc_grants (id, client_id, request, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &g.id,
                    &g.client_id,
                    &g.request,
                    &g.created_at.unix_millis(),
                    &g.expires_at.unix_millis(),
                ],
            )
            .await
            .map(|_| ())
            .map_err(backend("holding an authorization request"))
    }

    async fn pending_grant(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self
            .conn()
            .await?
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM oidc_grants
                     WHERE id = $1 AND code_hash IS NULL AND expires_at > $2"
                ),
                &[&id, &now.unix_millis()],
            )
            .await
            .map_err(backend("reading an authorization request"))?
            .map(|r| grant(&r)))
    }

    async fn answer_grant(
        &self,
        id: &str,
        code_hash: &str,
        login: &str,
        now: Timestamp,
        code_expires_at: Timestamp,
    ) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self
            .conn()
            .await?
            .query_opt(
                &format!(
                    "UPDATE oidc_grants SET code_hash = $2, login = $3, expires_at = $5
                     WHERE id = $1 AND code_hash IS NULL AND expires_at > $4
                     RETURNING {COLUMNS}"
                ),
                &[
                    &id,
                    &code_hash,
                    &login,
                    &now.unix_millis(),
                    &code_expires_at.unix_millis(),
                ],
            )
            .await
            .map_err(backend("answering an authorization request"))?
            .map(|r| grant(&r)))
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<CodeRedemption, StoreError> {
        let conn = self.conn().await?;
        let redeemed = conn
            .query_opt(
                &format!(
                    "UPDATE oidc_grants SET redeemed_at = $2
                     WHERE code_hash = $1 AND redeemed_at IS NULL
                     RETURNING {COLUMNS}"
                ),
                &[&code_hash, &now.unix_millis()],
            )
            .await
            .map_err(backend("redeeming a code"))?;
        if let Some(r) = redeemed {
            return Ok(CodeRedemption::Redeemed(grant(&r)));
        }
        let before = conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM oidc_grants WHERE code_hash = $1"),
                &[&code_hash],
            )
            .await
            .map_err(backend("redeeming a code"))?;
        Ok(before.map_or(CodeRedemption::Unknown, |r| {
            CodeRedemption::Replayed(grant(&r))
        }))
    }

    async fn purge_grants(&self, before: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM oidc_grants WHERE expires_at < $1",
                &[&before.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("purging authorization grants"))
    }
}
