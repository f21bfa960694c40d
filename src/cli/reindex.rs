//! `facelock reindex`: stored faces described again by the engine's current model.

use facelock::{
    config::Settings,
    service::{ReindexOutcome, ReindexScope},
};

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// Every face of the engine, not only those of another model.
    #[arg(long)]
    all: bool,
}

pub async fn run(settings: &Settings, args: Args) -> CliResult {
    let core = facelock::build_facelock(settings).await?;
    let scope = if args.all {
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
