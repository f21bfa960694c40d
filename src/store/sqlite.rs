//! SQLite store: one file in the data folder, WAL mode, migrations embedded in the binary and
//! applied at start-up. rusqlite is synchronous, so every call runs on the blocking pool.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    FaceOwner, FaceRecord, NewFace, NewRefreshToken, Page, RefreshRecord, RefreshUse, Store,
    StoreError, StoredKey, UserRecord,
};
use crate::domain::UserId;

/// Embedded migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_tokens.sql"),
];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(backend)?;
        // The database holds face descriptors and signing keys: owner only.
        restrict_permissions(path);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("database lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "could not restrict the database file to its owner");
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(backend)? as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database schema (version {applied}) is newer than this server knows ({}); \
             upgrade the server",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(migration = index + 1, "applied database migration");
    }
    Ok(())
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn encode_descriptor(d: &[f32]) -> Vec<u8> {
    d.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode_descriptor(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const USER_COLUMNS: &str = "u.id, u.user_id, u.full_name, u.email, u.created_at,
     (SELECT COUNT(*) FROM faces f WHERE f.user_rowid = u.id)";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let raw: String = row.get(1)?;
    Ok(UserRecord {
        rowid: row.get(0)?,
        user_id: parse_stored_id(&raw)?,
        full_name: row.get(2)?,
        email: row.get(3)?,
        created_at: row.get(4)?,
        face_count: row.get(5)?,
    })
}

const FACE_COLUMNS: &str =
    "f.face_id, u.user_id, f.engine, f.reference_path, f.descriptor, f.created_at";

fn face_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FaceRecord> {
    let raw: String = row.get(1)?;
    let descriptor: Option<Vec<u8>> = row.get(4)?;
    Ok(FaceRecord {
        face_id: row.get(0)?,
        user_id: parse_stored_id(&raw)?,
        engine: row.get(2)?,
        reference_path: row.get(3)?,
        descriptor: descriptor.as_deref().map(decode_descriptor),
        created_at: row.get(5)?,
    })
}

/// Ids were validated before they were stored; a row that no longer parses is corruption.
fn parse_stored_id(raw: &str) -> rusqlite::Result<UserId> {
    UserId::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn find_user(conn: &Connection, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = ?1"),
        [user_id],
        user_from_row,
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_face(&self, owner: FaceOwner, face: NewFace) -> Result<UserRecord, StoreError> {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let now = now_ms();
            let (rowid, user_id) = match &owner {
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
                    .map_err(backend)?;
                    (tx.last_insert_rowid(), user.user_id.clone())
                }
                FaceOwner::Existing { user_id, rowid } => {
                    match find_user(&tx, user_id.as_str())? {
                        Some(found) if found.rowid == *rowid => (*rowid, user_id.clone()),
                        _ => return Err(StoreError::UserNotFound),
                    }
                }
            };
            tx.execute(
                "INSERT INTO faces (face_id, user_rowid, engine, reference_path, descriptor, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    face.face_id,
                    rowid,
                    face.engine,
                    face.reference_path,
                    face.descriptor.as_deref().map(encode_descriptor),
                    now
                ],
            )
            .map_err(backend)?;
            let user = find_user(&tx, user_id.as_str())?.ok_or(StoreError::UserNotFound)?;
            tx.commit().map_err(backend)?;
            Ok(user)
        })
        .await
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let user_id = user_id.clone();
        self.run(move |conn| find_user(conn, user_id.as_str()))
            .await
    }

    async fn list_users(&self, page: Page) -> Result<Vec<UserRecord>, StoreError> {
        self.run(move |conn| {
            let after = page.after.as_ref().map(|u| u.as_str().to_owned());
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users u
                     WHERE ?1 IS NULL OR u.user_id > ?1
                     ORDER BY u.user_id LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![after, page.limit], user_from_row)
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        self.run(|conn| {
            conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }

    async fn face(&self, face_id: &str) -> Result<Option<FaceRecord>, StoreError> {
        let face_id = face_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {FACE_COLUMNS} FROM faces f JOIN users u ON u.id = f.user_rowid
                     WHERE f.face_id = ?1"
                ),
                [face_id],
                face_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn faces_for_engine(&self, engine: &str) -> Result<Vec<FaceRecord>, StoreError> {
        let engine = engine.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {FACE_COLUMNS} FROM faces f JOIN users u ON u.id = f.user_rowid
                     WHERE f.engine = ?1 ORDER BY f.created_at"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([engine], face_from_row).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn delete_user(&self, user_id: &UserId) -> Result<Vec<FaceRecord>, StoreError> {
        let user_id = user_id.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let user = find_user(&tx, user_id.as_str())?.ok_or(StoreError::UserNotFound)?;
            let faces: Vec<FaceRecord> = {
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT {FACE_COLUMNS} FROM faces f JOIN users u ON u.id = f.user_rowid
                         WHERE u.id = ?1"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map([user.rowid], face_from_row)
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            let now = now_ms();
            for face in &faces {
                tx.execute(
                    "INSERT OR REPLACE INTO pending_engine_deletions (face_id, engine, queued_at)
                     VALUES (?1, ?2, ?3)",
                    params![face.face_id, face.engine, now],
                )
                .map_err(backend)?;
            }
            tx.execute("DELETE FROM users WHERE id = ?1", [user.rowid])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(faces)
        })
        .await
    }

    async fn pending_engine_deletions(&self, engine: &str) -> Result<Vec<String>, StoreError> {
        let engine = engine.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare("SELECT face_id FROM pending_engine_deletions WHERE engine = ?1")
                .map_err(backend)?;
            let rows = stmt
                .query_map([engine], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn clear_pending_engine_deletions(&self, face_ids: &[String]) -> Result<(), StoreError> {
        let face_ids = face_ids.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            for id in &face_ids {
                tx.execute(
                    "DELETE FROM pending_engine_deletions WHERE face_id = ?1",
                    [id],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn outside_change_marker(&self) -> Result<i64, StoreError> {
        // SQLite bumps data_version when another connection commits; our own writes do not.
        self.run(|conn| {
            conn.query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    async fn add_signing_key(&self, key: StoredKey, now: i64) -> Result<(), StoreError> {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
                [now],
            )
            .map_err(backend)?;
            tx.execute(
                &format!(
                    "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)"
                ),
                params![
                    key.kid,
                    key.alg,
                    key.private_der,
                    key.public_jwk,
                    key.created_at
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([], key_from_row).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn drop_keys_retired_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
                [cutoff],
            )
            .map_err(backend)
        })
        .await
    }

    async fn add_refresh_token(&self, r: NewRefreshToken) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_rowid, audience,
                     created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    r.token_hash,
                    r.family_id,
                    r.user_rowid,
                    r.audience,
                    r.created_at,
                    r.expires_at
                ],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let hash = token_hash.to_owned();
        self.run(move |conn| find_refresh(conn, &hash)).await
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<RefreshUse, StoreError> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(record) = find_refresh(&tx, &hash)? else {
                return Ok(RefreshUse::Unknown);
            };
            let outcome = if record.used_at.is_some() || record.revoked_at.is_some() {
                revoke_family(&tx, &record.family_id, now)?;
                RefreshUse::Replayed(record)
            } else {
                tx.execute(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1",
                    params![hash, now],
                )
                .map_err(backend)?;
                RefreshUse::Fresh(record)
            };
            tx.commit().map_err(backend)?;
            Ok(outcome)
        })
        .await
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> Result<usize, StoreError> {
        let family = family_id.to_owned();
        self.run(move |conn| revoke_family(conn, &family, now))
            .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT 1 FROM revoked_access_tokens WHERE jti = ?1",
                [jti],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(backend)
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: i64) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM revoked_access_tokens WHERE expires_at < ?1",
                [now],
            )
            .map_err(backend)?;
            conn.execute("DELETE FROM refresh_tokens WHERE expires_at < ?1", [now])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

const KEY_COLUMNS: &str = "kid, alg, private_der, public_jwk, created_at, retired_at";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    Ok(StoredKey {
        kid: row.get(0)?,
        alg: row.get(1)?,
        private_der: row.get(2)?,
        public_jwk: row.get(3)?,
        created_at: row.get(4)?,
        retired_at: row.get(5)?,
    })
}

const REFRESH_COLUMNS: &str = "r.token_hash, r.family_id, r.user_rowid, u.user_id, r.audience,
     r.created_at, r.expires_at, r.used_at, r.revoked_at";

fn refresh_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshRecord> {
    let raw: String = row.get(3)?;
    Ok(RefreshRecord {
        token_hash: row.get(0)?,
        family_id: row.get(1)?,
        user_rowid: row.get(2)?,
        user_id: parse_stored_id(&raw)?,
        audience: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        used_at: row.get(7)?,
        revoked_at: row.get(8)?,
    })
}

fn find_refresh(conn: &Connection, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens r JOIN users u ON u.id = r.user_rowid
             WHERE r.token_hash = ?1"
        ),
        [hash],
        refresh_from_row,
    )
    .optional()
    .map_err(backend)
}

fn revoke_family(conn: &Connection, family: &str, now: i64) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![family, now],
    )
    .map_err(backend)
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
            reference_path: None,
            descriptor: Some(vec![0.5, -1.25]),
        }
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
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let alice = store.add_face(new_user("alice"), face("f1")).await.unwrap();
        assert_eq!(alice.face_count, 1);
        assert!(matches!(
            store.add_face(new_user("alice"), face("f2")).await,
            Err(StoreError::UserExists)
        ));
        let owner = FaceOwner::Existing {
            user_id: uid("alice"),
            rowid: alice.rowid,
        };
        assert_eq!(
            store.add_face(owner, face("f2")).await.unwrap().face_count,
            2
        );
        let stored = store.face("f1").await.unwrap().unwrap();
        assert_eq!(stored.descriptor, Some(vec![0.5, -1.25]));

        let deleted = store.delete_user(&uid("alice")).await.unwrap();
        assert_eq!(deleted.len(), 2);
        assert!(store.user(&uid("alice")).await.unwrap().is_none());
        assert!(store.face("f1").await.unwrap().is_none());
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

        // A re-created user gets a new row id, so faces bound to the old row are refused.
        let again = store.add_face(new_user("alice"), face("f3")).await.unwrap();
        assert_ne!(again.rowid, alice.rowid);
        let stale = FaceOwner::Existing {
            user_id: uid("alice"),
            rowid: alice.rowid,
        };
        assert!(matches!(
            store.add_face(stale, face("f4")).await,
            Err(StoreError::UserNotFound)
        ));
    }

    #[tokio::test]
    async fn keyset_pages_cover_every_user_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
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

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        drop(conn);
        SqliteStore::open(&path).unwrap();
    }
}
