//! Forward values computed by hand, the 1x1 fast path against im2col, and clear errors for
//! wrong input.
mod common;
use autograd::Var;
use common::*;
use layers::ops::{self, ConvAlgo};
use tensor::{Backend, Error, Window};

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
    }
}

/// x = 1..16 as a 4x4 image.
fn counting<B: Backend>(b: &B, sign: f32) -> Var<B> {
    let data: Vec<f32> = (1..=16).map(|v| sign * v as f32).collect();
    Var::constant(tensor(b, &[1, 1, 4, 4], &data))
}

fn conv3x3_by_hand<B: Backend>(b: &B) {
    let x = counting(b, 1.0);
    // All-ones kernel, padding 1: each output is the sum of the 3x3 neighbourhood that lies
    // inside the image.
    // row 0 (image rows 0..1): 1+2+5+6=14, 1+2+3+5+6+7=24, 2+3+4+6+7+8=30, 3+4+7+8=22
    // row 1 (rows 0..2): 14+9+10=33, 24+9+10+11=54, 30+10+11+12=63, 22+11+12=45
    // row 2 (rows 1..3): 5+6+9+10+13+14=57, 5+6+7+9+10+11+13+14+15=90, 6+7+8+10+11+12+14+15+16=99, 7+8+11+12+15+16=69
    // row 3 (rows 2..3): 9+10+13+14=46, 9+10+11+13+14+15=72, 10+11+12+14+15+16=78, 11+12+15+16=54
    let ones = Var::constant(tensor(b, &[1, 1, 3, 3], &[1.0; 9]));
    let bias = Var::constant(tensor(b, &[1], &[0.5]));
    let y = ops::conv2d(&x, &ones, Some(&bias), (1, 1), (1, 1)).unwrap();
    let want = [14., 24., 30., 22., 33., 54., 63., 45., 57., 90., 99., 69., 46., 72., 78., 54.]
        .map(|v: f32| v + 0.5);
    assert_close(&y.value().to_vec().unwrap(), &want, 1e-6);

    // A kernel with one 1 at its top-left corner reads x[i-1][j-1] (cross-correlation, as
    // PyTorch): the image shifted down-right by one, zeros entering from the padding.
    let mut corner = [0.0; 9];
    corner[0] = 1.0;
    let k = Var::constant(tensor(b, &[1, 1, 3, 3], &corner));
    let y = ops::conv2d(&x, &k, None, (1, 1), (1, 1)).unwrap();
    let want = [0., 0., 0., 0., 0., 1., 2., 3., 0., 5., 6., 7., 0., 9., 10., 11.];
    assert_close(&y.value().to_vec().unwrap(), &want, 0.0);

    // Stride 2 keeps outputs (0,0), (0,2), (2,0), (2,2) of the all-ones result.
    let y = ops::conv2d(&x, &ones, None, (2, 2), (1, 1)).unwrap();
    assert_eq!(y.shape().dims(), [1, 1, 2, 2]);
    assert_close(&y.value().to_vec().unwrap(), &[14., 30., 57., 99.], 1e-6);
}

fn max_pool_with_padding_by_hand<B: Backend>(b: &B) {
    // x = -(1..16): every value is negative, so a padded cell counted as 0 would win. 3x3
    // windows, stride 2, padding 1 -> 2x2 output over rows/cols {-1..1, 1..3}:
    // (0,0): {-1,-2,-5,-6} -> -1; (0,1): {-2,-3,-4,-6,-7,-8} -> -2;
    // (1,0): {-5,-6,-9,-10,-13,-14} -> -5; (1,1): {-6,-7,-8,-10,-11,-12,-14,-15,-16} -> -6.
    let y = ops::max_pool2d(&counting(b, -1.0), Window::square(3, 2, 1)).unwrap();
    assert_close(&y.value().to_vec().unwrap(), &[-1., -2., -5., -6.], 0.0);
    // 5x5 input, 2x2 windows, stride 2: floor mode drops the last row and column.
    let x = Var::constant(tensor(b, &[1, 1, 5, 5], &(0..25).map(|v| v as f32).collect::<Vec<_>>()));
    let y = ops::max_pool2d(&x, Window::square(2, 2, 0)).unwrap();
    assert_eq!(y.shape().dims(), [1, 1, 2, 2]);
    assert_close(&y.value().to_vec().unwrap(), &[6., 8., 16., 18.], 0.0);
}

/// Max pooling against a plain scan of every window on inputs full of ties (a few levels, as
/// after a ReLU): the value, and the gradient routed to the window's first maximum in row-major
/// order, with padding, strides and rectangular windows.
fn max_pool_ties_match_a_window_scan<B: Backend>(b: &B) {
    let mut r = rng(61);
    for &(n, c, h, w, win) in &[
        (2, 3, 7, 9, Window::square(3, 2, 1)),
        (1, 2, 8, 6, Window::new((2, 3), (1, 2), (1, 1))),
        (2, 2, 9, 9, Window::square(3, 1, 1)),
        (1, 3, 11, 10, Window::square(3, 2, 0)),
        (1, 1, 5, 13, Window::new((3, 1), (2, 1), (1, 0))),
    ] {
        let len = n * c * h * w;
        let levels: Vec<f32> = random(&mut r, len).iter().map(|v| (v * 2.0).round().max(0.0)).collect();
        let x = Var::constant(tensor(b, &[n, c, h, w], &levels));
        let y = ops::max_pool2d(&x, win).unwrap();
        let [_, _, oh, ow] = y.shape().nchw("y").unwrap();
        let dy: Vec<f32> = random(&mut r, n * c * oh * ow);
        let xp = param(b, &[n, c, h, w], &levels);
        ops::max_pool2d(&xp, win).unwrap().backward_with(tensor(b, &[n, c, oh, ow], &dy)).unwrap();
        let (mut want_y, mut want_dx) = (vec![0.0f32; n * c * oh * ow], vec![0.0f32; len]);
        let ((kh, kw), (sh, sw), (ph, pw)) = (win.kernel, win.stride, win.padding);
        for p in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best: Option<(f32, usize)> = None;
                    for iy in (oy * sh).saturating_sub(ph)..(oy * sh + kh).saturating_sub(ph).min(h) {
                        for ix in (ox * sw).saturating_sub(pw)..(ox * sw + kw).saturating_sub(pw).min(w) {
                            let v = levels[p * h * w + iy * w + ix];
                            if best.is_none_or(|(bv, _)| v > bv) {
                                best = Some((v, iy * w + ix));
                            }
                        }
                    }
                    let (v, at) = best.unwrap();
                    let o = (p * oh + oy) * ow + ox;
                    want_y[o] = v;
                    want_dx[p * h * w + at] += dy[o];
                }
            }
        }
        assert_close(&y.value().to_vec().unwrap(), &want_y, 0.0);
        assert_close(&xp.grad().unwrap().to_vec().unwrap(), &want_dx, 1e-6);
    }
}

fn avg_pool_with_padding_by_hand<B: Backend>(b: &B) {
    // Same windows on x = 1..16; padding counts in the divisor (always 9):
    // (0,0): (1+2+5+6)/9 = 14/9; (0,1): (2+3+4+6+7+8)/9 = 30/9;
    // (1,0): (5+6+9+10+13+14)/9 = 57/9; (1,1): (6+7+8+10+11+12+14+15+16)/9 = 99/9.
    let y = ops::avg_pool2d(&counting(b, 1.0), Window::square(3, 2, 1)).unwrap();
    assert_close(&y.value().to_vec().unwrap(), &[14. / 9., 30. / 9., 57. / 9., 11.], 1e-6);
    // Global average of 1..16 is 8.5.
    let y = ops::global_avg_pool2d(&counting(b, 1.0)).unwrap();
    assert_eq!(y.shape().dims(), [1, 1, 1, 1]);
    assert_close(&y.value().to_vec().unwrap(), &[8.5], 1e-6);
}

fn cross_entropy_of_uniform_logits_is_ln_10<B: Backend>(b: &B) {
    // softmax of equal logits is 1/10 everywhere, so every row's loss is -ln(1/10) = ln 10,
    // whatever the (shared) logit value.
    let logits = Var::constant(tensor(b, &[4, 10], &[2.5; 40]));
    let (loss, _) = ops::cross_entropy(&logits, &[0, 3, 9, 5]).unwrap();
    assert_close(&[loss.value().item().unwrap()], &[10f32.ln()], 1e-6);
    // Huge logits stay finite (log-sum-exp): row [1000, 0, ...] with label 0 has loss ~ 0, and
    // label 1 has loss ~ 1000.
    let mut big = vec![0.0f32; 20];
    big[0] = 1000.0;
    big[10] = 1000.0;
    let (loss, correct) = ops::cross_entropy(&Var::constant(tensor(b, &[2, 10], &big)), &[0, 1]).unwrap();
    assert_close(&[loss.value().item().unwrap()], &[500.0], 1e-5);
    assert_eq!(correct.item().unwrap(), 1.0);
}

/// The direct 1x1 path against im2col: values and every gradient, on a small plane (where Auto
/// would take im2col) and on one large enough for Auto to take the direct path.
fn pointwise_path_matches_im2col<B: Backend>(b: &B) {
    let mut r = rng(11);
    for (h, w) in [(7, 9), (16, 17)] {
        let x = param(b, &[3, 5, h, w], &random(&mut r, 15 * h * w));
        let wt = param(b, &[6, 5, 1, 1], &random(&mut r, 30));
        let bias = param(b, &[6], &random(&mut r, 6));
        let dy = tensor(b, &[3, 6, h, w], &random(&mut r, 18 * h * w));
        let run = |algo| {
            let y = ops::conv2d_with(&x, &wt, Some(&bias), (1, 1), (0, 0), algo).unwrap();
            y.backward_with(dy.clone()).unwrap();
            let grads: Vec<Vec<f32>> =
                [&x, &wt, &bias].iter().map(|v| v.grad().unwrap().to_vec().unwrap()).collect();
            [&x, &wt, &bias].iter().for_each(|v| v.zero_grad());
            (y.value().to_vec().unwrap(), grads)
        };
        let (direct, direct_grads) = run(ConvAlgo::Direct);
        let (im2col, im2col_grads) = run(ConvAlgo::Im2col);
        assert_close(&direct, &im2col, 1e-5);
        for (d, i) in direct_grads.iter().zip(&im2col_grads) {
            assert_close(d, i, 1e-5);
        }
    }
    let x = Var::constant(tensor(b, &[1, 2, 4, 4], &[0.0; 32]));
    let w3 = Var::constant(tensor(b, &[1, 2, 3, 3], &[0.0; 18]));
    let e = ops::conv2d_with(&x, &w3, None, (1, 1), (1, 1), ConvAlgo::Direct).unwrap_err().to_string();
    assert!(e.contains("1x1 kernel") && e.contains("(3, 3)"), "{e}");
}

/// (batch, channels, height, width, out channels, kernel, padding): output tiles of 4, 3 and 2,
/// 2x2, 3x3 and 5x5 kernels, rectangular planes, and padding 0 to 2.
const WINOGRAD_CASES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (2, 5, 12, 8, 7, 3, 1),  // m = 4
    (3, 4, 6, 9, 5, 3, 1),   // m = 3
    (2, 3, 10, 6, 4, 3, 0),  // m = 4, unpadded
    (2, 6, 14, 10, 3, 3, 1), // m = 2
    (2, 4, 8, 6, 5, 5, 2),   // 5x5, m = 2
    (1, 3, 7, 9, 2, 2, 0),   // 2x2: a 6x8 output, m = 2
    (2, 3, 9, 9, 4, 5, 1),   // 5x5 with padding 1: 7x7 output, no tile fits
    (3, 20, 3, 3, 24, 3, 1), // one 5x5 tile per 3x3 plane, past both edges (NiN's conv3 at 67)
];

/// Winograd's output and all three gradients against im2col's, on every backend; a case no
/// tile fits is refused with a message.
fn winograd_matches_im2col<B: Backend>(b: &B) {
    for (i, &(n, c, h, w, o, k, p)) in WINOGRAD_CASES.iter().enumerate() {
        let mut r = rng(40 + i as u64);
        let xs = random(&mut r, n * c * h * w);
        let ws = random(&mut r, o * c * k * k);
        let bs = random(&mut r, o);
        let run = |algo: ConvAlgo| -> tensor::Result<Vec<Vec<f32>>> {
            let (x, wt, bias) =
                (param(b, &[n, c, h, w], &xs), param(b, &[o, c, k, k], &ws), param(b, &[o], &bs));
            let y = ops::conv2d_with(&x, &wt, Some(&bias), (1, 1), (p, p), algo)?;
            let dy = random(&mut rng(99), y.shape().numel());
            y.backward_with(tensor(b, y.shape().dims(), &dy))?;
            Ok(vec![
                y.value().to_vec()?,
                x.grad().unwrap().to_vec()?,
                wt.grad().unwrap().to_vec()?,
                bias.grad().unwrap().to_vec()?,
            ])
        };
        let reference = run(ConvAlgo::Im2col).unwrap();
        let out = (h + 2 * p - k + 1, w + 2 * p - k + 1);
        if [4, 3, 2].iter().all(|m| out.0 % m != 0 || out.1 % m != 0 || m + k - 1 > 6) {
            expect_err(run(ConvAlgo::Winograd), &["Winograd", &format!("output {}x{}", out.0, out.1)]);
            continue;
        }
        let winograd = run(ConvAlgo::Winograd).unwrap();
        for (what, (got, want)) in ["y", "dx", "dw", "dbias"].iter().zip(winograd.iter().zip(&reference)) {
            // f32 transforms: errors relative to the largest value, a few units in the 6th digit.
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 * scale,
                    "case {i} {what}[{j}]: winograd {g} vs im2col {w} (largest {scale})"
                );
            }
        }
    }
}

/// The fused `conv2d_relu` against `relu(conv2d)`: output and every gradient, with and without
/// a bias, on the 1x1 direct path (16x16 plane), im2col (strided) and Winograd (3x3, stride 1,
/// 8+ channels), with enough images for the per-item bias sums.
fn conv2d_relu_matches_relu_of_conv<B: Backend>(b: &B) {
    let cases = [
        (3, 5, 16, 16, 7, 1, 1, 0),
        (4, 3, 9, 11, 5, 3, 2, 1),
        (2, 9, 8, 8, 10, 3, 1, 1),
        (1, 2, 5, 5, 3, 3, 1, 1),
    ];
    for (i, &(n, c, h, w, o, k, s, p)) in cases.iter().enumerate() {
        for with_bias in [true, false] {
            let mut r = rng(70 + i as u64);
            let (xs, ws, bs) =
                (random(&mut r, n * c * h * w), random(&mut r, o * c * k * k), random(&mut r, o));
            let run = |fused: bool| -> tensor::Result<Vec<Vec<f32>>> {
                let (x, wt, bias) =
                    (param(b, &[n, c, h, w], &xs), param(b, &[o, c, k, k], &ws), param(b, &[o], &bs));
                let bias_arg = with_bias.then_some(&bias);
                let y = if fused {
                    ops::conv2d_relu(&x, &wt, bias_arg, (s, s), (p, p))?
                } else {
                    ops::relu(&ops::conv2d(&x, &wt, bias_arg, (s, s), (p, p))?)?
                };
                let dy = random(&mut rng(98), y.shape().numel());
                y.backward_with(tensor(b, y.shape().dims(), &dy))?;
                let mut out =
                    vec![y.value().to_vec()?, x.grad().unwrap().to_vec()?, wt.grad().unwrap().to_vec()?];
                if with_bias {
                    out.push(bias.grad().unwrap().to_vec()?);
                }
                Ok(out)
            };
            let (fused, plain) = (run(true).unwrap(), run(false).unwrap());
            assert!(
                fused[0].contains(&0.0) && fused[0].iter().any(|&v| v > 0.0),
                "case {i}: the ReLU should cut some values"
            );
            for (what, (got, want)) in ["y", "dx", "dw", "dbias"].iter().zip(fused.iter().zip(&plain)) {
                assert_close(got, want, 1e-6);
                assert_eq!(got.len(), want.len(), "case {i} {what}");
            }
        }
    }
}

/// The fused `conv2d_relu_max_pool` against `max_pool2d(relu(conv2d))`: output and every
/// gradient, on the 1x1 direct path (16x16 plane), im2col (strided, padded, odd sizes) and
/// Winograd (3x3, stride 1), under overlapping windows (3x3 stride 2, where one value can win
/// two windows), a padded window, and whole windows of cut values (a bias of -2, so every
/// pooled value of some windows is 0 and their gradient must vanish). The output and input and
/// weight gradients are the same bits (the same sums through the same arg-max); the bias
/// gradient is summed in another order.
fn conv2d_relu_max_pool_matches_the_three_ops<B: Backend>(b: &B) {
    let cases = [
        (3, 5, 16, 16, 7, 1, 1, 0, Window::square(3, 2, 0)),
        (4, 3, 13, 11, 5, 3, 2, 1, Window::square(3, 2, 1)),
        (2, 9, 8, 8, 10, 3, 1, 1, Window::square(2, 2, 0)),
        (2, 2, 9, 9, 3, 5, 1, 2, Window::new((3, 2), (1, 2), (1, 0))),
    ];
    for (i, &(n, c, h, w, o, k, s, p, pool)) in cases.iter().enumerate() {
        let mut r = rng(90 + i as u64);
        let (xs, ws) = (random(&mut r, n * c * h * w), random(&mut r, o * c * k * k));
        // Half the channels biased down far enough that whole windows are cut.
        let bs: Vec<f32> = (0..o).map(|j| if j % 2 == 0 { -2.0 } else { 0.1 * j as f32 }).collect();
        let run = |fused: bool| -> tensor::Result<Vec<Vec<f32>>> {
            let (x, wt, bias) =
                (param(b, &[n, c, h, w], &xs), param(b, &[o, c, k, k], &ws), param(b, &[o], &bs));
            let y = if fused {
                ops::conv2d_relu_max_pool(&x, &wt, Some(&bias), (s, s), (p, p), pool)?
            } else {
                ops::max_pool2d(&ops::relu(&ops::conv2d(&x, &wt, Some(&bias), (s, s), (p, p))?)?, pool)?
            };
            let dy = random(&mut rng(99), y.shape().numel());
            y.backward_with(tensor(b, y.shape().dims(), &dy))?;
            Ok(vec![
                y.value().to_vec()?,
                x.grad().unwrap().to_vec()?,
                wt.grad().unwrap().to_vec()?,
                bias.grad().unwrap().to_vec()?,
            ])
        };
        let (fused, plain) = (run(true).unwrap(), run(false).unwrap());
        assert!(
            fused[0].contains(&0.0) && fused[0].iter().any(|&v| v > 0.0),
            "case {i}: some pooled values should be cut"
        );
        for (what, (got, want)) in ["y", "dx", "dw"].iter().zip(fused.iter().zip(&plain)) {
            assert_eq!(got, want, "case {i} {what}");
        }
        assert_close(&fused[3], &plain[3], 1e-6);
    }
    // The same checks as the convolution's: a pooling window larger than the output is an error.
    let (x, wt) = (param(b, &[1, 1, 4, 4], &[0.5; 16]), param(b, &[1, 1, 3, 3], &[1.0; 9]));
    expect_err(ops::conv2d_relu_max_pool(&x, &wt, None, (1, 1), (0, 0), Window::square(3, 1, 0)), &["3"]);
}

/// `conv2d_relu_chain` against `conv2d_relu` one by one (and `max_pool2d` after the last):
/// outputs, input gradient and every parameter's gradient, for a 3x3 convolution (im2col) then
/// two 1x1 ones on a 16x16 plane (the direct path), with and without the pooling, the first
/// without a bias, on each backend and through the CUDA plans (the recorder: there the second
/// 1x1 convolution stores its input gradient through the first's ReLU mask).
fn conv2d_relu_chain_matches_the_ops_one_by_one<B: Backend>(b: &B) {
    let (n, c, hw) = (2, 3, 16);
    let shapes = [(6, c, 3, 1), (5, 6, 1, 0), (4, 5, 1, 0)];
    let mut r = rng(120);
    let xs = random(&mut r, n * c * hw * hw);
    let ws: Vec<Vec<f32>> = shapes.iter().map(|&(o, i, k, _)| random(&mut r, o * i * k * k)).collect();
    // Biases low enough that the ReLUs cut much of each output.
    let bs: Vec<Vec<f32>> =
        shapes.iter().map(|&(o, ..)| (0..o).map(|j| 0.2 * j as f32 - 0.5).collect()).collect();
    for pool in [None, Some(Window::square(3, 2, 0))] {
        let run = |fused: bool| -> tensor::Result<Vec<Vec<f32>>> {
            let x = param(b, &[n, c, hw, hw], &xs);
            let wts: Vec<Var<B>> =
                shapes.iter().zip(&ws).map(|(&(o, i, k, _), v)| param(b, &[o, i, k, k], v)).collect();
            let biases: Vec<Var<B>> = shapes.iter().zip(&bs).map(|(&(o, ..), v)| param(b, &[o], v)).collect();
            // The first layer has no bias (the middle one's comes from its masked gradient).
            let bias = |j: usize| (j != 0).then_some(&biases[j]);
            let y = if fused {
                let layers: Vec<ops::ConvRelu<'_, B>> = (0..3)
                    .map(|j| ops::ConvRelu {
                        weight: &wts[j],
                        bias: bias(j),
                        stride: (1, 1),
                        padding: (shapes[j].3, shapes[j].3),
                    })
                    .collect();
                ops::conv2d_relu_chain(&x, &layers, pool)?
            } else {
                let mut h = x.clone();
                for j in 0..3 {
                    h = ops::conv2d_relu(&h, &wts[j], bias(j), (1, 1), (shapes[j].3, shapes[j].3))?;
                }
                match pool {
                    Some(window) => ops::max_pool2d(&h, window)?,
                    None => h,
                }
            };
            let dy = random(&mut rng(121), y.shape().numel());
            y.backward_with(tensor(b, y.shape().dims(), &dy))?;
            let mut out = vec![y.value().to_vec()?, x.grad().unwrap().to_vec()?];
            for (j, wt) in wts.iter().enumerate() {
                out.push(wt.grad().unwrap().to_vec()?);
                if let Some(bias) = bias(j) {
                    out.push(bias.grad().unwrap().to_vec()?);
                }
            }
            Ok(out)
        };
        let (fused, plain) = (run(true).unwrap(), run(false).unwrap());
        let names = ["y", "dx", "dw0", "dw1", "db1", "dw2", "db2"];
        for ((what, got), want) in names.iter().zip(&fused).zip(&plain) {
            if what.starts_with("db") {
                assert_close(got, want, 1e-6);
            } else {
                assert_eq!(got, want, "{what}, pool {pool:?}");
            }
        }
    }
}

fn conv2d_relu_chain_through_the_cuda_plans() {
    let rec = ::cuda::model::Recorder::new(132, ::cuda::Precision::Tf32);
    conv2d_relu_chain_matches_the_ops_one_by_one(&rec);
    // The second 1x1 convolution's input gradient is stored through the mask (the epilogue
    // product reads it), once per pass through the chain.
    let launches = rec.take();
    assert!(
        launches.iter().any(|l| l.kernel.ends_with("_tn_epilogue")),
        "no masked input gradient was stored"
    );
}

#[test]
fn conv2d_relu_chain_on_the_gpu_plans() {
    conv2d_relu_chain_through_the_cuda_plans();
}

/// A `Sequential` fuses a convolution, its ReLU and the max pooling after them into
/// `conv2d_relu_max_pool`, also across a nested block that ends in the convolution and the ReLU
/// (NiN's blocks and pools), and computes what its layers one by one compute: the same output
/// and parameter gradients. A ReLU or a pooling alone is not fused.
fn sequential_fuses_relu_and_max_pool<B: Backend>(b: &B) {
    use layers::{Conv2d, MaxPool2d, Mode, Module, Relu, Sequential, WeightInit};
    let pool = || MaxPool2d(Window::square(3, 2, 0));
    let net = |r: &mut rand::rngs::StdRng| -> tensor::Result<Sequential<B>> {
        let init = WeightInit::XavierUniform;
        Ok(Sequential::new()
            .add(
                Sequential::new()
                    .add(Conv2d::new(b, 2, 6, 3, 1, 1, init, r)?)
                    .add(Relu)
                    .add(Conv2d::new(b, 6, 5, 1, 1, 0, init, r)?)
                    .add(Relu),
            )
            .add(pool())
            .add(Conv2d::new(b, 5, 4, 3, 1, 1, init, r)?)
            .add(Relu)
            .add(pool())
            .add(pool()))
    };
    let fused_net = net(&mut rng(5)).unwrap();
    let plain_net = net(&mut rng(5)).unwrap();
    let xs = random(&mut rng(6), 2 * 2 * 23 * 23);
    let x = tensor(b, &[2, 2, 23, 23], &xs);
    let y = fused_net.forward(&Var::constant(x.clone()), &mut Mode::eval()).unwrap();
    assert_eq!(y.op(), Some("max_pool2d"), "the last pool follows a pool: not fused");
    // Layer by layer, through the modules' own unfused forwards.
    let mut h = Var::constant(x);
    let mut mode = Mode::eval();
    for (_, layer) in plain_net.children() {
        if layer.children().is_empty() {
            h = layer.forward(&h, &mut mode).unwrap();
        } else {
            for (_, inner) in layer.children() {
                h = inner.forward(&h, &mut mode).unwrap();
            }
        }
    }
    assert_eq!(y.value().to_vec().unwrap(), h.value().to_vec().unwrap());
    let dy = random(&mut rng(7), y.shape().numel());
    y.backward_with(tensor(b, y.shape().dims(), &dy)).unwrap();
    h.backward_with(tensor(b, h.shape().dims(), &dy)).unwrap();
    for ((name, p), (_, q)) in fused_net.parameters().iter().zip(plain_net.parameters()) {
        let (got, want) = (p.grad().unwrap().to_vec().unwrap(), q.grad().unwrap().to_vec().unwrap());
        if name.ends_with("bias") {
            assert_close(&got, &want, 1e-6);
        } else {
            assert_eq!(got, want, "{name}");
        }
    }
    // The fused ops are in the graph: the first pool's input is the block's fused op.
    let block_then_pool = Sequential::new()
        .add(
            Sequential::new()
                .add(Conv2d::new(b, 2, 3, 3, 1, 1, WeightInit::XavierUniform, &mut rng(8)).unwrap())
                .add(Relu),
        )
        .add(pool());
    let x = Var::constant(tensor(b, &[1, 2, 9, 9], &xs[..162]));
    assert_eq!(block_then_pool.forward(&x, &mut Mode::eval()).unwrap().op(), Some("conv2d_relu_max_pool"));
    let no_relu = Sequential::new()
        .add(Conv2d::new(b, 2, 3, 3, 1, 1, WeightInit::XavierUniform, &mut rng(8)).unwrap())
        .add(pool());
    assert_eq!(no_relu.forward(&x, &mut Mode::eval()).unwrap().op(), Some("max_pool2d"));
}

/// `conv2d_relu_shared` against one `conv2d_relu` per weight: every output and gradient, on
/// the 1x1 direct path (16x16 planes), the 1x1 im2col path (6x6) and a strided, padded 3x3; one
/// convolution without a bias; and once with an output no consumer uses.
fn conv2d_relu_shared_matches_separate_convs<B: Backend>(b: &B) {
    let outs = [3, 1, 4];
    let cases = [(2, 5, 16, 16, 1, 1, 0), (3, 6, 6, 6, 1, 1, 0), (2, 3, 7, 9, 3, 2, 1)];
    for (i, &(n, c, h, w, k, s, p)) in cases.iter().enumerate() {
        for skip_middle in [false, true] {
            let mut r = rng(80 + i as u64);
            let xs = random(&mut r, n * c * h * w);
            let ws: Vec<Vec<f32>> = outs.iter().map(|&o| random(&mut r, o * c * k * k)).collect();
            let bs: Vec<Vec<f32>> = outs.iter().map(|&o| random(&mut r, o)).collect();
            let run = |shared: bool| -> tensor::Result<Vec<Vec<f32>>> {
                let x = param(b, &[n, c, h, w], &xs);
                let wts: Vec<Var<B>> =
                    outs.iter().zip(&ws).map(|(&o, v)| param(b, &[o, c, k, k], v)).collect();
                let biases: Vec<Var<B>> = outs.iter().zip(&bs).map(|(&o, v)| param(b, &[o], v)).collect();
                // The second convolution has no bias.
                let convs: Vec<(&Var<B>, Option<&Var<B>>)> =
                    (0..3).map(|j| (&wts[j], (j != 1).then_some(&biases[j]))).collect();
                let ys = if shared {
                    ops::conv2d_relu_shared(&x, &convs, (s, s), (p, p))?
                } else {
                    convs
                        .iter()
                        .map(|&(wt, bias)| ops::conv2d_relu(&x, wt, bias, (s, s), (p, p)))
                        .collect::<tensor::Result<Vec<_>>>()?
                };
                let used: Vec<&Var<B>> = ys
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| !(skip_middle && j == 1))
                    .map(|(_, y)| y)
                    .collect();
                let joined = ops::concat_channels(&used)?;
                let dy = random(&mut rng(97), joined.shape().numel());
                joined.backward_with(tensor(b, joined.shape().dims(), &dy))?;
                let mut got: Vec<Vec<f32>> =
                    ys.iter().map(|y| y.value().to_vec()).collect::<tensor::Result<_>>()?;
                got.push(x.grad().unwrap().to_vec()?);
                for (j, wt) in wts.iter().enumerate() {
                    // An unused output's weights get no gradient from the separate convolutions.
                    got.push(wt.grad().map_or(Ok(vec![0.0; outs[j] * c * k * k]), |g| g.to_vec())?);
                }
                for j in [0, 2] {
                    got.push(biases[j].grad().unwrap().to_vec()?);
                }
                Ok(got)
            };
            let (shared, separate) = (run(true).unwrap(), run(false).unwrap());
            assert!(
                shared[0].contains(&0.0) && shared[0].iter().any(|&v| v > 0.0),
                "case {i}: the ReLU should cut some values"
            );
            assert_eq!(shared.len(), separate.len());
            for (got, want) in shared.iter().zip(&separate) {
                assert_eq!(got.len(), want.len(), "case {i}");
                assert_close(got, want, 1e-5);
            }
        }
    }
}

/// The GPU's plan keeps the forward's column matrices for the weight gradient
/// (`ConvPlan::keep_columns`). Through the cost model's recorder (the CPU's arithmetic, the
/// GPU's plans: 3 of 4 images a chunk here, so two chunks, the second short) a convolution's
/// output and gradients match the CPU's, whose plan unfolds again; the input is unfolded once
/// per chunk, not twice; the products store the output with its bias as the GPU would (the
/// `*_epilogue` kernel, no bias or transpose pass); and the stacked 1x1 convolutions of
/// `conv2d_relu_shared` take the kept columns too.
#[test]
fn kept_columns_match_a_second_unfolding() {
    let rec = ::cuda::model::Recorder::new(132, ::cuda::Precision::Fp32);
    let (n, c, h, w, o) = (4, 8, 512, 512, 4);
    let mut r = rng(5);
    let (xs, ws, bs) = (random(&mut r, n * c * h * w), random(&mut r, o * c * 9), random(&mut r, o));
    let dy = random(&mut r, n * o * h * w);
    fn run<B: Backend>(b: &B, shape: [usize; 4], o: usize, data: [&[f32]; 4]) -> Vec<Vec<f32>> {
        let [n, c, h, w] = shape;
        let x = param(b, &[n, c, h, w], data[0]);
        let wt = param(b, &[o, c, 3, 3], data[1]);
        let bias = param(b, &[o], data[2]);
        let y = ops::conv2d_with(&x, &wt, Some(&bias), (1, 1), (1, 1), ConvAlgo::Im2col).unwrap();
        y.backward_with(tensor(b, &[n, o, h, w], data[3])).unwrap();
        [y.value(), x.grad().unwrap(), wt.grad().unwrap(), bias.grad().unwrap()]
            .iter()
            .map(|t| t.to_vec().unwrap())
            .collect()
    }
    let data = [&xs[..], &ws[..], &bs[..], &dy[..]];
    let kept = run(&rec, [n, c, h, w], o, data);
    let launches = rec.take();
    let count = |kernel: &str| launches.iter().filter(|l| l.kernel == kernel).count();
    assert_eq!(count("im2col"), 2, "one unfolding per chunk, in the forward only");
    // Each chunk's product stores NCHW with the bias (Backend::gemm_epilogue): no pass of its
    // own for the bias, and the transposes are the backward's, one per chunk.
    assert_eq!(count("sgemm_nn_epilogue"), 2);
    assert_eq!((count("add_bias"), count("transpose_blocks")), (0, 2));
    let cpu = run(&tensor::Cpu, [n, c, h, w], o, data);
    for (got, want) in kept.iter().zip(&cpu) {
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5 * scale, "kept columns differ by {worst} (scale {scale})");
    }

    // The same weights as two stacked convolutions (1 + 3 channels, a bias on the first): each
    // chunk's product stored into both outputs by its epilogue, at the chunk's place in each.
    fn shared<B: Backend>(b: &B, shape: [usize; 4], data: [&[f32]; 4]) -> Vec<Vec<f32>> {
        let [_, c, _, _] = shape;
        let x = param(b, &shape, data[0]);
        let w1 = param(b, &[1, c, 3, 3], &data[1][..c * 9]);
        let w3 = param(b, &[3, c, 3, 3], &data[1][c * 9..]);
        let bias = param(b, &[1], &data[2][..1]);
        let ys = ops::conv2d_relu_shared(&x, &[(&w1, Some(&bias)), (&w3, None)], (1, 1), (1, 1)).unwrap();
        ys.iter().map(|y| y.value().to_vec().unwrap()).collect()
    }
    let fused = shared(&rec, [n, c, h, w], data);
    let launches = rec.take();
    let count = |kernel: &str| launches.iter().filter(|l| l.kernel == kernel).count();
    assert_eq!((count("sgemm_nn_epilogue"), count("transpose_blocks"), count("bias_relu")), (2, 0, 0));
    for (got, want) in fused.iter().zip(&shared(&tensor::Cpu, [n, c, h, w], data)) {
        assert_close(got, want, 1e-5);
    }

    // Inception's case: two 1x1 convolutions of a 6x6 input, one product on kept columns.
    shared_1x1_on_kept_columns(&rec, &random(&mut r, 2 * 5 * 36), &random(&mut r, 7 * 5));
}

/// `conv2d_relu_shared` of a [2, 5, 6, 6] input into 3 + 4 channels through the recorder, against
/// the CPU: every output and gradient, and one unfolding.
fn shared_1x1_on_kept_columns(rec: &::cuda::model::Recorder, xs: &[f32], ws: &[f32]) {
    fn run<B: Backend>(b: &B, xs: &[f32], ws: &[f32]) -> Vec<Vec<f32>> {
        let x = param(b, &[2, 5, 6, 6], xs);
        let w1 = param(b, &[3, 5, 1, 1], &ws[..15]);
        let w2 = param(b, &[4, 5, 1, 1], &ws[15..]);
        let ys = ops::conv2d_relu_shared(&x, &[(&w1, None), (&w2, None)], (1, 1), (0, 0)).unwrap();
        let joined = ops::concat_channels(&[&ys[0], &ys[1]]).unwrap();
        let dy = random(&mut rng(6), joined.shape().numel());
        joined.backward_with(tensor(b, joined.shape().dims(), &dy)).unwrap();
        [joined.value(), x.grad().unwrap(), w1.grad().unwrap(), w2.grad().unwrap()]
            .iter()
            .map(|t| t.to_vec().unwrap())
            .collect()
    }
    let got = run(rec, xs, ws);
    assert_eq!(rec.take().iter().filter(|l| l.kernel == "im2col").count(), 1);
    for (got, want) in got.iter().zip(&run(&tensor::Cpu, xs, ws)) {
        assert_close(got, want, 1e-5);
    }
}

/// On the GPU's plans (the cost model's recorder: the CPU's arithmetic) the stacked outputs are
/// stored by their epilogues (`Backend::gemm_rows_epilogue`, `ConvPlan::epilogue_stores`): the
/// same outputs and gradients as separate convolutions, and five outputs of a [2, 5, 6, 6]
/// input, some with a bias, take two products (four outputs a launch) in the forward, with no
/// bias, ReLU or transpose pass after them, and their masked gradients go straight into the
/// backward products' matrix (`Backend::bias_relu_backward_rows`), and the input gradient is
/// stored by its product (no col2im); the values and gradients match the CPU's, which moves
/// and finishes each output after one product.
#[test]
fn stacked_outputs_are_stored_by_their_epilogues() {
    let rec = ::cuda::model::Recorder::new(132, ::cuda::Precision::Fp32);
    conv2d_relu_shared_matches_separate_convs(&rec);
    rec.take();
    let outs = [3, 1, 4, 2, 5];
    let mut r = rng(11);
    let xs = random(&mut r, 2 * 5 * 36);
    let ws: Vec<Vec<f32>> = outs.iter().map(|&o| random(&mut r, o * 5)).collect();
    let bs: Vec<Vec<f32>> = outs.iter().map(|&o| random(&mut r, o)).collect();
    // Every other output with a bias.
    fn stacked<B: Backend>(
        b: &B,
        outs: &[usize],
        xs: &[f32],
        ws: &[Vec<f32>],
        bs: &[Vec<f32>],
    ) -> Vec<Vec<f32>> {
        let x = param(b, &[2, 5, 6, 6], xs);
        let wts: Vec<_> = outs.iter().zip(ws).map(|(&o, w)| param(b, &[o, 5, 1, 1], w)).collect();
        let biases: Vec<_> = outs.iter().zip(bs).map(|(&o, v)| param(b, &[o], v)).collect();
        let convs: Vec<_> = (0..outs.len()).map(|j| (&wts[j], (j % 2 == 0).then_some(&biases[j]))).collect();
        let ys = ops::conv2d_relu_shared(&x, &convs, (1, 1), (0, 0)).unwrap();
        let mut got: Vec<Vec<f32>> = ys.iter().map(|y| y.value().to_vec().unwrap()).collect();
        let joined = ops::concat_channels(&ys.iter().collect::<Vec<_>>()).unwrap();
        let dy = random(&mut rng(12), joined.shape().numel());
        joined.backward_with(tensor(b, joined.shape().dims(), &dy)).unwrap();
        got.push(x.grad().unwrap().to_vec().unwrap());
        got.extend(wts.iter().map(|w| w.grad().unwrap().to_vec().unwrap()));
        got.extend(biases.iter().step_by(2).map(|b| b.grad().unwrap().to_vec().unwrap()));
        got
    }
    let got = stacked(&rec, &outs, &xs, &ws, &bs);
    let launches = rec.take();
    let count = |kernel: &str| launches.iter().filter(|l| l.kernel == kernel).count();
    assert_eq!(count("im2col"), 1);
    assert_eq!(count("sgemm_nn_epilogue"), 2, "four outputs a launch");
    assert_eq!((count("sgemm_nn"), count("bias_relu")), (0, 0));
    // Backward: each output's masked gradient written into its rows of the products' matrix by
    // its channel_sums pass: no transpose anywhere in the step.
    assert_eq!((count("transpose_blocks"), count("channel_sums")), (0, outs.len()));
    // The input gradient of the stacked 1x1 convolutions stored as NCHW by its product.
    assert_eq!((count("sgemm_tn_epilogue"), count("col2im")), (1, 0));
    for (got, want) in got.iter().zip(&stacked(&tensor::Cpu, &outs, &xs, &ws, &bs)) {
        assert_close(got, want, 1e-5);
    }
}

fn expect_err<T>(r: tensor::Result<T>, needles: &[&str]) -> Error {
    let Err(e) = r else { panic!("expected an error mentioning {needles:?}") };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} should mention {n:?}");
    }
    e
}

fn wrong_input_is_an_error<B: Backend>(b: &B) {
    let x = Var::constant(tensor(b, &[2, 3, 5, 5], &[0.0; 150]));
    let w4 = Var::constant(tensor(b, &[8, 4, 3, 3], &[0.0; 288]));
    expect_err(ops::conv2d(&x, &w4, None, (1, 1), (0, 0)), &["[2, 3, 5, 5]", "[8, 4, 3, 3]", "3 channels"]);
    let w7 = Var::constant(tensor(b, &[2, 3, 7, 7], &[0.0; 294]));
    expect_err(ops::conv2d(&x, &w7, None, (1, 1), (0, 0)), &["7x7", "5x5"]);
    let bias = Var::constant(tensor(b, &[3], &[0.0; 3]));
    let w = Var::constant(tensor(b, &[2, 3, 3, 3], &[0.0; 54]));
    expect_err(ops::conv2d(&x, &w, Some(&bias), (1, 1), (0, 0)), &["bias", "[3]", "[2]"]);
    expect_err(
        ops::conv2d_relu_shared(&x, &[(&w, None), (&w4, None)], (1, 1), (0, 0)),
        &["[8, 4, 3, 3]", "[2, 3, 5, 5]", "[_, 3, 3, 3]"],
    );
    let w1 = Var::constant(tensor(b, &[2, 3, 1, 1], &[0.0; 6]));
    expect_err(
        ops::conv2d_relu_shared(&x, &[(&w, None), (&w1, None)], (1, 1), (0, 0)),
        &["[2, 3, 1, 1]", "3x3 kernel"],
    );
    expect_err(ops::conv2d_relu_shared(&x, &[(&w1, Some(&bias))], (1, 1), (0, 0)), &["bias", "[3]", "[2]"]);
    expect_err(ops::conv2d_relu_shared(&x, &[], (1, 1), (0, 0)), &["at least one"]);
    expect_err(ops::max_pool2d(&x, Window::square(7, 1, 0)), &["7x7", "5x5"]);
    expect_err(ops::max_pool2d(&x, Window::square(3, 1, 2)), &["padding"]);
    let logits = Var::constant(tensor(b, &[2, 10], &[0.0; 20]));
    expect_err(ops::cross_entropy(&logits, &[3, 10]), &["label 10", "index 1", "10 classes"]);
    expect_err(ops::cross_entropy(&logits, &[3]), &["1 labels", "[2, 10]"]);
    let flat = Var::constant(tensor(b, &[2, 75], &[0.0; 150]));
    expect_err(ops::max_pool2d(&flat, Window::square(2, 2, 0)), &["rank 4", "[2, 75]"]);
    let lw = Var::constant(tensor(b, &[10, 74], &[0.0; 740]));
    expect_err(ops::linear(&flat, &lw, None), &["75 features", "[10, 74]"]);
    let y = Var::constant(tensor(b, &[2, 1, 4, 5], &[0.0; 40]));
    expect_err(ops::concat_channels(&[&x, &y]), &["[2, 1, 4, 5]"]);
    expect_err(ops::dropout(&x, 1.0, 0), &["[0, 1)", "1"]);
    expect_err(tensor::Tensor::from_slice(b, [2, 3], &[0.0; 5]), &["5 values", "[2, 3]"]);
}

/// `concat_channels` and `split_channels` against copies made by hand: six parts (two launches
/// of four on the GPU), one of them empty, a part skipped by the split; a short part or whole is
/// an error naming it, and a rejected call writes nothing.
fn concat_and_split_channels<B: Backend>(b: &B) {
    let (n, plane) = (3, 7);
    let channels = [2, 1, 0, 3, 5, 1];
    let total: usize = channels.iter().sum();
    let mut r = rng(11);
    let data: Vec<Vec<f32>> = channels.iter().map(|&c| random(&mut r, n * c * plane)).collect();
    // Image i of the whole: each part's channels of image i, in order.
    let mut want = Vec::new();
    for i in 0..n {
        for (d, &c) in data.iter().zip(&channels) {
            want.extend_from_slice(&d[i * c * plane..(i + 1) * c * plane]);
        }
    }
    let parts: Vec<B::Storage> = data.iter().map(|d| b.from_slice(d).unwrap()).collect();
    let mut whole = b.zeros(n * total * plane).unwrap();
    let views: Vec<_> = parts.iter().zip(&channels).map(|(p, &c)| (p, c)).collect();
    b.concat_channels(&views, &mut whole, n, plane).unwrap();
    assert_eq!(b.to_vec(&whole).unwrap(), want, "concat_channels");

    let mut outs: Vec<B::Storage> =
        channels.iter().map(|&c| b.from_slice(&vec![-1.0; n * c * plane]).unwrap()).collect();
    {
        let mut views: Vec<_> = outs
            .iter_mut()
            .zip(&channels)
            .enumerate()
            .map(|(k, (o, &c))| ((k != 3).then_some(o), c))
            .collect();
        b.split_channels(&whole, &mut views, n, plane).unwrap();
    }
    for (k, (o, d)) in outs.iter().zip(&data).enumerate() {
        let got = b.to_vec(o).unwrap();
        if k == 3 {
            assert!(got.iter().all(|&v| v == -1.0), "the skipped part was written");
        } else {
            assert_eq!(&got, d, "split_channels part {k}");
        }
    }

    let short = b.zeros(n * 3 * plane - 1).unwrap();
    let mut views: Vec<_> = parts.iter().zip(&channels).map(|(p, &c)| (p, c)).collect();
    views[3] = (&short, 3);
    let mut fresh = b.zeros(n * total * plane).unwrap();
    let e = b.concat_channels(&views, &mut fresh, n, plane).unwrap_err().to_string();
    assert!(e.contains("concat_channels") && e.contains("part 3"), "{e}");
    assert!(b.to_vec(&fresh).unwrap().iter().all(|&v| v == 0.0), "a rejected concat wrote");
    let small = b.zeros(n * total * plane - 1).unwrap();
    let mut views: Vec<_> = outs.iter_mut().zip(&channels).map(|(o, &c)| (Some(o), c)).collect();
    let e = b.split_channels(&small, &mut views, n, plane).unwrap_err().to_string();
    assert!(e.contains("split_channels") && e.contains("the whole"), "{e}");
}

/// In TF32 the GPU's plan computes a convolution larger than 1x1 by implicit products
/// (`ConvPlan::implicit`, kernels/gemm.cu's Gather). Through the cost model's recorder (the
/// CPU's arithmetic, the GPU's plans and launches) `conv2d_relu`'s output and gradients match
/// the CPU's, with and without ReLU; the forward and the weight gradient are one launch each
/// over the whole batch and nothing is unfolded (no im2col, no columns kept); the input gradient
/// is one `tgemm*_dgrad` for stride 1 and 64 or 96 input channels, and columns folded back
/// (col2im) for 40 input channels or a stride of 2. The kernels themselves are checked against the CPU
/// reference under the emulation (kernels/emu/test_gemm.cpp).
#[test]
fn implicit_convolutions_match_the_cpu() {
    let rec = ::cuda::model::Recorder::new(132, ::cuda::Precision::Tf32);
    let cases = [
        (64, 9, 20, 3, 1, 1, true),
        (96, 7, 8, 5, 1, 2, true),
        (40, 6, 100, 3, 1, 1, false),
        (3, 11, 130, 3, 2, 1, false),
    ];
    for (i, &(c, hw, o, k, s, p, implicit_dx)) in cases.iter().enumerate() {
        let n = 3;
        let mut r = rng(40 + i as u64);
        let (xs, ws, bs) =
            (random(&mut r, n * c * hw * hw), random(&mut r, o * c * k * k), random(&mut r, o));
        for relu in [true, false] {
            fn run<B: Backend>(b: &B, dims: [usize; 6], relu: bool, data: [&[f32]; 3]) -> Vec<Vec<f32>> {
                let [n, c, hw, o, k, s] = dims;
                let p = (k - 1) / 2;
                let (x, wt, bias) = (
                    param(b, &[n, c, hw, hw], data[0]),
                    param(b, &[o, c, k, k], data[1]),
                    param(b, &[o], data[2]),
                );
                let y = if relu {
                    ops::conv2d_relu(&x, &wt, Some(&bias), (s, s), (p, p)).unwrap()
                } else {
                    ops::conv2d(&x, &wt, Some(&bias), (s, s), (p, p)).unwrap()
                };
                let dy = random(&mut rng(7), y.shape().numel());
                y.backward_with(tensor(b, y.shape().dims(), &dy)).unwrap();
                [y.value(), x.grad().unwrap(), wt.grad().unwrap(), bias.grad().unwrap()]
                    .iter()
                    .map(|t| t.to_vec().unwrap())
                    .collect()
            }
            assert_eq!((k - 1) / 2, p);
            let data = [&xs[..], &ws[..], &bs[..]];
            let got = run(&rec, [n, c, hw, o, k, s], relu, data);
            let launches = rec.take();
            let count = |kernels: &[&str]| launches.iter().filter(|l| kernels.contains(&l.kernel)).count();
            let case = format!("case {i}, relu {relu}");
            assert_eq!(count(&["tgemm_conv_fwd", "tgemm64_conv_fwd", "tgemm96_conv_fwd"]), 1, "{case}");
            assert_eq!(count(&["tgemm64_conv_wgrad", "tgemm96_conv_wgrad"]), 1, "{case}");
            assert_eq!(count(&["im2col"]), 0, "{case}: nothing is unfolded");
            let implicit = count(&["tgemm_dgrad", "tgemm64_dgrad", "tgemm96_dgrad"]);
            assert_eq!((implicit, count(&["col2im"])), if implicit_dx { (1, 0) } else { (0, 1) }, "{case}");
            let want = run(&tensor::Cpu, [n, c, hw, o, k, s], relu, data);
            for (got, want) in got.iter().zip(&want) {
                let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(worst <= 1e-5 * scale, "{case}: differs by {worst} (scale {scale})");
            }
        }
    }
}

/// On the GPU an optimizer step is one launch for all parameters (SGD with and without
/// momentum, Adam), each preceded by its table's upload, and updates as the CPU does.
#[test]
fn an_optimizer_step_is_one_launch() {
    use layers::optim::{Adam, Sgd};
    use layers::Optimizer;
    let rec = ::cuda::model::Recorder::new(132, ::cuda::Precision::Fp32);
    fn params<B: Backend>(b: &B) -> Vec<(String, Var<B>)> {
        let mut r = rng(9);
        let shapes: [&[usize]; 3] = [&[5000], &[3], &[2, 7]];
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = s.iter().product();
                let p = param(b, s, &random(&mut r, n));
                p.backward_with(tensor(b, s, &random(&mut r, n))).unwrap();
                (format!("p{i}"), p)
            })
            .collect()
    }
    for (kernel, momentum) in [("sgd_steps", 0.0), ("sgd_momentum_steps", 0.9)] {
        let (ps, cpu) = (params(&rec), params(&tensor::Cpu));
        rec.take();
        Sgd::new(ps.clone(), 0.1, momentum, 1e-3).step().unwrap();
        Sgd::new(cpu.clone(), 0.1, momentum, 1e-3).step().unwrap();
        // Besides the state's zeros, which the first step creates.
        let names: Vec<_> = rec.take().iter().map(|l| l.kernel).filter(|&k| k != "fill").collect();
        assert_eq!(names, ["upload", kernel], "momentum {momentum}");
        for ((_, a), (_, b)) in ps.iter().zip(&cpu) {
            assert_eq!(a.value().to_vec().unwrap(), b.value().to_vec().unwrap());
        }
    }
    let ps = params(&rec);
    rec.take();
    Adam::new(ps, 1e-3, 0.0).step().unwrap();
    let names: Vec<_> = rec.take().iter().map(|l| l.kernel).filter(|&k| k != "fill").collect();
    assert_eq!(names, ["upload", "adam_steps"]);
}

/// On the GPU an Inception join is one launch of `concat_channels` forward and one of
/// `split_channels` backward (four branches), not a copy per branch.
#[test]
fn an_inception_join_is_one_launch_each_way() {
    let rec = ::cuda::model::Recorder::new(132, ::cuda::Precision::Fp32);
    let mut r = rng(3);
    let xs: Vec<Var<_>> =
        [3, 5, 2, 4].iter().map(|&c| param(&rec, &[2, c, 3, 3], &random(&mut r, 2 * c * 9))).collect();
    let y = ops::concat_channels(&xs.iter().collect::<Vec<_>>()).unwrap();
    y.backward_with(tensor(&rec, &[2, 14, 3, 3], &random(&mut r, 2 * 14 * 9))).unwrap();
    let launches = rec.take();
    let count = |kernel: &str| launches.iter().filter(|l| l.kernel == kernel).count();
    assert_eq!((count("concat_channels"), count("split_channels"), count("copy_channels")), (1, 1, 0));
}

backend_tests!(
    conv3x3_by_hand,
    max_pool_with_padding_by_hand,
    max_pool_ties_match_a_window_scan,
    avg_pool_with_padding_by_hand,
    cross_entropy_of_uniform_logits_is_ln_10,
    pointwise_path_matches_im2col,
    winograd_matches_im2col,
    conv2d_relu_matches_relu_of_conv,
    conv2d_relu_max_pool_matches_the_three_ops,
    conv2d_relu_chain_matches_the_ops_one_by_one,
    sequential_fuses_relu_and_max_pool,
    conv2d_relu_shared_matches_separate_convs,
    wrong_input_is_an_error,
    concat_and_split_channels,
);
