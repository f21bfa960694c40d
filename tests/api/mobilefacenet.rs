//! The MobileFaceNet as the engine runs it, against an independent execution of the same ONNX
//! graph (ONNX Runtime, installed by pip at its pinned version and checksums) on real aligned
//! chips of the shared photos.

use std::{path::Path, process::Command, sync::OnceLock};

use facelock_engine::{FaceModel, Models};

use crate::helpers::{models_dir, shared_faces, skip};

/// A folder with ONNX Runtime installed for `python3`, or `None` after reporting the skip.
fn onnx_runtime() -> Option<std::path::PathBuf> {
    static SITE: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    let ready = SITE.get_or_init(|| {
        let site = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnxruntime-site");
        if site.join("onnxruntime").is_dir() {
            return Ok(site);
        }
        let requirements =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/requirements.txt");
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--require-hashes", "--no-deps", "--target"])
            .arg(&site)
            .arg("-r")
            .arg(&requirements)
            .output()
            .map_err(|e| format!("python3 cannot be run: {e}"))?;
        if output.status.success() {
            Ok(site)
        } else {
            Err(format!(
                "pip could not install ONNX Runtime: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    });
    match ready {
        Ok(site) => Some(site.clone()),
        Err(why) => {
            skip(why);
            None
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn the_engine_runs_the_onnx_graph_as_onnx_runtime_does() {
    let (Some(root), Some(dir)) = (shared_faces(), models_dir()) else {
        return;
    };
    let Some(site) = onnx_runtime() else { return };
    let models = Models::load(&dir, FaceModel::MobileFaceNet).unwrap();
    let chips_dir = tempfile::tempdir().unwrap();
    let mut chips = Vec::new();
    let mut ours = Vec::new();
    let mut photos = facelock_engine::tools::bench::photos_under(&root.join("faces"));
    photos.truncate(8);
    assert!(
        photos.len() >= 4,
        "identity photos under {}",
        root.display()
    );
    for photo in &photos {
        let rgb = image::open(photo).unwrap().into_rgb8();
        let faces = models.find_faces(&rgb);
        let face = faces
            .first()
            .unwrap_or_else(|| panic!("{}: no face", photo.display()));
        let chip = models.mobilefacenet_chip(&rgb, face);
        let path = chips_dir.path().join(format!("{}.rgb", chips.len()));
        std::fs::write(&path, &chip).unwrap();
        chips.push(path);
        ours.push(
            models
                .mobilefacenet_output(&chip)
                .expect("the MobileFaceNet is loaded"),
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/onnx_outputs.py");
    let output = Command::new("python3")
        .env("PYTHONPATH", &site)
        .arg(script)
        .arg(dir.join("fr_feature.onnx"))
        .args(&chips)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<Vec<f32>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(theirs.len(), ours.len());
    for ((a, b), photo) in ours.iter().zip(&theirs).zip(&photos) {
        assert_eq!(a.len(), 512);
        let c = cosine(a, b);
        assert!(c >= 0.9999, "{}: cosine {c}", photo.display());
    }
    // Different people's chips differ: the comparison is not of constant outputs.
    assert!(cosine(&ours[0], &ours[ours.len() - 1]) < 0.9);
}
