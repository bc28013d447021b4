//! Every GPU kernel against the CPU backend at the sizes real training gives it: each matrix
//! product of NiN@224 and GoogLeNet@96 at batch 128 (forward, input gradient, batch-summed weight
//! gradient) at 16-byte-aligned offsets (the kernels' vector paths) and at odd ones; each
//! convolution larger than 1x1 through the backend's convolution products (the implicit TF32
//! kernels); im2col,
//! col2im, pooling, bias and the loss at NiN's batch-128 sizes; a product of more than 65,535
//! batch items and element-wise kernels past 2^24 values (both beyond one grid); and two
//! identical NiN steps on the GPU. Skipped, saying why, without a GPU; a failure under
//! `CONVNET_REQUIRE_GPU=1`.
//!
//! Tolerances, against the CPU result:
//! - copies, max pooling, ReLU, dropout and the optimizers: bit for bit (`kernels/README.md`);
//! - sums in another order (col2im, average pooling, bias, loss, `sum`): relative 1e-5;
//! - products: `|gpu - cpu| <= 32 u |a_r| |b_j| + 4 u |beta c|` per element, u = 2^-24, with
//!   `|a_r|`, `|b_j|` the Euclidean norms of the row and column summed over (over the whole batch
//!   when it is summed): a bound on `sum |a||b|` by Cauchy-Schwarz, and both sides' rounding is
//!   a few u of that. A wrong or missing term is far outside it.
//! - products on TF32 tensor cores (convolutions' products, the GPU's default precision): the
//!   error relative to the output's norm at most 1e-3 (TF32 keeps 10 mantissa bits: ~4e-4 on
//!   random data), and per element at most `2^-10 sum |a b| + 32 u (sum |a b| + |beta c|)` (both
//!   operands rounded to nearest TF32, then FP32 sums): nothing can exceed it, and an element
//!   computed from the wrong fragment does.
mod common;
use autograd::Var;
use common::shapes::{distinct_products, googlenet, nin, pytorch_convolutions, Layer};
use layers::{ops, Mode, Module, Optimizer, Sgd, WeightInit};
use models::ModelKind;
use tensor::{AdamStep, Backend, Cpu, Epilogue, Gemm, PoolGeometry, SgdStep, Tensor, Window};

const BATCH: usize = 128;
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Fast reproducible values in [-1, 1) (xorshift64*): the products here read ~10^9 of them.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn down<G: Backend>(gpu: &G, s: &G::Storage) -> Vec<f32> {
    gpu.to_vec(s).unwrap()
}

/// `diff <= bound`, false for a NaN difference.
fn within(diff: f64, bound: f64) -> bool {
    diff <= bound
}

/// `got` equals `want` bit for bit (NaNs included).
fn exact(what: &str, want: &[f32], got: &[f32]) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    let bad: Vec<usize> =
        (0..want.len()).filter(|&i| want[i].to_bits() != got[i].to_bits()).take(5).collect();
    let count = (0..want.len()).filter(|&i| want[i].to_bits() != got[i].to_bits()).count();
    assert!(
        bad.is_empty(),
        "{what}: {count} of {} values differ, e.g. {:?}",
        want.len(),
        bad.iter().map(|&i| (i, want[i], got[i])).collect::<Vec<_>>()
    );
}

/// `|got - want| <= tol * max(|want|, |got|)` everywhere (plus a floor of tol times the largest).
fn near(what: &str, want: &[f32], got: &[f32], tol: f64) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let bad = (0..want.len())
        .filter(|&i| {
            let (w, g) = (want[i] as f64, got[i] as f64);
            !within((w - g).abs(), tol * w.abs().max(g.abs()) + tol * 1e-3 * scale)
        })
        .collect::<Vec<_>>();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} values outside {tol}, e.g. {:?}",
        bad.len(),
        want.len(),
        bad.iter().take(5).map(|&i| (i, want[i], got[i])).collect::<Vec<_>>()
    );
}

/// The product's operands with offsets and strides that keep every item 16-byte aligned, or
/// with odd ones (the kernels' scalar paths).
fn placed(g: &Gemm, aligned: bool) -> Gemm {
    let (pad, off) = if aligned { (4, [4, 8, 12]) } else { (1, [3, 5, 7]) };
    let grow = |stride: usize| if stride == 0 { 0 } else { (stride + pad).next_multiple_of(pad) };
    Gemm {
        a_offset: off[0],
        b_offset: off[1],
        c_offset: off[2],
        a_stride: grow(g.a_stride),
        b_stride: grow(g.b_stride),
        c_stride: grow(g.c_stride),
        alpha: if aligned { 1.0 } else { 0.75 },
        beta: if aligned { 0.0 } else { 0.5 },
        ..*g
    }
}

/// Per output element, the rounding bound of the header: squared norms of op(A)'s rows and
/// op(B)'s columns per batch item (each item once; a shared operand once).
fn check_product(
    g: &Gemm,
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    want: &[f32],
    got: &[f32],
) -> Result<(), String> {
    let (m, n, k) = (g.m, g.n, g.k);
    let items = |stride: usize| if stride == 0 { 1 } else { g.batch };
    let row_sq: Vec<Vec<f64>> = (0..items(g.a_stride))
        .map(|i| {
            let base = g.a_offset + i * g.a_stride;
            (0..m)
                .map(|r| {
                    (0..k)
                        .map(|p| a[base + if g.trans_a { p * m + r } else { r * k + p }] as f64)
                        .map(|v| v * v)
                        .sum()
                })
                .collect()
        })
        .collect();
    let col_sq: Vec<Vec<f64>> = (0..items(g.b_stride))
        .map(|i| {
            let base = g.b_offset + i * g.b_stride;
            let mut sq = vec![0.0f64; n];
            for p in 0..k {
                for (j, s) in sq.iter_mut().enumerate() {
                    let v = b[base + if g.trans_b { j * k + p } else { p * n + j }] as f64;
                    *s += v * v;
                }
            }
            sq
        })
        .collect();
    let summed = g.c_stride == 0 && g.batch > 1;
    // The squared norms an output of item `i` sums over: one item's, or all of them when summed.
    let sq = |norms: &Vec<Vec<f64>>, i: usize, x: usize, shared: bool| -> f64 {
        if summed {
            if shared {
                norms[0][x] * g.batch as f64
            } else {
                norms.iter().map(|v| v[x]).sum()
            }
        } else {
            norms[if shared { 0 } else { i }][x]
        }
    };
    let (mut bad, mut first) = (0usize, Vec::new());
    for i in 0..if summed { 1 } else { g.batch } {
        for r in 0..m {
            let ra = sq(&row_sq, i, r, g.a_stride == 0).sqrt();
            for j in 0..n {
                let at = g.c_offset + i * g.c_stride + r * n + j;
                let rb = sq(&col_sq, i, j, g.b_stride == 0).sqrt();
                let tol =
                    32.0 * U * g.alpha.abs() as f64 * ra * rb + 4.0 * U * (g.beta * c0[at]).abs() as f64;
                if !within((want[at] as f64 - got[at] as f64).abs(), tol + 1e-30) {
                    bad += 1;
                    if first.len() < 3 {
                        first.push((i, r, j, want[at], got[at], tol));
                    }
                }
            }
        }
    }
    if bad > 0 {
        return Err(format!(
            "{bad} outputs outside the bound, e.g. (item, row, col, cpu, gpu, bound) {first:?}"
        ));
    }
    // Nothing before C was written.
    if got[..g.c_offset].iter().zip(&c0[..g.c_offset]).any(|(x, y)| x.to_bits() != y.to_bits()) {
        return Err("values before C were written".into());
    }
    Ok(())
}

fn run_product<G: Backend>(gpu: &G, what: &str, g: &Gemm, seed: u64) {
    let (la, lb, lc) = g.required_lengths().unwrap();
    let (a, b, c0) = (values(la, seed), values(lb, seed + 1), values(lc, seed + 2));
    let mut c = Cpu.from_slice(&c0).unwrap();
    Cpu.gemm(g, &Cpu.from_slice(&a).unwrap(), &Cpu.from_slice(&b).unwrap(), &mut c).unwrap();
    let mut gc = gpu.from_slice(&c0).unwrap();
    gpu.gemm(g, &gpu.from_slice(&a).unwrap(), &gpu.from_slice(&b).unwrap(), &mut gc).unwrap();
    if let Err(e) = check_product(g, &a, &b, &c0, &c, &down(gpu, &gc)) {
        panic!("{what}: {e}");
    }
}

fn gemm_at_every_layer_shape<G: Backend>(gpu: &G) {
    for (seed, (name, g)) in distinct_products(BATCH).into_iter().enumerate() {
        for aligned in [true, false] {
            let g = placed(&g, aligned);
            let what = format!("{name} {}x{}x{} batch {} aligned {aligned}", g.m, g.n, g.k, g.batch);
            run_product(gpu, &what, &g, 1000 * seed as u64);
        }
    }
}

/// A product allowed TF32 (a convolution's), on the GPU at its default precision, against the
/// CPU's FP32 product under the TF32 bounds of the header.
fn run_tf32_product<G: Backend>(gpu: &G, what: &str, g: &Gemm, seed: u64) {
    let g = Gemm { tf32: true, ..*g };
    let (la, lb, lc) = g.required_lengths().unwrap();
    let (a, b, c0) = (values(la, seed), values(lb, seed + 1), values(lc, seed + 2));
    let mut c = Cpu.from_slice(&c0).unwrap();
    Cpu.gemm(&g, &Cpu.from_slice(&a).unwrap(), &Cpu.from_slice(&b).unwrap(), &mut c).unwrap();
    let mut gc = gpu.from_slice(&c0).unwrap();
    gpu.gemm(&g, &gpu.from_slice(&a).unwrap(), &gpu.from_slice(&b).unwrap(), &mut gc).unwrap();
    let got = down(gpu, &gc);
    // sum |a b| per output, from the product of the absolute values.
    let abs = |v: &[f32]| Cpu.from_slice(&v.iter().map(|x| x.abs()).collect::<Vec<_>>()).unwrap();
    let mut mag = Cpu.zeros(lc).unwrap();
    let gm = Gemm { alpha: g.alpha.abs(), beta: 0.0, ..g };
    Cpu.gemm(&gm, &abs(&a), &abs(&b), &mut mag).unwrap();
    // Each item's C, one after another (output i * m * n + j of the comparison).
    let items = if g.c_stride == 0 { 1 } else { g.batch };
    let at = |i: usize| g.c_offset + i * g.c_stride..g.c_offset + i * g.c_stride + g.m * g.n;
    let gather = |v: &[f32]| (0..items).flat_map(|i| v[at(i)].to_vec()).collect::<Vec<f32>>();
    let beta_c: Vec<f32> = gather(&c0).iter().map(|v| (g.beta * v).abs()).collect();
    tf32_close(what, &gather(&c), &gather(&got), &gather(&mag), &beta_c);
    exact(&format!("{what}: before C"), &c0[..g.c_offset], &got[..g.c_offset]);
}

/// Every product in TF32, at aligned and odd offsets (16-byte and 4-byte copies into the ring).
fn gemm_tf32_at_every_layer_shape<G: Backend>(gpu: &G) {
    for (seed, (name, g)) in distinct_products(BATCH).into_iter().enumerate() {
        for aligned in [true, false] {
            let g = placed(&g, aligned);
            let what = format!("TF32 {name} {}x{}x{} batch {} aligned {aligned}", g.m, g.n, g.k, g.batch);
            run_tf32_product(gpu, &what, &g, 5000 + 1000 * seed as u64);
        }
    }
}

/// `got` against `want` (the CPU's FP32) under the TF32 bounds of the header, `mag` holding
/// `sum |a b|` per output and `beta_c` its `|beta c|` (empty: none).
fn tf32_close(what: &str, want: &[f32], got: &[f32], mag: &[f32], beta_c: &[f32]) {
    let (mut diff2, mut norm2, mut bad, mut first) = (0.0f64, 0.0f64, 0usize, Vec::new());
    for (j, ((&w, &g), &m)) in want.iter().zip(got).zip(mag).enumerate() {
        let (w, g, m) = (w as f64, g as f64, m as f64);
        let bound = m / 1024.0 + 32.0 * U * (m + beta_c.get(j).map_or(0.0, |&v| v as f64));
        diff2 += (w - g) * (w - g);
        norm2 += w * w;
        if !within((w - g).abs(), bound) {
            bad += 1;
            if first.len() < 3 {
                first.push((j, w, g, bound));
            }
        }
    }
    assert!(
        bad == 0,
        "{what}: {bad} outputs outside the TF32 bound, e.g. (output, cpu, gpu, bound) {first:?}"
    );
    let relative = (diff2 / norm2.max(1e-300)).sqrt();
    assert!(within(relative, 1e-3), "{what}: error {relative:.2e} of the output's norm, over 1e-3");
}

/// Every convolution of NiN@224 and GoogLeNet@96 with a kernel larger than 1x1, on 8 images, through
/// the backend's convolution products (the GPU's implicit TF32 kernels, kernels/gemm.cu's Gather;
/// the input gradient implicit where `plan::implicit_input_grad` says, else folded by col2im)
/// against the CPU's, which unfold columns: the forward (into images 2.. of a larger output),
/// the weight gradient added to a previous one (beta 1), the input gradient (into images 2..).
fn implicit_convolutions_at_every_layer_shape<G: Backend>(gpu: &G) {
    let (n, first) = (8, 2);
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let up = |v: &[f32]| (Cpu.from_slice(v).unwrap(), gpu.from_slice(v).unwrap());
    for (seed, layer) in nin().iter().chain(googlenet().iter()).filter(|l| l.k > 1).enumerate() {
        let geo = layer.geo(n);
        let seed = 9000 + 10 * seed as u64;
        let (image, out) = (geo.c_in * geo.h * geo.w, geo.c_out * geo.col_cols());
        let x = values((first + n) * image, seed);
        let w = values(geo.c_out * geo.col_rows(), seed + 1);
        let dy = values(n * out, seed + 2);
        let bias = values(geo.c_out, seed + 3);
        let dw0 = values(w.len(), seed + 4);
        let ((cx, gx), (cw, gw), (cdy, gdy), (cb, gb)) = (up(&x), up(&w), up(&dy), up(&bias));
        let what = |product: &str| format!("{} {product} ({n} images)", layer.name);
        // sum |a b| of each output, from the absolute values (with the bias's, the dw's added).
        let (ax, aw, ady) = (
            Cpu.from_slice(&abs(&x)).unwrap(),
            Cpu.from_slice(&abs(&w)).unwrap(),
            Cpu.from_slice(&abs(&dy)).unwrap(),
        );

        let mut cy = Cpu.zeros((first + n) * out).unwrap();
        Cpu.conv_forward(
            &cw,
            &cx,
            &geo,
            first,
            n,
            &mut cy,
            &Epilogue { bias: Some(&cb), relu: false, block: 0, mask: None },
        )
        .unwrap();
        let mut gy = gpu.zeros((first + n) * out).unwrap();
        gpu.conv_forward(
            &gw,
            &gx,
            &geo,
            first,
            n,
            &mut gy,
            &Epilogue { bias: Some(&gb), relu: false, block: 0, mask: None },
        )
        .unwrap();
        let mut mag = Cpu.zeros((first + n) * out).unwrap();
        let ab = Cpu.from_slice(&abs(&bias)).unwrap();
        Cpu.conv_forward(
            &aw,
            &ax,
            &geo,
            first,
            n,
            &mut mag,
            &Epilogue { bias: Some(&ab), relu: false, block: 0, mask: None },
        )
        .unwrap();
        let (cy, gy) = (Cpu.to_vec(&cy).unwrap(), down(gpu, &gy));
        exact(&what("forward: images before"), &cy[..first * out], &gy[..first * out]);
        tf32_close(
            &what("forward"),
            &cy[first * out..],
            &gy[first * out..],
            &Cpu.to_vec(&mag).unwrap()[first * out..],
            &[],
        );

        let (mut cdw, mut gdw) = up(&dw0);
        Cpu.conv_weight_grad(&cdy, &cx, &geo, first, n, 1.0, &mut cdw).unwrap();
        gpu.conv_weight_grad(&gdy, &gx, &geo, first, n, 1.0, &mut gdw).unwrap();
        let mut mag = Cpu.from_slice(&abs(&dw0)).unwrap();
        Cpu.conv_weight_grad(&ady, &ax, &geo, first, n, 1.0, &mut mag).unwrap();
        tf32_close(
            &what("weight gradient"),
            &Cpu.to_vec(&cdw).unwrap(),
            &down(gpu, &gdw),
            &Cpu.to_vec(&mag).unwrap(),
            &[],
        );

        let mut cdx = Cpu.zeros((first + n) * image).unwrap();
        Cpu.conv_input_grad(&cw, &cdy, &geo, first, n, &mut cdx).unwrap();
        let mut gdx = gpu.zeros((first + n) * image).unwrap();
        gpu.conv_input_grad(&gw, &gdy, &geo, first, n, &mut gdx).unwrap();
        let mut mag = Cpu.zeros((first + n) * image).unwrap();
        Cpu.conv_input_grad(&aw, &ady, &geo, first, n, &mut mag).unwrap();
        let (cdx, gdx) = (Cpu.to_vec(&cdx).unwrap(), down(gpu, &gdx));
        exact(&what("input gradient: images before"), &cdx[..first * image], &gdx[..first * image]);
        tf32_close(
            &what("input gradient"),
            &cdx[first * image..],
            &gdx[first * image..],
            &Cpu.to_vec(&mag).unwrap()[first * image..],
            &[],
        );
    }
}

/// More items than a grid's 65,535 z-blocks, one product each and summed into one C.
fn gemm_past_the_grid_batch_limit<G: Backend>(gpu: &G) {
    let batch = 70_001;
    for (ta, tb) in [(false, false), (true, true)] {
        let g = Gemm { batch, a_stride: 6, b_stride: 10, c_stride: 15, ..Gemm::new(ta, tb, 3, 5, 2) };
        run_product(gpu, &format!("batch {batch} {ta} {tb}"), &g, 7);
        run_product(gpu, &format!("batch {batch} summed {ta} {tb}"), &Gemm { c_stride: 0, ..g }, 8);
    }
}

/// Split products (small outputs from long sums, cut into parts added in a fixed order) give the
/// same bits every time, in FP32 and in TF32.
fn split_products_are_deterministic<G: Backend>(gpu: &G) {
    let wgrads = distinct_products(BATCH).into_iter().filter(|(name, _)| name.ends_with("wgrad")).take(12);
    for (name, g) in
        wgrads.flat_map(|(n, g)| [(n.clone(), g), (format!("TF32 {n}"), Gemm { tf32: true, ..g })])
    {
        let (la, lb, lc) = g.required_lengths().unwrap();
        let (a, b) = (gpu.from_slice(&values(la, 1)).unwrap(), gpu.from_slice(&values(lb, 2)).unwrap());
        let run = || {
            let mut c = gpu.zeros(lc).unwrap();
            gpu.gemm(&g, &a, &b, &mut c).unwrap();
            down(gpu, &c)
        };
        exact(&format!("{name} run twice"), &run(), &run());
    }
}

fn unfolding_at_nin_sizes<G: Backend>(gpu: &G) {
    for (i, layer) in nin().iter().filter(|l| l.k > 1).enumerate() {
        let geo = layer.geo(BATCH);
        let x = values(BATCH * layer.c_in * layer.hw * layer.hw, 20 + i as u64);
        let (cx, gx) = (Cpu.from_slice(&x).unwrap(), gpu.from_slice(&x).unwrap());
        // The whole batch (tens of millions of columns: past one grid), and a chunk at its end.
        for (first, count) in [(0, BATCH), (BATCH - 5, 5)] {
            let what = format!("{} images {first}..{}", layer.name, first + count);
            let len = count * geo.col_rows() * geo.col_cols();
            let (mut cols, mut gcols) = (Cpu.zeros(len).unwrap(), gpu.zeros(len).unwrap());
            Cpu.im2col(&cx, &geo, first, count, &mut cols).unwrap();
            gpu.im2col(&gx, &geo, first, count, &mut gcols).unwrap();
            exact(&format!("im2col {what}"), &cols, &down(gpu, &gcols));
            let d = values(len, 30 + i as u64);
            let (mut dx, mut gdx) = (Cpu.from_slice(&x).unwrap(), gpu.from_slice(&x).unwrap());
            Cpu.col2im(&Cpu.from_slice(&d).unwrap(), &geo, first, count, &mut dx).unwrap();
            gpu.col2im(&gpu.from_slice(&d).unwrap(), &geo, first, count, &mut gdx).unwrap();
            near(&format!("col2im {what}"), &dx, &down(gpu, &gdx), 1e-5);
        }
    }
}

fn pooling_at_nin_sizes<G: Backend>(gpu: &G) {
    // NiN's three 3x3/2 pools and GoogLeNet's padded halving and size-keeping ones, batch 128.
    for (c, hw, win) in [
        (96, 54, Window::square(3, 2, 0)),
        (256, 26, Window::square(3, 2, 0)),
        (384, 12, Window::square(3, 2, 0)),
        (64, 48, Window::square(3, 2, 1)),
        (192, 12, Window::square(3, 1, 1)),
    ] {
        let g = PoolGeometry::new(BATCH, c, hw, hw, win).unwrap();
        let what = format!("{c}x{hw}x{hw} {win:?}");
        let (ni, no) = (BATCH * c * hw * hw, BATCH * c * g.out_h * g.out_w);
        // Few distinct values: ties, whose winner must be the same cell on both.
        let x: Vec<f32> = values(ni, c as u64).iter().map(|v| (v * 4.0).round()).collect();
        let (cx, gx) = (Cpu.from_slice(&x).unwrap(), gpu.from_slice(&x).unwrap());
        let (mut y, mut arg) = (Cpu.zeros(no).unwrap(), Cpu.zeros(no).unwrap());
        let (mut gy, mut garg) = (gpu.zeros(no).unwrap(), gpu.zeros(no).unwrap());
        Cpu.max_pool2d_forward(&cx, &g, &mut y, &mut arg).unwrap();
        gpu.max_pool2d_forward(&gx, &g, &mut gy, &mut garg).unwrap();
        exact(&format!("max pool {what}"), &y, &down(gpu, &gy));
        exact(&format!("max pool arg-max {what}"), &arg, &down(gpu, &garg));
        let dy = values(no, 3);
        let (cdy, gdy) = (Cpu.from_slice(&dy).unwrap(), gpu.from_slice(&dy).unwrap());
        let (mut dx, mut gdx) = (Cpu.zeros(ni).unwrap(), gpu.zeros(ni).unwrap());
        Cpu.max_pool2d_backward(&arg, &cdy, &g, &mut dx).unwrap();
        gpu.max_pool2d_backward(&garg, &gdy, &g, &mut gdx).unwrap();
        exact(&format!("max pool backward {what}"), &dx, &down(gpu, &gdx));
        Cpu.avg_pool2d_forward(&cx, &g, &mut y).unwrap();
        gpu.avg_pool2d_forward(&gx, &g, &mut gy).unwrap();
        near(&format!("avg pool {what}"), &y, &down(gpu, &gy), 1e-5);
        Cpu.avg_pool2d_backward(&cdy, &g, &mut dx).unwrap();
        gpu.avg_pool2d_backward(&gdy, &g, &mut gdx).unwrap();
        near(&format!("avg pool backward {what}"), &dx, &down(gpu, &gdx), 1e-5);
    }
}

fn bias_and_loss_at_nin_sizes<G: Backend>(gpu: &G) {
    for layer in nin() {
        let (c, inner) = (layer.c_out, layer.out_hw() * layer.out_hw());
        let len = BATCH * c * inner;
        let what = format!("{} output", layer.name);
        let (y0, bias, dy) = (values(len, 40), values(c, 41), values(len, 42));
        let (mut y, mut gy) = (Cpu.from_slice(&y0).unwrap(), gpu.from_slice(&y0).unwrap());
        let (cb, gb) = (Cpu.from_slice(&bias).unwrap(), gpu.from_slice(&bias).unwrap());
        Cpu.bias_relu(&mut y, Some(&cb), BATCH, c, inner).unwrap();
        gpu.bias_relu(&mut gy, Some(&gb), BATCH, c, inner).unwrap();
        near(&format!("bias_relu {what}"), &y, &down(gpu, &gy), 1e-6);
        let (cdy, gdy) = (Cpu.from_slice(&dy).unwrap(), gpu.from_slice(&dy).unwrap());
        let (mut dz, mut gdz) = (Cpu.zeros(len).unwrap(), gpu.zeros(len).unwrap());
        let (mut db, mut gdb) = (Cpu.zeros(c).unwrap(), gpu.zeros(c).unwrap());
        Cpu.bias_relu_backward(&y, &cdy, &mut dz, Some(&mut db), BATCH, c, inner).unwrap();
        gpu.bias_relu_backward(&gy, &gdy, &mut gdz, Some(&mut gdb), BATCH, c, inner).unwrap();
        exact(&format!("bias_relu_backward mask {what}"), &dz, &down(gpu, &gdz));
        near(&format!("bias_relu_backward bias {what}"), &db, &down(gpu, &gdb), 1e-5);
    }
    // The loss at batch 128 and at 70,001 rows (past one block's stride).
    for n in [BATCH, 70_001] {
        let logits = values(n * 10, 50);
        let labels: Vec<usize> = (0..n).map(|i| (i * 7) % 10).collect();
        let (cl, gl) = (Cpu.from_slice(&logits).unwrap(), gpu.from_slice(&logits).unwrap());
        let (clab, glab) = (&labels, &labels);
        let (mut loss, mut hits) = (Cpu.zeros(1).unwrap(), Cpu.zeros(1).unwrap());
        let (mut gloss, mut ghits) = (gpu.zeros(1).unwrap(), gpu.zeros(1).unwrap());
        Cpu.softmax_cross_entropy_forward(&cl, clab, n, 10, &mut loss, &mut hits).unwrap();
        gpu.softmax_cross_entropy_forward(&gl, glab, n, 10, &mut gloss, &mut ghits).unwrap();
        near(&format!("loss, {n} rows"), &loss, &down(gpu, &gloss), 1e-5);
        exact(&format!("correct, {n} rows"), &hits, &down(gpu, &ghits));
        let (mut d, mut gd) = (Cpu.zeros(n * 10).unwrap(), gpu.zeros(n * 10).unwrap());
        let (one, gone) = (Cpu.from_slice(&[1.0]).unwrap(), gpu.from_slice(&[1.0]).unwrap());
        Cpu.softmax_cross_entropy_backward(&cl, clab, n, 10, &one, &mut d).unwrap();
        gpu.softmax_cross_entropy_backward(&gl, glab, n, 10, &gone, &mut gd).unwrap();
        near(&format!("loss backward, {n} rows"), &d, &down(gpu, &gd), 1e-5);
    }
}

/// Element-wise kernels on 2^24 + 4099 values: more than one grid of 65,535 blocks of 256
/// threads, so every thread's grid-stride loop wraps.
fn elementwise_past_one_grid<G: Backend>(gpu: &G) {
    let n = (1 << 24) + 4099;
    let (x, y0) = (values(n, 60), values(n, 61));
    let (cx, gx) = (Cpu.from_slice(&x).unwrap(), gpu.from_slice(&x).unwrap());
    let up = |v: &[f32]| (Cpu.from_slice(v).unwrap(), gpu.from_slice(v).unwrap());
    let (mut cy, mut gy) = up(&y0);
    Cpu.axpy(0.3, &cx, &mut cy).unwrap();
    gpu.axpy(0.3, &gx, &mut gy).unwrap();
    exact("axpy", &cy, &down(gpu, &gy));
    Cpu.mul(&cx, &Cpu.copy(&cx).unwrap(), &mut cy).unwrap();
    gpu.mul(&gx, &gpu.copy(&gx).unwrap(), &mut gy).unwrap();
    exact("mul", &cy, &down(gpu, &gy));
    Cpu.scale(&mut cy, -1.5).unwrap();
    gpu.scale(&mut gy, -1.5).unwrap();
    exact("scale", &cy, &down(gpu, &gy));
    Cpu.relu_forward(&cx, &mut cy).unwrap();
    gpu.relu_forward(&gx, &mut gy).unwrap();
    exact("relu_forward", &cy, &down(gpu, &gy));
    let (mut dx, mut gdx) = up(&y0);
    Cpu.relu_backward(&cy, &cx, &mut dx).unwrap();
    gpu.relu_backward(&gy, &gx, &mut gdx).unwrap();
    exact("relu_backward", &dx, &down(gpu, &gdx));
    let (mut mask, mut gmask) = up(&y0);
    Cpu.dropout_forward(&cx, 0.5, 99, &mut cy, &mut mask).unwrap();
    gpu.dropout_forward(&gx, 0.5, 99, &mut gy, &mut gmask).unwrap();
    exact("dropout", &cy, &down(gpu, &gy));
    exact("dropout mask", &mask, &down(gpu, &gmask));
    let (mut s, mut gs) = (Cpu.zeros(1).unwrap(), gpu.zeros(1).unwrap());
    Cpu.sum(&cx, &mut s).unwrap();
    gpu.sum(&gx, &mut gs).unwrap();
    near("sum", &s, &down(gpu, &gs), 1e-5);
    Cpu.fill(&mut cy, 0.25).unwrap();
    gpu.fill(&mut gy, 0.25).unwrap();
    exact("fill", &cy, &down(gpu, &gy));
    // Layout copies of the same size: 3 x 7 blocks, and channels 1..4 of 5.
    let block = n / 21;
    let (mut t, mut gt) = (Cpu.zeros(21 * block).unwrap(), gpu.zeros(21 * block).unwrap());
    Cpu.transpose_blocks(&cx, 3, 3, 7, block, &mut t, 0).unwrap();
    gpu.transpose_blocks(&gx, 3, 3, 7, block, &mut gt, 0).unwrap();
    exact("transpose_blocks", &t, &down(gpu, &gt));
    let plane = n / 5;
    let (mut cc, mut gc) = up(&y0);
    Cpu.copy_channels(&cx, 5, 1, &mut cc, 5, 0, 3, 1, plane).unwrap();
    gpu.copy_channels(&gx, 5, 1, &mut gc, 5, 0, 3, 1, plane).unwrap();
    exact("copy_channels", &cc, &down(gpu, &gc));
    // Optimizer steps over the same count.
    let sgd = SgdStep { lr: 0.05, momentum: 0.9, weight_decay: 1e-4 };
    let adam = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, step: 3 };
    let ((mut p, mut gp), (mut v, mut gv), (mut m, mut gm)) = (up(&y0), up(&x), up(&y0));
    Cpu.sgd_step(&mut p, &cx, Some(&mut v), &sgd).unwrap();
    gpu.sgd_step(&mut gp, &gx, Some(&mut gv), &sgd).unwrap();
    exact("sgd_step", &p, &down(gpu, &gp));
    let (mut sq, mut gsq) = up(&x.iter().map(|v| v * v).collect::<Vec<_>>());
    Cpu.adam_step(&mut p, &cx, &mut m, &mut sq, &adam).unwrap();
    gpu.adam_step(&mut gp, &gx, &mut gm, &mut gsq, &adam).unwrap();
    exact("adam_step", &p, &down(gpu, &gp));
    exact("adam_step m", &m, &down(gpu, &gm));
}

/// Weights after one NiN@224 SGD step at batch 16 (dropout on), from the same initial weights.
fn nin_step<G: Backend>(gpu: &G) -> Vec<Vec<f32>> {
    let net = models::build(ModelKind::Nin, gpu, WeightInit::XavierUniform, 3).unwrap();
    let mut opt = Sgd::new(net.parameters(), 0.1, 0.9, 1e-4);
    let mut mode = Mode::train(4, 0);
    let images: Vec<f32> = values(16 * 224 * 224, 70).iter().map(|v| v.abs()).collect();
    let labels: Vec<usize> = (0..16).map(|i| i % 10).collect();
    let x = Var::constant(Tensor::from_slice(gpu, [16, 1, 224, 224], &images).unwrap());
    let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
    opt.zero_grad();
    loss.backward().unwrap();
    opt.step().unwrap();
    net.parameters().iter().map(|(_, p)| p.value().to_vec().unwrap()).collect()
}

/// The GPU is deterministic: no atomics, fixed reduction orders (`kernels/README.md`).
fn two_identical_nin_steps_give_identical_weights<G: Backend>(gpu: &G) {
    let (first, second) = (nin_step(gpu), nin_step(gpu));
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        exact(&format!("parameter {i} after one step"), a, b);
    }
}

/// The shapes themselves, without a GPU: the listed layers hold exactly the models' convolution
/// weights (NiN's two 1x1 layers of a block share one listed shape; Inception's three 1x1
/// convolutions of one input are one stacked layer), and PyTorch's lists every one of them in
/// the parameters' order, so a change to a model shows here.
#[test]
fn layer_shapes_follow_the_models() {
    for (model, layers) in [(ModelKind::Nin, nin()), (ModelKind::GoogLeNet, googlenet())] {
        let net = models::build(model, &Cpu, WeightInit::XavierUniform, 1).unwrap();
        let mut weights: Vec<(usize, usize, usize)> = net
            .parameters()
            .iter()
            .filter_map(|(_, p)| match *p.shape().dims() {
                [o, c, k, _] => Some((o, c, k)),
                _ => None,
            })
            .collect();
        let shapes = |layers: &[Layer]| -> Vec<(usize, usize, usize)> {
            layers.iter().map(|l| (l.c_out, l.c_in, l.k)).collect()
        };
        assert_eq!(weights, shapes(&pytorch_convolutions(model)), "{model}: PyTorch's convolutions");
        let total = |w: &[(usize, usize, usize)]| w.iter().map(|&(o, c, k)| o * c * k * k).sum::<usize>();
        let listed = shapes(&layers);
        if model == ModelKind::Nin {
            weights.dedup();
            assert_eq!(weights, listed, "NiN's convolutions");
        } else {
            assert_eq!(total(&weights), total(&listed), "GoogLeNet's convolution weights");
        }
    }
}

/// Each check on the GPU, the CPU backend its reference; skipped (or failed, under
/// `CONVNET_REQUIRE_GPU=1`) without a GPU.
macro_rules! on_the_gpu {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            match gpu() {
                Some(g) => super::$name(g),
                None => skip_gpu(stringify!($name)),
            }
        })*
        /// This file's own logic without a GPU: every check with the CPU backend in the GPU's
        /// place (`cargo test --release --test parity_large -- --ignored`; minutes on 2 cores).
        mod on_the_cpu {
            $(#[test]
            #[ignore]
            fn $name() {
                super::super::$name(&tensor::Cpu)
            })*
        }
    };
}

mod cuda {
    on_the_gpu!(
        gemm_at_every_layer_shape,
        gemm_tf32_at_every_layer_shape,
        implicit_convolutions_at_every_layer_shape,
        gemm_past_the_grid_batch_limit,
        split_products_are_deterministic,
        unfolding_at_nin_sizes,
        pooling_at_nin_sizes,
        bias_and_loss_at_nin_sizes,
        elementwise_past_one_grid,
        two_identical_nin_steps_give_identical_weights,
    );
    use super::common::{gpu, skip_gpu};
}

/// The product bound accepts a product computed another way (f64, rounded once) and rejects one
/// with a single term missing or one output off by a part in 10^3.
#[test]
fn the_product_bound_is_tight_enough() {
    let g = placed(
        &Gemm { batch: 3, a_stride: 0, b_stride: 700 * 9, c_stride: 0, ..Gemm::new(true, false, 8, 9, 700) },
        false,
    );
    let (la, lb, lc) = g.required_lengths().unwrap();
    let (a, b, c0) = (values(la, 1), values(lb, 2), values(lc, 3));
    let mut cpu = Cpu.from_slice(&c0).unwrap();
    Cpu.gemm(&g, &Cpu.from_slice(&a).unwrap(), &Cpu.from_slice(&b).unwrap(), &mut cpu).unwrap();
    // The same sums in f64, one term optionally left out.
    let exact_with = |skip: Option<(usize, usize, usize)>| -> Vec<f32> {
        let mut c = c0.clone();
        for r in 0..g.m {
            for j in 0..g.n {
                let mut s = 0.0f64;
                for i in 0..g.batch {
                    for p in 0..g.k {
                        if skip == Some((r, j, p)) && i == 0 {
                            continue;
                        }
                        let av = a[g.a_offset + p * g.m + r] as f64;
                        let bv = b[g.b_offset + i * g.b_stride + p * g.n + j] as f64;
                        s += av * bv;
                    }
                }
                let at = g.c_offset + r * g.n + j;
                c[at] = (g.alpha as f64 * s + g.beta as f64 * c0[at] as f64) as f32;
            }
        }
        c
    };
    check_product(&g, &a, &b, &c0, &cpu, &exact_with(None)).unwrap();
    // The term with the largest product, left out of one output.
    let (r, j) = (2, 5);
    let p = (0..g.k)
        .max_by(|&x, &y| {
            let t = |p: usize| (a[g.a_offset + p * g.m + r] * b[g.b_offset + p * g.n + j]).abs();
            t(x).total_cmp(&t(y))
        })
        .unwrap();
    assert!(
        check_product(&g, &a, &b, &c0, &cpu, &exact_with(Some((r, j, p)))).is_err(),
        "a missing term passed"
    );
    let mut off = cpu.to_vec();
    let at = g.c_offset + 3 * g.n + 4;
    off[at] *= 1.0 + 1e-3;
    assert!(check_product(&g, &a, &b, &c0, &cpu, &off).is_err(), "an output off by 1e-3 passed");
}
