//! Failed logins and lockouts in PostgreSQL, counted by every server on the database.

use async_trait::async_trait;

use super::{backend, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    domain::UserId,
    store::{
        lockouts::{admit, LockoutRecord},
        Admission, LockoutRule, LockoutStore, StoreError,
    },
};

#[async_trait]
impl LockoutStore for PostgresStore {
    async fn admit_attempt(
        &self,
        user_id: &UserId,
        now: Timestamp,
        forget_before: Timestamp,
        rule: &LockoutRule,
    ) -> Result<Admission, StoreError> {
        let fail = backend("admitting a login attempt");
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(&fail)?;
        // The row exists before it is locked, so attempts on several servers at once queue on
        // it rather than each inserting its own first count.
        tx.execute(
            "INSERT INTO lockouts (user_id, failures, last_failure_at) VALUES ($1, 0, $2)
             ON CONFLICT (user_id) DO NOTHING",
            &[&user_id.as_str(), &forget_before.unix_millis()],
        )
        .await
        .map_err(&fail)?;
        let row = tx
            .query_one(
                "SELECT failures, last_failure_at, locked_until FROM lockouts
                 WHERE user_id = $1 FOR UPDATE",
                &[&user_id.as_str()],
            )
            .await
            .map_err(&fail)?;
        let record: LockoutRecord = (
            row.get::<_, i32>(0) as u32,
            timestamp(row.get(1)),
            row.get::<_, Option<i64>>(2).map(timestamp),
        );
        let admission = admit(Some(record), now, forget_before, rule);
        if let Admission::Admitted { failures, locked } = admission {
            tx.execute(
                "UPDATE lockouts SET failures = $2, last_failure_at = $3,
                     locked_until = COALESCE($4, locked_until)
                 WHERE user_id = $1",
                &[
                    &user_id.as_str(),
                    &(failures as i32),
                    &now.unix_millis(),
                    &locked.map(|t| t.unix_millis()),
                ],
            )
            .await
            .map_err(&fail)?;
        }
        tx.commit().await.map_err(&fail)?;
        Ok(admission)
    }

    async fn forgive_attempt(
        &self,
        user_id: &UserId,
        rule: &LockoutRule,
    ) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "UPDATE lockouts SET failures = GREATEST(failures - 1, 0),
                     locked_until = CASE WHEN failures - 1 < $2 THEN NULL ELSE locked_until END
                 WHERE user_id = $1",
                &[&user_id.as_str(), &(rule.threshold as i32)],
            )
            .await
            .map(|_| ())
            .map_err(backend("forgiving a login attempt"))
    }

    async fn locked_until(&self, user_id: &UserId) -> Result<Option<Timestamp>, StoreError> {
        self.conn()
            .await?
            .query_opt(
                "SELECT locked_until FROM lockouts WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await
            .map(|row| row.and_then(|r| r.get::<_, Option<i64>>(0)).map(timestamp))
            .map_err(backend("reading a lockout"))
    }

    async fn clear_lockout(&self, user_id: &UserId) -> Result<bool, StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM lockouts WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await
            .map(|n| n > 0)
            .map_err(backend("clearing a lockout"))
    }

    async fn purge_lockouts(&self, before: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM lockouts WHERE last_failure_at < $1
                     AND COALESCE(locked_until, 0) < $1",
                &[&before.unix_millis()],
            )
            .await
            .map_err(backend("purging lockouts"))?;
        self.conn()
            .await?
            .execute(
                "DELETE FROM address_failures WHERE last_failure_at < $1 AND wait_until < $1",
                &[&before.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("purging lockouts"))
    }

    async fn record_address_failure(
        &self,
        address: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError> {
        self.conn()
            .await?
            .query_one(
                "INSERT INTO address_failures AS a (address, failures, last_failure_at, wait_until)
                 VALUES ($1, 1, $2, 0)
                 ON CONFLICT (address) DO UPDATE SET
                     failures = CASE WHEN GREATEST(a.last_failure_at, a.wait_until) < $3
                                THEN 1 ELSE a.failures + 1 END,
                     last_failure_at = $2
                 RETURNING failures",
                &[&address, &now.unix_millis(), &forget_before.unix_millis()],
            )
            .await
            .map(|row| row.get::<_, i32>(0) as u32)
            .map_err(backend("counting a failed login"))
    }

    async fn forgive_address_failure(&self, address: &str) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "UPDATE address_failures SET failures = GREATEST(failures - 1, 0)
                 WHERE address = $1",
                &[&address],
            )
            .await
            .map(|_| ())
            .map_err(backend("taking back a failed attempt"))
    }

    async fn set_address_wait(&self, address: &str, until: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "UPDATE address_failures SET wait_until = GREATEST(wait_until, $2)
                 WHERE address = $1",
                &[&address, &until.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("delaying an address"))
    }

    async fn address_wait(&self, address: &str) -> Result<Option<Timestamp>, StoreError> {
        self.conn()
            .await?
            .query_opt(
                "SELECT wait_until FROM address_failures WHERE address = $1",
                &[&address],
            )
            .await
            .map(|row| row.map(|r| timestamp(r.get(0))))
            .map_err(backend("reading an address's wait"))
    }
}
