//! PostgreSQL store: the one database of several servers behind a load balancer. The schema is
//! embedded and applied at start under an advisory lock, so replicas starting together do not
//! race; changes to users, faces and keys are announced with NOTIFY, so every server sees them
//! at once. One file per capability, as for SQLite.

mod audit;
mod challenges;
mod clients;
mod counters;
mod grants;
mod keys;
mod lockouts;
mod tls;
mod tokens;
mod users;

use std::{future::poll_fn, sync::Arc, time::Duration};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::AsyncMessage;

use super::{MasterKey, Store, StoreError, Vault};
use crate::{clock::Timestamp, domain::UserId};

/// Embedded migrations, applied in order; `schema_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("0002_liveness_challenges.sql"),
    include_str!("0003_oidc_clients.sql"),
    include_str!("0004_oidc_grants.sql"),
];

/// An advisory lock key only Face Lock's migrations take ("facelock" in ASCII).
const MIGRATION_LOCK: i64 = 0x6661_6365_6c6f_636b;

/// The NOTIFY channel of changes other servers must see.
const CHANNEL: &str = "facelock_changes";

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    vault: Arc<Vault>,
    /// This process's name in the change log, so it can tell its own changes from others'.
    origin: Arc<str>,
    changes: tokio::sync::watch::Receiver<u64>,
    /// How to open a connection of its own (a start-up's read of every face).
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), brings the schema
    /// up to date, opens the data key with `master` and starts listening for other servers'
    /// changes.
    pub async fn open(url: &str, master: &MasterKey) -> Result<Self, StoreError> {
        let tls::Connection {
            mut config,
            tls: connector,
        } = tls::parse(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let origin: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        // Every connection names this process, for the change log's trigger.
        config.options(format!("-c facelock.origin={origin}"));
        let manager = Manager::from_config(
            config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::backend("creating the connection pool", e))?;
        let mut conn = connection(&pool).await?;
        let vault = migrate_and_open_vault(&mut conn, master).await?;
        drop(conn);
        let changes = listen_for_changes(config.clone(), connector.clone(), origin.clone());
        Ok(Self {
            pool,
            vault: Arc::new(vault),
            origin,
            changes,
            config,
            tls: connector,
        })
    }

    async fn conn(&self) -> Result<Object, StoreError> {
        connection(&self.pool).await
    }
}

async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::backend("connecting to PostgreSQL", e))
}

/// Applies the migrations not yet applied and opens (or creates) the data key, in one
/// transaction under an advisory lock.
async fn migrate_and_open_vault(
    conn: &mut Object,
    master: &MasterKey,
) -> Result<Vault, StoreError> {
    let tx = conn.transaction().await.map_err(backend("migrating"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend("migrating"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await
        .map_err(backend("migrating"))?;
    let applied: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        )
        .await
        .map_err(backend("reading the schema version"))?
        .get(0);
    let applied = applied as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database schema (version {applied}) is newer than this server knows ({}); \
             upgrade the server",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql).await.map_err(backend("migrating"))?;
        let version = (index + 1) as i32;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(backend("migrating"))?;
        tracing::info!(migration = index + 1, "applied database migration");
    }
    let stored = tx
        .query_opt("SELECT data_key FROM vault WHERE id = 1", &[])
        .await
        .map_err(backend("opening the vault"))?;
    let vault = match stored {
        Some(row) => Vault::open_with(master, &row.get::<_, Vec<u8>>(0))?,
        None => {
            let (vault, sealed) = Vault::create(master)?;
            tx.execute(
                "INSERT INTO vault (id, data_key) VALUES (1, $1)",
                &[&sealed],
            )
            .await
            .map_err(backend("opening the vault"))?;
            vault
        }
    };
    tx.commit().await.map_err(backend("migrating"))?;
    Ok(vault)
}

/// A connection that LISTENs for other servers' changes and counts them; reconnects after a
/// failure, counting one change then, since some may have been missed meanwhile.
fn listen_for_changes(
    config: tokio_postgres::Config,
    connector: tokio_postgres_rustls::MakeRustlsConnect,
    origin: Arc<str>,
) -> tokio::sync::watch::Receiver<u64> {
    let (tell, changes) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        let mut failures = 0u32;
        while !tell.is_closed() {
            match listen_once(&config, connector.clone(), &origin, &tell).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot listen for other servers' changes; retrying");
                }
            }
            tell.send_modify(|n| *n += 1);
            tokio::time::sleep(Duration::from_millis(500 << failures.min(6))).await;
        }
    });
    changes
}

/// Listens on one connection until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    connector: tokio_postgres_rustls::MakeRustlsConnect,
    origin: &str,
    tell: &tokio::sync::watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(connector).await?;
    let (forward, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        // A failed connection may answer every poll with its error at once: stop at the
        // first, or this loop would never yield and fill the channel without end.
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            let failed = message.is_err();
            if forward.send(message).is_err() || failed {
                break;
            }
        }
    });
    let listened = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    let result = match listened {
        Err(e) => Err(e),
        Ok(()) => loop {
            match messages.recv().await {
                Some(Ok(AsyncMessage::Notification(n))) if n.payload() != origin => {
                    tell.send_modify(|n| *n += 1);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            }
        },
    };
    driver.abort();
    result
}

/// Wraps a PostgreSQL error with what was being done.
fn backend(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::backend(context, e)
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

/// Ids were validated before they were stored; a row that no longer parses is corruption.
fn parse_stored_id(raw: &str) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|e| StoreError::Corrupt(format!("user id {raw:?}: {}", e.0)))
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .await?
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(backend("ping"))
    }

    async fn outside_change_marker(&self) -> Result<i64, StoreError> {
        let origin: &str = &self.origin;
        self.conn()
            .await?
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM change_log WHERE origin IS DISTINCT FROM $1",
                &[&origin],
            )
            .await
            .map(|row| row.get(0))
            .map_err(backend("reading the change log"))
    }

    fn change_feed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn reseal_data_key(&self, old: &MasterKey, new: &MasterKey) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(backend("re-sealing the data key"))?;
        let sealed: Vec<u8> = tx
            .query_one("SELECT data_key FROM vault WHERE id = 1 FOR UPDATE", &[])
            .await
            .map_err(backend("re-sealing the data key"))?
            .get(0);
        let resealed = Vault::reseal_key(old, new, &sealed)?;
        tx.execute("UPDATE vault SET data_key = $1 WHERE id = 1", &[&resealed])
            .await
            .map_err(backend("re-sealing the data key"))?;
        tx.commit()
            .await
            .map_err(backend("re-sealing the data key"))
    }

    async fn purge_change_log(&self, before: Timestamp) -> Result<(), StoreError> {
        // The newest entries stay: they are what the markers compare against.
        let conn = self.conn().await?;
        for table in ["change_log", "face_changes"] {
            conn.execute(
                &format!(
                    "DELETE FROM {table} WHERE at < $1
                         AND seq < (SELECT COALESCE(MAX(seq), 0) FROM {table})"
                ),
                &[&before.unix_millis()],
            )
            .await
            .map_err(backend("purging the change log"))?;
        }
        Ok(())
    }
}
