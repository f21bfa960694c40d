//! OpenID Connect grants in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{backend, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    store::{CodeRedemption, GrantStore, StoreError, StoredGrant},
};

const COLUMNS: &str =
    "id, client_id, request, created_at, expires_at, code_hash, login, redeemed_at";

fn grant(r: &Row<'_>) -> rusqlite::Result<StoredGrant> {
    Ok(StoredGrant {
        id: r.get(0)?,
        client_id: r.get(1)?,
        request: r.get(2)?,
        created_at: timestamp(r.get(3)?),
        expires_at: timestamp(r.get(4)?),
        code_hash: r.get(5)?,
        login: r.get(6)?,
        redeemed_at: r.get::<_, Option<i64>>(7)?.map(timestamp),
    })
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn add_grant(&self, g: &StoredGrant) -> Result<(), StoreError> {
        let g = g.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO oidc_grants (id, client_id, request, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    g.id,
                    g.client_id,
                    g.request,
                    g.created_at.unix_millis(),
                    g.expires_at.unix_millis()
                ],
            )
            .map(|_| ())
            .map_err(backend("holding an authorization request"))
        })
        .await
    }

    async fn pending_grant(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM oidc_grants
                     WHERE id = ?1 AND code_hash IS NULL AND expires_at > ?2"
                ),
                params![id, now.unix_millis()],
                grant,
            )
            .optional()
            .map_err(backend("reading an authorization request"))
        })
        .await
    }

    async fn answer_grant(
        &self,
        id: &str,
        code_hash: &str,
        login: &str,
        now: Timestamp,
        code_expires_at: Timestamp,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let (id, code_hash, login) = (id.to_owned(), code_hash.to_owned(), login.to_owned());
        self.run(move |conn| {
            conn.query_row(
                &format!(
                    "UPDATE oidc_grants SET code_hash = ?2, login = ?3, expires_at = ?5
                     WHERE id = ?1 AND code_hash IS NULL AND expires_at > ?4
                     RETURNING {COLUMNS}"
                ),
                params![
                    id,
                    code_hash,
                    login,
                    now.unix_millis(),
                    code_expires_at.unix_millis()
                ],
                grant,
            )
            .optional()
            .map_err(backend("answering an authorization request"))
        })
        .await
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<CodeRedemption, StoreError> {
        let code_hash = code_hash.to_owned();
        self.run(move |conn| {
            let redeemed = conn
                .query_row(
                    &format!(
                        "UPDATE oidc_grants SET redeemed_at = ?2
                         WHERE code_hash = ?1 AND redeemed_at IS NULL
                         RETURNING {COLUMNS}"
                    ),
                    params![code_hash, now.unix_millis()],
                    grant,
                )
                .optional()
                .map_err(backend("redeeming a code"))?;
            if let Some(g) = redeemed {
                return Ok(CodeRedemption::Redeemed(g));
            }
            let before = conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM oidc_grants WHERE code_hash = ?1"),
                    [&code_hash],
                    grant,
                )
                .optional()
                .map_err(backend("redeeming a code"))?;
            Ok(before.map_or(CodeRedemption::Unknown, CodeRedemption::Replayed))
        })
        .await
    }

    async fn purge_grants(&self, before: Timestamp) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM oidc_grants WHERE expires_at < ?1",
                [before.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("purging authorization grants"))
        })
        .await
    }
}
