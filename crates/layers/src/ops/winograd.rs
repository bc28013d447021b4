//! Winograd's minimal filtering F(m x m, r x r) for stride-1 convolutions.
//!
//! Each m x m output tile comes from an a x a input tile (a = m + r - 1) as
//! `Y = At [(G w Gt) . (Bt d B)] A`: the input and filter are taken to a points' domain where a
//! convolution is an element-wise product, summed over input channels there (one GEMM per each
//! of the a*a points), and brought back. A 3x3 layer with m = 4 does 36 multiplies per 16
//! outputs instead of 144, a 5x5 one with m = 2 does 36 per 4 instead of 100.
//!
//! With X = (images of the chunk) x (tiles per image):
//! - `Backend::winograd_tiles` takes the input tiles to `V [a*a][C][X]`;
//! - per point xi: `M_xi [O x X] = U_xi [O x C] V_xi [C x X]`, one batched GEMM;
//! - `Backend::winograd_untile` takes `M` back to the output tiles, in place in NCHW.
//!
//! The backward pass is the exact adjoint of each of these linear steps, so its gradients are
//! those of the function computed (no flipped-kernel convolution, no second approximation).
use super::ConvGrads;
use tensor::winograd::{kronecker, MAX_INPUT_TILE as MAX_TILE};
use tensor::{Backend, ConvGeometry, Gemm, Result, Tensor, Window};

/// Evaluation points of the transforms, in the order they are used; infinity comes last.
const POINTS: [f64; 5] = [0.0, 1.0, -1.0, 2.0, -2.0];

/// The 1-D transforms of F(m, r) as row-major f64 matrices: `at` (m x a), `g` (a x r), `bt`
/// (a x a), such that for any d (a values) and w (r values)
/// `at * ((g w) . (bt d)) = [sum_k d[i + k] w[k] for i in 0..m]`.
///
/// Toom-Cook: correlation is the transpose of the polynomial product u(x) v(x), evaluated at
/// a - 1 points and at infinity (the product of the leading coefficients) and rebuilt by
/// Lagrange interpolation. Lagrange's denominators go into `g`, so `bt` and `at` stay integral.
pub fn transforms(m: usize, r: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let a = m + r - 1;
    assert!((2..=MAX_TILE).contains(&a) && a - 1 <= POINTS.len(), "no Winograd transform for F({m}, {r})");
    let points = &POINTS[..a - 1];
    // Row j of the evaluation at point j: its powers; at infinity, the leading coefficient.
    let eval = |j: usize, i: usize, len: usize| {
        if j < a - 1 {
            points[j].powi(i as i32)
        } else if i == len - 1 {
            1.0
        } else {
            0.0
        }
    };
    let mut at = vec![0.0; m * a];
    for i in 0..m {
        for j in 0..a {
            at[i * a + j] = eval(j, i, m);
        }
    }
    let mut g = vec![0.0; a * r];
    let mut bt = vec![0.0; a * a];
    for j in 0..a {
        // Coefficients of prod over the other finite points of (x - p); for infinity, all of them.
        let mut poly = vec![1.0];
        for (l, &p) in points.iter().enumerate() {
            if l != j {
                let mut next = vec![0.0; poly.len() + 1];
                for (t, &c) in poly.iter().enumerate() {
                    next[t + 1] += c;
                    next[t] -= p * c;
                }
                poly = next;
            }
        }
        bt[j * a..j * a + poly.len()].copy_from_slice(&poly);
        let denominator: f64 = if j < a - 1 {
            points.iter().enumerate().filter(|&(l, _)| l != j).map(|(_, &p)| points[j] - p).product()
        } else {
            1.0
        };
        for k in 0..r {
            g[j * r + k] = eval(j, k, r) / denominator;
        }
    }
    (at, g, bt)
}

/// One Winograd convolution: its geometry, tile sizes and 2-D transforms on the device.
pub struct Winograd<B: Backend> {
    geo: ConvGeometry,
    /// Input tiles: im2col with an a x a kernel, stride m, the convolution's padding.
    tiles: ConvGeometry,
    /// Output tiles: an m x m kernel with stride m over the output planes.
    out_tiles: ConvGeometry,
    /// `Bt`, a x a (row-major), for the input tiles.
    bt: Vec<f32>,
    /// `At`, m x a, for the output tiles.
    at: Vec<f32>,
    /// `G (x) G`, a*a x r*r.
    filter_t: B::Storage,
    /// Values allowed in the largest buffer of a chunk (the backend's plan; tests shrink it).
    budget: usize,
}

impl<B: Backend> Winograd<B> {
    /// Output tiles of m x m (`tensor::winograd::output_tile` says which m apply), chunks of at
    /// most `budget` values in the largest buffer.
    pub fn new(backend: &B, geo: &ConvGeometry, m: usize, budget: usize) -> Result<Self> {
        let r = geo.window.kernel.0;
        let a = m + r - 1;
        let (at, g, bt) = transforms(m, r);
        let [at, g, bt] = [at, g, bt].map(|p| p.into_iter().map(|v| v as f32).collect::<Vec<f32>>());
        let tiles = ConvGeometry::new(
            geo.n,
            geo.c_in,
            geo.h,
            geo.w,
            geo.c_out,
            Window::new((a, a), (m, m), geo.window.padding),
        )?;
        let out_tiles =
            ConvGeometry::new(geo.n, geo.c_out, geo.out_h, geo.out_w, 1, Window::square(m, m, 0))?;
        debug_assert_eq!((tiles.out_h, tiles.out_w), (out_tiles.out_h, out_tiles.out_w));
        Ok(Winograd {
            geo: *geo,
            tiles,
            out_tiles,
            bt,
            at,
            filter_t: backend.from_slice(&kronecker(&g, a, r))?,
            budget,
        })
    }

    /// Points of the transformed domain (a * a).
    fn points(&self) -> usize {
        self.tiles.window.kernel.0 * self.tiles.window.kernel.1
    }

    /// Images per chunk, and the lengths of the input tiles' buffer and the products' buffer.
    fn chunking(&self) -> (usize, usize, usize) {
        let (pts, tiles) = (self.points(), self.tiles.col_cols());
        let (c, o) = (self.geo.c_in, self.geo.c_out);
        let per_image = pts * c.max(o) * tiles;
        let chunk = (self.budget / per_image.max(1)).clamp(1, self.geo.n.max(1));
        let tile_buf = chunk * tiles * pts * c;
        (chunk, tile_buf, chunk * tiles * pts * o)
    }

    /// The weights [O, C, r, r] in the points' domain: `U [a*a][O][C]`.
    pub fn filter(&self, w: &Tensor<B>) -> Result<B::Storage> {
        let backend = w.backend();
        let (pts, oc, rr) =
            (self.points(), self.geo.c_out * self.geo.c_in, self.geo.col_rows() / self.geo.c_in);
        let mut u = backend.uninit(pts * oc)?;
        // U (a*a x O*C) = (G (x) G) (a*a x r*r) * W^T (r*r x O*C)
        backend.gemm(&Gemm::conv(false, true, pts, oc, rr), &self.filter_t, w.storage(), &mut u)?;
        Ok(u)
    }

    /// `y = conv(x, w)` (no bias) given `u = filter(w)`, and the input tiles V when the batch
    /// was one chunk: the backward pass reuses them instead of transforming x again.
    pub fn forward(&self, x: &Tensor<B>, u: &B::Storage) -> Result<(Tensor<B>, Option<B::Storage>)> {
        let backend = x.backend().clone();
        let g = &self.geo;
        let (pts, o, c) = (self.points(), g.c_out, g.c_in);
        let mut y = Tensor::uninit(&backend, [g.n, o, g.out_h, g.out_w])?;
        let (chunk, tile_len, point_len) = self.chunking();
        let mut buf_a = backend.uninit(tile_len)?;
        let mut products = backend.uninit(point_len)?;
        for first in (0..g.n).step_by(chunk) {
            let count = chunk.min(g.n - first);
            let cols = count * self.tiles.col_cols();
            backend.winograd_tiles(x.storage(), &self.tiles, first, count, &self.bt, &mut buf_a)?;
            // M_xi (O x X) = U_xi (O x C) * V_xi (C x X), for every point xi
            let per_point = Gemm {
                batch: pts,
                a_stride: o * c,
                b_stride: c * cols,
                c_stride: o * cols,
                ..Gemm::conv(false, false, o, cols, c)
            };
            backend.gemm(&per_point, u, &buf_a, &mut products)?;
            backend.winograd_untile(&products, &self.out_tiles, first, count, &self.at, y.storage_mut()?)?;
        }
        Ok((y, (chunk >= g.n).then_some(buf_a)))
    }

    /// Gradients of the input and of the weight (each only if wanted), as the adjoint of
    /// `forward`: dU = sum over tiles of dM V^T, then dW = (G (x) G)^T dU; dV = U^T dM, then
    /// the input tiles' gradients are summed back into dx by col2im. `kept` is what `forward`
    /// returned besides y.
    pub fn backward(
        &self,
        x: &Tensor<B>,
        u: &B::Storage,
        kept: Option<&B::Storage>,
        dy: &Tensor<B>,
        want_dx: bool,
        want_dw: bool,
    ) -> Result<ConvGrads<B>> {
        let backend = x.backend().clone();
        let g = &self.geo;
        let (pts, o, c) = (self.points(), g.c_out, g.c_in);
        let (kh, kw) = g.window.kernel;
        let mut dx = if want_dx { Some(Tensor::uninit(&backend, [g.n, c, g.h, g.w])?) } else { None };
        let mut du = if want_dw { Some(backend.uninit(pts * o * c)?) } else { None };
        let (chunk, tile_len, point_len) = self.chunking();
        let mut buf_a = backend.uninit(tile_len)?;
        let mut dm = backend.uninit(point_len)?;
        for first in (0..g.n).step_by(chunk) {
            let count = chunk.min(g.n - first);
            let cols = count * self.tiles.col_cols();
            backend.winograd_untile_backward(
                dy.storage(),
                &self.out_tiles,
                first,
                count,
                &self.at,
                &mut dm,
            )?;
            if let Some(du) = du.as_mut() {
                // dU_xi (O x C) += dM_xi (O x X) * V_xi^T (X x C), V kept by the forward pass
                // (one chunk) or recomputed (several: keeping them all would cost the memory
                // that chunking saves).
                let v = match kept {
                    Some(v) => v,
                    None => {
                        backend.winograd_tiles(
                            x.storage(),
                            &self.tiles,
                            first,
                            count,
                            &self.bt,
                            &mut buf_a,
                        )?;
                        &buf_a
                    }
                };
                let per_point = Gemm {
                    batch: pts,
                    a_stride: o * cols,
                    b_stride: c * cols,
                    c_stride: o * c,
                    beta: if first == 0 { 0.0 } else { 1.0 },
                    ..Gemm::conv(false, true, o, c, cols)
                };
                backend.gemm(&per_point, &dm, v, du)?;
            }
            if let Some(dx) = dx.as_mut() {
                // dV_xi (C x X) = U_xi^T (C x O) * dM_xi (O x X)
                let per_point = Gemm {
                    batch: pts,
                    a_stride: o * c,
                    b_stride: o * cols,
                    c_stride: c * cols,
                    ..Gemm::conv(true, false, c, cols, o)
                };
                backend.gemm(&per_point, u, &dm, &mut buf_a)?;
                backend.winograd_tiles_backward(
                    &buf_a,
                    &self.tiles,
                    first,
                    count,
                    &self.bt,
                    dx.storage_mut()?,
                )?;
            }
        }
        let dw = match du {
            Some(du) => {
                // dW (O*C x r*r) = dU^T (O*C x a*a) * (G (x) G) (a*a x r*r)
                let mut dw = Tensor::uninit(&backend, [o, c, kh, kw])?;
                backend.gemm(
                    &Gemm::conv(true, false, o * c, kh * kw, pts),
                    &du,
                    &self.filter_t,
                    dw.storage_mut()?,
                )?;
                Some(dw)
            }
            None => None,
        };
        Ok((dx, dw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Every transform used reproduces 1-D correlation exactly (f64) on random data.
    #[test]
    fn transforms_compute_correlation() {
        let mut rng = StdRng::seed_from_u64(5);
        for (m, r) in [(2, 2), (2, 3), (3, 3), (4, 3), (2, 5), (3, 2), (4, 2), (2, 4), (3, 4)] {
            let a = m + r - 1;
            let (at, g, bt) = transforms(m, r);
            let d: Vec<f64> = (0..a).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let w: Vec<f64> = (0..r).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let gw: Vec<f64> = (0..a).map(|j| (0..r).map(|k| g[j * r + k] * w[k]).sum()).collect();
            let btd: Vec<f64> = (0..a).map(|j| (0..a).map(|t| bt[j * a + t] * d[t]).sum()).collect();
            for i in 0..m {
                let fast: f64 = (0..a).map(|j| at[i * a + j] * gw[j] * btd[j]).sum();
                let direct: f64 = (0..r).map(|k| d[i + k] * w[k]).sum();
                assert!((fast - direct).abs() < 1e-12, "F({m}, {r}) output {i}: {fast} vs {direct}");
            }
        }
    }

    /// Chunks of 1 and 2 images (of 3): the forward writes each chunk's images and the weight
    /// gradient sums over chunks, matching the single-chunk im2col path.
    #[test]
    fn chunked_matches_im2col() {
        use crate::ops::{conv2d_with, ConvAlgo};
        use autograd::Var;
        use tensor::Cpu;
        let mut rng = StdRng::seed_from_u64(8);
        let (n, c, h, w, o) = (3, 4, 8, 8, 5);
        let mut random = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
        let (xs, ws, dys) = (random(n * c * h * w), random(o * c * 9), random(n * o * h * w));
        let x = Tensor::from_slice(&Cpu, [n, c, h, w], &xs).unwrap();
        let wt = Tensor::from_slice(&Cpu, [o, c, 3, 3], &ws).unwrap();
        let dy = Tensor::from_slice(&Cpu, [n, o, h, w], &dys).unwrap();
        let (xv, wv) = (Var::parameter(x.clone()), Var::parameter(wt.clone()));
        let y = conv2d_with(&xv, &wv, None, (1, 1), (1, 1), ConvAlgo::Im2col).unwrap();
        y.backward_with(dy.clone()).unwrap();
        let want = [
            y.value().to_vec().unwrap(),
            xv.grad().unwrap().to_vec().unwrap(),
            wv.grad().unwrap().to_vec().unwrap(),
        ];
        let geo = ConvGeometry::new(n, c, h, w, o, Window::square(3, 1, 1)).unwrap();
        let m = tensor::winograd::output_tile(&geo).unwrap();
        let mut wino = Winograd::new(&Cpu, &geo, m, 8 << 20).unwrap();
        let per_image = wino.points() * c.max(o) * wino.tiles.col_cols();
        for images in [1, 2] {
            wino.budget = images * per_image;
            assert_eq!(wino.chunking().0, images);
            let u = wino.filter(&wt).unwrap();
            let (y, kept) = wino.forward(&x, &u).unwrap();
            assert!(kept.is_none(), "several chunks keep no tiles");
            let (dx, dw) = wino.backward(&x, &u, kept.as_ref(), &dy, true, true).unwrap();
            for (what, (got, want)) in
                ["y", "dx", "dw"].iter().zip([y, dx.unwrap(), dw.unwrap()].iter().zip(&want))
            {
                let got = got.to_vec().unwrap();
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (j, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!((g - w).abs() <= 2e-5 * scale, "chunks of {images}: {what}[{j}] {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn tile_choice() {
        use tensor::winograd::output_tile;
        let geo = |hw: usize, k: usize, s: usize, p: usize| {
            ConvGeometry::new(2, 3, hw, hw, 4, Window::square(k, s, p)).unwrap()
        };
        assert_eq!(output_tile(&geo(12, 3, 1, 1)), Some(4));
        assert_eq!(output_tile(&geo(6, 3, 1, 1)), Some(3));
        assert_eq!(output_tile(&geo(3, 3, 1, 1)), Some(3));
        assert_eq!(output_tile(&geo(26, 5, 1, 2)), Some(2));
        assert_eq!(output_tile(&geo(14, 3, 1, 1)), Some(2));
        // 7 outputs: no tile divides them; stride 2; 1x1; a 5x5 on a 3x3 output (tile of 7).
        assert_eq!(output_tile(&geo(7, 3, 1, 1)), None);
        assert_eq!(output_tile(&geo(12, 3, 2, 1)), None);
        assert_eq!(output_tile(&geo(12, 1, 1, 0)), None);
        assert_eq!(output_tile(&geo(3, 5, 1, 2)), None);
    }
}
