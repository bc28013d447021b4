//! Gradient checks of every op against central finite differences, on odd shapes, strides and
//! paddings, for every backend present.
mod common;
use autograd::Var;
use common::*;
use layers::ops::{self, ConvAlgo};
use tensor::{Backend, Window};

/// (batch, channels, height, width, out channels, kernel, stride, padding)
type ConvCase = (usize, usize, usize, usize, usize, (usize, usize), (usize, usize), (usize, usize));

const CONV_CASES: &[ConvCase] = &[
    (2, 3, 7, 9, 4, (3, 3), (1, 1), (1, 1)),
    (3, 4, 8, 7, 5, (3, 2), (2, 1), (1, 2)), // rectangular kernel, mixed stride and padding
    (2, 3, 9, 9, 3, (2, 2), (3, 3), (0, 0)), // stride larger than the kernel
    (2, 5, 5, 6, 4, (5, 3), (1, 2), (2, 0)), // kernel as tall as the input
    (3, 3, 6, 5, 4, (1, 1), (1, 1), (0, 0)), // 1x1: the direct GEMM path
    (2, 4, 7, 6, 3, (1, 1), (2, 2), (1, 0)), // 1x1 strided and padded: the im2col path
    (2, 3, 5, 8, 5, (4, 4), (3, 2), (2, 1)),
    (2, 3, 9, 9, 4, (5, 5), (2, 2), (2, 2)),
    (1, 2, 4, 19, 3, (3, 3), (1, 1), (1, 1)), // rows of 19: the CPU's row-copy im2col and col2im
    (1, 2, 4, 12, 3, (3, 3), (1, 1), (1, 1)), // rows of 12: gather-table im2col, row-copy col2im
];

fn conv2d<B: Backend>(b: &B) {
    for (i, &(n, c, h, w, o, k, s, p)) in CONV_CASES.iter().enumerate() {
        let mut r = rng(i as u64);
        let inputs = vec![
            (vec![n, c, h, w], random(&mut r, n * c * h * w)),
            (vec![o, c, k.0, k.1], random(&mut r, o * c * k.0 * k.1)),
            (vec![o], random(&mut r, o)),
        ];
        grad_check(b, &inputs, |v| ops::conv2d(&v[0], &v[1], Some(&v[2]), s, p), SMOOTH);
    }
}

fn conv2d_im2col_path_for_1x1<B: Backend>(b: &B) {
    let mut r = rng(7);
    let inputs = vec![
        (vec![2, 3, 5, 7], random(&mut r, 210)),
        (vec![4, 3, 1, 1], random(&mut r, 12)),
        (vec![4], random(&mut r, 4)),
    ];
    grad_check(
        b,
        &inputs,
        |v| ops::conv2d_with(&v[0], &v[1], Some(&v[2]), (1, 1), (0, 0), ConvAlgo::Im2col),
        SMOOTH,
    );
}

/// The shared-input convolutions through a concatenation of their outputs: the 1x1 im2col path
/// (a 3x5 plane), the direct path (a 16x17 plane) and a strided, padded 3x2 kernel. The ReLUs
/// make kinks: a few elements may sit on one.
fn conv2d_relu_shared<B: Backend>(b: &B) {
    let cases = [
        (2, 3, 3, 5, (1, 1), (1, 1), (0, 0)),
        (1, 2, 16, 17, (1, 1), (1, 1), (0, 0)),
        (2, 3, 6, 7, (3, 2), (2, 1), (1, 1)),
    ];
    for (i, &(n, c, h, w, k, s, p)) in cases.iter().enumerate() {
        let mut r = rng(40 + i as u64);
        let mut inputs = vec![(vec![n, c, h, w], random(&mut r, n * c * h * w))];
        for o in [2, 3] {
            inputs.push((vec![o, c, k.0, k.1], random(&mut r, o * c * k.0 * k.1)));
            inputs.push((vec![o], random(&mut r, o)));
        }
        let check = Check { step: 3e-3, max_kink_share: 0.05 };
        grad_check(
            b,
            &inputs,
            |v| {
                let ys = ops::conv2d_relu_shared(&v[0], &[(&v[1], Some(&v[2])), (&v[3], Some(&v[4]))], s, p)?;
                ops::concat_channels(&[&ys[0], &ys[1]])
            },
            check,
        );
    }
}

/// Winograd's backward is the adjoint of its own transforms: checked on output tiles of 4, 3 and
/// 2, a 5x5 and a 2x2 kernel, unpadded and padded.
const WINOGRAD_CASES: &[ConvCase] = &[
    (1, 2, 8, 4, 3, (3, 3), (1, 1), (1, 1)), // m = 4
    (2, 3, 8, 8, 2, (3, 3), (1, 1), (0, 0)), // 6x6 output: m = 3
    (1, 3, 6, 8, 2, (3, 3), (1, 1), (1, 1)), // m = 2
    (1, 2, 4, 6, 3, (5, 5), (1, 1), (2, 2)), // 5x5, m = 2
    (2, 2, 5, 7, 2, (2, 2), (1, 1), (0, 0)), // 2x2: 4x6 output, m = 2
];

fn conv2d_winograd<B: Backend>(b: &B) {
    for (i, &(n, c, h, w, o, k, s, p)) in WINOGRAD_CASES.iter().enumerate() {
        let mut r = rng(20 + i as u64);
        let inputs = vec![
            (vec![n, c, h, w], random(&mut r, n * c * h * w)),
            (vec![o, c, k.0, k.1], random(&mut r, o * c * k.0 * k.1)),
            (vec![o], random(&mut r, o)),
        ];
        grad_check(
            b,
            &inputs,
            |v| ops::conv2d_with(&v[0], &v[1], Some(&v[2]), s, p, ConvAlgo::Winograd),
            SMOOTH,
        );
    }
}

const POOL_CASES: &[(usize, usize, usize, usize, Window)] = &[
    (2, 3, 7, 9, Window { kernel: (3, 3), stride: (2, 2), padding: (1, 1) }),
    (3, 4, 8, 6, Window { kernel: (2, 3), stride: (1, 2), padding: (1, 1) }),
    (2, 3, 9, 9, Window { kernel: (2, 2), stride: (3, 3), padding: (0, 0) }), // stride > kernel
    (2, 5, 5, 7, Window { kernel: (5, 4), stride: (2, 3), padding: (2, 2) }),
];

fn max_pool2d<B: Backend>(b: &B) {
    for (i, &(n, c, h, w, win)) in POOL_CASES.iter().enumerate() {
        let inputs = vec![(vec![n, c, h, w], distinct(&mut rng(i as u64), n * c * h * w))];
        grad_check(b, &inputs, |v| ops::max_pool2d(&v[0], win), SMOOTH);
    }
}

fn avg_pool2d<B: Backend>(b: &B) {
    for (i, &(n, c, h, w, win)) in POOL_CASES.iter().enumerate() {
        let inputs = vec![(vec![n, c, h, w], random(&mut rng(i as u64), n * c * h * w))];
        grad_check(b, &inputs, |v| ops::avg_pool2d(&v[0], win), SMOOTH);
    }
}

fn global_avg_pool2d<B: Backend>(b: &B) {
    let inputs = vec![(vec![3, 4, 5, 7], random(&mut rng(1), 420))];
    grad_check(b, &inputs, |v| ops::global_avg_pool2d(&v[0]), SMOOTH);
}

fn relu<B: Backend>(b: &B) {
    let inputs = vec![(vec![2, 3, 5, 7], away_from_zero(&mut rng(2), 210))];
    grad_check(b, &inputs, |v| ops::relu(&v[0]), SMOOTH);
}

fn dropout<B: Backend>(b: &B) {
    // The mask depends only on the seed, so every finite-difference evaluation draws the same one.
    let inputs = vec![(vec![3, 5, 6, 7], random(&mut rng(3), 630))];
    grad_check(b, &inputs, |v| ops::dropout(&v[0], 0.3, 1234), SMOOTH);
}

fn linear<B: Backend>(b: &B) {
    let mut r = rng(4);
    let inputs = vec![
        (vec![3, 7], random(&mut r, 21)),
        (vec![5, 7], random(&mut r, 35)),
        (vec![5], random(&mut r, 5)),
    ];
    grad_check(b, &inputs, |v| ops::linear(&v[0], &v[1], Some(&v[2])), SMOOTH);
}

fn flatten<B: Backend>(b: &B) {
    let inputs = vec![(vec![2, 3, 5, 7], random(&mut rng(5), 210))];
    grad_check(b, &inputs, |v| ops::flatten(&v[0]), SMOOTH);
}

fn concat_channels<B: Backend>(b: &B) {
    let mut r = rng(6);
    let inputs = vec![
        (vec![2, 3, 5, 6], random(&mut r, 180)),
        (vec![2, 1, 5, 6], random(&mut r, 60)),
        (vec![2, 4, 5, 6], random(&mut r, 240)),
    ];
    grad_check(b, &inputs, |v| ops::concat_channels(&[&v[0], &v[1], &v[2]]), SMOOTH);
}

fn cross_entropy<B: Backend>(b: &B) {
    let labels = [3, 0, 9, 4, 4];
    let inputs = vec![(vec![5, 10], random(&mut rng(7), 50).iter().map(|v| v * 3.0).collect())];
    grad_check(b, &inputs, |v| Ok(ops::cross_entropy(&v[0], &labels)?.0), SMOOTH);
}

/// Label smoothing: the loss is PyTorch's `cross_entropy(..., label_smoothing=eps)` (checked
/// against the formula in f64) and its gradient matches finite differences.
fn cross_entropy_smoothed<B: Backend>(b: &B) {
    let labels = [3, 0, 9, 4, 4];
    let logits: Vec<f32> = random(&mut rng(9), 50).iter().map(|v| v * 3.0).collect();
    for eps in [0.1f32, 0.35] {
        let inputs = vec![(vec![5, 10], logits.clone())];
        grad_check(b, &inputs, |v| Ok(ops::cross_entropy_smoothed(&v[0], &labels, eps)?.0), SMOOTH);
        let x = Var::constant(tensor(b, &[5, 10], &logits));
        let (loss, correct) = ops::cross_entropy_smoothed(&x, &labels, eps).unwrap();
        let mut want = 0.0f64;
        for (row, &label) in logits.chunks(10).zip(&labels) {
            let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            let nll = |k: usize| lse - row[k] as f64;
            want += (1.0 - eps as f64) * nll(label) + eps as f64 / 10.0 * (0..10).map(nll).sum::<f64>();
        }
        want /= 5.0;
        let got = loss.value().item().unwrap() as f64;
        assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "eps {eps}: {got} vs {want}");
        let plain = ops::cross_entropy(&x, &labels).unwrap().1.item().unwrap();
        assert_eq!(correct.item().unwrap(), plain, "the correct count is against the true labels");
    }
    assert!(ops::cross_entropy_smoothed(&Var::constant(tensor(b, &[5, 10], &logits)), &labels, 1.0).is_err());
}

/// `sum_i w_i x_i` and its gradient, on an odd shape.
fn weighted_sum<B: Backend>(b: &B) {
    let mut r = rng(10);
    let inputs = vec![
        (vec![3, 7], random(&mut r, 21)),
        (vec![3, 7], random(&mut r, 21)),
        (vec![3, 7], random(&mut r, 21)),
    ];
    grad_check(
        b,
        &inputs,
        |v| {
            let s = ops::weighted_sum(&[(0.5, &v[0]), (-2.0, &v[1]), (3.25, &v[2])])?;
            // A non-linear head, so each input's gradient differs from its weight times a constant.
            ops::relu(&s)
        },
        SMOOTH,
    );
    let (a, c) =
        (Var::constant(tensor(b, &[2], &[1.0, 2.0])), Var::constant(tensor(b, &[3], &[1.0, 2.0, 3.0])));
    assert!(ops::weighted_sum(&[(1.0, &a), (1.0, &c)]).is_err());
}

/// One value feeding several consumers: gradients from every path are summed.
fn fan_out_accumulates<B: Backend>(b: &B) {
    let inputs = vec![(vec![2, 3, 4, 5], away_from_zero(&mut rng(8), 120))];
    grad_check(
        b,
        &inputs,
        |v| {
            let x: &Var<B> = &v[0];
            let r = ops::relu(x)?;
            ops::concat_channels(&[x, &r, x])
        },
        SMOOTH,
    );
}

backend_tests!(
    conv2d,
    conv2d_im2col_path_for_1x1,
    conv2d_winograd,
    conv2d_relu_shared,
    max_pool2d,
    avg_pool2d,
    global_avg_pool2d,
    relu,
    dropout,
    linear,
    flatten,
    concat_channels,
    cross_entropy,
    cross_entropy_smoothed,
    weighted_sum,
    fan_out_accumulates,
);
