//! The audit trail: structured events, kept in the store and queryable.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;

/// One recorded event.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// What happened: `login_succeeded`, `login_failed`, `account_locked`, ...
    pub kind: String,
    /// The user the event is about (claimed or found).
    pub user_id: Option<String>,
    /// Who did it, when not the user: an admin's id, or `operator`.
    pub actor: Option<String>,
    /// The client's address.
    pub address: Option<String>,
    pub request_id: Option<String>,
    /// Further facts (similarity, reason, code), a JSON object.
    pub detail: serde_json::Value,
}

/// Which events to return, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub address: Option<String>,
    pub since: Option<Timestamp>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_event(&self, event: AuditRecord) -> Result<(), StoreError>;
    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Drops events older than `before`.
    async fn purge_audit(&self, before: Timestamp) -> Result<(), StoreError>;
}
