//! `facelock describe <photos>`: what the local engine sees in each photo, one JSON object a
//! line.

use std::path::PathBuf;

use facelock::config::Settings;
use facelock_engine::{analyze_photo, photo::DecodeLimits, Analysis, StageTimes};
use serde_json::{json, Value};

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// Photo files: JPEG, PNG or WebP, or a lab set's GIF and PGM (as `eval` reads).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
}

pub fn run(settings: &Settings, args: Args) -> CliResult {
    let models = super::local_models(settings)?;
    eprintln!("local engine kernels: {}", facelock_engine::cpu::summary());
    let limits = DecodeLimits {
        max_pixels: settings.engine.max_image_pixels,
    };
    let mut unreadable = 0;
    for photo in &args.photos {
        let analysis = std::fs::read(photo)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                analyze_photo(&models, &bytes, limits, &mut StageTimes::default())
                    .map_err(|e| e.to_string())
            });
        let name = photo.display().to_string();
        let line = match analysis {
            Ok(a) => described(name, &a),
            Err(error) => {
                unreadable += 1;
                json!({"photo": name, "error": error})
            }
        };
        println!("{line}");
    }
    if unreadable > 0 {
        let all = args.photos.len();
        return Err(format!("{unreadable} of {all} photos could not be read").into());
    }
    Ok(())
}

/// The JSON line of one analysed photo.
fn described(photo: String, a: &Analysis) -> Value {
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
        "photo": photo,
        "width": a.width,
        "height": a.height,
        "turned": a.turned,
        "faces": faces,
        "largest": largest,
    })
}
