//! Is a live head in front of the camera, rather than a print, a screen or a replayed photo?
//! Judged from the face landmarks of a short burst of frames taken while the person follows a
//! challenge: the requested motions must happen, in their order ([`geometry::yaw`] for turns,
//! [`geometry::roll`] for tilts), and the turns must be the motion of a three-dimensional
//! head. A flat picture moved in front of a camera, however it is turned or tilted, maps its
//! landmarks from frame to frame by a homography; a head turning does not (the nose moves
//! across the face while the outline of the cheeks does not follow), which
//! [`geometry::planar_residual`] measures.
//!
//! What it cannot tell: a video of the person moving their head, replayed on a screen, is a
//! real head's motion (only the challenge drawn at random, one of 104, stands against it), and
//! so is a sequence of several photos of the person taken at different angles.

pub mod geometry;

use std::time::Duration;

use geometry::{planar_residual, roll, width_ratio, yaw, Landmarks, MIN_HEAD_RESIDUAL};

/// Frames an answer to a challenge holds: enough to see the start and every motion.
pub const MIN_FRAMES: usize = 1 + CHALLENGE_LENGTH;
pub const MAX_FRAMES: usize = 15;

/// How long a challenge can be answered after it is issued.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// How far [`geometry::yaw`] must move from the first frame for a turn to count. Measured on
/// the `pose` sittings of the development set (15 people x 2): heads turned 30 degrees moved
/// it by 0.21-0.39 (either way), 15 degrees by 0.09-0.25. So the person turns by about 20-30
/// degrees; [`MIN_HEAD_RESIDUAL`] asks for about as much.
pub const MIN_TURN: f32 = 0.15;

/// A frame counts towards a turn only while the face keeps at least this share of the first
/// frame's [`geometry::width_ratio`]. Measured on the development set: heads turned 30 degrees
/// kept 0.91-1.04 of it, 45 degrees 0.80-1.00; a photo turned 57-63 degrees in front of the
/// camera, far enough to move the yaw as a turning head does, kept 0.66-0.74 (the landmarks of
/// such a squashed face are misplaced enough to look like depth, so the planar check alone
/// would not refuse it).
pub const MIN_TURN_WIDTH: f32 = 0.82;

/// How far [`geometry::roll`] must move from the first frame for a tilt to count, in degrees.
/// Measured on the `pose` sittings of the development set: heads turned 30 degrees moved it by
/// at most 6.9 (45 degrees: 10.3); the frontal frame rolled in the image by 15 degrees measured
/// 13.9-17.3. The person tilts by about 20 degrees.
pub const MIN_TILT: f32 = 12.0;

/// A motion a challenge asks for. Left and right are the person's own: turning to their left
/// shows the camera their right cheek (in a camera image that is not mirrored, the nose moves
/// towards the image's right); tilting to their left brings the head towards their left
/// shoulder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    TurnLeft,
    TurnRight,
    TiltLeft,
    TiltRight,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Self::TurnLeft,
        Self::TurnRight,
        Self::TiltLeft,
        Self::TiltRight,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::TurnLeft => "turn_left",
            Self::TurnRight => "turn_right",
            Self::TiltLeft => "tilt_left",
            Self::TiltRight => "tilt_right",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }

    pub fn instruction(self) -> &'static str {
        match self {
            Self::TurnLeft => "turn your head to your left",
            Self::TurnRight => "turn your head to your right",
            Self::TiltLeft => "tilt your head towards your left shoulder",
            Self::TiltRight => "tilt your head towards your right shoulder",
        }
    }

    /// The same motion seen in a mirror.
    pub fn mirrored(self) -> Self {
        match self {
            Self::TurnLeft => Self::TurnRight,
            Self::TurnRight => Self::TurnLeft,
            Self::TiltLeft => Self::TiltRight,
            Self::TiltRight => Self::TiltLeft,
        }
    }

    fn is_turn(self) -> bool {
        matches!(self, Self::TurnLeft | Self::TurnRight)
    }
}

/// Motions in a challenge.
pub const CHALLENGE_LENGTH: usize = 4;

/// Every sequence a challenge is drawn from: [`CHALLENGE_LENGTH`] motions, never the same twice
/// in a row, at least one turn (whose depth [`judge`] checks) and one tilt. There are 104, so a
/// recording of a head following one of them (or its mirror image, which follows another)
/// answers one challenge in 104, and fetching challenges until one fits costs the address a
/// failed attempt each.
pub fn sequences() -> Vec<Vec<Action>> {
    let mut all: Vec<Vec<Action>> = vec![Vec::new()];
    for _ in 0..CHALLENGE_LENGTH {
        all = all
            .into_iter()
            .flat_map(|seq| {
                let last = seq.last().copied();
                Action::ALL
                    .into_iter()
                    .filter(move |a| last != Some(*a))
                    .map(move |a| {
                        let mut next = seq.clone();
                        next.push(a);
                        next
                    })
            })
            .collect();
    }
    all.retain(|seq| seq.iter().any(|a| a.is_turn()) && !seq.iter().all(|a| a.is_turn()));
    all
}

/// The motions of a challenge, drawn with the random number `random` (a bias of 1 in 40
/// million at most, from the modulo).
pub fn actions_for(random: u32) -> Vec<Action> {
    let all = sequences();
    all[random as usize % all.len()].clone()
}

/// Actions as stored: codes separated by commas.
pub fn encode_actions(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|a| a.code())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_actions(stored: &str) -> Option<Vec<Action>> {
    stored.split(',').map(Action::parse).collect()
}

/// What a person is asked to do, in a sentence.
pub fn instructions(actions: &[Action]) -> String {
    let steps: Vec<&str> = actions.iter().map(|a| a.instruction()).collect();
    let mut text = format!(
        "Look at the camera, then {}, coming back to the camera after each",
        steps.join(", then ")
    );
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    text
}

/// The one face of a frame, as the engine saw it.
#[derive(Clone, Debug)]
pub struct FrameFace {
    pub landmarks: Landmarks,
    pub descriptor: Vec<f32>,
}

/// Why a burst of frames does not show a live head following the challenge.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Frame `frame` (from 0) does not show the face of an earlier frame.
    #[error("frame {frame} shows another face than an earlier frame")]
    FaceChanged { frame: usize },
    /// The motions the frames show are not those asked for, in their order: `seen` are the
    /// motions they show.
    #[error("the frames show the motions {seen:?}, not those asked for")]
    MotionMissing { seen: Vec<Action> },
    /// The head turned, but its landmarks moved as those of a flat picture do.
    #[error("the face moved as a flat picture does, not as a head turning")]
    Flat { residual: f32 },
}

/// The motion one frame shows against the first: a tilt when [`geometry::roll`] moved at
/// least [`MIN_TILT`], else a turn when [`geometry::yaw`] moved at least [`MIN_TURN`] and the
/// face kept [`MIN_TURN_WIDTH`] of its width; none otherwise.
fn motion(first: &Landmarks, frame: &Landmarks) -> Option<Action> {
    let tilted = roll(frame) - roll(first);
    if tilted >= MIN_TILT {
        return Some(Action::TiltLeft);
    }
    if -tilted >= MIN_TILT {
        return Some(Action::TiltRight);
    }
    if width_ratio(frame) < width_ratio(first) * MIN_TURN_WIDTH {
        return None;
    }
    let turned = yaw(frame) - yaw(first);
    if turned >= MIN_TURN {
        Some(Action::TurnLeft)
    } else if -turned >= MIN_TURN {
        Some(Action::TurnRight)
    } else {
        None
    }
}

/// The motions a burst shows, in order: each run of frames showing one [`motion`] is one. A
/// recording of more motions than asked does not answer a challenge that asks for some of them.
fn motions(frames: &[FrameFace]) -> Vec<Action> {
    let Some(first) = frames.first() else {
        return Vec::new();
    };
    let mut seen: Vec<Action> = Vec::new();
    for frame in frames {
        if let Some(m) = motion(&first.landmarks, &frame.landmarks) {
            if seen.last() != Some(&m) {
                seen.push(m);
            }
        }
    }
    seen
}

/// What a burst proved: the frame to log in with (the most frontal) and the largest departure
/// from a plane that was seen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub login_frame: usize,
    pub residual: f32,
}

/// The frame to log in with: of those no more tilted than half [`MIN_TILT`] from the first
/// (the first is one), the one whose nose is nearest the middle of the face.
fn most_frontal(frames: &[FrameFace]) -> usize {
    let Some(first) = frames.first() else {
        return 0;
    };
    let start = roll(&first.landmarks);
    let off_centre = |f: &FrameFace| (yaw(&f.landmarks) - 0.5).abs();
    frames
        .iter()
        .enumerate()
        .filter(|(_, f)| (roll(&f.landmarks) - start).abs() < MIN_TILT / 2.0)
        .min_by(|a, b| off_centre(a.1).total_cmp(&off_centre(b.1)))
        .map_or(0, |(i, _)| i)
}

/// Judges a burst against the challenge's `actions`, in order: the same face in every frame
/// (the `similarity` of every two frames' descriptors, 0-100, at least `floor`: a switch of
/// person is then as hard as a false match at login, whichever frames it pairs), exactly the
/// motions asked for in their order (see [`motions`]), and a head's depth (some two frames at
/// least [`MIN_HEAD_RESIDUAL`] from being one plane).
pub fn judge(
    actions: &[Action],
    frames: &[FrameFace],
    similarity: &dyn Fn(&[f32], &[f32]) -> f32,
    floor: f32,
) -> Result<Verdict, Refusal> {
    for (i, later) in frames.iter().enumerate().skip(1) {
        if frames[..i]
            .iter()
            .any(|earlier| similarity(&earlier.descriptor, &later.descriptor) < floor)
        {
            return Err(Refusal::FaceChanged { frame: i });
        }
    }
    let seen = motions(frames);
    if seen != actions {
        return Err(Refusal::MotionMissing { seen });
    }
    let login_frame = most_frontal(frames);
    // Every two frames: a challenge may ask for one turn only, which may not take the head
    // far from the login frame (when that is a frame on the way out).
    let residual = frames
        .iter()
        .enumerate()
        .flat_map(|(i, a)| frames[i + 1..].iter().map(move |b| (a, b)))
        .filter_map(|(a, b)| planar_residual(&a.landmarks, &b.landmarks))
        .fold(0.0, f32::max);
    if residual < MIN_HEAD_RESIDUAL {
        return Err(Refusal::Flat { residual });
    }
    Ok(Verdict {
        login_frame,
        residual,
    })
}

#[cfg(test)]
mod tests {
    use super::{geometry::tests::head, *};

    /// A synthetic head turned by `yaw` radians and rolled by `roll` degrees in the image.
    fn pose(yaw: f32, roll: f32) -> Landmarks {
        let (s, c) = roll.to_radians().sin_cos();
        head(yaw).map(|(x, y)| {
            let (x, y) = (x - 320.0, y - 240.0);
            (320.0 + x * c - y * s, 240.0 + x * s + y * c)
        })
    }

    fn burst(poses: &[(f32, f32)]) -> Vec<FrameFace> {
        poses
            .iter()
            .map(|&(yaw, roll)| FrameFace {
                landmarks: pose(yaw, roll),
                descriptor: vec![1.0, 0.0],
            })
            .collect()
    }

    /// 100 for equal descriptors, 0 otherwise.
    fn same(a: &[f32], b: &[f32]) -> f32 {
        if a == b {
            100.0
        } else {
            0.0
        }
    }

    /// Turn left, tilt left, turn right, tilt right, each out and back.
    const FOUR_MOTIONS: [(f32, f32); 13] = [
        (0.0, 0.0),
        (0.3, 0.0),
        (0.6, 0.0),
        (0.0, 0.0),
        (0.0, 10.0),
        (0.0, 20.0),
        (0.0, 0.0),
        (-0.3, 0.0),
        (-0.6, 0.0),
        (0.0, 0.0),
        (0.0, -10.0),
        (0.0, -20.0),
        (0.05, 2.0),
    ];

    const ASKED: [Action; 4] = {
        use Action::*;
        [TurnLeft, TiltLeft, TurnRight, TiltRight]
    };

    #[test]
    fn a_head_moving_as_asked_passes_and_logs_in_with_its_frontal_frame() {
        let verdict = judge(&ASKED, &burst(&FOUR_MOTIONS), &same, 90.0).unwrap();
        assert!(
            [0, 3, 6, 9, 12].contains(&verdict.login_frame),
            "{verdict:?}"
        );
        assert!(verdict.residual >= MIN_HEAD_RESIDUAL);
    }

    #[test]
    fn motions_in_another_order_extra_or_missing_are_refused() {
        use Action::*;
        let frames = burst(&FOUR_MOTIONS);
        let refused =
            |actions: &[Action], frames: &[FrameFace]| judge(actions, frames, &same, 90.0);
        let seen = ASKED.to_vec();
        assert_eq!(
            refused(&[TurnLeft, TiltRight, TurnRight, TiltLeft], &frames),
            Err(Refusal::MotionMissing { seen: seen.clone() })
        );
        assert_eq!(
            refused(&[TiltLeft, TurnLeft, TurnRight, TiltRight], &frames),
            Err(Refusal::MotionMissing { seen: seen.clone() })
        );
        // A recording of more motions than asked does not answer for some of them.
        assert_eq!(
            refused(&[TurnLeft, TiltLeft, TurnRight], &frames),
            Err(Refusal::MotionMissing { seen })
        );
        assert_eq!(
            refused(&ASKED, &burst(&[(0.0, 0.0); 5])),
            Err(Refusal::MotionMissing { seen: vec![] })
        );
        // A mirror image answers the mirrored sequence, not the one asked.
        let mirrored: Vec<(f32, f32)> = FOUR_MOTIONS.iter().map(|&(y, r)| (-y, -r)).collect();
        let mirror_seen: Vec<Action> = ASKED.iter().map(|a| a.mirrored()).collect();
        assert_eq!(
            refused(&ASKED, &burst(&mirrored)),
            Err(Refusal::MotionMissing {
                seen: mirror_seen.clone()
            })
        );
        assert!(refused(&mirror_seen, &burst(&mirrored)).is_ok());
    }

    #[test]
    fn another_face_mid_way_is_refused() {
        let mut frames = burst(&FOUR_MOTIONS);
        frames[3].descriptor = vec![0.0, 1.0];
        assert_eq!(
            judge(&ASKED, &frames, &same, 90.0),
            Err(Refusal::FaceChanged { frame: 3 })
        );
    }

    #[test]
    fn a_burst_that_only_tilts_shows_no_depth() {
        use Action::*;
        let frames = burst(&[(0.0, 0.0), (0.0, 20.0), (0.0, 0.0), (0.0, -20.0)]);
        assert!(matches!(
            judge(&[TiltLeft, TiltRight], &frames, &same, 90.0),
            Err(Refusal::Flat { .. })
        ));
    }

    #[test]
    fn over_a_hundred_challenges_each_with_a_turn_and_a_tilt_are_drawn_and_read_back() {
        let all = sequences();
        assert_eq!(all.len(), 104);
        let distinct: std::collections::HashSet<String> =
            all.iter().map(|s| encode_actions(s)).collect();
        assert_eq!(distinct.len(), all.len());
        for seq in &all {
            assert!(seq.iter().any(|a| a.is_turn()) && seq.iter().any(|a| !a.is_turn()));
            assert!(seq.windows(2).all(|w| w[0] != w[1]), "{seq:?}");
            let mirror: Vec<Action> = seq.iter().map(|a| a.mirrored()).collect();
            assert!(
                all.contains(&mirror),
                "the mirror of {seq:?} is a challenge too"
            );
        }
        let drawn: std::collections::HashSet<String> = (0..10_000u32)
            .map(|r| encode_actions(&actions_for(r.wrapping_mul(2_654_435_761))))
            .collect();
        assert_eq!(drawn.len(), all.len(), "every sequence is drawn");
        for stored in drawn {
            let actions = decode_actions(&stored).unwrap();
            assert_eq!(encode_actions(&actions), stored);
        }
        assert_eq!(decode_actions("turn_left,jump"), None);
        assert_eq!(
            instructions(&[Action::TurnLeft, Action::TiltRight]),
            "Look at the camera, then turn your head to your left, then tilt your head towards your right shoulder, coming back to the camera after each"
        );
    }
}
