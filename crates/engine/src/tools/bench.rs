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
    files::{self, FileError},
    index::FaceIndex,
    kernels::tensor::{self, Activation, Conv, Padding, Tensor},
    models::{self, weights::ModelError},
    photo::{self, DecodeLimits, ImageError},
    pipeline::{analyze_photo, Descriptor, Models, StageTimes},
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

/// One photo through every stage; returns the times of [`STAGES`] and the floating-point
/// operations of each (the networks' only: decoding and turning count none).
fn run_once(models: &Models, bytes: &[u8]) -> Result<([Duration; 6], [u64; 6]), BenchError> {
    let start = Instant::now();
    let mut times = StageTimes::default();
    std::hint::black_box(analyze_photo(models, bytes, LIMITS, &mut times)?);
    let total = start.elapsed();
    let decode =
        total.saturating_sub(times.detect + times.landmarks + times.descriptor + times.rotate);
    let flops = [
        0,
        times.detect_flops,
        times.landmarks_flops,
        times.descriptor_flops,
        0,
        times.detect_flops + times.landmarks_flops + times.descriptor_flops,
    ];
    Ok((
        [
            decode,
            times.detect,
            times.landmarks,
            times.descriptor,
            times.rotate,
            total,
        ],
        flops,
    ))
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
    let mut flops = [0u64; 6];
    for _ in 0..rounds {
        for bytes in inputs {
            let (times, ops) = run_once(models, bytes)?;
            for (all, t) in stages.iter_mut().zip(times) {
                all.push(t);
            }
            flops.iter_mut().zip(ops).for_each(|(f, o)| *f += o);
        }
    }
    let runs = (rounds * inputs.len()).max(1) as f64;
    let _ = writeln!(out, "\n{title:<38}   median ms   p95 ms    GFLOP  GFLOP/s");
    for ((name, samples), ops) in STAGES.iter().zip(stages.iter_mut()).zip(flops) {
        let median = percentile(samples, 0.5);
        let _ = write!(
            out,
            "  {name:<38} {:>8.1} {:>8.1}",
            ms(median),
            ms(percentile(samples, 0.95))
        );
        let gflop = ops as f64 / runs / 1e9;
        if ops > 0 && !median.is_zero() {
            let _ = write!(out, " {gflop:>8.3} {:>8.1}", gflop / median.as_secs_f64());
        }
        let _ = writeln!(out);
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
    let img = change(photo::decode_file(bytes, LIMITS)?);
    let mut out = Vec::new();
    img.to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .map_err(BenchError::Frame)?;
    Ok(out)
}

/// A memory figure of this process from `/proc/self/status` (Linux), in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory of this process (Linux), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    status_kib("VmHWM:").map(|kib| kib as f64 / 1024.0)
}

pub fn run(
    models_dir: &Path,
    model: crate::FaceModel,
    photos: &[PathBuf],
    iterations: usize,
    seconds: u64,
) -> Result<String, BenchError> {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(
        out,
        "facelock bench: {} photos, {iterations} rounds, {cores} cores, kernels: {}, \
         descriptor: {model}",
        photos.len(),
        crate::cpu::summary()
    );

    let start = Instant::now();
    models::ensure(models_dir, model).map_err(ModelError::from)?;
    let models = Arc::new(Models::load(models_dir, model)?);
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
    let _ = writeln!(
        out,
        "matrix product 512x512x512 on one core (the machine's practical ceiling): {:.1} GFLOP/s",
        matrix_product_gflops()
    );
    if let Some(peak) = peak_memory_mib() {
        let _ = writeln!(out, "peak memory (VmHWM): {peak:.0} MiB");
    }
    Ok(out)
}

/// GFLOP/s of the best of a few 512x512x512 matrix products with the kernel the networks use
/// (a 1x1 convolution of 512 positions, 512 channels in and out): what this core reaches on the
/// easiest work there is, beside which each stage's rate shows how far it is from the
/// machine's limit.
fn matrix_product_gflops() -> f64 {
    const N: usize = 512;
    let x = Tensor::from_data(16, N / 16, N, vec![1.0; N * N]);
    let conv = Conv::new([1, 1, N, N], vec![0.5; N * N], vec![0.0; N]);
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        std::hint::black_box(tensor::conv2d(
            &x,
            &conv,
            1,
            Padding::Valid,
            Activation::Linear,
        ));
        best = best.min(start.elapsed());
    }
    2.0 * (N * N * N) as f64 / best.as_secs_f64() / 1e9
}

/// Resident memory of this process now (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// A random descriptor of `dim` components scaled to unit length, from `state` (which it
/// advances): the benchmarks' stand-in for enrolled faces.
pub fn synthetic_descriptor(state: &mut u64, dim: usize) -> Descriptor {
    let mut d: Descriptor = (0..dim)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state % 20_001) as f32 / 10_000.0 - 1.0
        })
        .collect();
    let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
    d.iter_mut().for_each(|v| *v /= norm);
    d
}

/// `facelock bench --faces N`: the 1:N index filled with `faces` synthetic faces (one user
/// each) of `model`'s length: memory per face, 1:N and 1:1 search latency, and whether a
/// noisy copy of an enrolled face is found first.
pub fn index_run(faces: usize, queries: usize, model: crate::FaceModel) -> String {
    let dim = model.descriptor_len();
    let mut out = String::new();
    let before = resident_bytes();
    let started = Instant::now();
    let mut index = FaceIndex::<String>::new(dim);
    index.reserve(faces);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut probes = Vec::new();
    let every = (faces / queries.max(1)).max(1);
    for i in 0..faces {
        let d = synthetic_descriptor(&mut state, dim);
        let id = uuid::Uuid::from_u128(i as u128 + 1);
        let user = format!("user{i:07}");
        index.insert(id, &user, &d);
        if i % every == 0 && probes.len() < queries {
            probes.push((id, user, d));
        }
    }
    let built = started.elapsed();
    let after = resident_bytes();
    let _ = writeln!(
        out,
        "1:N index with {faces} synthetic faces of {dim} numbers ({model}), one user each"
    );
    let _ = writeln!(out, "  filled in {:.2} s", built.as_secs_f64());
    let _ = writeln!(
        out,
        "  index heap {:.0} bytes per face",
        index.heap_bytes() as f64 / faces.max(1) as f64
    );
    if let (Some(b), Some(a)) = (before, after) {
        let _ = writeln!(
            out,
            "  resident memory grew {:.0} MiB: {:.0} bytes per face",
            (a.saturating_sub(b)) as f64 / 1_048_576.0,
            a.saturating_sub(b) as f64 / faces.max(1) as f64
        );
    }
    let (mut all, mut one, mut found) = (Vec::new(), Vec::new(), 0);
    for (id, user, d) in &probes {
        // The same face seen again: a little noise on every component (the same distance
        // whatever the length).
        let step = 0.004 * (128.0 / dim as f32).sqrt();
        let mut noisy = d.clone();
        noisy
            .iter_mut()
            .enumerate()
            .for_each(|(k, v)| *v += if k % 2 == 0 { step } else { -step });
        let t = Instant::now();
        let hits = index.nearest(&noisy, 10);
        all.push(t.elapsed());
        found += usize::from(hits.first().is_some_and(|h| h.face_id == *id));
        let t = Instant::now();
        let _ = index.nearest_of_user(&noisy, user);
        one.push(t.elapsed());
    }
    let ms = |mut v: Vec<Duration>, q: f64| {
        v.sort();
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let _ = writeln!(
        out,
        "  1:N search: median {:.2} ms, p95 {:.2} ms over {} queries; nearest face right {}/{}",
        ms(all.clone(), 0.5),
        ms(all, 0.95),
        probes.len(),
        found,
        probes.len()
    );
    let _ = writeln!(
        out,
        "  1:1 search (user_id given): median {:.3} ms",
        ms(one, 0.5)
    );
    out
}
