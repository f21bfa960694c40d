//! Request counters in SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::{backend, SqliteStore};
use crate::{
    clock::Timestamp,
    store::{CounterStore, StoreError},
};

#[async_trait]
impl CounterStore for SqliteStore {
    async fn count_request(&self, key: &str, window: i64) -> Result<u32, StoreError> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "INSERT INTO request_counters (key, window_start, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1
                 RETURNING count",
                params![key, window],
                |r| r.get(0),
            )
            .map_err(backend("counting a request"))
        })
        .await
    }

    async fn purge_counters(&self, before: Timestamp) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM request_counters WHERE window_start < ?1",
                [before.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("purging request counters"))
        })
        .await
    }
}
