//! Face Lock: face authentication that issues signed tokens.
//!
//! The core ([`service::FaceLock`]) speaks the domain: users, faces, sessions. [`routes`] is the
//! HTTP edge: [`app`] builds the whole application from an [`AppState`], and it is the only
//! place that knows axum. [`build_state`] assembles the state from [`config::Settings`];
//! [`serve`] runs it on a listener until a shutdown signal. The binary in `main.rs` only parses
//! the command line and calls these, so tests drive the same code.

pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod fair;
pub mod files;
pub mod images;
pub mod import;
pub mod legacy_photos;
pub mod liveness;
pub mod metrics;
pub mod net;
pub mod oidc;
pub mod rate_limit;
pub mod routes;
pub mod secret;
pub mod service;
pub mod store;
pub mod tally;
pub mod telemetry;
pub mod tokens;

use std::{future::Future, path::PathBuf, sync::Arc};

pub use routes::{app, openapi, AppState};
pub use telemetry::error_chain;

use crate::{
    config::{EngineKind, Settings},
    engine::{
        local::LocalEngine,
        rekognition::{ConnectError, RekognitionEngine},
        FaceEngine,
    },
    metrics::Metrics,
    rate_limit::{RateLimiter, RequestLimit},
    service::FaceLock,
    store::{
        postgres::PostgresStore,
        sqlite::SqliteStore,
        vault::{MasterKeySource, VaultError},
        MasterKey, Store, StoreError,
    },
    tokens::{TokenError, TokenService},
};

/// Why the server could not start; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data folder {} (FACELOCK_DATA_DIR)", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {location}")]
    Database {
        /// The SQLite file, or PostgreSQL (never the URL: it may hold a password).
        location: String,
        #[source]
        source: StoreError,
    },
    #[error("loading the face models from {}; delete the folder to fetch them again", dir.display())]
    Models {
        dir: PathBuf,
        #[source]
        source: facelock_engine::ModelError,
    },
    #[error("the rekognition engine cannot be configured")]
    Rekognition(#[from] ConnectError),
    #[error("starting the {engine} engine")]
    Engine {
        engine: &'static str,
        #[source]
        source: service::Error,
    },
    #[error("setting up the token issuer")]
    Tokens(#[from] TokenError),
    #[error("a start-up task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Opens the store, starts the engine and loads the signing keys.
pub async fn build_state(settings: Settings) -> Result<AppState, StartError> {
    let facelock = Arc::new(build_facelock(&settings).await?);
    let per_minute = settings.server.rate_limit_per_minute;
    let store = facelock.store().clone();
    if store.is_shared() && settings.tokens.issuer.is_none() {
        // Tried as an operator would: two replicas on one database, no issuer set, and a
        // token from one was refused by the other (each named its own address as issuer).
        tracing::warn!(
            issuer = %settings.issuer(),
            "FACELOCK_ISSUER is not set: tokens name this server's own address as their issuer, \
             so other replicas on the same database refuse them; set FACELOCK_ISSUER to the \
             public URL on every replica"
        );
    }
    let limiter = Arc::new(if store.is_shared() {
        RequestLimit::Shared {
            per_minute,
            counters: store,
        }
    } else {
        RequestLimit::Local(RateLimiter::new(per_minute))
    });
    Ok(AppState {
        facelock,
        limiter,
        in_flight: rate_limit::InFlight::new(settings.server.max_face_requests_per_address),
        settings: Arc::new(settings),
    })
}

/// The application core on the configured store and engine.
pub async fn build_facelock(settings: &Settings) -> Result<FaceLock, StartError> {
    announce_engine(&settings.engine);
    let data_dir = &settings.storage.data_dir;
    let store = open_store(settings).await?;
    let metrics = Arc::new(Metrics::new());
    let engine: Arc<dyn FaceEngine> = match settings.engine.kind {
        EngineKind::Local => {
            let dir = settings.engine.models_dir.clone();
            let model = settings.engine.face_model;
            let metrics = metrics.clone();
            let engine = tokio::task::spawn_blocking(move || {
                LocalEngine::load(&dir, model, metrics)
                    .map_err(|source| StartError::Models { dir, source })
            })
            .await??;
            Arc::new(engine)
        }
        EngineKind::Rekognition => {
            let settings = &settings.engine.rekognition;
            Arc::new(RekognitionEngine::connect(settings, metrics.clone()).await?)
        }
    };
    let hmac_secret = match (
        &settings.tokens.secret_key,
        settings.tokens.algorithm.is_hmac(),
    ) {
        (_, false) => None,
        (Some(secret), true) => Some(secret.clone()),
        (None, true) => {
            Some(tokens::secret::load_or_generate_secret(data_dir).map_err(TokenError::from)?)
        }
    };
    let tokens = TokenService::new(
        &settings.tokens,
        settings.issuer(),
        store.clone(),
        store.clone(),
        hmac_secret,
    )
    .await?;
    let engine_name = engine.name();
    let facelock = FaceLock::new(settings, engine, store, tokens, metrics);
    facelock
        .start()
        .await
        .map_err(|source| StartError::Engine {
            engine: engine_name,
            source,
        })?;
    Ok(facelock)
}

/// Says which engine runs and why; loudly when the environment looks like the original
/// server's (AWS settings, no `FACELOCK_ENGINE`), whose users are enrolled in Rekognition and
/// would all get `NO_MATCH` from the embedded engine.
fn announce_engine(engine: &config::EngineSettings) {
    let name = match engine.kind {
        EngineKind::Local => "local (embedded)",
        EngineKind::Rekognition => "rekognition (AWS)",
    };
    match &engine.chosen_by {
        config::EngineChoice::Configured => {
            tracing::info!("face engine: {name}, as FACELOCK_ENGINE says")
        }
        config::EngineChoice::Default { aws_hints } if aws_hints.is_empty() => tracing::info!(
            "face engine: {name}, the default (FACELOCK_ENGINE=rekognition selects AWS Rekognition)"
        ),
        config::EngineChoice::Default { aws_hints } => tracing::warn!(
            "face engine: {name}, the default, because FACELOCK_ENGINE is not set, although {} \
             set. Users enrolled in Rekognition (by the original server) are not in the embedded \
             engine: every one of them would get NO_MATCH. To keep serving them set \
             FACELOCK_ENGINE=rekognition; to move them to the embedded engine run `facelock \
             import <reference_faces folder>`; to silence this, set FACELOCK_ENGINE=local",
            aws_hints.join(", ") + if aws_hints.len() == 1 { " is" } else { " are" }
        ),
    }
    if engine.kind == EngineKind::Local {
        tracing::info!("local engine kernels: {}", facelock_engine::cpu::summary());
    }
}

/// Users' records, roles and the audit trail on the configured store, without the face
/// engine: for the operator's commands that need nothing more.
pub async fn open_accounts(settings: &Settings) -> Result<service::Accounts, StartError> {
    let store = open_store(settings).await?;
    let policy = service::policy::Policy::from_settings(settings);
    // Nothing serves these figures: the command's own registry is dropped with it.
    Ok(service::Accounts::new(
        store,
        policy,
        Arc::new(Metrics::new()),
    ))
}

/// The configured store (the SQLite file, or PostgreSQL with `FACELOCK_DATABASE_URL`),
/// migrated, unsealed with the master key and ready.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    let storage = &settings.storage;
    files::create_private_dir(&storage.data_dir).map_err(|e| StartError::DataDir {
        path: storage.data_dir.clone(),
        source: e.source,
    })?;
    let source = storage.master_key_source();
    if let Some(url) = &storage.database_url {
        let opened = match MasterKey::load(&source) {
            Ok(master) => PostgresStore::open(url.expose(), &master).await,
            Err(e) => Err(e.into()),
        };
        return opened
            .map(|store| Arc::new(store) as Arc<dyn Store>)
            .map_err(|source| StartError::Database {
                location: "PostgreSQL (FACELOCK_DATABASE_URL); servers sharing it need the \
                           same FACELOCK_MASTER_KEY"
                    .into(),
                source,
            });
    }
    let path = &storage.database_path;
    let opened = MasterKey::load(&source)
        .map_err(StoreError::from)
        .and_then(|master| SqliteStore::open(path, &master));
    let opened = match (opened, &source) {
        // A master key rotation that stopped after the store took the new key and before the
        // key file was replaced: the new key waits beside the old one.
        (Err(StoreError::Vault(VaultError::WrongMasterKey)), MasterKeySource::File(file)) => {
            finish_master_rotation(file, path)
        }
        (opened, _) => opened,
    };
    opened
        .map(|store| Arc::new(store) as Arc<dyn Store>)
        .map_err(|source| StartError::Database {
            location: path.display().to_string(),
            source,
        })
}

/// The file a master key rotation writes the new key to before the store takes it.
pub fn pending_master_key_file(key_file: &std::path::Path) -> PathBuf {
    key_file.with_extension("key.new")
}

fn finish_master_rotation(
    key_file: &std::path::Path,
    database: &std::path::Path,
) -> Result<SqliteStore, StoreError> {
    let pending = pending_master_key_file(key_file);
    let text = std::fs::read_to_string(&pending).map_err(|_| VaultError::WrongMasterKey)?;
    let new = MasterKey::parse(&text)?;
    let store = SqliteStore::open(database, &new)?;
    std::fs::rename(&pending, key_file)
        .map_err(|e| VaultError::from(files::FileError::new("replacing", key_file, e)))?;
    tracing::warn!(key = %key_file.display(), "finished an interrupted master key rotation");
    Ok(store)
}

/// Serves `state` on `listener` until `shutdown` completes, with background upkeep beside
/// it; in-flight requests are finished, and upkeep stops between two of its steps.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_upkeep, stopped) = tokio::sync::oneshot::channel::<()>();
    let upkeep = tokio::spawn(service::upkeep::run(state.facelock.clone(), async {
        let _ = stopped.await;
    }));
    let server = &state.settings.server;
    let limits = routes::listener::ConnectionLimits::new(
        server.header_timeout,
        server.max_connections,
        server.max_connections_per_address,
        server.trusted_proxies.clone(),
    );
    let result = routes::listener::serve(listener, app(state), limits, shutdown).await;
    drop(stop_upkeep);
    let _ = upkeep.await;
    result
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
