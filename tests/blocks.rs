//! Whole-block gradient checks through autograd: a NiN block and an Inception block, each
//! followed by global average pooling and the loss.
mod common;
use autograd::Var;
use common::*;
use layers::ops;
use tensor::{Backend, Result, Window};

fn conv_relu<B: Backend>(x: &Var<B>, w: &Var<B>, b: &Var<B>, stride: usize, pad: usize) -> Result<Var<B>> {
    ops::relu(&ops::conv2d(x, w, Some(b), (stride, stride), (pad, pad))?)
}

/// Global average pooling to per-class logits; the check adds the loss.
fn gap<B: Backend>(h: &Var<B>) -> Result<Var<B>> {
    ops::flatten(&ops::global_avg_pool2d(h)?)
}

/// A step 3x smaller than the per-op checks' makes ReLU switches inside the step rarer; the
/// loss is recomputed in f64 from the f32 logits, so the smaller step stays above the noise.
const BLOCK: Check = Check { step: 3e-3, max_kink_share: 0.05 };

/// Shapes and values of the inputs: x, then (weight, bias) per conv.
fn inputs(seed: u64, x: [usize; 4], convs: &[[usize; 4]]) -> Vec<(Vec<usize>, Vec<f32>)> {
    let mut r = rng(seed);
    // Distinct, evenly spaced inputs: no near-ties for a max pool that reads them directly.
    let mut v = vec![(x.to_vec(), distinct(&mut r, x.iter().product()))];
    for w in convs {
        v.push((w.to_vec(), random(&mut r, w.iter().product())));
        v.push((vec![w[0]], random(&mut r, w[0])));
    }
    v
}

fn nin_block<B: Backend>(b: &B) {
    // 5x5 stride-2 conv -> ReLU -> 1x1 -> ReLU -> 1x1 -> ReLU -> 3x3/2 max pool, 5 classes.
    let inp = inputs(21, [2, 3, 9, 9], &[[4, 3, 5, 5], [4, 4, 1, 1], [5, 4, 1, 1]]);
    let labels = [1, 4];
    check_with_head(
        b,
        &inp,
        |v| {
            let h = conv_relu(&v[0], &v[1], &v[2], 2, 2)?;
            let h = conv_relu(&h, &v[3], &v[4], 1, 0)?;
            let h = conv_relu(&h, &v[5], &v[6], 1, 0)?;
            gap(&ops::max_pool2d(&h, Window::square(3, 2, 0))?)
        },
        Head::CrossEntropy(&labels),
        BLOCK,
    );
}

fn inception_block<B: Backend>(b: &B) {
    // Branches: 1x1 (2) | 1x1 (2) -> 3x3 (3) | 1x1 (1) -> 5x5 (2) | 3x3/1 max pool -> 1x1 (2),
    // concatenated to 9 channels = 9 classes.
    let inp = inputs(
        22,
        [2, 4, 6, 5],
        &[[2, 4, 1, 1], [2, 4, 1, 1], [3, 2, 3, 3], [1, 4, 1, 1], [2, 1, 5, 5], [2, 4, 1, 1]],
    );
    let labels = [7, 2];
    check_with_head(
        b,
        &inp,
        |v| {
            let x = &v[0];
            let p1 = conv_relu(x, &v[1], &v[2], 1, 0)?;
            let p2 = conv_relu(&conv_relu(x, &v[3], &v[4], 1, 0)?, &v[5], &v[6], 1, 1)?;
            let p3 = conv_relu(&conv_relu(x, &v[7], &v[8], 1, 0)?, &v[9], &v[10], 1, 2)?;
            let p4 = conv_relu(&ops::max_pool2d(x, Window::square(3, 1, 1))?, &v[11], &v[12], 1, 0)?;
            gap(&ops::concat_channels(&[&p1, &p2, &p3, &p4])?)
        },
        Head::CrossEntropy(&labels),
        BLOCK,
    );
}

backend_tests!(nin_block, inception_block);
