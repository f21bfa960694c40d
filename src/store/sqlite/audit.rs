//! The audit trail in SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::{backend, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    store::{AuditQuery, AuditRecord, AuditStore, StoreError},
};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_event(&self, e: AuditRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO audit_events (at, kind, user_id, actor, address, request_id, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.at.unix_millis(),
                    e.kind,
                    e.user_id,
                    e.actor,
                    e.address,
                    e.request_id,
                    e.detail.to_string()
                ],
            )
            .map(|_| ())
            .map_err(backend("recording an audit event"))
        })
        .await
    }

    async fn audit_events(&self, q: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.run(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT at, kind, user_id, actor, address, request_id, detail
                     FROM audit_events
                     WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR user_id = ?2)
                       AND (?3 IS NULL OR address = ?3) AND (?4 IS NULL OR at >= ?4)
                     ORDER BY at DESC, id DESC LIMIT ?5",
                )
                .map_err(backend("reading the audit trail"))?;
            let rows = stmt
                .query_map(
                    params![
                        q.kind,
                        q.user_id,
                        q.address,
                        q.since.map(Timestamp::unix_millis),
                        q.limit
                    ],
                    |r| {
                        let detail: String = r.get(6)?;
                        Ok(AuditRecord {
                            at: timestamp(r.get(0)?),
                            kind: r.get(1)?,
                            user_id: r.get(2)?,
                            actor: r.get(3)?,
                            address: r.get(4)?,
                            request_id: r.get(5)?,
                            detail: serde_json::from_str(&detail).unwrap_or_default(),
                        })
                    },
                )
                .map_err(backend("reading the audit trail"))?;
            rows.collect::<Result<_, _>>()
                .map_err(backend("reading the audit trail"))
        })
        .await
    }

    async fn purge_audit(&self, before: Timestamp) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM audit_events WHERE at < ?1",
                [before.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("purging the audit trail"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn audit_events_filter_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("db.sqlite"),
            &crate::store::sqlite::test_key(),
        )
        .unwrap();
        for (i, (kind, user)) in [
            ("login_failed", "a"),
            ("login_succeeded", "a"),
            ("login_failed", "b"),
        ]
        .iter()
        .enumerate()
        {
            store
                .record_event(AuditRecord {
                    at: Timestamp::from_unix_seconds(100 + i as i64),
                    kind: (*kind).into(),
                    user_id: Some((*user).into()),
                    actor: None,
                    address: Some("192.0.2.1".into()),
                    request_id: Some(format!("r{i}")),
                    detail: serde_json::json!({"n": i}),
                })
                .await
                .unwrap();
        }
        let failed = store
            .audit_events(AuditQuery {
                kind: Some("login_failed".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            failed
                .iter()
                .map(|e| e.user_id.as_deref())
                .collect::<Vec<_>>(),
            [Some("b"), Some("a")]
        );
        let of_a = store
            .audit_events(AuditQuery {
                user_id: Some("a".into()),
                since: Some(Timestamp::from_unix_seconds(101)),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(of_a.len(), 1);
        assert_eq!(of_a[0].detail["n"], 1);

        // Retention: events older than the cut-off go.
        store
            .purge_audit(Timestamp::from_unix_seconds(102))
            .await
            .unwrap();
        let left = store
            .audit_events(AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].user_id.as_deref(), Some("b"));
    }
}
