//! The face descriptor: a 29-layer ResNet that maps a 150x150 aligned face chip to 128 numbers,
//! such that two photos of one person lie close (Euclidean distance) and of two people far.

use std::path::Path;

use crate::{
    kernels::tensor::{self, Activation, Conv, Padding, Tensor},
    kernels::winograd::Winograd3x3,
    models::weights::{ModelError, Weights},
};

pub const CHIP_SIZE: usize = 150;
pub const DESCRIPTOR_LEN: usize = 128;
/// Per-channel means the network was trained with, subtracted from 0-255 RGB.
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
/// The scale the network was trained with: inputs are `(pixel - mean) / 256`.
const INPUT_DIVISOR: f32 = 256.0;

enum Block {
    /// Two 3x3 convolutions and an identity shortcut.
    Same(Conv3, Conv3),
    /// The first convolution halves the size (stride 2, no padding); the shortcut is a 2x2
    /// average pool, zero-padded to the new channel count.
    Down(Conv, Conv3),
}

/// A 3x3 convolution of stride 1 and `Same` padding, computed as is fastest for its size.
enum Conv3 {
    Direct(Conv),
    Winograd(Winograd3x3),
}

impl Conv3 {
    fn new(conv: Conv) -> Self {
        if conv.cin <= WINOGRAD_MAX_CHANNELS {
            Self::Winograd(Winograd3x3::new(&conv))
        } else {
            Self::Direct(conv)
        }
    }

    fn forward(&self, x: &Tensor, act: Activation) -> Tensor {
        match self {
            Self::Direct(conv) => tensor::conv2d(x, conv, 1, Padding::Same, act),
            Self::Winograd(conv) => conv.forward(x, act),
        }
    }
}

/// The widest convolutions computed by Winograd's method: up to the 128-channel stage (8x8
/// maps) it took the descriptor from 6.2 to 5.7 ms; the 256-channel stage's 4x4 maps, 16
/// positions under 16/9 the weights, ran slower (6.1 ms).
const WINOGRAD_MAX_CHANNELS: usize = 128;
pub struct Recognizer {
    stem: Conv,
    blocks: Vec<Block>,
    fc: Vec<f32>,
}

impl Recognizer {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let mut w = Weights::load(dir, "face_recognition_model")?;
        let stem = scaled_conv(&mut w, "conv32_down", [7, 7, 3, 32])?;
        let mut blocks = Vec::new();
        let layout: [(&str, bool, usize, usize); 14] = [
            ("conv32_1", false, 32, 32),
            ("conv32_2", false, 32, 32),
            ("conv32_3", false, 32, 32),
            ("conv64_down", true, 32, 64),
            ("conv64_1", false, 64, 64),
            ("conv64_2", false, 64, 64),
            ("conv64_3", false, 64, 64),
            ("conv128_down", true, 64, 128),
            ("conv128_1", false, 128, 128),
            ("conv128_2", false, 128, 128),
            ("conv256_down", true, 128, 256),
            ("conv256_1", false, 256, 256),
            ("conv256_2", false, 256, 256),
            ("conv256_down_out", true, 256, 256),
        ];
        for (name, down, cin, cout) in layout {
            let c1 = scaled_conv(&mut w, &format!("{name}/conv1"), [3, 3, cin, cout])?;
            let c2 = scaled_conv(&mut w, &format!("{name}/conv2"), [3, 3, cout, cout])?;
            blocks.push(if down {
                Block::Down(c1, Conv3::new(c2))
            } else {
                Block::Same(Conv3::new(c1), Conv3::new(c2))
            });
        }
        let fc = w.take("fc", &[256, DESCRIPTOR_LEN])?;
        Ok(Self { stem, blocks, fc })
    }

    /// The descriptor of a `CHIP_SIZE` x `CHIP_SIZE` RGB chip (row-major, 3 bytes a pixel).
    pub fn describe(&self, chip: &[u8]) -> [f32; DESCRIPTOR_LEN] {
        assert_eq!(chip.len(), CHIP_SIZE * CHIP_SIZE * 3, "chip size");
        let x = tensor::from_rgb(CHIP_SIZE, CHIP_SIZE, chip, MEAN_RGB, INPUT_DIVISOR);
        let x = tensor::conv2d(&x, &self.stem, 2, Padding::Valid, Activation::Relu);
        let mut x = tensor::max_pool(&x, 3, 2, Padding::Valid);
        for block in &self.blocks {
            x = match block {
                Block::Same(c1, c2) => {
                    let y = c1.forward(&x, Activation::Relu);
                    let mut y = c2.forward(&y, Activation::Linear);
                    tensor::add_assign(&mut y, &x);
                    tensor::relu(&mut y);
                    y
                }
                Block::Down(c1, c2) => {
                    let y = tensor::conv2d(&x, c1, 2, Padding::Valid, Activation::Relu);
                    let y = c2.forward(&y, Activation::Linear);
                    let shortcut = tensor::avg_pool_valid(&x, 2, 2);
                    let mut y = add_padded(y, &shortcut);
                    tensor::relu(&mut y);
                    y
                }
            };
        }
        let pooled = tensor::global_mean(&x);
        let out = tensor::dense(&pooled, &self.fc, None, DESCRIPTOR_LEN);
        let mut d = [0.0; DESCRIPTOR_LEN];
        d.copy_from_slice(&out);
        d
    }
}

/// A convolution followed by a per-channel scale layer, folded into one.
fn scaled_conv(w: &mut Weights, prefix: &str, shape: [usize; 4]) -> Result<Conv, ModelError> {
    let mut conv = w.conv(
        &format!("{prefix}/conv/filters"),
        &format!("{prefix}/conv/bias"),
        shape,
    )?;
    let scale = w.take(&format!("{prefix}/scale/weights"), &[shape[3]])?;
    let shift = w.take(&format!("{prefix}/scale/biases"), &[shape[3]])?;
    conv.fold_affine(&scale, &shift);
    Ok(conv)
}

/// `y + shortcut`, where the shortcut may have fewer channels (zero-extended) and `y` may be
/// one row and column smaller (zero-extended at the bottom and right).
fn add_padded(y: Tensor, shortcut: &Tensor) -> Tensor {
    let (h, w, c) = (shortcut.h.max(y.h), shortcut.w.max(y.w), y.c);
    let mut out = Tensor::zeros(h, w, c);
    for row in 0..y.h {
        for col in 0..y.w {
            let src = &y.data[(row * y.w + col) * c..][..c];
            out.data[(row * w + col) * c..][..c].copy_from_slice(src);
        }
    }
    for row in 0..shortcut.h {
        for col in 0..shortcut.w {
            let src = &shortcut.data[(row * shortcut.w + col) * shortcut.c..][..shortcut.c];
            let dst = &mut out.data[(row * w + col) * c..][..shortcut.c];
            dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
        }
    }
    out
}
