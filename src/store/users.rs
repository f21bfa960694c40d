//! Users, their faces, and the faces an engine still has to forget.

use async_trait::async_trait;

use super::StoreError;
use crate::{
    clock::Timestamp,
    domain::{Email, FullName, Page, User, UserId},
    images::Format,
};

/// A reference photo: the enrolment photo re-encoded upright, without metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferencePhoto {
    pub format: Format,
    pub bytes: Vec<u8>,
}

/// A face as stored.
#[derive(Clone, Debug)]
pub struct FaceRecord {
    pub face_id: String,
    pub user_id: UserId,
    /// The owner's generation ([`User::generation`]).
    pub user_generation: i64,
    /// The engine that enrolled the face (`local`, `rekognition`).
    pub engine: String,
    /// The model that described it: descriptors of different models are never compared.
    pub model: String,
    /// Where a server from before photos moved into the store kept this face's photo, relative
    /// to the reference folder; `None` once the photo is in the store.
    pub legacy_photo_path: Option<String>,
    pub descriptor: Option<Vec<f32>>,
    pub created_at: Timestamp,
}

/// Faces for an in-memory index, a batch in a few flat buffers. A start-up reads every face,
/// and an allocation per face, made on one thread and freed on another, cost more than the
/// reading and unsealing together.
#[derive(Debug, Default)]
pub struct FaceBatch {
    /// Each face's id then its user's id.
    text: String,
    /// Sealed descriptors, until [`FaceBatch::unseal`].
    sealed: Vec<u8>,
    descriptors: Vec<f32>,
    /// Where each face's parts end in the buffers (they start where the previous face's end).
    ends: Vec<FaceEnds>,
}

#[derive(Clone, Copy, Debug, Default)]
struct FaceEnds {
    face_id: usize,
    user_id: usize,
    sealed: usize,
    descriptor: usize,
}

/// A face of a [`FaceBatch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchFace<'a> {
    pub face_id: &'a str,
    /// As stored: validated when it was registered.
    pub user_id: &'a str,
    pub descriptor: &'a [f32],
}

impl FaceBatch {
    pub(crate) fn with_capacity(faces: usize) -> Self {
        Self {
            text: String::with_capacity(faces * 48),
            sealed: Vec::with_capacity(faces * 560),
            descriptors: Vec::new(),
            ends: Vec::with_capacity(faces),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Adds a face whose descriptor is still sealed.
    pub(crate) fn push_sealed(&mut self, face_id: &str, user_id: &str, sealed: &[u8]) {
        self.text.push_str(face_id);
        let face_id = self.text.len();
        self.text.push_str(user_id);
        self.sealed.extend_from_slice(sealed);
        self.ends.push(FaceEnds {
            face_id,
            user_id: self.text.len(),
            sealed: self.sealed.len(),
            descriptor: 0,
        });
    }

    /// Opens every descriptor (where it lies, then decoded once).
    pub(crate) fn unseal(&mut self, vault: &super::Vault) -> Result<(), StoreError> {
        let mut previous = FaceEnds::default();
        for ends in self.ends.iter_mut() {
            let face_id = &self.text[previous.user_id..ends.face_id];
            let plain =
                vault.open_in_place(face_id, &mut self.sealed[previous.sealed..ends.sealed])?;
            self.descriptors.extend(
                plain
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            ends.descriptor = self.descriptors.len();
            previous = *ends;
        }
        self.sealed = Vec::new();
        Ok(())
    }

    /// The faces, once unsealed.
    pub fn iter(&self) -> impl Iterator<Item = BatchFace<'_>> {
        let starts = std::iter::once(FaceEnds::default()).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, end)| BatchFace {
            face_id: &self.text[start.user_id..end.face_id],
            user_id: &self.text[end.face_id..end.user_id],
            descriptor: &self.descriptors[start.descriptor..end.descriptor],
        })
    }
}

/// Where a store sends faces, a batch at a time, as it reads them.
pub type FaceBatches = tokio::sync::mpsc::Sender<FaceBatch>;

/// What [`UserStore::send_enrolled_faces`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FacesSent {
    pub sent: u64,
    /// Faces of the engine described by another model (or by none), not sent.
    pub left_out: u64,
}

/// The profile given when a user is first registered.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub user_id: UserId,
    pub full_name: Option<FullName>,
    pub email: Option<Email>,
}

/// A face to record for a user.
#[derive(Clone, Debug)]
pub struct NewFace {
    pub face_id: String,
    pub engine: String,
    pub model: String,
    pub photo: ReferencePhoto,
    pub descriptor: Option<Vec<f32>>,
}

impl NewFace {
    /// The descriptor as stored: sealed to this face's row, so it opens nowhere else.
    pub(crate) fn sealed_descriptor(
        &self,
        vault: &super::Vault,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.descriptor
            .as_deref()
            .map(|d| vault.seal(&self.face_id, &encode_descriptor(d)))
            .transpose()
            .map_err(Into::into)
    }
}

/// A face added to or removed from the store, in the order they happened.
#[derive(Clone, Debug)]
pub enum FaceChange {
    Added(FaceRecord),
    Removed { face_id: String },
}

/// The face changes after a point of the log, and the point they reach.
#[derive(Clone, Debug)]
pub struct FaceChanges {
    pub changes: Vec<FaceChange>,
    pub through: i64,
}

/// Whether recording a face may create its user.
#[derive(Clone, Debug)]
pub enum FaceOwner {
    /// The user must not exist yet; it is created with the face.
    New(NewUser),
    /// The user must exist as this generation (not deleted and re-created meanwhile).
    Existing { user_id: UserId, generation: i64 },
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Records a face, creating its user when asked to, in one transaction.
    async fn add_face(&self, owner: FaceOwner, face: NewFace) -> Result<User, StoreError>;
    async fn user(&self, user_id: &UserId) -> Result<Option<User>, StoreError>;
    /// Grants or withdraws the admin role; `UserNotFound` when there is no such user.
    async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<User, StoreError>;
    /// The user if it still exists as `generation`: not deleted, nor deleted and registered
    /// again under the same id. Tokens and sessions are bound to this.
    async fn current_user(
        &self,
        user_id: &UserId,
        generation: i64,
    ) -> Result<Option<User>, StoreError> {
        Ok(self
            .user(user_id)
            .await?
            .filter(|u| u.generation == generation))
    }
    async fn list_users(&self, page: Page) -> Result<Vec<User>, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    /// Faces enrolled in `engine`.
    async fn count_faces(&self, engine: &str) -> Result<u64, StoreError>;
    /// The stored faces among `face_ids`, in one read; unknown ids are left out.
    async fn faces(&self, face_ids: &[String]) -> Result<Vec<FaceRecord>, StoreError>;
    /// Every face enrolled with `engine`, for engines that rebuild an index at start-up.
    async fn faces_for_engine(&self, engine: &str) -> Result<Vec<FaceRecord>, StoreError>;
    /// Every face of `engine` described by `model`, sent to `into` in batches as they are read
    /// and unsealed, so that an index is built while the rest is still being read (start-up).
    /// Stops early, and without error, when the receiver is dropped.
    async fn send_enrolled_faces(
        &self,
        engine: &str,
        model: &str,
        into: FaceBatches,
    ) -> Result<FacesSent, StoreError>;
    /// Deletes the user and their faces, and queues the faces for deletion in the engine, in one
    /// transaction. Returns the deleted faces.
    async fn delete_user(&self, user_id: &UserId) -> Result<Vec<FaceRecord>, StoreError>;
    /// The point the face change log has reached (0 when empty).
    async fn face_log_position(&self) -> Result<i64, StoreError>;
    /// The changes to faces of `engine` after `after`, in order; `None` when the log no
    /// longer reaches back that far (then the caller reloads every face).
    async fn face_changes_since(
        &self,
        engine: &str,
        after: i64,
    ) -> Result<Option<FaceChanges>, StoreError>;
    /// Faces of `engine` whose deletion in the engine is still owed.
    async fn pending_engine_deletions(&self, engine: &str) -> Result<Vec<String>, StoreError>;
    async fn clear_pending_engine_deletions(&self, face_ids: &[String]) -> Result<(), StoreError>;
    /// A face's reference photo.
    async fn reference_photo(&self, face_id: &str) -> Result<Option<ReferencePhoto>, StoreError>;
    /// Stores the photo of a face whose photo was a file (migration from a folder of photos).
    async fn attach_photo(&self, face_id: &str, photo: ReferencePhoto) -> Result<(), StoreError>;
    /// Replaces a face by a new description of the same photo (`facelock reindex`, after a
    /// model change): the new face takes the old one's user and enrolment time, the old one is
    /// deleted and queued for deletion in its engine, in one transaction. The change log says
    /// both, so running servers drop the old face and index the new one. `false`, and nothing
    /// written, when the old face is gone (its user was deleted meanwhile).
    async fn replace_face(&self, old_face_id: &str, face: NewFace) -> Result<bool, StoreError>;
}

/// The logged changes as the index applies them: an addition carries the face as stored now
/// (none when it was removed since, and the removal follows).
pub(crate) fn changes_in_order(
    logged: Vec<(String, bool)>,
    present: Vec<FaceRecord>,
) -> Vec<FaceChange> {
    let mut present: std::collections::HashMap<String, FaceRecord> = present
        .into_iter()
        .map(|f| (f.face_id.clone(), f))
        .collect();
    logged
        .into_iter()
        .filter_map(|(face_id, added)| {
            if added {
                present.remove(&face_id).map(FaceChange::Added)
            } else {
                Some(FaceChange::Removed { face_id })
            }
        })
        .collect()
}

/// A descriptor as stored: its floats, little-endian.
pub(crate) fn encode_descriptor(d: &[f32]) -> Vec<u8> {
    d.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn decode_descriptor(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Faces read with their descriptors still sealed, unsealed; across the cores when there are
/// many (a start-up reads every face, and unsealing is most of its work).
pub(crate) fn unseal_faces(
    vault: &super::Vault,
    mut faces: Vec<(FaceRecord, Option<Vec<u8>>)>,
) -> Result<Vec<FaceRecord>, StoreError> {
    const PARALLEL_FROM: usize = 4096;
    let unseal = |chunk: &mut [(FaceRecord, Option<Vec<u8>>)]| -> Result<(), StoreError> {
        for (face, sealed) in chunk.iter_mut() {
            if let Some(sealed) = sealed.take() {
                face.descriptor = Some(decode_descriptor(&vault.open(&face.face_id, &sealed)?));
            }
        }
        Ok(())
    };
    if faces.len() < PARALLEL_FROM {
        unseal(&mut faces)?;
    } else {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let per = faces.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = faces
                .chunks_mut(per)
                .map(|chunk| s.spawn(move || unseal(chunk)))
                .collect();
            parts.into_iter().try_for_each(|p| {
                p.join()
                    .unwrap_or_else(|_| Err(StoreError::Corrupt("unsealing failed".into())))
            })
        })?;
    }
    Ok(faces.into_iter().map(|(face, _)| face).collect())
}

/// Faces per batch while loading: enough that passing a batch between threads costs nothing
/// per face, few enough that the first arrive at once.
pub(crate) const LOAD_BATCH: usize = 4096;

/// What a store's [`UserStore::send_enrolled_faces`] does once it knows how to read: `read`
/// fills batches with sealed faces (returning how many it left out) while they are unsealed
/// and passed on to `into`.
pub(crate) async fn read_and_unseal<Read>(
    vault: std::sync::Arc<super::Vault>,
    into: FaceBatches,
    read: impl FnOnce(tokio::sync::mpsc::Sender<FaceBatch>) -> Read,
) -> Result<FacesSent, StoreError>
where
    Read: std::future::Future<Output = Result<u64, StoreError>>,
{
    let (sealed, to_unseal) = tokio::sync::mpsc::channel(4);
    let (left_out, sent) = tokio::join!(read(sealed), unseal_batches(vault, to_unseal, into));
    Ok(FacesSent {
        sent: sent?,
        left_out: left_out?,
    })
}

/// Unseals the batches arriving on `sealed` on the blocking pool, one per core at a time
/// (unsealing is most of a start-up's work), and passes them on to `into` as they are ready.
/// Returns the faces passed on; stops when `into` is closed.
async fn unseal_batches(
    vault: std::sync::Arc<super::Vault>,
    mut sealed: tokio::sync::mpsc::Receiver<FaceBatch>,
    into: FaceBatches,
) -> Result<u64, StoreError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut working = tokio::task::JoinSet::new();
    let mut reading = true;
    let mut sent = 0u64;
    loop {
        tokio::select! {
            batch = sealed.recv(), if reading && working.len() < workers => match batch {
                Some(mut batch) => {
                    let vault = vault.clone();
                    working.spawn_blocking(move || batch.unseal(&vault).map(|()| batch));
                }
                None => reading = false,
            },
            Some(done) = working.join_next(), if !working.is_empty() => {
                let batch = done.map_err(|e| StoreError::backend("unsealing faces", e))??;
                let count = batch.len() as u64;
                if into.send(batch).await.is_err() {
                    break;
                }
                sent += count;
            }
            else => break,
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MasterKey, Vault};

    #[test]
    fn a_batch_keeps_each_face_apart_and_opens_each_descriptor_in_its_row() {
        let (vault, _) = Vault::create(&MasterKey::generate().unwrap()).unwrap();
        let faces = [
            ("f1", "alice", vec![0.5f32, -1.0]),
            ("face-22", "b", vec![3.0; 128]),
        ];
        let mut batch = FaceBatch::with_capacity(1);
        for (face_id, user_id, d) in &faces {
            batch.push_sealed(
                face_id,
                user_id,
                &vault.seal(face_id, &encode_descriptor(d)).unwrap(),
            );
        }
        assert_eq!(batch.len(), 2);
        batch.unseal(&vault).unwrap();
        let read: Vec<_> = batch
            .iter()
            .map(|f| (f.face_id, f.user_id, f.descriptor.to_vec()))
            .collect();
        let expected: Vec<_> = faces.iter().map(|(f, u, d)| (*f, *u, d.clone())).collect();
        assert_eq!(read, expected);

        // A descriptor sealed for another row does not open.
        let mut swapped = FaceBatch::with_capacity(1);
        swapped.push_sealed(
            "f2",
            "alice",
            &vault.seal("f1", &encode_descriptor(&[1.0])).unwrap(),
        );
        assert!(swapped.unseal(&vault).is_err());
    }
}
