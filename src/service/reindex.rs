//! Re-describing stored faces from their reference photos (`facelock reindex`): after the
//! engine's model changed, faces described by the old model cannot be compared with new
//! descriptors, so a server leaves them out until they are described again.

use serde_json::json;

use super::{Actor, AuditKind, Error, FaceLock, Origin};
use crate::{
    domain::UserId,
    store::{FaceRecord, NewFace},
};

/// Which faces to describe again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReindexScope {
    /// Faces whose model is not the engine's current one (or that have no descriptor).
    Stale,
    /// Every face of the engine.
    All,
}

/// What became of one face.
#[derive(Debug)]
pub enum ReindexOutcome {
    /// Described again: the old face is replaced by a new one with the same photo.
    Redescribed { new_face_id: String },
    /// The photo cannot be described by the current model: the face stays as it was (left
    /// out of logins while its model differs).
    Refused(Error),
    /// The face or its user was deleted meanwhile.
    Gone,
}

/// One face's line of the report.
#[derive(Debug)]
pub struct ReindexedFace {
    pub user_id: UserId,
    pub face_id: String,
    /// The model that had described it.
    pub old_model: String,
    pub outcome: ReindexOutcome,
}

impl FaceLock {
    /// Describes faces of the engine in use again from their stored photos, one at a time,
    /// each replaced in one transaction; `on_face` hears of each as it is done. Safe while
    /// servers run: they learn of every replaced face from the change log.
    pub async fn reindex(
        &self,
        scope: ReindexScope,
        mut on_face: impl FnMut(&ReindexedFace),
    ) -> Result<Vec<ReindexedFace>, Error> {
        let model = self.engine.model().to_owned();
        let faces: Vec<FaceRecord> = self
            .store
            .faces_for_engine(self.engine.name())
            .await?
            .into_iter()
            .filter(|f| scope == ReindexScope::All || f.model != model || f.descriptor.is_none())
            .collect();
        let mut report = Vec::with_capacity(faces.len());
        for face in faces {
            let outcome = match self.redescribe(&face).await {
                Ok(outcome) => outcome,
                // The photo's own problem: say so and go on with the next face.
                Err(e @ (Error::Engine(_) | Error::Image(_))) => ReindexOutcome::Refused(e),
                Err(e) => return Err(e),
            };
            let done = ReindexedFace {
                user_id: face.user_id,
                face_id: face.face_id,
                old_model: face.model,
                outcome,
            };
            on_face(&done);
            report.push(done);
        }
        Ok(report)
    }

    async fn redescribe(&self, face: &FaceRecord) -> Result<ReindexOutcome, Error> {
        let Some(photo) = self.store.reference_photo(&face.face_id).await? else {
            return Ok(ReindexOutcome::Gone);
        };
        let upload = self.prepare_image(photo.bytes.clone()).await?;
        let indexed = self.engine.index_face(&face.user_id, upload).await?;
        let new_face_id = indexed.face_id.clone();
        let replacement = NewFace {
            face_id: new_face_id.clone(),
            engine: self.engine.name().to_owned(),
            model: self.engine.model().to_owned(),
            photo,
            descriptor: indexed.descriptor,
        };
        let replaced = match self.store.replace_face(&face.face_id, replacement).await {
            Ok(replaced) => replaced,
            Err(e) => {
                self.undo_engine_face(&new_face_id).await;
                return Err(e.into());
            }
        };
        if !replaced {
            self.undo_engine_face(&new_face_id).await;
            return Ok(ReindexOutcome::Gone);
        }
        self.forget_in_engine(std::slice::from_ref(&face.face_id))
            .await;
        self.accounts
            .audit(
                AuditKind::FaceRedescribed,
                &Origin::operator(),
                Some(&face.user_id),
                Actor::Operator,
                json!({
                    "face_id": new_face_id,
                    "replaces": face.face_id,
                    "model": self.engine.model(),
                    "old_model": face.model,
                }),
            )
            .await;
        Ok(ReindexOutcome::Redescribed { new_face_id })
    }
}
