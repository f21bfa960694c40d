//! The audit trail in PostgreSQL.

use async_trait::async_trait;

use super::{backend, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    store::{AuditQuery, AuditRecord, AuditStore, StoreError},
};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_event(&self, e: AuditRecord) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO audit_events (at, kind, user_id, actor, address, request_id, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &e.at.unix_millis(),
                    &e.kind,
                    &e.user_id,
                    &e.actor,
                    &e.address,
                    &e.request_id,
                    &e.detail.to_string(),
                ],
            )
            .await
            .map(|_| ())
            .map_err(backend("recording an audit event"))
    }

    async fn audit_events(&self, q: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let since = q.since.map(Timestamp::unix_millis);
        let limit = i64::from(q.limit);
        Ok(self
            .conn()
            .await?
            .query(
                "SELECT at, kind, user_id, actor, address, request_id, detail
                 FROM audit_events
                 WHERE ($1::TEXT IS NULL OR kind = $1) AND ($2::TEXT IS NULL OR user_id = $2)
                   AND ($3::TEXT IS NULL OR address = $3) AND ($4::BIGINT IS NULL OR at >= $4)
                 ORDER BY at DESC, id DESC LIMIT $5",
                &[&q.kind, &q.user_id, &q.address, &since, &limit],
            )
            .await
            .map_err(backend("reading the audit trail"))?
            .iter()
            .map(|r| AuditRecord {
                at: timestamp(r.get(0)),
                kind: r.get(1),
                user_id: r.get(2),
                actor: r.get(3),
                address: r.get(4),
                request_id: r.get(5),
                detail: serde_json::from_str(r.get(6)).unwrap_or_default(),
            })
            .collect())
    }

    async fn purge_audit(&self, before: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM audit_events WHERE at < $1",
                &[&before.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("purging the audit trail"))
    }
}
