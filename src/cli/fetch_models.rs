//! `facelock fetch-models`: the local engine's model files, fetched ahead of the first start.

use facelock::config::Settings;

use super::CliResult;

pub fn run(settings: &Settings) -> CliResult {
    let dir = &settings.engine.models_dir;
    facelock_engine::models::ensure(dir)?;
    println!("models ready in {}", dir.display());
    Ok(())
}
