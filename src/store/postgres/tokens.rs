//! Refresh-token sessions and revoked access tokens in PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{backend, parse_stored_id, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    store::{NewRefreshToken, RefreshRecord, RefreshUse, StoreError, TokenStore},
};

const REFRESH_COLUMNS: &str = "r.token_hash, r.family_id, r.user_rowid, u.user_id, r.audience,
     r.created_at, r.expires_at, r.used_at, r.revoked_at, r.scope";

fn refresh_from_row(row: &Row) -> Result<RefreshRecord, StoreError> {
    Ok(RefreshRecord {
        token_hash: row.get(0),
        family_id: row.get(1),
        user_generation: row.get(2),
        user_id: parse_stored_id(row.get(3))?,
        audience: row.get(4),
        created_at: timestamp(row.get(5)),
        expires_at: timestamp(row.get(6)),
        used_at: row.get::<_, Option<i64>>(7).map(timestamp),
        revoked_at: row.get::<_, Option<i64>>(8).map(timestamp),
        scope: row.get(9),
    })
}

/// The refresh token `hash`; `lock` holds its row until the transaction ends, so two servers
/// presented the same token at once cannot both use it.
async fn find_refresh(
    conn: &impl GenericClient,
    hash: &str,
    lock: bool,
) -> Result<Option<RefreshRecord>, StoreError> {
    let lock = if lock { "FOR UPDATE OF r" } else { "" };
    conn.query_opt(
        &format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens r JOIN users u ON u.id = r.user_rowid
             WHERE r.token_hash = $1 {lock}"
        ),
        &[&hash],
    )
    .await
    .map_err(backend("reading a refresh token"))?
    .map(|row| refresh_from_row(&row))
    .transpose()
}

async fn revoke_family(
    conn: &impl GenericClient,
    family: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        &[&family, &now.unix_millis()],
    )
    .await
    .map(|n| n as usize)
    .map_err(backend("revoking a session"))
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn add_refresh_token(&self, r: NewRefreshToken) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_rowid, audience,
                     created_at, expires_at, scope)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &r.token_hash,
                    &r.family_id,
                    &r.user_generation,
                    &r.audience,
                    &r.created_at.unix_millis(),
                    &r.expires_at.unix_millis(),
                    &r.scope,
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| match e.code() {
                // The user was deleted since they were found (a login racing a deletion).
                Some(code) if *code == tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION => {
                    StoreError::UserNotFound
                }
                _ => StoreError::backend("storing a refresh token", e),
            })
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        find_refresh(&self.conn().await?, token_hash, false).await
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(backend("using a refresh token"))?;
        let Some(record) = find_refresh(&tx, token_hash, true).await? else {
            return Ok(RefreshUse::Unknown);
        };
        let outcome = if record.used_at.is_some() || record.revoked_at.is_some() {
            revoke_family(&tx, &record.family_id, now).await?;
            RefreshUse::Replayed(record)
        } else {
            tx.execute(
                "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1",
                &[&token_hash, &now.unix_millis()],
            )
            .await
            .map_err(backend("using a refresh token"))?;
            RefreshUse::Fresh(record)
        };
        tx.commit()
            .await
            .map_err(backend("using a refresh token"))?;
        Ok(outcome)
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        revoke_family(&self.conn().await?, family_id, now).await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2)
                 ON CONFLICT (jti) DO UPDATE SET expires_at = $2",
                &[&jti, &expires_at.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("revoking an access token"))
    }

    async fn is_access_token_revoked(
        &self,
        jti: &str,
        session: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.conn()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1)
                     OR EXISTS (SELECT 1 FROM refresh_tokens
                                WHERE family_id = $2 AND revoked_at IS NOT NULL)",
                &[&jti, &session],
            )
            .await
            .map(|row| row.get(0))
            .map_err(backend("checking a revocation"))
    }

    async fn purge_expired_tokens(&self, now: Timestamp) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let now = now.unix_millis();
        conn.execute(
            "DELETE FROM revoked_access_tokens WHERE expires_at < $1",
            &[&now],
        )
        .await
        .map_err(backend("purging revocations"))?;
        conn.execute("DELETE FROM refresh_tokens WHERE expires_at < $1", &[&now])
            .await
            .map_err(backend("purging refresh tokens"))?;
        Ok(())
    }
}
