//! Face geometry: where a face is, how it is aligned onto the descriptor's chip, and whether it
//! is good enough to enrol. Owns no network: the detector and landmark networks live in
//! [`crate::networks`], and [`crate::pipeline`] runs them and these steps in order.

pub mod align;
pub mod quality;

use crate::networks::detector::Detection;

/// A face found in a photo, in the photo's pixels.
#[derive(Clone, Debug)]
pub struct Face {
    pub detection: Detection,
    pub landmarks: [(f32, f32); 68],
    /// Chip -> image transform fitted to the landmarks.
    pub transform: align::Similarity2,
    /// RMS distance (chip pixels) of the landmarks from the fitted mean face.
    pub shape_error: f32,
}
