//! The face engine: what register, verify, compare and delete need from face recognition,
//! behind one trait so that engines are swapped by configuration.
//!
//! An engine knows faces by an id it assigns and by the [`UserId`] they were enrolled for. It
//! never touches the store or the reference files: the service orders those steps around it.
//! A search returns candidates; whether one logs in (threshold, scope, a face the store knows,
//! the user's role) is the service's decision, made in one place.

pub mod local;
pub mod rekognition;

use std::sync::Arc;

use async_trait::async_trait;

pub use facelock_engine::QualityProblem;

use crate::{
    domain::{Similarity, UserId},
    images::DecodedImage,
    liveness::FrameFace,
};

/// An uploaded image, decoded once and shared by every step that needs it.
pub struct Upload {
    /// The bytes as uploaded (kept for the reference copy and for engines that take bytes).
    pub bytes: Vec<u8>,
    pub decoded: DecodedImage,
}

/// A face the engine has just enrolled.
#[derive(Clone, Debug)]
pub struct IndexedFace {
    /// The engine's id for the face: a UUID, safe as a file name.
    pub face_id: String,
    /// The face descriptor, for engines whose index is rebuilt from the store at start-up.
    pub descriptor: Option<Vec<f32>>,
}

/// A face in the store, handed to an engine that keeps its own in-memory index.
#[derive(Clone, Debug)]
pub struct EnrolledFace {
    pub face_id: String,
    pub user_id: UserId,
    pub descriptor: Option<Vec<f32>>,
}

/// The stored faces an engine loads, a batch at a time as the store reads them, and word at
/// the end that the store read them all: an index built from a read that failed half-way must
/// not replace the one in use.
pub struct FaceFeed {
    pub batches: tokio::sync::mpsc::Receiver<crate::store::FaceBatch>,
    /// Sent once every face was read; dropped unsent when the read failed.
    pub complete: tokio::sync::oneshot::Receiver<()>,
}

/// The store's end of a [`FaceFeed`].
pub struct FaceSource {
    batches: crate::store::FaceBatches,
    complete: tokio::sync::oneshot::Sender<()>,
}

impl FaceFeed {
    /// A feed and the end that fills it.
    pub fn channel() -> (FaceSource, FaceFeed) {
        let (batches, batches_rx) = tokio::sync::mpsc::channel(4);
        let (complete, complete_rx) = tokio::sync::oneshot::channel();
        (
            FaceSource { batches, complete },
            FaceFeed {
                batches: batches_rx,
                complete: complete_rx,
            },
        )
    }
}

impl FaceSource {
    /// Sends the faces `store` holds for `engine` and `model`, and then, only if all were
    /// read, word that the feed is complete.
    pub async fn fill_from(
        self,
        store: &dyn crate::store::UserStore,
        engine: &str,
        model: &str,
    ) -> Result<crate::store::FacesSent, crate::store::StoreError> {
        let sent = store
            .send_enrolled_faces(engine, model, self.batches)
            .await?;
        let _ = self.complete.send(());
        Ok(sent)
    }
}

/// What a search looks for.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub scope: SearchScope,
    /// Candidates below this cannot log in; an engine may leave them out (Rekognition does, to
    /// send less), and the service checks it again either way.
    pub min_similarity: Similarity,
}

/// Which enrolled faces a search may return.
#[derive(Clone, Debug)]
pub enum SearchScope {
    /// 1:N: every enrolled face.
    All,
    /// 1:1: only the faces of the claimed user.
    User(UserId),
}

/// What a search found: candidates, best first, and the descriptor of the face it looked
/// for when the engine makes one, so that the decision can be taken on the store's own copies
/// of the candidates' descriptors rather than on the index's compressed ones.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub matches: Vec<FaceMatch>,
    pub query: Option<Vec<f32>>,
}

/// A candidate returned by a search.
#[derive(Clone, Debug)]
pub struct FaceMatch {
    pub face_id: String,
    pub user_id: UserId,
    pub similarity: Similarity,
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no face detected")]
    NoFace,
    #[error("more than one face")]
    MultipleFaces,
    #[error("several faces of similar size")]
    AmbiguousFaces,
    #[error("face quality: {}", .0.code())]
    PoorQuality(QualityProblem),
    #[error("{0}")]
    InvalidImage(String),
    #[error("{0}")]
    ImageTooLarge(String),
    #[error("throttled")]
    Throttled,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("the face engine failed")]
    Internal(#[source] Cause),
}

impl EngineError {
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }
}

/// Face recognition as the service needs it.
#[async_trait]
pub trait FaceEngine: Send + Sync {
    /// Short name, stored beside each face (`rekognition`, `local`).
    fn name(&self) -> &'static str;

    /// The model that describes faces, stored beside each face: faces of another model are
    /// not loaded or compared.
    fn model(&self) -> &str;

    /// Prepares the engine (creates the collection, loads models). Called once at start-up.
    async fn start(&self) -> Result<(), EngineError>;

    /// Whether the engine holds its faces in memory, rebuilt from the store with [`Self::load`]
    /// at start-up; engines that keep them remotely are not sent any.
    fn indexes_in_memory(&self) -> bool {
        false
    }

    /// Rebuilds the in-memory index from the store's faces as they arrive.
    async fn load(&self, _faces: FaceFeed) -> Result<(), EngineError> {
        Ok(())
    }

    /// Applies faces that other servers added and removed since the last load. A face
    /// already in the index, or a removal of one that is not, changes nothing.
    async fn apply_changes(
        &self,
        _added: Vec<EnrolledFace>,
        _removed: &[String],
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Enrols the single face in `image` for `user`.
    async fn index_face(
        &self,
        user: &UserId,
        image: Arc<Upload>,
    ) -> Result<IndexedFace, EngineError>;

    /// Enrolled faces in the query's scope most similar to the dominant face in `image`, best
    /// first, at most a few.
    async fn search(&self, image: Arc<Upload>, query: &SearchQuery) -> Result<Found, EngineError>;

    /// Whether the engine places the 68 landmarks a liveness check reads
    /// ([`Self::observe`]).
    fn observes_liveness(&self) -> bool {
        false
    }

    /// The single face of a frame of a liveness burst: its landmarks and descriptor.
    async fn observe(&self, _image: Arc<Upload>) -> Result<FrameFace, EngineError> {
        Err(EngineError::internal(
            "this engine does not place the landmarks a liveness check reads",
        ))
    }

    /// Similarity (0-100) of two descriptors [`Self::observe`] gave, on the scale of
    /// [`Self::search`].
    fn descriptor_similarity(&self, _a: &[f32], _b: &[f32]) -> f32 {
        0.0
    }

    /// Similarity of the dominant faces of two images.
    async fn compare(&self, a: Arc<Upload>, b: Arc<Upload>) -> Result<Similarity, EngineError>;

    /// Removes faces; ids the engine does not know are ignored.
    async fn delete_faces(&self, face_ids: &[String]) -> Result<(), EngineError>;

    /// Whether the engine can serve requests now.
    async fn health(&self) -> Result<(), EngineError>;
}
