//! Request counters in PostgreSQL: one upsert per request, so every server counts in the same
//! row.

use async_trait::async_trait;

use super::{backend, PostgresStore};
use crate::{
    clock::Timestamp,
    store::{CounterStore, StoreError},
};

#[async_trait]
impl CounterStore for PostgresStore {
    async fn count_request(&self, key: &str, window: i64) -> Result<u32, StoreError> {
        self.conn()
            .await?
            .query_one(
                "INSERT INTO request_counters AS c (key, window_start, count) VALUES ($1, $2, 1)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = c.count + 1
                 RETURNING count",
                &[&key, &window],
            )
            .await
            .map(|row| row.get::<_, i32>(0) as u32)
            .map_err(backend("counting a request"))
    }

    async fn purge_counters(&self, before: Timestamp) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM request_counters WHERE window_start < $1",
                &[&before.unix_millis()],
            )
            .await
            .map(|_| ())
            .map_err(backend("purging request counters"))
    }
}
