//! The operations of Face Lock, independent of HTTP: register, verify, compare, delete, list.
//!
//! Register and delete touch three places: the engine, the reference files and the database.
//! Register goes engine -> file -> database and undoes the earlier steps when a later one fails.
//! Delete commits the database first, together with a queue of faces the engine still has to
//! forget; the queue is worked off right away and again at every start, so a crash in between
//! never leaves a face that can log in without a user behind it (verify also ignores engine
//! matches the database does not know).

use std::{sync::Arc, time::Duration};

use crate::{
    auth::AuthUser,
    config::Settings,
    domain::{Email, FullName, Role, Similarity, UserId},
    engine::{EnrolledFace, FaceEngine, SearchScope, Upload},
    error::ApiError,
    images::{self, DecodeLimits},
    references::ReferenceFiles,
    store::{FaceOwner, NewFace, NewUser, Page, Store, UserRecord},
};

/// What a registration asks for.
pub struct Registration {
    pub user_id: UserId,
    pub full_name: Option<FullName>,
    pub email: Option<Email>,
    pub image: Vec<u8>,
}

/// Who is asking for an enrolment.
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    /// No bearer token.
    Anonymous,
    /// A caller with a valid token.
    Caller(&'a AuthUser),
    /// The operator at the server's command line.
    Operator,
}

impl Actor<'_> {
    fn is_admin(self) -> bool {
        match self {
            Actor::Anonymous => false,
            Actor::Caller(c) => c.is_admin(),
            Actor::Operator => true,
        }
    }

    fn may_act_for(self, user_id: &UserId) -> bool {
        match self {
            Actor::Anonymous => false,
            Actor::Caller(c) => c.may_act_for(user_id),
            Actor::Operator => true,
        }
    }
}

pub struct Registered {
    pub user: UserRecord,
    pub face_id: String,
}

pub struct Verified {
    pub user: UserRecord,
    pub role: Role,
    pub similarity: Similarity,
}

/// The state of the service's dependencies, for `/health`.
pub struct Health {
    pub engine: Result<(), String>,
    pub store: Result<(), String>,
}

pub struct FaceLock {
    settings: Arc<Settings>,
    engine: Arc<dyn FaceEngine>,
    store: Arc<dyn Store>,
    references: ReferenceFiles,
    /// The store's outside-change marker when the engine last loaded its faces.
    synced_marker: std::sync::Mutex<Option<i64>>,
}

impl FaceLock {
    pub fn new(
        settings: Arc<Settings>,
        engine: Arc<dyn FaceEngine>,
        store: Arc<dyn Store>,
    ) -> Self {
        let references = ReferenceFiles::new(settings.reference_dir.clone());
        Self {
            settings,
            engine,
            store,
            references,
            synced_marker: std::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// Starts the engine, loads its index from the store and finishes owed deletions.
    pub async fn start(&self) -> Result<(), String> {
        self.engine
            .start()
            .await
            .map_err(|e| format!("starting the {} engine: {e}", self.engine.name()))?;
        self.load_engine().await?;
        self.finish_pending_deletions().await;
        Ok(())
    }

    /// Reloads the engine's faces when another process (`facelock users add`, another server
    /// on the same database) has changed the store since the last load.
    pub async fn sync_engine(&self) {
        let marker = match self.store.outside_change_marker().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not check the store for outside changes");
                return;
            }
        };
        let last = *self.synced_marker.lock().unwrap_or_else(|p| p.into_inner());
        if last != Some(marker) {
            if let Err(e) = self.load_engine().await {
                tracing::warn!(error = %e, "could not reload the engine's faces");
            }
        }
    }

    async fn load_engine(&self) -> Result<(), String> {
        let marker = self.store.outside_change_marker().await.ok();
        let faces = self
            .store
            .faces_for_engine(self.engine.name())
            .await
            .map_err(|e| format!("reading faces from the store: {e}"))?;
        let count = faces.len();
        self.engine
            .load(
                faces
                    .into_iter()
                    .map(|f| EnrolledFace {
                        face_id: f.face_id,
                        user_id: f.user_id,
                        descriptor: f.descriptor,
                    })
                    .collect(),
            )
            .await
            .map_err(|e| format!("loading faces into the engine: {e}"))?;
        tracing::info!(
            engine = self.engine.name(),
            faces = count,
            "face engine loaded its faces"
        );
        *self.synced_marker.lock().unwrap_or_else(|p| p.into_inner()) = marker;
        Ok(())
    }

    /// Decodes an upload off the async workers, with the configured limits.
    pub async fn prepare_image(&self, bytes: Vec<u8>) -> Result<Arc<Upload>, ApiError> {
        let limits = DecodeLimits {
            max_pixels: self.settings.max_image_pixels,
        };
        tokio::task::spawn_blocking(move || {
            let decoded = images::decode(&bytes, limits)?;
            Ok(Arc::new(Upload { bytes, decoded }))
        })
        .await
        .map_err(ApiError::internal)?
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn register(
        &self,
        req: Registration,
        actor: Actor<'_>,
    ) -> Result<Registered, ApiError> {
        let existing = self.store.user(&req.user_id).await?;
        let owner = match &existing {
            Some(user) => {
                if !actor.may_act_for(&user.user_id) {
                    return Err(ApiError::UserExists);
                }
                FaceOwner::Existing {
                    user_id: user.user_id.clone(),
                    rowid: user.rowid,
                }
            }
            None => {
                // Otherwise anyone could claim an admin id before its owner enrols.
                if self.settings.is_admin(&req.user_id) && !actor.is_admin() {
                    return Err(ApiError::Forbidden(
                        "This user id is an administrator; it is enrolled by an existing \
                         administrator or with `facelock users add` on the server",
                    ));
                }
                FaceOwner::New(NewUser {
                    user_id: req.user_id.clone(),
                    full_name: req.full_name,
                    email: req.email,
                })
            }
        };

        let upload = self.prepare_image(req.image).await?;
        let indexed = self.engine.index_face(&req.user_id, upload.clone()).await?;
        let face_id = indexed.face_id.clone();

        let reference = match self
            .references
            .save(
                &req.user_id,
                &face_id,
                upload.decoded.format,
                upload.bytes.clone(),
            )
            .await
        {
            Ok(path) => path,
            Err(e) => {
                self.undo_engine_face(&face_id).await;
                return Err(ApiError::internal(format!("saving reference image: {e}")));
            }
        };

        let face = NewFace {
            face_id: face_id.clone(),
            engine: self.engine.name().to_owned(),
            reference_path: Some(reference.clone()),
            descriptor: indexed.descriptor,
        };
        match self.store.add_face(owner, face).await {
            Ok(user) => {
                tracing::info!(face_id = %face_id, "face registered");
                Ok(Registered { user, face_id })
            }
            Err(e) => {
                if let Err(io) = self.references.remove(&reference).await {
                    tracing::error!(error = %io, "could not remove reference image after a failed registration");
                }
                self.undo_engine_face(&face_id).await;
                Err(e.into())
            }
        }
    }

    async fn undo_engine_face(&self, face_id: &str) {
        if let Err(e) = self.engine.delete_faces(&[face_id.to_owned()]).await {
            // Harmless for logins (verify ignores faces the store does not know), but say so.
            tracing::error!(face_id, error = %e, "could not remove a face from the engine after a failed registration");
        }
    }

    /// The similarity a match needs: the client may ask for more than the server's floor,
    /// never less.
    pub fn effective_threshold(&self, requested: Option<Similarity>) -> Similarity {
        let floor = Similarity::clamped(self.settings.min_similarity);
        match requested {
            Some(t) if t > floor => t,
            _ => floor,
        }
    }

    #[tracing::instrument(skip_all, fields(claimed = claimed.as_ref().map(|u| u.as_str())))]
    pub async fn verify(
        &self,
        image: Vec<u8>,
        requested: Option<Similarity>,
        claimed: Option<UserId>,
    ) -> Result<Verified, ApiError> {
        let threshold = self.effective_threshold(requested);
        let upload = self.prepare_image(image).await?;
        let scope = claimed.clone().map_or(SearchScope::All, SearchScope::User);
        let candidates = self.engine.search(upload, scope, threshold).await?;
        for candidate in candidates {
            if candidate.similarity < threshold {
                continue;
            }
            // Only faces the store knows count: an engine face left over from an interrupted
            // registration or deletion must not log anyone in.
            let Some(face) = self.store.face(&candidate.face_id).await? else {
                tracing::warn!(face_id = %candidate.face_id, "engine matched a face the store does not know");
                continue;
            };
            if face.user_id != candidate.user_id
                || face.engine != self.engine.name()
                || claimed.as_ref().is_some_and(|c| c != &face.user_id)
            {
                continue;
            }
            let Some(user) = self.store.user(&face.user_id).await? else {
                continue;
            };
            let role = if self.settings.is_admin(&user.user_id) {
                Role::Admin
            } else {
                Role::User
            };
            tracing::info!(user_id = %user.user_id, similarity = candidate.similarity.value(), "face verified");
            return Ok(Verified {
                user,
                role,
                similarity: candidate.similarity,
            });
        }
        Err(ApiError::NoMatch)
    }

    pub async fn compare(&self, a: Vec<u8>, b: Vec<u8>) -> Result<Similarity, ApiError> {
        let (a, b) = tokio::try_join!(self.prepare_image(a), self.prepare_image(b))?;
        Ok(self.engine.compare(a, b).await?)
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn delete_user(&self, user_id: &UserId) -> Result<(), ApiError> {
        let faces = self.store.delete_user(user_id).await?;
        let ids: Vec<String> = faces.iter().map(|f| f.face_id.clone()).collect();
        self.forget_in_engine(&ids).await;
        for face in &faces {
            if let Some(path) = &face.reference_path {
                if let Err(e) = self.references.remove(path).await {
                    tracing::warn!(path, error = %e, "could not remove a reference image");
                }
            }
        }
        tracing::info!(faces = faces.len(), "user deleted");
        Ok(())
    }

    async fn forget_in_engine(&self, face_ids: &[String]) {
        if face_ids.is_empty() {
            return;
        }
        match self.engine.delete_faces(face_ids).await {
            Ok(()) => {
                if let Err(e) = self.store.clear_pending_engine_deletions(face_ids).await {
                    tracing::warn!(error = %e, "could not clear the engine deletion queue");
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                faces = face_ids.len(),
                "the engine could not delete faces yet; they stay queued and are retried"
            ),
        }
    }

    /// Retries engine deletions left over from earlier failures.
    pub async fn finish_pending_deletions(&self) {
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
            Err(e) => tracing::warn!(error = %e, "could not read the engine deletion queue"),
        }
    }

    pub async fn list_users(&self, page: Page) -> Result<(Vec<UserRecord>, u64), ApiError> {
        let users = self.store.list_users(page).await?;
        let total = self.store.count_users().await?;
        Ok((users, total))
    }

    pub async fn health(&self) -> Health {
        const LIMIT: Duration = Duration::from_secs(5);
        let engine = async {
            match tokio::time::timeout(LIMIT, self.engine.health()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        };
        let store = async {
            match tokio::time::timeout(LIMIT, self.store.ping()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        };
        let (engine, store) = tokio::join!(engine, store);
        Health { engine, store }
    }
}
