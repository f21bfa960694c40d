//! `facelock fetch-models`: the local engine's model files, fetched ahead of the first start.

use facelock::config::Settings;

use super::CliResult;

pub fn run(settings: &Settings) -> CliResult {
    let dir = &settings.engine.models_dir;
    let model = settings.engine.face_model;
    facelock_engine::models::ensure(dir, model)?;
    println!("models ready in {} (descriptor: {model})", dir.display());
    Ok(())
}
