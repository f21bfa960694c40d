//! `facelock eval`: the local engine's accuracy on labelled pairs of photos.

use std::path::PathBuf;

use facelock::config::{EngineKind, Settings};
use facelock_engine::tools::eval;

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// CSV of img_a,img_b,same_person (1 or 0); a header line is allowed.
    #[arg(long)]
    pairs: PathBuf,
    /// Folder the image paths in the CSV are relative to.
    #[arg(long)]
    root: PathBuf,
}

pub fn run(settings: &Settings, args: Args) -> CliResult {
    let csv = std::fs::read_to_string(&args.pairs)
        .map_err(|e| format!("{}: {e}", args.pairs.display()))?;
    let pairs = eval::read_pairs(&csv)?;
    let models = super::local_models(settings)?;
    let scored = eval::score_pairs(&models, &args.root, &pairs)?;
    let threshold = match settings.engine.kind {
        EngineKind::Local => settings.engine.min_similarity,
        EngineKind::Rekognition => facelock_engine::DEFAULT_MIN_SIMILARITY,
    };
    print!("{}", eval::report(&scored, threshold));
    Ok(())
}
