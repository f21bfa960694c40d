//! Made-up numbers and comparisons the engine's unit tests share.

/// `n` values in -0.5..0.5 from a linear congruential sequence started at `seed`.
pub fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// A `width` x `height` photo of made-up pixels from [`pseudo`] started at `seed`.
pub fn pseudo_photo(width: u32, height: u32, seed: u32) -> image::RgbImage {
    let values = pseudo((width * height * 3) as usize, seed);
    image::RgbImage::from_fn(width, height, |x, y| {
        let at = ((y * width + x) * 3) as usize;
        image::Rgb(std::array::from_fn(|c| {
            (values[at + c].abs() * 255.0) as u8
        }))
    })
}

/// The largest difference between two equally long runs of values.
pub fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "values to compare");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `photo` on a canvas `pad` pixels larger on every side, filled with `border`, made with
/// `image`'s own fill and paste; with the [`Canvas`] that shows the same without the copy.
///
/// [`Canvas`]: crate::kernels::resample::Canvas
pub fn bordered(
    photo: &image::RgbImage,
    pad: u32,
    border: [u8; 3],
) -> (image::RgbImage, crate::kernels::resample::Canvas<'_>) {
    let (w, h) = photo.dimensions();
    let mut copy = image::RgbImage::from_pixel(w + 2 * pad, h + 2 * pad, image::Rgb(border));
    image::imageops::replace(&mut copy, photo, i64::from(pad), i64::from(pad));
    let canvas = crate::kernels::resample::Canvas { photo, pad, border };
    (copy, canvas)
}
