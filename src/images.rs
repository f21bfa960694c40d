//! Image intake on the server's side: the decoding of uploads is the engine crate's
//! ([`facelock_engine::photo`]); this adds what the server does with a decoded upload: the
//! clean reference copy it keeps, and the re-encoding for engines with byte or size limits.
//!
//! Everything here is CPU work: call it off the async workers.

use std::io::Cursor;

pub use facelock_engine::photo::{
    decode, dimensions, DecodeLimits, DecodedImage, Format, ImageError, MAX_WORKING_SIDE, MIN_SIDE,
};
use image::{codecs::jpeg::JpegEncoder, imageops::FilterType, ImageFormat};

/// Longest side of a kept reference photo: enough to describe the face again with a new model.
pub const MAX_REFERENCE_SIDE: u32 = 2048;

/// The photo as kept for reference: upright, at most [`MAX_REFERENCE_SIDE`] pixels, and
/// re-encoded so that nothing of the upload but its pixels survives (no EXIF or GPS, no
/// comments, nothing appended to the file). PNG stays PNG, anything else becomes JPEG.
pub fn clean_copy(decoded: &DecodedImage) -> Result<(Format, Vec<u8>), ImageError> {
    let image = &decoded.image;
    let scaled;
    let image = if image.width().max(image.height()) > MAX_REFERENCE_SIDE {
        scaled = image.resize(MAX_REFERENCE_SIDE, MAX_REFERENCE_SIDE, FilterType::Triangle);
        &scaled
    } else {
        image
    };
    let mut out = Vec::new();
    let format = match decoded.format {
        Format::Png => {
            image
                .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
                .map_err(|e| ImageError::Encode(e.to_string()))?;
            Format::Png
        }
        Format::Jpeg | Format::WebP => {
            JpegEncoder::new_with_quality(&mut out, 92)
                .encode_image(&image.to_rgb8())
                .map_err(|e| ImageError::Encode(e.to_string()))?;
            Format::Jpeg
        }
    };
    Ok((format, out))
}

/// Bytes for an engine that takes JPEG or PNG up to `max_bytes` and needs no more than
/// `max_side` pixels on the longest side. The original bytes are passed through when they
/// already fit; otherwise the upright image is scaled down and re-encoded as JPEG.
pub fn encode_for_engine(
    original: &[u8],
    decoded: &DecodedImage,
    max_bytes: usize,
    max_side: u32,
) -> Result<Vec<u8>, ImageError> {
    let (w, h) = (decoded.image.width(), decoded.image.height());
    let fits = original.len() <= max_bytes
        && w.max(h) <= max_side
        && !decoded.reoriented
        && matches!(decoded.format, Format::Jpeg | Format::Png);
    if fits {
        return Ok(original.to_vec());
    }
    let scaled = if w.max(h) > max_side {
        decoded
            .image
            .resize(max_side, max_side, FilterType::Triangle)
    } else {
        decoded.image.clone()
    };
    let rgb = scaled.to_rgb8();
    let mut quality = 90;
    loop {
        let mut out = Vec::with_capacity(max_bytes.min(1 << 20));
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&rgb)
            .map_err(|e| ImageError::Encode(e.to_string()))?;
        if out.len() <= max_bytes || quality <= 50 {
            return Ok(out);
        }
        quality -= 15;
    }
}

#[cfg(test)]
mod tests {
    use image::DynamicImage;

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
    fn clean_copies_keep_the_pixels_and_drop_everything_else() {
        let mut jpeg = Vec::new();
        DynamicImage::new_rgb8(64, 48)
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        // A comment segment and bytes appended after the image end.
        jpeg.splice(2..2, b"\xff\xfe\x00\x0ehidden-note!".iter().copied());
        jpeg.extend_from_slice(b"APPENDED-SECRET");
        let decoded = decode(&jpeg, LIMITS).unwrap();
        let (format, clean) = clean_copy(&decoded).unwrap();
        assert_eq!(format, Format::Jpeg);
        for secret in [&b"hidden-note"[..], b"APPENDED-SECRET"] {
            assert!(!clean.windows(secret.len()).any(|w| w == secret));
        }
        let again = decode(&clean, LIMITS).unwrap();
        assert_eq!((again.image.width(), again.image.height()), (64, 48));
        let (format, _) = clean_copy(&decode(&png(40, 40), LIMITS).unwrap()).unwrap();
        assert_eq!(format, Format::Png);
    }

    #[test]
    fn re_encodes_only_when_needed() {
        let bytes = png(100, 80);
        let decoded = decode(&bytes, LIMITS).unwrap();
        assert_eq!(
            encode_for_engine(&bytes, &decoded, 5 << 20, 1920).unwrap(),
            bytes
        );
        let small = encode_for_engine(&bytes, &decoded, 5 << 20, 50).unwrap();
        assert_eq!(Format::sniff(&small), Some(Format::Jpeg));
        let again = decode(&small, LIMITS).unwrap();
        assert_eq!((again.image.width(), again.image.height()), (50, 40));
    }
}
