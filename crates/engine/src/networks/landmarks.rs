//! 68-point facial landmarks from a face crop: four densely connected blocks of depthwise
//! separable convolutions and a fully connected layer that outputs 68 (x, y) pairs.

use std::path::Path;

use crate::{
    kernels::tensor::{self, Activation, Conv, Padding, Separable, Tensor},
    models::weights::{ModelError, Weights},
};

pub const INPUT_SIZE: usize = 112;
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

enum First {
    Regular(Conv),
    Separable(Separable),
}

struct DenseBlock {
    first: First,
    rest: [Separable; 3],
}

impl DenseBlock {
    /// out1 = relu(conv0(x)); each later conv sees relu of the sum of all earlier outputs;
    /// the block returns relu of the sum of all four.
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut sum = match &self.first {
            First::Regular(conv) => tensor::conv2d(x, conv, 2, Padding::Same, Activation::Relu),
            First::Separable(sep) => sep.forward(x, 2, Activation::Relu),
        };
        let mut input = sum.clone();
        for (i, conv) in self.rest.iter().enumerate() {
            let out = conv.forward(&input, 1, Activation::Linear);
            tensor::add_assign(&mut sum, &out);
            if i < self.rest.len() - 1 {
                input = sum.clone();
                tensor::relu(&mut input);
            }
        }
        tensor::relu(&mut sum);
        sum
    }
}

pub struct LandmarkNet {
    blocks: Vec<DenseBlock>,
    fc_weights: Vec<f32>,
    fc_bias: Vec<f32>,
}

impl LandmarkNet {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let mut w = Weights::load(dir, "face_landmark_68_model")?;
        let mut blocks = Vec::new();
        for (i, (cin, cout)) in [(3, 32), (32, 64), (64, 128), (128, 256)]
            .into_iter()
            .enumerate()
        {
            let prefix = format!("dense{i}");
            let first = if i == 0 {
                First::Regular(w.conv(
                    &format!("{prefix}/conv0/filters"),
                    &format!("{prefix}/conv0/bias"),
                    [3, 3, cin, cout],
                )?)
            } else {
                First::Separable(w.separable(&format!("{prefix}/conv0"), cin, cout)?)
            };
            let rest = [
                w.separable(&format!("{prefix}/conv1"), cout, cout)?,
                w.separable(&format!("{prefix}/conv2"), cout, cout)?,
                w.separable(&format!("{prefix}/conv3"), cout, cout)?,
            ];
            blocks.push(DenseBlock { first, rest });
        }
        Ok(Self {
            blocks,
            fc_weights: w.take("fc/weights", &[256, 136])?,
            fc_bias: w.take("fc/bias", &[136])?,
        })
    }

    /// Landmarks of a `INPUT_SIZE` square RGB input, as fractions of its side.
    pub fn predict(&self, input: &[u8]) -> [(f32, f32); 68] {
        assert_eq!(
            input.len(),
            INPUT_SIZE * INPUT_SIZE * 3,
            "landmark input size"
        );
        let mut x = tensor::from_rgb(INPUT_SIZE, INPUT_SIZE, input, MEAN_RGB, 255.0);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        let pooled = tensor::avg_pool_valid(&x, 7, 2);
        let out = tensor::dense(&pooled.data, &self.fc_weights, Some(&self.fc_bias), 136);
        let mut points = [(0.0, 0.0); 68];
        for (i, p) in points.iter_mut().enumerate() {
            *p = (out[2 * i], out[2 * i + 1]);
        }
        points
    }
}
