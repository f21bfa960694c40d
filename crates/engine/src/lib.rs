//! Face Lock's embedded face engine: detection, 68 landmarks, alignment and a descriptor for
//! every face in a photo (dlib's 128 numbers or a MobileFaceNet's 512, [`FaceModel`]), and a
//! 1:N index of enrolled descriptors, in pure Rust with no native library and no network once
//! its model files are in place.
//!
//! The public API is small:
//! - [`Models`] loads the three networks from a folder ([`models::ensure`] fetches them first),
//!   and [`Models::analyze`] turns pixels into an [`Analysis`]: the faces that count, each with
//!   its box and landmarks, and the dominant face's [`Descriptor`] and quality [`Metrics`].
//! - [`distance`] and [`FaceModel::similarity`] compare two descriptors on the 0-100 scale
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
mod similarity;
#[cfg(test)]
mod testing;
pub mod tools;

pub use face::{align::Similarity2, quality::Metrics, quality::QualityProblem, Face};
pub use kernels::cpu;
pub use models::weights::ModelError;
pub use models::FaceModel;
pub use networks::detector::Detection;
pub use pipeline::{analyze_photo, distance, Analysis, Descriptor, Models, StageTimes};
pub use similarity::{similarity_from_distance, DEFAULT_MIN_SIMILARITY};
