//! Every GPU kernel against its CPU reference on random inputs of odd sizes. Skipped, saying
//! why, when no GPU works. Element-wise, pooling and loss kernels agree to a relative 1e-5;
//! GEMM and convolution to 1e-4 (the GPU sums in another order and may fuse multiply-adds).
mod common;
use common::*;
use tensor::{AdamStep, Backend, ConvGeometry, Cpu, Gemm, PoolGeometry, SgdStep, Window};

const TIGHT: f32 = 1e-5;
const GEMM_TOL: f32 = 1e-4;

fn close(what: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths");
    let scale = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        assert!(
            (a - b).abs() <= tol * a.abs().max(b.abs()) + tol * 1e-2 * scale,
            "{what}[{i}]: cpu {a} vs gpu {b}"
        );
    }
}

/// A TF32 product (10-bit mantissas in) against the CPU's FP32: within 1e-3 of the output's
/// norm (tests/parity_large.rs).
fn within_tf32_norm(what: &str, cpu: &[f32], gpu: &[f32]) {
    let (mut diff2, mut norm2) = (0.0f64, 0.0f64);
    for (x, y) in cpu.iter().zip(gpu) {
        diff2 += ((x - y) as f64).powi(2);
        norm2 += (*x as f64).powi(2);
    }
    let error = (diff2 / norm2).sqrt();
    assert!(error <= 1e-3, "{what}: error {error:.2e} of the norm");
}

/// Uploads host data to both backends.
struct Pair<G: Backend> {
    gpu: G,
}

impl<G: Backend> Pair<G> {
    fn up(&self, data: &[f32]) -> (tensor::cpu::CpuBuffer, G::Storage) {
        (Cpu.from_slice(data).unwrap(), self.gpu.from_slice(data).unwrap())
    }
    fn down(&self, s: &G::Storage) -> Vec<f32> {
        self.gpu.to_vec(s).unwrap()
    }
}

fn with_gpu(test: &str, f: impl FnOnce(Pair<cuda::Cuda>)) {
    match gpu() {
        Some(g) => f(Pair { gpu: g.clone() }),
        None => skip_gpu(test),
    }
}

#[test]
fn gemm_every_transpose_batch_and_sum() {
    with_gpu("gemm_every_transpose_batch_and_sum", |p| {
        let mut r = rng(40);
        for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
            for &(m, n, k, batch, sum) in &[
                (1, 1, 1, 1, false),
                (67, 45, 33, 1, false),
                (13, 130, 70, 3, false),
                (29, 17, 101, 4, true),
                (64, 64, 0, 1, false),
            ] {
                let g = Gemm {
                    batch,
                    a_offset: 3,
                    a_stride: m * k + 5,
                    b_offset: 7,
                    b_stride: k * n + 1,
                    c_offset: 2,
                    c_stride: if sum { 0 } else { m * n + 3 },
                    alpha: 0.75,
                    beta: 0.5,
                    ..Gemm::new(ta, tb, m, n, k)
                };
                let (la, lb, lc) = g.required_lengths().unwrap();
                let (a, ga) = p.up(&random(&mut r, la));
                let (b, gb) = p.up(&random(&mut r, lb));
                let (mut c, mut gc) = p.up(&random(&mut r, lc));
                Cpu.gemm(&g, &a, &b, &mut c).unwrap();
                p.gpu.gemm(&g, &ga, &gb, &mut gc).unwrap();
                close(
                    &format!("gemm {ta} {tb} {m}x{n}x{k} batch {batch} sum {sum}"),
                    &c,
                    &p.down(&gc),
                    GEMM_TOL,
                );
            }
        }
    });
}

/// `gemm_epilogue` on the GPU's `*_epilogue` kernels (and the composed path for a transposed
/// layout) against the CPU's composition: chunk products stored as NCHW with bias and ReLU, one
/// long enough to be split, per-image products with a bias, in both precisions.
#[test]
fn gemm_epilogue_bias_relu_and_layout() {
    with_gpu("gemm_epilogue_bias_relu_and_layout", |p| {
        let mut r = rng(41);
        for precision in [cuda::Precision::Fp32, cuda::Precision::Tf32] {
            let gpu = p.gpu.clone().with_precision(precision);
            // (transposed A, m, n, k, batch, block, relu, bias)
            for &(ta, m, n, k, batch, block, relu, with_bias) in &[
                (false, 96, 4 * 676, 2400, 1, 676, true, true),
                (false, 10, 3 * 25, 3456, 1, 25, true, true),
                (false, 64, 2 * 36, 20, 1, 36, false, true),
                (false, 96, 2916, 96, 3, 0, true, true),
                (false, 33, 45, 17, 2, 0, false, true),
                (false, 7, 9, 5, 1, 0, true, false),
                (true, 12, 2 * 9, 30, 1, 9, true, true),
            ] {
                let g = Gemm {
                    batch,
                    b_stride: if batch > 1 { k * n } else { 0 },
                    c_offset: if block > 0 { 3 * m * block } else { 0 },
                    c_stride: if batch > 1 { m * n } else { 0 },
                    ..Gemm::conv(ta, false, m, n, k)
                };
                let (la, lb, lc) = g.required_lengths().unwrap();
                let (a, ga) = p.up(&random(&mut r, la));
                let (b, gb) = p.up(&random(&mut r, lb));
                let (bias, gbias) = p.up(&random(&mut r, m));
                let (mut c, mut gc) = p.up(&random(&mut r, lc));
                let cpu_epi = tensor::Epilogue { bias: with_bias.then_some(&bias), relu, block, mask: None };
                let gpu_epi = tensor::Epilogue { bias: with_bias.then_some(&gbias), relu, block, mask: None };
                Cpu.gemm_epilogue(&g, &a, &b, &mut c, &cpu_epi).unwrap();
                gpu.gemm_epilogue(&g, &ga, &gb, &mut gc, &gpu_epi).unwrap();
                let what =
                    format!("gemm_epilogue {precision:?} ta {ta} {m}x{n}x{k} batch {batch} block {block}");
                let got = p.down(&gc);
                if precision == cuda::Precision::Fp32 {
                    close(&what, &c, &got, GEMM_TOL);
                } else {
                    // The values outside C untouched.
                    within_tf32_norm(&what, &c, &got);
                    close(&what, &c[..g.c_offset], &got[..g.c_offset], 0.0);
                }
            }
        }
    });
}

/// `gemm_rows_epilogue` on the GPU (one `*_epilogue` product per four outputs, each output's
/// rows stored in its own buffer with its own bias and ReLU) against the CPU's composition: two,
/// four and five outputs (two launches), a product long enough to be split, both precisions
/// (TF32 within 1e-3 of the output's norm, as `gemm_epilogue_bias_relu_and_layout`).
#[test]
fn gemm_rows_epilogue_parts() {
    with_gpu("gemm_rows_epilogue_parts", |p| {
        let mut r = rng(43);
        for precision in [cuda::Precision::Fp32, cuda::Precision::Tf32] {
            let gpu = p.gpu.clone().with_precision(precision);
            // (rows of each output, images, P, k)
            for (rows, count, block, k) in [
                (vec![64, 96], 4, 144, 192),
                (vec![16, 24, 32, 8], 2, 36, 832),
                (vec![3, 5, 7, 9, 11], 2, 9, 4000),
            ] {
                let (m, n) = (rows.iter().sum(), count * block);
                let g = Gemm::conv(false, false, m, n, k);
                let (a, ga) = p.up(&random(&mut r, m * k));
                let (b, gb) = p.up(&random(&mut r, k * n));
                // Every other output with a bias, the second without ReLU; each stored after
                // `o * n` values of its buffer, which stay untouched.
                let biases: Vec<_> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &o)| (i % 2 == 0).then(|| p.up(&random(&mut r, o))))
                    .collect();
                let mut outs: Vec<_> = rows.iter().map(|&o| p.up(&random(&mut r, 2 * o * n))).collect();
                let mut cpu_outs: Vec<_> = outs
                    .iter_mut()
                    .zip(&rows)
                    .zip(&biases)
                    .enumerate()
                    .map(|(i, (((c, _), &o), bias))| tensor::RowsOut {
                        rows: o,
                        c,
                        c_offset: o * n,
                        epilogue: tensor::Epilogue {
                            bias: bias.as_ref().map(|b| &b.0),
                            relu: i != 1,
                            block,
                            mask: None,
                        },
                    })
                    .collect();
                Cpu.gemm_rows_epilogue(&g, &a, &b, &mut cpu_outs).unwrap();
                let mut gpu_outs: Vec<_> = outs
                    .iter_mut()
                    .zip(&rows)
                    .zip(&biases)
                    .enumerate()
                    .map(|(i, (((_, gc), &o), bias))| tensor::RowsOut {
                        rows: o,
                        c: gc,
                        c_offset: o * n,
                        epilogue: tensor::Epilogue {
                            bias: bias.as_ref().map(|b| &b.1),
                            relu: i != 1,
                            block,
                            mask: None,
                        },
                    })
                    .collect();
                gpu.gemm_rows_epilogue(&g, &ga, &gb, &mut gpu_outs).unwrap();
                for (i, ((c, gc), &o)) in outs.iter().zip(&rows).enumerate() {
                    let what = format!("gemm_rows_epilogue {precision:?} output {i} of {rows:?}, k {k}");
                    let got = p.down(gc);
                    close(&what, &c[..o * n], &got[..o * n], 0.0);
                    if precision == cuda::Precision::Fp32 {
                        close(&what, c, &got, GEMM_TOL);
                    } else {
                        within_tf32_norm(&what, c, &got);
                    }
                }
            }
        }
    });
}

/// `bias_relu_backward_rows` on the GPU (channel_sums writing the masked gradient channel by
/// channel, in parts and not) against the CPU's composition: the rows, the untouched rest, the
/// bias gradient; with and without it.
#[test]
fn bias_relu_backward_rows_parity() {
    with_gpu("bias_relu_backward_rows_parity", |p| {
        let mut r = rng(44);
        // (outer, channels, inner, row): NiN's and GoogLeNet's shapes (one part and several), an
        // odd plane (the float-at-a-time path).
        for &(outer, channels, inner, row) in &[(128, 96, 36, 0), (128, 16, 144, 48), (3, 5, 9, 2)] {
            let len = outer * channels * inner;
            let (y, gy) = p.up(&random(&mut r, len));
            let (dy, gdy) = p.up(&random(&mut r, len));
            let total = (row + channels + 1) * outer * inner;
            for with_bias in [true, false] {
                let (mut dz, mut gdz) = p.up(&random(&mut r, total));
                let (mut db, mut gdb) = p.up(&random(&mut r, channels));
                let cpu_db = with_bias.then_some(&mut db);
                Cpu.bias_relu_backward_rows(&y, &dy, &mut dz, row, cpu_db, outer, channels, inner).unwrap();
                let gpu_db = with_bias.then_some(&mut gdb);
                p.gpu
                    .bias_relu_backward_rows(&gy, &gdy, &mut gdz, row, gpu_db, outer, channels, inner)
                    .unwrap();
                let what = format!("bias_relu_backward_rows {outer}x{channels}x{inner} from row {row}");
                close(&what, &dz, &p.down(&gdz), 0.0);
                if with_bias {
                    close(&what, &db, &p.down(&gdb), 1e-5);
                }
            }
        }
    });
}

#[test]
fn im2col_and_col2im() {
    with_gpu("im2col_and_col2im", |p| {
        let mut r = rng(41);
        for &(n, c, h, w, k, s, pad) in &[
            (3, 3, 7, 9, (3, 3), (1, 1), (1, 1)),
            (2, 4, 8, 7, (3, 2), (2, 1), (1, 2)),
            (2, 3, 9, 9, (2, 2), (3, 3), (0, 0)),
            (3, 2, 11, 6, (5, 3), (2, 2), (2, 1)),
        ] {
            let geo = ConvGeometry::new(n, c, h, w, 4, Window::new(k, s, pad)).unwrap();
            let (first, count) = (1, n - 1);
            let (x, gx) = p.up(&random(&mut r, n * c * h * w));
            let len = count * geo.col_rows() * geo.col_cols();
            let (mut cols, mut gcols) = p.up(&vec![0.0; len]);
            Cpu.im2col(&x, &geo, first, count, &mut cols).unwrap();
            p.gpu.im2col(&gx, &geo, first, count, &mut gcols).unwrap();
            close("im2col", &cols, &p.down(&gcols), 0.0);
            let (d, gd) = p.up(&random(&mut r, len));
            let (mut dx, mut gdx) = p.up(&random(&mut r, n * c * h * w));
            Cpu.col2im(&d, &geo, first, count, &mut dx).unwrap();
            p.gpu.col2im(&gd, &geo, first, count, &mut gdx).unwrap();
            close("col2im", &dx, &p.down(&gdx), TIGHT);
        }
    });
}

#[test]
fn bias_add_and_grad() {
    with_gpu("bias_add_and_grad", |p| {
        let mut r = rng(42);
        for &(o, c, i) in &[(3, 5, 49), (7, 10, 1), (2, 96, 729)] {
            let (b, gb) = p.up(&random(&mut r, c));
            let (mut y, mut gy) = p.up(&random(&mut r, o * c * i));
            Cpu.add_bias(&mut y, &b, o, c, i).unwrap();
            p.gpu.add_bias(&mut gy, &gb, o, c, i).unwrap();
            close("add_bias", &y, &p.down(&gy), TIGHT);
            let (mut db, mut gdb) = p.up(&vec![0.0; c]);
            Cpu.bias_grad(&y, o, c, i, &mut db).unwrap();
            p.gpu.bias_grad(&gy, o, c, i, &mut gdb).unwrap();
            close("bias_grad", &db, &p.down(&gdb), TIGHT);
        }
    });
}

#[test]
fn pooling_forward_and_backward() {
    with_gpu("pooling_forward_and_backward", |p| {
        let mut r = rng(43);
        for &(n, c, h, w, win) in &[
            (2, 3, 7, 9, Window::square(3, 2, 1)),
            (3, 4, 8, 6, Window::new((2, 3), (1, 2), (1, 1))),
            (2, 3, 9, 9, Window::square(2, 3, 0)),
            (2, 5, 13, 13, Window::square(3, 1, 1)),
        ] {
            let geo = PoolGeometry::new(n, c, h, w, win).unwrap();
            let (ni, no) = (n * c * h * w, n * c * geo.out_h * geo.out_w);
            let (x, gx) = p.up(&distinct(&mut r, ni));
            let (dy, gdy) = p.up(&random(&mut r, no));
            let (mut y, mut gy) = p.up(&vec![0.0; no]);
            let (mut dx, mut gdx) = p.up(&vec![0.0; ni]);
            let (mut arg, mut garg) = p.up(&vec![0.0; no]);
            Cpu.max_pool2d_forward(&x, &geo, &mut y, &mut arg).unwrap();
            p.gpu.max_pool2d_forward(&gx, &geo, &mut gy, &mut garg).unwrap();
            close("max_pool2d_forward", &y, &p.down(&gy), 0.0);
            close("max_pool2d_forward argmax", &arg, &p.down(&garg), 0.0);
            Cpu.max_pool2d_backward(&arg, &dy, &geo, &mut dx).unwrap();
            p.gpu.max_pool2d_backward(&garg, &gdy, &geo, &mut gdx).unwrap();
            close("max_pool2d_backward", &dx, &p.down(&gdx), TIGHT);
            Cpu.avg_pool2d_forward(&x, &geo, &mut y).unwrap();
            p.gpu.avg_pool2d_forward(&gx, &geo, &mut gy).unwrap();
            close("avg_pool2d_forward", &y, &p.down(&gy), TIGHT);
            Cpu.avg_pool2d_backward(&dy, &geo, &mut dx).unwrap();
            p.gpu.avg_pool2d_backward(&gdy, &geo, &mut gdx).unwrap();
            close("avg_pool2d_backward", &dx, &p.down(&gdx), TIGHT);
            let (planes, len) = (n * c, h * w);
            let (mut g, mut gg) = p.up(&vec![0.0; planes]);
            Cpu.global_avg_pool_forward(&x, planes, len, &mut g).unwrap();
            p.gpu.global_avg_pool_forward(&gx, planes, len, &mut gg).unwrap();
            close("global_avg_pool_forward", &g, &p.down(&gg), TIGHT);
            Cpu.global_avg_pool_backward(&g, planes, len, &mut dx).unwrap();
            p.gpu.global_avg_pool_backward(&gg, planes, len, &mut gdx).unwrap();
            close("global_avg_pool_backward", &dx, &p.down(&gdx), TIGHT);
        }
    });
}

#[test]
fn activation_dropout_and_elementwise() {
    with_gpu("activation_dropout_and_elementwise", |p| {
        let mut r = rng(44);
        let n = 70_001;
        let (x, gx) = p.up(&random(&mut r, n));
        let (dy, gdy) = p.up(&random(&mut r, n));
        let (mut y, mut gy) = p.up(&vec![0.0; n]);
        let (mut m, mut gm) = p.up(&vec![0.0; n]);
        Cpu.relu_forward(&x, &mut y).unwrap();
        p.gpu.relu_forward(&gx, &mut gy).unwrap();
        close("relu_forward", &y, &p.down(&gy), 0.0);
        Cpu.relu_backward(&y, &dy, &mut m).unwrap();
        p.gpu.relu_backward(&gy, &gdy, &mut gm).unwrap();
        close("relu_backward", &m, &p.down(&gm), 0.0);
        Cpu.dropout_forward(&x, 0.3, 99, &mut y, &mut m).unwrap();
        p.gpu.dropout_forward(&gx, 0.3, 99, &mut gy, &mut gm).unwrap();
        close("dropout mask (same counter-based stream)", &m, &p.down(&gm), 0.0);
        close("dropout_forward", &y, &p.down(&gy), 0.0);
        Cpu.mul(&x, &dy, &mut y).unwrap();
        p.gpu.mul(&gx, &gdy, &mut gy).unwrap();
        close("mul", &y, &p.down(&gy), 0.0);
        Cpu.axpy(0.25, &x, &mut y).unwrap();
        p.gpu.axpy(0.25, &gx, &mut gy).unwrap();
        close("axpy", &y, &p.down(&gy), TIGHT);
        Cpu.scale(&mut y, -1.5).unwrap();
        p.gpu.scale(&mut gy, -1.5).unwrap();
        close("scale", &y, &p.down(&gy), TIGHT);
        Cpu.fill(&mut y, 0.125).unwrap();
        p.gpu.fill(&mut gy, 0.125).unwrap();
        close("fill", &y, &p.down(&gy), 0.0);
        let (mut s, mut gs) = p.up(&[0.0]);
        Cpu.sum(&x, &mut s).unwrap();
        p.gpu.sum(&gx, &mut gs).unwrap();
        close("sum", &s, &p.down(&gs), TIGHT);
        let (src, gsrc) = p.up(&random(&mut r, 3 * 5 * 35));
        let (mut dst, mut gdst) = p.up(&random(&mut r, 3 * 9 * 35));
        Cpu.copy_channels(&src, 5, 1, &mut dst, 9, 4, 3, 3, 35).unwrap();
        p.gpu.copy_channels(&gsrc, 5, 1, &mut gdst, 9, 4, 3, 3, 35).unwrap();
        close("copy_channels", &dst, &p.down(&gdst), 0.0);
        let (t, gt) = p.up(&random(&mut r, 4 + 5 * 7 * 9));
        let (mut td, mut gtd) = p.up(&random(&mut r, 3 + 5 * 7 * 9));
        Cpu.transpose_blocks(&t, 4, 5, 7, 9, &mut td, 3).unwrap();
        p.gpu.transpose_blocks(&gt, 4, 5, 7, 9, &mut gtd, 3).unwrap();
        close("transpose_blocks", &td, &p.down(&gtd), 0.0);
    });
}

#[test]
fn softmax_cross_entropy() {
    with_gpu("softmax_cross_entropy", |p| {
        let mut r = rng(45);
        for &(n, classes) in &[(1, 10), (7, 10), (300, 13)] {
            let logits: Vec<f32> = random(&mut r, n * classes).iter().map(|v| v * 8.0).collect();
            let y: Vec<usize> = (0..n).map(|i| (i * 7) % classes).collect();
            let (l, gl) = p.up(&logits);
            let (mut loss, mut gloss) = p.up(&[0.0]);
            let (mut cor, mut gcor) = p.up(&[0.0]);
            Cpu.softmax_cross_entropy_forward(&l, &y, n, classes, &mut loss, &mut cor).unwrap();
            p.gpu.softmax_cross_entropy_forward(&gl, &y, n, classes, &mut gloss, &mut gcor).unwrap();
            close("cross-entropy loss", &loss, &p.down(&gloss), TIGHT);
            close("correct count", &cor, &p.down(&gcor), 0.0);
            let (d, gd) = p.up(&[0.7]);
            let (mut dl, mut gdl) = p.up(&vec![0.0; n * classes]);
            Cpu.softmax_cross_entropy_backward(&l, &y, n, classes, &d, &mut dl).unwrap();
            p.gpu.softmax_cross_entropy_backward(&gl, &y, n, classes, &gd, &mut gdl).unwrap();
            close("cross-entropy backward", &dl, &p.down(&gdl), TIGHT);
        }
    });
}

#[test]
fn optimizer_steps() {
    with_gpu("optimizer_steps", |p| {
        let mut r = rng(46);
        let n = 1_001;
        let (g, gg) = p.up(&random(&mut r, n));
        for hp in [
            SgdStep { lr: 0.1, momentum: 0.0, weight_decay: 0.01 },
            SgdStep { lr: 0.05, momentum: 0.9, weight_decay: 0.0 },
        ] {
            let (mut w, mut gw) = p.up(&random(&mut r, n));
            let (mut v, mut gv) = p.up(&random(&mut r, n));
            for _ in 0..3 {
                Cpu.sgd_step(&mut w, &g, Some(&mut v), &hp).unwrap();
                p.gpu.sgd_step(&mut gw, &gg, Some(&mut gv), &hp).unwrap();
            }
            close("sgd param", &w, &p.down(&gw), TIGHT);
            close("sgd velocity", &v, &p.down(&gv), TIGHT);
        }
        let (mut w, mut gw) = p.up(&random(&mut r, n));
        let (mut m, mut gm) = p.up(&vec![0.0; n]);
        let (mut v, mut gv) = p.up(&vec![0.0; n]);
        for step in 1..=3 {
            let hp = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, step };
            Cpu.adam_step(&mut w, &g, &mut m, &mut v, &hp).unwrap();
            p.gpu.adam_step(&mut gw, &gg, &mut gm, &mut gv, &hp).unwrap();
        }
        close("adam param", &w, &p.down(&gw), TIGHT);
        close("adam m", &m, &p.down(&gm), TIGHT);
        close("adam v", &v, &p.down(&gv), TIGHT);
    });
}

/// The multi-tensor steps (one launch for every parameter) against the CPU's one-by-one steps:
/// parameters of several chunks, of one value, and between.
#[test]
fn multi_tensor_optimizer_steps() {
    with_gpu("multi_tensor_optimizer_steps", |p| {
        let mut r = rng(47);
        let lens = [3 * 4096 + 5, 1, 777];
        let up = |r: &mut _| -> Vec<_> { lens.iter().map(|&n| p.up(&random(r, n))).collect() };
        let (mut w, g, mut s1, mut s2) = (up(&mut r), up(&mut r), up(&mut r), up(&mut r));
        for (i, s) in s2.iter_mut().enumerate() {
            // Adam's second moment is never negative.
            let abs: Vec<f32> = p.down(&s.1).iter().map(|v| v.abs()).collect();
            *s = p.up(&abs);
            assert_eq!(abs.len(), lens[i]);
        }
        for hp in [
            SgdStep { lr: 0.1, momentum: 0.0, weight_decay: 0.01 },
            SgdStep { lr: 0.05, momentum: 0.9, weight_decay: 1e-4 },
        ] {
            for k in 0..lens.len() {
                Cpu.sgd_step(&mut w[k].0, &g[k].0, Some(&mut s1[k].0), &hp).unwrap();
            }
            let mut slots: Vec<_> = w
                .iter_mut()
                .zip(&g)
                .zip(s1.iter_mut())
                .map(|((w, g), v)| tensor::SgdSlot { param: &mut w.1, grad: &g.1, velocity: Some(&mut v.1) })
                .collect();
            p.gpu.sgd_steps(&mut slots, &hp).unwrap();
        }
        let hp = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, step: 2 };
        for k in 0..lens.len() {
            Cpu.adam_step(&mut w[k].0, &g[k].0, &mut s1[k].0, &mut s2[k].0, &hp).unwrap();
        }
        let mut slots: Vec<_> = w
            .iter_mut()
            .zip(&g)
            .zip(s1.iter_mut().zip(s2.iter_mut()))
            .map(|((w, g), (m, v))| tensor::AdamSlot {
                param: &mut w.1,
                grad: &g.1,
                m: &mut m.1,
                v: &mut v.1,
            })
            .collect();
        p.gpu.adam_steps(&mut slots, &hp).unwrap();
        for k in 0..lens.len() {
            close("multi-tensor param", &w[k].0, &p.down(&w[k].1), TIGHT);
            close("multi-tensor first state", &s1[k].0, &p.down(&s1[k].1), TIGHT);
            close("multi-tensor second state", &s2[k].0, &p.down(&s2[k].1), TIGHT);
        }
    });
}
