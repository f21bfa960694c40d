//! Liveness geometry on real pixels: head-turn series of one sitting (`../shared/faces-dev`,
//! `pose`) against a photo of the same face moved, scaled, rolled and tilted in perspective in
//! front of the camera, as a print or a screen would be.

use std::{path::Path, sync::OnceLock};

use facelock::{
    engine::local::pipeline::{Models, StageTimes},
    liveness::geometry::{planar_residual, yaw, Homography, Landmarks, MIN_HEAD_RESIDUAL},
};
use image::RgbImage;

use crate::helpers::{models_dir, shared_faces_dev};

fn models() -> Option<&'static Models> {
    let dir = models_dir()?;
    static MODELS: OnceLock<Models> = OnceLock::new();
    Some(MODELS.get_or_init(|| Models::load(&dir).unwrap()))
}

/// The dominant face's landmarks, if a face is found.
fn landmarks(models: &Models, image: &RgbImage) -> Option<Landmarks> {
    let analysis = models.analyze(image, &mut StageTimes::default());
    (analysis.turned == 0).then_some(())?;
    analysis.faces.first().map(|f| f.landmarks)
}

/// The frames of one sitting of `pose`, by yaw (degrees): `<person>/person<NN><series><frame>+0<yaw>.jpg`.
fn sitting(root: &Path, person: u32, series: u32, yaw_deg: i32) -> RgbImage {
    let file = format!(
        "pose/pointing04_{person:02}/person{person:02}{series}{:02}+0{yaw_deg:+}.jpg",
        frame_of(yaw_deg)
    );
    image::open(root.join(&file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .to_rgb8()
}

/// Pointing'04 numbers the tilt-0 frames 40-52 from yaw -90 to +90.
fn frame_of(yaw_deg: i32) -> i32 {
    40 + (yaw_deg + 90) / 15
}

/// How a flat picture is moved in front of the camera: turned and tilted about its centre
/// (radians), rolled, scaled and shifted (pixels).
#[derive(Clone, Copy)]
struct PictureMove {
    turn: f32,
    tilt: f32,
    roll: f32,
    scale: f32,
    shift: (f32, f32),
}

/// `image` as a flat picture would look after `m`, seen by a pinhole camera (focal length about
/// the image width, as a phone's front camera).
fn picture_moved(image: &RgbImage, m: &PictureMove) -> RgbImage {
    let PictureMove {
        turn,
        tilt,
        roll,
        scale,
        shift,
    } = *m;
    let (w, h) = (image.width() as f32, image.height() as f32);
    let f = w;
    let corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)];
    let moved: Vec<(f32, f32)> = corners
        .iter()
        .map(|&(x, y)| {
            let (x, y) = (x - w / 2.0, y - h / 2.0);
            let (x, y) = (
                x * roll.cos() - y * roll.sin(),
                x * roll.sin() + y * roll.cos(),
            );
            // Turn about the vertical axis, tilt about the horizontal one.
            let (x, z) = (x * turn.cos(), x * turn.sin());
            let (y, z) = (y * tilt.cos(), z + y * tilt.sin());
            let depth = f + z;
            (
                w / 2.0 + shift.0 + scale * f * x / depth,
                h / 2.0 + shift.1 + scale * f * y / depth,
            )
        })
        .collect();
    let back = Homography::fit(&moved, &corners).unwrap();
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let Some((sx, sy)) = back.apply((x as f32 + 0.5, y as f32 + 0.5)) else {
            return image::Rgb([128, 128, 128]);
        };
        bilinear(image, sx - 0.5, sy - 0.5)
    })
}

fn bilinear(image: &RgbImage, x: f32, y: f32) -> image::Rgb<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    if x < 0.0 || y < 0.0 || x >= (w - 1) as f32 || y >= (h - 1) as f32 {
        return image::Rgb([128, 128, 128]);
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |dx: u32, dy: u32| image.get_pixel(x0 + dx, y0 + dy).0;
    let mut out = [0u8; 3];
    for (c, v) in out.iter_mut().enumerate() {
        let top = f32::from(p(0, 0)[c]) * (1.0 - fx) + f32::from(p(1, 0)[c]) * fx;
        let bottom = f32::from(p(0, 1)[c]) * (1.0 - fx) + f32::from(p(1, 1)[c]) * fx;
        *v = (top * (1.0 - fy) + bottom * fy).round() as u8;
    }
    image::Rgb(out)
}

fn quantiles(mut v: Vec<f32>) -> String {
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n {} min {:.4} p05 {:.4} median {:.4} p95 {:.4} max {:.4}",
        v.len(),
        v[0],
        q(0.05),
        q(0.5),
        q(0.95),
        v[v.len() - 1]
    )
}

/// Moves of a picture in front of a camera, up to 34 degrees of perspective.
const PICTURE_MOVES: [PictureMove; 4] = [
    PictureMove {
        turn: 0.35,
        tilt: 0.0,
        roll: 0.0,
        scale: 1.0,
        shift: (0.0, 0.0),
    },
    PictureMove {
        turn: -0.6,
        tilt: -0.15,
        roll: -0.1,
        scale: 1.1,
        shift: (-12.0, 0.0),
    },
    PictureMove {
        turn: 0.0,
        tilt: 0.4,
        roll: 0.05,
        scale: 0.9,
        shift: (10.0, 5.0),
    },
    PictureMove {
        turn: 0.2,
        tilt: -0.3,
        roll: 0.2,
        scale: 1.2,
        shift: (5.0, -8.0),
    },
];

/// The threshold holds on real pixels: every head turned 30 degrees or more (either way)
/// scores above it against the frontal frame of its sitting, every moved picture of that
/// frame below it. Prints what it measured.
#[test]
fn a_turning_head_is_told_from_a_moved_picture() {
    let (Some(root), Some(models)) = (shared_faces_dev(), models()) else {
        return;
    };
    let mut turned = std::collections::BTreeMap::<i32, Vec<f32>>::new();
    let mut yaws = std::collections::BTreeMap::<i32, Vec<f32>>::new();
    let mut pictures = Vec::new();
    for person in 1..=15 {
        for series in 1..=2 {
            let front_image = sitting(&root, person, series, 0);
            let front = landmarks(models, &front_image).expect("a frontal face");
            yaws.entry(0).or_default().push(yaw(&front));
            for deg in [-45, -30, -15, 15, 30, 45] {
                let l =
                    landmarks(models, &sitting(&root, person, series, deg)).unwrap_or_else(|| {
                        panic!("person {person} sitting {series} at {deg}: no face")
                    });
                turned
                    .entry(deg)
                    .or_default()
                    .push(planar_residual(&front, &l).unwrap());
                yaws.entry(deg).or_default().push(yaw(&l));
            }
            for m in &PICTURE_MOVES {
                let moved = picture_moved(&front_image, m);
                let l = landmarks(models, &moved).expect("the moved picture's face");
                pictures.push(planar_residual(&front, &l).unwrap());
            }
        }
    }
    for (deg, v) in &turned {
        eprintln!("head turned {deg:+} deg: residual {}", quantiles(v.clone()));
    }
    for (deg, v) in &yaws {
        eprintln!("head turned {deg:+} deg: yaw {}", quantiles(v.clone()));
    }
    eprintln!("moved picture: residual {}", quantiles(pictures.clone()));
    for deg in [-45, -30, 30, 45] {
        let low: Vec<_> = turned[&deg]
            .iter()
            .filter(|r| **r < MIN_HEAD_RESIDUAL)
            .collect();
        assert!(
            low.is_empty(),
            "heads turned {deg} deg taken for a picture: {low:?}"
        );
    }
    let high: Vec<_> = pictures
        .iter()
        .filter(|r| **r >= MIN_HEAD_RESIDUAL)
        .collect();
    assert!(high.is_empty(), "moved pictures taken for a head: {high:?}");
}
