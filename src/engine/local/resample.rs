//! Scaling photos to the networks' input sizes: a bilinear (triangle) filter, as `image`'s
//! `resize` with `FilterType::Triangle` computes it, on the SIMD instructions the CPU has
//! (chosen at run time).

use fast_image_resize::{
    images::{Image, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::RgbImage;

/// `img` scaled to `width` x `height`.
pub fn resize(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (width, height) = (width.max(1), height.max(1));
    if img.width() == 0 || img.height() == 0 {
        return RgbImage::new(width, height);
    }
    let source = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
        .expect("an RGB image's buffer matches its size");
    let mut scaled = Image::new(width, height, PixelType::U8x3);
    thread_local! {
        static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
    }
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER.with_borrow_mut(|resizer| {
        resizer
            .resize(&source, &mut scaled, &options)
            .expect("source and destination are both RGB")
    });
    RgbImage::from_raw(width, height, scaled.into_vec())
        .expect("the scaled buffer matches its size")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within a grey level or two of `image`'s own triangle filter, up and down.
    #[test]
    fn matches_the_triangle_filter_it_replaces() {
        let img = RgbImage::from_fn(257, 191, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x * y) % 251) as u8,
            ])
        });
        for (w, h) in [(100, 74), (416, 309), (31, 200)] {
            let ours = resize(&img, w, h);
            let theirs = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
            let worst = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            let mean = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| f64::from(a.abs_diff(*b)))
                .sum::<f64>()
                / ours.as_raw().len() as f64;
            assert!(mean < 1.0, "{w}x{h}: mean difference {mean}, worst {worst}");
        }
    }
}
