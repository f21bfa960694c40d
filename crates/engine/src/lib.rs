//! Face Lock's embedded face engine: detection, 68 landmarks, alignment and a 128-number
//! descriptor for every face in a photo, and a 1:N index of enrolled descriptors, in pure Rust
//! with no native library and no network once its model files are in place.
//!
//! The public API is small:
//! - [`Models`] loads the three networks from a folder ([`models::ensure`] fetches them first),
//!   and [`Models::analyze`] turns pixels into an [`Analysis`]: the faces that count, each with
//!   its box and landmarks, and the dominant face's [`Descriptor`] and quality [`Metrics`].
//! - [`distance`] and [`similarity_from_distance`] compare two descriptors on the 0-100 scale
//!   the API speaks; [`DEFAULT_MIN_SIMILARITY`] is the floor.
//! - [`index::FaceIndex`] holds enrolled descriptors for 1:N and 1:1 search.
//! - [`photo`] decodes a photo within bounds; [`cpu`] caps the kernels' vector instructions.
//! - [`tools`] are the developer's figures: `bench` (speed, memory) and `eval` (accuracy).
//!
//! The numeric kernels ([`kernels`]) and the networks built on them are not public: a caller
//! sees faces, not tensors. Nothing here knows about HTTP, users' records or stores.

mod face;
pub mod files;
pub mod index;
mod kernels;
pub mod models;
mod networks;
pub mod photo;
mod pipeline;
#[cfg(test)]
mod testing;
pub mod tools;

pub use face::{align::Similarity2, quality::Metrics, quality::QualityProblem, Face};
pub use kernels::cpu;
pub use models::weights::ModelError;
pub use networks::{detector::Detection, recognition::DESCRIPTOR_LEN};
pub use pipeline::{analyze_photo, distance, Analysis, Descriptor, Models, StageTimes};

/// The similarity floor of this engine: dlib's usual same-person distance of 0.6.
pub const DEFAULT_MIN_SIMILARITY: f32 = 90.0;

/// Maps a descriptor distance to the 0-100 similarity scale: 100 at distance 0, 90 at dlib's
/// usual same-person threshold of 0.6, then down to 0 at 1.2.
pub fn similarity_from_distance(d: f32) -> f32 {
    let s = if d <= 0.6 {
        100.0 - d * (10.0 / 0.6)
    } else {
        90.0 - (d - 0.6) * 150.0
    };
    s.clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_scale_is_monotonic_and_anchored() {
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
}
