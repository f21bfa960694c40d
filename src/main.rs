//! The `facelock` command: serves the API (the default) and offers the operator's tools on the
//! same data folder.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use facelock::{
    clock::Timestamp,
    config::{EngineKind, Settings},
    domain::{Email, FullName, Page, Role, UserId},
    service::{self, policy::Policy, Actor, AuditKind, Evidence, Origin, Registration},
    store::{vault::MasterKeySource, AuditQuery, MasterKey, Store},
    tokens::keyring::KeyRing,
};

/// Any failure of a command; printed with its causes.
type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "facelock", version, about = "Face authentication server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve {
        /// Address to listen on (overrides FACELOCK_HOST), e.g. 0.0.0.0 for other machines.
        #[arg(long)]
        host: Option<std::net::IpAddr>,
        /// Port to listen on (overrides FACELOCK_PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Manage users directly in the data folder.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the token signing keys (ES256) in the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Fetch the local engine's models into FACELOCK_MODELS_DIR (normally done on first start).
    FetchModels,
    /// Enrol the users of the original server's reference_faces folder into the current
    /// engine: `<user_id>/<photo>` or `<user_id>.<ext>`. Prints a tab-separated line per photo
    /// (imported, refused with the reason, or skipped); exits 1 when a photo was refused.
    Import {
        /// The reference_faces folder.
        folder: PathBuf,
    },
    /// Describe stored faces again from their reference photos after the engine's model
    /// changed (faces of another model are left out of logins until then). Prints a
    /// tab-separated line per face (redescribed, refused with the reason, or gone); exits 1
    /// when a face was refused. Safe while servers run.
    Reindex {
        /// Every face of the engine, not only those of another model.
        #[arg(long)]
        all: bool,
    },
    /// Show the audit trail, newest first, one JSON object per line.
    Audit {
        /// Only events of this kind (login_failed, account_locked, token_refused, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this user id.
        #[arg(long)]
        user: Option<String>,
        /// Only events from this client address.
        #[arg(long)]
        address: Option<String>,
        /// Only events of the last period: 30m, 12h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Accuracy of the local engine on labelled pairs: error rates per threshold, EER, defaults.
    Eval {
        /// CSV of img_a,img_b,same_person (1 or 0); a header line is allowed.
        #[arg(long)]
        pairs: PathBuf,
        /// Folder the image paths in the CSV are relative to.
        #[arg(long)]
        root: PathBuf,
    },
    /// What the local engine sees in photos, one JSON object per photo: its faces (box, score),
    /// how far it was turned, the largest face's quality and whether it could be enrolled, and
    /// its descriptor. Exits 1 when a photo could not be read.
    Describe {
        /// JPEG, PNG or WebP files.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Speed and memory of the local engine on real photos.
    Bench {
        /// Folder of JPEG/PNG photos with one face each.
        #[arg(long, default_value = "../shared/faces/faces")]
        images: PathBuf,
        /// Rounds over the photos.
        #[arg(long, default_value_t = 5)]
        iterations: usize,
        /// Seconds of the concurrent throughput run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Instead: fill the 1:N index with this many synthetic faces and measure its search
        /// latency and memory per face (needs no photos or models).
        #[arg(long)]
        faces: Option<usize>,
        /// With --faces: write them into a throwaway SQLite store first and time loading them
        /// back as a server does at start.
        #[arg(long, requires = "faces")]
        from_store: bool,
        /// With --from-store: fill this PostgreSQL database instead (postgres://…). It must
        /// hold no users, or be one an earlier run filled with as many faces (with the same
        /// FACELOCK_MASTER_KEY): then only the load is timed. It is left filled: drop it
        /// afterwards.
        #[arg(long, requires = "from_store")]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the current one keeps verifying until its tokens expire.
    Rotate,
    /// Replace the master key that encrypts the store (descriptors, photos, signing keys).
    /// With a key file, the file is replaced; with FACELOCK_MASTER_KEY, the new key is printed
    /// and every server must be given it before it restarts.
    RotateMaster,
    /// List the keys and their state.
    List,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Enrol a face from a file (or add a face to an existing user); the way to enrol the
    /// first administrator.
    Add {
        /// The user id: 1-128 letters, digits, `.`, `_` and `-`.
        user_id: String,
        /// Path of a JPEG, PNG or WebP photo with one face.
        #[arg(long)]
        image: PathBuf,
        /// The user's full name.
        #[arg(long)]
        full_name: Option<String>,
        /// The user's e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Grant the admin role (kept in the store, honoured by every server).
        #[arg(long)]
        admin: bool,
    },
    /// List users: id, role, faces, registration time (RFC 3339), name, e-mail; tab-separated.
    List,
    /// Grant or withdraw the admin role.
    Role {
        /// The user whose role changes.
        user_id: String,
        /// The new role.
        #[arg(value_parser = ["admin", "user"])]
        role: String,
    },
    /// Clear the failed logins and the lock of a user id.
    Unlock {
        /// The locked user id.
        user_id: String,
    },
    /// Delete a user, their faces and reference photos. Running servers drop the faces from
    /// their engine within seconds.
    Delete {
        /// The user to delete.
        user_id: String,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("facelock: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core) and keeps
/// freed memory in each: inference on the blocking pool's threads then doubled the resident
/// memory of a busy server (223 MiB against 109 MiB with two arenas, 8 concurrent verifies).
/// Blocks of up to 16 MiB (a network layer's output) come from the heap instead of fresh
/// mappings, and up to 64 MiB of freed heap is kept: each analysis otherwise faulted in and
/// zeroed new pages for every layer (a tenth of a benchmark's time in the kernel). Measured:
/// 2 workers 43-44 -> 50-52 verifies/s; peak under 8 concurrent verifies 117-129 -> 126-142 MiB.
/// Must run before any thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

async fn run() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("facelock: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    facelock::telemetry::init(settings.debug, settings.log_format);
    if let Some(cap) = settings.engine.max_cpu_isa {
        // Before any kernel runs: the choice holds for the whole process.
        facelock::engine::local::cpu::limit(cap);
    }
    let command = cli.command.unwrap_or(Command::Serve {
        host: None,
        port: None,
    });
    let result = match command {
        Command::Serve { host, port } => {
            let mut settings = settings;
            let listen = &mut settings.server.listen;
            if let Some(host) = host {
                listen.set_ip(host);
            }
            if let Some(port) = port {
                listen.set_port(port);
            }
            serve(settings).await
        }
        Command::Users(cmd) => users(settings, cmd).await,
        Command::Keys(cmd) => keys(settings, cmd).await,
        Command::FetchModels => fetch_models(&settings),
        Command::Import { folder } => import(&settings, &folder).await,
        Command::Reindex { all } => reindex(&settings, all).await,
        Command::Audit {
            kind,
            user,
            address,
            since,
            limit,
        } => audit(&settings, kind, user, address, since, limit).await,
        Command::Eval { pairs, root } => eval(&settings, &pairs, &root),
        Command::Describe { photos } => describe(&settings, &photos),
        Command::Bench {
            faces: Some(n),
            from_store: true,
            database_url,
            ..
        } => bench_store_load(n, database_url.as_deref()).await,
        Command::Bench { faces: Some(n), .. } => {
            print!("{}", facelock::bench::index_run(n, 200));
            Ok(())
        }
        Command::Bench {
            images,
            iterations,
            seconds,
            faces: None,
            ..
        } => bench(&settings, &images, iterations, seconds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facelock: {}", facelock::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> CliResult {
    let listen = settings.server.listen;
    let state = facelock::build_state(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (FACELOCK_HOST/FACELOCK_PORT): {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!("Face Lock listening on http://{addr} (API docs at http://{addr}/docs)");
    facelock::serve(listener, state, facelock::shutdown_signal()).await?;
    Ok(())
}

async fn import(settings: &Settings, folder: &Path) -> CliResult {
    let found = facelock::import::scan(folder)?;
    if found.is_empty() {
        return Err(format!("no user folders or photos in {}", folder.display()).into());
    }
    let core = facelock::build_facelock(settings).await?;
    let (mut imported, mut refused, mut skipped) = (0, 0, 0);
    for user in found {
        let report = |outcome: &str, photo: &Path, detail: &str| {
            println!("{outcome}\t{}\t{}\t{detail}", user.name, photo.display());
        };
        let Some(user_id) = &user.user_id else {
            for photo in &user.photos {
                report(
                    "refused",
                    photo,
                    "not a valid user id (1-128 letters, digits, . _ -)",
                );
                refused += 1;
            }
            continue;
        };
        // Enrolled before (an earlier import, or over HTTP): running the import again adds
        // nothing twice.
        if core.store().user(user_id).await?.is_some() {
            for photo in &user.photos {
                report("skipped", photo, "the user is already enrolled");
                skipped += 1;
            }
            continue;
        }
        for photo in &user.photos {
            let image = match std::fs::read(photo) {
                Ok(bytes) => bytes,
                Err(e) => {
                    report("refused", photo, &e.to_string());
                    refused += 1;
                    continue;
                }
            };
            let registration = Registration {
                user_id: user_id.clone(),
                full_name: None,
                email: None,
                evidence: Evidence::Photo(image),
                origin: Origin::operator(),
            };
            match core.register(registration, Actor::Operator).await {
                Ok(done) => {
                    report("imported", photo, &done.face_id);
                    imported += 1;
                }
                Err(e) => {
                    report("refused", photo, &facelock::error_chain(&e));
                    refused += 1;
                }
            }
        }
    }
    eprintln!("{imported} photos imported, {refused} refused, {skipped} skipped");
    if refused > 0 {
        return Err(format!("{refused} photos could not be imported (see the lines above)").into());
    }
    Ok(())
}

async fn reindex(settings: &Settings, all: bool) -> CliResult {
    use facelock::service::{ReindexOutcome, ReindexScope};
    let core = facelock::build_facelock(settings).await?;
    let scope = if all {
        ReindexScope::All
    } else {
        ReindexScope::Stale
    };
    let report = core
        .reindex(scope, |face| {
            let (outcome, detail) = match &face.outcome {
                ReindexOutcome::Redescribed { new_face_id } => ("redescribed", new_face_id.clone()),
                ReindexOutcome::Refused(e) => ("refused", facelock::error_chain(e)),
                ReindexOutcome::Gone => ("gone", "deleted meanwhile".to_owned()),
            };
            println!(
                "{outcome}\t{}\t{}\t{}\t{detail}",
                face.user_id, face.face_id, face.old_model
            );
        })
        .await?;
    let count = |f: fn(&ReindexOutcome) -> bool| report.iter().filter(|r| f(&r.outcome)).count();
    let redescribed = count(|o| matches!(o, ReindexOutcome::Redescribed { .. }));
    let refused = count(|o| matches!(o, ReindexOutcome::Refused(_)));
    eprintln!(
        "{redescribed} faces described by {}, {refused} refused, {} gone",
        core.engine_model(),
        report.len() - redescribed - refused
    );
    if refused > 0 {
        return Err(format!(
            "{refused} faces could not be described again (see the lines above); they stay \
             out of logins until their users enrol a new photo"
        )
        .into());
    }
    Ok(())
}

fn fetch_models(settings: &Settings) -> CliResult {
    let dir = &settings.engine.models_dir;
    facelock::engine::local::models::ensure(dir)?;
    println!("models ready in {}", dir.display());
    Ok(())
}

async fn keys(settings: Settings, cmd: KeysCommand) -> CliResult {
    let store = facelock::open_store(&settings).await?;
    match cmd {
        KeysCommand::Rotate => {
            if settings.tokens.algorithm.is_hmac() {
                return Err(
                    "tokens are signed with SECRET_KEY (HMAC): there are no keys to rotate".into(),
                );
            }
            let key = KeyRing::rotate(&*store).await?;
            service::audit::record(
                &*store,
                AuditKind::KeyRotated,
                &Origin::operator(),
                None,
                Actor::Operator,
                serde_json::json!({ "kid": key.kid }),
            )
            .await;
            println!(
                "new signing key {} (servers pick it up within 2 s)",
                key.kid
            );
        }
        KeysCommand::RotateMaster => rotate_master(&settings, &*store).await?,
        KeysCommand::List => {
            let ttl = settings.tokens.access_token_ttl;
            for key in store.signing_keys().await? {
                let state = match KeyRing::published_until(&key, ttl) {
                    None => "active (signing)".to_owned(),
                    Some(until) => format!("retired, published until {until}"),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    key.kid, key.alg, key.created_at
                );
            }
        }
    }
    Ok(())
}

async fn rotate_master(settings: &Settings, store: &dyn Store) -> CliResult {
    let source = settings.storage.master_key_source();
    let old = MasterKey::load(&source)?;
    let new = MasterKey::generate()?;
    match &source {
        MasterKeySource::File(path) => {
            // The new key is on disk before the store takes it, so a crash in between loses
            // nothing: the next start finds it and finishes the rotation.
            let pending = facelock::pending_master_key_file(path);
            let _ = std::fs::remove_file(&pending);
            facelock::files::write_private(&pending, new.to_base64().as_bytes())?;
            store.reseal_data_key(&old, &new).await?;
            std::fs::rename(&pending, path)?;
            println!("master key rotated; {} holds the new key", path.display());
        }
        MasterKeySource::Given(_) => {
            store.reseal_data_key(&old, &new).await?;
            println!("{}", new.to_base64());
            eprintln!(
                "master key rotated: set FACELOCK_MASTER_KEY to the key printed above for every \
                 server before it restarts; the old key no longer opens the store"
            );
        }
    }
    service::audit::record(
        store,
        AuditKind::KeyRotated,
        &Origin::operator(),
        None,
        Actor::Operator,
        serde_json::json!({ "key": "master" }),
    )
    .await;
    Ok(())
}

fn eval(settings: &Settings, pairs: &Path, root: &Path) -> CliResult {
    use facelock::{engine::local, evaluation};
    let csv = std::fs::read_to_string(pairs).map_err(|e| format!("{}: {e}", pairs.display()))?;
    let pairs = evaluation::read_pairs(&csv)?;
    let models = local_models(settings)?;
    let scored = evaluation::score_pairs(&models, root, &pairs)?;
    let threshold = match settings.engine.kind {
        EngineKind::Local => settings.engine.min_similarity,
        EngineKind::Rekognition => local::DEFAULT_MIN_SIMILARITY,
    };
    print!("{}", evaluation::report(&scored, threshold));
    Ok(())
}

/// The local engine's models, fetched first if they are missing.
fn local_models(
    settings: &Settings,
) -> Result<facelock::engine::local::pipeline::Models, Box<dyn std::error::Error>> {
    let dir = &settings.engine.models_dir;
    facelock::engine::local::models::ensure(dir)?;
    Ok(facelock::engine::local::pipeline::Models::load(dir)?)
}

fn describe(settings: &Settings, photos: &[PathBuf]) -> CliResult {
    use facelock::engine::local::{cpu, pipeline};
    use serde_json::json;
    let models = local_models(settings)?;
    eprintln!("local engine kernels: {}", cpu::summary());
    let limits = facelock::images::DecodeLimits {
        max_pixels: settings.engine.max_image_pixels,
    };
    let mut unreadable = 0;
    for photo in photos {
        let analysis = std::fs::read(photo)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let mut times = pipeline::StageTimes::default();
                pipeline::analyze_photo(&models, &bytes, limits, &mut times)
                    .map_err(|e| e.to_string())
            });
        let line = match analysis {
            Ok(a) => {
                let faces: Vec<_> = a
                    .faces
                    .iter()
                    .map(|f| {
                        let d = &f.detection;
                        json!({"box": [d.left, d.top, d.right, d.bottom], "score": d.score})
                    })
                    .collect();
                let largest = a.dominant.as_ref().map(|(descriptor, metrics)| {
                    json!({
                        "face_width_px": metrics.face_width_px,
                        "brightness": metrics.brightness,
                        "sharpness": metrics.sharpness,
                        "yaw": metrics.yaw,
                        "shape_error": metrics.shape_error,
                        "enrolment_refused": metrics.problem().map(|p| p.code()),
                        "descriptor": descriptor.to_vec(),
                    })
                });
                json!({
                    "photo": photo.display().to_string(),
                    "width": a.width,
                    "height": a.height,
                    "turned": a.turned,
                    "faces": faces,
                    "largest": largest,
                })
            }
            Err(error) => {
                unreadable += 1;
                json!({"photo": photo.display().to_string(), "error": error})
            }
        };
        println!("{line}");
    }
    if unreadable > 0 {
        return Err(format!("{unreadable} of {} photos could not be read", photos.len()).into());
    }
    Ok(())
}

/// `bench --faces N --from-store`: a throwaway SQLite store, or the empty PostgreSQL database
/// given, filled and loaded back.
async fn bench_store_load(faces: usize, database_url: Option<&str>) -> CliResult {
    use facelock::store::{postgres::PostgresStore, sqlite::SqliteStore, MasterKey, Store};
    // FACELOCK_MASTER_KEY when given, so the filled database can be opened again.
    let master = match std::env::var("FACELOCK_MASTER_KEY") {
        Ok(key) => MasterKey::parse(&key)?,
        Err(_) => MasterKey::generate()?,
    };
    let dir = std::env::temp_dir().join(format!("facelock-bench-{}", std::process::id()));
    let (store, kind): (std::sync::Arc<dyn Store>, _) = match database_url {
        Some(url) => (
            std::sync::Arc::new(PostgresStore::open(url, &master).await?),
            "PostgreSQL",
        ),
        None => (
            std::sync::Arc::new(SqliteStore::open(&dir.join("bench.db"), &master)?),
            "SQLite",
        ),
    };
    let users = store.count_users().await?;
    let report = if database_url.is_some() && users == faces as u64 {
        // Filled by an earlier run with the same key: time the load alone.
        facelock::bench::store_load(store)
            .await
            .map(|r| print!("{kind} store with {faces} faces, filled before\n{r}"))
            .map_err(Into::into)
    } else if users > 0 {
        Err(
            "the benchmark fills an empty database, or times one it filled before with as \
             many faces: this one has other users"
                .into(),
        )
    } else {
        facelock::bench::store_load_run(store, kind, faces)
            .await
            .map(|r| print!("{r}"))
            .map_err(Into::into)
    };
    let _ = std::fs::remove_dir_all(&dir);
    report
}

fn bench(settings: &Settings, images: &Path, iterations: usize, seconds: u64) -> CliResult {
    let photos = facelock::bench::photos_under(images);
    if photos.is_empty() {
        return Err(format!("no JPEG or PNG photos under {}", images.display()).into());
    }
    let report = facelock::bench::run(&settings.engine.models_dir, &photos, iterations, seconds)?;
    print!("{report}");
    Ok(())
}

async fn audit(
    settings: &Settings,
    kind: Option<String>,
    user: Option<String>,
    address: Option<String>,
    since: Option<String>,
    limit: u32,
) -> CliResult {
    if let Some(kind) = &kind {
        if AuditKind::parse(kind).is_none() {
            let known: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(
                format!("unknown kind {kind:?}; the kinds are {}", known.join(", ")).into(),
            );
        }
    }
    let since = since
        .as_deref()
        .map(parse_period)
        .transpose()?
        .map(|period| Timestamp::now() - period);
    let store = facelock::open_store(settings).await?;
    let query = AuditQuery {
        kind,
        user_id: user,
        address,
        since,
        limit: limit.clamp(1, 100_000),
    };
    for event in store.audit_events(query).await? {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(())
}

/// Clears a user id's failed logins and lock; works on the store alone.
async fn unlock(settings: &Settings, user_id: &str) -> CliResult {
    let store = facelock::open_store(settings).await?;
    let user_id = UserId::parse(user_id)?;
    let had = store.clear_lockout(&user_id).await?;
    service::audit::record(
        &*store,
        AuditKind::LockoutCleared,
        &Origin::operator(),
        Some(&user_id),
        Actor::Operator,
        serde_json::json!({ "had_failures": had }),
    )
    .await;
    println!(
        "{user_id}: {}",
        if had { "unlocked" } else { "was not locked" }
    );
    Ok(())
}

/// `30m`, `12h`, `7d`, `45s`.
fn parse_period(raw: &str) -> Result<Duration, String> {
    let bad = || format!("{raw:?} is not a period like 30m, 12h or 7d");
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(seconds))
}

async fn users(settings: Settings, cmd: UsersCommand) -> CliResult {
    match cmd {
        UsersCommand::Add {
            user_id,
            image,
            full_name,
            email,
            admin,
        } => {
            let registration = Registration {
                user_id: UserId::parse(&user_id)?,
                full_name: full_name.as_deref().map(FullName::parse).transpose()?,
                email: email.as_deref().map(Email::parse).transpose()?,
                evidence: Evidence::Photo(
                    std::fs::read(&image)
                        .map_err(|e| format!("reading {}: {e}", image.display()))?,
                ),
                origin: Origin::operator(),
            };
            // Enrolment is the one users command that needs the face engine.
            let core = facelock::build_facelock(&settings).await?;
            let done = core.register(registration, Actor::Operator).await?;
            let user = if admin {
                core.set_role(
                    Actor::Operator,
                    &done.user.user_id,
                    Role::Admin,
                    &Origin::operator(),
                )
                .await?
            } else {
                done.user
            };
            println!(
                "enrolled face {} for {} ({})",
                done.face_id,
                user.user_id,
                role_name(core.role_of(&user))
            );
        }
        UsersCommand::List => list_users(&settings).await?,
        UsersCommand::Role { user_id, role } => {
            let store = facelock::open_store(&settings).await?;
            let user_id = UserId::parse(&user_id)?;
            let admin = role == "admin";
            let policy = Policy::from_settings(&settings);
            if !admin && policy.is_listed_admin(&user_id) {
                return Err(format!(
                    "{user_id} is an administrator through FACELOCK_ADMIN_USERS; remove the id \
                     there to withdraw the role"
                )
                .into());
            }
            let user = store.set_admin(&user_id, admin).await?;
            service::audit::record(
                &*store,
                AuditKind::RoleChanged,
                &Origin::operator(),
                Some(&user_id),
                Actor::Operator,
                serde_json::json!({ "role": role }),
            )
            .await;
            println!("{user_id}: {}", role_name(policy.role_of(&user)));
        }
        UsersCommand::Unlock { user_id } => unlock(&settings, &user_id).await?,
        UsersCommand::Delete { user_id } => {
            // The store deletes the user and queues their faces for the engine in one
            // transaction; running servers see the change and drop the faces.
            let store = facelock::open_store(&settings).await?;
            let user_id = UserId::parse(&user_id)?;
            let faces = store.delete_user(&user_id).await?;
            service::audit::record(
                &*store,
                AuditKind::UserDeleted,
                &Origin::operator(),
                Some(&user_id),
                Actor::Operator,
                serde_json::json!({ "faces": faces.len() }),
            )
            .await;
            println!("deleted {user_id}");
        }
    }
    Ok(())
}

/// Every user, a page at a time, straight from the store (no engine is loaded).
async fn list_users(settings: &Settings) -> CliResult {
    let store = facelock::open_store(settings).await?;
    let policy = Policy::from_settings(settings);
    let mut after = None;
    loop {
        let page = Page {
            limit: Page::MAX_LIMIT,
            after,
        };
        let users = store.list_users(page).await?;
        for u in &users {
            println!(
                "{}\t{}\tfaces={}\t{}\t{}\t{}",
                u.user_id,
                role_name(policy.role_of(u)),
                u.face_count,
                u.registered_at,
                u.full_name.as_deref().unwrap_or("-"),
                u.email.as_deref().unwrap_or("-")
            );
        }
        match users.last() {
            Some(last) if users.len() == Page::MAX_LIMIT as usize => {
                after = Some(last.user_id.clone())
            }
            _ => break,
        }
    }
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// `facelock <command> --help` explains every command, flag and argument.
    #[test]
    fn every_command_flag_and_argument_has_help() {
        fn check(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            assert!(command.get_about().is_some(), "{path} has no help");
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help");
            }
            for sub in command.get_subcommands() {
                check(sub, &path);
            }
        }
        Cli::command().debug_assert();
        check(&Cli::command(), "");
    }
}
