//! How a photo becomes pixels: sniff the format from the bytes (never the file name), refuse
//! anything that is not JPEG, PNG or WebP (or, for a lab set's files read by `eval` and
//! `describe`, GIF and PNM), bound the decoded size before decoding (no decompression bombs),
//! apply the EXIF orientation, and scale a huge photo down at once.
//!
//! Everything here is CPU work: call it off the async workers.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The formats accepted for upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::WebP => "webp",
        }
    }

    /// The format named by [`Format::extension`].
    pub fn from_extension(ext: &str) -> Option<Self> {
        [Format::Jpeg, Format::Png, Format::WebP]
            .into_iter()
            .find(|f| f.extension() == ext)
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::WebP => ImageFormat::WebP,
        }
    }

    /// Sniffs the format from the leading bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match image::guess_format(bytes).ok()? {
            ImageFormat::Jpeg => Some(Format::Jpeg),
            ImageFormat::Png => Some(Format::Png),
            ImageFormat::WebP => Some(Format::WebP),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the uploaded file is empty")]
    Empty,
    #[error("the file is not a JPEG, PNG or WebP image")]
    UnknownFormat,
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    #[error("the image is {width}x{height} pixels; at most {max_pixels} pixels are accepted")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error(
        "the image would take {bytes} bytes decoded ({width}x{height} pixels of {bytes_per_pixel} \
         bytes); at most {max_bytes} are accepted"
    )]
    TooMuchMemory {
        width: u32,
        height: u32,
        bytes_per_pixel: u64,
        bytes: u64,
        max_bytes: u64,
    },
    #[error("the image is {width}x{height} pixels, too small to hold a face")]
    TooSmall { width: u32, height: u32 },
    #[error("could not re-encode the image: {0}")]
    Encode(String),
}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_pixels: u64,
}

/// Smallest side accepted: below this no detector finds a face, so say so plainly.
pub const MIN_SIDE: u32 = 32;

/// Decoded images are scaled down to this longest side at once: more pixels help neither the
/// detector (which sees 416) nor a kept photo, and a request waiting for the engine then holds
/// a few megabytes, not a hundred.
pub const MAX_WORKING_SIDE: u32 = 2048;

impl DecodeLimits {
    /// The memory a decoded image may take: the pixel limit in 8-bit RGB. A 16-bit or RGBA
    /// image of as many pixels needs more and is refused before it is decoded.
    pub fn max_decoded_bytes(self) -> u64 {
        self.max_pixels.saturating_mul(3)
    }
}

/// An upload that decoded cleanly, upright.
pub struct DecodedImage {
    pub format: Format,
    /// Upright pixels (EXIF orientation applied).
    pub image: DynamicImage,
    /// Whether the stored pixels had to be rotated or flipped to stand upright.
    pub reoriented: bool,
}

/// Decodes an upload's `bytes`, refusing unknown formats, over-large dimensions and broken data.
pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<DecodedImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = Format::sniff(bytes).ok_or(ImageError::UnknownFormat)?;
    let (image, reoriented) = decode_bounded(bytes, format.image_format(), limits)?;
    Ok(DecodedImage {
        format,
        image,
        reoriented,
    })
}

/// The width and height an upload's header declares, read without decoding its pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = Format::sniff(bytes).ok_or(ImageError::UnknownFormat)?;
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format.image_format());
    reader
        .into_dimensions()
        .map_err(|e| ImageError::Corrupt(e.to_string()))
}

/// Decodes a photo file: an upload's formats, or a lab set's GIF or PNM (grayscale lab photos
/// come as PGM), within the same bounds. For the operator's tools, never for uploads.
pub fn decode_file(bytes: &[u8], limits: DecodeLimits) -> Result<DynamicImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Gif | ImageFormat::Pnm)) => f,
        _ => Format::sniff(bytes)
            .ok_or(ImageError::UnknownFormat)?
            .image_format(),
    };
    Ok(decode_bounded(bytes, format, limits)?.0)
}

/// Decodes `bytes` as `format` within `limits`, upright and at most [`MAX_WORKING_SIDE`]
/// pixels on its longer side; says whether the pixels had to be turned upright.
fn decode_bounded(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<(DynamicImage, bool), ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut decoder_limits = Limits::default();
    // The decoded budget plus room for the decoder's own buffers.
    decoder_limits.max_alloc = Some(limits.max_decoded_bytes().saturating_add(64 << 20));
    reader.limits(decoder_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(ImageError::TooSmall { width, height });
    }
    let bytes = decoder.total_bytes();
    if bytes > limits.max_decoded_bytes() {
        return Err(ImageError::TooMuchMemory {
            width,
            height,
            bytes_per_pixel: u64::from(decoder.color_type().bytes_per_pixel()),
            bytes,
            max_bytes: limits.max_decoded_bytes(),
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => ImageError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        },
        other => ImageError::Corrupt(other.to_string()),
    })?;
    let reoriented = orientation != image::metadata::Orientation::NoTransforms;
    image.apply_orientation(orientation);
    if image.width().max(image.height()) > MAX_WORKING_SIDE {
        // Area sampling in integers: a fraction of a filtered resize's time, and as good for
        // a pure reduction.
        image = image.thumbnail(MAX_WORKING_SIDE, MAX_WORKING_SIDE);
    }
    Ok((image, reoriented))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = DynamicImage::new_rgb8(width, height);
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 1_000_000,
    };

    #[test]
    fn sniffs_format_from_bytes() {
        assert_eq!(Format::sniff(&png(40, 40)), Some(Format::Png));
        assert_eq!(Format::sniff(b"GIF89a......"), None);
        assert_eq!(Format::sniff(b"hello"), None);
    }

    #[test]
    fn refuses_empty_unknown_small_and_huge() {
        assert!(matches!(decode(&[], LIMITS), Err(ImageError::Empty)));
        assert!(matches!(
            decode(b"definitely not an image", LIMITS),
            Err(ImageError::UnknownFormat)
        ));
        assert!(matches!(
            decode(&png(8, 8), LIMITS),
            Err(ImageError::TooSmall { .. })
        ));
        assert!(matches!(
            decode(&png(2000, 1000), LIMITS),
            Err(ImageError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_budget_counts_bytes_per_pixel_before_decoding() {
        // 2000 x 2000 is under a 5 MP limit in pixels, not in 16-bit RGBA bytes.
        let mut bomb = Vec::new();
        image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::new(2000, 2000)
            .write_to(&mut Cursor::new(&mut bomb), ImageFormat::Png)
            .unwrap();
        assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
        let limits = DecodeLimits {
            max_pixels: 5_000_000,
        };
        assert!(matches!(
            decode(&bomb, limits),
            Err(ImageError::TooMuchMemory {
                bytes_per_pixel: 8,
                ..
            })
        ));
    }

    #[test]
    fn huge_photos_are_scaled_down_at_once() {
        let big = png(4000, 1000);
        let decoded = decode(
            &big,
            DecodeLimits {
                max_pixels: 10_000_000,
            },
        )
        .unwrap();
        assert_eq!(
            (decoded.image.width(), decoded.image.height()),
            (MAX_WORKING_SIDE, 512)
        );
    }

    #[test]
    fn truncated_data_is_corrupt_not_a_panic() {
        let bytes = png(100, 100);
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(decode(cut, LIMITS), Err(ImageError::Corrupt(_))));
    }

    #[test]
    fn lab_files_decode_as_files_but_never_as_uploads() {
        let mut gif = Vec::new();
        DynamicImage::new_rgb8(48, 40)
            .write_to(&mut Cursor::new(&mut gif), ImageFormat::Gif)
            .unwrap();
        let mut pgm = Vec::new();
        DynamicImage::new_luma8(50, 60)
            .write_to(&mut Cursor::new(&mut pgm), ImageFormat::Pnm)
            .unwrap();
        for (bytes, size) in [(&gif, (48, 40)), (&pgm, (50, 60))] {
            assert!(matches!(
                decode(bytes, LIMITS),
                Err(ImageError::UnknownFormat)
            ));
            let image = decode_file(bytes, LIMITS).unwrap();
            assert_eq!((image.width(), image.height()), size);
        }
        let tiny = decode_file(&png(8, 8), LIMITS);
        assert!(matches!(tiny, Err(ImageError::TooSmall { .. })));
        assert!(matches!(
            decode_file(b"not a photo", LIMITS),
            Err(ImageError::UnknownFormat)
        ));
    }
}
