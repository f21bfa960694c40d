//! Failed face logins per claimed user id, and the lockouts they lead to.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::{clock::Timestamp, domain::UserId};

/// When failed logins lock an account, and for how long.
#[derive(Clone, Debug)]
pub struct LockoutRule {
    pub threshold: u32,
    pub first_lock: Duration,
    pub max_lock: Duration,
}

impl LockoutRule {
    /// The lock `failures` failed logins earn: none below the threshold, then the first lock,
    /// doubled for each failure beyond it, up to the longest.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        let beyond = failures.checked_sub(self.threshold)?;
        let doubled = self
            .first_lock
            .checked_mul(1u32 << beyond.min(20))
            .unwrap_or(self.max_lock);
        Some(doubled.min(self.max_lock))
    }
}

/// What [`LockoutStore::admit_attempt`] decided about a login at an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The attempt may compare a face. It already counts as a failure (a success clears the
    /// count); `locked` is the lock it set by reaching the threshold, if it did.
    Admitted {
        failures: u32,
        locked: Option<Timestamp>,
    },
    /// A lock is in force until then: nothing was counted.
    Locked(Timestamp),
}

/// An account's record as a store reads it: failures, the last one's time, the lock.
pub(crate) type LockoutRecord = (u32, Timestamp, Option<Timestamp>);

/// The admission of an attempt at an account whose record reads `record` at `now`, and the
/// record to write back when it is admitted (failures, lock). Both stores decide here, with
/// the account's row locked, so that attempts sent at once are counted one after another.
pub(crate) fn admit(
    record: Option<LockoutRecord>,
    now: Timestamp,
    forget_before: Timestamp,
    rule: &LockoutRule,
) -> Admission {
    if let Some((_, _, Some(until))) = record {
        if until > now {
            return Admission::Locked(until);
        }
    }
    let failures = match record {
        Some((failures, last, _)) if last >= forget_before => failures + 1,
        _ => 1,
    };
    Admission::Admitted {
        failures,
        locked: rule.lock_for(failures).map(|lock| now + lock),
    }
}

#[async_trait]
pub trait LockoutStore: Send + Sync {
    /// Counts an attempt at `user_id` as a failure before its face is compared, and locks the
    /// account in the same step when the count reaches the rule's threshold; refuses it,
    /// counting nothing, while a lock is in force. Atomic: of attempts sent at once, at most
    /// the threshold's number are admitted.
    async fn admit_attempt(
        &self,
        user_id: &UserId,
        now: Timestamp,
        forget_before: Timestamp,
        rule: &LockoutRule,
    ) -> Result<Admission, StoreError>;
    /// Takes back an admitted attempt that compared no face: one failure less, and no lock
    /// once the failures are under the threshold again.
    async fn forgive_attempt(&self, user_id: &UserId, rule: &LockoutRule)
        -> Result<(), StoreError>;
    /// Until when `user_id` is locked, if it ever was (the time may be past).
    async fn locked_until(&self, user_id: &UserId) -> Result<Option<Timestamp>, StoreError>;
    /// Forgets the failures and any lock of `user_id` (a successful login, or an operator's
    /// unlock). Returns whether there was anything to forget.
    async fn clear_lockout(&self, user_id: &UserId) -> Result<bool, StoreError>;
    /// Drops records whose last failure is older than `before` and that lock nothing (of
    /// accounts and of addresses).
    async fn purge_lockouts(&self, before: Timestamp) -> Result<(), StoreError>;
    /// Counts a failed 1:N login from `address`, forgetting its failures first when both the
    /// last of them and its wait are older than `forget_before`. Returns the failures now
    /// counted.
    async fn record_address_failure(
        &self,
        address: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError>;
    /// Takes back one failure counted against `address` (a liveness challenge it fetched, once
    /// passed); any wait already set runs its course.
    async fn forgive_address_failure(&self, address: &str) -> Result<(), StoreError>;
    /// Makes `address` wait until `until` before its next login.
    async fn set_address_wait(&self, address: &str, until: Timestamp) -> Result<(), StoreError>;
    /// Until when `address` must wait, if it ever had to (the time may be past).
    async fn address_wait(&self, address: &str) -> Result<Option<Timestamp>, StoreError>;
}
