//! The embedded face engine: detection, landmarks, alignment and descriptors in pure Rust.

pub mod align;
pub mod detector;
pub mod landmarks;
pub mod pipeline;
pub mod recognition;
pub mod tensor;
pub mod weights;
