//! Refresh-token sessions and revoked access tokens in SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{backend, parse_stored_id, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    store::{NewRefreshToken, RefreshRecord, RefreshUse, StoreError, TokenStore},
};

const REFRESH_COLUMNS: &str = "r.token_hash, r.family_id, r.user_rowid, u.user_id, r.audience,
     r.created_at, r.expires_at, r.used_at, r.revoked_at, r.scope";

fn refresh_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshRecord> {
    let raw: String = row.get(3)?;
    Ok(RefreshRecord {
        token_hash: row.get(0)?,
        family_id: row.get(1)?,
        user_generation: row.get(2)?,
        user_id: parse_stored_id(&raw)?,
        audience: row.get(4)?,
        created_at: timestamp(row.get(5)?),
        expires_at: timestamp(row.get(6)?),
        used_at: row.get::<_, Option<i64>>(7)?.map(timestamp),
        revoked_at: row.get::<_, Option<i64>>(8)?.map(timestamp),
        scope: row.get(9)?,
    })
}

fn find_refresh(conn: &Connection, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens r JOIN users u ON u.id = r.user_rowid
             WHERE r.token_hash = ?1"
        ),
        [hash],
        refresh_from_row,
    )
    .optional()
    .map_err(backend("reading a refresh token"))
}

fn revoke_family(conn: &Connection, family: &str, now: Timestamp) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![family, now.unix_millis()],
    )
    .map_err(backend("revoking a session"))
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn add_refresh_token(&self, r: NewRefreshToken) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_rowid, audience,
                     created_at, expires_at, scope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.token_hash,
                    r.family_id,
                    r.user_generation,
                    r.audience,
                    r.created_at.unix_millis(),
                    r.expires_at.unix_millis(),
                    r.scope
                ],
            )
            .map(|_| ())
            .map_err(|e| match e.sqlite_error() {
                // The user was deleted since they were found (a login racing a deletion).
                Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    StoreError::UserNotFound
                }
                _ => StoreError::backend("storing a refresh token", e),
            })
        })
        .await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let hash = token_hash.to_owned();
        self.run(move |conn| find_refresh(conn, &hash)).await
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("using a refresh token"))?;
            let Some(record) = find_refresh(&tx, &hash)? else {
                return Ok(RefreshUse::Unknown);
            };
            let outcome = if record.used_at.is_some() || record.revoked_at.is_some() {
                revoke_family(&tx, &record.family_id, now)?;
                RefreshUse::Replayed(record)
            } else {
                tx.execute(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1",
                    params![hash, now.unix_millis()],
                )
                .map_err(backend("using a refresh token"))?;
                RefreshUse::Fresh(record)
            };
            tx.commit().map_err(backend("using a refresh token"))?;
            Ok(outcome)
        })
        .await
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let family = family_id.to_owned();
        self.run(move |conn| revoke_family(conn, &family, now))
            .await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("revoking an access token"))
        })
        .await
    }

    async fn is_access_token_revoked(
        &self,
        jti: &str,
        session: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (jti, session) = (jti.to_owned(), session.map(str::to_owned));
        self.run(move |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = ?1)
                     OR EXISTS (SELECT 1 FROM refresh_tokens
                                WHERE family_id = ?2 AND revoked_at IS NOT NULL)",
                params![jti, session],
                |r| r.get(0),
            )
            .map_err(backend("checking a revocation"))
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: Timestamp) -> Result<(), StoreError> {
        self.run(move |conn| {
            let now = now.unix_millis();
            conn.execute(
                "DELETE FROM revoked_access_tokens WHERE expires_at < ?1",
                [now],
            )
            .map_err(backend("purging revocations"))?;
            conn.execute("DELETE FROM refresh_tokens WHERE expires_at < ?1", [now])
                .map_err(backend("purging refresh tokens"))?;
            Ok(())
        })
        .await
    }
}
