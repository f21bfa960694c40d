//! `facelock bench`: speed and memory of the local engine on real photos, of the 1:N index
//! on synthetic faces, or of a server's start-up load from a store filled with them.

use std::{fmt::Write as _, path::PathBuf, sync::Arc, time::Instant};

use facelock::{
    config::Settings,
    domain::UserId,
    engine::{local::build_index, FaceFeed},
    store::{
        postgres::PostgresStore, sqlite::SqliteStore, FaceOwner, MasterKey, NewFace, NewUser,
        ReferencePhoto, Store, StoreError,
    },
};
use facelock_engine::tools::bench::{self, synthetic_descriptor};

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
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
}

pub async fn run(settings: &Settings, args: Args) -> CliResult {
    match args.faces {
        Some(n) if args.from_store => bench_store_load(n, args.database_url.as_deref()).await,
        Some(n) => {
            print!("{}", bench::index_run(n, 200, settings.engine.face_model));
            Ok(())
        }
        None => {
            let photos = bench::photos_under(&args.images);
            if photos.is_empty() {
                let dir = args.images.display();
                return Err(format!("no JPEG or PNG photos under {dir}").into());
            }
            let models = &settings.engine.models_dir;
            let model = settings.engine.face_model;
            let report = bench::run(models, model, &photos, args.iterations, args.seconds)?;
            print!("{report}");
            Ok(())
        }
    }
}

/// `bench --faces N --from-store`: a throwaway SQLite store, or the empty PostgreSQL database
/// given, filled and loaded back.
async fn bench_store_load(faces: usize, database_url: Option<&str>) -> CliResult {
    // FACELOCK_MASTER_KEY when given, so the filled database can be opened again.
    let master = match std::env::var("FACELOCK_MASTER_KEY") {
        Ok(key) => MasterKey::parse(&key)?,
        Err(_) => MasterKey::generate()?,
    };
    let dir = std::env::temp_dir().join(format!("facelock-bench-{}", std::process::id()));
    let (store, kind): (Arc<dyn Store>, _) = match database_url {
        Some(url) => (
            Arc::new(PostgresStore::open(url, &master).await?),
            "PostgreSQL",
        ),
        None => (
            Arc::new(SqliteStore::open(&dir.join("bench.db"), &master)?),
            "SQLite",
        ),
    };
    let users = store.count_users().await?;
    let report = if database_url.is_some() && users == faces as u64 {
        // Filled by an earlier run with the same key: time the load alone.
        store_load(store)
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
        store_load_run(store, kind, faces)
            .await
            .map(|r| print!("{r}"))
            .map_err(Into::into)
    };
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// `facelock bench --faces N --from-store`: what start-up costs with `faces` enrolled. Fills
/// `store` (empty: a throwaway SQLite file, or the PostgreSQL database given) with one user per
/// face and a small photo each, several writes at a time, then times what a server does at
/// start: reading every face back, unsealing its descriptor and building the 1:N index.
async fn store_load_run(
    store: Arc<dyn Store>,
    kind: &str,
    faces: usize,
) -> Result<String, StoreError> {
    let mut out = fill_store(&store, kind, faces).await?;
    out.push_str(&store_load(store).await?);
    Ok(out)
}

/// Numbers in each descriptor the store-load benchmark fills and indexes (dlib's length):
/// the fill and the load must agree.
const FILLED_DIM: usize = 128;

/// Fills an empty `store` with `faces` synthetic faces, one user each, as the benchmark does.
async fn fill_store(
    store: &Arc<dyn Store>,
    kind: &str,
    faces: usize,
) -> Result<String, StoreError> {
    const WRITERS: usize = 16;
    let mut out = String::new();
    let started = Instant::now();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut writing = tokio::task::JoinSet::new();
    for i in 0..faces {
        let face = NewFace {
            face_id: uuid::Uuid::from_u128(i as u128 + 1).to_string(),
            engine: "local".into(),
            model: "bench".into(),
            photo: ReferencePhoto {
                format: facelock::images::Format::Jpeg,
                bytes: vec![0; 64],
            },
            descriptor: Some(synthetic_descriptor(&mut state, FILLED_DIM)),
        };
        let owner = FaceOwner::New(NewUser {
            user_id: UserId::parse(&format!("user{i:07}")).expect("a valid id"),
            full_name: None,
            email: None,
        });
        if writing.len() == WRITERS {
            if let Some(done) = writing.join_next().await {
                done.map_err(|e| StoreError::backend("filling the store", e))??;
            }
        }
        let store = store.clone();
        writing.spawn(async move { store.add_face(owner, face).await });
    }
    while let Some(done) = writing.join_next().await {
        done.map_err(|e| StoreError::backend("filling the store", e))??;
    }
    let _ = writeln!(
        out,
        "{kind} store with {faces} faces, filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Times what a server does at start with the benchmark's faces in `store`: reading every face
/// back, unsealing its descriptor and building the 1:N index.
async fn store_load(store: Arc<dyn Store>) -> Result<String, StoreError> {
    let mut out = String::new();
    let started = Instant::now();
    let (source, feed) = FaceFeed::channel();
    let building = tokio::task::spawn_blocking(move || build_index(feed, FILLED_DIM));
    let sent = source.fill_from(store.as_ref(), "local", "bench").await?;
    let index = building
        .await
        .map_err(|e| StoreError::backend("building the index", e))?
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let loaded = started.elapsed();
    let _ = writeln!(
        out,
        "  start-up load: {:.2} s to read, unseal and index {} faces ({} left out)",
        loaded.as_secs_f64(),
        index.len(),
        sent.left_out
    );
    Ok(out)
}
