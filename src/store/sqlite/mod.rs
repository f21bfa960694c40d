//! SQLite store: one file in the data folder, WAL mode, migrations embedded in the binary and
//! applied at start-up. rusqlite is synchronous, so every call runs on the blocking pool.
//! One file per capability: `users.rs`, `keys.rs`, `tokens.rs`.

mod audit;
mod challenges;
mod clients;
mod counters;
mod grants;
mod keys;
mod lockouts;
mod tokens;
mod users;

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{MasterKey, Store, StoreError, Vault};
use crate::{clock::Timestamp, domain::UserId};

/// Embedded migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_tokens.sql"),
    include_str!("migrations/0003_milliseconds.sql"),
    include_str!("migrations/0004_face_model.sql"),
    include_str!("migrations/0005_lockouts_audit.sql"),
    include_str!("migrations/0006_sealed_photos.sql"),
    include_str!("migrations/0007_admin_role.sql"),
    include_str!("migrations/0008_request_counters.sql"),
    include_str!("migrations/0009_face_changes.sql"),
    include_str!("migrations/0010_address_failures.sql"),
    include_str!("migrations/0011_plaintext_sealed.sql"),
    include_str!("migrations/0012_liveness_challenges.sql"),
    include_str!("migrations/0013_oidc_clients.sql"),
    include_str!("migrations/0014_oidc_grants.sql"),
];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    vault: Arc<Vault>,
    /// The database's folder, whose free space `ping` reports.
    folder: std::path::PathBuf,
}

/// Below this much free space in the database's folder the store reports itself full (and
/// `/health` degraded) before a write fails: a registration takes up to a few hundred kB.
const MIN_FREE_BYTES: u64 = 8 << 20;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date, opens
    /// its data key with `master` and seals whatever an older server left in plaintext.
    pub fn open(path: &Path, master: &MasterKey) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::backend("creating the database folder", e))?;
        }
        let mut conn = Connection::open(path).map_err(backend("opening the database"))?;
        // The database holds face descriptors and signing keys: owner only.
        restrict_permissions(path);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend("configuring the connection"))?;
        migrate(&mut conn)?;
        let vault = open_vault(&mut conn, master)?;
        seal_plaintext(&mut conn, &vault)?;
        let folder = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            vault: Arc::new(vault),
            folder,
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::backend("running a database task", e))?
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
        .map_err(backend("reading the schema version"))? as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database schema (version {applied}) is newer than this server knows ({}); \
             upgrade the server",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(backend("migrating"))?;
        tx.execute_batch(sql).map_err(backend("migrating"))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(backend("migrating"))?;
        tx.commit().map_err(backend("migrating"))?;
        tracing::info!(migration = index + 1, "applied database migration");
    }
    Ok(())
}

/// The store's data key, created and sealed under `master` on first open.
fn open_vault(conn: &mut Connection, master: &MasterKey) -> Result<Vault, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend("opening the vault"))?;
    let stored: Option<Vec<u8>> = tx
        .query_row("SELECT data_key FROM vault WHERE id = 1", [], |r| r.get(0))
        .optional()
        .map_err(backend("opening the vault"))?;
    let vault = match stored {
        Some(sealed) => Vault::open_with(master, &sealed)?,
        None => {
            let (vault, sealed) = Vault::create(master)?;
            tx.execute("INSERT INTO vault (id, data_key) VALUES (1, ?1)", [sealed])
                .map_err(backend("opening the vault"))?;
            vault
        }
    };
    tx.commit().map_err(backend("opening the vault"))?;
    Ok(vault)
}

/// Seals descriptors and signing keys written in plaintext by a server from before encryption
/// at rest, in one transaction, which also records that it was done: later starts skip it
/// (every write since seals its values).
fn seal_plaintext(conn: &mut Connection, vault: &Vault) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend("sealing plaintext"))?;
    let done: bool = tx
        .query_row("SELECT plaintext_sealed FROM vault WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(backend("sealing plaintext"))?;
    if done {
        return Ok(());
    }
    let mut sealed = 0usize;
    for (table, id_column, value_column) in [
        ("faces", "face_id", "descriptor"),
        ("signing_keys", "kid", "private_der"),
    ] {
        // Only the plaintext rows leave the database: a sealed store costs one index-free
        // scan in SQLite at start, not a copy of every descriptor.
        let rows: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {id_column}, {value_column} FROM {table}
                     WHERE {value_column} IS NOT NULL AND substr({value_column}, 1, 4) != ?1"
                ))
                .map_err(backend("sealing plaintext"))?;
            let rows = stmt
                .query_map([&crate::store::vault::MAGIC[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend("sealing plaintext"))?;
            rows.collect::<Result<_, _>>()
                .map_err(backend("sealing plaintext"))?
        };
        for (id, value) in rows {
            tx.execute(
                &format!("UPDATE {table} SET {value_column} = ?2 WHERE {id_column} = ?1"),
                params![id, vault.seal(&id, &value)?],
            )
            .map_err(backend("sealing plaintext"))?;
            sealed += 1;
        }
    }
    tx.execute("UPDATE vault SET plaintext_sealed = 1 WHERE id = 1", [])
        .map_err(backend("sealing plaintext"))?;
    tx.commit().map_err(backend("sealing plaintext"))?;
    if sealed > 0 {
        tracing::info!(values = sealed, "sealed plaintext descriptors and keys");
    }
    Ok(())
}

/// Wraps a rusqlite error with what was being done.
fn backend(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(context, e)
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

/// Ids were validated before they were stored; a row that no longer parses is corruption.
fn parse_stored_id(raw: &str) -> rusqlite::Result<UserId> {
    UserId::parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(backend("ping"))
        })
        .await?;
        match crate::files::free_bytes(&self.folder) {
            Some(free) if free < MIN_FREE_BYTES => Err(StoreError::Full {
                context: "checking the database folder's free space",
                source: format!("{free} bytes left in {}", self.folder.display()).into(),
            }),
            _ => Ok(()),
        }
    }

    async fn outside_change_marker(&self) -> Result<i64, StoreError> {
        // SQLite bumps data_version when another connection commits; our own writes do not.
        self.run(|conn| {
            conn.query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(backend("reading data_version"))
        })
        .await
    }

    async fn purge_change_log(&self, before: Timestamp) -> Result<(), StoreError> {
        // The newest entry stays: it is the position servers compare against.
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM face_changes WHERE at < ?1
                     AND seq < (SELECT COALESCE(MAX(seq), 0) FROM face_changes)",
                [before.unix_millis()],
            )
            .map(|_| ())
            .map_err(backend("purging the face change log"))
        })
        .await
    }

    async fn reseal_data_key(&self, old: &MasterKey, new: &MasterKey) -> Result<(), StoreError> {
        let (old, new) = (old.clone(), new.clone());
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend("re-sealing the data key"))?;
            let sealed: Vec<u8> = tx
                .query_row("SELECT data_key FROM vault WHERE id = 1", [], |r| r.get(0))
                .map_err(backend("re-sealing the data key"))?;
            let resealed = Vault::reseal_key(&old, &new, &sealed)?;
            tx.execute("UPDATE vault SET data_key = ?1 WHERE id = 1", [resealed])
                .map_err(backend("re-sealing the data key"))?;
            tx.commit().map_err(backend("re-sealing the data key"))
        })
        .await
    }
}

/// A master key for tests of the store.
#[cfg(test)]
pub(crate) fn test_key() -> MasterKey {
    MasterKey::parse(&"A".repeat(43)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(SqliteStore::open(&path, &test_key()).unwrap());
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        drop(conn);
        SqliteStore::open(&path, &test_key()).unwrap();
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            SqliteStore::open(&path, &other),
            Err(StoreError::Vault(crate::store::VaultError::WrongMasterKey))
        ));
    }

    #[test]
    fn the_model_migration_names_the_local_model() {
        assert!(MIGRATIONS[3].contains(facelock_engine::FaceModel::DlibResnet.id()));
    }

    #[test]
    fn a_version_two_database_is_migrated_to_milliseconds_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let mut conn = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", (i + 1) as i64)
                    .unwrap();
            }
            let tx = conn.transaction().unwrap();
            tx.execute_batch(
                "INSERT INTO users (user_id, created_at) VALUES ('alice', 1769860800123);
                 INSERT INTO faces (face_id, user_rowid, engine, descriptor, created_at)
                     VALUES ('f1', 1, 'local', x'0000803f', 1769860800123);
                 INSERT INTO signing_keys VALUES ('k', 'ES256', x'00', '{}', 1769860800, NULL);
                 INSERT INTO revoked_access_tokens VALUES ('j', 1769860900);",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path, &test_key()).unwrap();
        let conn = Connection::open(&path).unwrap();
        let (key_created, revoked_until, model, descriptor, der): (
            i64,
            i64,
            String,
            Vec<u8>,
            Vec<u8>,
        ) = conn
            .query_row(
                "SELECT (SELECT created_at FROM signing_keys), \
                        (SELECT expires_at FROM revoked_access_tokens), \
                        (SELECT model FROM faces), (SELECT descriptor FROM faces), \
                        (SELECT private_der FROM signing_keys)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(key_created, 1_769_860_800_000);
        assert_eq!(revoked_until, 1_769_860_900_000);
        assert_eq!(model, facelock_engine::FaceModel::DlibResnet.id());
        // The plaintext is sealed now, and still reads back as it was; later starts skip the
        // search for it.
        assert!(Vault::is_sealed(&descriptor) && Vault::is_sealed(&der));
        let done: bool = conn
            .query_row("SELECT plaintext_sealed FROM vault", [], |r| r.get(0))
            .unwrap();
        assert!(done);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use crate::store::{KeyStore, UserStore};
            let faces = store.faces(&["f1".into()]).await.unwrap();
            assert_eq!(faces[0].descriptor, Some(vec![1.0]));
            assert_eq!(store.signing_keys().await.unwrap()[0].private_der, [0]);
        });
    }
}
