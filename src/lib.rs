//! Face Lock: face authentication that issues signed tokens.
//!
//! [`app`] builds the whole HTTP application from an [`AppState`]; [`build_state`] assembles the
//! state from [`Settings`]; [`serve`] runs it on a listener until a shutdown signal. The binary
//! in `main.rs` only parses the command line and calls these, so tests drive the same code.

pub mod auth;
pub mod bench;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod images;
pub mod rate_limit;
pub mod references;
pub mod routes;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;

use std::{future::Future, sync::Arc, time::Duration};

pub use routes::{app, openapi};
pub use state::AppState;

use crate::{
    auth::{keys, TokenService},
    config::{EngineKind, Settings},
    engine::{local::LocalEngine, rekognition::RekognitionEngine, FaceEngine},
    service::FaceLock,
    store::{sqlite::SqliteStore, Store},
};

/// How often keys are reloaded and expired token records purged.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// Queued engine deletions are retried every this many maintenance ticks (five minutes).
const PENDING_DELETION_RETRY_TICKS: u32 = 10;

/// Opens the store, starts the engine and loads the signing key. Errors are sentences for the
/// operator, naming what to fix.
pub async fn build_state(settings: Settings) -> Result<AppState, String> {
    let settings = Arc::new(settings);
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        format!(
            "cannot create the data folder {} (FACELOCK_DATA_DIR): {e}",
            settings.data_dir.display()
        )
    })?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&settings.database_path).map_err(|e| {
            format!(
                "cannot open the database {}: {e}",
                settings.database_path.display()
            )
        })?);
    let engine: Arc<dyn FaceEngine> = match settings.engine {
        EngineKind::Local => {
            let dir = settings.models_dir.clone();
            let engine = tokio::task::spawn_blocking(move || LocalEngine::load(&dir))
                .await
                .map_err(|e| e.to_string())??;
            Arc::new(engine)
        }
        EngineKind::Rekognition => {
            Arc::new(RekognitionEngine::connect(&settings.rekognition).await?)
        }
    };
    let facelock = Arc::new(FaceLock::new(settings.clone(), engine, store));
    facelock.start().await?;

    let hmac_secret = match (&settings.secret_key, settings.algorithm.is_hmac()) {
        (_, false) => None,
        (Some(secret), true) => Some(secret.clone()),
        (None, true) => Some(keys::load_or_generate_secret(&settings.data_dir)?),
    };
    let tokens = Arc::new(
        TokenService::from_settings(&settings, facelock.store().clone(), hmac_secret).await?,
    );
    let limiter = Arc::new(rate_limit::RateLimiter::new(
        facelock.settings().engine_rate_per_minute,
    ));
    Ok(AppState {
        facelock,
        tokens,
        limiter,
    })
}

/// Serves `state` on `listener` until `shutdown` completes; in-flight requests are finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let facelock = state.facelock.clone();
    let tokens = state.tokens.clone();
    let retry = tokio::spawn(async move {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        tick.tick().await;
        let mut ticks = 0u32;
        loop {
            tick.tick().await;
            ticks += 1;
            tokens.maintain().await;
            facelock.sync_engine().await;
            if ticks % PENDING_DELETION_RETRY_TICKS == 0 {
                facelock.finish_pending_deletions().await;
            }
        }
    });
    let app = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    retry.abort();
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
