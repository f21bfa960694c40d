//! Face detection: a small YOLO-style network of depthwise separable convolutions that scores
//! five anchor boxes in every cell of a 32-pixel grid, followed by non-maximum suppression.

use std::{ops::Range, path::Path};

use crate::{
    kernels::tensor::{self, Activation, Conv, Padding, Separable, Tensor},
    models::weights::{ModelError, Weights},
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

    /// Faces in `input`, in its pixels times `scale` (boxes cut to its content).
    pub fn detect(&self, input: &Input, scale: f32, min_score: f32) -> Vec<Detection> {
        let (width, height) = input.size;
        assert_eq!(
            input.pixels.len(),
            width * height * 3,
            "detector input size"
        );
        assert!(
            width.is_multiple_of(CELL) && height.is_multiple_of(CELL),
            "detector input {width}x{height} is not whole cells"
        );
        let out = self.scores(input);
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
                        right: ((cx + w / 2.0) * cell_px).min(input.content.0 as f32 * scale),
                        bottom: ((cy + h / 2.0) * cell_px).min(input.content.1 as f32 * scale),
                        score,
                    });
                }
            }
        }
        non_max_suppression(found)
    }
}

/// What the detector is shown: RGB pixels, a whole number of cells each way, holding a photo
/// (perhaps bordered) at the top-left and black beyond.
pub struct Input<'a> {
    pub pixels: &'a [u8],
    pub size: (usize, usize),
    /// Width and height of the part showing the photo and its border.
    pub content: (usize, usize),
    /// Where the photo's own pixels lie: left, top, right, bottom (exclusive). The rest of the
    /// content is `border`.
    pub photo: [usize; 4],
    pub border: [u8; 3],
}

/// Which of a layer's `rows` output rows equal the row above them, given which of its input
/// rows do (`same`) and the input rows, first and last, that output row `p` reads: those whose
/// rows and the row above's are one run of equal rows, none of them padding.
fn copies(same: &[bool], rows: usize, reads: impl Fn(usize) -> (isize, isize)) -> Vec<bool> {
    (0..rows)
        .map(|p| {
            p > 0 && {
                let (from, _) = reads(p - 1);
                let (_, to) = reads(p);
                from >= 0
                    && (to as usize) < same.len()
                    && (from as usize + 1..=to as usize).all(|r| same[r])
            }
        })
        .collect()
}

impl Input<'_> {
    /// Which rows of pixels equal the row above them.
    fn same_rows(&self) -> Vec<bool> {
        let row = |y: usize| &self.pixels[y * self.size.0 * 3..][..self.size.0 * 3];
        (0..self.size.1)
            .map(|y| y > 0 && row(y) == row(y - 1))
            .collect()
    }

    /// `rows` x `cols` of the input as the network's first layer takes it.
    fn tensor(&self, rows: Range<usize>, cols: Range<usize>) -> Tensor {
        let (w, len) = (self.size.0, cols.len() * 3);
        let mut bytes = Vec::with_capacity(rows.len() * len);
        for row in rows.clone() {
            bytes.extend_from_slice(&self.pixels[(row * w + cols.start) * 3..][..len]);
        }
        tensor::from_rgb(rows.len(), cols.len(), &bytes, MEAN_RGB, 255.0)
    }
}

impl Detector {
    /// The network's output over `input`: 25 numbers (five anchors' box and score) a cell.
    fn scores(&self, input: &Input) -> Tensor {
        let leaky = Activation::Leaky(0.1);
        let mut x = self.first_layer(input);
        // Rows equal to the row above, known from the input's: a bordered look's plain rows
        // give equal rows, layer after layer, which are copied instead of computed.
        let mut same = copies(&input.same_rows(), x.h, |p| {
            (2 * p as isize, 2 * p as isize + 3)
        });
        let (last, pooled) = self.layers.split_last().expect("the detector's layers");
        for layer in pooled {
            let next = copies(&same, x.h.div_ceil(2), |p| {
                (2 * p as isize - 1, 2 * p as isize + 2)
            });
            x = tensor::separable_max_pool2_copying(&x, layer, leaky, &next);
            same = next;
        }
        let x = tensor::max_pool(&last.forward(&x, 1, leaky), 2, 1, Padding::Same);
        tensor::conv2d(&x, &self.head, 1, Padding::Valid, Activation::Linear)
    }

    /// The first layer (3x3 convolution, 2x2 max pool) over `input`. Where the photo is a
    /// small part of a bordered input, only windows that hold some of it, or the edge of the
    /// border, are computed: every other window is all border or all black and gets that
    /// colour's value, which the same kernel computes once. For a close-up's bordered look
    /// that is a quarter of the windows.
    fn first_layer(&self, input: &Input) -> Tensor {
        let leaky = Activation::Leaky(0.1);
        let layer = |t: &Tensor| tensor::conv2d_max_pool2(t, &self.stem, 1, Padding::Valid, leaky);
        let (width, height) = input.size;
        let [left, top, right, bottom] = input.photo;
        let photo_area = (right - left) * (bottom - top);
        if photo_area * 2 > width * height {
            return layer(&input.tensor(0..height, 0..width));
        }
        // A pooled value covers the 4x4 input pixels from twice its position.
        let (ph, pw) = ((height - 2).div_ceil(2), (width - 2).div_ceil(2));
        let c = self.stem.cout;
        let plain =
            |rgb: [u8; 3]| layer(&tensor::from_rgb(4, 4, &rgb.repeat(16), MEAN_RGB, 255.0)).data;
        let (border, black) = (plain(input.border), plain([0; 3]));
        let (cw, ch) = input.content;
        // Every value written once: the plain values, then the computed areas over them.
        let mut data = Vec::with_capacity(ph * pw * c);
        for py in 0..ph {
            for px in 0..pw {
                let plain = if 2 * py < ch && 2 * px < cw {
                    &border
                } else {
                    &black
                };
                data.extend_from_slice(plain);
            }
        }
        let mut out = Tensor::from_data(ph, pw, c, data);
        // Pooled positions whose window meets the pixels `from..to` on one axis.
        let meeting = |from: usize, to: usize, pooled: usize| {
            from.saturating_sub(3) / 2..to.div_ceil(2).min(pooled)
        };
        let mut areas = vec![(meeting(top, bottom, ph), meeting(left, right, pw))];
        if ch < height {
            areas.push((meeting(ch - 1, ch + 1, ph), 0..pw));
        }
        if cw < width {
            areas.push((0..ph, meeting(cw - 1, cw + 1, pw)));
        }
        for (rows, cols) in areas {
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            let pixel_rows = 2 * rows.start..(2 * rows.end + 2).min(height);
            let pixel_cols = 2 * cols.start..(2 * cols.end + 2).min(width);
            let part = layer(&input.tensor(pixel_rows, pixel_cols));
            assert_eq!((part.h, part.w), (rows.len(), cols.len()), "pooled area");
            for (y, line) in part.data.chunks_exact(part.w * c).enumerate() {
                out.data[((rows.start + y) * pw + cols.start) * c..][..line.len()]
                    .copy_from_slice(line);
            }
        }
        out
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
    use crate::testing::{self, pseudo};

    fn det(l: f32, t: f32, r: f32, b: f32, score: f32) -> Detection {
        Detection {
            left: l,
            top: t,
            right: r,
            bottom: b,
            score,
        }
    }

    /// A detector of the real shape with made-up weights.
    fn made_up_detector() -> Detector {
        let mut seed = 7;
        let mut values = |n: usize, scale: f32| {
            seed += 1;
            pseudo(n, seed)
                .into_iter()
                .map(|v| v * scale)
                .collect::<Vec<_>>()
        };
        let stem = Conv::new([3, 3, 3, 16], values(27 * 16, 1.0), values(16, 1.0));
        let layers = [(16, 32), (32, 64), (64, 128), (128, 256), (256, 512)]
            .into_iter()
            .map(|(cin, cout)| Separable {
                depthwise: tensor::Depthwise {
                    kh: 3,
                    kw: 3,
                    c: cin,
                    weights: values(9 * cin, 0.6),
                    bias: values(cin, 0.2),
                },
                pointwise: Conv::new(
                    [1, 1, cin, cout],
                    values(cin * cout, 0.3),
                    values(cout, 0.2),
                ),
            })
            .collect();
        let head = Conv::new([1, 1, 512, 25], values(512 * 25, 0.1), values(25, 0.1));
        Detector { stem, layers, head }
    }

    /// Runs `test` on a `width` x `height` input whose `photo` lies in a border filling
    /// `content`, black beyond.
    fn with_bordered(
        (width, height): (usize, usize),
        content: (usize, usize),
        photo: [usize; 4],
        test: impl FnOnce(&Input),
    ) {
        let [l, t, r, b] = photo;
        let mut pixels = vec![0u8; width * height * 3];
        for y in 0..height {
            for x in 0..width {
                let value = if (l..r).contains(&x) && (t..b).contains(&y) {
                    [(x * 7) as u8, (y * 13) as u8, (x * y) as u8]
                } else if x < content.0 && y < content.1 {
                    BORDER
                } else {
                    [0; 3]
                };
                pixels[(y * width + x) * 3..][..3].copy_from_slice(&value);
            }
        }
        test(&Input {
            pixels: &pixels,
            size: (width, height),
            content,
            photo,
            border: BORDER,
        });
    }

    const BORDER: [u8; 3] = [122, 117, 104];

    fn worst_difference(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!((a.h, a.w, a.c), (b.h, b.w, b.c));
        testing::worst_difference(&a.data, &b.data)
    }

    /// The first layer computed where the photo is, and filled elsewhere, equals the layer
    /// computed everywhere, for photos placed at odd and even positions.
    #[test]
    fn a_bordered_inputs_first_layer_is_computed_only_where_it_varies() {
        let detector = made_up_detector();
        let (width, height) = (96, 64);
        for (content, photo) in [
            ((90, 59), [20, 17, 51, 40]),
            ((96, 64), [33, 8, 60, 29]),
            ((71, 64), [2, 3, 12, 61]),
        ] {
            with_bordered((width, height), content, photo, |input| {
                let sparse = detector.first_layer(input);
                let dense = tensor::conv2d_max_pool2(
                    &input.tensor(0..height, 0..width),
                    &detector.stem,
                    1,
                    Padding::Valid,
                    Activation::Leaky(0.1),
                );
                let worst = worst_difference(&sparse, &dense);
                assert!(worst == 0.0, "{content:?} {photo:?}: off by {worst}");
            });
        }
    }

    /// The whole network, copying the rows a border makes equal, gives what it gives
    /// computing every row.
    #[test]
    fn rows_copied_for_a_border_are_the_rows_computed() {
        let detector = made_up_detector();
        let leaky = Activation::Leaky(0.1);
        let (width, height) = (128, 160);
        for (content, photo) in [
            ((128, 150), [30, 45, 90, 99]),
            ((128, 160), [0, 70, 128, 90]),
        ] {
            with_bordered((width, height), content, photo, |input| {
                assert!(copies(&input.same_rows(), 79, |p| (
                    2 * p as isize,
                    2 * p as isize + 3
                ))
                .contains(&true));
                let mut x = detector.first_layer(input);
                let (last, pooled) = detector.layers.split_last().unwrap();
                for layer in pooled {
                    let d = tensor::depthwise(&x, &layer.depthwise, 1, Padding::Same);
                    x = tensor::conv2d_max_pool2(&d, &layer.pointwise, 1, Padding::Same, leaky);
                }
                let x = tensor::max_pool(&last.forward(&x, 1, leaky), 2, 1, Padding::Same);
                let dense =
                    tensor::conv2d(&x, &detector.head, 1, Padding::Valid, Activation::Linear);
                let worst = worst_difference(&detector.scores(input), &dense);
                assert!(worst == 0.0, "{content:?} {photo:?}: off by {worst}");
            });
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
