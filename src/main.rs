//! The `facelock` command: serves the API (the default) and offers the operator's tools on the
//! same data folder.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use facelock::{
    config::{EngineKind, Settings},
    domain::{Email, FullName, Page, UserId},
    service::{Actor, Registration},
    store::KeyStore,
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
    Serve,
    /// Manage users directly in the data folder.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the token signing keys (ES256) in the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Fetch the local engine's models into FACELOCK_MODELS_DIR (normally done on first start).
    FetchModels,
    /// Accuracy of the local engine on labelled pairs: error rates per threshold, EER, defaults.
    Eval {
        /// CSV of img_a,img_b,same_person (1 or 0); a header line is allowed.
        #[arg(long)]
        pairs: PathBuf,
        /// Folder the image paths in the CSV are relative to.
        #[arg(long)]
        root: PathBuf,
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
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the current one keeps verifying until its tokens expire.
    Rotate,
    /// List the keys and their state.
    List,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Enrol a face from a file; the way to enrol the first administrator.
    Add {
        user_id: String,
        /// Path of a JPEG, PNG or WebP photo with one face.
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        full_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// List users.
    List,
    /// Delete a user, their faces and reference images.
    Delete { user_id: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("facelock: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    facelock::telemetry::init(settings.debug);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Users(cmd) => users(settings, cmd).await,
        Command::Keys(cmd) => keys(settings, cmd).await,
        Command::FetchModels => fetch_models(&settings),
        Command::Eval { pairs, root } => eval(&settings, &pairs, &root),
        Command::Bench {
            images,
            iterations,
            seconds,
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

fn fetch_models(settings: &Settings) -> CliResult {
    let dir = &settings.engine.models_dir;
    facelock::engine::local::models::ensure(dir)?;
    println!("models ready in {}", dir.display());
    Ok(())
}

async fn keys(settings: Settings, cmd: KeysCommand) -> CliResult {
    let store = facelock::open_store(&settings)?;
    match cmd {
        KeysCommand::Rotate => {
            if settings.tokens.algorithm.is_hmac() {
                return Err(
                    "tokens are signed with SECRET_KEY (HMAC): there are no keys to rotate".into(),
                );
            }
            let key = KeyRing::rotate(&store).await?;
            println!(
                "new signing key {} (servers pick it up within 30 s)",
                key.kid
            );
        }
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

fn eval(settings: &Settings, pairs: &Path, root: &Path) -> CliResult {
    use facelock::{engine::local, evaluation};
    let csv = std::fs::read_to_string(pairs).map_err(|e| format!("{}: {e}", pairs.display()))?;
    let pairs = evaluation::read_pairs(&csv)?;
    local::models::ensure(&settings.engine.models_dir)?;
    let models = local::pipeline::Models::load(&settings.engine.models_dir)?;
    let scored = evaluation::score_pairs(&models, root, &pairs)?;
    let threshold = match settings.engine.kind {
        EngineKind::Local => settings.engine.min_similarity,
        EngineKind::Rekognition => local::DEFAULT_MIN_SIMILARITY,
    };
    print!("{}", evaluation::report(&scored, threshold));
    Ok(())
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

async fn users(settings: Settings, cmd: UsersCommand) -> CliResult {
    let state = facelock::build_state(settings).await?;
    let service = &state.facelock;
    match cmd {
        UsersCommand::Add {
            user_id,
            image,
            full_name,
            email,
        } => {
            let registration = Registration {
                user_id: UserId::parse(&user_id)?,
                full_name: full_name.as_deref().map(FullName::parse).transpose()?,
                email: email.as_deref().map(Email::parse).transpose()?,
                image: std::fs::read(&image)
                    .map_err(|e| format!("reading {}: {e}", image.display()))?,
            };
            let done = service.register(registration, Actor::Operator).await?;
            println!("enrolled face {} for {}", done.face_id, done.user.user_id);
        }
        UsersCommand::List => {
            let mut after = None;
            loop {
                let page = Page {
                    limit: Page::MAX_LIMIT,
                    after,
                };
                let page = service.list_users(Actor::Operator, page).await?;
                for u in &page.users {
                    println!(
                        "{}\tfaces={}\t{}\t{}",
                        u.user_id,
                        u.face_count,
                        u.full_name.as_deref().unwrap_or("-"),
                        u.email.as_deref().unwrap_or("-")
                    );
                }
                match page.next_cursor {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        UsersCommand::Delete { user_id } => {
            service
                .delete_user(Actor::Operator, &UserId::parse(&user_id)?)
                .await?;
            println!("deleted {user_id}");
        }
    }
    Ok(())
}
