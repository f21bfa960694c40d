//! The candidates a search finds for a face, decided on full precision: the local engine's
//! index keeps a compressed copy of each descriptor (a few tenths of a similarity point off),
//! so each candidate is scored again on the store's own copy before anyone is let in.

use std::sync::Arc;

use super::{Error, FaceLock};
use crate::{
    domain::Similarity,
    engine::{FaceMatch, Found, SearchQuery, Upload},
    store::FaceRecord,
};

/// The engine's candidates and the store's records of their faces.
pub(super) struct Candidates {
    pub matches: Vec<FaceMatch>,
    /// Faces the store knows among the candidates'; the others log nobody in.
    pub known: Vec<FaceRecord>,
}

impl FaceLock {
    /// The enrolled faces nearest to the face in `upload`, with their records, scored on the
    /// store's descriptors where the engine gave the query's.
    pub(super) async fn candidates(
        &self,
        upload: Arc<Upload>,
        query: &SearchQuery,
    ) -> Result<Candidates, Error> {
        let found = self.engine.search(upload, query).await?;
        let ids: Vec<String> = found.matches.iter().map(|c| c.face_id.clone()).collect();
        let known = self.store.faces(&ids).await?;
        let matches = self.rescored(found, &known);
        Ok(Candidates { matches, known })
    }

    fn rescored(&self, found: Found, known: &[FaceRecord]) -> Vec<FaceMatch> {
        let Some(query) = found.query else {
            return found.matches;
        };
        let model = self.engine.model();
        found
            .matches
            .into_iter()
            .map(|mut candidate| {
                let stored = known
                    .iter()
                    .find(|f| f.face_id == candidate.face_id && f.model == model)
                    .and_then(|f| f.descriptor.as_deref());
                if let Some(stored) = stored {
                    candidate.similarity =
                        Similarity::clamped(self.engine.descriptor_similarity(&query, stored));
                }
                candidate
            })
            .collect()
    }
}
