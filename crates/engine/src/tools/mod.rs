//! The developer's figures, printed by `facelock bench` (speed and memory) and `facelock eval`
//! (accuracy on labelled pairs). They run the same code the server runs; nothing here is used
//! while serving.

pub mod bench;
pub mod eval;
