//! Accuracy evaluation of the local engine on labelled pairs of photos (`facelock eval`):
//! false-match and false-non-match rates per similarity threshold, the equal error rate, the
//! false-non-match rate at fixed false-match rates, and the default operating point.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use crate::{
    files::{self, FileError},
    models::FaceModel,
    photo::{DecodeLimits, ImageError},
    pipeline::{analyze_photo, distance, Descriptor, Models, StageTimes},
};

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("line {line}: {problem}")]
    Csv { line: usize, problem: String },
    #[error("the file holds no labelled pairs: there is nothing to measure")]
    NoPairs,
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{name}")]
    Image {
        name: String,
        #[source]
        source: ImageError,
    },
}

/// Evaluation photos may be larger than uploads: they are the operator's own files.
const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 100_000_000,
};

/// One labelled pair and its score.
#[derive(Clone, Debug)]
pub struct ScoredPair {
    pub a: String,
    pub b: String,
    pub same: bool,
    /// 0-100, or `None` when a photo had no usable face (or was refused).
    pub similarity: Option<f32>,
    /// A photo's face is refused by the login checks (turned too far from the camera): the
    /// pair is left out of the rates, and counted apart.
    pub refused: bool,
    /// The subset the pair belongs to (`all` when the file names none).
    pub subset: String,
    /// dlib's verdict on the same pair, when the file gives its distance.
    pub dlib: Option<DlibVerdict>,
}

/// dlib's own result for a pair: a descriptor distance (match below 0.6), or no face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DlibVerdict {
    Distance(f32),
    NoFace,
}

impl DlibVerdict {
    fn matches(self) -> bool {
        matches!(self, Self::Distance(d) if d < 0.6)
    }
}

/// One line of a pairs file: `img_a,img_b,same_person[,subset[,dlib distance or noface]]`.
#[derive(Clone, Debug)]
pub struct LabelledPair {
    pub a: String,
    pub b: String,
    pub same: bool,
    pub subset: String,
    pub dlib: Option<DlibVerdict>,
}

/// Rates at one threshold: a pair matches when its similarity is at least the threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePoint {
    pub threshold: f32,
    pub fmr: f64,
    pub fnmr: f64,
}

/// Reads `img_a,img_b,same_person[,...]` lines (a header line is skipped).
pub fn read_pairs(csv: &str) -> Result<Vec<LabelledPair>, EvalError> {
    let mut out = Vec::new();
    let mut columns = Columns::POSITIONAL;
    for (n, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 3 {
            return Err(EvalError::Csv {
                line: n + 1,
                problem: "expected img_a,img_b,same_person".into(),
            });
        }
        let same = match fields[2] {
            "1" | "true" | "True" => true,
            "0" | "false" | "False" => false,
            _ if n == 0 => {
                columns = Columns::named(&fields);
                continue;
            }
            other => {
                return Err(EvalError::Csv {
                    line: n + 1,
                    problem: format!("same_person is {other:?}, not 0 or 1"),
                })
            }
        };
        let column = |i: Option<usize>| i.and_then(|i| fields.get(i)).copied();
        let dlib = match column(columns.dlib) {
            None | Some("") => None,
            Some("noface") => Some(DlibVerdict::NoFace),
            Some(d) => Some(DlibVerdict::Distance(d.parse().map_err(|_| {
                EvalError::Csv {
                    line: n + 1,
                    problem: format!("dlib distance {d:?} is neither a number nor noface"),
                }
            })?)),
        };
        out.push(LabelledPair {
            a: fields[0].to_owned(),
            b: fields[1].to_owned(),
            same,
            subset: column(columns.subset)
                .filter(|s| !s.is_empty())
                .unwrap_or("all")
                .to_owned(),
            dlib,
        });
    }
    if out.is_empty() {
        return Err(EvalError::NoPairs);
    }
    Ok(out)
}

/// Where a pairs file keeps the optional subset and dlib's distance: in the columns its header
/// names, or without a header the fourth and the fifth.
struct Columns {
    subset: Option<usize>,
    dlib: Option<usize>,
}

impl Columns {
    const POSITIONAL: Self = Self {
        subset: Some(3),
        dlib: Some(4),
    };

    fn named(header: &[&str]) -> Self {
        let find = |names: &[&str]| {
            header
                .iter()
                .position(|h| names.contains(&h.to_ascii_lowercase().as_str()))
        };
        Self {
            subset: find(&["subset"]),
            dlib: find(&["distance", "dlib", "dlib_l2", "dlib_distance"]),
        }
    }
}

/// Rates at every threshold from 0 to 100 in steps of `step`.
pub fn rate_curve(pairs: &[ScoredPair], step: f32) -> Vec<RatePoint> {
    let (genuine, impostor) = by_kind(pairs, |p| p.similarity);
    let mut points = Vec::new();
    let mut t = 0.0f32;
    while t <= 100.0 + 1e-3 {
        points.push(rates_at(&genuine, &impostor, t));
        t += step;
    }
    points
}

/// Whether a pair's score matches at `threshold`: a photo without a face (`None`) matches
/// nothing.
fn matches_at(score: Option<f32>, threshold: f32) -> bool {
    score.is_some_and(|s| s >= threshold)
}

fn rates_at(genuine: &[Option<f32>], impostor: &[Option<f32>], threshold: f32) -> RatePoint {
    let frac = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let matching =
        |scores: &[Option<f32>]| scores.iter().filter(|s| matches_at(**s, threshold)).count();
    RatePoint {
        threshold,
        fmr: frac(matching(impostor), impostor.len()),
        fnmr: frac(genuine.len() - matching(genuine), genuine.len()),
    }
}

/// The threshold where the two error rates are closest, tried at every score that occurs (a
/// pair matches at or above it; `None` never does), and the rates' mean there. `None` when
/// there are no pairs of either kind.
pub fn equal_error_rate(genuine: &[Option<f32>], impostor: &[Option<f32>]) -> Option<(f32, f64)> {
    if genuine.is_empty() || impostor.is_empty() {
        return None;
    }
    let sorted = |scores: &[Option<f32>]| {
        let mut v: Vec<f32> = scores.iter().flatten().copied().collect();
        v.sort_by(f32::total_cmp);
        v
    };
    let (faced_genuine, faced_impostor) = (sorted(genuine), sorted(impostor));
    let mut thresholds: Vec<f32> = faced_genuine
        .iter()
        .chain(&faced_impostor)
        .copied()
        .chain([f32::INFINITY])
        .collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    thresholds
        .into_iter()
        .map(|t| {
            let matching = |v: &[f32]| v.len() - v.partition_point(|s| *s < t);
            let fmr = matching(&faced_impostor) as f64 / impostor.len() as f64;
            let fnmr = 1.0 - matching(&faced_genuine) as f64 / genuine.len() as f64;
            (t, fmr, fnmr)
        })
        .min_by(|a, b| (a.1 - a.2).abs().total_cmp(&(b.1 - b.2).abs()))
        .map(|(t, fmr, fnmr)| (t, (fmr + fnmr) / 2.0))
}

/// The lowest false-non-match rate at which the false-match rate is at most `fmr`, found on
/// the scores themselves rather than on a grid of thresholds: the threshold sits just above
/// the highest impostor score that may not match. A score of `None` (no usable face) never
/// matches. Higher scores are more alike; `None` when there are no pairs of either kind.
pub fn fnmr_at_fmr(
    genuine: &[Option<f32>],
    impostor: &[Option<f32>],
    fmr: f64,
) -> Option<RatePoint> {
    if genuine.is_empty() || impostor.is_empty() {
        return None;
    }
    let mut faced: Vec<f32> = impostor.iter().flatten().copied().collect();
    faced.sort_by(|a, b| b.total_cmp(a));
    // At most this many impostor pairs may match (the small slack absorbs the rounding of
    // `fmr * n`, so that exactly 1e-3 of 1000 pairs counts as one).
    let allowed = (fmr * impostor.len() as f64 + 1e-9).floor() as usize;
    let threshold = faced
        .get(allowed)
        .map_or(f32::NEG_INFINITY, |s| s.next_up());
    Some(rates_at(genuine, impostor, threshold))
}

/// What the engine made of one photo: no usable face, a face the login checks refuse, or a
/// descriptor.
#[derive(Clone, Debug)]
pub enum PhotoFace {
    NoFace,
    Refused,
    Described(Descriptor),
}

/// Every photo the pairs name, described by the local engine's models; read from `root`.
pub fn describe_photos(
    models: &Models,
    root: &Path,
    pairs: &[LabelledPair],
) -> Result<BTreeMap<String, PhotoFace>, EvalError> {
    let mut faces: BTreeMap<String, PhotoFace> = BTreeMap::new();
    for LabelledPair { a, b, .. } in pairs {
        for name in [a, b] {
            if faces.contains_key(name.as_str()) {
                continue;
            }
            let path = root.join(name);
            let bytes = files::read(&path)?;
            let mut times = StageTimes::default();
            let analysis = analyze_photo(models, &bytes, LIMITS, &mut times).map_err(|source| {
                EvalError::Image {
                    name: name.clone(),
                    source,
                }
            })?;
            let face = match analysis.dominant {
                None => PhotoFace::NoFace,
                Some((_, metrics)) if metrics.login_problem().is_some() => PhotoFace::Refused,
                Some((descriptor, _)) => PhotoFace::Described(descriptor),
            };
            faces.insert(name.clone(), face);
        }
    }
    Ok(faces)
}

/// Each subset's photos (a photo belongs to the subsets of the pairs that name it): how many,
/// how many gave no usable face, how many have a face the login checks refuse, as counts and
/// shares of the subset's photos.
pub fn photos_report(faces: &BTreeMap<String, PhotoFace>, pairs: &[LabelledPair]) -> String {
    let mut subsets: BTreeMap<&str, BTreeMap<&str, &PhotoFace>> = BTreeMap::new();
    for p in pairs {
        for name in [&p.a, &p.b] {
            if let Some(face) = faces.get(name.as_str()) {
                let subset = subsets.entry(p.subset.as_str()).or_default();
                subset.insert(name.as_str(), face);
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<12} {:>7} {:>16} {:>16}",
        "subset", "photos", "no usable face", "refused (pose)"
    );
    let share = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
    for (name, photos) in &subsets {
        let total = photos.len();
        let count = |f: fn(&PhotoFace) -> bool| photos.values().filter(|p| f(p)).count();
        let no_face = count(|p| matches!(p, PhotoFace::NoFace));
        let refused = count(|p| matches!(p, PhotoFace::Refused));
        let _ = writeln!(
            out,
            "{name:<12} {total:>7} {no_face:>8} {:>6.1}% {refused:>8} {:>6.1}%",
            share(no_face, total),
            share(refused, total)
        );
    }
    out
}

/// Scores every pair from its photos' faces.
pub fn score_described(
    model: FaceModel,
    faces: &BTreeMap<String, PhotoFace>,
    pairs: &[LabelledPair],
) -> Vec<ScoredPair> {
    pairs
        .iter()
        .map(|p| {
            let (a, b) = (&faces[p.a.as_str()], &faces[p.b.as_str()]);
            let similarity = match (a, b) {
                (PhotoFace::Described(x), PhotoFace::Described(y)) => {
                    Some(model.similarity(distance(x, y)))
                }
                _ => None,
            };
            let refused = matches!(
                (a, b),
                (
                    PhotoFace::Refused,
                    PhotoFace::Described(_) | PhotoFace::Refused
                ) | (PhotoFace::Described(_), PhotoFace::Refused)
            );
            ScoredPair {
                a: p.a.clone(),
                b: p.b.clone(),
                same: p.same,
                similarity,
                refused,
                subset: p.subset.clone(),
                dlib: p.dlib,
            }
        })
        .collect()
}

/// Every different-person pair of the photos a pairs file names: photos joined by a
/// same-person pair (directly or through others) are one person, and every two photos of
/// different people are scored. The similarity at which the false-match rate over all of
/// them falls to 1e-2 .. 1e-5, and the rates at a few similarities (FNMR over the file's own
/// same-person pairs), so that a floor can be chosen by the false-match rate it buys.
pub fn all_impostors_report(
    model: FaceModel,
    faces: &BTreeMap<String, PhotoFace>,
    scored: &[ScoredPair],
    floor: f32,
) -> String {
    let names: Vec<&str> = faces.keys().map(String::as_str).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut person: Vec<usize> = (0..names.len()).collect();
    fn root(person: &mut [usize], mut i: usize) -> usize {
        while person[i] != i {
            person[i] = person[person[i]];
            i = person[i];
        }
        i
    }
    for p in scored.iter().filter(|p| p.same) {
        let (a, b) = (
            root(&mut person, index[p.a.as_str()]),
            root(&mut person, index[p.b.as_str()]),
        );
        person[a] = b;
    }
    let described: Vec<(usize, &Descriptor)> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &faces[*n] {
            PhotoFace::Described(d) => Some((root(&mut person, i), d)),
            _ => None,
        })
        .collect();
    let mut impostor: Vec<f32> = Vec::new();
    for (i, (pa, a)) in described.iter().enumerate() {
        for (pb, b) in &described[i + 1..] {
            if pa != pb {
                impostor.push(model.similarity(distance(a, b)));
            }
        }
    }
    impostor.sort_by(|a, b| b.total_cmp(a));
    let genuine: Vec<Option<f32>> = scored
        .iter()
        .filter(|p| p.same && !p.refused)
        .map(|p| p.similarity)
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "
every different-person pair of the {} photos with a face that passes the login \
         checks: {} pairs",
        described.len(),
        impostor.len()
    );
    if impostor.is_empty() {
        return out;
    }
    let fmr_at = |t: f32| impostor.partition_point(|s| *s >= t) as f64 / impostor.len() as f64;
    let fnmr_at = |t: f32| {
        let rejected = genuine.iter().filter(|s| !matches_at(**s, t)).count();
        rejected as f64 / genuine.len().max(1) as f64
    };
    let _ = writeln!(
        out,
        "similarity>=  FMR (all pairs)  FNMR (the file's same-person pairs)"
    );
    let mut thresholds: Vec<f32> = vec![70.0, 80.0, 85.0, 88.0, 90.0, 92.0, 94.0, 95.0, 96.0, 98.0];
    thresholds.push(floor);
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    for t in thresholds {
        let _ = writeln!(out, "{t:>10.1}    {:<15.6}  {:.4}", fmr_at(t), fnmr_at(t));
    }
    for target in [1e-2, 1e-3, 1e-4, 1e-5] {
        let allowed = (target * impostor.len() as f64 + 1e-9).floor() as usize;
        match impostor.get(allowed) {
            Some(s) if allowed > 0 || target * impostor.len() as f64 >= 1.0 => {
                let t = s.next_up();
                let _ = writeln!(
                    out,
                    "FMR <= {target:e}: similarity above {:.2}, FNMR {:.4}",
                    s,
                    fnmr_at(t)
                );
            }
            _ => {
                let _ = writeln!(out, "FMR <= {target:e}: too few pairs to measure");
            }
        }
    }
    out
}

/// The printed report. Pairs with a face the login checks refuse are counted, then left out
/// of every rate.
pub fn report(all_pairs: &[ScoredPair], default_threshold: f32) -> String {
    let mut out = String::new();
    let refused: Vec<ScoredPair> = all_pairs.iter().filter(|p| p.refused).cloned().collect();
    let kept: Vec<ScoredPair> = all_pairs.iter().filter(|p| !p.refused).cloned().collect();
    let pairs = kept.as_slice();
    if !refused.is_empty() {
        let _ = writeln!(
            out,
            "pairs with a face the login checks refuse (turned too far), left out below: {}",
            refused.len()
        );
    }
    let genuine = pairs.iter().filter(|p| p.same).count();
    let impostor = pairs.len() - genuine;
    let _ = writeln!(
        out,
        "pairs: {} ({genuine} same person, {impostor} different)",
        pairs.len()
    );
    let no_face = pairs.iter().filter(|p| p.similarity.is_none()).count();
    if no_face > 0 {
        let _ = writeln!(out, "pairs with a photo without a usable face: {no_face}");
    }
    let (genuine_similarities, impostor_similarities) = by_kind(pairs, |p| p.similarity);
    let curve = rate_curve(pairs, 0.5);
    let _ = writeln!(out, "\nthreshold  similarity>=  FMR       FNMR");
    for p in curve
        .iter()
        .filter(|p| p.threshold >= 70.0 && p.threshold % 1.0 == 0.0)
    {
        let _ = writeln!(
            out,
            "           {:>6.1}      {:<9.4} {:.4}",
            p.threshold, p.fmr, p.fnmr
        );
    }
    if let Some((t, eer)) = equal_error_rate(&genuine_similarities, &impostor_similarities) {
        let _ = writeln!(out, "\nequal error rate: {eer:.4} at similarity {t:.2}");
    }
    for target in [1e-2, 1e-3, 1e-4] {
        match fnmr_at_fmr(&genuine_similarities, &impostor_similarities, target) {
            Some(p) if p.threshold.is_finite() => {
                let _ = writeln!(
                    out,
                    "FNMR at FMR <= {target:e}: {:.4} (similarity above {:.2})",
                    p.fnmr,
                    p.threshold.next_down()
                );
            }
            Some(p) => {
                let _ = writeln!(
                    out,
                    "FNMR at FMR <= {target:e}: {:.4} (any face matches)",
                    p.fnmr
                );
            }
            None => {
                let _ = writeln!(out, "FNMR at FMR <= {target:e}: not measurable");
            }
        }
    }
    if impostor > 0 && impostor < 1000 {
        let _ = writeln!(
            out,
            "(with {impostor} different-person pairs, the smallest non-zero FMR is {:.4})",
            1.0 / impostor as f64
        );
    }
    let at = rates_at(
        &genuine_similarities,
        &impostor_similarities,
        default_threshold,
    );
    let _ = writeln!(
        out,
        "\ndefault operating point: similarity >= {default_threshold:.1}: FMR {:.4}, FNMR {:.4}",
        at.fmr, at.fnmr
    );
    let wrong: Vec<&ScoredPair> = pairs
        .iter()
        .filter(|p| matches_at(p.similarity, default_threshold) != p.same)
        .collect();
    let _ = writeln!(out, "pairs decided wrongly at the default: {}", wrong.len());
    for p in wrong.iter().take(20) {
        let _ = writeln!(
            out,
            "  {} {} same={} similarity={:?}",
            p.a, p.b, p.same, p.similarity
        );
    }
    if wrong.len() > 20 {
        let _ = writeln!(out, "  ... and {} more", wrong.len() - 20);
    }
    subset_table(&mut out, all_pairs, default_threshold);
    out
}

/// The scores of same-person pairs and of different-person pairs.
fn by_kind(
    pairs: &[ScoredPair],
    score: impl Fn(&ScoredPair) -> Option<f32>,
) -> (Vec<Option<f32>>, Vec<Option<f32>>) {
    let (genuine, impostor): (Vec<&ScoredPair>, Vec<&ScoredPair>) =
        pairs.iter().partition(|p| p.same);
    (
        genuine.into_iter().map(&score).collect(),
        impostor.into_iter().map(&score).collect(),
    )
}

/// Each subset and all of them: pairs, pairs refused by the login checks, pairs without a
/// face, error rates at the default floor, EER and FNMR at FMR <= 1e-3 and 1e-4 (over the
/// pairs not refused); and dlib's figures on the same pairs when known, at its 0.6 threshold
/// and at its own threshold for FMR <= 1e-3.
fn subset_table(out: &mut String, pairs: &[ScoredPair], floor: f32) {
    let mut subsets: Vec<&str> = pairs.iter().map(|p| p.subset.as_str()).collect();
    subsets.sort();
    subsets.dedup();
    let _ = writeln!(
        out,
        "\n{:<12} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>14} {:>14}   dlib: {:>8} {:>8} {:>8} {:>14}",
        "subset",
        "pairs",
        "refused",
        "no face",
        "FMR",
        "FNMR",
        "EER",
        "FNMR@FMR<=1e-3",
        "FNMR@FMR<=1e-4",
        "no face",
        "FMR",
        "FNMR",
        "FNMR@FMR<=1e-3"
    );
    let all = std::iter::once("all").filter(|_| subsets.len() > 1);
    for name in subsets.iter().copied().chain(all) {
        let everything: Vec<ScoredPair> = pairs
            .iter()
            .filter(|p| name == "all" || p.subset == name)
            .cloned()
            .collect();
        let refused = everything.iter().filter(|p| p.refused).count();
        let group: Vec<ScoredPair> = everything.iter().filter(|p| !p.refused).cloned().collect();
        let (genuine, impostor) = by_kind(&group, |p| p.similarity);
        let at = rates_at(&genuine, &impostor, floor);
        let eer = equal_error_rate(&genuine, &impostor).map_or(f64::NAN, |(_, e)| e);
        let strict = |fmr| fnmr_at_fmr(&genuine, &impostor, fmr).map_or(f64::NAN, |p| p.fnmr);
        let no_face = group.iter().filter(|p| p.similarity.is_none()).count();
        let dlib = dlib_rates(&group);
        let _ = write!(
            out,
            "{:<12} {:>6} {:>8} {:>8} {:>8.4} {:>8.4} {:>8.4} {:>14.4} {:>14.4}",
            name,
            everything.len(),
            refused,
            no_face,
            at.fmr,
            at.fnmr,
            eer,
            strict(1e-3),
            strict(1e-4)
        );
        match dlib {
            Some(DlibFigures {
                no_face,
                fmr,
                fnmr,
                strict,
            }) => {
                let _ = writeln!(
                    out,
                    "         {no_face:>8} {fmr:>8.4} {fnmr:>8.4} {strict:>14.4}"
                );
            }
            None => {
                let _ = writeln!(out);
            }
        }
    }
}

/// dlib's figures on a group of pairs.
struct DlibFigures {
    no_face: usize,
    /// At its 0.6 threshold.
    fmr: f64,
    fnmr: f64,
    /// At the threshold where its own FMR is at most 1e-3.
    strict: f64,
}

/// dlib's figures, when every pair of the group has its verdict.
fn dlib_rates(group: &[ScoredPair]) -> Option<DlibFigures> {
    let verdicts: Vec<(bool, DlibVerdict)> = group
        .iter()
        .map(|p| p.dlib.map(|d| (p.same, d)))
        .collect::<Option<_>>()?;
    let frac = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let genuine = verdicts.iter().filter(|(same, _)| *same).count();
    let impostor = verdicts.len() - genuine;
    let false_match = verdicts
        .iter()
        .filter(|(same, d)| !same && d.matches())
        .count();
    let false_non_match = verdicts
        .iter()
        .filter(|(same, d)| *same && !d.matches())
        .count();
    let no_face = verdicts
        .iter()
        .filter(|(_, d)| *d == DlibVerdict::NoFace)
        .count();
    // Nearer is more alike: the negated distance is its score.
    let dlib_score = |p: &ScoredPair| match p.dlib {
        Some(DlibVerdict::Distance(d)) => Some(-d),
        _ => None,
    };
    let (genuine_scores, impostor_scores) = by_kind(group, dlib_score);
    Some(DlibFigures {
        no_face,
        fmr: frac(false_match, impostor),
        fnmr: frac(false_non_match, genuine),
        strict: fnmr_at_fmr(&genuine_scores, &impostor_scores, 1e-3).map_or(f64::NAN, |p| p.fnmr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(same: bool, similarity: f32) -> ScoredPair {
        ScoredPair {
            a: "a".into(),
            b: "b".into(),
            same,
            similarity: Some(similarity),
            refused: false,
            subset: "all".into(),
            dlib: None,
        }
    }

    /// Photos joined by same-person pairs are one person; every other two are scored, and
    /// refused or faceless photos are not.
    #[test]
    fn every_different_person_pair_is_scored_once() {
        let face = |x: f32| PhotoFace::Described(vec![x, 0.0]);
        let faces: BTreeMap<String, PhotoFace> = [
            ("a1", face(0.0)),
            ("a2", face(0.1)),
            ("a3", face(0.2)),
            ("b1", face(1.0)),
            ("c1", PhotoFace::Refused),
            ("d1", PhotoFace::NoFace),
        ]
        .into_iter()
        .map(|(n, f)| (n.to_owned(), f))
        .collect();
        let labelled = |a: &str, b: &str, same| LabelledPair {
            a: a.into(),
            b: b.into(),
            same,
            subset: "all".into(),
            dlib: None,
        };
        // a1-a2 and a2-a3 make one person of the three a's.
        let pairs = [
            labelled("a1", "a2", true),
            labelled("a2", "a3", true),
            labelled("a1", "b1", false),
            labelled("c1", "d1", false),
        ];
        let scored = score_described(FaceModel::DlibResnet, &faces, &pairs);
        let report = all_impostors_report(FaceModel::DlibResnet, &faces, &scored, 90.0);
        assert!(report.contains("4 photos"), "{report}");
        let photos = photos_report(&faces, &pairs);
        let line = photos.lines().find(|l| l.starts_with("all")).unwrap();
        let counts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            counts,
            ["all", "6", "1", "16.7%", "1", "16.7%"],
            "six photos, d1 without a face, c1 refused: {photos}"
        );
        assert!(
            report.contains(": 3 pairs"),
            "three a's against b1: {report}"
        );
        assert!(!scored[0].refused && scored[0].similarity.is_some());
        assert!(
            !scored[3].refused && scored[3].similarity.is_none(),
            "no face is not refused"
        );
    }

    #[test]
    fn rates_count_matches_at_or_above_the_threshold() {
        let pairs = [
            pair(true, 95.0),
            pair(true, 85.0),
            pair(false, 80.0),
            pair(false, 92.0),
        ];
        let curve = rate_curve(&pairs, 0.5);
        let at90 = curve.iter().find(|p| p.threshold == 90.0).unwrap();
        assert_eq!((at90.fmr, at90.fnmr), (0.5, 0.5));
        let at93 = curve.iter().find(|p| p.threshold == 93.0).unwrap();
        assert_eq!((at93.fmr, at93.fnmr), (0.0, 0.5));
        let (genuine, impostor) = by_kind(&pairs, |p| p.similarity);
        assert_eq!(equal_error_rate(&genuine, &impostor), Some((92.0, 0.5)));
        assert_eq!(equal_error_rate(&genuine, &[]), None);
        // A pair without a face fails at every threshold.
        let eer = equal_error_rate(&[Some(95.0), None], &[Some(80.0), Some(70.0)]);
        assert_eq!(eer, Some((80.0, 0.5)));
    }

    #[test]
    fn the_strict_point_lets_through_only_the_allowed_impostors() {
        let genuine = [Some(95.0), Some(85.0), Some(80.0), None];
        let impostor = [Some(92.0), Some(80.0), Some(80.0), Some(70.0), None];
        // None may match: the threshold sits just above the highest impostor.
        let none = fnmr_at_fmr(&genuine, &impostor, 0.0).unwrap();
        assert_eq!((none.fmr, none.fnmr), (0.0, 0.75));
        assert_eq!(none.threshold.next_down(), 92.0);
        // One of five may match; the two tied at 80 may not, nor may the genuine 80.
        let one = fnmr_at_fmr(&genuine, &impostor, 0.2).unwrap();
        assert_eq!((one.fmr, one.fnmr), (0.2, 0.5));
        // When every impostor with a face may match, a pair without a face still does not.
        let all = fnmr_at_fmr(&genuine, &impostor, 1.0).unwrap();
        assert_eq!((all.fmr, all.fnmr), (0.8, 0.25));
        assert!(fnmr_at_fmr(&genuine, &[], 1e-3).is_none());
    }

    #[test]
    fn reads_pairs_with_or_without_a_header() {
        let pairs =
            read_pairs("img_a,img_b,same_person,dlib\na.jpg,b.jpg,1,0.3\nc.jpg,d.jpg,0,0.9\n")
                .unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].same && !pairs[1].same);
        // The header names dlib's column: it is not taken for a subset.
        assert_eq!(pairs[0].subset, "all");
        assert_eq!(pairs[0].dlib, Some(DlibVerdict::Distance(0.3)));
        let named = read_pairs("img_a,img_b,same_person,subset,distance\na,b,0,yale,noface\n");
        assert_eq!(named.unwrap()[0].subset, "yale");
        assert!(read_pairs("a,b,maybe\nx,y,2").is_err());
        assert!(matches!(
            read_pairs("img_a,img_b,same_person\n"),
            Err(EvalError::NoPairs)
        ));
        let with_dlib = read_pairs("a.jpg,b.jpg,1,wild,0.41\nc.jpg,d.jpg,0,yale,noface\n").unwrap();
        assert_eq!(with_dlib[0].subset, "wild");
        assert_eq!(with_dlib[0].dlib, Some(DlibVerdict::Distance(0.41)));
        assert_eq!(with_dlib[1].dlib, Some(DlibVerdict::NoFace));
    }
}
