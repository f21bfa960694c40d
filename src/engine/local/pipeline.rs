//! The whole analysis of one photo: detect faces, place 68 landmarks on each, cut the aligned
//! chip and compute its descriptor. Pure CPU work; callers run it on the inference pool.

use std::path::Path;

use image::RgbImage;

use super::{
    align::{self, Similarity2},
    detector::{Detection, Detector, CELL},
    landmarks::{self, LandmarkNet},
    quality::Metrics,
    recognition::{Recognizer, CHIP_SIZE, DESCRIPTOR_LEN},
    resample, tensor,
    weights::ModelError,
};
use crate::images::{self, DecodeLimits, ImageError};

/// The longer side of the photo as the detector sees it; faces smaller than about 1/20 of the
/// longer image side are missed at this size, which is far below what enrolment or login
/// photos hold.
pub const DETECTOR_SIZE: usize = 416;
/// Detections scoring below this are not faces. Measured on the fixtures: real faces score
/// 0.50-0.97, spurious boxes in crowded photos up to 0.35, photos without faces nothing above 0.2.
pub const MIN_DETECTION_SCORE: f32 = 0.45;
/// Faces smaller than this fraction of the largest face's area are background and ignored.
const BACKGROUND_AREA: f32 = 0.1;
/// dlib's chip padding: 25% of the face on every side.
const CHIP_PADDING: f32 = 0.25;

pub type Descriptor = [f32; DESCRIPTOR_LEN];

/// A face found in a photo, in the photo's pixels.
#[derive(Clone, Debug)]
pub struct Face {
    pub detection: Detection,
    pub landmarks: [(f32, f32); 68],
    /// Chip -> image transform fitted to the landmarks.
    pub transform: Similarity2,
    /// RMS distance (chip pixels) of the landmarks from the fitted mean face.
    pub shape_error: f32,
}

/// The three networks, loaded once.
pub struct Models {
    detector: Detector,
    landmarks: LandmarkNet,
    recognizer: Recognizer,
}

/// What the pipeline made of one photo.
#[derive(Clone)]
pub struct Analysis {
    /// The faces that count, largest first (background faces dropped).
    pub faces: Vec<Face>,
    pub width: u32,
    pub height: u32,
    /// Descriptor and quality of the dominant (largest) face, when there is one.
    pub dominant: Option<(Descriptor, Metrics)>,
    /// Degrees (clockwise) the photo was turned to find its faces: 0 when they stood upright.
    /// Face positions, width and height are those of the turned photo.
    pub turned: u16,
}

impl Analysis {
    /// The dominant face's descriptor.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        self.dominant.as_ref().map(|(d, _)| d)
    }
}

/// Time spent in each stage of one analysis, and the floating-point operations of each
/// network stage, for the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    pub detect: std::time::Duration,
    pub landmarks: std::time::Duration,
    pub descriptor: std::time::Duration,
    /// Turning a photo with no upright face.
    pub rotate: std::time::Duration,
    pub detect_flops: u64,
    pub landmarks_flops: u64,
    pub descriptor_flops: u64,
}

/// Starts timing a stage: its start time and the operations counted so far.
fn stage_start() -> (std::time::Instant, u64) {
    (std::time::Instant::now(), tensor::flops_so_far())
}

/// Adds what the stage begun at `start` took to `time` and `flops`.
fn stage_end(start: (std::time::Instant, u64), time: &mut std::time::Duration, flops: &mut u64) {
    *time += start.0.elapsed();
    *flops += tensor::flops_so_far() - start.1;
}

/// Decodes an uploaded photo and analyses it: the one path from bytes to a descriptor, used by
/// the engine, `facelock eval`, `facelock bench` and the tests.
pub fn analyze_photo(
    models: &Models,
    bytes: &[u8],
    limits: DecodeLimits,
    times: &mut StageTimes,
) -> Result<Analysis, ImageError> {
    let decoded = images::decode(bytes, limits)?;
    Ok(models.analyze(&decoded.image.to_rgb8(), times))
}

impl Models {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Ok(Self {
            detector: Detector::load(dir)?,
            landmarks: LandmarkNet::load(dir)?,
            recognizer: Recognizer::load(dir)?,
        })
    }

    /// The faces that count and the dominant face's descriptor and quality.
    pub fn analyze(&self, rgb: &RgbImage, times: &mut StageTimes) -> Analysis {
        self.analyze_unless(rgb, times, &|| false)
            .expect("never stopped")
    }

    /// [`Models::analyze`], stopping between stages (`None`) once `stop` says the result is no
    /// longer wanted.
    pub fn analyze_unless(
        &self,
        rgb: &RgbImage,
        times: &mut StageTimes,
        stop: &dyn Fn() -> bool,
    ) -> Option<Analysis> {
        if stop() {
            return None;
        }
        let (mut found, mut padded) = self.find_upright(rgb, &PADDINGS, times, stop)?;
        // A photo whose pixels lie on their side (a phone held sideways, no EXIF tag): the
        // detector only knows upright faces, so look at the photo turned each way, an unsure
        // close-up with the two borders that find most, and keep the surest view: the detector
        // also takes some upside-down close-ups for faces, less surely, so the first turn that
        // finds one is not enough. A photo with no face costs thirteen detections.
        let mut turned_view: Option<(u16, RgbImage)> = None;
        if found.is_empty() {
            for degrees in [90, 270, 180] {
                if stop() {
                    return None;
                }
                let started = std::time::Instant::now();
                let candidate = match degrees {
                    90 => image::imageops::rotate90(rgb),
                    270 => image::imageops::rotate270(rgb),
                    _ => image::imageops::rotate180(rgb),
                };
                times.rotate += started.elapsed();
                let (turned, bordered) =
                    self.find_upright(&candidate, &PADDINGS[..2], times, stop)?;
                if best_score(&turned) > best_score(&found) {
                    (found, padded) = (turned, bordered);
                    turned_view = Some((degrees, candidate));
                }
            }
        }
        // The photo as the faces stand upright, and the copy their positions refer to.
        let upright = turned_view.as_ref().map_or(rgb, |(_, image)| image);
        let image = padded.as_ref().map_or(upright, |(_, canvas)| canvas);
        if stop() {
            return None;
        }
        // Landmarks only for the view that was kept: the looks are compared by their boxes.
        let mut faces = self.place_landmarks(image, found, times);
        let started = stage_start();
        let dominant = faces.first().map(|face| {
            let chip = self.chip(image, face);
            (self.describe_chip(&chip), Metrics::measure(face, &chip))
        });
        stage_end(started, &mut times.descriptor, &mut times.descriptor_flops);
        if let Some((pad, _)) = padded {
            // Back to the upright photo's own pixels.
            faces.iter_mut().for_each(|f| f.shift(-(pad as f32)));
        }
        let (width, height) = (upright.width(), upright.height());
        let turned = turned_view.map_or(0, |(degrees, _)| degrees);
        Some(Analysis {
            faces,
            width,
            height,
            dominant,
            turned,
        })
    }

    /// Every face in the photo, largest first, background faces included.
    pub fn find_faces(&self, img: &RgbImage) -> Vec<Face> {
        self.find_faces_above(img, MIN_DETECTION_SCORE, &mut StageTimes::default())
    }

    /// Like [`Models::find_faces`], with a chosen detection threshold.
    pub fn find_faces_above(
        &self,
        img: &RgbImage,
        min_score: f32,
        times: &mut StageTimes,
    ) -> Vec<Face> {
        let detections = self.detect(img, min_score, times);
        self.place_landmarks(img, detections, times)
    }

    /// The detector's boxes in `img`, largest first.
    fn detect(&self, img: &RgbImage, min_score: f32, times: &mut StageTimes) -> Vec<Detection> {
        let started = stage_start();
        let (input, size, content, scale) = detector_input(img, DETECTOR_SIZE);
        let mut detections = self
            .detector
            .detect(&input, size, content, scale, min_score);
        stage_end(started, &mut times.detect, &mut times.detect_flops);
        detections.sort_by(|a, b| b.area().total_cmp(&a.area()));
        detections
    }

    /// Landmarks and the chip's transform for each of `detections` in `img`.
    fn place_landmarks(
        &self,
        img: &RgbImage,
        detections: Vec<Detection>,
        times: &mut StageTimes,
    ) -> Vec<Face> {
        let started = stage_start();
        let faces = detections
            .into_iter()
            .map(|detection| {
                let landmarks = self.landmarks_in(img, &detection);
                let (transform, shape_error) =
                    align::chip_transform(&landmarks, CHIP_SIZE, CHIP_PADDING);
                Face {
                    detection,
                    landmarks,
                    transform,
                    shape_error,
                }
            })
            .collect();
        stage_end(started, &mut times.landmarks, &mut times.landmarks_flops);
        faces
    }

    fn landmarks_in(&self, img: &RgbImage, det: &Detection) -> [(f32, f32); 68] {
        let x0 = det.left.max(0.0).floor() as u32;
        let y0 = det.top.max(0.0).floor() as u32;
        let x1 = (det.right.ceil() as u32).min(img.width()).max(x0 + 1);
        let y1 = (det.bottom.ceil() as u32).min(img.height()).max(y0 + 1);
        let crop = resample::crop(img, x0, y0, x1 - x0, y1 - y0);
        let (cw, ch) = (crop.width() as f32, crop.height() as f32);
        let size = landmarks::INPUT_SIZE;
        let scale = size as f32 / cw.max(ch);
        let rw = ((cw * scale).round() as u32).clamp(1, size as u32);
        let rh = ((ch * scale).round() as u32).clamp(1, size as u32);
        let resized = resample::resize(&crop, rw, rh);
        let off_x = (size as u32 - rw) / 2;
        let off_y = (size as u32 - rh) / 2;
        let mut input = vec![0u8; size * size * 3];
        for (x, y, p) in resized.enumerate_pixels() {
            let i = ((y + off_y) as usize * size + (x + off_x) as usize) * 3;
            input[i..i + 3].copy_from_slice(&p.0);
        }
        let points = self.landmarks.predict(&input);
        points.map(|(px, py)| {
            let cx = (px * size as f32 - off_x as f32) / rw as f32 * cw;
            let cy = (py * size as f32 - off_y as f32) / rh as f32 * ch;
            (cx + x0 as f32, cy + y0 as f32)
        })
    }

    /// The aligned chip of a face.
    pub fn chip(&self, img: &RgbImage, face: &Face) -> Vec<u8> {
        align::extract_chip(img, face.transform, CHIP_SIZE)
    }

    /// The descriptor of an aligned chip.
    pub fn describe_chip(&self, chip: &[u8]) -> Descriptor {
        self.recognizer.describe(chip)
    }
}

/// Below this, the detector may have mistaken something for a face or missed one a margin
/// would show it: the photo is looked at again with a border.
const CONFIDENT_SCORE: f32 = 0.7;
/// Borders tried around an unsure photo, as fractions of its longer side.
const PADDINGS: [f32; 3] = [0.5, 0.25, 1.0];

/// Whether a face is large in its photo or reaches its edge, as in a close-up, where the
/// detector may have boxed part of the face, or something else, for lack of a margin.
fn looks_close(d: &Detection, img: &RgbImage) -> bool {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let edge = 0.05 * w.min(h);
    d.width() > 0.4 * w
        || d.height() > 0.4 * h
        || d.left < edge
        || d.top < edge
        || d.right > w - edge
        || d.bottom > h - edge
}

/// A bordered copy of a photo: the border's width in pixels, and the copy.
type Bordered = Option<(u32, RgbImage)>;

impl Models {
    /// The salient faces of `image` as it stands. A close-up (a login camera, an ID photo, a
    /// cropped avatar) defeats the detector, trained on faces with a margin around them, so
    /// while it is unsure the photo gets a border of each width of `borders` in turn (of its
    /// longer side), keeping the view it is surest of. A photo with several faces, or one
    /// well-framed face, is not a close-up. `None` once `stop` says to stop.
    fn find_upright(
        &self,
        image: &RgbImage,
        borders: &[f32],
        times: &mut StageTimes,
        stop: &dyn Fn() -> bool,
    ) -> Option<(Vec<Detection>, Bordered)> {
        let mut faces = self.find_salient(image, times);
        let mut kept: Bordered = None;
        for border in borders {
            let view = kept.as_ref().map_or(image, |(_, canvas)| canvas);
            let unsure_close_up = match faces.as_slice() {
                [] => true,
                [face] => face.score < CONFIDENT_SCORE && looks_close(face, view),
                _ => false,
            };
            if !unsure_close_up {
                break;
            }
            if stop() {
                return None;
            }
            let pad = (image.width().max(image.height()) as f32 * border) as u32;
            let canvas = pad_image(image, pad);
            let found = self.find_salient(&canvas, times);
            if best_score(&found) > best_score(&faces) {
                faces = found;
                kept = Some((pad, canvas));
            }
        }
        Some((faces, kept))
    }

    /// The boxes of the faces that count in `image` as it stands, largest first.
    fn find_salient(&self, image: &RgbImage, times: &mut StageTimes) -> Vec<Detection> {
        salient(self.detect(image, MIN_DETECTION_SCORE, times))
    }
}

fn best_score(faces: &[Detection]) -> f32 {
    faces.iter().map(|f| f.score).fold(0.0, f32::max)
}

/// `img` in the middle of a canvas `pad` pixels larger on every side, filled with the
/// detector's mean colour (which it sees as zero).
fn pad_image(img: &RgbImage, pad: u32) -> RgbImage {
    const BORDER: [u8; 3] = [122, 117, 104];
    let (w, h, pad) = (img.width() as usize, img.height() as usize, pad as usize);
    let width = w + 2 * pad;
    // Whole rows at a time: pixel by pixel, filling and copying cost 0.9 ms for a VGA frame.
    let border_row: Vec<u8> = BORDER.repeat(width);
    let mut bytes = Vec::with_capacity(width * (h + 2 * pad) * 3);
    for _ in 0..pad {
        bytes.extend_from_slice(&border_row);
    }
    for y in 0..h {
        bytes.extend_from_slice(&border_row[..pad * 3]);
        bytes.extend_from_slice(&img.as_raw()[y * w * 3..][..w * 3]);
        bytes.extend_from_slice(&border_row[..pad * 3]);
    }
    for _ in 0..pad {
        bytes.extend_from_slice(&border_row);
    }
    RgbImage::from_raw(width as u32, (h + 2 * pad) as u32, bytes).expect("the canvas's size")
}

impl Face {
    /// Moves the face by `d` pixels on both axes.
    fn shift(&mut self, d: f32) {
        let det = &mut self.detection;
        (det.left, det.top, det.right, det.bottom) =
            (det.left + d, det.top + d, det.right + d, det.bottom + d);
        for p in &mut self.landmarks {
            (p.0, p.1) = (p.0 + d, p.1 + d);
        }
        self.transform.tx += d;
        self.transform.ty += d;
    }
}

/// Drops background faces (tiny ones, far behind the largest) from boxes sorted largest first.
fn salient(mut faces: Vec<Detection>) -> Vec<Detection> {
    if let Some(largest) = faces.first().map(Detection::area) {
        faces.retain(|f| f.area() >= largest * BACKGROUND_AREA);
    }
    faces
}

/// The detector's input: `img` scaled so its longer side is `size`, at the top-left of a black
/// canvas whose sides are that size rounded up to whole cells of the detector's grid (not a
/// square: the rows or columns a square would add hold no photo, and a 4:3 frame's would be a
/// quarter of the work). Returns the canvas, its width and height, the scaled image's size and
/// the factor back to original pixels.
fn detector_input(img: &RgbImage, size: usize) -> (Vec<u8>, (usize, usize), (f32, f32), f32) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let scale = w.max(h) / size as f32;
    let nw = ((w / scale).round() as u32).clamp(1, size as u32);
    let nh = ((h / scale).round() as u32).clamp(1, size as u32);
    let resized = resample::resize(img, nw, nh);
    let width = (nw as usize).next_multiple_of(CELL);
    let height = (nh as usize).next_multiple_of(CELL);
    let mut input = vec![0u8; width * height * 3];
    for (row, line) in resized.chunks_exact(nw as usize * 3).enumerate() {
        input[row * width * 3..][..line.len()].copy_from_slice(line);
    }
    (input, (width, height), (nw as f32, nh as f32), scale)
}

/// Euclidean distance between descriptors.
pub fn distance(a: &Descriptor, b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bordered copy, built a row at a time, against `image`'s fill and paste.
    #[test]
    fn a_border_surrounds_the_photo_in_the_detectors_mean_colour() {
        for (w, h) in [(7, 5), (0, 3)] {
            let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 200]));
            for pad in [0, 1, 3] {
                let mut expected =
                    RgbImage::from_pixel(w + 2 * pad, h + 2 * pad, image::Rgb([122, 117, 104]));
                image::imageops::replace(&mut expected, &img, i64::from(pad), i64::from(pad));
                assert_eq!(pad_image(&img, pad), expected, "{w}x{h} pad {pad}");
            }
        }
    }
}
