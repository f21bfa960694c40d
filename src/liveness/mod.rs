//! Is a live head in front of the camera, rather than a print, a screen or a replayed photo?
//! Judged from the face landmarks of a short burst of frames taken while the person follows a
//! challenge: the requested motion must happen ([`geometry::yaw`], [`geometry::face_size`]),
//! and it must be the motion of a three-dimensional head. A flat picture moved in front of a
//! camera, however it is turned or tilted, maps its landmarks from frame to frame by a
//! homography; a head turning does not (the nose moves across the face while the outline of
//! the cheeks does not follow), which [`geometry::planar_residual`] measures.

pub mod geometry;
