//! Failed logins and lockouts in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{backend, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    domain::UserId,
    store::{LockoutStore, StoreError},
};

#[async_trait]
impl LockoutStore for SqliteStore {
    async fn record_failure(
        &self,
        user_id: &UserId,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError> {
        let user_id = user_id.as_str().to_owned();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("counting a failed login"))?;
            tx.execute(
                "INSERT INTO lockouts (user_id, failures, last_failure_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET
                     failures = CASE WHEN last_failure_at < ?3 THEN 1 ELSE failures + 1 END,
                     last_failure_at = ?2",
                params![user_id, now.unix_millis(), forget_before.unix_millis()],
            )
            .map_err(backend("counting a failed login"))?;
            let failures: u32 = tx
                .query_row(
                    "SELECT failures FROM lockouts WHERE user_id = ?1",
                    [&user_id],
                    |r| r.get(0),
                )
                .map_err(backend("counting a failed login"))?;
            tx.commit().map_err(backend("counting a failed login"))?;
            Ok(failures)
        })
        .await
    }

    async fn lock(&self, user_id: &UserId, until: Timestamp) -> Result<(), StoreError> {
        let user_id = user_id.as_str().to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE lockouts SET locked_until = MAX(COALESCE(locked_until, 0), ?2)
                 WHERE user_id = ?1",
                params![user_id, until.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("locking an account"))
        })
        .await
    }

    async fn locked_until(&self, user_id: &UserId) -> Result<Option<Timestamp>, StoreError> {
        let user_id = user_id.as_str().to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT locked_until FROM lockouts WHERE user_id = ?1",
                [user_id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(|row| row.flatten().map(timestamp))
            .map_err(backend("reading a lockout"))
        })
        .await
    }

    async fn clear_lockout(&self, user_id: &UserId) -> Result<bool, StoreError> {
        let user_id = user_id.as_str().to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM lockouts WHERE user_id = ?1", [user_id])
                .map(|n| n > 0)
                .map_err(backend("clearing a lockout"))
        })
        .await
    }

    async fn purge_lockouts(&self, before: Timestamp) -> Result<(), StoreError> {
        self.run(move |conn| {
            let before = before.unix_millis();
            conn.execute(
                "DELETE FROM lockouts WHERE last_failure_at < ?1
                     AND COALESCE(locked_until, 0) < ?1",
                [before],
            )
            .map_err(backend("purging lockouts"))?;
            conn.execute(
                "DELETE FROM address_failures WHERE last_failure_at < ?1 AND wait_until < ?1",
                [before],
            )
            .map(|_| ())
            .map_err(backend("purging lockouts"))
        })
        .await
    }

    async fn record_address_failure(
        &self,
        address: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError> {
        let address = address.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "INSERT INTO address_failures (address, failures, last_failure_at, wait_until)
                 VALUES (?1, 1, ?2, 0)
                 ON CONFLICT (address) DO UPDATE SET
                     failures = CASE WHEN last_failure_at < ?3 THEN 1 ELSE failures + 1 END,
                     last_failure_at = ?2
                 RETURNING failures",
                params![address, now.unix_millis(), forget_before.unix_millis()],
                |r| r.get(0),
            )
            .map_err(backend("counting a failed login"))
        })
        .await
    }

    async fn set_address_wait(&self, address: &str, until: Timestamp) -> Result<(), StoreError> {
        let address = address.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE address_failures SET wait_until = MAX(wait_until, ?2) WHERE address = ?1",
                params![address, until.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("delaying an address"))
        })
        .await
    }

    async fn address_wait(&self, address: &str) -> Result<Option<Timestamp>, StoreError> {
        let address = address.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT wait_until FROM address_failures WHERE address = ?1",
                [address],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|row| row.map(timestamp))
            .map_err(backend("reading an address's wait"))
        })
        .await
    }
}
