//! The networks of the embedded engine, each built from its weight file on the crate's
//! kernels: the face detector, the 68-point landmark network, and the two descriptor networks
//! (dlib's ResNet, and a MobileFaceNet read from ONNX through [`graph`]).

pub mod detector;
pub mod graph;
pub mod landmarks;
pub mod mobilefacenet;
pub mod recognition;
