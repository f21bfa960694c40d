//! The few tensor operations the face networks need, on `H x W x C` (channels last) `f32`
//! buffers, matching the TensorFlow layouts the weights were trained in.
//!
//! Convolutions are matrix products over windows of the feature map ([`super::matmul`]), with
//! the bias and activation applied as each output is written. Depthwise convolutions and
//! pooling are plain loops over contiguous channels, which the compiler vectorises.

use std::mem::MaybeUninit;

pub use super::matmul::Activation;
use super::matmul::{self, Packed, Rows, Windows};

thread_local! {
    static FLOPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Floating-point operations of the convolutions and dense layers run on this thread so far (a
/// multiply-add counts two): the benchmark reads it before and after a stage.
pub fn flops_so_far() -> u64 {
    FLOPS.with(std::cell::Cell::get)
}

pub(super) fn count_flops(multiply_adds: usize) {
    FLOPS.with(|f| f.set(f.get() + 2 * multiply_adds as u64));
}

/// A feature map: `data[(y * w + x) * c + ch]`.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(h: usize, w: usize, c: usize) -> Self {
        Self {
            h,
            w,
            c,
            data: vec![0.0; h * w * c],
        }
    }

    /// A map whose every value `fill` writes, never zeroed first: the kernels write each
    /// output once, and clearing a layer's output beforehand cost a tenth of the time.
    ///
    /// # Safety
    /// `fill` must write every value of the slice it is given.
    unsafe fn written_by(
        h: usize,
        w: usize,
        c: usize,
        fill: impl FnOnce(&mut [MaybeUninit<f32>]),
    ) -> Self {
        let len = h * w * c;
        let mut data = Vec::with_capacity(len);
        fill(&mut data.spare_capacity_mut()[..len]);
        // SAFETY: the caller's contract: `fill` wrote all `len` values.
        unsafe { data.set_len(len) };
        Self { h, w, c, data }
    }

    pub fn from_data(h: usize, w: usize, c: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            h * w * c,
            "tensor data does not match its shape"
        );
        Self { h, w, c, data }
    }
}

/// Pixels [`from_rgb`] converts at a time.
const PIXELS: usize = 16;

/// An RGB image's bytes (`h` x `w`, 3 a pixel) as a map of `(value - mean[channel]) / divisor`,
/// how each network wants its input. Sixteen pixels at a time against their channels' means
/// laid out in the same order: a loop the compiler vectorises (a channel chosen per byte cost
/// as much as a layer).
pub fn from_rgb(h: usize, w: usize, bytes: &[u8], mean: [f32; 3], divisor: f32) -> Tensor {
    assert_eq!(bytes.len(), h * w * 3, "RGB bytes do not match the size");
    let means: [f32; 3 * PIXELS] = std::array::from_fn(|i| mean[i % 3]);
    let convert = |chunk: &[u8], data: &mut Vec<f32>| {
        data.extend(
            chunk
                .iter()
                .zip(&means)
                .map(|(&v, m)| (f32::from(v) - m) / divisor),
        );
    };
    let mut data = Vec::with_capacity(bytes.len());
    let mut chunks = bytes.chunks_exact(3 * PIXELS);
    for chunk in &mut chunks {
        convert(chunk, &mut data);
    }
    convert(chunks.remainder(), &mut data);
    Tensor::from_data(h, w, 3, data)
}

/// How a window is padded, in TensorFlow's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output `ceil(in / stride)`; the padding is split with the extra row/column at the end.
    Same,
    /// No padding.
    Valid,
    /// This many zeros on every side (ONNX's and PyTorch's symmetric `pads`).
    Explicit(usize),
}

/// Output size and leading padding along one axis.
fn out_and_pad(input: usize, kernel: usize, stride: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => {
            assert!(input >= kernel, "input smaller than kernel");
            ((input - kernel) / stride + 1, 0)
        }
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(input);
            (out, total / 2)
        }
        Padding::Explicit(pad) => {
            assert!(
                input + 2 * pad >= kernel,
                "padded input smaller than kernel"
            );
            ((input + 2 * pad - kernel) / stride + 1, pad)
        }
    }
}

/// Output size, and the input zero-padded so that every window lies inside it.
fn padded(
    x: &Tensor,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: Padding,
) -> (usize, usize, std::borrow::Cow<'_, Tensor>) {
    let (oh, top) = out_and_pad(x.h, kh, stride, padding);
    let (ow, left) = out_and_pad(x.w, kw, stride, padding);
    let need_h = (oh - 1) * stride + kh;
    let need_w = (ow - 1) * stride + kw;
    if top == 0 && left == 0 && need_h <= x.h && need_w <= x.w {
        return (oh, ow, std::borrow::Cow::Borrowed(x));
    }
    let (ph, pw) = (need_h.max(x.h + top), need_w.max(x.w + left));
    // Each value written once: zeros around the rows, the rows copied between them.
    let mut data = Vec::with_capacity(ph * pw * x.c);
    data.resize(top * pw * x.c, 0.0);
    for row in x.data.chunks_exact(x.w * x.c) {
        data.resize(data.len() + left * x.c, 0.0);
        data.extend_from_slice(row);
        data.resize(data.len() + (pw - left - x.w) * x.c, 0.0);
    }
    data.resize(ph * pw * x.c, 0.0);
    (
        oh,
        ow,
        std::borrow::Cow::Owned(Tensor::from_data(ph, pw, x.c, data)),
    )
}

/// Convolution weights in TensorFlow's `[kh][kw][cin][cout]` order, with a bias per output,
/// and the same weights packed for the matrix kernel.
#[derive(Clone, Debug)]
pub struct Conv {
    pub kh: usize,
    pub kw: usize,
    pub cin: usize,
    pub cout: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    packed: Packed,
}

impl Conv {
    pub fn new([kh, kw, cin, cout]: [usize; 4], weights: Vec<f32>, bias: Vec<f32>) -> Self {
        assert_eq!(bias.len(), cout, "one bias per output channel");
        let packed = Packed::new(&weights, &bias, kh * kw * cin, cout);
        Self {
            kh,
            kw,
            cin,
            cout,
            weights,
            bias,
            packed,
        }
    }

    /// Multiplies each output channel by `scale` and then adds `shift`: folds a following
    /// per-channel affine layer (batch norm, dlib's scale layer) into the convolution.
    pub fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        for (i, w) in self.weights.iter_mut().enumerate() {
            *w *= scale[i % self.cout];
        }
        for ((b, s), t) in self.bias.iter_mut().zip(scale).zip(shift) {
            *b = *b * s + t;
        }
        self.packed = Packed::new(
            &self.weights,
            &self.bias,
            self.kh * self.kw * self.cin,
            self.cout,
        );
    }
}

/// A regular convolution, plus bias, through `act`.
pub fn conv2d(x: &Tensor, conv: &Conv, stride: usize, padding: Padding, act: Activation) -> Tensor {
    assert_eq!(x.c, conv.cin, "conv input channels");
    if padding == Padding::Same && (x.h, x.w) == (1, 1) && conv.kh % 2 == 1 && conv.kw % 2 == 1 {
        return centre_tap(x, conv, act);
    }
    let (oh, ow, input) = padded(x, conv.kh, conv.kw, stride, padding);
    let x = input.as_ref();
    let count = oh * ow;
    count_flops(count * conv.kh * conv.kw * conv.cin * conv.cout);
    let rows = windows_of(x, conv, stride, 0..oh, ow);
    // SAFETY: the product writes every value of its output.
    unsafe {
        Tensor::written_by(oh, ow, conv.cout, |out| {
            matmul::multiply(&rows, &conv.packed, act, out);
        })
    }
}

/// A `Same` convolution of a single position: every tap but the centre meets padding, so the
/// product is one vector by the centre's weights (the descriptor's last map is 1x1, where the
/// full window read nine times the weights for nothing).
fn centre_tap(x: &Tensor, conv: &Conv, act: Activation) -> Tensor {
    let (cin, cout) = (conv.cin, conv.cout);
    let centre = (conv.kh / 2 * conv.kw + conv.kw / 2) * cin * cout;
    let weights = &conv.weights[centre..][..cin * cout];
    count_flops(cin * cout);
    let mut out = conv.bias.clone();
    for (v, row) in x.data.iter().zip(weights.chunks_exact(cout)) {
        out.iter_mut().zip(row).for_each(|(o, w)| *o += v * w);
    }
    act.check_channels(cout);
    for (c, o) in out.iter_mut().enumerate() {
        *o = matmul::activate(*o, act.slope(c));
    }
    Tensor::from_data(1, 1, cout, out)
}

/// The windows of `conv` over the padded input `x` for output rows `rows`, each `ow` wide. In
/// the padded input, one kernel row of a window is a contiguous run of kw * cin values.
fn windows_of<'a>(
    x: &'a Tensor,
    conv: &Conv,
    stride: usize,
    rows: std::ops::Range<usize>,
    ow: usize,
) -> Rows<'a> {
    let row_step = stride * x.w * x.c;
    Rows {
        input: &x.data[rows.start * row_step..],
        height: rows.len(),
        width: ow,
        row_step,
        col_step: stride * x.c,
        windows: Windows {
            segments: conv.kh,
            run: conv.kw * conv.cin,
            gap: x.w * x.c,
        },
    }
}

/// Values of convolution output a band of [`conv2d_max_pool2`] holds: small enough to stay in
/// the core's cache between being written and being pooled.
const BAND_VALUES: usize = 32 * 1024;

/// A regular convolution through `act`, then 2x2 max pooling of stride 2 (TensorFlow's `Same`:
/// an odd last row or column is pooled on its own). The convolution runs in bands of a few
/// output rows, each pooled while it is still in the cache, so the full-size output is never
/// written out and read back: for the detector's first layers that traffic cost more than the
/// pooling itself.
pub fn conv2d_max_pool2(
    x: &Tensor,
    conv: &Conv,
    stride: usize,
    padding: Padding,
    act: Activation,
) -> Tensor {
    assert_eq!(x.c, conv.cin, "conv input channels");
    let (oh, ow, input) = padded(x, conv.kh, conv.kw, stride, padding);
    let x = input.as_ref();
    max_pool2_in_bands((oh, ow, conv.cout), &[], |rows, written| {
        count_flops(rows.len() * ow * conv.kh * conv.kw * conv.cin * conv.cout);
        let windows = windows_of(x, conv, stride, rows, ow);
        matmul::multiply(&windows, &conv.packed, act, written);
    })
}

/// A depthwise separable layer ([`Separable::forward`], stride 1) through `act`, then 2x2 max
/// pooling of stride 2 as [`conv2d_max_pool2`] does it, where the caller knows that each
/// pooled row `p` with `copies[p]` equals the row above it: those rows are copied, not
/// computed. The depthwise rows are computed band by band, each just before the pointwise
/// product reads it: a band stays in the core's cache instead of a whole depthwise map going
/// out to memory and coming back. The values are those of the two layers run one after the
/// other.
pub fn separable_max_pool2_copying(
    x: &Tensor,
    layer: &Separable,
    act: Activation,
    copies: &[bool],
) -> Tensor {
    let (dw, pw) = (&layer.depthwise, &layer.pointwise);
    assert_eq!(x.c, dw.c, "depthwise channels");
    assert_eq!(
        (pw.kh, pw.kw, pw.cin),
        (1, 1, x.c),
        "a pointwise convolution"
    );
    max_pool2_in_bands((x.h, x.w, pw.cout), copies, |rows, written| {
        let band = depthwise_band(x, dw, rows.clone());
        count_flops(rows.len() * x.w * x.c * pw.cout);
        let windows = windows_of(&band, pw, 1, 0..rows.len(), x.w);
        matmul::multiply(&windows, &pw.packed, act, written);
    })
}

/// 2x2 max pooling of stride 2 over an `oh` x `ow` x `c` map that `compute` writes a band of
/// rows at a time (the rows given, into the values given, every one of them), pooled while
/// the band is still in the cache. Pooled rows that `copies` marks equal the row above and
/// are copied; the rows under them are never computed.
fn max_pool2_in_bands(
    (oh, ow, c): (usize, usize, usize),
    copies: &[bool],
    mut compute: impl FnMut(std::ops::Range<usize>, &mut [MaybeUninit<f32>]),
) -> Tensor {
    let (ph, pw) = (oh.div_ceil(2), ow.div_ceil(2));
    let pairs = (BAND_VALUES / (2 * ow * c).max(1)).max(1);
    let mut band = vec![MaybeUninit::<f32>::uninit(); 2 * pairs * ow * c];
    let copied = |p: usize| copies.get(p).copied().unwrap_or(false);
    assert!(!copied(0), "the first row has no row above it");
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let mut first = 0;
        while first < ph {
            if copied(first) {
                let (above, row) = out[(first - 1) * pw * c..][..2 * pw * c].split_at_mut(pw * c);
                row.copy_from_slice(above);
                first += 1;
                continue;
            }
            // The rows computed together: up to a band's worth, until the next copied one.
            let last = (first..(first + pairs).min(ph))
                .take_while(|&p| !copied(p))
                .last()
                .expect("the first row is computed");
            let (start, end) = (2 * first, (2 * (last + 1)).min(oh));
            let written = &mut band[..(end - start) * ow * c];
            compute(start..end, written);
            // SAFETY: `compute` wrote every value of `written`.
            let values = unsafe {
                std::slice::from_raw_parts(written.as_ptr().cast::<f32>(), written.len())
            };
            let pooled = &mut out[first * pw * c..][..(end - start).div_ceil(2) * pw * c];
            pool2_band(values, (end - start, ow, c), pooled);
            first = last + 1;
        }
    };
    // SAFETY: every band's pooled rows are written, and the bands cover the output.
    unsafe { Tensor::written_by(ph, pw, c, fill) }
}

/// 2x2 max pooling of stride 2 over a band of `h` x `w` x `c` values into every value of `out`;
/// an odd last row or column is pooled on its own.
fn pool2_band(band: &[f32], (h, w, c): (usize, usize, usize), out: &mut [MaybeUninit<f32>]) {
    let at = |y: usize, x: usize| &band[(y * w + x) * c..][..c];
    for py in 0..h.div_ceil(2) {
        let (y0, y1) = (2 * py, (2 * py + 1).min(h - 1));
        for px in 0..w.div_ceil(2) {
            let (x0, x1) = (2 * px, (2 * px + 1).min(w - 1));
            let dst = &mut out[(py * w.div_ceil(2) + px) * c..][..c];
            let sources = at(y0, x0)
                .iter()
                .zip(at(y0, x1))
                .zip(at(y1, x0))
                .zip(at(y1, x1));
            for (d, (((a, b), e), f)) in dst.iter_mut().zip(sources) {
                let top = if b > a { b } else { a };
                let bottom = if f > e { f } else { e };
                d.write(if bottom > top { *bottom } else { *top });
            }
        }
    }
}

/// Depthwise convolution weights `[kh][kw][c]` (TensorFlow's `[kh][kw][c][1]`).
#[derive(Clone, Debug)]
pub struct Depthwise {
    pub kh: usize,
    pub kw: usize,
    pub c: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A depthwise separable convolution: depthwise 3x3, then pointwise 1x1 with bias.
pub struct Separable {
    pub depthwise: Depthwise,
    pub pointwise: Conv,
}

impl Separable {
    pub fn forward(&self, x: &Tensor, stride: usize, act: Activation) -> Tensor {
        let d = depthwise(x, &self.depthwise, stride, Padding::Same);
        conv2d(&d, &self.pointwise, 1, Padding::Same, act)
    }
}

/// Channels the vectorised loops take together: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// Runs `work` compiled for the widest vectors the CPU has (AVX-512, AVX2), else for the
/// target's baseline (SSE2, NEON). `work` must be an `#[inline(always)]` closure calling only
/// an `#[inline(always)]` loop nest, so that the whole of it is generated inside the wrapper,
/// with the wrapper's features: a closure left to the compiler was not inlined, and ran
/// baseline code.
#[inline(always)]
pub(crate) fn with_widest_vectors<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        let isa = crate::kernels::cpu::isa();
        if isa >= crate::kernels::cpu::Isa::Avx512 {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512(work) };
        }
        if isa >= crate::kernels::cpu::Isa::Avx2 {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(work) };
        }
    }
    work()
}

/// `LANES` values of `data` from `at`.
#[inline(always)]
fn lanes(data: &[f32], at: usize) -> &[f32; LANES] {
    data[at..at + LANES].try_into().expect("LANES values")
}

/// Writes `values` to the `LANES` outputs from `at`.
#[inline(always)]
fn store(out: &mut [MaybeUninit<f32>], at: usize, values: &[f32; LANES]) {
    for (o, v) in out[at..at + LANES].iter_mut().zip(values) {
        o.write(*v);
    }
}

/// A depthwise convolution, plus bias.
pub fn depthwise(x: &Tensor, dw: &Depthwise, stride: usize, padding: Padding) -> Tensor {
    depthwise_through(x, dw, stride, padding, Activation::Linear)
}

/// A depthwise convolution, plus bias, through `act`, applied as each value is written.
pub fn depthwise_through(
    x: &Tensor,
    dw: &Depthwise,
    stride: usize,
    padding: Padding,
    act: Activation,
) -> Tensor {
    let (oh, _) = out_and_pad(x.h, dw.kh, stride, padding);
    depthwise_output_rows(x, dw, (stride, padding), act, 0..oh)
}

/// The output rows `rows` of a stride-1 `Same` depthwise convolution, as a map of their own.
fn depthwise_band(x: &Tensor, dw: &Depthwise, rows: std::ops::Range<usize>) -> Tensor {
    depthwise_output_rows(x, dw, (1, Padding::Same), Activation::Linear, rows)
}

/// The output rows `rows` of [`depthwise_through`], as a map of `rows.len()` rows.
fn depthwise_output_rows(
    x: &Tensor,
    dw: &Depthwise,
    (stride, padding): (usize, Padding),
    act: Activation,
    rows: std::ops::Range<usize>,
) -> Tensor {
    assert_eq!(x.c, dw.c, "depthwise channels");
    act.check_channels(x.c);
    let slopes: Vec<f32> = (0..x.c).map(|c| act.slope(c)).collect();
    if x.c.is_multiple_of(LANES) && (dw.kh, dw.kw) == (3, 3) {
        let (oh, top) = out_and_pad(x.h, 3, stride, padding);
        let (ow, left) = out_and_pad(x.w, 3, stride, padding);
        assert!(rows.end <= oh, "depthwise rows {rows:?} of {oh}");
        count_flops(rows.len() * ow * 9 * x.c);
        let grid = Grid {
            ow,
            stride,
            top,
            left,
        };
        // SAFETY: the loops write every value of their output.
        return unsafe {
            Tensor::written_by(rows.len(), ow, x.c, |out| {
                with_widest_vectors(
                    #[inline(always)]
                    || depthwise3_lanes(x, (dw, &slopes), grid, rows, out),
                );
            })
        };
    }
    let (oh, ow, input) = padded(x, dw.kh, dw.kw, stride, padding);
    assert!(rows.end <= oh, "depthwise rows {rows:?} of {oh}");
    count_flops(rows.len() * ow * dw.kh * dw.kw * x.c);
    let mut out = Tensor::zeros(rows.len(), ow, x.c);
    depthwise_any(input.as_ref(), dw, stride, rows.start, &mut out);
    prelu(&mut out, &slopes);
    out
}

/// Where a window's outputs lie over its input: `ow` of them a row, `stride` apart, the first
/// `top` rows and `left` columns before the input's first (zero padding).
#[derive(Clone, Copy)]
struct Grid {
    ow: usize,
    stride: usize,
    top: usize,
    left: usize,
}

/// The taps of a 3-wide window starting at `first` (perhaps before 0) that fall inside `0..size`.
#[inline(always)]
fn taps(first: isize, size: usize) -> std::ops::Range<usize> {
    let start = (-first).clamp(0, 3) as usize;
    let end = (size as isize - first).clamp(start as isize, 3) as usize;
    start..end
}

/// A 3x3 depthwise convolution through an activation of the given slopes, `LANES` channels
/// at a time: their nine weights stay in registers while the whole map passes. Reads the input
/// where it lies, leaving out the taps that fall in the padding (a padded copy of the map cost
/// as much as the convolution). Writes every value of the output.
#[inline(always)]
fn depthwise3_lanes(
    x: &Tensor,
    (dw, slopes): (&Depthwise, &[f32]),
    g: Grid,
    rows_out: std::ops::Range<usize>,
    out: &mut [MaybeUninit<f32>],
) {
    let c = x.c;
    for c0 in (0..c).step_by(LANES) {
        let weights: [[f32; LANES]; 9] = std::array::from_fn(|t| *lanes(&dw.weights, t * c + c0));
        let bias = *lanes(&dw.bias, c0);
        let slope = *lanes(slopes, c0);
        for oy in rows_out.clone() {
            let row_out = (oy - rows_out.start) * g.ow;
            let y0 = (oy * g.stride) as isize - g.top as isize;
            let rows = taps(y0, x.h);
            let mut ox = 0;
            while ox < g.ow {
                let x0 = (ox * g.stride) as isize - g.left as isize;
                // `BLOCK` outputs inside the map at once: each input read serves up to three.
                let end = x0 + ((BLOCK - 1) * g.stride + 3) as isize;
                let inside = rows == (0..3) && x0 >= 0 && end as usize <= x.w;
                if g.stride <= 2 && inside && ox + BLOCK <= g.ow {
                    let at = (y0 as usize * x.w + x0 as usize) * c + c0;
                    let acc = match g.stride {
                        1 => block_of_outputs::<1, { BLOCK + 2 }>(x, at, &weights, bias),
                        _ => block_of_outputs::<2, { 2 * BLOCK + 1 }>(x, at, &weights, bias),
                    };
                    for (j, mut acc) in acc.into_iter().enumerate() {
                        for (a, s) in acc.iter_mut().zip(&slope) {
                            *a = matmul::activate(*a, *s);
                        }
                        store(out, (row_out + ox + j) * c + c0, &acc);
                    }
                    ox += BLOCK;
                    continue;
                }
                let cols = taps(x0, x.w);
                let mut acc = bias;
                let mut tap = |src: &[f32], w: &[f32; LANES]| {
                    multiply_add(&mut acc, lanes(src, 0), w);
                };
                if rows == (0..3) && cols == (0..3) {
                    // Inside the map: each kernel row's inputs sliced once, nine taps unrolled.
                    let at = (y0 as usize * x.w + x0 as usize) * c + c0;
                    for ky in 0..3 {
                        let window = &x.data[at + ky * x.w * c..][..2 * c + LANES];
                        for kx in 0..3 {
                            tap(&window[kx * c..], &weights[ky * 3 + kx]);
                        }
                    }
                } else {
                    for ky in rows.clone() {
                        for kx in cols.clone() {
                            let (iy, ix) =
                                ((y0 + ky as isize) as usize, (x0 + kx as isize) as usize);
                            tap(&x.data[(iy * x.w + ix) * c + c0..], &weights[ky * 3 + kx]);
                        }
                    }
                }
                for (a, s) in acc.iter_mut().zip(&slope) {
                    *a = matmul::activate(*a, *s);
                }
                store(out, (row_out + ox) * c + c0, &acc);
                ox += 1;
            }
        }
    }
}

/// Neighbouring outputs of a depthwise convolution computed together (eight, with their
/// inputs, no longer fit in the registers and ran at half the speed of one at a time).
const BLOCK: usize = 4;

/// `acc += s * w`, lane by lane.
#[inline(always)]
fn multiply_add(acc: &mut [f32; LANES], s: &[f32; LANES], w: &[f32; LANES]) {
    for ((a, s), w) in acc.iter_mut().zip(s).zip(w) {
        *a += s * w;
    }
}

/// [`BLOCK`] neighbouring outputs of a 3x3 depthwise convolution of stride `S` inside the
/// map, `LANES` channels of each, before the activation: the `SPAN` (= (BLOCK - 1) S + 3)
/// inputs of a kernel row are read once for all of them. Each output adds its taps in the
/// order a single one does, so the values are those of the one-at-a-time loop.
#[inline(always)]
fn block_of_outputs<const S: usize, const SPAN: usize>(
    x: &Tensor,
    at: usize,
    weights: &[[f32; LANES]; 9],
    bias: [f32; LANES],
) -> [[f32; LANES]; BLOCK] {
    let c = x.c;
    let mut acc = [bias; BLOCK];
    for ky in 0..3 {
        let row = &x.data[at + ky * x.w * c..][..(SPAN - 1) * c + LANES];
        let inputs: [[f32; LANES]; SPAN] = std::array::from_fn(|i| *lanes(row, i * c));
        for kx in 0..3 {
            let w = &weights[ky * 3 + kx];
            for (j, acc) in acc.iter_mut().enumerate() {
                multiply_add(acc, &inputs[j * S + kx], w);
            }
        }
    }
    acc
}

/// A depthwise convolution of any size and channel count, on an input padded for it: the
/// output rows from `first_row` on, as many as `out` holds.
fn depthwise_any(x: &Tensor, dw: &Depthwise, stride: usize, first_row: usize, out: &mut Tensor) {
    let c = x.c;
    for oy in 0..out.h {
        for ox in 0..out.w {
            let acc = &mut out.data[(oy * out.w + ox) * c..][..c];
            acc.copy_from_slice(&dw.bias);
            for ky in 0..dw.kh {
                let row = (((first_row + oy) * stride + ky) * x.w + ox * stride) * c;
                for kx in 0..dw.kw {
                    let src = &x.data[row + kx * c..][..c];
                    let w = &dw.weights[(ky * dw.kw + kx) * c..][..c];
                    for ((a, s), w) in acc.iter_mut().zip(src).zip(w) {
                        *a += s * w;
                    }
                }
            }
        }
    }
}

/// Max pooling; padded positions are ignored, as in TensorFlow.
pub fn max_pool(x: &Tensor, k: usize, stride: usize, padding: Padding) -> Tensor {
    let (oh, pad_top) = out_and_pad(x.h, k, stride, padding);
    let (ow, pad_left) = out_and_pad(x.w, k, stride, padding);
    let pool = Pool {
        k,
        stride,
        pad_top,
        pad_left,
    };
    if x.c.is_multiple_of(LANES) {
        // SAFETY: the loops write every value of their output.
        unsafe {
            Tensor::written_by(oh, ow, x.c, |out| {
                max_pool_lanes(x, pool, (oh, ow), out);
            })
        }
    } else {
        let mut out = Tensor::zeros(oh, ow, x.c);
        max_pool_any(x, pool, &mut out);
        out
    }
}

/// A pooling window's size and step, and the padding before the first.
#[derive(Clone, Copy)]
struct Pool {
    k: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
}

impl Pool {
    /// Input positions under output `o` along an axis of `size`, padding left out.
    #[inline(always)]
    fn window(&self, o: usize, pad: usize, size: usize) -> std::ops::Range<usize> {
        let first = (o * self.stride).saturating_sub(pad);
        first..(o * self.stride + self.k).saturating_sub(pad).min(size)
    }
}

/// Max pooling `LANES` channels at a time, each pixel's maximum kept in registers. A
/// comparison rather than `f32::max`, which spends instructions on NaN (the networks make none).
/// Writes every value of the `oh` x `ow` output. Baseline vectors: generated for AVX-512 it
/// measured a third slower (0.100 against 0.068 ms for a 207x159x16 map).
#[inline(always)]
fn max_pool_lanes(x: &Tensor, pool: Pool, (oh, ow): (usize, usize), out: &mut [MaybeUninit<f32>]) {
    let c = x.c;
    for oy in 0..oh {
        let rows = pool.window(oy, pool.pad_top, x.h);
        for ox in 0..ow {
            let cols = pool.window(ox, pool.pad_left, x.w);
            for c0 in (0..c).step_by(LANES) {
                let mut acc = [f32::NEG_INFINITY; LANES];
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let src = lanes(&x.data, (iy * x.w + ix) * c + c0);
                        for (a, s) in acc.iter_mut().zip(src) {
                            *a = if *s > *a { *s } else { *a };
                        }
                    }
                }
                store(out, (oy * ow + ox) * c + c0, &acc);
            }
        }
    }
}

/// Max pooling of any channel count.
fn max_pool_any(x: &Tensor, pool: Pool, out: &mut Tensor) {
    let c = x.c;
    for oy in 0..out.h {
        for ox in 0..out.w {
            let dst = &mut out.data[(oy * out.w + ox) * c..][..c];
            dst.fill(f32::NEG_INFINITY);
            for iy in pool.window(oy, pool.pad_top, x.h) {
                for ix in pool.window(ox, pool.pad_left, x.w) {
                    let src = &x.data[(iy * x.w + ix) * c..][..c];
                    for (a, s) in dst.iter_mut().zip(src) {
                        *a = a.max(*s);
                    }
                }
            }
        }
    }
}

/// Average pooling without padding.
pub fn avg_pool_valid(x: &Tensor, k: usize, stride: usize) -> Tensor {
    let (oh, _) = out_and_pad(x.h, k, stride, Padding::Valid);
    let (ow, _) = out_and_pad(x.w, k, stride, Padding::Valid);
    let c = x.c;
    let mut out = Tensor::zeros(oh, ow, c);
    let norm = 1.0 / (k * k) as f32;
    for oy in 0..oh {
        for ox in 0..ow {
            let acc = &mut out.data[(oy * ow + ox) * c..][..c];
            for ky in 0..k {
                for kx in 0..k {
                    let src = &x.data[((oy * stride + ky) * x.w + ox * stride + kx) * c..][..c];
                    for (a, s) in acc.iter_mut().zip(src) {
                        *a += s;
                    }
                }
            }
            acc.iter_mut().for_each(|a| *a *= norm);
        }
    }
    out
}

pub fn relu(x: &mut Tensor) {
    x.data.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// PReLU: each channel's negative values times its slope (any activation, given its slope
/// for each channel).
pub fn prelu(x: &mut Tensor, slopes: &[f32]) {
    assert_eq!(slopes.len(), x.c, "one slope per channel");
    for px in x.data.chunks_exact_mut(x.c) {
        for (v, s) in px.iter_mut().zip(slopes) {
            *v = matmul::activate(*v, *s);
        }
    }
}

/// `x += y`, elementwise.
pub fn add_assign(x: &mut Tensor, y: &Tensor) {
    assert_eq!(x.data.len(), y.data.len(), "add shapes");
    x.data.iter_mut().zip(&y.data).for_each(|(a, b)| *a += b);
}

/// Mean over all positions: one value per channel.
pub fn global_mean(x: &Tensor) -> Vec<f32> {
    let mut acc = vec![0.0f32; x.c];
    for px in x.data.chunks_exact(x.c) {
        acc.iter_mut().zip(px).for_each(|(a, v)| *a += v);
    }
    let n = (x.h * x.w) as f32;
    acc.iter_mut().for_each(|a| *a /= n);
    acc
}

/// A fully connected layer: `weights` is `[inputs][outputs]`.
pub fn dense(x: &[f32], weights: &[f32], bias: Option<&[f32]>, outputs: usize) -> Vec<f32> {
    assert_eq!(weights.len(), x.len() * outputs, "dense shapes");
    count_flops(x.len() * outputs);
    let mut out = bias.map_or_else(|| vec![0.0; outputs], <[f32]>::to_vec);
    for (xi, row) in x.iter().zip(weights.chunks_exact(outputs)) {
        out.iter_mut().zip(row).for_each(|(o, w)| *o += xi * w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo;

    /// A direct, obviously correct convolution to check the im2col path against.
    fn naive(x: &Tensor, conv: &Conv, stride: usize, padding: Padding) -> Tensor {
        let (oh, pt) = out_and_pad(x.h, conv.kh, stride, padding);
        let (ow, pl) = out_and_pad(x.w, conv.kw, stride, padding);
        let mut out = Tensor::zeros(oh, ow, conv.cout);
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..conv.cout {
                    let mut acc = conv.bias[co];
                    for ky in 0..conv.kh {
                        for kx in 0..conv.kw {
                            let iy = (oy * stride + ky) as isize - pt as isize;
                            let ix = (ox * stride + kx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                                continue;
                            }
                            for ci in 0..conv.cin {
                                acc += x.data[(iy as usize * x.w + ix as usize) * x.c + ci]
                                    * conv.weights
                                        [((ky * conv.kw + kx) * conv.cin + ci) * conv.cout + co];
                            }
                        }
                    }
                    out.data[(oy * ow + ox) * conv.cout + co] = acc;
                }
            }
        }
        out
    }

    #[test]
    fn im2col_convolution_matches_the_direct_one() {
        for (h, w, k, stride, padding) in [
            (9, 7, 3, 1, Padding::Same),
            (9, 7, 3, 2, Padding::Same),
            (10, 10, 3, 2, Padding::Valid),
            (15, 11, 7, 2, Padding::Valid),
            (5, 6, 1, 1, Padding::Same),
            (1, 1, 3, 1, Padding::Same),
            (1, 1, 5, 2, Padding::Same),
            (8, 8, 3, 2, Padding::Explicit(1)),
            (7, 9, 3, 1, Padding::Explicit(1)),
        ] {
            let (cin, cout) = (3, 5);
            let x = Tensor::from_data(h, w, cin, pseudo(h * w * cin, 1));
            let conv = Conv::new(
                [k, k, cin, cout],
                pseudo(k * k * cin * cout, 2),
                pseudo(cout, 3),
            );
            let fast = conv2d(&x, &conv, stride, padding, Activation::Linear);
            let slow = naive(&x, &conv, stride, padding);
            assert_eq!((fast.h, fast.w), (slow.h, slow.w));
            for (a, b) in fast.data.iter().zip(&slow.data) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    /// The fused convolution and pooling against the two run one after the other: odd and even
    /// sizes (an odd last row or column pooled alone), strides, padding, bands of one pair of
    /// rows and of many, channel counts on and off the vector width.
    #[test]
    fn convolution_then_pooling_fused_matches_the_two_in_turn() {
        for (h, w, k, stride, padding, cin, cout) in [
            (9, 7, 3, 1, Padding::Same, 3, 5),
            (10, 12, 3, 1, Padding::Valid, 3, 16),
            (11, 9, 1, 1, Padding::Same, 16, 32),
            (13, 13, 3, 2, Padding::Same, 4, 16),
            (300, 300, 3, 1, Padding::Valid, 3, 16),
        ] {
            let x = Tensor::from_data(h, w, cin, pseudo(h * w * cin, 7));
            let conv = Conv::new(
                [k, k, cin, cout],
                pseudo(k * k * cin * cout, 8),
                pseudo(cout, 9),
            );
            let act = Activation::Leaky(0.1);
            let fused = conv2d_max_pool2(&x, &conv, stride, padding, act);
            let apart = max_pool(
                &conv2d(&x, &conv, stride, padding, act),
                2,
                2,
                Padding::Same,
            );
            assert_eq!((fused.h, fused.w, fused.c), (apart.h, apart.w, apart.c));
            assert_eq!(
                fused.data, apart.data,
                "{h}x{w} k{k} s{stride} {cin}->{cout}"
            );
        }
    }

    /// Whole groups of sixteen pixels and a remainder, each value against its channel's mean.
    #[test]
    fn rgb_bytes_become_each_channels_distance_from_its_mean() {
        let (h, w) = (5, 7);
        let bytes: Vec<u8> = (0..h * w * 3).map(|i| (i * 37 % 256) as u8).collect();
        let mean = [10.5, 100.25, 200.0];
        let x = from_rgb(h, w, &bytes, mean, 255.0);
        assert_eq!((x.h, x.w, x.c), (h, w, 3));
        for (i, (got, byte)) in x.data.iter().zip(&bytes).enumerate() {
            assert_eq!(*got, (f32::from(*byte) - mean[i % 3]) / 255.0, "value {i}");
        }
    }

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(out_and_pad(512, 3, 2, Padding::Same), (256, 0));
        assert_eq!(out_and_pad(7, 3, 2, Padding::Same), (4, 1));
        assert_eq!(out_and_pad(150, 7, 2, Padding::Valid), (72, 0));
        // PyTorch's pads: 112 -> 56 with the padding before the first row, not after the last.
        assert_eq!(out_and_pad(112, 3, 2, Padding::Explicit(1)), (56, 1));
        assert_eq!(out_and_pad(7, 7, 1, Padding::Explicit(0)), (1, 0));
    }

    #[test]
    fn operations_are_counted_per_layer() {
        let x = Tensor::from_data(6, 5, 3, pseudo(90, 1));
        let conv = Conv::new([3, 3, 3, 4], pseudo(108, 2), vec![0.0; 4]);
        let before = flops_so_far();
        conv2d(&x, &conv, 1, Padding::Same, Activation::Linear);
        assert_eq!(flops_so_far() - before, 2 * (6 * 5) * (3 * 3 * 3) * 4);
        let before = flops_so_far();
        dense(&[1.0; 7], &[0.5; 21], None, 3);
        assert_eq!(flops_so_far() - before, 2 * 7 * 3);
    }

    /// The vectorised loops (16 channels at a time) against the plain ones, on every padding
    /// and stride the networks use.
    #[test]
    fn vectorised_pooling_and_depthwise_match_the_plain_loops() {
        let x = Tensor::from_data(7, 9, 32, pseudo(7 * 9 * 32, 4));
        for (k, stride, padding) in [
            (2, 2, Padding::Same),
            (2, 1, Padding::Same),
            (3, 2, Padding::Valid),
        ] {
            let fast = max_pool(&x, k, stride, padding);
            let (oh, pad_top) = out_and_pad(x.h, k, stride, padding);
            let (ow, pad_left) = out_and_pad(x.w, k, stride, padding);
            let mut slow = Tensor::zeros(oh, ow, x.c);
            let pool = Pool {
                k,
                stride,
                pad_top,
                pad_left,
            };
            max_pool_any(&x, pool, &mut slow);
            assert_eq!(fast.data, slow.data, "max pool {k}/{stride}");
        }
        let dw = Depthwise {
            kh: 3,
            kw: 3,
            c: 32,
            weights: pseudo(9 * 32, 5),
            bias: pseudo(32, 6),
        };
        // PReLU's slopes: of either sign, some above one.
        let slopes: Vec<f32> = pseudo(32, 7).iter().map(|s| 3.0 * s).collect();
        // The narrow map has room for one block of outputs at stride 1; the wide one for
        // several at both strides, and single outputs after them.
        let wide = Tensor::from_data(5, 23, 32, pseudo(5 * 23 * 32, 8));
        for (x, (stride, padding)) in [&x, &wide].into_iter().flat_map(|x| {
            [
                (1, Padding::Same),
                (2, Padding::Same),
                (1, Padding::Valid),
                (2, Padding::Valid),
                (1, Padding::Explicit(1)),
                (2, Padding::Explicit(1)),
            ]
            .map(|p| (x, p))
        }) {
            let fast = depthwise_through(x, &dw, stride, padding, Activation::PRelu(&slopes));
            let (oh, ow, input) = padded(x, 3, 3, stride, padding);
            let mut slow = Tensor::zeros(oh, ow, x.c);
            depthwise_any(&input, &dw, stride, 0, &mut slow);
            assert_eq!((fast.h, fast.w), (oh, ow));
            for (i, (a, b)) in fast.data.iter().zip(&slow.data).enumerate() {
                let b = matmul::activate(*b, slopes[i % 32]);
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    /// A band of a depthwise convolution's output rows is those rows of the whole output, on
    /// the vectorised path and on the general one (5x5, channels not a multiple of the lanes).
    #[test]
    fn a_depthwise_band_is_those_rows_of_the_whole_map() {
        for (k, c) in [(3, 32), (5, 3)] {
            let x = Tensor::from_data(7, 9, c, pseudo(7 * 9 * c, 8));
            let dw = Depthwise {
                kh: k,
                kw: k,
                c,
                weights: pseudo(k * k * c, 9),
                bias: pseudo(c, 10),
            };
            let whole = depthwise(&x, &dw, 1, Padding::Same);
            for rows in [0..7, 2..5, 6..7] {
                let band = depthwise_band(&x, &dw, rows.clone());
                assert_eq!((band.h, band.w, band.c), (rows.len(), 9, c));
                let row = 9 * c;
                assert_eq!(
                    band.data,
                    whole.data[rows.start * row..rows.end * row],
                    "{k}x{k}, {c} channels, rows {rows:?}"
                );
            }
        }
    }

    #[test]
    fn pooling_and_depthwise() {
        let x = Tensor::from_data(2, 2, 1, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(max_pool(&x, 2, 2, Padding::Same).data, [4.0]);
        assert_eq!(avg_pool_valid(&x, 2, 2).data, [2.5]);
        let dw = Depthwise {
            kh: 3,
            kw: 3,
            c: 1,
            weights: vec![1.0; 9],
            bias: vec![0.5],
        };
        // Each output sums its 3x3 neighbourhood (zero padded): every output sees all four.
        assert_eq!(depthwise(&x, &dw, 1, Padding::Same).data, [10.5; 4]);
    }
}
