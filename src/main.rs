//! The `facelock` command: serves the API (the default) and offers the operator's tools on the
//! same data folder.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use facelock::{
    config::Settings,
    domain::{Email, FullName, UserId},
    service::{Actor, Registration},
    store::Page,
};

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
        Command::FetchModels => {
            facelock::engine::local::models::ensure(&settings.models_dir).map(|()| {
                println!("models ready in {}", settings.models_dir.display());
            })
        }
        Command::Eval { pairs, root } => eval(&settings, &pairs, &root),
        Command::Bench {
            images,
            iterations,
            seconds,
        } => {
            let photos = facelock::bench::photos_under(&images);
            if photos.is_empty() {
                Err(format!("no JPEG or PNG photos under {}", images.display()))
            } else {
                facelock::bench::run(&settings.models_dir, &photos, iterations, seconds)
                    .map(|report| print!("{report}"))
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facelock: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let listen = settings.listen;
    let state = facelock::build_state(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (FACELOCK_HOST/FACELOCK_PORT): {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("Face Lock listening on http://{addr} (API docs at http://{addr}/docs)");
    facelock::serve(listener, state, facelock::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn keys(settings: Settings, cmd: KeysCommand) -> Result<(), String> {
    use facelock::{auth::keyring::KeyRing, store::Store};
    let store = facelock::store::sqlite::SqliteStore::open(&settings.database_path)
        .map_err(|e| e.to_string())?;
    match cmd {
        KeysCommand::Rotate => {
            if settings.algorithm.is_hmac() {
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
            let now = facelock::auth::tokens::unix_now();
            let ttl = settings.access_token_ttl.as_secs() as i64;
            for key in store.signing_keys().await.map_err(|e| e.to_string())? {
                let state = match key.retired_at {
                    None => "active (signing)".to_owned(),
                    Some(r) => format!(
                        "retired, published until {}s from now",
                        (r + ttl + 60 - now).max(0)
                    ),
                };
                println!("{}	{}	created {}	{state}", key.kid, key.alg, key.created_at);
            }
        }
    }
    Ok(())
}

fn eval(settings: &Settings, pairs: &Path, root: &Path) -> Result<(), String> {
    use facelock::{engine::local, evaluation};
    let csv = std::fs::read_to_string(pairs).map_err(|e| format!("{}: {e}", pairs.display()))?;
    let pairs = evaluation::read_pairs(&csv)?;
    local::models::ensure(&settings.models_dir)?;
    let models = local::pipeline::Models::load(&settings.models_dir)?;
    let scored = evaluation::score_pairs(&models, root, &pairs)?;
    let threshold = match settings.engine {
        facelock::config::EngineKind::Local => settings.min_similarity,
        _ => local::DEFAULT_MIN_SIMILARITY,
    };
    print!("{}", evaluation::report(&scored, threshold));
    Ok(())
}

async fn users(settings: Settings, cmd: UsersCommand) -> Result<(), String> {
    let state = facelock::build_state(settings).await?;
    let service = &state.facelock;
    let parse_id = |raw: &str| UserId::parse(raw).map_err(|e| e.to_string());
    match cmd {
        UsersCommand::Add {
            user_id,
            image,
            full_name,
            email,
        } => {
            let registration = Registration {
                user_id: parse_id(&user_id)?,
                full_name: full_name
                    .as_deref()
                    .map(FullName::parse)
                    .transpose()
                    .map_err(|e| e.to_string())?,
                email: email
                    .as_deref()
                    .map(Email::parse)
                    .transpose()
                    .map_err(|e| e.to_string())?,
                image: std::fs::read(&image)
                    .map_err(|e| format!("reading {}: {e}", image.display()))?,
            };
            let done = service
                .register(registration, Actor::Operator)
                .await
                .map_err(|e| e.to_string())?;
            println!("enrolled face {} for {}", done.face_id, done.user.user_id);
        }
        UsersCommand::List => {
            let mut after = None;
            loop {
                let (page, _) = service
                    .list_users(Page { limit: 500, after })
                    .await
                    .map_err(|e| e.to_string())?;
                for u in &page {
                    println!(
                        "{}\tfaces={}\t{}\t{}",
                        u.user_id,
                        u.face_count,
                        u.full_name.as_deref().unwrap_or("-"),
                        u.email.as_deref().unwrap_or("-")
                    );
                }
                if page.len() < 500 {
                    break;
                }
                after = page.last().map(|u| u.user_id.clone());
            }
        }
        UsersCommand::Delete { user_id } => {
            service
                .delete_user(&parse_id(&user_id)?)
                .await
                .map_err(|e| e.to_string())?;
            println!("deleted {user_id}");
        }
    }
    Ok(())
}
