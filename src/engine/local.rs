//! The embedded face engine, the default: the `facelock-engine` crate (detection, landmarks,
//! alignment and descriptors in pure Rust, no cloud and no native library) behind the
//! [`FaceEngine`] trait.
//!
//! Enrolled descriptors live in memory for 1:N search, rebuilt from the store at start-up and
//! kept in step by the service's register and delete. Inference runs on the blocking thread
//! pool, at most one job per core at a time, so the async workers never stall.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;

use facelock_engine::{
    distance,
    index::{BuildError, FaceIndex},
    models, Analysis, Descriptor, FaceModel, ModelError, Models, StageTimes,
};

use super::{
    EngineError, EnrolledFace, FaceEngine, FaceFeed, FaceMatch, Found, IndexedFace, SearchQuery,
    SearchScope, Upload,
};
use crate::{
    domain::{Similarity, UserId},
    liveness::FrameFace,
    metrics::Metrics,
};

/// At verification, a second face at least this fraction of the largest face's area makes the
/// photo ambiguous: whose login would it be?
const AMBIGUOUS_AREA: f32 = 0.5;
/// Candidates a search returns.
const MAX_CANDIDATES: usize = 10;

/// A face enrolled through this engine: the store may not have committed it yet when a
/// reload reads the store, so a reload keeps it for a while.
struct EnrolledHere {
    user_id: UserId,
    descriptor: Descriptor,
    at: std::time::Instant,
}

/// Analyses kept for a second call on the same upload.
const RECENT_ANALYSES: usize = 16;

/// How long a face enrolled here survives a reload that does not see it in the store.
const RELOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

pub struct LocalEngine {
    models: Arc<Models>,
    index: RwLock<FaceIndex<UserId>>,
    enrolled_here: std::sync::Mutex<HashMap<uuid::Uuid, EnrolledHere>>,
    /// The last analyses, by upload, for a second call on the same upload.
    recent: std::sync::Mutex<Vec<(std::sync::Weak<Upload>, Analysis)>>,
    /// One permit per core: inference jobs beyond that wait instead of thrashing, the jobs of
    /// the client running the fewest first.
    permits: Arc<crate::fair::FairPermits>,
    /// Where each stage's latency is recorded.
    metrics: Arc<Metrics>,
}

/// Says "still wanted" to blocking work until the waiting future is dropped (its request timed
/// out or its client went away).
#[derive(Default)]
struct Waiting(Arc<std::sync::atomic::AtomicBool>);

impl Waiting {
    fn flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.0.store(true, std::sync::atomic::Ordering::Release);
        self.0.clone()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl LocalEngine {
    /// Fetches the files of the detector, the landmarks and the descriptor `face_model` into
    /// `models_dir` if needed and loads them.
    pub fn load(
        models_dir: &Path,
        face_model: FaceModel,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ModelError> {
        models::ensure(models_dir, face_model)?;
        let models = Models::load(models_dir, face_model)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            models: Arc::new(models),
            index: RwLock::new(FaceIndex::new(face_model.descriptor_len())),
            enrolled_here: Default::default(),
            recent: Default::default(),
            permits: crate::fair::FairPermits::new(cores),
            metrics,
        })
    }

    /// Runs the pipeline on the inference pool. The permit travels with the blocking work, so
    /// a request that times out cannot let more jobs run than there are cores; and the work
    /// stops at its next stage once nobody waits for it any more.
    async fn analyze(&self, image: Arc<Upload>) -> Result<Analysis, EngineError> {
        if let Some(done) = self.recent_analysis(&image) {
            return Ok(done);
        }
        let analysis = self.analyze_now(image.clone()).await?;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|(upload, _)| upload.strong_count() > 0);
        if recent.len() >= RECENT_ANALYSES {
            recent.remove(0);
        }
        recent.push((Arc::downgrade(&image), analysis.clone()));
        Ok(analysis)
    }

    /// The analysis of this very upload, when a call of this request already made it (a
    /// registration searches for the face elsewhere, then enrols it: one analysis serves both).
    /// Uploads are told apart by identity, and the weak reference keeps a freed upload's
    /// address from being taken by another while its entry exists.
    fn recent_analysis(&self, image: &Arc<Upload>) -> Option<Analysis> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .find(|(upload, _)| upload.upgrade().is_some_and(|u| Arc::ptr_eq(&u, image)))
            .map(|(_, analysis)| analysis.clone())
    }

    async fn analyze_now(&self, image: Arc<Upload>) -> Result<Analysis, EngineError> {
        let permit = self.permits.acquire().await;
        let models = self.models.clone();
        let span = tracing::Span::current();
        let waiting = Waiting::default();
        let metrics = self.metrics.clone();
        let wanted = waiting.flag();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = span.enter();
            let abandoned = || !wanted.load(std::sync::atomic::Ordering::Acquire);
            let mut times = StageTimes::default();
            let analysis =
                models.analyze_unless(&image.decoded.image.to_rgb8(), &mut times, &abandoned);
            for (stage, took) in [
                ("detect", times.detect),
                ("landmarks", times.landmarks),
                ("descriptor", times.descriptor),
                ("rotate", times.rotate),
            ] {
                if !took.is_zero() {
                    metrics.engine_stage("local", stage, took);
                }
            }
            analysis
        })
        .await
        .map_err(EngineError::internal)?
        .ok_or_else(|| EngineError::internal("abandoned"))
    }

    /// The descriptor network the models compute.
    fn face_model(&self) -> FaceModel {
        self.models.face_model()
    }

    fn index_read(&self) -> std::sync::RwLockReadGuard<'_, FaceIndex<UserId>> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn index_write(&self) -> std::sync::RwLockWriteGuard<'_, FaceIndex<UserId>> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn enrolled_here(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, EnrolledHere>> {
        self.enrolled_here.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl FaceEngine for LocalEngine {
    fn name(&self) -> &'static str {
        "local"
    }

    fn model(&self) -> &str {
        self.face_model().id()
    }

    async fn start(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn indexes_in_memory(&self) -> bool {
        true
    }

    async fn load(&self, faces: FaceFeed) -> Result<(), EngineError> {
        let dim = self.face_model().descriptor_len();
        let mut index = tokio::task::spawn_blocking(move || build_index(faces, dim))
            .await
            .map_err(|e| EngineError::internal(format!("building the face index: {e}")))?
            .map_err(EngineError::internal)?;
        // A face being registered right now may not be in the store yet. Keeping it is safe:
        // verify only accepts matches the store knows.
        {
            let mut here = self.enrolled_here();
            here.retain(|_, e| e.at.elapsed() < RELOAD_GRACE);
            let ids: Vec<uuid::Uuid> = here.keys().copied().collect();
            let already = index.present(&ids);
            for (face_id, e) in here.iter() {
                if !already.contains(face_id) {
                    index.insert(*face_id, &e.user_id, &e.descriptor);
                }
            }
        }
        *self.index_write() = index;
        Ok(())
    }

    async fn apply_changes(
        &self,
        added: Vec<EnrolledFace>,
        removed: &[String],
    ) -> Result<(), EngineError> {
        let removed: Vec<uuid::Uuid> = removed
            .iter()
            .filter_map(|f| uuid::Uuid::parse_str(f).ok())
            .collect();
        let added: Vec<(uuid::Uuid, UserId, Descriptor)> = added
            .into_iter()
            .filter_map(|face| {
                let face_id = uuid::Uuid::parse_str(&face.face_id).ok()?;
                let descriptor = face.descriptor?;
                (descriptor.len() == self.face_model().descriptor_len()).then_some((
                    face_id,
                    face.user_id,
                    descriptor,
                ))
            })
            .collect();
        let mut index = self.index_write();
        index.remove(&removed);
        // One pass over the index finds the faces it already has, however many were added.
        let ids: Vec<uuid::Uuid> = added.iter().map(|(id, _, _)| *id).collect();
        let already = index.present(&ids);
        for (face_id, user, descriptor) in &added {
            if !already.contains(face_id) {
                index.insert(*face_id, user, descriptor);
            }
        }
        Ok(())
    }

    async fn index_face(
        &self,
        user: &UserId,
        image: Arc<Upload>,
    ) -> Result<IndexedFace, EngineError> {
        let analysis = self.analyze(image).await?;
        let (descriptor, metrics) = match analysis.faces.len() {
            0 => return Err(EngineError::NoFace),
            1 => analysis.dominant.ok_or(EngineError::NoFace)?,
            _ => return Err(EngineError::MultipleFaces),
        };
        if let Some(problem) = metrics.problem() {
            tracing::info!(?metrics, "enrolment photo refused");
            return Err(EngineError::PoorQuality(problem));
        }
        let face_id = uuid::Uuid::new_v4();
        self.index_write().insert(face_id, user, &descriptor);
        self.enrolled_here().insert(
            face_id,
            EnrolledHere {
                user_id: user.clone(),
                descriptor: descriptor.clone(),
                at: std::time::Instant::now(),
            },
        );
        Ok(IndexedFace {
            face_id: face_id.to_string(),
            descriptor: Some(descriptor),
        })
    }

    async fn search(&self, image: Arc<Upload>, query: &SearchQuery) -> Result<Found, EngineError> {
        let analysis = self.analyze(image).await?;
        let (descriptor, metrics) = analysis.dominant.ok_or(EngineError::NoFace)?;
        if let Some(problem) = metrics.login_problem() {
            return Err(EngineError::PoorQuality(problem));
        }
        if let [first, second, ..] = analysis.faces.as_slice() {
            if second.detection.area() >= first.detection.area() * AMBIGUOUS_AREA {
                return Err(EngineError::AmbiguousFaces);
            }
        }
        let started = std::time::Instant::now();
        let hits = {
            let index = self.index_read();
            match &query.scope {
                SearchScope::All => index.nearest(&descriptor, MAX_CANDIDATES),
                SearchScope::User(user) => index.nearest_of_user(&descriptor, user.as_str()),
            }
        };
        self.metrics
            .engine_stage("local", "match", started.elapsed());
        let matches = hits
            .into_iter()
            .take(MAX_CANDIDATES)
            .map(|hit| FaceMatch {
                face_id: hit.face_id.to_string(),
                user_id: hit.user_id,
                similarity: Similarity::clamped(self.face_model().similarity(hit.distance)),
            })
            .collect();
        Ok(Found {
            matches,
            query: Some(descriptor),
        })
    }

    fn observes_liveness(&self) -> bool {
        true
    }

    async fn observe(&self, image: Arc<Upload>) -> Result<FrameFace, EngineError> {
        let analysis = self.analyze(image).await?;
        match (analysis.faces.as_slice(), analysis.descriptor()) {
            ([face], Some(descriptor)) => Ok(FrameFace {
                landmarks: face.landmarks,
                descriptor: descriptor.to_vec(),
            }),
            ([], _) | (_, None) => Err(EngineError::NoFace),
            _ => Err(EngineError::MultipleFaces),
        }
    }

    fn descriptor_similarity(&self, a: &[f32], b: &[f32]) -> f32 {
        let len = self.face_model().descriptor_len();
        if a.len() == len && b.len() == len {
            self.face_model().similarity(distance(a, b))
        } else {
            0.0
        }
    }

    async fn compare(&self, a: Arc<Upload>, b: Arc<Upload>) -> Result<Similarity, EngineError> {
        let (a, b) = tokio::try_join!(self.analyze(a), self.analyze(b))?;
        let (da, ma) = a.dominant.ok_or(EngineError::NoFace)?;
        let (db, mb) = b.dominant.ok_or(EngineError::NoFace)?;
        if let Some(problem) = ma.login_problem().or(mb.login_problem()) {
            return Err(EngineError::PoorQuality(problem));
        }
        Ok(Similarity::clamped(
            self.face_model().similarity(distance(&da, &db)),
        ))
    }

    async fn delete_faces(&self, face_ids: &[String]) -> Result<(), EngineError> {
        let ids: Vec<uuid::Uuid> = face_ids
            .iter()
            .filter_map(|f| uuid::Uuid::parse_str(f).ok())
            .collect();
        self.enrolled_here().retain(|id, _| !ids.contains(id));
        self.index_write().remove(&ids);
        Ok(())
    }

    async fn health(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

/// An index of the faces a store sends, built as they arrive, so it is ready soon after the
/// last is read; only from a read that completed. Blocks on the feed: run it on a blocking
/// thread.
pub fn build_index(mut faces: FaceFeed, dim: usize) -> Result<FaceIndex<UserId>, BuildError> {
    let mut index = FaceIndex::new(dim);
    while let Some(batch) = faces.batches.blocking_recv() {
        for face in batch.iter() {
            index.insert_stored(face.face_id, face.user_id, face.descriptor, |u| {
                UserId::parse(u).ok()
            })?;
        }
    }
    faces
        .complete
        .blocking_recv()
        .map_err(|_| BuildError::Incomplete)?;
    index.shrink_to_fit();
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_built_only_from_a_complete_read() {
        let feed = || {
            let (batches, batches_rx) = tokio::sync::mpsc::channel(1);
            let (complete, complete_rx) = tokio::sync::oneshot::channel();
            drop(batches);
            (
                FaceFeed {
                    batches: batches_rx,
                    complete: complete_rx,
                },
                complete,
            )
        };
        let (read_all, complete) = feed();
        complete.send(()).unwrap();
        assert!(build_index(read_all, 128).unwrap().is_empty());
        let (failed_half_way, complete) = feed();
        drop(complete);
        assert!(matches!(
            build_index(failed_half_way, 128),
            Err(BuildError::Incomplete)
        ));
    }
}
