//! Writing a new differentiable op: leaky ReLU, its forward and its backward side by side, from
//! the backend's kernels (so it runs on every backend), checked against finite differences.
//!
//!     cargo run --release --example new_op
use convnet::prelude::*;
use rand::Rng;

/// `y = x` where `x > 0`, `y = slope * x` elsewhere.
fn leaky_relu<B: Backend>(x: &Var<B>, slope: f32) -> Result<Var<B>> {
    let b = x.backend();
    let xv = x.value();
    // Forward: y = (1 - slope) * relu(x) + slope * x.
    let mut r = xv.uninit_like()?;
    b.relu_forward(xv.storage(), r.storage_mut()?)?;
    let mut y = xv.clone();
    b.scale(y.storage_mut()?, slope)?; // copies first: x's storage is shared
    b.axpy(1.0 - slope, r.storage(), y.storage_mut()?)?;
    // Backward: dx = dy where x > 0, slope * dy elsewhere = (1 - slope) * relu'(x) dy + slope * dy.
    Ok(Var::from_op(
        "leaky_relu",
        y,
        &[x],
        Box::new(move |dy, _needs| {
            let mut masked = dy.uninit_like()?;
            b.relu_backward(r.storage(), dy.storage(), masked.storage_mut()?)?;
            let mut dx = dy.clone();
            b.scale(dx.storage_mut()?, slope)?;
            b.axpy(1.0 - slope, masked.storage(), dx.storage_mut()?)?;
            Ok(vec![Some(dx)])
        }),
    ))
}

fn main() -> anyhow::Result<()> {
    let b = Cpu;
    let mut rng = StdRng::seed_from_u64(7);
    // An odd shape, values away from the kink at 0 (where the derivative jumps).
    let shape = [3, 5, 7];
    let n = 3 * 5 * 7;
    let xs: Vec<f32> = (0..n)
        .map(|_| {
            let v: f32 = rng.gen_range(0.05..1.0);
            if rng.gen() {
                v
            } else {
                -v
            }
        })
        .collect();
    let w: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();

    // The analytic gradient of sum(w * leaky_relu(x)).
    let x = Var::parameter(Tensor::from_slice(&b, shape, &xs)?);
    let y = leaky_relu(&x, 0.1)?;
    y.backward_with(Tensor::from_slice(&b, shape, &w)?)?;
    let analytic = x.grad().expect("x requires a gradient").to_vec()?;

    // Central differences in f64 on the same function.
    let f = |v: &[f32]| -> anyhow::Result<f64> {
        let y = leaky_relu(&Var::constant(Tensor::from_slice(&b, shape, v)?), 0.1)?.value().to_vec()?;
        Ok(y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum())
    };
    let h = 1e-3f32;
    let mut worst = 0.0f64;
    for i in 0..n {
        let (mut up, mut down) = (xs.clone(), xs.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (f(&up)? - f(&down)?) / (2.0 * h as f64);
        worst = worst.max((numeric - analytic[i] as f64).abs());
    }
    println!("leaky_relu on {shape:?}: largest |analytic - numeric| gradient difference {worst:.2e}");
    anyhow::ensure!(worst < 1e-3, "the backward disagrees with finite differences");
    println!("gradient check passed");
    Ok(())
}
