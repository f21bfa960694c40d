//! Request counters in fixed windows, for limits that several servers share.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;

#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Counts one more request under `key` in the window numbered `window`; returns the
    /// requests counted there so far, this one included.
    async fn count_request(&self, key: &str, window: i64) -> Result<u32, StoreError>;
    /// Drops the counts of windows that started before `before`.
    async fn purge_counters(&self, before: Timestamp) -> Result<(), StoreError>;
}
