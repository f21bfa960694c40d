//! Background upkeep, apart from the requests: following other processes' changes (faces
//! through the store's change log, users and signing keys), purging what has expired
//! (lockouts, challenges, audit events, request counters, the change log, token records),
//! and retrying engine deletions that failed. [`run`] drives it until shutdown; the rest are
//! the steps, also used at start-up.

use std::{future::Future, sync::Arc, time::Duration};

use super::{Error, FaceLock};
use crate::{
    clock::Timestamp,
    engine::EnrolledFace,
    store::{FaceChange, FacesSent, StoreError},
};

/// How often keys are reloaded, expired records purged and, without a change feed, other
/// processes' face changes looked for in full.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// How often a server without a change feed (SQLite) looks for other processes' changes: one
/// read of a counter, so `facelock users add` is seen by running servers at once.
const OUTSIDE_CHANGE_POLL: Duration = Duration::from_secs(2);
/// Queued engine deletions are retried every this many maintenance ticks (five minutes).
const PENDING_DELETION_RETRY_TICKS: u32 = 10;

/// Runs upkeep for `core` until `shutdown` completes. On PostgreSQL other servers' changes are
/// followed as its notifications arrive; on SQLite every 2 s.
pub async fn run(core: Arc<FaceLock>, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.tick().await;
    let mut ticks = 0u32;
    let mut changes = core.store.change_feed();
    let mut poll = tokio::time::interval(OUTSIDE_CHANGE_POLL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = poll.tick(), if changes.is_none() => {
                core.follow_outside_changes().await;
            }
            _ = tick.tick() => {
                ticks += 1;
                core.maintain(ticks.is_multiple_of(PENDING_DELETION_RETRY_TICKS)).await;
            }
            changed = next_change(&mut changes) => {
                if changed {
                    core.follow_outside_changes().await;
                } else {
                    changes = None;
                }
            }
        }
    }
}

/// Waits for another server's change; `false` once the feed is gone. Without a feed, never
/// completes (upkeep's poll finds changes).
async fn next_change(feed: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match feed {
        Some(feed) => feed.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Logs a purge that failed: the next round tries again.
fn purged(result: Result<(), StoreError>, what: &str) {
    if let Err(e) = result {
        tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not purge {what}");
    }
}

/// What upkeep keeps between its rounds.
pub(super) struct UpkeepState {
    /// Audit events are kept this long.
    audit_retention: Duration,
    /// The store's outside-change marker when the engine last loaded or caught up.
    synced_marker: std::sync::Mutex<Option<i64>>,
    /// How far the engine's index has applied the store's face change log.
    face_log_position: std::sync::Mutex<Option<i64>>,
}

impl UpkeepState {
    pub(super) fn new(audit_retention: Duration) -> Self {
        Self {
            audit_retention,
            synced_marker: std::sync::Mutex::new(None),
            face_log_position: std::sync::Mutex::new(None),
        }
    }
}

impl FaceLock {
    /// Periodic upkeep: keys and expired tokens, faces changed by other processes, and (when
    /// `retry_deletions`) engine deletions that failed before.
    async fn maintain(&self, retry_deletions: bool) {
        self.tokens.maintain().await;
        let now = Timestamp::now();
        let store = &self.store;
        purged(
            store.purge_lockouts(now - self.lockout_window).await,
            "old lockouts",
        );
        // Kept an hour past expiry, so a late answer is told "expired" rather than "unknown".
        let hour = Duration::from_secs(3600);
        purged(
            store.purge_challenges(now - hour).await,
            "expired liveness challenges",
        );
        // An hour too, so a code presented late is still found (and its tokens revoked).
        purged(
            store.purge_grants(now - hour).await,
            "expired authorization requests and codes",
        );
        let retention = self.upkeep.audit_retention;
        purged(store.purge_audit(now - retention).await, "old audit events");
        let two_minutes = Duration::from_secs(120);
        purged(
            store.purge_counters(now - two_minutes).await,
            "request counters",
        );
        purged(store.purge_change_log(now - hour).await, "the change log");
        self.sync_engine().await;
        if retry_deletions {
            self.finish_pending_deletions().await;
        }
    }

    /// Catches up with another server's changes: its faces, users and signing keys.
    /// Cheap when nothing changed: one read of the store's change marker.
    async fn follow_outside_changes(&self) {
        if self.sync_engine().await {
            if let Err(e) = self.tokens.reload_keys().await {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not reload signing keys");
            }
        }
    }

    /// Brings the engine's faces up to date when another process (`facelock users add`,
    /// another server on the same database) has changed the store since the last look;
    /// says whether it had.
    pub async fn sync_engine(&self) -> bool {
        let marker = match self.store.outside_change_marker().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not check the store for outside changes");
                return false;
            }
        };
        let last = *self
            .upkeep
            .synced_marker
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last == Some(marker) {
            return false;
        }
        match self.apply_face_changes(marker).await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(e) = self.load_engine().await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not reload the engine's faces");
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not read the face change log; reloading every face");
                if let Err(e) = self.load_engine().await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not reload the engine's faces");
                }
            }
        }
        true
    }

    /// Applies the faces other processes added and removed since the last load or sync;
    /// `false` when the change log no longer reaches back that far. The log is re-read a
    /// little before the last position: on PostgreSQL a transaction may commit a change
    /// numbered before one already seen, and applying a change twice does nothing.
    async fn apply_face_changes(&self, marker: i64) -> Result<bool, Error> {
        const OVERLAP: i64 = 256;
        let Some(position) = *self
            .upkeep
            .face_log_position
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        else {
            return Ok(false);
        };
        let Some(log) = self
            .store
            .face_changes_since(self.engine.name(), (position - OVERLAP).max(0))
            .await?
        else {
            return Ok(false);
        };
        let model = self.engine.model();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for change in log.changes {
            match change {
                FaceChange::Added(face) if face.model == model => added.push(enrolled(face)),
                FaceChange::Added(_) => {}
                FaceChange::Removed { face_id } => removed.push(face_id),
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            tracing::debug!(
                added = added.len(),
                removed = removed.len(),
                "applying other servers' face changes"
            );
        }
        self.engine.apply_changes(added, &removed).await?;
        *self
            .upkeep
            .face_log_position
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(log.through.max(position));
        *self
            .upkeep
            .synced_marker
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(marker);
        Ok(true)
    }

    pub(super) async fn load_engine(&self) -> Result<(), Error> {
        let marker = self.store.outside_change_marker().await.ok();
        // Read before the faces: a change made meanwhile is applied again later, harmlessly.
        let position = self.store.face_log_position().await.ok();
        let read = if self.engine.indexes_in_memory() {
            // The store reads and unseals while the engine indexes what has arrived; the
            // engine keeps the new index only once told the read was complete.
            let (source, feed) = crate::engine::FaceFeed::channel();
            let reading =
                source.fill_from(self.store.as_ref(), self.engine.name(), self.engine.model());
            let (read, loaded) = tokio::join!(reading, self.engine.load(feed));
            let read = read?;
            loaded?;
            read
        } else {
            FacesSent::default()
        };
        let model = self.engine.model();
        if read.left_out > 0 {
            tracing::warn!(
                faces = read.left_out,
                model,
                "faces described by another model (or by none) are not loaded: they cannot be compared"
            );
        }
        *self
            .upkeep
            .face_log_position
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = position;
        tracing::info!(
            engine = self.engine.name(),
            faces = read.sent,
            "face engine loaded its faces"
        );
        *self
            .upkeep
            .synced_marker
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = marker;
        Ok(())
    }

    /// Retries engine deletions left over from earlier failures.
    pub(super) async fn finish_pending_deletions(&self) {
        match self
            .store
            .pending_engine_deletions(self.engine.name())
            .await
        {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(faces = ids.len(), "finishing queued engine deletions");
                self.forget_in_engine(&ids).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not read the engine deletion queue")
            }
        }
    }
}

fn enrolled(face: crate::store::FaceRecord) -> EnrolledFace {
    EnrolledFace {
        face_id: face.face_id,
        user_id: face.user_id,
        descriptor: face.descriptor,
    }
}
