//! Users, faces and the engine deletion queue in SQLite.

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::{backend, parse_stored_id, timestamp, SqliteStore};
use crate::{
    clock::Timestamp,
    domain::{Page, User, UserId},
    images::Format,
    store::{
        users::{changes_in_order, read_and_unseal, unseal_faces, LOAD_BATCH},
        FaceBatch, FaceBatches, FaceChanges, FaceOwner, FaceRecord, FacesSent, NewFace,
        ReferencePhoto, StoreError, UserStore, Vault,
    },
};

const USER_COLUMNS: &str = "u.id, u.user_id, u.full_name, u.email, u.created_at,
     (SELECT COUNT(*) FROM faces f WHERE f.user_rowid = u.id), u.is_admin";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let raw: String = row.get(1)?;
    Ok(User {
        generation: row.get(0)?,
        user_id: parse_stored_id(&raw)?,
        full_name: row.get(2)?,
        email: row.get(3)?,
        registered_at: timestamp(row.get(4)?),
        face_count: row.get(5)?,
        admin: row.get(6)?,
    })
}

const FACE_COLUMNS: &str = "f.face_id, u.user_id, u.id, f.engine, f.model, f.reference_path,
     f.descriptor, f.created_at";
const FACES_WITH_USERS: &str = "faces f JOIN users u ON u.id = f.user_rowid";

/// A face row with its descriptor still sealed.
fn face_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(FaceRecord, Option<Vec<u8>>)> {
    let raw: String = row.get(1)?;
    Ok((
        FaceRecord {
            face_id: row.get(0)?,
            user_id: parse_stored_id(&raw)?,
            user_generation: row.get(2)?,
            engine: row.get(3)?,
            model: row.get(4)?,
            legacy_photo_path: row.get(5)?,
            descriptor: None,
            created_at: timestamp(row.get(7)?),
        },
        row.get(6)?,
    ))
}

fn find_user(conn: &Connection, user_id: &str) -> Result<Option<User>, StoreError> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = ?1"),
        [user_id],
        user_from_row,
    )
    .optional()
    .map_err(backend("reading a user"))
}

fn query_faces(
    conn: &Connection,
    vault: &Vault,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<FaceRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {FACE_COLUMNS} FROM {FACES_WITH_USERS} WHERE {filter}"
        ))
        .map_err(backend("reading faces"))?;
    let rows = stmt
        .query_map(params, face_from_row)
        .map_err(backend("reading faces"))?;
    let sealed = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend("reading faces"))?;
    unseal_faces(vault, sealed)
}

/// Reads the faces of `engine` for an index, a batch at a time, into `into`; counts the faces
/// left out (another model, or no descriptor). Stops when `into` is closed.
fn read_sealed_faces(
    conn: &Connection,
    engine: &str,
    model: &str,
    into: tokio::sync::mpsc::Sender<FaceBatch>,
) -> Result<u64, StoreError> {
    let failed = backend("reading faces");
    let mut stmt = conn
        .prepare(
            "SELECT f.face_id, u.user_id, CASE WHEN f.model = ?2 THEN f.descriptor END
             FROM faces f JOIN users u ON u.id = f.user_rowid WHERE f.engine = ?1",
        )
        .map_err(&failed)?;
    let mut rows = stmt.query([engine, model]).map_err(&failed)?;
    let mut left_out = 0;
    let mut batch = FaceBatch::with_capacity(LOAD_BATCH);
    while let Some(row) = rows.next().map_err(&failed)? {
        // Borrowed from the row, copied into the batch's buffers: nothing allocated per face.
        let text = |i| -> Result<&str, StoreError> {
            let value = row.get_ref(i).map_err(&failed)?;
            value
                .as_str()
                .map_err(|e| StoreError::backend("reading faces", e))
        };
        let sealed = row.get_ref(2).map_err(&failed)?;
        let Some(sealed) = sealed
            .as_blob_or_null()
            .map_err(|e| StoreError::backend("reading faces", e))?
        else {
            left_out += 1;
            continue;
        };
        batch.push_sealed(text(0)?, text(1)?, sealed);
        if batch.len() == LOAD_BATCH {
            let full = std::mem::replace(&mut batch, FaceBatch::with_capacity(LOAD_BATCH));
            if into.blocking_send(full).is_err() {
                return Ok(left_out);
            }
        }
    }
    if !batch.is_empty() {
        let _ = into.blocking_send(batch);
    }
    Ok(left_out)
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn add_face(&self, owner: FaceOwner, face: NewFace) -> Result<User, StoreError> {
        let vault = self.vault.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("adding a face"))?;
            let now = Timestamp::now().unix_millis();
            let (generation, user_id) = match &owner {
                FaceOwner::New(user) => {
                    if find_user(&tx, user.user_id.as_str())?.is_some() {
                        return Err(StoreError::UserExists);
                    }
                    tx.execute(
                        "INSERT INTO users (user_id, full_name, email, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![
                            user.user_id.as_str(),
                            user.full_name.as_ref().map(|n| n.as_str()),
                            user.email.as_ref().map(|e| e.as_str()),
                            now
                        ],
                    )
                    .map_err(backend("adding a user"))?;
                    (tx.last_insert_rowid(), user.user_id.clone())
                }
                FaceOwner::Existing {
                    user_id,
                    generation,
                } => match find_user(&tx, user_id.as_str())? {
                    Some(found) if found.generation == *generation => {
                        (*generation, user_id.clone())
                    }
                    _ => return Err(StoreError::UserNotFound),
                },
            };
            insert_face(&tx, &vault, &face, generation, now)?;
            let user = find_user(&tx, user_id.as_str())?.ok_or(StoreError::UserNotFound)?;
            tx.commit().map_err(backend("adding a face"))?;
            Ok(user)
        })
        .await
    }

    async fn replace_face(&self, old_face_id: &str, face: NewFace) -> Result<bool, StoreError> {
        let old_face_id = old_face_id.to_owned();
        let vault = self.vault.clone();
        self.run(move |conn| {
            let failed = backend("replacing a face");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&failed)?;
            let old: Option<(i64, String, i64)> = tx
                .query_row(
                    "SELECT user_rowid, engine, created_at FROM faces WHERE face_id = ?1",
                    [&old_face_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(&failed)?;
            let Some((user_rowid, old_engine, created_at)) = old else {
                return Ok(false);
            };
            tx.execute(
                "INSERT OR REPLACE INTO pending_engine_deletions (face_id, engine, queued_at)
                 VALUES (?1, ?2, ?3)",
                params![old_face_id, old_engine, Timestamp::now().unix_millis()],
            )
            .map_err(backend("queueing engine deletions"))?;
            tx.execute("DELETE FROM faces WHERE face_id = ?1", [&old_face_id])
                .map_err(&failed)?;
            insert_face(&tx, &vault, &face, user_rowid, created_at)?;
            tx.commit().map_err(&failed)?;
            Ok(true)
        })
        .await
    }

    async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<User, StoreError> {
        let user_id = user_id.clone();
        self.run(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE users SET is_admin = ?2 WHERE user_id = ?1",
                    params![user_id.as_str(), admin],
                )
                .map_err(backend("changing a role"))?;
            if changed == 0 {
                return Err(StoreError::UserNotFound);
            }
            find_user(conn, user_id.as_str())?.ok_or(StoreError::UserNotFound)
        })
        .await
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<User>, StoreError> {
        let user_id = user_id.clone();
        self.run(move |conn| find_user(conn, user_id.as_str()))
            .await
    }

    async fn list_users(&self, page: Page) -> Result<Vec<User>, StoreError> {
        self.run(move |conn| {
            let after = page.after.as_ref().map(|u| u.as_str().to_owned());
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users u
                     WHERE ?1 IS NULL OR u.user_id > ?1
                     ORDER BY u.user_id LIMIT ?2"
                ))
                .map_err(backend("listing users"))?;
            let rows = stmt
                .query_map(params![after, page.limit], user_from_row)
                .map_err(backend("listing users"))?;
            rows.collect::<Result<_, _>>()
                .map_err(backend("listing users"))
        })
        .await
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        self.run(|conn| {
            conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend("counting users"))
        })
        .await
    }

    async fn count_faces(&self, engine: &str) -> Result<u64, StoreError> {
        let engine = engine.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM faces WHERE engine = ?1",
                [engine],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(backend("counting faces"))
        })
        .await
    }

    async fn faces(&self, face_ids: &[String]) -> Result<Vec<FaceRecord>, StoreError> {
        if face_ids.is_empty() {
            return Ok(Vec::new());
        }
        let face_ids = face_ids.to_vec();
        let vault = self.vault.clone();
        self.run(move |conn| {
            let marks = vec!["?"; face_ids.len()].join(",");
            query_faces(
                conn,
                &vault,
                &format!("f.face_id IN ({marks})"),
                params_from_iter(face_ids.iter()),
            )
        })
        .await
    }

    async fn faces_for_engine(&self, engine: &str) -> Result<Vec<FaceRecord>, StoreError> {
        let engine = engine.to_owned();
        let vault = self.vault.clone();
        self.run(move |conn| query_faces(conn, &vault, "f.engine = ?1", [engine]))
            .await
    }

    async fn send_enrolled_faces(
        &self,
        engine: &str,
        model: &str,
        into: FaceBatches,
    ) -> Result<FacesSent, StoreError> {
        let (engine, model) = (engine.to_owned(), model.to_owned());
        read_and_unseal(self.vault.clone(), into, |sealed| {
            self.run(move |conn| read_sealed_faces(conn, &engine, &model, sealed))
        })
        .await
    }

    async fn delete_user(&self, user_id: &UserId) -> Result<Vec<FaceRecord>, StoreError> {
        let user_id = user_id.clone();
        let vault = self.vault.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("deleting a user"))?;
            let user = find_user(&tx, user_id.as_str())?.ok_or(StoreError::UserNotFound)?;
            let faces = query_faces(&tx, &vault, "u.id = ?1", [user.generation])?;
            let now = Timestamp::now().unix_millis();
            for face in &faces {
                tx.execute(
                    "INSERT OR REPLACE INTO pending_engine_deletions (face_id, engine, queued_at)
                     VALUES (?1, ?2, ?3)",
                    params![face.face_id, face.engine, now],
                )
                .map_err(backend("queueing engine deletions"))?;
            }
            tx.execute("DELETE FROM users WHERE id = ?1", [user.generation])
                .map_err(backend("deleting a user"))?;
            tx.commit().map_err(backend("deleting a user"))?;
            Ok(faces)
        })
        .await
    }

    async fn face_log_position(&self) -> Result<i64, StoreError> {
        self.run(|conn| {
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM face_changes", [], |r| {
                r.get(0)
            })
            .map_err(backend("reading the face change log"))
        })
        .await
    }

    async fn face_changes_since(
        &self,
        engine: &str,
        after: i64,
    ) -> Result<Option<FaceChanges>, StoreError> {
        let engine = engine.to_owned();
        let vault = self.vault.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction()
                .map_err(backend("reading the face change log"))?;
            let (oldest, through): (Option<i64>, i64) = tx
                .query_row(
                    "SELECT MIN(seq), COALESCE(MAX(seq), 0) FROM face_changes",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend("reading the face change log"))?;
            if oldest.is_some_and(|oldest| after < oldest - 1) {
                return Ok(None);
            }
            let logged: Vec<(String, bool)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT face_id, added FROM face_changes
                         WHERE seq > ?1 AND engine = ?2 ORDER BY seq",
                    )
                    .map_err(backend("reading the face change log"))?;
                let rows = stmt
                    .query_map(params![after, engine], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(backend("reading the face change log"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(backend("reading the face change log"))?
            };
            let added: Vec<&String> = logged.iter().filter(|(_, a)| *a).map(|(f, _)| f).collect();
            let marks = vec!["?"; added.len()].join(",");
            let present = if added.is_empty() {
                Vec::new()
            } else {
                query_faces(
                    &tx,
                    &vault,
                    &format!("f.face_id IN ({marks})"),
                    params_from_iter(added.iter()),
                )?
            };
            Ok(Some(FaceChanges {
                changes: changes_in_order(logged, present),
                through,
            }))
        })
        .await
    }

    async fn pending_engine_deletions(&self, engine: &str) -> Result<Vec<String>, StoreError> {
        let engine = engine.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare("SELECT face_id FROM pending_engine_deletions WHERE engine = ?1")
                .map_err(backend("reading the deletion queue"))?;
            let rows = stmt
                .query_map([engine], |r| r.get::<_, String>(0))
                .map_err(backend("reading the deletion queue"))?;
            rows.collect::<Result<_, _>>()
                .map_err(backend("reading the deletion queue"))
        })
        .await
    }

    async fn clear_pending_engine_deletions(&self, face_ids: &[String]) -> Result<(), StoreError> {
        let face_ids = face_ids.to_vec();
        self.run(move |conn| {
            let tx = conn
                .transaction()
                .map_err(backend("clearing the deletion queue"))?;
            for id in &face_ids {
                tx.execute(
                    "DELETE FROM pending_engine_deletions WHERE face_id = ?1",
                    [id],
                )
                .map_err(backend("clearing the deletion queue"))?;
            }
            tx.commit().map_err(backend("clearing the deletion queue"))
        })
        .await
    }

    async fn reference_photo(&self, face_id: &str) -> Result<Option<ReferencePhoto>, StoreError> {
        let face_id = face_id.to_owned();
        let vault = self.vault.clone();
        self.run(move |conn| {
            let row: Option<(String, Vec<u8>)> = conn
                .query_row(
                    "SELECT format, photo FROM reference_photos WHERE face_id = ?1",
                    [&face_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend("reading a reference photo"))?;
            row.map(|(format, sealed)| {
                Ok(ReferencePhoto {
                    format: Format::from_extension(&format)
                        .ok_or_else(|| StoreError::Corrupt(format!("photo format {format:?}")))?,
                    bytes: vault.open(&face_id, &sealed)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn attach_photo(&self, face_id: &str, photo: ReferencePhoto) -> Result<(), StoreError> {
        let face_id = face_id.to_owned();
        let vault = self.vault.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction()
                .map_err(backend("attaching a reference photo"))?;
            insert_photo(&tx, &vault, &face_id, &photo)?;
            tx.execute(
                "UPDATE faces SET reference_path = NULL WHERE face_id = ?1",
                [&face_id],
            )
            .map_err(backend("attaching a reference photo"))?;
            tx.commit().map_err(backend("attaching a reference photo"))
        })
        .await
    }
}

/// Inserts a face of the user at `user_rowid` (its descriptor sealed to its row) and its
/// reference photo, inside the caller's transaction.
fn insert_face(
    conn: &Connection,
    vault: &Vault,
    face: &NewFace,
    user_rowid: i64,
    created_at: i64,
) -> Result<(), StoreError> {
    let descriptor = face.sealed_descriptor(vault)?;
    conn.execute(
        "INSERT INTO faces (face_id, user_rowid, engine, model, descriptor, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            face.face_id,
            user_rowid,
            face.engine,
            face.model,
            descriptor,
            created_at
        ],
    )
    .map_err(backend("adding a face"))?;
    insert_photo(conn, vault, &face.face_id, &face.photo)
}

fn insert_photo(
    conn: &Connection,
    vault: &Vault,
    face_id: &str,
    photo: &ReferencePhoto,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO reference_photos (face_id, format, photo) VALUES (?1, ?2, ?3)",
        params![
            face_id,
            photo.format.extension(),
            vault.seal(face_id, &photo.bytes)?
        ],
    )
    .map(|_| ())
    .map_err(backend("storing a reference photo"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewUser;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn face(id: &str) -> NewFace {
        NewFace {
            face_id: id.into(),
            engine: "test".into(),
            model: "test-model".into(),
            photo: ReferencePhoto {
                format: Format::Jpeg,
                bytes: format!("photo of {id}").into_bytes(),
            },
            descriptor: Some(vec![0.5, -1.25]),
        }
    }

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("db.sqlite"), &super::super::test_key()).unwrap()
    }

    fn new_user(id: &str) -> FaceOwner {
        FaceOwner::New(NewUser {
            user_id: uid(id),
            full_name: None,
            email: None,
        })
    }

    #[tokio::test]
    async fn faces_users_and_deletion_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let alice = store.add_face(new_user("alice"), face("f1")).await.unwrap();
        assert_eq!(alice.face_count, 1);
        assert!(matches!(
            store.add_face(new_user("alice"), face("f2")).await,
            Err(StoreError::UserExists)
        ));
        let owner = FaceOwner::Existing {
            user_id: uid("alice"),
            generation: alice.generation,
        };
        assert_eq!(
            store.add_face(owner, face("f2")).await.unwrap().face_count,
            2
        );
        let found = store
            .faces(&["f1".into(), "nope".into(), "f2".into()])
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        let f1 = found.iter().find(|f| f.face_id == "f1").unwrap();
        assert_eq!(f1.descriptor, Some(vec![0.5, -1.25]));
        assert_eq!(f1.model, "test-model");
        assert_eq!(f1.user_generation, alice.generation);
        let photo = store.reference_photo("f1").await.unwrap().unwrap();
        assert_eq!(photo.bytes, b"photo of f1");
        // At rest, neither the descriptor nor the photo is readable.
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        let (descriptor, sealed): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT descriptor, (SELECT photo FROM reference_photos WHERE face_id = 'f1')
                 FROM faces WHERE face_id = 'f1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(Vault::is_sealed(&descriptor) && Vault::is_sealed(&sealed));
        assert!(!sealed.windows(11).any(|w| w == b"photo of f1"));

        let deleted = store.delete_user(&uid("alice")).await.unwrap();
        assert_eq!(deleted.len(), 2);
        assert!(store.user(&uid("alice")).await.unwrap().is_none());
        assert!(store.faces(&["f1".into()]).await.unwrap().is_empty());
        assert!(store.reference_photo("f1").await.unwrap().is_none());
        let mut pending = store.pending_engine_deletions("test").await.unwrap();
        pending.sort();
        assert_eq!(pending, ["f1", "f2"]);
        store
            .clear_pending_engine_deletions(&pending)
            .await
            .unwrap();
        assert!(store
            .pending_engine_deletions("test")
            .await
            .unwrap()
            .is_empty());

        // A re-created user is a new generation, so faces bound to the old one are refused.
        let again = store.add_face(new_user("alice"), face("f3")).await.unwrap();
        assert_ne!(again.generation, alice.generation);
        let stale = FaceOwner::Existing {
            user_id: uid("alice"),
            generation: alice.generation,
        };
        assert!(matches!(
            store.add_face(stale, face("f4")).await,
            Err(StoreError::UserNotFound)
        ));
    }

    #[tokio::test]
    async fn keyset_pages_cover_every_user_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        for (i, name) in ["d", "a", "c", "e", "b"].iter().enumerate() {
            store
                .add_face(new_user(name), face(&format!("f{i}")))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_users(Page {
                    limit: 2,
                    after: after.clone(),
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|u| u.user_id.clone());
            seen.extend(page.into_iter().map(|u| u.user_id.to_string()));
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        assert_eq!(store.count_users().await.unwrap(), 5);
    }
}
