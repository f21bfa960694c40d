//! Failed face logins per claimed user id, and the lockouts they lead to.

use async_trait::async_trait;

use super::StoreError;
use crate::{clock::Timestamp, domain::UserId};

#[async_trait]
pub trait LockoutStore: Send + Sync {
    /// Counts a failed login against `user_id`, forgetting failures older than
    /// `forget_before` first. Returns the failures now counted.
    async fn record_failure(
        &self,
        user_id: &UserId,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError>;
    /// Locks `user_id` until `until`.
    async fn lock(&self, user_id: &UserId, until: Timestamp) -> Result<(), StoreError>;
    /// Until when `user_id` is locked, if it ever was (the time may be past).
    async fn locked_until(&self, user_id: &UserId) -> Result<Option<Timestamp>, StoreError>;
    /// Forgets the failures and any lock of `user_id` (a successful login, or an operator's
    /// unlock). Returns whether there was anything to forget.
    async fn clear_lockout(&self, user_id: &UserId) -> Result<bool, StoreError>;
    /// Drops records whose last failure is older than `before` and that lock nothing (of
    /// accounts and of addresses).
    async fn purge_lockouts(&self, before: Timestamp) -> Result<(), StoreError>;
    /// Counts a failed 1:N login from `address`, forgetting failures older than
    /// `forget_before` first. Returns the failures now counted.
    async fn record_address_failure(
        &self,
        address: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError>;
    /// Makes `address` wait until `until` before its next login.
    async fn set_address_wait(&self, address: &str, until: Timestamp) -> Result<(), StoreError>;
    /// Until when `address` must wait, if it ever had to (the time may be past).
    async fn address_wait(&self, address: &str) -> Result<Option<Timestamp>, StoreError>;
}
