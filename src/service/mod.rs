//! The application core: register, log in, refresh, compare, list and delete, independent of
//! HTTP. Callers are plain values ([`Caller`], [`Actor`]); failures are [`Error`]. The part
//! that needs no engine (roles, deletion, the user list, the audit trail) is [`Accounts`];
//! background upkeep is [`upkeep`].
//!
//! Register and delete touch two places: the engine and the store. Register has the engine
//! enrol the face, then writes the user, face, sealed descriptor and sealed reference photo in
//! one transaction, and has the engine forget the face when that fails. Delete commits the
//! store first, together with a queue of faces the engine still has to forget; the queue is
//! worked off right away, again every five minutes and at every start, so a crash in between
//! never leaves a face that can log in without a user behind it (login also ignores engine
//! matches the store does not know).

mod accounts;
pub mod audit;
mod authorization;
mod enrolment;
mod error;
mod liveness;
mod login;
mod matching;
pub mod policy;
mod reindex;
pub mod upkeep;

use std::{sync::Arc, time::Duration};

pub use accounts::{Accounts, UserPage};
pub use audit::{AuditKind, Origin};
pub use authorization::{
    ClientCredentials, CodeExchange, EndSession, OAuthRefusal, OidcTokens, PendingLogin, UserInfo,
};
pub use enrolment::{Registered, Registration};
pub use error::Error;
pub use liveness::{ChallengeProblem, IssuedChallenge, LivenessProof, MAX_FRAME_PIXELS};
pub use login::{Comparison, Evidence, LoginRequest, Session, TokenPair};
pub use reindex::{ReindexOutcome, ReindexScope, ReindexedFace};

use self::policy::{LockoutRule, Policy};
use crate::{
    config::{RegistrationPolicy, Settings},
    domain::{Role, User, UserId},
    engine::{FaceEngine, Upload},
    images::{self, DecodeLimits},
    metrics::Metrics,
    rate_limit::{AddressDelay, FailureDelay},
    store::Store,
    tokens::{Claims, TokenService},
};

/// An authenticated caller: the user behind a valid bearer token, now.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub role: Role,
    pub claims: Claims,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The caller is `user_id` or an admin.
    pub fn may_act_for(&self, user_id: &UserId) -> bool {
        self.is_admin() || &self.user.user_id == user_id
    }
}

/// Who asks for an operation that changes users.
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    /// No bearer token.
    Anonymous,
    /// A caller with a valid token.
    Caller(&'a Caller),
    /// The operator at the server's command line.
    Operator,
}

impl Actor<'_> {
    fn is_admin(self) -> bool {
        match self {
            Actor::Anonymous => false,
            Actor::Caller(c) => c.is_admin(),
            Actor::Operator => true,
        }
    }

    fn may_act_for(self, user_id: &UserId) -> bool {
        match self {
            Actor::Anonymous => false,
            Actor::Caller(c) => c.may_act_for(user_id),
            Actor::Operator => true,
        }
    }
}

/// Whether a dependency answers, and why not.
#[derive(Debug)]
pub enum DependencyStatus {
    Up,
    /// Answers, but cannot do all its work: a store whose disk is full still reads.
    Degraded(String),
    Down(String),
}

/// The state of the service's dependencies, for `/health`.
pub struct Health {
    pub engine: DependencyStatus,
    pub store: DependencyStatus,
}

pub struct FaceLock {
    /// Users' records, roles and the audit trail: the part that needs no engine.
    accounts: Accounts,
    lockout: LockoutRule,
    /// Failures older than this no longer count towards a lockout.
    lockout_window: Duration,
    /// Per-address waits after failed 1:N logins (kept in this process).
    address_failures: AddressDelay,
    allow_duplicate_faces: bool,
    /// Single-photo logins are refused: only a passed liveness challenge logs in.
    require_liveness: bool,
    /// Who may enrol a new user id.
    registration: RegistrationPolicy,
    engine: Arc<dyn FaceEngine>,
    store: Arc<dyn Store>,
    tokens: TokenService,
    /// Where servers before 0.2 kept reference photos as files.
    legacy_photos: std::path::PathBuf,
    decode_limits: DecodeLimits,
    /// One decode per core at a time, the decodes of the client running the fewest first.
    decode_permits: Arc<crate::fair::FairPermits>,
    /// What background upkeep keeps between its rounds.
    upkeep: upkeep::UpkeepState,
    /// The application's metrics registry.
    metrics: Arc<Metrics>,
}

impl FaceLock {
    pub fn new(
        settings: &Settings,
        engine: Arc<dyn FaceEngine>,
        store: Arc<dyn Store>,
        tokens: TokenService,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            accounts: Accounts::new(
                store.clone(),
                Policy::from_settings(settings),
                metrics.clone(),
            ),
            lockout: LockoutRule {
                threshold: settings.lockout.threshold,
                first_lock: settings.lockout.first_lock,
                max_lock: settings.lockout.max_lock,
            },
            lockout_window: settings.lockout.window,
            address_failures: if store.is_shared() {
                AddressDelay::Shared {
                    free: settings.lockout.free_address_failures,
                    max: settings.lockout.max_lock,
                    store: store.clone(),
                }
            } else {
                AddressDelay::Local(FailureDelay::new(
                    settings.lockout.free_address_failures,
                    settings.lockout.max_lock,
                ))
            },
            allow_duplicate_faces: settings.engine.allow_duplicate_faces,
            require_liveness: settings.engine.require_liveness,
            registration: settings.engine.registration,
            engine,
            store,
            tokens,
            legacy_photos: settings.storage.reference_dir.clone(),
            decode_limits: DecodeLimits {
                max_pixels: settings.engine.max_image_pixels,
            },
            decode_permits: crate::fair::FairPermits::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            upkeep: upkeep::UpkeepState::new(settings.lockout.audit_retention),
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The registry `/metrics` renders.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The role `user` holds now.
    pub fn role_of(&self, user: &User) -> Role {
        self.accounts.role_of(user)
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// The model the engine describes faces with.
    pub fn engine_model(&self) -> &str {
        self.engine.model()
    }

    /// Starts the engine, loads its index from the store and finishes owed deletions.
    pub async fn start(&self) -> Result<(), Error> {
        self.engine.start().await?;
        self.move_legacy_photos().await?;
        self.load_engine().await?;
        self.finish_pending_deletions().await;
        Ok(())
    }

    /// Moves reference photos that an older server kept as files into the store (cleaned and
    /// sealed), removes the files and any temporary file a crash left beside them.
    async fn move_legacy_photos(&self) -> Result<(), Error> {
        let root = self.legacy_photos.clone();
        // Usually nothing is left to move: do not read every face at each start to find out.
        if !crate::legacy_photos::has_user_folders(&root) {
            return Ok(());
        }
        let faces = self.store.faces_for_engine(self.engine.name()).await?;
        let mut moved = 0;
        for face in faces {
            let Some(relative) = face.legacy_photo_path else {
                continue;
            };
            if let Some(bytes) = crate::legacy_photos::read(&root, &relative)? {
                let decoded = images::decode(&bytes, self.decode_limits)?;
                let (format, bytes) = images::clean_copy(&decoded)?;
                self.store
                    .attach_photo(
                        &face.face_id,
                        crate::store::ReferencePhoto { format, bytes },
                    )
                    .await?;
                moved += 1;
            }
            crate::legacy_photos::remove(&root, &relative)?;
        }
        let swept = crate::legacy_photos::sweep_temporary_files(&root);
        if moved + swept > 0 {
            tracing::info!(
                moved,
                temporary_files_removed = swept,
                folder = %root.display(),
                "reference photos moved into the store"
            );
        }
        Ok(())
    }

    /// Decodes an upload off the async workers, with the configured limits, one decode per
    /// core at a time: a decode holds the image's full size in memory until it is scaled down.
    /// The permit travels with the blocking work, so a request that times out cannot let more
    /// decodes run at once.
    async fn prepare_image(&self, bytes: Vec<u8>) -> Result<Arc<Upload>, Error> {
        let limits = self.decode_limits;
        let permit = self.decode_permits.acquire().await;
        let engine = self.engine.name();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = std::time::Instant::now();
            let decoded = images::decode(&bytes, limits)?;
            metrics.engine_stage(engine, "decode", started.elapsed());
            Ok(Arc::new(Upload { bytes, decoded }))
        })
        .await?
    }

    /// Users enrolled, and faces enrolled in the engine in use.
    pub async fn census(&self) -> Result<(u64, u64), Error> {
        let users = self.store.count_users().await?;
        let faces = self.store.count_faces(self.engine.name()).await?;
        Ok((users, faces))
    }

    pub async fn health(&self) -> Health {
        const LIMIT: Duration = Duration::from_secs(5);
        /// The outcome of `check`, degraded rather than down for the errors `degraded` names.
        async fn status<E: std::error::Error + 'static>(
            check: impl std::future::Future<Output = Result<(), E>>,
            degraded: impl Fn(&E) -> bool,
        ) -> DependencyStatus {
            match tokio::time::timeout(LIMIT, check).await {
                Ok(Ok(())) => DependencyStatus::Up,
                Ok(Err(e)) if degraded(&e) => {
                    DependencyStatus::Degraded(crate::telemetry::error_chain(&e))
                }
                Ok(Err(e)) => DependencyStatus::Down(e.to_string()),
                Err(_) => DependencyStatus::Down("timed out".to_owned()),
            }
        }
        // A full store still reads: degraded, not down.
        let full =
            |e: &crate::store::StoreError| matches!(e, crate::store::StoreError::Full { .. });
        let (engine, store) = tokio::join!(
            status(self.engine.health(), |_| false),
            status(self.store.ping(), full)
        );
        Health { engine, store }
    }
}
