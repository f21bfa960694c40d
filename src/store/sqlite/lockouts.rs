//! Failed logins and lockouts in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{backend, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    domain::UserId,
    store::{
        lockouts::{admit, LockoutRecord},
        Admission, LockoutRule, LockoutStore, StoreError,
    },
};

#[async_trait]
impl LockoutStore for SqliteStore {
    async fn admit_attempt(
        &self,
        user_id: &UserId,
        now: Timestamp,
        forget_before: Timestamp,
        rule: &LockoutRule,
    ) -> Result<Admission, StoreError> {
        let user_id = user_id.as_str().to_owned();
        let rule = rule.clone();
        self.run(move |conn| {
            let fail = backend("admitting a login attempt");
            // Immediate: the account's record is read and written with no other writer between.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&fail)?;
            let record: Option<LockoutRecord> = tx
                .query_row(
                    "SELECT failures, last_failure_at, locked_until FROM lockouts
                     WHERE user_id = ?1",
                    [&user_id],
                    |r| {
                        Ok((
                            r.get(0)?,
                            timestamp(r.get(1)?),
                            r.get::<_, Option<i64>>(2)?.map(timestamp),
                        ))
                    },
                )
                .optional()
                .map_err(&fail)?;
            let admission = admit(record, now, forget_before, &rule);
            if let Admission::Admitted { failures, locked } = admission {
                tx.execute(
                    "INSERT INTO lockouts (user_id, failures, last_failure_at, locked_until)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id) DO UPDATE SET failures = ?2, last_failure_at = ?3,
                         locked_until = COALESCE(?4, locked_until)",
                    params![
                        user_id,
                        failures,
                        now.unix_millis(),
                        locked.map(|t| t.unix_millis())
                    ],
                )
                .map_err(&fail)?;
            }
            tx.commit().map_err(&fail)?;
            Ok(admission)
        })
        .await
    }

    async fn forgive_attempt(
        &self,
        user_id: &UserId,
        rule: &LockoutRule,
    ) -> Result<(), StoreError> {
        let user_id = user_id.as_str().to_owned();
        let threshold = rule.threshold;
        self.run(move |conn| {
            conn.execute(
                "UPDATE lockouts SET failures = MAX(failures - 1, 0),
                     locked_until = CASE WHEN failures - 1 < ?2 THEN NULL ELSE locked_until END
                 WHERE user_id = ?1",
                params![user_id, threshold],
            )
            .map(|_| ())
            .map_err(backend("forgiving a login attempt"))
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
                     failures = CASE WHEN MAX(last_failure_at, wait_until) < ?3
                                THEN 1 ELSE failures + 1 END,
                     last_failure_at = ?2
                 RETURNING failures",
                params![address, now.unix_millis(), forget_before.unix_millis()],
                |r| r.get(0),
            )
            .map_err(backend("counting a failed login"))
        })
        .await
    }

    async fn forgive_address_failure(&self, address: &str) -> Result<(), StoreError> {
        let address = address.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE address_failures SET failures = MAX(failures - 1, 0) WHERE address = ?1",
                [address],
            )
            .map(|_| ())
            .map_err(backend("taking back a failed attempt"))
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
