//! The matrix product under every convolution: each output position's window of inputs times
//! the weights, plus bias, through an activation.
//!
//! Two things a general matrix library cannot do make this faster for the networks here. The
//! weights are laid out for the kernel once, at load, instead of on every call; and the
//! windows are read straight from the feature map (an "implicit im2col"), so no copy of every
//! window is ever written. The kernel is chosen at run time: AVX-512 or AVX2/FMA where the CPU
//! has them, else portable code the compiler vectorises for the target's baseline (SSE2, NEON).

use std::mem::MaybeUninit;

/// Output channels per panel of packed weights: one AVX-512 register, two AVX2 ones.
pub const PANEL: usize = 16;
/// Inputs per row block: a block of output rows whose windows stay in the core's cache while
/// every panel of weights passes over them.
const BLOCK_VALUES: usize = 32 * 1024;

/// Weights `[k][n]` (row-major) regrouped into panels of [`PANEL`] columns, each `k` rows of
/// [`PANEL`] values, and the bias in the same panels; zero beyond column `n`.
#[derive(Clone, Debug)]
pub struct Packed {
    k: usize,
    n: usize,
    panels: Vec<f32>,
    bias: Vec<f32>,
}

impl Packed {
    pub fn new(weights: &[f32], bias: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(weights.len(), k * n, "weights do not match their shape");
        assert_eq!(bias.len(), n, "one bias per output");
        let count = n.div_ceil(PANEL);
        let mut panels = vec![0.0; count * k * PANEL];
        for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
            let first = p * PANEL;
            let cols = (n - first).min(PANEL);
            for (row, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                dst[..cols].copy_from_slice(&weights[row * n + first..][..cols]);
            }
        }
        let mut padded_bias = vec![0.0; count * PANEL];
        padded_bias[..n].copy_from_slice(bias);
        Self {
            k,
            n,
            panels,
            bias: padded_bias,
        }
    }

    /// Panel `p`'s weights, and its bias.
    fn panel(&self, p: usize) -> (&[f32], &[f32; PANEL]) {
        let weights = &self.panels[p * self.k * PANEL..][..self.k * PANEL];
        let bias = self.bias[p * PANEL..][..PANEL]
            .try_into()
            .expect("a panel's bias");
        (weights, bias)
    }
}

/// Where one output row's `k` inputs lie in the feature map, from its start: `segments` runs
/// of `run` contiguous values, `gap` values apart (a kernel row of a convolution window each).
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub segments: usize,
    pub run: usize,
    pub gap: usize,
}

impl Windows {
    fn len(&self) -> usize {
        self.segments * self.run
    }

    /// Values from a window's start to its end.
    fn extent(&self) -> usize {
        (self.segments - 1) * self.gap + self.run
    }
}

/// What each output goes through after the bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation<'a> {
    Linear,
    Relu,
    /// `x` above zero, `slope * x` below.
    Leaky(f32),
    /// `x` above zero, `slopes[channel] * x` below (a learnt slope per output channel, of any
    /// sign and size).
    PRelu(&'a [f32]),
}

impl Activation<'_> {
    /// Each of them is `x` above zero and `slope * x` below, for the slope of the channel: the
    /// kernels apply `max(x, 0) + slope * min(x, 0)`, exact for every slope.
    pub(super) fn slope(self, channel: usize) -> f32 {
        match self {
            Self::Linear => 1.0,
            Self::Relu => 0.0,
            Self::Leaky(slope) => slope,
            Self::PRelu(slopes) => slopes[channel],
        }
    }

    /// The same slope for every channel, for the kernels that apply no other.
    pub(super) fn uniform_slope(self) -> f32 {
        assert!(
            !matches!(self, Self::PRelu(_)),
            "a per-channel activation where only a uniform one is applied"
        );
        self.slope(0)
    }

    /// The slopes of `count` channels from `first`, into a panel (the rest left as they are).
    fn panel_slopes(self, first: usize, count: usize) -> [f32; PANEL] {
        let mut slopes = [0.0; PANEL];
        for (i, s) in slopes.iter_mut().take(count).enumerate() {
            *s = self.slope(first + i);
        }
        slopes
    }

    /// Checks that a per-channel activation has a slope for each of `channels`.
    pub(super) fn check_channels(self, channels: usize) {
        if let Self::PRelu(slopes) = self {
            assert_eq!(slopes.len(), channels, "one slope per output channel");
        }
    }
}

/// `v` through an activation of slope `slope`.
#[inline(always)]
pub(super) fn activate(v: f32, slope: f32) -> f32 {
    v.max(0.0) + slope * v.min(0.0)
}

/// What a kernel is given besides its rows: the window layout, a panel of weights and its
/// bias, the activation's slopes for the panel, and where to write: `MR` rows of [`PANEL`] values,
/// `out_stride` apart.
#[derive(Clone, Copy)]
struct Tile {
    windows: Windows,
    panel: *const f32,
    bias: *const f32,
    slopes: *const f32,
    out: *mut f32,
    out_stride: usize,
}

/// The rows of one product: the feature map, and the output positions whose windows it holds,
/// `height` x `width` of them in row-major order, each window laid out as `windows` from its
/// start `y * row_step + x * col_step`.
pub struct Rows<'a> {
    pub input: &'a [f32],
    pub height: usize,
    pub width: usize,
    pub row_step: usize,
    pub col_step: usize,
    pub windows: Windows,
}

impl Rows<'_> {
    fn count(&self) -> usize {
        self.height * self.width
    }

    /// The window of every row in `range`, `MR` to a tile, into `tiles` (cleared first): one
    /// division for the whole range, then steps. A last partial tile repeats its last row,
    /// whose results are dropped. The windows are checked to lie inside the input here, once
    /// for all the panels that pass over them: along a line of outputs their starts grow, so
    /// the last of each line is its farthest, and one check a line covers them all.
    fn tiles<const MR: usize>(
        &self,
        range: std::ops::Range<usize>,
        tiles: &mut Vec<[*const f32; MR]>,
    ) {
        tiles.clear();
        let rows = range.len();
        if rows == 0 {
            return;
        }
        let extent = self.windows.extent();
        let (first_y, first_x) = (range.start / self.width, range.start % self.width);
        let (last_y, last_x) = ((range.end - 1) / self.width, (range.end - 1) % self.width);
        for y in first_y..=last_y {
            let x = if y == last_y { last_x } else { self.width - 1 };
            let end = y * self.row_step + x * self.col_step + extent;
            assert!(
                end <= self.input.len(),
                "a window ends at {end}, past the input's {}",
                self.input.len()
            );
        }
        let base = self.input.as_ptr();
        tiles.resize(rows.div_ceil(MR), [base; MR]);
        let (mut y, mut x) = (first_y, first_x);
        let mut start = y * self.row_step + x * self.col_step;
        for r in 0..rows {
            // SAFETY: checked above, the window from `start` lies inside the input.
            tiles[r / MR][r % MR] = unsafe { base.add(start) };
            x += 1;
            start += self.col_step;
            if x == self.width {
                (y, x) = (y + 1, 0);
                start = y * self.row_step;
            }
        }
        if !rows.is_multiple_of(MR) {
            let last = tiles.last_mut().expect("a partial tile");
            let repeated = last[rows % MR - 1];
            last[rows % MR..].fill(repeated);
        }
    }
}

/// `out[r * n + j] = act(bias[j] + sum_i window_r[i] * w[i][j])` for every row `r`. Every value
/// of `out` is written.
pub fn multiply(rows: &Rows<'_>, weights: &Packed, act: Activation, out: &mut [MaybeUninit<f32>]) {
    assert_eq!(
        rows.windows.len(),
        weights.k,
        "window length is not the weights' k"
    );
    assert_eq!(out.len(), rows.count() * weights.n, "output size");
    act.check_channels(weights.n);
    #[cfg(target_arch = "x86_64")]
    {
        let isa = crate::kernels::cpu::isa();
        if isa >= crate::kernels::cpu::Isa::Avx512 {
            // Sixteen rows a tile where that leaves fewer rows computed for nothing: the
            // descriptor's last maps have 16 positions, which tiles of 12 made 24.
            let count = rows.count();
            if count.next_multiple_of(16) < count.next_multiple_of(12) {
                // SAFETY: the CPU has AVX-512F; `drive` hands the kernel pointers it checked.
                return drive::<16>(rows, weights, act, out, |a, t| unsafe {
                    x86::tile_avx512(a, t)
                });
            }
            // SAFETY: the CPU has AVX-512F; `drive` hands the kernel pointers it checked.
            return drive::<12>(rows, weights, act, out, |a, t| unsafe {
                x86::tile_avx512(a, t)
            });
        }
        if isa >= crate::kernels::cpu::Isa::Avx2 {
            // SAFETY: the CPU has AVX2 and FMA; `drive` hands the kernel pointers it checked.
            return drive::<6>(rows, weights, act, out, |a, t| unsafe {
                x86::tile_avx2(a, t)
            });
        }
    }
    // SAFETY: `drive` hands the kernel pointers it checked.
    drive::<PORTABLE_ROWS>(rows, weights, act, out, |a, t| unsafe {
        tile_portable(a, t)
    });
}

/// Rows a tile of the portable kernel. On x86-64's baseline (SSE2) its 16 vector registers
/// hold two rows' sums and a panel of weights, where four rows' sums went out to memory at
/// every step: 7 -> 43 GFLOP/s for the 512-wide product, three rows were as slow as four.
/// Elsewhere (NEON has 32 registers) it stays at four, not measured.
#[cfg(target_arch = "x86_64")]
const PORTABLE_ROWS: usize = 2;
#[cfg(not(target_arch = "x86_64"))]
const PORTABLE_ROWS: usize = 4;

/// Runs a kernel computing `MR` rows by one panel over every tile of the output. Each row
/// pointer given to the kernel has the whole window inside `rows.input` (checked by
/// [`Rows::tiles`]), the panel holds `k` rows of [`PANEL`] values, and the kernel writes `MR`
/// whole rows of [`PANEL`]: straight into `out` where the tile lies inside it, else into a
/// scratch tile copied out. Every value of `out` is written.
fn drive<const MR: usize>(
    rows: &Rows<'_>,
    weights: &Packed,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
    kernel: impl Fn(&[*const f32; MR], Tile),
) {
    let (k, n, count) = (weights.k, weights.n, rows.count());
    if count == 0 || n == 0 {
        return;
    }
    let block = (BLOCK_VALUES / k.max(1)).max(1).next_multiple_of(MR);
    let mut tiles = Vec::with_capacity(block / MR);
    let mut scratch = [[0.0f32; PANEL]; MR];
    for block_start in (0..count).step_by(block) {
        let block_end = (block_start + block).min(count);
        rows.tiles(block_start..block_end, &mut tiles);
        for p in 0..n.div_ceil(PANEL) {
            let (panel, bias) = weights.panel(p);
            let first = p * PANEL;
            let cols = (n - first).min(PANEL);
            let slopes = act.panel_slopes(first, cols);
            for (t, pointers) in tiles.iter().enumerate() {
                let tile_start = block_start + t * MR;
                let valid = (block_end - tile_start).min(MR);
                let mut tile = Tile {
                    windows: rows.windows,
                    panel: panel.as_ptr(),
                    bias: bias.as_ptr(),
                    slopes: slopes.as_ptr(),
                    out: scratch.as_mut_ptr().cast(),
                    out_stride: PANEL,
                };
                if valid == MR && cols == PANEL {
                    let dst = &mut out[tile_start * n + first..][..(MR - 1) * n + PANEL];
                    tile.out = dst.as_mut_ptr().cast();
                    tile.out_stride = n;
                    kernel(pointers, tile);
                } else {
                    kernel(pointers, tile);
                    for (i, sums) in scratch.iter().enumerate().take(valid) {
                        let dst = &mut out[(tile_start + i) * n + first..][..cols];
                        dst.iter_mut().zip(sums).for_each(|(d, s)| _ = d.write(*s));
                    }
                }
            }
        }
    }
}

/// One tile in plain code.
///
/// # Safety
/// Each row pointer must have its whole window readable, the tile's panel `k` rows of
/// [`PANEL`], its bias and slopes [`PANEL`] values each, and its output `MR` rows of [`PANEL`]
/// writable.
#[inline(always)]
unsafe fn tile_portable<const MR: usize>(rows: &[*const f32; MR], t: Tile) {
    let mut acc = [[0.0f32; PANEL]; MR];
    let mut b = t.panel;
    let w = t.windows;
    for s in 0..w.segments {
        for j in s * w.gap..s * w.gap + w.run {
            // SAFETY: the caller's contract: j is inside every window, b inside the panel.
            let bv: &[f32; PANEL] = unsafe { &*b.cast() };
            for (sums, row) in acc.iter_mut().zip(rows) {
                // SAFETY: j is inside every row's window (the caller's contract).
                let a = unsafe { *row.add(j) };
                for (c, wv) in sums.iter_mut().zip(bv) {
                    *c += a * wv;
                }
            }
            // SAFETY: the panel holds a row of PANEL weights for every j of the windows.
            b = unsafe { b.add(PANEL) };
        }
    }
    // SAFETY: the caller's contract on the bias, the slopes and the output.
    let (bias, slopes): (&[f32; PANEL], &[f32; PANEL]) =
        unsafe { (&*t.bias.cast(), &*t.slopes.cast()) };
    for (i, sums) in acc.iter().enumerate() {
        // SAFETY: the output's MR rows of PANEL values are writable (the caller's contract),
        // and nothing else refers to them while the tile runs.
        let dst = unsafe { std::slice::from_raw_parts_mut(t.out.add(i * t.out_stride), PANEL) };
        for (((o, s), b), slope) in dst.iter_mut().zip(sums).zip(bias).zip(slopes) {
            *o = activate(s + b, *slope);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Tile, PANEL};

    /// `MR` rows (12 or 16) by one panel: an accumulator a row, one weights register, of the
    /// 32 there are.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; each row pointer must have its whole window readable, the
    /// tile's panel `k` rows of [`PANEL`], its bias and slopes [`PANEL`] values each, and its
    /// output `MR` rows of [`PANEL`] writable.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512<const MR: usize>(rows: &[*const f32; MR], t: Tile) {
        let mut c = [_mm512_setzero_ps(); MR];
        let mut b = t.panel;
        let w = t.windows;
        for s in 0..w.segments {
            for j in s * w.gap..s * w.gap + w.run {
                // SAFETY: the caller's contract: j is inside every window, b inside the panel.
                unsafe {
                    // The weights stream through once for a small map: ask for them a
                    // kilobyte ahead (a hint; past the panel's end it loads nothing).
                    _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(16 * PANEL).cast());
                    let bv = _mm512_loadu_ps(b);
                    for i in 0..MR {
                        c[i] = _mm512_fmadd_ps(_mm512_set1_ps(*rows[i].add(j)), bv, c[i]);
                    }
                    b = b.add(PANEL);
                }
            }
        }
        // SAFETY: the caller's contract on the bias and the output.
        unsafe {
            let bias = _mm512_loadu_ps(t.bias);
            let slope = _mm512_loadu_ps(t.slopes);
            let zero = _mm512_setzero_ps();
            for (i, sums) in c.into_iter().enumerate() {
                let v = _mm512_add_ps(sums, bias);
                let v = _mm512_fmadd_ps(slope, _mm512_min_ps(v, zero), _mm512_max_ps(v, zero));
                _mm512_storeu_ps(t.out.add(i * t.out_stride), v);
            }
        }
    }

    /// Six rows by one panel: twelve accumulators, two weights registers.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; each row pointer must have its whole window readable,
    /// the tile's panel `k` rows of [`PANEL`], its bias and slopes [`PANEL`] values each, and
    /// its output 6 rows of [`PANEL`] writable.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(rows: &[*const f32; 6], t: Tile) {
        let mut c = [[_mm256_setzero_ps(); 2]; 6];
        let mut b = t.panel;
        let w = t.windows;
        for s in 0..w.segments {
            for j in s * w.gap..s * w.gap + w.run {
                // SAFETY: the caller's contract: j is inside every window, b inside the panel.
                unsafe {
                    // As in the AVX-512 kernel: the weights a kilobyte ahead.
                    _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(16 * PANEL).cast());
                    let b0 = _mm256_loadu_ps(b);
                    let b1 = _mm256_loadu_ps(b.add(8));
                    for i in 0..6 {
                        let a = _mm256_set1_ps(*rows[i].add(j));
                        c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
                        c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
                    }
                    b = b.add(PANEL);
                }
            }
        }
        // SAFETY: the caller's contract on the bias and the output.
        unsafe {
            let zero = _mm256_setzero_ps();
            for (i, halves) in c.into_iter().enumerate() {
                for (h, sums) in halves.into_iter().enumerate() {
                    let v = _mm256_add_ps(sums, _mm256_loadu_ps(t.bias.add(8 * h)));
                    let slope = _mm256_loadu_ps(t.slopes.add(8 * h));
                    let v = _mm256_fmadd_ps(slope, _mm256_min_ps(v, zero), _mm256_max_ps(v, zero));
                    _mm256_storeu_ps(t.out.add(i * t.out_stride + 8 * h), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo;

    #[test]
    fn a_window_past_the_input_is_refused_wherever_its_line_ends() {
        let input = vec![0.0; 22];
        let rows = Rows {
            input: &input,
            height: 2,
            width: 3,
            row_step: 1,
            col_step: 10,
            windows: Windows {
                segments: 1,
                run: 3,
                gap: 3,
            },
        };
        // Windows start at 0, 10, 20 on the first line and 1, 11, 21 on the second, and take
        // three values each of the 22.
        let refused = |range: std::ops::Range<usize>| {
            let tiles = || rows.tiles::<2>(range.clone(), &mut Vec::new());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(tiles)).is_err()
        };
        assert!(
            refused(0..4),
            "the first line's last runs past, not the range's last"
        );
        assert!(refused(3..6), "the range's last runs past");
        assert!(!refused(0..2) && !refused(3..5));
    }

    /// Every kernel this CPU can run, and the portable one, against a plain product: odd row
    /// counts (partial tiles), odd widths (partial panels), windows in several segments, output
    /// grids of several rows whose windows are not evenly spaced. Outputs start as NaN, so a
    /// value left unwritten fails.
    #[test]
    fn every_kernel_matches_a_plain_product() {
        for ((height, width), segments, run, n) in [
            ((1, 1), 1, 1, 1),
            ((1, 13), 1, 27, 16),
            ((5, 10), 3, 9, 25),
            ((7, 1), 2, 5, 40),
            ((3, 7), 1, 16, 32),
            ((4, 4), 3, 12, 48),
        ] {
            let count = height * width;
            let gap = run + 3;
            let windows = Windows { segments, run, gap };
            let k = windows.len();
            let (row_step, col_step) = (width * 2 + 5, 2);
            let input = pseudo(height * row_step + windows.extent(), 1);
            let start = |r: usize| (r / width) * row_step + (r % width) * col_step;
            let weights = pseudo(k * n, 2);
            let bias = pseudo(n, 3);
            // Slopes of either sign, some above one: PReLU's, through every kernel.
            let slopes: Vec<f32> = pseudo(n, 4).iter().map(|s| 3.0 * s).collect();
            let act = Activation::PRelu(&slopes);
            let mut expected = vec![0.0f32; count * n];
            for r in 0..count {
                for j in 0..n {
                    let mut sum = bias[j];
                    for seg in 0..segments {
                        for i in 0..run {
                            sum +=
                                input[start(r) + seg * gap + i] * weights[(seg * run + i) * n + j];
                        }
                    }
                    expected[r * n + j] = activate(sum, slopes[j]);
                }
            }
            let packed = Packed::new(&weights, &bias, k, n);
            let rows = Rows {
                input: &input,
                height,
                width,
                row_step,
                col_step,
                windows,
            };
            let mut results = vec![
                run_with::<2>(&rows, &packed, act, |a, t| {
                    // SAFETY: drive checks the pointers it passes.
                    unsafe { tile_portable(a, t) }
                }),
                run_with::<4>(&rows, &packed, act, |a, t| {
                    // SAFETY: drive checks the pointers it passes.
                    unsafe { tile_portable(a, t) }
                }),
            ];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    results.push(run_with::<6>(&rows, &packed, act, |a, t| {
                        // SAFETY: the CPU has AVX2 and FMA; drive checks the pointers.
                        unsafe { x86::tile_avx2(a, t) }
                    }));
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    results.push(run_with::<12>(&rows, &packed, act, |a, t| {
                        // SAFETY: the CPU has AVX-512F; drive checks the pointers.
                        unsafe { x86::tile_avx512(a, t) }
                    }));
                    results.push(run_with::<16>(&rows, &packed, act, |a, t| {
                        // SAFETY: the CPU has AVX-512F; drive checks the pointers.
                        unsafe { x86::tile_avx512(a, t) }
                    }));
                }
            }
            let mut chosen = nans(count * n);
            multiply(&rows, &packed, act, &mut chosen);
            results.push(values(chosen));
            for result in &results {
                for (got, want) in result.iter().zip(&expected) {
                    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
                }
            }
        }
    }

    fn run_with<const MR: usize>(
        rows: &Rows<'_>,
        packed: &Packed,
        act: Activation,
        kernel: impl Fn(&[*const f32; MR], Tile),
    ) -> Vec<f32> {
        let mut out = nans(rows.count() * packed.n);
        drive::<MR>(rows, packed, act, &mut out, kernel);
        values(out)
    }

    fn nans(len: usize) -> Vec<MaybeUninit<f32>> {
        vec![MaybeUninit::new(f32::NAN); len]
    }

    fn values(out: Vec<MaybeUninit<f32>>) -> Vec<f32> {
        // SAFETY: every value was initialised by `nans`, and perhaps written since.
        out.into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect()
    }

    #[test]
    fn activations_scale_the_negative_side_by_their_slope() {
        let apply = |act: Activation, c: usize, v: f32| activate(v, act.slope(c));
        assert_eq!(apply(Activation::Linear, 0, -2.0), -2.0);
        assert_eq!(apply(Activation::Relu, 0, -2.0), 0.0);
        assert_eq!(apply(Activation::Leaky(0.1), 0, -2.0), -0.2);
        assert_eq!(apply(Activation::Leaky(0.1), 0, 3.0), 3.0);
        let slopes = [0.5, -1.25, 2.0];
        assert_eq!(apply(Activation::PRelu(&slopes), 1, -2.0), 2.5);
        assert_eq!(apply(Activation::PRelu(&slopes), 2, -2.0), -4.0);
        assert_eq!(apply(Activation::PRelu(&slopes), 2, 3.0), 3.0);
    }
}
