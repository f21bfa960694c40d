//! Face detection: a small YOLO-style network of depthwise separable convolutions that scores
//! five anchor boxes in every cell of a 32-pixel grid, followed by non-maximum suppression.

use std::path::Path;

use super::{
    tensor::{self, Activation, Conv, Padding, Separable},
    weights::{ModelError, Weights},
};

const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
/// Anchor box sizes, in grid cells.
const ANCHORS: [(f32, f32); 5] = [
    (1.603_231, 2.094_468),
    (6.041_143, 7.080_126),
    (2.882_459, 3.518_061),
    (4.266_906, 5.178_857),
    (9.041_765, 10.663_08),
];
const IOU_THRESHOLD: f32 = 0.4;
/// Pixels of input per cell of the grid the network scores: its five halvings.
pub const CELL: usize = 32;

/// A detected face, in pixels of the image given to [`Detector::detect`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
    pub score: f32,
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.right - self.left
    }
    pub fn height(&self) -> f32 {
        self.bottom - self.top
    }
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
    fn iou(&self, other: &Detection) -> f32 {
        let w = (self.right.min(other.right) - self.left.max(other.left)).max(0.0);
        let h = (self.bottom.min(other.bottom) - self.top.max(other.top)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

pub struct Detector {
    stem: Conv,
    layers: Vec<Separable>,
    head: Conv,
}

impl Detector {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let mut w = Weights::load(dir, "tiny_face_detector_model")?;
        let stem = w.conv("conv0/filters", "conv0/bias", [3, 3, 3, 16])?;
        let mut layers = Vec::new();
        for (i, (cin, cout)) in [(16, 32), (32, 64), (64, 128), (128, 256), (256, 512)]
            .into_iter()
            .enumerate()
        {
            let n = i + 1;
            layers.push(w.separable(&format!("conv{n}"), cin, cout)?);
        }
        let head = w.conv("conv8/filters", "conv8/bias", [1, 1, 512, 25])?;
        Ok(Self { stem, layers, head })
    }

    /// Faces in an RGB input of `width` x `height` (multiples of [`CELL`]) holding an image
    /// of `content` pixels (width, height) at its top-left, black elsewhere. Boxes are returned
    /// in pixels of the original image, which is `scale` times larger than the content.
    pub fn detect(
        &self,
        input: &[u8],
        (width, height): (usize, usize),
        content: (f32, f32),
        scale: f32,
        min_score: f32,
    ) -> Vec<Detection> {
        assert_eq!(input.len(), width * height * 3, "detector input size");
        assert!(
            width.is_multiple_of(CELL) && height.is_multiple_of(CELL),
            "detector input {width}x{height} is not whole cells"
        );
        let x = tensor::from_rgb(height, width, input, MEAN_RGB, 255.0);
        let leaky = Activation::Leaky(0.1);
        // Every layer but the last is followed by a 2x2 max pool of stride 2, run with it.
        let mut x = tensor::conv2d_max_pool2(&x, &self.stem, 1, Padding::Valid, leaky);
        let (last, pooled) = self.layers.split_last().expect("the detector's layers");
        for layer in pooled {
            let d = tensor::depthwise(&x, &layer.depthwise, 1, Padding::Same);
            x = tensor::conv2d_max_pool2(&d, &layer.pointwise, 1, Padding::Same, leaky);
        }
        let x = tensor::max_pool(&last.forward(&x, 1, leaky), 2, 1, Padding::Same);
        let out = tensor::conv2d(&x, &self.head, 1, Padding::Valid, Activation::Linear);

        assert_eq!(
            (out.w, out.h),
            (width / CELL, height / CELL),
            "one score per cell"
        );
        let cell_px = CELL as f32 * scale;
        let mut found = Vec::new();
        for row in 0..out.h {
            for col in 0..out.w {
                let cell = &out.data[(row * out.w + col) * 25..][..25];
                for (a, (aw, ah)) in ANCHORS.iter().enumerate() {
                    let t = &cell[a * 5..a * 5 + 5];
                    let score = sigmoid(t[4]);
                    if score < min_score {
                        continue;
                    }
                    // Centre and size in cells, then in pixels of the original image.
                    let cx = col as f32 + sigmoid(t[0]);
                    let cy = row as f32 + sigmoid(t[1]);
                    let w = t[2].exp() * aw;
                    let h = t[3].exp() * ah;
                    found.push(Detection {
                        left: ((cx - w / 2.0) * cell_px).max(0.0),
                        top: ((cy - h / 2.0) * cell_px).max(0.0),
                        right: ((cx + w / 2.0) * cell_px).min(content.0 * scale),
                        bottom: ((cy + h / 2.0) * cell_px).min(content.1 * scale),
                        score,
                    });
                }
            }
        }
        non_max_suppression(found)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Keeps the best-scoring box of every group that overlaps by more than the IoU threshold.
fn non_max_suppression(mut boxes: Vec<Detection>) -> Vec<Detection> {
    boxes.retain(|b| b.width() > 1.0 && b.height() > 1.0);
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for b in boxes {
        if kept.iter().all(|k| k.iou(&b) <= IOU_THRESHOLD) {
            kept.push(b);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(l: f32, t: f32, r: f32, b: f32, score: f32) -> Detection {
        Detection {
            left: l,
            top: t,
            right: r,
            bottom: b,
            score,
        }
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_boxes() {
        let kept = non_max_suppression(vec![
            det(0.0, 0.0, 10.0, 10.0, 0.8),
            det(1.0, 1.0, 11.0, 11.0, 0.9),
            det(50.0, 50.0, 60.0, 60.0, 0.6),
        ]);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.6);
    }
}
