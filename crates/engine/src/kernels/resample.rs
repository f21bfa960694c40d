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

/// A photo seen with a border of `pad` pixels of one colour on every side, as a bordered copy
/// would show it, without making the copy: only the regions asked for are built (the copy of
/// a VGA frame with its border is 3.7 MB, the regions a face needs a fraction of it).
#[derive(Clone, Copy)]
pub struct Canvas<'a> {
    pub photo: &'a RgbImage,
    pub pad: u32,
    pub border: [u8; 3],
}

impl<'a> Canvas<'a> {
    /// The photo itself, no border.
    pub fn plain(photo: &'a RgbImage) -> Self {
        Self {
            photo,
            pad: 0,
            border: [0; 3],
        }
    }

    pub fn width(&self) -> u32 {
        self.photo.width() + 2 * self.pad
    }

    pub fn height(&self) -> u32 {
        self.photo.height() + 2 * self.pad
    }

    /// The region [`crop`] would cut from the bordered copy.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> RgbImage {
        if self.pad == 0 {
            return crop(self.photo, x, y, width, height);
        }
        let (x, y) = (x.min(self.width()), y.min(self.height()));
        let (width, height) = (width.min(self.width() - x), height.min(self.height() - y));
        let [x, y, width, height, pad] = [x, y, width, height, self.pad].map(|v| v as usize);
        let (photo_w, photo_h) = (self.photo.width() as usize, self.photo.height() as usize);
        // The photo's columns inside the region, in the canvas's pixels.
        let from = x.clamp(pad, pad + photo_w);
        let to = (x + width).clamp(from, pad + photo_w);
        let border = self.border.repeat(width);
        let mut bytes = Vec::with_capacity(width * height * 3);
        for row in y..y + height {
            match row.checked_sub(pad).filter(|r| *r < photo_h && from < to) {
                None => bytes.extend_from_slice(&border),
                Some(r) => {
                    bytes.extend_from_slice(&border[..(from - x) * 3]);
                    let line = &self.photo.as_raw()[(r * photo_w + from - pad) * 3..];
                    bytes.extend_from_slice(&line[..(to - from) * 3]);
                    bytes.extend_from_slice(&border[..(x + width - to) * 3]);
                }
            }
        }
        RgbImage::from_raw(width as u32, height as u32, bytes).expect("the region's size")
    }
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

    /// Regions of a canvas, across the border and the photo and past both, against regions
    /// of a bordered copy made with `image`'s fill and paste.
    #[test]
    fn a_canvas_region_is_that_of_the_bordered_copy() {
        let border = [122, 117, 104];
        for (w, h) in [(7, 5), (0, 3), (4, 0)] {
            let photo = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 200]));
            for pad in [0, 1, 3] {
                let (copy, canvas) = crate::testing::bordered(&photo, pad, border);
                assert_eq!((canvas.width(), canvas.height()), copy.dimensions());
                for (x, y) in [(0, 0), (1, 2), (2, 1), (3, 3), (5, 4), (9, 8), (20, 0)] {
                    for (cw, ch) in [(1, 1), (2, 5), (6, 3), (13, 11), (40, 40)] {
                        assert_eq!(
                            canvas.crop(x, y, cw, ch),
                            crop(&copy, x, y, cw, ch),
                            "{w}x{h} pad {pad}: {cw}x{ch} at ({x}, {y})"
                        );
                    }
                }
            }
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
