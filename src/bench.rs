//! `facelock bench`: speed and memory of the local engine on real photos, printed as figures.
//! Stages: decode, detect, landmarks, descriptor (chip + network), and end to end; then the
//! throughput of concurrent verifications on every core, and the process's peak memory.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    engine::local::{
        models,
        pipeline::{analyze_photo, Models, StageTimes},
        weights::ModelError,
    },
    files::{self, FileError},
    images::{self, DecodeLimits, ImageError},
};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Models(#[from] ModelError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("making the 640x480 frame")]
    Frame(#[source] image::ImageError),
}

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 40_000_000,
};

/// JPEG and PNG files under `dir`, recursively, sorted.
pub fn photos_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const STAGES: [&str; 6] = [
    "decode",
    "detect",
    "landmarks",
    "descriptor",
    "turning a photo on its side",
    "end to end",
];

/// One photo through every stage; returns the times of [`STAGES`].
fn run_once(models: &Models, bytes: &[u8]) -> Result<[Duration; 6], BenchError> {
    let start = Instant::now();
    let mut times = StageTimes::default();
    std::hint::black_box(analyze_photo(models, bytes, LIMITS, &mut times)?);
    let total = start.elapsed();
    let decode =
        total.saturating_sub(times.detect + times.landmarks + times.descriptor + times.rotate);
    Ok([
        decode,
        times.detect,
        times.landmarks,
        times.descriptor,
        times.rotate,
        total,
    ])
}

/// Runs `bytes` `rounds` times and prints a table of each stage's median and p95.
fn stage_table(
    out: &mut String,
    title: &str,
    models: &Models,
    inputs: &[&[u8]],
    rounds: usize,
) -> Result<(), BenchError> {
    let mut stages: [Vec<Duration>; 6] = Default::default();
    for _ in 0..rounds {
        for bytes in inputs {
            for (all, t) in stages.iter_mut().zip(run_once(models, bytes)?) {
                all.push(t);
            }
        }
    }
    let _ = writeln!(out, "\n{title:<38}   median ms   p95 ms");
    for (name, samples) in STAGES.iter().zip(stages.iter_mut()) {
        let _ = writeln!(
            out,
            "  {name:<38} {:>8.1} {:>8.1}",
            ms(percentile(samples, 0.5)),
            ms(percentile(samples, 0.95))
        );
    }
    Ok(())
}

/// `bytes` re-encoded with its pixels turned 90 degrees and no EXIF tag to say so.
fn turned(bytes: &[u8]) -> Result<Vec<u8>, BenchError> {
    reencode(bytes, |img| img.rotate90())
}

/// A 640x480 JPEG made from `bytes` (scaled to cover, centre-cropped): the typical login frame.
pub fn vga_frame(bytes: &[u8]) -> Result<Vec<u8>, BenchError> {
    reencode(bytes, |img| {
        img.resize_to_fill(640, 480, image::imageops::FilterType::Triangle)
    })
}

/// `bytes` decoded, changed by `change` and encoded as JPEG.
fn reencode(
    bytes: &[u8],
    change: impl FnOnce(image::DynamicImage) -> image::DynamicImage,
) -> Result<Vec<u8>, BenchError> {
    let img = change(images::decode(bytes, LIMITS)?.image);
    let mut out = Vec::new();
    img.to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .map_err(BenchError::Frame)?;
    Ok(out)
}

/// Peak resident memory of this process (Linux), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(
    models_dir: &Path,
    photos: &[PathBuf],
    iterations: usize,
    seconds: u64,
) -> Result<String, BenchError> {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(
        out,
        "facelock bench: {} photos, {iterations} rounds, {cores} cores",
        photos.len()
    );

    let start = Instant::now();
    models::ensure(models_dir).map_err(ModelError::from)?;
    let models = Arc::new(Models::load(models_dir)?);
    let _ = writeln!(out, "model load: {:.1} ms", ms(start.elapsed()));

    let inputs: Vec<Vec<u8>> = photos
        .iter()
        .map(|p| files::read(p))
        .collect::<Result<_, _>>()?;
    // The first photo whose 640x480 crop still shows a face.
    let mut frame = None;
    for bytes in &inputs {
        let candidate = vga_frame(bytes)?;
        let analysis = analyze_photo(&models, &candidate, LIMITS, &mut StageTimes::default())?;
        if !analysis.faces.is_empty() {
            frame = Some(candidate);
            break;
        }
    }

    // Warm up caches and lazy allocations once.
    for bytes in &inputs {
        run_once(&models, bytes)?;
    }
    let all: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    stage_table(
        &mut out,
        "per photo (fixture sizes 330-2333 px)",
        &models,
        &all,
        iterations,
    )?;

    if let Some(frame) = &frame {
        let rounds = iterations.max(1) * 10;
        stage_table(
            &mut out,
            "640x480 frame (one face)",
            &models,
            &[frame],
            rounds,
        )?;
        let sideways = turned(frame)?;
        stage_table(
            &mut out,
            "the same frame turned 90 degrees",
            &models,
            &[&sideways],
            rounds,
        )?;

        // Throughput: one worker per core, each verifying frames for the given time.
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                let models = models.clone();
                let frame = frame.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if run_once(&models, &frame).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        let _ = writeln!(
            out,
            "\nthroughput, {cores} concurrent workers, 640x480: {:.1} verifications/s",
            total as f64 / seconds as f64
        );
    }
    if let Some(peak) = peak_memory_mib() {
        let _ = writeln!(out, "peak memory (VmHWM): {peak:.0} MiB");
    }
    Ok(out)
}
