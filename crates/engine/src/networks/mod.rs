//! The three networks of the embedded engine, each built from its weight file on the crate's
//! kernels: the face detector, the 68-point landmark network and the descriptor network.

pub mod detector;
pub mod landmarks;
pub mod recognition;
