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

/// The `width` x `height` region of `img` from (`x`, `y`), cut to the image as `image`'s
/// `crop_imm` cuts it, copied a row at a time (`image` copies pixel by pixel).
pub fn crop(img: &RgbImage, x: u32, y: u32, width: u32, height: u32) -> RgbImage {
    let (x, y) = (x.min(img.width()), y.min(img.height()));
    let (width, height) = (width.min(img.width() - x), height.min(img.height() - y));
    let (stride, first, len) = (img.width() as usize * 3, x as usize * 3, width as usize * 3);
    let mut bytes = Vec::with_capacity(len * height as usize);
    for row in y as usize..(y + height) as usize {
        bytes.extend_from_slice(&img.as_raw()[row * stride + first..][..len]);
    }
    RgbImage::from_raw(width, height, bytes).expect("the crop's size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_match_images_own() {
        let img = RgbImage::from_fn(9, 6, |x, y| image::Rgb([x as u8, y as u8, (x * y) as u8]));
        let empty = RgbImage::new(0, 4);
        assert_eq!(
            crop(&empty, 0, 1, 3, 2),
            image::imageops::crop_imm(&empty, 0, 1, 3, 2).to_image()
        );
        for (x, y, w, h) in [
            (0, 0, 9, 6),
            (2, 1, 4, 3),
            (8, 5, 1, 1),
            (3, 0, 6, 6),
            (7, 4, 5, 5),
            (12, 2, 1, 1),
        ] {
            let ours = crop(&img, x, y, w, h);
            assert_eq!(ours, image::imageops::crop_imm(&img, x, y, w, h).to_image());
        }
    }

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
