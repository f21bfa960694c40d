//! Turning landmarks into the face chip the descriptor network was trained on: a similarity
//! transform (rotation, uniform scale, shift) that best maps a mean face template onto the
//! detected landmarks, then a 150x150 resampling with 25% padding around the template.
//!
//! The template is dlib's mean face shape for landmarks 17-67 (from dlib's
//! `get_face_chip_details`, Boost Software License 1.0), since the descriptor network was
//! trained on chips cut exactly this way; a different crop costs accuracy.

use image::RgbImage;

use crate::kernels::{resample::Canvas, tensor::with_widest_vectors};

/// Mean positions of landmarks 17..=67 in the unit square, x then y.
const MEAN_FACE: [(f32, f32); 51] = [
    (0.000_213_256, 0.106_454),
    (0.075_262_2, 0.038_915),
    (0.181_13, 0.018_748_2),
    (0.290_77, 0.034_489_1),
    (0.393_397, 0.077_390_6),
    (0.586_856, 0.077_390_6),
    (0.689_483, 0.034_489_1),
    (0.799_124, 0.018_748_2),
    (0.904_991, 0.038_915),
    (0.980_04, 0.106_454),
    (0.490_127, 0.203_352),
    (0.490_127, 0.307_009),
    (0.490_127, 0.409_805),
    (0.490_127, 0.515_625),
    (0.366_88, 0.587_326),
    (0.426_036, 0.609_345),
    (0.490_127, 0.628_106),
    (0.554_217, 0.609_345),
    (0.613_373, 0.587_326),
    (0.121_737, 0.216_423),
    (0.187_122, 0.178_758),
    (0.265_825, 0.179_852),
    (0.334_606, 0.231_733),
    (0.260_918, 0.245_099),
    (0.182_743, 0.244_077),
    (0.645_647, 0.231_733),
    (0.714_428, 0.179_852),
    (0.793_132, 0.178_758),
    (0.858_516, 0.216_423),
    (0.797_51, 0.244_077),
    (0.719_335, 0.245_099),
    (0.254_149, 0.780_233),
    (0.340_985, 0.745_405),
    (0.428_858, 0.727_388),
    (0.490_127, 0.742_578),
    (0.551_395, 0.727_388),
    (0.639_268, 0.745_405),
    (0.726_104, 0.780_233),
    (0.642_159, 0.864_805),
    (0.556_721, 0.902_192),
    (0.490_127, 0.909_281),
    (0.423_532, 0.902_192),
    (0.338_094, 0.864_805),
    (0.290_379, 0.784_792),
    (0.428_096, 0.778_746),
    (0.490_127, 0.785_343),
    (0.552_157, 0.778_746),
    (0.689_874, 0.784_792),
    (0.553_364, 0.824_182),
    (0.490_127, 0.831_803),
    (0.426_89, 0.824_182),
];

/// A point-to-point similarity: `u = a*x - b*y + tx`, `v = b*x + a*y + ty`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity2 {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity2 {
    /// Least-squares fit mapping `from[i]` onto `to[i]`.
    pub fn fit(from: &[(f32, f32)], to: &[(f32, f32)]) -> Self {
        let n = from.len() as f32;
        let mean = |pts: &[(f32, f32)]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
            (sx / n, sy / n)
        };
        let (fx, fy) = mean(from);
        let (gx, gy) = mean(to);
        let (mut dot, mut cross, mut norm) = (0.0f32, 0.0f32, 0.0f32);
        for (p, q) in from.iter().zip(to) {
            let (px, py) = (p.0 - fx, p.1 - fy);
            let (qx, qy) = (q.0 - gx, q.1 - gy);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        let (a, b) = if norm > 0.0 {
            (dot / norm, cross / norm)
        } else {
            (1.0, 0.0)
        };
        Self {
            a,
            b,
            tx: gx - (a * fx - b * fy),
            ty: gy - (b * fx + a * fy),
        }
    }

    pub fn apply(&self, (x, y): (f32, f32)) -> (f32, f32) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    /// Image pixels per chip pixel.
    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }
}

/// The transform from chip pixels to image pixels for a `size` chip with `padding` (a fraction
/// of the face width on each side), fitted to 68 landmarks the way dlib does: nose, eyes and
/// the outer mouth, without eyebrows and jaw. Also returns how far, in chip pixels (RMS), the
/// landmarks lie from the fitted mean face: large for shapes that are not a face.
pub fn chip_transform(
    landmarks: &[(f32, f32); 68],
    size: usize,
    padding: f32,
) -> (Similarity2, f32) {
    let mut from = Vec::with_capacity(33);
    let mut to = Vec::with_capacity(33);
    for i in 27..68 {
        if (55..=59).contains(&i) || (65..=67).contains(&i) {
            continue;
        }
        let (mx, my) = MEAN_FACE[i - 17];
        let px = (padding + mx) / (2.0 * padding + 1.0) * size as f32;
        let py = (padding + my) / (2.0 * padding + 1.0) * size as f32;
        from.push((px, py));
        to.push(landmarks[i]);
    }
    let t = Similarity2::fit(&from, &to);
    let squared: f32 = from
        .iter()
        .zip(&to)
        .map(|(f, q)| {
            let p = t.apply(*f);
            (p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)
        })
        .sum();
    let rms = (squared / from.len() as f32).sqrt() / t.scale().max(1e-6);
    (t, rms)
}

/// Samples a `size` x `size` chip from `img` through `t` (chip -> image), with bilinear
/// interpolation. When the face is much larger than the chip, the region is first shrunk with
/// an area filter so that sampling does not alias.
pub fn extract_chip(img: Canvas, t: Similarity2, size: usize) -> Vec<u8> {
    // Chip -> image as a general affine map: u = m[0] x + m[1] y + m[2], v = m[3] x + m[4] y + m[5].
    let m = [t.a, -t.b, t.tx, t.b, t.a, t.ty];
    let mut out = vec![0u8; size * size * 3];
    let s = t.scale();
    if s <= 1.5 && img.pad == 0 {
        // In the widest vectors: on the baseline target, rounding and flooring are library
        // calls, which cost a third of the chip's time.
        with_widest_vectors(
            #[inline(always)]
            || sample(img.photo, (0, 0), m, size, &mut out),
        );
        return out;
    }
    // The chip's footprint in the image, with a margin for the bilinear taps: every tap
    // inside the image is inside it.
    let corners = [
        (0.0, 0.0),
        (size as f32, 0.0),
        (0.0, size as f32),
        (size as f32, size as f32),
    ]
    .map(|c| t.apply(c));
    let min_x = corners.iter().map(|c| c.0).fold(f32::MAX, f32::min).floor() - 2.0;
    let min_y = corners.iter().map(|c| c.1).fold(f32::MAX, f32::min).floor() - 2.0;
    let max_x = corners.iter().map(|c| c.0).fold(f32::MIN, f32::max).ceil() + 2.0;
    let max_y = corners.iter().map(|c| c.1).fold(f32::MIN, f32::max).ceil() + 2.0;
    let x0 = min_x.clamp(0.0, img.width() as f32) as u32;
    let y0 = min_y.clamp(0.0, img.height() as f32) as u32;
    let x1 = max_x.clamp(0.0, img.width() as f32) as u32;
    let y1 = max_y.clamp(0.0, img.height() as f32) as u32;
    if s <= 1.5 {
        // A bordered photo: the footprint is cut from it and sampled where it lies (none of
        // it in the photo: every tap is outside, black).
        if x1 > x0 && y1 > y0 {
            let crop = img.crop(x0, y0, x1 - x0, y1 - y0);
            let origin = (i64::from(x0), i64::from(y0));
            with_widest_vectors(
                #[inline(always)]
                || sample(&crop, origin, m, size, &mut out),
            );
        }
        return out;
    }
    if x1 <= x0 + 1 || y1 <= y0 + 1 {
        return out;
    }
    let crop = img.crop(x0, y0, x1 - x0, y1 - y0);
    let nw = ((crop.width() as f32 / s).round() as u32).max(2);
    let nh = ((crop.height() as f32 / s).round() as u32).max(2);
    let shrunk = crate::kernels::resample::resize(&crop, nw, nh);
    let fx = nw as f32 / crop.width() as f32;
    let fy = nh as f32 / crop.height() as f32;
    // u' = (u - x0) * fx and v' = (v - y0) * fy, folded into the map.
    let m = [
        m[0] * fx,
        m[1] * fx,
        (m[2] - x0 as f32) * fx,
        m[3] * fy,
        m[4] * fy,
        (m[5] - y0 as f32) * fy,
    ];
    with_widest_vectors(
        #[inline(always)]
        || sample(&shrunk, (0, 0), m, size, &mut out),
    );
    out
}

/// The `size` x `size` chip whose pixel (x, y) is the image sampled at `m` applied to it, of
/// which `source` is the part from `origin`.
#[inline(always)]
fn sample(source: &RgbImage, origin: (i64, i64), m: [f32; 6], size: usize, out: &mut [u8]) {
    for y in 0..size {
        for x in 0..size {
            let (xf, yf) = (x as f32, y as f32);
            let u = m[0] * xf + m[1] * yf + m[2];
            let v = m[3] * xf + m[4] * yf + m[5];
            out[(y * size + x) * 3..][..3].copy_from_slice(&bilinear(source, origin, u, v));
        }
    }
}

/// Bilinear sample at (`u`, `v`) of an image of which `img` is the part from `origin`;
/// outside `img` is black.
#[inline(always)]
fn bilinear(img: &RgbImage, origin: (i64, i64), u: f32, v: f32) -> [u8; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (u0, v0) = (u.floor(), v.floor());
    let (fx, fy) = (u - u0, v - v0);
    let (x0, y0) = (u0 as i64 - origin.0, v0 as i64 - origin.1);
    let pixel = |p: &[u8]| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])];
    let [p00, p10, p01, p11] = if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
        // All four taps inside: read the two rows' pixel pairs straight from the buffer.
        let row = 3 * w as usize;
        let at = y0 as usize * row + 3 * x0 as usize;
        let raw = img.as_raw();
        let (top, bottom) = (&raw[at..at + 6], &raw[at + row..at + row + 6]);
        [
            pixel(top),
            pixel(&top[3..]),
            pixel(bottom),
            pixel(&bottom[3..]),
        ]
    } else {
        let get = |x: i64, y: i64| -> [f32; 3] {
            if x < 0 || y < 0 || x >= w || y >= h {
                [0.0; 3]
            } else {
                pixel(&img.get_pixel(x as u32, y as u32).0)
            }
        };
        [
            get(x0, y0),
            get(x0 + 1, y0),
            get(x0, y0 + 1),
            get(x0 + 1, y0 + 1),
        ]
    };
    let mut out = [0u8; 3];
    for c in 0..3 {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        out[c] = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity() {
        let truth = Similarity2 {
            a: 2.0 * 0.3f32.cos(),
            b: 2.0 * 0.3f32.sin(),
            tx: 10.0,
            ty: -4.0,
        };
        let from = [(0.0, 0.0), (10.0, 0.0), (0.0, 7.0), (3.0, 3.0)];
        let to: Vec<_> = from.iter().map(|p| truth.apply(*p)).collect();
        let fit = Similarity2::fit(&from, &to);
        for (x, y) in [
            (fit.a, truth.a),
            (fit.b, truth.b),
            (fit.tx, truth.tx),
            (fit.ty, truth.ty),
        ] {
            assert!((x - y).abs() < 1e-4, "{fit:?} vs {truth:?}");
        }
        assert!((fit.scale() - 2.0).abs() < 1e-4);
    }

    /// A chip of a canvas with a border equals the chip of the bordered copy, whether it is
    /// sampled directly or shrunk first, inside the photo, across its edge and off the copy.
    #[test]
    fn a_chip_of_a_bordered_canvas_is_that_of_the_bordered_copy() {
        let (pad, border) = (12, [122, 117, 104]);
        let photo = crate::testing::pseudo_photo(40, 30, 11);
        let (copy, canvas) = crate::testing::bordered(&photo, pad, border);
        for (scale, tx, ty) in [
            (0.8, 20.3, 15.1),
            (1.3, -6.2, 3.7),
            (0.9, 40.5, 38.2),
            (2.5, 1.4, -9.0),
            (3.0, -30.0, -25.0),
            (1.1, 200.0, 10.0),
        ] {
            let t = Similarity2 {
                a: scale * 0.3f32.cos(),
                b: scale * 0.3f32.sin(),
                tx,
                ty,
            };
            assert_eq!(
                extract_chip(canvas, t, 24),
                extract_chip(Canvas::plain(&copy), t, 24),
                "scale {scale} at ({tx}, {ty})"
            );
        }
    }

    /// The chip read straight from the buffer where all four taps are inside equals plain
    /// per-pixel sampling with black outside, for a turned chip that runs off two edges.
    #[test]
    fn chip_matches_plain_sampling_inside_and_across_the_edges() {
        let (w, h) = (40u32, 30u32);
        let img = crate::testing::pseudo_photo(w, h, 7);
        let t = Similarity2 {
            a: 1.2 * 0.4f32.cos(),
            b: 1.2 * 0.4f32.sin(),
            tx: 14.3,
            ty: -6.7,
        };
        let size = 32;
        let chip = extract_chip(Canvas::plain(&img), t, size);
        let plain = |u: f32, v: f32, c: usize| -> f32 {
            let (x, y) = (u.floor() as i64, v.floor() as i64);
            let get = |x: i64, y: i64| {
                let inside = (0..w as i64).contains(&x) && (0..h as i64).contains(&y);
                if inside {
                    f32::from(img.get_pixel(x as u32, y as u32).0[c])
                } else {
                    0.0
                }
            };
            let (fx, fy) = (u - x as f32, v - y as f32);
            let top = get(x, y) + (get(x + 1, y) - get(x, y)) * fx;
            let bottom = get(x, y + 1) + (get(x + 1, y + 1) - get(x, y + 1)) * fx;
            top + (bottom - top) * fy
        };
        let (mut inside, mut outside) = (0, 0);
        for y in 0..size {
            for x in 0..size {
                let (xf, yf) = (x as f32, y as f32);
                let u = t.a * xf - t.b * yf + t.tx;
                let v = t.b * xf + t.a * yf + t.ty;
                let all_in = u >= 0.0 && v >= 0.0 && u + 1.0 < w as f32 && v + 1.0 < h as f32;
                if all_in {
                    inside += 1;
                } else {
                    outside += 1;
                }
                for c in 0..3 {
                    let expected = plain(u, v, c).round().clamp(0.0, 255.0) as u8;
                    assert_eq!(chip[(y * size + x) * 3 + c], expected, "pixel ({x}, {y})");
                }
            }
        }
        assert!(
            inside > 100 && outside > 100,
            "{inside} inside, {outside} at the edges"
        );
    }
}
