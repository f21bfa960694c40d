//! Is a face good enough to enrol, or to log in? Measured on the aligned chip and the
//! landmarks, with the reasons Rekognition uses. A login photo has to show the face from the
//! front ([`Metrics::login_problem`]); the other checks are for enrolment.

use super::{align::Similarity2, Face};
use crate::networks::recognition::CHIP_SIZE;

/// Why an enrolment photo was refused although a face was found (Rekognition's reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QualityProblem {
    SmallBoundingBox,
    LowSharpness,
    LowBrightness,
    ExtremePose,
    LowConfidence,
    LowFaceQuality,
}

impl QualityProblem {
    pub const ALL: [QualityProblem; 6] = [
        Self::SmallBoundingBox,
        Self::LowSharpness,
        Self::LowBrightness,
        Self::ExtremePose,
        Self::LowConfidence,
        Self::LowFaceQuality,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::SmallBoundingBox => "SMALL_BOUNDING_BOX",
            Self::LowSharpness => "LOW_SHARPNESS",
            Self::LowBrightness => "LOW_BRIGHTNESS",
            Self::ExtremePose => "EXTREME_POSE",
            Self::LowConfidence => "LOW_CONFIDENCE",
            Self::LowFaceQuality => "LOW_FACE_QUALITY",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Self::SmallBoundingBox => {
                "The face is too small in the image; move closer to the camera"
            }
            Self::LowSharpness => "The face is too blurry to enrol",
            Self::LowBrightness => "The face is too dark to enrol; improve the lighting",
            Self::ExtremePose => "The face is turned too far from the camera; face it",
            Self::LowConfidence => "The detector is not confident this is a face",
            Self::LowFaceQuality => "The face is of too low quality to enrol",
        }
    }

    /// The problem a [`Self::code`] names (also Rekognition's `Reasons` values, which these
    /// are).
    pub fn from_code(reason: &str) -> Option<Self> {
        Some(match reason {
            "SMALL_BOUNDING_BOX" => Self::SmallBoundingBox,
            "LOW_SHARPNESS" => Self::LowSharpness,
            "LOW_BRIGHTNESS" => Self::LowBrightness,
            "EXTREME_POSE" => Self::ExtremePose,
            "LOW_CONFIDENCE" => Self::LowConfidence,
            "LOW_FACE_QUALITY" => Self::LowFaceQuality,
            _ => return None,
        })
    }
}

/// Faces narrower than this many pixels (cheek to cheek) are too small to enrol.
const MIN_FACE_WIDTH_PX: f32 = 60.0;
/// Mean luma (0-255) of the face below this is too dark.
const MIN_BRIGHTNESS: f32 = 45.0;
/// Variance of the Laplacian of the face's luma below this is too blurry.
const MIN_SHARPNESS: f32 = 25.0;
/// Nose position between the jaw sides (0.5 = frontal) outside this band is turned too far.
const YAW_BAND: (f32, f32) = (0.15, 0.85);
/// How far the nose's place between the jaw sides moves per unit of the sine of the head's
/// turn: measured on the `pose` series of the development set, whose medians at 30 and 45
/// degrees either way give 0.49-0.53 (frontal median 0.488).
const YAW_GAIN: f32 = 0.52;
/// The widest turn, in degrees as estimated from the landmarks, at which a face may log in.
/// On the `pose` series (labelled turns, `facelock describe`): every face at 0 and 15 degrees
/// passes, 59 of 60 at 30, 25 of 60 at 45, 2 of 180 beyond; of the `wild` photos 9 of 185
/// (4.9%, real three-quarter views) are refused, of `yale` none. At 35 degrees `wild` lost
/// 9.2%. A profile is not a login: different people seen from the side look more alike to the
/// descriptor than the same person from the front and the side.
pub const LOGIN_MAX_YAW_DEGREES: f32 = 45.0;
/// RMS distance, in chip pixels, between the landmarks and the best-fitting mean face above
/// which the landmarks do not describe a plausible face.
const MAX_SHAPE_ERROR: f32 = 8.0;

/// Whether landmarks that far from the mean face (RMS, chip pixels) describe a plausible face.
pub(crate) fn plausible_shape(shape_error: f32) -> bool {
    shape_error <= MAX_SHAPE_ERROR
}

#[derive(Clone, Copy, Debug)]
pub struct Metrics {
    pub face_width_px: f32,
    pub brightness: f32,
    pub sharpness: f32,
    pub yaw: f32,
    pub shape_error: f32,
}

impl Metrics {
    /// The metrics of a face from its whole dlib chip.
    pub fn measure(face: &Face, chip: &[u8]) -> Self {
        Self::measure_centre(face, &centre_of(chip))
    }

    /// The metrics of a face from the central [`CENTER`] x [`CENTER`] square of its dlib chip
    /// alone ([`centre_transform`]), all they are measured on.
    pub fn measure_centre(face: &Face, centre: &[u8]) -> Self {
        let t = face.transform;
        // The mean face spans 1/(1 + 2 * padding) of the chip.
        let face_width_px = CHIP_SIZE as f32 / 1.5 * t.scale();
        let luma = luma(centre);
        let inv = invert(t);
        let nose = inv.apply(face.landmarks[30]).0;
        let left = inv.apply(face.landmarks[0]).0;
        let right = inv.apply(face.landmarks[16]).0;
        let yaw = if (right - left).abs() > 1e-3 {
            (nose - left) / (right - left)
        } else {
            0.5
        };
        Self {
            face_width_px,
            brightness: luma.iter().sum::<f32>() / luma.len() as f32,
            sharpness: laplacian_variance(&luma, CENTER),
            yaw,
            shape_error: face.shape_error,
        }
    }

    /// The head's turn in degrees, estimated from where the nose lies between the jaw sides:
    /// 0 from the front, positive turned towards the image's left (the subject's right).
    pub fn yaw_degrees(&self) -> f32 {
        ((0.5 - self.yaw) / YAW_GAIN)
            .clamp(-1.0, 1.0)
            .asin()
            .to_degrees()
    }

    /// Why this face may not log in, if it may not: turned too far from the camera.
    pub fn login_problem(&self) -> Option<QualityProblem> {
        (self.yaw_degrees().abs() > LOGIN_MAX_YAW_DEGREES).then_some(QualityProblem::ExtremePose)
    }

    /// The first reason this face should not be enrolled, if any.
    pub fn problem(&self) -> Option<QualityProblem> {
        if self.shape_error > MAX_SHAPE_ERROR {
            Some(QualityProblem::LowConfidence)
        } else if self.face_width_px < MIN_FACE_WIDTH_PX {
            Some(QualityProblem::SmallBoundingBox)
        } else if !(YAW_BAND.0..=YAW_BAND.1).contains(&self.yaw) {
            Some(QualityProblem::ExtremePose)
        } else if self.brightness < MIN_BRIGHTNESS {
            Some(QualityProblem::LowBrightness)
        } else if self.sharpness < MIN_SHARPNESS {
            Some(QualityProblem::LowSharpness)
        } else {
            None
        }
    }
}

/// Side of the central square of the chip that holds the inner face.
pub const CENTER: usize = 76;
/// Where that square starts in the chip.
const CENTER_START: usize = (CHIP_SIZE - CENTER) / 2;

/// The transform (square -> image) of the central square of a chip whose transform is `t`.
pub fn centre_transform(t: Similarity2) -> Similarity2 {
    let start = CENTER_START as f32;
    let (tx, ty) = t.apply((start, start));
    Similarity2 { tx, ty, ..t }
}

/// The central square of a whole chip, as RGB bytes.
fn centre_of(chip: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CENTER * CENTER * 3);
    for y in CENTER_START..CENTER_START + CENTER {
        out.extend_from_slice(&chip[(y * CHIP_SIZE + CENTER_START) * 3..][..CENTER * 3]);
    }
    out
}

fn luma(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

fn laplacian_variance(luma: &[f32], side: usize) -> f32 {
    let mut values = Vec::with_capacity(side * side);
    for y in 1..side - 1 {
        for x in 1..side - 1 {
            let c = luma[y * side + x];
            let lap = luma[(y - 1) * side + x]
                + luma[(y + 1) * side + x]
                + luma[y * side + x - 1]
                + luma[y * side + x + 1]
                - 4.0 * c;
            values.push(lap);
        }
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32
}

fn invert(t: Similarity2) -> Similarity2 {
    let d = t.a * t.a + t.b * t.b;
    let (a, b) = (t.a / d, -t.b / d);
    Similarity2 {
        a,
        b,
        tx: -(a * t.tx - b * t.ty),
        ty: -(b * t.tx + a * t.ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_the_transform() {
        let t = Similarity2 {
            a: 1.3,
            b: -0.4,
            tx: 7.0,
            ty: 2.0,
        };
        let p = (3.0, -5.0);
        let back = invert(t).apply(t.apply(p));
        assert!((back.0 - p.0).abs() < 1e-4 && (back.1 - p.1).abs() < 1e-4);
    }

    #[test]
    fn flat_images_are_not_sharp() {
        assert_eq!(laplacian_variance(&[100.0; 16], 4), 0.0);
    }

    #[test]
    fn a_login_face_must_be_turned_less_than_the_limit() {
        let at = |yaw: f32| Metrics {
            face_width_px: 100.0,
            brightness: 120.0,
            sharpness: 100.0,
            yaw,
            shape_error: 1.0,
        };
        assert_eq!(at(0.5).yaw_degrees(), 0.0);
        assert!(at(0.2).yaw_degrees() > 30.0 && at(0.8).yaw_degrees() < -30.0);
        for yaw in [0.2, 0.5, 0.8] {
            assert_eq!(at(yaw).login_problem(), None, "{yaw}");
        }
        for yaw in [0.1, 0.9, -0.2, 1.3] {
            assert_eq!(
                at(yaw).login_problem(),
                Some(QualityProblem::ExtremePose),
                "{yaw}"
            );
        }
    }

    /// The central square cut on its own is the centre of the whole chip, to a unit of
    /// rounding (the sampling positions are summed in another order), where no shrinking is
    /// involved (a face about the chip's size, turned a little).
    #[test]
    fn the_centre_alone_is_the_centre_of_the_whole_chip() {
        use crate::{face::align::extract_chip, kernels::resample::Canvas};
        let img = crate::testing::pseudo_photo(300, 260, 3);
        let t = Similarity2 {
            a: 1.1,
            b: 0.15,
            tx: 40.0,
            ty: 20.0,
        };
        let whole = extract_chip(Canvas::plain(&img), t, CHIP_SIZE);
        let centre = extract_chip(Canvas::plain(&img), centre_transform(t), CENTER);
        let expected = centre_of(&whole);
        assert_eq!(centre.len(), expected.len());
        let worst = centre
            .iter()
            .zip(&expected)
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(worst <= Some(1), "{worst:?}");
    }
}
