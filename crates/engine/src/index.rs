//! The embedded engine's 1:N index, compact enough for a million faces on one machine.
//!
//! Each face is a row of parallel arrays, with no heap allocation of its own:
//! - a coarse copy of 128 numbers in `i8` (128 bytes) that a search scans in full, with the
//!   squared norm beside it, so a distance is one integer dot product: the descriptor itself
//!   when it has 128 numbers (dlib's), else its first 128 coordinates in a fixed rotation
//!   (random signs, then a Walsh-Hadamard transform), which keep a quarter of every distance
//!   squared, on average, whatever the pair;
//! - a fine copy of the whole descriptor that re-ranks the best coarse candidates: in `i16`
//!   for 128 numbers (256 bytes, steps of 3e-5: the distance it gives differs from the `f32`
//!   one by less than 1e-4), in `i8` for longer ones (512 bytes for the MobileFaceNet's unit
//!   vectors, steps of 2e-3: at the distances where decisions are made its distance differs
//!   from the `f32` one by less than 2e-3, a few tenths of a similarity point at most: a
//!   ranking, which a caller holding the `f32` descriptors can refine);
//! - its face id as the 128-bit UUID it is, and its owner as an index into the user table.
//!
//! Users are interned once; each has the list of its faces, so a 1:1 search reads only those.
//! Deleted faces become tombstones until the next full load compacts them away.
//!
//! The scan is written as plain loops that the compiler vectorises; on x86-64 a copy compiled
//! for AVX-512 (with VNNI's fused multiply-add of 16-bit pairs) or for AVX2 is chosen at run
//! time when the processor has it, so the binary stays portable; elsewhere (NEON on aarch64 is
//! in the baseline) the plain copy runs. Past `PARALLEL_FROM` faces the scan is split across
//! the cores.

use std::{borrow::Borrow, collections::HashMap, hash::Hash};

/// Numbers in the coarse copy.
const COARSE_DIM: usize = 128;
/// Coarse scale: components are clamped to ±0.5 (dlib's stay well inside) in steps of 1/254.
const COARSE_SCALE: f32 = 254.0;
/// Fine scale of short descriptors: components clamped to ±1 in steps of 1/32767.
const FINE_SCALE: f32 = 32767.0;
/// Fine scale of long unit-length descriptors, in `i8`: components clamped to ±0.25 (the
/// MobileFaceNet's largest on the development set is 0.199) in steps of 1/508.
const NARROW_FINE_SCALE: f32 = 508.0;
/// Coarse candidates re-ranked with the fine copy.
const RERANK: usize = 64;
/// Below this many faces one thread scans them all.
const PARALLEL_FROM: usize = 65_536;
const NONE: u32 = u32::MAX;

/// What an index knows its faces' owners by: the caller's user id type, looked up by its text.
pub trait Owner: Clone + Eq + Hash + Borrow<str> {}
impl<U: Clone + Eq + Hash + Borrow<str>> Owner for U {}

/// Why an index could not be built from the store's faces.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("face {0} has a damaged descriptor")]
    DamagedDescriptor(String),
    #[error("the store stopped before sending every face")]
    Incomplete,
}

/// A face found by a search, nearest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit<U> {
    pub face_id: uuid::Uuid,
    pub user_id: U,
    pub distance: f32,
}

pub struct FaceIndex<U> {
    /// Numbers in a descriptor.
    dim: usize,
    coarse: Vec<i8>,
    coarse_norms: Vec<i32>,
    /// The fine copy: `i16` for descriptors of up to [`COARSE_DIM`] numbers, else `i8`
    /// (`narrow`), one of the two left empty.
    fine: Vec<i16>,
    narrow: Vec<i8>,
    face_ids: Vec<u128>,
    /// The owner of each face (an index into `users`), or `NONE` for a deleted face.
    owners: Vec<u32>,
    /// The next face of the same user, or `NONE`.
    next_of_user: Vec<u32>,
    users: Vec<U>,
    first_of_user: Vec<u32>,
    user_index: HashMap<U, u32, foldhash::fast::RandomState>,
    live: usize,
}

impl<U> FaceIndex<U> {
    /// An empty index of descriptors of `dim` numbers.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            coarse: Vec::new(),
            coarse_norms: Vec::new(),
            fine: Vec::new(),
            narrow: Vec::new(),
            face_ids: Vec::new(),
            owners: Vec::new(),
            next_of_user: Vec::new(),
            users: Vec::new(),
            first_of_user: Vec::new(),
            user_index: HashMap::default(),
            live: 0,
        }
    }
}

/// `v` clamped to ±`limit` and rounded half away from zero. Written with a truncating cast
/// rather than `f32::round`, which the x86-64 baseline has no instruction for (a call per
/// component: most of a million-face load).
#[inline(always)]
fn quantize(v: f32, limit: f32) -> i32 {
    let x = v.clamp(-limit, limit);
    (x + 0.5f32.copysign(x)) as i32
}

/// The coarse copy: the descriptor itself when it is short, else its rotation's first
/// [`COARSE_DIM`] coordinates.
fn coarse_of(d: &[f32]) -> Vec<i8> {
    let quantized = |v: &f32| quantize(v * COARSE_SCALE, 127.0) as i8;
    if d.len() <= COARSE_DIM {
        d.iter().map(quantized).collect()
    } else {
        rotated(d)[..COARSE_DIM].iter().map(quantized).collect()
    }
}

/// `d` in a fixed orthonormal basis: each component's sign flipped or not (a fixed
/// pseudo-random choice), zeros up to a power of two, then the Walsh-Hadamard transform
/// scaled to keep lengths. Any of its coordinates holds, on average, the same share of a
/// vector's length, so a prefix keeps that share of every distance squared.
fn rotated(d: &[f32]) -> Vec<f32> {
    let n = d.len().next_power_of_two();
    let mut v: Vec<f32> = (0..n)
        .map(|i| {
            let x = d.get(i).copied().unwrap_or(0.0);
            let flip = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 1;
            if flip {
                -x
            } else {
                x
            }
        })
        .collect();
    let mut half = 1;
    while half < n {
        for block in v.chunks_exact_mut(2 * half) {
            let (a, b) = block.split_at_mut(half);
            for (x, y) in a.iter_mut().zip(b) {
                (*x, *y) = (*x + *y, *x - *y);
            }
        }
        half *= 2;
    }
    let scale = 1.0 / (n as f32).sqrt();
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

fn fine_of(d: &[f32]) -> Vec<i16> {
    d.iter()
        .map(|v| quantize(v * FINE_SCALE, 32767.0) as i16)
        .collect()
}

fn narrow_of(d: &[f32]) -> Vec<i8> {
    d.iter()
        .map(|v| quantize(v * NARROW_FINE_SCALE, 127.0) as i8)
        .collect()
}

#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(i16::from(x) * i16::from(y)))
        .sum()
}

/// The `RERANK` nearest faces of `rows` (coarse squared distances), as (distance, row).
/// Distances are computed a block at a time, without branches, then the block is sifted.
#[inline(always)]
fn scan_rows(
    query: &[i8],
    query_norm: i32,
    coarse: &[i8],
    norms: &[i32],
    first_row: usize,
) -> Vec<(i32, u32)> {
    const BLOCK: usize = 256;
    let mut best: Vec<(i32, u32)> = Vec::with_capacity(RERANK + 1);
    let mut worst = i32::MAX;
    let mut distances = [0i32; BLOCK];
    for (b, (rows, norms)) in coarse
        .chunks(BLOCK * query.len())
        .zip(norms.chunks(BLOCK))
        .enumerate()
    {
        for ((d, row), &norm) in distances
            .iter_mut()
            .zip(rows.chunks_exact(query.len()))
            .zip(norms)
        {
            *d = query_norm + norm - 2 * dot_i8(query, row);
        }
        for (i, &d) in distances.iter().take(norms.len()).enumerate() {
            if d < worst || best.len() < RERANK {
                best.push((d, (first_row + b * BLOCK + i) as u32));
                if best.len() > RERANK {
                    best.sort_unstable();
                    best.truncate(RERANK);
                }
                if best.len() == RERANK {
                    worst = best.iter().map(|b| b.0).max().unwrap_or(i32::MAX);
                }
            }
        }
    }
    best
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scan_rows_avx2(
    query: &[i8],
    query_norm: i32,
    coarse: &[i8],
    norms: &[i32],
    first_row: usize,
) -> Vec<(i32, u32)> {
    scan_rows(query, query_norm, coarse, norms, first_row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn scan_rows_avx512(
    query: &[i8],
    query_norm: i32,
    coarse: &[i8],
    norms: &[i32],
    first_row: usize,
) -> Vec<(i32, u32)> {
    scan_rows(query, query_norm, coarse, norms, first_row)
}

/// The scan, in the best copy this processor runs.
fn scan(
    query: &[i8],
    query_norm: i32,
    coarse: &[i8],
    norms: &[i32],
    first_row: usize,
) -> Vec<(i32, u32)> {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::cpu::isa() >= crate::kernels::cpu::Isa::Avx512
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
    {
        // SAFETY: the processor has these features, checked just above.
        return unsafe { scan_rows_avx512(query, query_norm, coarse, norms, first_row) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::cpu::isa() >= crate::kernels::cpu::Isa::Avx2 {
        // SAFETY: the processor has AVX2, checked just above.
        return unsafe { scan_rows_avx2(query, query_norm, coarse, norms, first_row) };
    }
    scan_rows(query, query_norm, coarse, norms, first_row)
}

impl<U: Owner> FaceIndex<U> {
    /// Numbers in each descriptor of this index.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Faces in the index, deleted ones left out.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes held, for `facelock bench`.
    pub fn heap_bytes(&self) -> usize {
        self.coarse.capacity()
            + self.coarse_norms.capacity() * 4
            + self.fine.capacity() * 2
            + self.narrow.capacity()
            + self.face_ids.capacity() * 16
            + self.owners.capacity() * 4
            + self.next_of_user.capacity() * 4
            + self.first_of_user.capacity() * 4
            + self.users.capacity() * std::mem::size_of::<U>()
            + self.users.iter().map(|u| u.borrow().len()).sum::<usize>() * 2
            + self.user_index.capacity() * (std::mem::size_of::<U>() + 4 + 1)
    }

    /// Adds a face as a store holds it: its id as text, its owner's id as stored (turned into
    /// `U` by `parse_user` the first time it is seen), and its descriptor. A face whose id is
    /// not a UUID, or whose owner does not parse, is skipped with a warning; a descriptor of
    /// the wrong length is an error.
    pub fn insert_stored(
        &mut self,
        face_id: &str,
        user_id: &str,
        descriptor: &[f32],
        parse_user: impl FnOnce(&str) -> Option<U>,
    ) -> Result<(), BuildError> {
        if descriptor.len() != self.dim {
            return Err(BuildError::DamagedDescriptor(face_id.to_owned()));
        }
        let Ok(uuid) = uuid::Uuid::parse_str(face_id) else {
            tracing::warn!(face_id, "stored face id is not a UUID; skipped");
            return Ok(());
        };
        let owner = match self.user_index.get(user_id) {
            Some(&i) => i,
            None => match parse_user(user_id) {
                Some(user) => self.intern(&user),
                None => {
                    tracing::warn!(face_id, "stored face has an invalid user id; skipped");
                    return Ok(());
                }
            },
        };
        self.insert_row(uuid, owner, descriptor);
        Ok(())
    }

    /// Gives back what was reserved by doubling while the number of faces was unknown (large
    /// blocks shrink in place).
    pub fn shrink_to_fit(&mut self) {
        self.coarse.shrink_to_fit();
        self.fine.shrink_to_fit();
        self.narrow.shrink_to_fit();
        self.coarse_norms.shrink_to_fit();
        self.face_ids.shrink_to_fit();
        self.owners.shrink_to_fit();
        self.next_of_user.shrink_to_fit();
        self.first_of_user.shrink_to_fit();
        self.users.shrink_to_fit();
    }

    /// Room for `faces` more faces, so loading a known number does not reallocate.
    pub fn reserve(&mut self, faces: usize) {
        self.user_index.reserve(faces);
        self.coarse.reserve_exact(faces * self.coarse_dim());
        if self.is_long() {
            self.narrow.reserve_exact(faces * self.dim);
        } else {
            self.fine.reserve_exact(faces * self.dim);
        }
        self.coarse_norms.reserve_exact(faces);
        self.face_ids.reserve_exact(faces);
        self.owners.reserve_exact(faces);
        self.next_of_user.reserve_exact(faces);
    }

    fn intern(&mut self, user: &U) -> u32 {
        if let Some(&i) = self.user_index.get(user.borrow()) {
            return i;
        }
        let i = self.users.len() as u32;
        self.users.push(user.clone());
        self.first_of_user.push(NONE);
        self.user_index.insert(user.clone(), i);
        i
    }

    /// Adds a face. Face ids are unique (the store's primary key, or a new UUID): the index
    /// does not look for an earlier copy.
    ///
    /// # Panics
    /// When the descriptor is not of the index's length.
    pub fn insert(&mut self, face_id: uuid::Uuid, user: &U, descriptor: &[f32]) {
        let owner = self.intern(user);
        self.insert_row(face_id, owner, descriptor);
    }

    fn insert_row(&mut self, face_id: uuid::Uuid, owner: u32, descriptor: &[f32]) {
        assert_eq!(descriptor.len(), self.dim, "descriptor length");
        let row = self.owners.len() as u32;
        let coarse = coarse_of(descriptor);
        self.coarse_norms.push(dot_i8(&coarse, &coarse));
        self.coarse.extend_from_slice(&coarse);
        if self.is_long() {
            self.narrow.extend_from_slice(&narrow_of(descriptor));
        } else {
            self.fine.extend_from_slice(&fine_of(descriptor));
        }
        self.face_ids.push(face_id.as_u128());
        self.owners.push(owner);
        self.next_of_user.push(self.first_of_user[owner as usize]);
        self.first_of_user[owner as usize] = row;
        self.live += 1;
    }

    /// Deletes faces by id; unknown ids are ignored.
    pub fn remove(&mut self, face_ids: &[uuid::Uuid]) {
        if face_ids.is_empty() || self.live == 0 {
            return;
        }
        let wanted: std::collections::HashSet<u128> =
            face_ids.iter().map(|f| f.as_u128()).collect();
        for row in 0..self.face_ids.len() {
            if self.owners[row] == NONE || !wanted.contains(&self.face_ids[row]) {
                continue;
            }
            let owner = self.owners[row] as usize;
            // Unlink the row from its user's list.
            let mut link = self.first_of_user[owner];
            if link == row as u32 {
                self.first_of_user[owner] = self.next_of_user[row];
            } else {
                while link != NONE {
                    let next = self.next_of_user[link as usize];
                    if next == row as u32 {
                        self.next_of_user[link as usize] = self.next_of_user[row];
                        break;
                    }
                    link = next;
                }
            }
            self.owners[row] = NONE;
            // Never among the nearest again: the largest coarse distance there is.
            self.coarse_norms[row] = i32::MAX / 4;
            let c = self.coarse_dim();
            self.coarse[row * c..(row + 1) * c].fill(0);
            self.live -= 1;
        }
    }

    /// The distance of the query to a row, from the fine copy.
    fn fine_distance(&self, query: &[f32], row: usize) -> f32 {
        let at = row * self.dim..(row + 1) * self.dim;
        let squared: f32 = if self.is_long() {
            query
                .iter()
                .zip(&self.narrow[at])
                .map(|(&q, &f)| (q - f32::from(f) / NARROW_FINE_SCALE).powi(2))
                .sum()
        } else {
            query
                .iter()
                .zip(&self.fine[at])
                .map(|(&q, &f)| (q - f32::from(f) / FINE_SCALE).powi(2))
                .sum()
        };
        squared.sqrt()
    }

    /// Whether descriptors are longer than the coarse copy (rotated, fine copy in `i8`).
    fn is_long(&self) -> bool {
        self.dim > COARSE_DIM
    }

    fn coarse_dim(&self) -> usize {
        self.dim.min(COARSE_DIM)
    }

    fn hit(&self, query: &[f32], row: usize) -> Hit<U> {
        Hit {
            face_id: uuid::Uuid::from_u128(self.face_ids[row]),
            user_id: self.users[self.owners[row] as usize].clone(),
            distance: self.fine_distance(query, row),
        }
    }

    /// The `limit` nearest faces to `query` among everyone's; none for a query of another
    /// length.
    pub fn nearest(&self, query: &[f32], limit: usize) -> Vec<Hit<U>> {
        if query.len() != self.dim {
            return Vec::new();
        }
        let coarse = coarse_of(query);
        let query_norm = dot_i8(&coarse, &coarse);
        let rows = self.owners.len();
        let mut candidates = if rows < PARALLEL_FROM {
            scan(&coarse, query_norm, &self.coarse, &self.coarse_norms, 0)
        } else {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8);
            let per = rows.div_ceil(threads);
            std::thread::scope(|s| {
                let parts: Vec<_> = (0..threads)
                    .map(|t| {
                        let (start, end) = (t * per, ((t + 1) * per).min(rows));
                        let c = self.coarse_dim();
                        let coarse_rows = &self.coarse[start * c..end * c];
                        let norms = &self.coarse_norms[start..end];
                        let query = &coarse;
                        s.spawn(move || scan(query, query_norm, coarse_rows, norms, start))
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| p.join().unwrap_or_default())
                    .collect()
            })
        };
        candidates.retain(|&(_, row)| self.owners[row as usize] != NONE);
        let mut hits: Vec<Hit<U>> = candidates
            .into_iter()
            .map(|(_, row)| self.hit(query, row as usize))
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        hits.truncate(limit);
        hits
    }

    /// The faces of `user`, nearest first: read from the user's own list, no scan; none for
    /// a query of another length.
    pub fn nearest_of_user(&self, query: &[f32], user: &str) -> Vec<Hit<U>> {
        if query.len() != self.dim {
            return Vec::new();
        }
        let Some(&owner) = self.user_index.get(user) else {
            return Vec::new();
        };
        let mut hits = Vec::new();
        let mut row = self.first_of_user[owner as usize];
        while row != NONE {
            hits.push(self.hit(query, row as usize));
            row = self.next_of_user[row as usize];
        }
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        hits
    }

    /// Whether a face is in the index.
    pub fn contains(&self, face_id: &uuid::Uuid) -> bool {
        !self.present(&[*face_id]).is_empty()
    }

    /// Which of `face_ids` are in the index, in one pass over it whatever their number.
    pub fn present(&self, face_ids: &[uuid::Uuid]) -> std::collections::HashSet<uuid::Uuid> {
        if face_ids.is_empty() {
            return Default::default();
        }
        let wanted: std::collections::HashSet<u128> =
            face_ids.iter().map(|f| f.as_u128()).collect();
        self.face_ids
            .iter()
            .zip(&self.owners)
            .filter(|&(f, &o)| o != NONE && wanted.contains(f))
            .map(|(&f, _)| uuid::Uuid::from_u128(f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> String {
        s.to_owned()
    }

    const DIM: usize = 128;

    /// A descriptor of dlib's scale from a seed: components about ±0.1.
    fn descriptor(seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 2001) as f32 / 1000.0 - 1.0) * 0.15
            })
            .collect()
    }

    #[test]
    fn stored_faces_are_checked_and_owners_parsed_once() {
        let mut index = FaceIndex::<String>::new(DIM);
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let mut parsed = 0;
        for face in [a, b] {
            let parse = |u: &str| {
                parsed += 1;
                Some(u.to_owned())
            };
            index
                .insert_stored(&face.to_string(), "alice", &descriptor(1), parse)
                .unwrap();
        }
        assert_eq!(parsed, 1, "an owner already seen is not parsed again");
        index
            .insert_stored("not-a-uuid", "alice", &descriptor(2), |u| Some(u.into()))
            .unwrap();
        let c = uuid::Uuid::new_v4().to_string();
        index
            .insert_stored(&c, "b@d", &descriptor(3), |_| None)
            .unwrap();
        assert_eq!(index.len(), 2, "bad face ids and owners are skipped");
        assert!(matches!(
            index.insert_stored(&c, "bob", &[0.0; 3], |u| Some(u.into())),
            Err(BuildError::DamagedDescriptor(id)) if id == c
        ));
        assert_eq!(index.nearest_of_user(&descriptor(1), "alice").len(), 2);
    }

    #[test]
    fn quantizing_rounds_half_away_from_zero_and_clamps() {
        for k in -3000..=3000 {
            let v = k as f32 / 20.0;
            assert_eq!(
                quantize(v, 127.0),
                v.round().clamp(-127.0, 127.0) as i32,
                "{v}"
            );
        }
        assert_eq!(quantize(f32::INFINITY, 127.0), 127);
        assert_eq!(quantize(f32::NEG_INFINITY, 32767.0), -32767);
        assert_eq!(quantize(f32::NAN, 127.0), 0);
    }

    fn exact(a: &[f32], b: &[f32]) -> f32 {
        crate::pipeline::distance(a, b)
    }

    #[test]
    fn the_nearest_faces_are_found_with_their_exact_distance() {
        let mut index = FaceIndex::new(DIM);
        let ids: Vec<uuid::Uuid> = (0..2000).map(|_| uuid::Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            index.insert(*id, &uid(&format!("u{}", i % 700)), &descriptor(i as u64));
        }
        assert_eq!(index.len(), 2000);
        for probe in [3u64, 999, 1500] {
            let query = descriptor(probe);
            let hits = index.nearest(&query, 5);
            // The brute-force truth in f32.
            let mut truth: Vec<(f32, usize)> = (0..2000)
                .map(|i| (exact(&query, &descriptor(i as u64)), i))
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(hits[0].face_id, ids[probe as usize]);
            for (hit, (d, i)) in hits.iter().zip(&truth) {
                assert_eq!(hit.face_id, ids[*i]);
                assert!((hit.distance - d).abs() < 1e-4, "{} vs {d}", hit.distance);
            }
        }
    }

    #[test]
    fn a_user_search_reads_only_that_users_faces_and_deletions_stick() {
        let mut index = FaceIndex::new(DIM);
        let (a1, a2, b1) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        index.insert(a1, &uid("alice"), &descriptor(1));
        index.insert(b1, &uid("bob"), &descriptor(2));
        index.insert(a2, &uid("alice"), &descriptor(3));
        let of_alice = index.nearest_of_user(&descriptor(2), "alice");
        let mut found: Vec<_> = of_alice.iter().map(|h| h.face_id).collect();
        found.sort();
        let mut expected = vec![a1, a2];
        expected.sort();
        assert_eq!(found, expected);
        index.remove(&[a1]);
        assert_eq!(index.len(), 2);
        assert!(!index.contains(&a1));
        let of_alice = index.nearest_of_user(&descriptor(1), "alice");
        assert_eq!(of_alice.iter().map(|h| h.face_id).collect::<Vec<_>>(), [a2]);
        assert!(index
            .nearest(&descriptor(1), 10)
            .iter()
            .all(|h| h.face_id != a1));
        assert!(index.nearest_of_user(&descriptor(1), "carol").is_empty());
        index.remove(&[a2, b1]);
        assert!(index.is_empty());
        assert!(index.nearest(&descriptor(1), 10).is_empty());
    }

    #[test]
    fn the_parallel_scan_finds_what_one_thread_finds() {
        let mut index = FaceIndex::new(DIM);
        let n = PARALLEL_FROM + 5000;
        index.reserve(n);
        let ids: Vec<uuid::Uuid> = (0..n)
            .map(|i| uuid::Uuid::from_u128(i as u128 + 1))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            index.insert(*id, &uid(&format!("u{i}")), &descriptor(i as u64));
        }
        for probe in [7u64, (n - 3) as u64] {
            assert_eq!(
                index.nearest(&descriptor(probe), 1)[0].face_id,
                ids[probe as usize]
            );
        }
    }

    /// A unit descriptor of `dim` numbers from a seed, as the MobileFaceNet's are.
    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut d: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
        d.iter_mut().for_each(|v| *v /= norm);
        d
    }

    #[test]
    fn the_rotation_keeps_lengths_and_spreads_them() {
        let d = unit(5, 512);
        let r = rotated(&d);
        let length = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length(&r) - 1.0).abs() < 1e-5);
        // A vector along one axis spreads evenly: a quarter of it in the first 128.
        let mut axis = vec![0.0; 512];
        axis[7] = 1.0;
        let prefix = length(&rotated(&axis)[..128]);
        assert!((prefix * prefix - 0.25).abs() < 1e-5, "{prefix}");
    }

    /// Long descriptors: the coarse scan over the rotation's prefix still finds the nearest,
    /// and the `i8` fine copy gives distances close to the exact ones; a row costs 128 + 512
    /// bytes of descriptor.
    #[test]
    fn long_descriptors_are_found_with_a_close_distance() {
        let mut index = FaceIndex::new(512);
        let ids: Vec<uuid::Uuid> = (0..3000).map(|_| uuid::Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            index.insert(*id, &uid(&format!("u{i}")), &unit(i as u64, 512));
        }
        for probe in [1u64, 1234, 2999] {
            let mut query = unit(probe, 512);
            query.iter_mut().step_by(2).for_each(|v| *v += 0.002);
            let hits = index.nearest(&query, 3);
            assert_eq!(hits[0].face_id, ids[probe as usize]);
            for hit in &hits {
                let row = ids.iter().position(|id| *id == hit.face_id).unwrap();
                let truth = exact(&query, &unit(row as u64, 512));
                // Where decisions are made (distance 0.8-1.4) within 2e-3; a near copy's
                // tiny distance within 1e-2.
                let allowed = if truth > 0.5 { 2e-3 } else { 1e-2 };
                let error = (hit.distance - truth).abs();
                assert!(error < allowed, "{} vs {truth}", hit.distance);
            }
        }
        index.shrink_to_fit();
        let per_face = index.heap_bytes() as f64 / 3000.0;
        assert!(per_face < 1000.0, "{per_face} bytes a face");
    }
}
