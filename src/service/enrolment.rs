//! Users in and out: registration, the user list, deletion and the engine deletion queue.

use serde_json::json;

use super::{Actor, AuditKind, Error, Evidence, FaceLock, Origin};
use std::sync::Arc;

use crate::{
    config::RegistrationPolicy,
    domain::{Email, FullName, User, UserId},
    engine::{EngineError, SearchQuery, SearchScope, Upload},
    images,
    store::{FaceOwner, NewFace, NewUser, ReferencePhoto},
};

/// What a registration asks for.
pub struct Registration {
    pub user_id: UserId,
    pub full_name: Option<FullName>,
    pub email: Option<Email>,
    /// A photo, or frames answering a liveness challenge (their most frontal frame is
    /// enrolled).
    pub evidence: Evidence,
    pub origin: Origin,
}

pub struct Registered {
    pub user: User,
    pub face_id: String,
}

impl FaceLock {
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn register(&self, req: Registration, actor: Actor<'_>) -> Result<Registered, Error> {
        let owner = match self.store.user(&req.user_id).await? {
            Some(user) => {
                if !actor.may_act_for(&user.user_id) {
                    return Err(Error::UserExists);
                }
                FaceOwner::Existing {
                    user_id: user.user_id,
                    generation: user.generation,
                }
            }
            None => {
                // Otherwise anyone could claim an admin id before its owner enrols.
                if self.accounts.policy().is_listed_admin(&req.user_id) && !actor.is_admin() {
                    return Err(Error::Forbidden(
                        "This user id is an administrator; it is enrolled by an existing \
                         administrator or with `facelock users add` on the server",
                    ));
                }
                match self.registration {
                    _ if actor.is_admin() => {}
                    RegistrationPolicy::Open => {}
                    RegistrationPolicy::Liveness if matches!(req.evidence, Evidence::Live(_)) => {}
                    RegistrationPolicy::Liveness => return Err(Error::LivenessRequired),
                    RegistrationPolicy::Admin => {
                        return Err(Error::Forbidden(
                            "Registration is closed: new users are enrolled by an administrator",
                        ))
                    }
                }
                FaceOwner::New(NewUser {
                    user_id: req.user_id.clone(),
                    full_name: req.full_name,
                    email: req.email,
                })
            }
        };

        let live = matches!(req.evidence, Evidence::Live(_));
        let upload = match req.evidence {
            Evidence::Photo(bytes) => self.prepare_image(bytes).await?,
            Evidence::Live(proof) => self.check_liveness(proof, &req.origin).await?,
        };
        if !self.allow_duplicate_faces {
            self.refuse_duplicate(&req.user_id, upload.clone(), &req.origin, actor)
                .await?;
        }
        let indexed = self.engine.index_face(&req.user_id, upload.clone()).await?;
        let face_id = indexed.face_id.clone();

        let photo = match self.clean_photo(upload).await {
            Ok(photo) => photo,
            Err(e) => {
                self.undo_engine_face(&face_id).await;
                return Err(e);
            }
        };
        // The user, the face, its descriptor and its photo commit together, or none does.
        let face = NewFace {
            face_id: face_id.clone(),
            engine: self.engine.name().to_owned(),
            model: self.engine.model().to_owned(),
            photo,
            descriptor: indexed.descriptor,
        };
        let kind = match owner {
            FaceOwner::New(_) => AuditKind::UserRegistered,
            FaceOwner::Existing { .. } => AuditKind::FaceAdded,
        };
        match self.store.add_face(owner, face).await {
            Ok(user) => {
                self.accounts
                    .audit(
                        kind,
                        &req.origin,
                        Some(&user.user_id),
                        actor,
                        json!({ "face_id": face_id, "faces": user.face_count, "liveness": live }),
                    )
                    .await;
                Ok(Registered { user, face_id })
            }
            Err(e) => {
                self.undo_engine_face(&face_id).await;
                Err(e.into())
            }
        }
    }

    /// Refuses a photo whose face already belongs to another user: otherwise anyone could
    /// enrol someone else's face under a new id, and that person's 1:N logins could come back
    /// as the new id.
    async fn refuse_duplicate(
        &self,
        user: &UserId,
        upload: Arc<Upload>,
        origin: &Origin,
        actor: Actor<'_>,
    ) -> Result<(), Error> {
        let query = SearchQuery {
            scope: SearchScope::All,
            min_similarity: self.accounts.policy().threshold(None),
        };
        let found = match self.candidates(upload, &query).await {
            Ok(found) => found,
            // Enrolment gives these their own, more precise answer.
            Err(Error::Engine(EngineError::NoFace | EngineError::AmbiguousFaces)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some((face, similarity)) = self.accounts.policy().duplicate_of(
            &found.matches,
            &found.known,
            self.engine.name(),
            user,
        ) else {
            return Ok(());
        };
        self.accounts
            .audit(
                AuditKind::DuplicateFaceRefused,
                origin,
                Some(user),
                actor,
                json!({ "enrolled_as": face.user_id, "similarity": similarity.value() }),
            )
            .await;
        Err(Error::FaceAlreadyEnrolled)
    }

    /// The reference photo kept for a face: re-encoded off the async workers.
    async fn clean_photo(&self, upload: Arc<Upload>) -> Result<ReferencePhoto, Error> {
        let (format, bytes) =
            tokio::task::spawn_blocking(move || images::clean_copy(&upload.decoded)).await??;
        Ok(ReferencePhoto { format, bytes })
    }

    pub(super) async fn undo_engine_face(&self, face_id: &str) {
        if let Err(e) = self.engine.delete_faces(&[face_id.to_owned()]).await {
            // Harmless for logins (they ignore faces the store does not know), but say so.
            tracing::error!(face_id, error = %crate::telemetry::error_chain(&e), "could not remove a face from the engine after a failed registration");
        }
    }

    /// Deletes a user (see [`super::Accounts::delete_user`]) and forgets their faces in this
    /// server's engine at once.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn delete_user(
        &self,
        actor: Actor<'_>,
        user_id: &UserId,
        origin: &Origin,
    ) -> Result<(), Error> {
        let faces = self.accounts.delete_user(actor, user_id, origin).await?;
        let ids: Vec<String> = faces.into_iter().map(|f| f.face_id).collect();
        self.forget_in_engine(&ids).await;
        Ok(())
    }

    pub(super) async fn forget_in_engine(&self, face_ids: &[String]) {
        if face_ids.is_empty() {
            return;
        }
        match self.engine.delete_faces(face_ids).await {
            Ok(()) => {
                if let Err(e) = self.store.clear_pending_engine_deletions(face_ids).await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not clear the engine deletion queue");
                }
            }
            Err(e) => tracing::warn!(
                error = %crate::telemetry::error_chain(&e),
                faces = face_ids.len(),
                "the engine could not delete faces yet; they stay queued and are retried"
            ),
        }
    }
}
