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
    /// Also score every different-person pair of the photos the CSV names (photos joined by a
    /// same-person pair are one person), for false-match rates down to 1e-5.
    #[arg(long)]
    all_impostors: bool,
}

pub fn run(settings: &Settings, args: Args) -> CliResult {
    let csv = std::fs::read_to_string(&args.pairs)
        .map_err(|e| format!("{}: {e}", args.pairs.display()))?;
    let pairs = eval::read_pairs(&csv)?;
    let models = super::local_models(settings)?;
    let model = models.face_model();
    let faces = eval::describe_photos(&models, &args.root, &pairs)?;
    let scored = eval::score_described(model, &faces, &pairs);
    let threshold = match settings.engine.kind {
        EngineKind::Local => settings.engine.min_similarity,
        EngineKind::Rekognition => facelock_engine::DEFAULT_MIN_SIMILARITY,
    };
    println!("descriptor: {model} ({})", model.id());
    print!("{}", eval::report(&scored, threshold));
    print!("{}", eval::photos_report(&faces, &pairs));
    if args.all_impostors {
        print!(
            "{}",
            eval::all_impostors_report(model, &faces, &scored, threshold)
        );
    }
    Ok(())
}
