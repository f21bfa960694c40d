//! The 0-100 similarity scale the API speaks, mapped from each descriptor's distance.

use crate::models::FaceModel;

/// The similarity floor of this engine, whichever the descriptor.
pub const DEFAULT_MIN_SIMILARITY: f32 = 90.0;

impl FaceModel {
    /// The similarity of two faces whose descriptors lie `distance` apart (Euclidean).
    pub fn similarity(self, distance: f32) -> f32 {
        match self {
            Self::DlibResnet => similarity_from_distance(distance),
            Self::MobileFaceNet => similarity_from_cosine(1.0 - distance * distance / 2.0),
        }
    }
}

/// dlib's scale: 100 at distance 0, 90 at dlib's usual same-person threshold of 0.6, then
/// down to 0 at 1.2.
pub fn similarity_from_distance(d: f32) -> f32 {
    let s = if d <= 0.6 {
        100.0 - d * (10.0 / 0.6)
    } else {
        90.0 - (d - 0.6) * 150.0
    };
    s.clamp(0.0, 100.0)
}

/// The MobileFaceNet's scale, from the cosine of two unit descriptors: straight lines between
/// the points of `COSINE_POINTS`.
fn similarity_from_cosine(cos: f32) -> f32 {
    let points = COSINE_POINTS;
    if cos <= points[0].0 {
        return points[0].1;
    }
    for pair in points.windows(2) {
        let ((c0, s0), (c1, s1)) = (pair[0], pair[1]);
        if cos <= c1 {
            return s0 + (s1 - s0) * (cos - c0) / (c1 - c0);
        }
    }
    100.0
}

/// (cosine, similarity) points of the MobileFaceNet's scale, increasing. Calibrated on the
/// development set (`../shared/faces-dev`), over the faces that pass the login checks: 90, the
/// default floor, is cosine 0.46, where the pairs file's impostors match at FMR 7e-4 (at most
/// 1e-3); of every different-person pair of its photos, 1 in 100 lies above cosine 0.26 (70)
/// and 1 in 100,000 above 0.57 (94.4). `facelock eval` prints the rates at every similarity.
const COSINE_POINTS: [(f32, f32); 5] = [
    (0.0, 0.0),
    (0.26, 70.0),
    (0.46, 90.0),
    (0.66, 98.0),
    (1.0, 100.0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlib_scale_is_monotonic_and_anchored() {
        assert_eq!(similarity_from_distance(0.0), 100.0);
        assert!((similarity_from_distance(0.6) - 90.0).abs() < 1e-4);
        assert_eq!(similarity_from_distance(1.2), 0.0);
        assert_eq!(similarity_from_distance(5.0), 0.0);
        let mut last = 101.0;
        for i in 0..=130 {
            let s = similarity_from_distance(i as f32 / 100.0);
            assert!(s <= last);
            last = s;
        }
    }

    #[test]
    fn the_mobilefacenet_floor_is_its_calibrated_cosine() {
        let at_cosine = |c: f32| FaceModel::MobileFaceNet.similarity((2.0 - 2.0 * c).sqrt());
        assert!((at_cosine(0.46) - 90.0).abs() < 1e-3);
        assert!((at_cosine(0.26) - 70.0).abs() < 1e-3);
        assert_eq!(at_cosine(-0.5), 0.0);
    }

    #[test]
    fn every_scale_falls_from_100_to_0_as_faces_part() {
        for model in FaceModel::ALL {
            assert_eq!(model.similarity(0.0), 100.0, "{model}");
            assert_eq!(model.similarity(2.0), 0.0, "{model}");
            let mut last = 101.0;
            for i in 0..=200 {
                let s = model.similarity(i as f32 / 100.0);
                assert!(s <= last && (0.0..=100.0).contains(&s), "{model} at {i}");
                last = s;
            }
        }
    }
}
