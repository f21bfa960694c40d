//! `facelock import <folder>`: the original server's reference_faces folder enrolled into the
//! current engine, a line per photo.

use std::path::{Path, PathBuf};

use facelock::{
    config::Settings,
    service::{Actor, Evidence, Origin, Registration},
};

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// The reference_faces folder.
    folder: PathBuf,
}

pub async fn run(settings: &Settings, args: Args) -> CliResult {
    let folder = &args.folder;
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
