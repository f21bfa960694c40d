//! Users, faces and the engine deletion queue in PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::{types::ToSql, Row};

use super::{backend, parse_stored_id, timestamp, PostgresStore};
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

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        generation: row.get(0),
        user_id: parse_stored_id(row.get(1))?,
        full_name: row.get(2),
        email: row.get(3),
        registered_at: timestamp(row.get(4)),
        face_count: row.get::<_, i64>(5) as u32,
        admin: row.get(6),
    })
}

const FACE_COLUMNS: &str = "f.face_id, u.user_id, u.id, f.engine, f.model, f.reference_path,
     f.descriptor, f.created_at";
const FACES_WITH_USERS: &str = "faces f JOIN users u ON u.id = f.user_rowid";

/// A face row with its descriptor still sealed.
fn face_from_row(row: &Row) -> Result<(FaceRecord, Option<Vec<u8>>), StoreError> {
    Ok((
        FaceRecord {
            face_id: row.get(0),
            user_id: parse_stored_id(row.get(1))?,
            user_generation: row.get(2),
            engine: row.get(3),
            model: row.get(4),
            legacy_photo_path: row.get(5),
            descriptor: None,
            created_at: timestamp(row.get(7)),
        },
        row.get(6),
    ))
}

async fn find_user(conn: &impl GenericClient, user_id: &str) -> Result<Option<User>, StoreError> {
    conn.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = $1"),
        &[&user_id],
    )
    .await
    .map_err(backend("reading a user"))?
    .map(|row| user_from_row(&row))
    .transpose()
}

async fn query_faces(
    conn: &impl GenericClient,
    vault: &Vault,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<FaceRecord>, StoreError> {
    conn.query(
        &format!("SELECT {FACE_COLUMNS} FROM {FACES_WITH_USERS} WHERE {filter}"),
        params,
    )
    .await
    .map_err(backend("reading faces"))?
    .iter()
    .map(face_from_row)
    .collect::<Result<Vec<_>, _>>()
    .and_then(|sealed| unseal_faces(vault, sealed))
}

async fn insert_photo(
    conn: &impl GenericClient,
    vault: &Vault,
    face_id: &str,
    photo: &ReferencePhoto,
) -> Result<(), StoreError> {
    let sealed = vault.seal(face_id, &photo.bytes)?;
    conn.execute(
        "INSERT INTO reference_photos (face_id, format, photo) VALUES ($1, $2, $3)
         ON CONFLICT (face_id) DO UPDATE SET format = $2, photo = $3",
        &[&face_id, &photo.format.extension(), &sealed],
    )
    .await
    .map(|_| ())
    .map_err(backend("storing a reference photo"))
}

/// Inserts a face of the user at `user_rowid` (its descriptor sealed to its row) and its
/// reference photo, inside the caller's transaction.
async fn insert_face(
    tx: &impl GenericClient,
    vault: &Vault,
    face: &NewFace,
    user_rowid: i64,
    created_at: i64,
) -> Result<(), StoreError> {
    let descriptor = face.sealed_descriptor(vault)?;
    tx.execute(
        "INSERT INTO faces (face_id, user_rowid, engine, model, descriptor, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &face.face_id,
            &user_rowid,
            &face.engine,
            &face.model,
            &descriptor,
            &created_at,
        ],
    )
    .await
    .map_err(backend("adding a face"))?;
    insert_photo(tx, vault, &face.face_id, &face.photo).await
}

/// Every user's id by row id, in one buffer: what the faces read at start-up names owners by.
/// Row ids come from a sequence, so they are dense: a table indexed by row id finds a face's
/// owner without hashing, and faces read in the order they were written look their owners up
/// in order too (a hash map's random probes were a seventh of the whole load).
#[derive(Default)]
struct UserNames {
    text: String,
    /// Each user's row id and where its id ends in `text` (it starts where the previous one's
    /// ends), in the order read.
    users: Vec<(i64, usize)>,
    /// Index into `users` by `rowid - first`, or `u32::MAX`.
    by_rowid: Vec<u32>,
    first: i64,
    /// Instead of the table when the ids are sparse (most users deleted since): by row id.
    sparse: Option<std::collections::HashMap<i64, u32, foldhash::fast::RandomState>>,
}

impl UserNames {
    fn push(&mut self, rowid: i64, user_id: &str) {
        self.text.push_str(user_id);
        self.users.push((rowid, self.text.len()));
    }

    /// Builds the table by row id once every user is read: a hash map instead when the ids
    /// are far more spread out than the users.
    fn index(&mut self) {
        let first = self.users.iter().map(|u| u.0).min().unwrap_or(0);
        let last = self.users.iter().map(|u| u.0).max().unwrap_or(first);
        let span = last
            .checked_sub(first)
            .and_then(|d| usize::try_from(d).ok())
            .and_then(|d| d.checked_add(1))
            .filter(|&span| span <= 4 * self.users.len() + 1024);
        let indices = self.users.iter().enumerate().map(|(i, u)| (u.0, i as u32));
        match span {
            Some(span) => {
                self.first = first;
                self.by_rowid = vec![u32::MAX; span];
                for (rowid, i) in indices {
                    self.by_rowid[(rowid - first) as usize] = i;
                }
            }
            None => self.sparse = Some(indices.collect()),
        }
    }

    fn get(&self, rowid: i64) -> Option<&str> {
        let i = match &self.sparse {
            Some(map) => *map.get(&rowid)?,
            None => {
                let slot = usize::try_from(rowid.checked_sub(self.first)?).ok()?;
                *self.by_rowid.get(slot)?
            }
        } as usize;
        let end = self.users.get(i)?.1;
        let start = if i == 0 { 0 } else { self.users[i - 1].1 };
        Some(&self.text[start..end])
    }
}

/// The next row of a result being streamed.
async fn next_row(
    rows: &mut std::pin::Pin<&mut tokio_postgres::RowStream>,
) -> Option<Result<Row, tokio_postgres::Error>> {
    use futures_core::Stream;
    std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await
}

/// Streams the faces of `engine` for an index, a batch at a time, into `into`; counts the
/// faces left out (another model, or no descriptor). Stops when `into` is closed.
///
/// Users and faces are read apart, in one snapshot, and joined here: joining a million faces
/// with their users took PostgreSQL as long again as reading them (2.0 s against 1.0 s here).
async fn read_sealed_faces(
    conn: &tokio_postgres::Client,
    engine: &str,
    model: &str,
    into: tokio::sync::mpsc::Sender<FaceBatch>,
) -> Result<u64, StoreError> {
    let failed = backend("reading faces");
    conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(&failed)?;
    let users = conn
        .query_raw("SELECT id, user_id FROM users", std::iter::empty::<&str>())
        .await
        .map_err(&failed)?;
    let mut users = std::pin::pin!(users);
    let mut names = UserNames::default();
    while let Some(row) = next_row(&mut users).await {
        let row = row.map_err(&failed)?;
        names.push(
            row.try_get(0).map_err(&failed)?,
            row.try_get(1).map_err(&failed)?,
        );
    }
    names.index();
    let faces = conn
        .query_raw(
            "SELECT face_id, user_rowid, CASE WHEN model = $2 THEN descriptor END
             FROM faces WHERE engine = $1",
            [engine, model],
        )
        .await
        .map_err(&failed)?;
    let mut faces = std::pin::pin!(faces);
    let mut left_out = 0;
    let mut unowned = 0u64;
    let mut batch = FaceBatch::with_capacity(LOAD_BATCH);
    // The snapshot ends with the connection, which serves this read alone: no COMMIT owed.
    while let Some(row) = next_row(&mut faces).await {
        let row = row.map_err(&failed)?;
        // Borrowed from the row, copied into the batch's buffers: nothing allocated per face.
        let Some(sealed) = row.try_get::<_, Option<&[u8]>>(2).map_err(&failed)? else {
            left_out += 1;
            continue;
        };
        let Some(owner) = names.get(row.try_get(1).map_err(&failed)?) else {
            // Not possible in one snapshot (the user's row is the face's foreign key).
            unowned += 1;
            continue;
        };
        batch.push_sealed(row.try_get(0).map_err(&failed)?, owner, sealed);
        if batch.len() == LOAD_BATCH {
            let full = std::mem::replace(&mut batch, FaceBatch::with_capacity(LOAD_BATCH));
            if into.send(full).await.is_err() {
                return Ok(left_out);
            }
        }
    }
    if !batch.is_empty() {
        let _ = into.send(batch).await;
    }
    if unowned > 0 {
        tracing::warn!(faces = unowned, "faces without a user were not loaded");
    }
    Ok(left_out)
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn add_face(&self, owner: FaceOwner, face: NewFace) -> Result<User, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(backend("adding a face"))?;
        let now = Timestamp::now().unix_millis();
        let (generation, user_id) = match &owner {
            FaceOwner::New(user) => {
                // The unique user id settles a race between two servers: one insert wins.
                let inserted = tx
                    .query_opt(
                        "INSERT INTO users (user_id, full_name, email, created_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING RETURNING id",
                        &[
                            &user.user_id.as_str(),
                            &user.full_name.as_ref().map(|n| n.as_str()),
                            &user.email.as_ref().map(|e| e.as_str()),
                            &now,
                        ],
                    )
                    .await
                    .map_err(backend("adding a user"))?;
                match inserted {
                    Some(row) => (row.get::<_, i64>(0), user.user_id.clone()),
                    None => return Err(StoreError::UserExists),
                }
            }
            FaceOwner::Existing {
                user_id,
                generation,
            } => {
                // Locked, so a deletion cannot slip between the check and the insert.
                let found = tx
                    .query_opt(
                        "SELECT id FROM users WHERE user_id = $1 FOR UPDATE",
                        &[&user_id.as_str()],
                    )
                    .await
                    .map_err(backend("adding a face"))?;
                match found {
                    Some(row) if row.get::<_, i64>(0) == *generation => {
                        (*generation, user_id.clone())
                    }
                    _ => return Err(StoreError::UserNotFound),
                }
            }
        };
        insert_face(&tx, &self.vault, &face, generation, now).await?;
        let user = find_user(&tx, user_id.as_str())
            .await?
            .ok_or(StoreError::UserNotFound)?;
        tx.commit().await.map_err(backend("adding a face"))?;
        Ok(user)
    }

    async fn replace_face(&self, old_face_id: &str, face: NewFace) -> Result<bool, StoreError> {
        let failed = backend("replacing a face");
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(&failed)?;
        // Locked, so a deletion of the user cannot slip between the read and the insert.
        let Some(old) = tx
            .query_opt(
                "SELECT user_rowid, engine, created_at FROM faces WHERE face_id = $1 FOR UPDATE",
                &[&old_face_id],
            )
            .await
            .map_err(&failed)?
        else {
            return Ok(false);
        };
        let (user_rowid, old_engine, created_at): (i64, String, i64) =
            (old.get(0), old.get(1), old.get(2));
        tx.execute(
            "INSERT INTO pending_engine_deletions (face_id, engine, queued_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (face_id) DO UPDATE SET engine = $2, queued_at = $3",
            &[&old_face_id, &old_engine, &Timestamp::now().unix_millis()],
        )
        .await
        .map_err(backend("queueing engine deletions"))?;
        tx.execute("DELETE FROM faces WHERE face_id = $1", &[&old_face_id])
            .await
            .map_err(&failed)?;
        insert_face(&tx, &self.vault, &face, user_rowid, created_at).await?;
        tx.commit().await.map_err(&failed)?;
        Ok(true)
    }

    async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<User, StoreError> {
        let conn = self.conn().await?;
        let changed = conn
            .execute(
                "UPDATE users SET is_admin = $2 WHERE user_id = $1",
                &[&user_id.as_str(), &admin],
            )
            .await
            .map_err(backend("changing a role"))?;
        if changed == 0 {
            return Err(StoreError::UserNotFound);
        }
        find_user(&conn, user_id.as_str())
            .await?
            .ok_or(StoreError::UserNotFound)
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<User>, StoreError> {
        find_user(&self.conn().await?, user_id.as_str()).await
    }

    async fn list_users(&self, page: Page) -> Result<Vec<User>, StoreError> {
        let after = page.after.as_ref().map(|u| u.as_str().to_owned());
        let limit = i64::from(page.limit);
        self.conn()
            .await?
            .query(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users u
                     WHERE $1::TEXT IS NULL OR u.user_id > $1
                     ORDER BY u.user_id LIMIT $2"
                ),
                &[&after, &limit],
            )
            .await
            .map_err(backend("listing users"))?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        self.conn()
            .await?
            .query_one("SELECT COUNT(*) FROM users", &[])
            .await
            .map(|row| row.get::<_, i64>(0) as u64)
            .map_err(backend("counting users"))
    }

    async fn count_faces(&self, engine: &str) -> Result<u64, StoreError> {
        self.conn()
            .await?
            .query_one("SELECT COUNT(*) FROM faces WHERE engine = $1", &[&engine])
            .await
            .map(|row| row.get::<_, i64>(0) as u64)
            .map_err(backend("counting faces"))
    }

    async fn faces(&self, face_ids: &[String]) -> Result<Vec<FaceRecord>, StoreError> {
        if face_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = face_ids.to_vec();
        query_faces(
            &self.conn().await?,
            &self.vault,
            "f.face_id = ANY($1)",
            &[&ids],
        )
        .await
    }

    async fn faces_for_engine(&self, engine: &str) -> Result<Vec<FaceRecord>, StoreError> {
        query_faces(
            &self.conn().await?,
            &self.vault,
            "f.engine = $1",
            &[&engine],
        )
        .await
    }

    async fn send_enrolled_faces(
        &self,
        engine: &str,
        model: &str,
        into: FaceBatches,
    ) -> Result<FacesSent, StoreError> {
        // A connection of its own, driven in this very task: each batch of rows it receives
        // wakes the reader without a switch to another thread (pooled connections are driven
        // by a task of their own, and a million faces arrive in tens of thousands of reads).
        let failed = backend("connecting to PostgreSQL");
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(&failed)?;
        let reading = async {
            // For this connection alone: JIT compiling costs more than it saves on a plain
            // scan, and parallel workers would only add a copy of every row while competing
            // with this server for its cores.
            client
                .batch_execute("SET jit = off; SET max_parallel_workers_per_gather = 0")
                .await
                .map_err(backend("reading faces"))?;
            read_and_unseal(self.vault.clone(), into, |sealed| {
                read_sealed_faces(&client, engine, model, sealed)
            })
            .await
        };
        tokio::select! {
            read = reading => read,
            ended = connection => Err(match ended {
                Err(e) => failed(e),
                Ok(()) => StoreError::Corrupt("PostgreSQL closed the connection mid-read".into()),
            }),
        }
    }

    async fn delete_user(&self, user_id: &UserId) -> Result<Vec<FaceRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(backend("deleting a user"))?;
        let generation: i64 = tx
            .query_opt(
                "SELECT id FROM users WHERE user_id = $1 FOR UPDATE",
                &[&user_id.as_str()],
            )
            .await
            .map_err(backend("deleting a user"))?
            .ok_or(StoreError::UserNotFound)?
            .get(0);
        let faces = query_faces(&tx, &self.vault, "u.id = $1", &[&generation]).await?;
        let now = Timestamp::now().unix_millis();
        for face in &faces {
            tx.execute(
                "INSERT INTO pending_engine_deletions (face_id, engine, queued_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (face_id) DO UPDATE SET engine = $2, queued_at = $3",
                &[&face.face_id, &face.engine, &now],
            )
            .await
            .map_err(backend("queueing engine deletions"))?;
        }
        tx.execute("DELETE FROM users WHERE id = $1", &[&generation])
            .await
            .map_err(backend("deleting a user"))?;
        tx.commit().await.map_err(backend("deleting a user"))?;
        Ok(faces)
    }

    async fn face_log_position(&self) -> Result<i64, StoreError> {
        self.conn()
            .await?
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM face_changes", &[])
            .await
            .map(|row| row.get(0))
            .map_err(backend("reading the face change log"))
    }

    async fn face_changes_since(
        &self,
        engine: &str,
        after: i64,
    ) -> Result<Option<FaceChanges>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend("reading the face change log"))?;
        let row = tx
            .query_one(
                "SELECT MIN(seq), COALESCE(MAX(seq), 0) FROM face_changes",
                &[],
            )
            .await
            .map_err(backend("reading the face change log"))?;
        let (oldest, through): (Option<i64>, i64) = (row.get(0), row.get(1));
        if oldest.is_some_and(|oldest| after < oldest - 1) {
            return Ok(None);
        }
        let logged: Vec<(String, bool)> = tx
            .query(
                "SELECT face_id, added FROM face_changes WHERE seq > $1 AND engine = $2
                 ORDER BY seq",
                &[&after, &engine],
            )
            .await
            .map_err(backend("reading the face change log"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let added: Vec<String> = logged
            .iter()
            .filter(|(_, a)| *a)
            .map(|(f, _)| f.clone())
            .collect();
        let present = if added.is_empty() {
            Vec::new()
        } else {
            query_faces(&tx, &self.vault, "f.face_id = ANY($1)", &[&added]).await?
        };
        Ok(Some(FaceChanges {
            changes: changes_in_order(logged, present),
            through,
        }))
    }

    async fn pending_engine_deletions(&self, engine: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .conn()
            .await?
            .query(
                "SELECT face_id FROM pending_engine_deletions WHERE engine = $1",
                &[&engine],
            )
            .await
            .map_err(backend("reading the deletion queue"))?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    async fn clear_pending_engine_deletions(&self, face_ids: &[String]) -> Result<(), StoreError> {
        let ids = face_ids.to_vec();
        self.conn()
            .await?
            .execute(
                "DELETE FROM pending_engine_deletions WHERE face_id = ANY($1)",
                &[&ids],
            )
            .await
            .map(|_| ())
            .map_err(backend("clearing the deletion queue"))
    }

    async fn reference_photo(&self, face_id: &str) -> Result<Option<ReferencePhoto>, StoreError> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT format, photo FROM reference_photos WHERE face_id = $1",
                &[&face_id],
            )
            .await
            .map_err(backend("reading a reference photo"))?;
        row.map(|row| {
            let format: String = row.get(0);
            Ok(ReferencePhoto {
                format: Format::from_extension(&format)
                    .ok_or_else(|| StoreError::Corrupt(format!("photo format {format:?}")))?,
                bytes: self.vault.open(face_id, &row.get::<_, Vec<u8>>(1))?,
            })
        })
        .transpose()
    }

    async fn attach_photo(&self, face_id: &str, photo: ReferencePhoto) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(backend("attaching a reference photo"))?;
        insert_photo(&tx, &self.vault, face_id, &photo).await?;
        tx.execute(
            "UPDATE faces SET reference_path = NULL WHERE face_id = $1",
            &[&face_id],
        )
        .await
        .map_err(backend("attaching a reference photo"))?;
        tx.commit()
            .await
            .map_err(backend("attaching a reference photo"))
    }
}

#[cfg(test)]
mod tests {
    use super::UserNames;

    fn names(users: &[(i64, &str)]) -> UserNames {
        let mut names = UserNames::default();
        for (rowid, user_id) in users {
            names.push(*rowid, user_id);
        }
        names.index();
        names
    }

    #[test]
    fn owners_are_found_by_row_id_dense_or_sparse() {
        let dense = names(&[(7, "carol"), (5, "alice"), (6, "bob")]);
        assert!(dense.sparse.is_none());
        assert_eq!(
            [4, 5, 6, 7, 8].map(|r| dense.get(r)),
            [None, Some("alice"), Some("bob"), Some("carol"), None]
        );
        // Most users deleted since: ids far apart are looked up by hash instead.
        let sparse = names(&[(1, "first"), (1_000_000_000, "last")]);
        assert!(sparse.sparse.is_some());
        assert_eq!(sparse.get(1_000_000_000), Some("last"));
        assert_eq!(sparse.get(1), Some("first"));
        assert_eq!(sparse.get(2), None);
        assert_eq!(names(&[]).get(0), None);
    }
}
