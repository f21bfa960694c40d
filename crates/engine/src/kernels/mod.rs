//! The numeric kernels every network runs on: tensors and convolutions, the packed matrix
//! product, Winograd's 3x3 convolutions and image resampling, each with vector paths chosen at
//! run time ([`cpu`]), and a scope where subnormal numbers are flushed to zero. Nothing here knows about faces. The crate's `unsafe` code is here, but
//! for the 1:N index's two calls into its AVX-512 and AVX2 scans; none of it is public outside
//! the crate except the instruction-set choice.

pub mod cpu;
pub(crate) mod matmul;
pub(crate) mod resample;
pub(crate) mod subnormals;
pub(crate) mod tensor;
pub(crate) mod winograd;
