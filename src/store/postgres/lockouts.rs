//! Failed logins and lockouts in PostgreSQL, counted by every server on the database.

use async_trait::async_trait;

use super::{backend, timestamp, PostgresStore};
use crate::{
    clock::Timestamp,
    domain::UserId,
    store::{LockoutStore, StoreError},
};

#[async_trait]
impl LockoutStore for PostgresStore {
    async fn record_failure(
        &self,
        user_id: &UserId,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError> {
        // One statement: concurrent failures on several servers each count.
        self.conn()
            .await?
            .query_one(
                "INSERT INTO lockouts AS l (user_id, failures, last_failure_at) VALUES ($1, 1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET
                     failures = CASE WHEN l.last_failure_at < $3 THEN 1 ELSE l.failures + 1 END,
                     last_failure_at = $2
                 RETURNING failures",
                &[
                    &user_id.as_str(),
                    &now.unix_millis(),
                    &forget_before.unix_millis(),
                ],
            )
            .await
            .map(|row| row.get::<_, i32>(0) as u32)
            .map_err(backend("counting a failed login"))
    }

    async fn lock(&self, user_id: &UserId, until: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "UPDATE lockouts SET locked_until = GREATEST(COALESCE(locked_until, 0), $2)
                 WHERE user_id = $1",
                &[&user_id.as_str(), &until.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("locking an account"))
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
                     failures = CASE WHEN a.last_failure_at < $3 THEN 1 ELSE a.failures + 1 END,
                     last_failure_at = $2
                 RETURNING failures",
                &[&address, &now.unix_millis(), &forget_before.unix_millis()],
            )
            .await
            .map(|row| row.get::<_, i32>(0) as u32)
            .map_err(backend("counting a failed login"))
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
