//! The whole analysis of one photo: detect faces, place 68 landmarks on each, cut the aligned
//! chip and compute its descriptor with the chosen descriptor network. Pure CPU work; callers
//! run it on the inference pool.

use std::path::Path;

use image::RgbImage;

use crate::{
    face::{
        align,
        quality::{self, Metrics},
        Face,
    },
    kernels::{
        resample::{self, Canvas},
        tensor,
    },
    models::{weights::ModelError, FaceModel},
    networks::{
        detector::{self, Detection, Detector, CELL},
        landmarks::{self, LandmarkNet},
        mobilefacenet::{self, MobileFaceNet},
        recognition::{Recognizer, CHIP_SIZE},
    },
    photo::{self, DecodeLimits, ImageError},
};

/// The longer side of the photo as the detector sees it; faces smaller than about 1/20 of the
/// longer image side are missed at this size, which is far below what enrolment or login
/// photos hold.
pub const DETECTOR_SIZE: usize = 416;
/// The longer side of a bordered look's view (photo and border together). Smaller than
/// [`DETECTOR_SIZE`]: the look is for close-ups, whose faces are large, and at 416 a small
/// tight crop was scaled up past the sizes the detector finds best. Measured with `facelock
/// eval` on the development set: 102 of its 120 tight lab crops give a usable face, against
/// 87 at 416, and a 640x480 login frame costs 0.46 GFLOP to detect instead of 0.51.
const BORDERED_DETECTOR_SIZE: usize = 352;
/// Detections scoring below this are not faces. Measured on the fixtures: real faces score
/// 0.50-0.97, spurious boxes in crowded photos up to 0.35, photos without faces nothing above 0.2.
pub const MIN_DETECTION_SCORE: f32 = 0.45;
/// Faces smaller than this fraction of the largest face's area are background and ignored.
const BACKGROUND_AREA: f32 = 0.1;
/// dlib's chip padding: 25% of the face on every side.
const CHIP_PADDING: f32 = 0.25;

/// A face's descriptor: as many numbers as its model gives ([`FaceModel::descriptor_len`]).
pub type Descriptor = Vec<f32>;

/// The descriptor network in use.
enum Describer {
    Dlib(Recognizer),
    MobileFaceNet(MobileFaceNet),
}

/// The three networks, loaded once.
pub struct Models {
    detector: Detector,
    landmarks: LandmarkNet,
    describer: Describer,
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

/// Decodes a photo file (an upload's formats, or a lab set's GIF and PNM) and analyses it: the
/// one path from a file's bytes to a descriptor, used by `eval`, `describe`, `bench` and the
/// tests. The server decodes uploads itself and calls [`Models::analyze`].
pub fn analyze_photo(
    models: &Models,
    bytes: &[u8],
    limits: DecodeLimits,
    times: &mut StageTimes,
) -> Result<Analysis, ImageError> {
    let image = photo::decode_file(bytes, limits)?;
    Ok(models.analyze(&image.into_rgb8(), times))
}

impl Models {
    /// Loads the detector, the landmarks and the descriptor network `model` from `dir`.
    pub fn load(dir: &Path, model: FaceModel) -> Result<Self, ModelError> {
        Ok(Self {
            detector: Detector::load(dir)?,
            landmarks: LandmarkNet::load(dir)?,
            describer: match model {
                FaceModel::DlibResnet => Describer::Dlib(Recognizer::load(dir)?),
                FaceModel::MobileFaceNet => Describer::MobileFaceNet(MobileFaceNet::load(dir)?),
            },
        })
    }

    /// The descriptor network these models compute.
    pub fn face_model(&self) -> FaceModel {
        match self.describer {
            Describer::Dlib(_) => FaceModel::DlibResnet,
            Describer::MobileFaceNet(_) => FaceModel::MobileFaceNet,
        }
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
        // finds one is not enough, and an unsure face whose landmarks make no face is looked
        // for the other ways too. A photo with no face costs thirteen detections.
        let mut upright_faces = None;
        let doubtful = match found.first() {
            None => true,
            Some(face) if face.score < CONFIDENT_SCORE => {
                let image = Canvas {
                    photo: rgb,
                    pad: padded.unwrap_or(0),
                    border: BORDER,
                };
                let faces = self.place_landmarks(image, found.clone(), times);
                let implausible = !quality::plausible_shape(faces[0].shape_error);
                upright_faces = Some(faces);
                implausible
            }
            Some(_) => false,
        };
        let mut turned_view: Option<(u16, RgbImage)> = None;
        if doubtful {
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
        // The photo as the faces stand upright, and the bordered view their positions refer to.
        let upright = turned_view.as_ref().map_or(rgb, |(_, image)| image);
        let image = Canvas {
            photo: upright,
            pad: padded.unwrap_or(0),
            border: BORDER,
        };
        if stop() {
            return None;
        }
        // Landmarks only for the view that was kept: the looks are compared by their boxes.
        let mut faces = match upright_faces {
            Some(faces) if turned_view.is_none() => faces,
            _ => self.place_landmarks(image, found, times),
        };
        let started = stage_start();
        let dominant = faces.first().map(|face| self.describe(image, face));
        stage_end(started, &mut times.descriptor, &mut times.descriptor_flops);
        if let Some(pad) = padded {
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
        let detections = self.detect(img, 0, min_score, times);
        self.place_landmarks(Canvas::plain(img), detections, times)
    }

    /// The detector's boxes in `img` with a border of `pad` pixels on every side, in pixels of
    /// the bordered photo, largest first.
    fn detect(
        &self,
        img: &RgbImage,
        pad: u32,
        min_score: f32,
        times: &mut StageTimes,
    ) -> Vec<Detection> {
        let started = stage_start();
        let view = DetectorView::of(img, pad);
        let found = self.detector.detect(&view.input(), view.scale, min_score);
        let mut detections = view.to_photo(found);
        stage_end(started, &mut times.detect, &mut times.detect_flops);
        detections.sort_by(|a, b| b.area().total_cmp(&a.area()));
        detections
    }

    /// Landmarks and the chip's transform for each of `detections` in `img`.
    fn place_landmarks(
        &self,
        img: Canvas,
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

    fn landmarks_in(&self, img: Canvas, det: &Detection) -> [(f32, f32); 68] {
        let x0 = det.left.max(0.0).floor() as u32;
        let y0 = det.top.max(0.0).floor() as u32;
        let x1 = (det.right.ceil() as u32).min(img.width()).max(x0 + 1);
        let y1 = (det.bottom.ceil() as u32).min(img.height()).max(y0 + 1);
        let crop = img.crop(x0, y0, x1 - x0, y1 - y0);
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

    /// The face's chip as dlib's descriptor takes it, on which its quality is measured too.
    pub fn chip(&self, img: Canvas, face: &Face) -> Vec<u8> {
        align::extract_chip(img, face.transform, CHIP_SIZE)
    }

    /// The descriptor of a face and its quality. Quality is measured on the central square of
    /// dlib's chip: for dlib's network the whole chip is cut anyway, for the MobileFaceNet
    /// (which has its own) only that square is.
    fn describe(&self, img: Canvas, face: &Face) -> (Descriptor, Metrics) {
        match &self.describer {
            Describer::Dlib(net) => {
                let chip = self.chip(img, face);
                (net.describe(&chip).to_vec(), Metrics::measure(face, &chip))
            }
            Describer::MobileFaceNet(net) => {
                let t = quality::centre_transform(face.transform);
                let centre = align::extract_chip(img, t, quality::CENTER);
                let descriptor = net.describe(&mobilefacenet_chip(img, face));
                (descriptor, Metrics::measure_centre(face, &centre))
            }
        }
    }

    /// The five-point 112x112 chip of a face found in `img` ([`Models::find_faces`]), as the
    /// MobileFaceNet takes it.
    pub fn mobilefacenet_chip(&self, img: &RgbImage, face: &Face) -> Vec<u8> {
        mobilefacenet_chip(Canvas::plain(img), face)
    }

    /// The raw output of the MobileFaceNet for a chip, when that is the network loaded (for
    /// checking it against another execution of the same graph).
    pub fn mobilefacenet_output(&self, chip: &[u8]) -> Option<Vec<f32>> {
        match &self.describer {
            Describer::MobileFaceNet(net) => Some(net.forward(chip)),
            Describer::Dlib(_) => None,
        }
    }
}

/// The five-point 112x112 chip of a face in `img`.
fn mobilefacenet_chip(img: Canvas, face: &Face) -> Vec<u8> {
    let t = mobilefacenet::chip_transform(&face.landmarks);
    align::extract_chip(img, t, mobilefacenet::CHIP_SIZE)
}

/// Below this, the detector may have mistaken something for a face or missed one a margin
/// would show it: the photo is looked at again with a border.
const CONFIDENT_SCORE: f32 = 0.7;
/// Borders tried around an unsure photo, as fractions of its longer side.
const PADDINGS: [f32; 3] = [0.5, 0.25, 1.0];

/// Whether a face is large in its photo or reaches its edge, as in a close-up, where the
/// detector may have boxed part of the face, or something else, for lack of a margin.
fn looks_close(d: &Detection, (w, h): (u32, u32)) -> bool {
    let (w, h) = (w as f32, h as f32);
    let edge = 0.05 * w.min(h);
    d.width() > 0.4 * w
        || d.height() > 0.4 * h
        || d.left < edge
        || d.top < edge
        || d.right > w - edge
        || d.bottom > h - edge
}

/// The border around the photo that the faces were found with, in pixels, if any.
type Bordered = Option<u32>;

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
        let mut faces = self.find_salient(image, 0, times);
        let mut kept = 0;
        for border in borders {
            let view = (image.width() + 2 * kept, image.height() + 2 * kept);
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
            let found = self.find_salient(image, pad, times);
            if best_score(&found) > best_score(&faces) {
                faces = found;
                kept = pad;
            }
        }
        Some((faces, (kept > 0).then_some(kept)))
    }

    /// The boxes of the faces that count in `image` with a border of `pad` pixels, largest
    /// first.
    fn find_salient(&self, image: &RgbImage, pad: u32, times: &mut StageTimes) -> Vec<Detection> {
        salient(self.detect(image, pad, MIN_DETECTION_SCORE, times))
    }
}

fn best_score(faces: &[Detection]) -> f32 {
    faces.iter().map(|f| f.score).fold(0.0, f32::max)
}

/// The colour of the border around an unsure photo: the detector's mean, which it sees as zero.
const BORDER: [u8; 3] = [122, 117, 104];

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

/// What the detector is shown of a photo, and how its pixels map back to the photo's.
struct DetectorView {
    /// RGB, `size` pixels, a whole number of the detector's cells each way.
    pixels: Vec<u8>,
    size: (usize, usize),
    /// The part of `pixels` showing the (bordered) photo, from the top-left; black beyond.
    content: (usize, usize),
    /// Where the photo's own pixels lie in `pixels`: left, top, right, bottom.
    photo: [usize; 4],
    /// Photo pixels per detector pixel.
    scale: f32,
    /// Where the view's top-left corner lies in the bordered photo's pixels, on both axes.
    origin: f32,
    /// The bordered photo's width and height.
    bounds: (f32, f32),
}

impl DetectorView {
    /// `img` with a border of `pad` pixels of [`BORDER`] on every side, scaled so the bordered
    /// photo's longer side is [`BORDERED_DETECTOR_SIZE`] (without a border, [`DETECTOR_SIZE`]).
    /// Without a border, the photo sits at the
    /// top-left of a black canvas rounded up to whole cells (not a square: the rows or columns
    /// a square would add hold no photo, and a 4:3 frame's would be a quarter of the work).
    /// With one, the photo is scaled on its own and the border drawn at the detector's size:
    /// scaling the bordered photo at full size cost a tenth of the detector's time.
    fn of(img: &RgbImage, pad: u32) -> Self {
        let (w, h, pad) = (img.width() as f32, img.height() as f32, pad as f32);
        let size = if pad > 0.0 {
            BORDERED_DETECTOR_SIZE
        } else {
            DETECTOR_SIZE
        };
        let scale = (w.max(h) + 2.0 * pad) / size as f32;
        let fit = |side: f32| ((side / scale).round() as usize).clamp(1, size);
        let content = (fit(w + 2.0 * pad), fit(h + 2.0 * pad));
        let border = ((pad / scale).round() as usize).min(content.0.min(content.1) / 2);
        let nw = fit(w).min(content.0 - 2 * border).max(1);
        let nh = fit(h).min(content.1 - 2 * border).max(1);
        let resized = resample::resize(img, nw as u32, nh as u32);
        let (width, height) = (
            content.0.next_multiple_of(CELL),
            content.1.next_multiple_of(CELL),
        );
        let mut pixels = vec![0; width * height * 3];
        if border > 0 {
            let line = BORDER.repeat(content.0);
            for row in pixels.chunks_exact_mut(width * 3).take(content.1) {
                row[..line.len()].copy_from_slice(&line);
            }
        }
        for (row, line) in resized.chunks_exact(nw * 3).enumerate() {
            pixels[((border + row) * width + border) * 3..][..line.len()].copy_from_slice(line);
        }
        Self {
            pixels,
            size: (width, height),
            content,
            photo: [border, border, border + nw, border + nh],
            scale,
            origin: pad - border as f32 * scale,
            bounds: (w + 2.0 * pad, h + 2.0 * pad),
        }
    }

    fn input(&self) -> detector::Input<'_> {
        detector::Input {
            pixels: &self.pixels,
            size: self.size,
            content: self.content,
            photo: self.photo,
            border: BORDER,
        }
    }

    /// `found` moved into the pixels of the bordered photo, and cut to them.
    fn to_photo(&self, mut found: Vec<Detection>) -> Vec<Detection> {
        let (w, h) = self.bounds;
        for d in &mut found {
            d.left = (d.left + self.origin).clamp(0.0, w);
            d.right = (d.right + self.origin).clamp(0.0, w);
            d.top = (d.top + self.origin).clamp(0.0, h);
            d.bottom = (d.bottom + self.origin).clamp(0.0, h);
        }
        found
    }
}

/// Euclidean distance between descriptors.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a bright square lands in the detector's view, mapped back to the bordered photo.
    fn square_seen_at(img: &RgbImage, pad: u32) -> (f32, f32) {
        let view = DetectorView::of(img, pad);
        assert_eq!(view.size.0 % CELL, 0);
        assert_eq!(view.size.1 % CELL, 0);
        let (mut sum, mut n) = ((0.0, 0.0), 0.0);
        for (i, p) in view.pixels.chunks_exact(3).enumerate() {
            if p[0] > 200 && p[1] > 200 && p[2] > 200 {
                let (x, y) = ((i % view.size.0) as f32, (i / view.size.0) as f32);
                sum = (sum.0 + x + 0.5, sum.1 + y + 0.5);
                n += 1.0;
            }
        }
        assert!(n > 0.0, "the square is in the view");
        let found = vec![Detection {
            left: sum.0 / n * view.scale,
            top: sum.1 / n * view.scale,
            right: sum.0 / n * view.scale,
            bottom: sum.1 / n * view.scale,
            score: 1.0,
        }];
        let d = view.to_photo(found)[0];
        (d.left, d.top)
    }

    #[test]
    fn the_detectors_view_maps_back_to_the_bordered_photo() {
        // A 640x480 frame, dark, with a white square centred at (500, 100).
        let img = RgbImage::from_fn(640, 480, |x, y| {
            let inside = (480..520).contains(&x) && (80..120).contains(&y);
            image::Rgb(if inside { [255; 3] } else { [20; 3] })
        });
        for pad in [0, 160, 320, 640] {
            let (x, y) = square_seen_at(&img, pad);
            let (ex, ey) = (500.0 + pad as f32, 100.0 + pad as f32);
            // Within a detector pixel, whatever the scale.
            let size = if pad > 0 {
                BORDERED_DETECTOR_SIZE
            } else {
                DETECTOR_SIZE
            };
            let tolerance = (640.0 + 2.0 * pad as f32) / size as f32;
            assert!(
                (x - ex).abs() <= tolerance && (y - ey).abs() <= tolerance,
                "pad {pad}: ({x}, {y}) for ({ex}, {ey})"
            );
        }
        // The border is the detector's mean colour; past the bordered photo, black.
        let view = DetectorView::of(&img, 320);
        assert_eq!(view.pixels[..3], BORDER);
        assert_eq!(view.size, (352, 320));
        assert_eq!(DetectorView::of(&img, 0).size, (416, 320));
        assert_eq!(view.pixels[view.pixels.len() - 3..], [0, 0, 0]);
    }
}
