//! 3x3 convolutions of stride 1 and `Same` padding by Winograd's minimal filtering F(2x2, 3x3):
//! each 2x2 block of outputs comes from a 4x4 block of inputs with 16 multiplications per pair
//! of channels instead of 36. The weights are transformed once, at load; the input blocks are
//! transformed, multiplied by the weights as 16 matrix products (one per element of a block,
//! on the same kernel as every other layer), and transformed back.

use super::{
    matmul::{self, Activation, Packed, Rows, Windows},
    tensor::{count_flops, with_widest_vectors, Conv, Tensor},
};

/// Output values per block along each axis, and input values per block.
const OUT: usize = 2;
const IN: usize = 4;

/// A 3x3 convolution's weights, transformed: one `cin` x `cout` matrix per element of a block.
pub struct Winograd3x3 {
    cin: usize,
    cout: usize,
    products: Vec<Packed>,
    bias: Vec<f32>,
}

impl Winograd3x3 {
    pub fn new(conv: &Conv) -> Self {
        assert_eq!((conv.kh, conv.kw), (3, 3), "a 3x3 convolution");
        let (cin, cout) = (conv.cin, conv.cout);
        // U = G g G^T for every pair of channels, with G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
        const G: [[f32; 3]; IN] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let mut elements = vec![vec![0.0f32; cin * cout]; IN * IN];
        for ci in 0..cin {
            for co in 0..cout {
                let g = |ky: usize, kx: usize| conv.weights[((ky * 3 + kx) * cin + ci) * cout + co];
                let gg: [[f32; 3]; IN] = std::array::from_fn(|i| {
                    std::array::from_fn(|kx| (0..3).map(|ky| G[i][ky] * g(ky, kx)).sum())
                });
                for i in 0..IN {
                    for j in 0..IN {
                        let u: f32 = (0..3).map(|kx| gg[i][kx] * G[j][kx]).sum();
                        elements[i * IN + j][ci * cout + co] = u;
                    }
                }
            }
        }
        let zeros = vec![0.0; cout];
        let products = elements
            .iter()
            .map(|u| Packed::new(u, &zeros, cin, cout))
            .collect();
        Self {
            cin,
            cout,
            products,
            bias: conv.bias.clone(),
        }
    }

    /// The convolution of `x` (stride 1, `Same` padding), plus bias, through `act`.
    pub fn forward(&self, x: &Tensor, act: Activation) -> Tensor {
        assert_eq!(x.c, self.cin, "conv input channels");
        let (cin, cout) = (self.cin, self.cout);
        let (th, tw) = (x.h.div_ceil(OUT), x.w.div_ceil(OUT));
        let tiles = th * tw;
        // V = B^T d B for every block d of inputs, element by element: v[e][tile][channel].
        let mut v = vec![0.0f32; IN * IN * tiles * cin];
        with_widest_vectors(
            #[inline(always)]
            || transform_inputs(x, (th, tw), &mut v),
        );
        // M[e] = V[e] U[e]: one product per element of a block.
        count_flops(IN * IN * tiles * cin * cout);
        let mut m = vec![std::mem::MaybeUninit::<f32>::uninit(); IN * IN * tiles * cout];
        for (e, (inputs, out)) in v
            .chunks_exact(tiles * cin)
            .zip(m.chunks_exact_mut(tiles * cout))
            .enumerate()
        {
            let rows = Rows {
                input: inputs,
                height: tiles,
                width: 1,
                row_step: cin,
                col_step: 0,
                windows: Windows {
                    segments: 1,
                    run: cin,
                    gap: cin,
                },
            };
            matmul::multiply(&rows, &self.products[e], Activation::Linear, out);
        }
        // SAFETY: every product wrote every value of its part of `m`.
        let m = unsafe { std::slice::from_raw_parts(m.as_ptr().cast::<f32>(), m.len()) };
        // Y = A^T M A, plus bias, through the activation.
        let mut out = vec![0.0f32; x.h * x.w * cout];
        with_widest_vectors(
            #[inline(always)]
            || {
                transform_outputs(
                    m,
                    (x.h, x.w, cout),
                    (th, tw),
                    &self.bias,
                    act.uniform_slope(),
                    &mut out,
                )
            },
        );
        Tensor::from_data(x.h, x.w, cout, out)
    }
}

/// V = B^T d B for every 4x4 block d of `x` (zero outside it), into `v[e][tile][channel]`.
/// B^T combines rows as d0 - d2, d1 + d2, d2 - d1, d1 - d3; B the same on columns.
#[inline(always)]
fn transform_inputs(x: &Tensor, (th, tw): (usize, usize), v: &mut [f32]) {
    let (cin, tiles) = (x.c, th * tw);
    let zeros = vec![0.0f32; cin];
    let mut rows = vec![0.0f32; IN * IN * cin];
    for ty in 0..th {
        for tx in 0..tw {
            let tile = ty * tw + tx;
            let d = |i: usize, j: usize| {
                let (y, x0) = ((OUT * ty + i) as isize - 1, (OUT * tx + j) as isize - 1);
                if y < 0 || x0 < 0 || y as usize >= x.h || x0 as usize >= x.w {
                    &zeros[..]
                } else {
                    &x.data[(y as usize * x.w + x0 as usize) * cin..][..cin]
                }
            };
            for j in 0..IN {
                let (d0, d1, d2, d3) = (d(0, j), d(1, j), d(2, j), d(3, j));
                let row = |k: usize| k * IN + j;
                combine(&mut rows[row(0) * cin..][..cin], d0, d2, -1.0);
                combine(&mut rows[row(1) * cin..][..cin], d1, d2, 1.0);
                combine(&mut rows[row(2) * cin..][..cin], d2, d1, -1.0);
                combine(&mut rows[row(3) * cin..][..cin], d1, d3, -1.0);
            }
            for i in 0..IN {
                let r = |j: usize| &rows[(i * IN + j) * cin..][..cin];
                let at = |j: usize| ((i * IN + j) * tiles + tile) * cin;
                combine(&mut v[at(0)..][..cin], r(0), r(2), -1.0);
                combine(&mut v[at(1)..][..cin], r(1), r(2), 1.0);
                combine(&mut v[at(2)..][..cin], r(2), r(1), -1.0);
                combine(&mut v[at(3)..][..cin], r(1), r(3), -1.0);
            }
        }
    }
}

/// Y = A^T M A for every block, with A^T = [1 1 1 0; 0 1 -1 -1], plus `bias`, through the
/// activation of `slope`, into `out` (`h` x `w` x `cout`; a block's values past it dropped).
#[inline(always)]
fn transform_outputs(
    m: &[f32],
    (h, w, cout): (usize, usize, usize),
    (th, tw): (usize, usize),
    bias: &[f32],
    slope: f32,
    out: &mut [f32],
) {
    let tiles = th * tw;
    let mut t = vec![0.0f32; OUT * IN * cout];
    let mut value = vec![0.0f32; cout];
    for ty in 0..th {
        for tx in 0..tw {
            let tile = ty * tw + tx;
            let el = |i: usize, j: usize| &m[((i * IN + j) * tiles + tile) * cout..][..cout];
            for j in 0..IN {
                let (first, second) = t.split_at_mut(IN * cout);
                let (t0, t1) = (
                    &mut first[j * cout..][..cout],
                    &mut second[j * cout..][..cout],
                );
                for (((t0, t1), m0), (m1, (m2, m3))) in t0
                    .iter_mut()
                    .zip(t1.iter_mut())
                    .zip(el(0, j))
                    .zip(el(1, j).iter().zip(el(2, j).iter().zip(el(3, j))))
                {
                    *t0 = m0 + m1 + m2;
                    *t1 = m1 - m2 - m3;
                }
            }
            for a in 0..OUT {
                let y = OUT * ty + a;
                if y >= h {
                    continue;
                }
                let r = |j: usize| &t[(a * IN + j) * cout..][..cout];
                for b in 0..OUT {
                    let xo = OUT * tx + b;
                    if xo >= w {
                        continue;
                    }
                    // Column combinations: r0 + r1 + r2, and r1 - r2 - r3.
                    let (outer, sign) = if b == 0 { (r(0), 1.0) } else { (r(3), -1.0) };
                    for ((((v, o), p), q), bias) in
                        value.iter_mut().zip(outer).zip(r(1)).zip(r(2)).zip(bias)
                    {
                        let sum = sign * o + p + sign * q + bias;
                        *v = sum.max(sum * slope);
                    }
                    out[(y * w + xo) * cout..][..cout].copy_from_slice(&value);
                }
            }
        }
    }
}

/// `out = a + sign * b`, value by value (`sign` is 1 or -1).
#[inline(always)]
fn combine(out: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a + sign * b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernels::tensor::{self, Padding},
        testing::{pseudo, worst_difference},
    };

    #[test]
    fn matches_the_direct_convolution() {
        for (h, w, cin, cout) in [
            (35, 35, 32, 32),
            (8, 8, 16, 5),
            (1, 1, 3, 4),
            (7, 4, 20, 17),
        ] {
            let x = Tensor::from_data(h, w, cin, pseudo(h * w * cin, 11));
            let conv = Conv::new(
                [3, 3, cin, cout],
                pseudo(9 * cin * cout, 12),
                pseudo(cout, 13),
            );
            for act in [Activation::Linear, Activation::Relu] {
                let direct = tensor::conv2d(&x, &conv, 1, Padding::Same, act);
                let fast = Winograd3x3::new(&conv).forward(&x, act);
                assert_eq!((fast.h, fast.w, fast.c), (direct.h, direct.w, direct.c));
                let worst = worst_difference(&fast.data, &direct.data);
                assert!(worst < 1e-4, "{h}x{w}x{cin}->{cout}: off by {worst}");
            }
        }
    }
}
