//! Checks written once, generic over the backend, and the macro that instantiates them for
//! every backend present.
#![allow(dead_code)]
pub mod shapes;

use autograd::{no_grad, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::{Backend, Result, Tensor};

/// Instantiates each named generic check `fn name<B: Backend>(b: &B)` as a test per backend:
/// `cpu::name` always, `cuda::name` on the GPU when one works (else it prints why it skipped).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            $(#[test] fn $name() { super::$name(&tensor::Cpu) })*
        }
        mod cuda {
            $(#[test] fn $name() {
                match $crate::common::gpu() {
                    Some(gpu) => super::$name(gpu),
                    None => $crate::common::skip_gpu(stringify!($name)),
                }
            })*
        }
    };
}

/// The GPU backend, opened once per test binary, or `None` when there is no usable GPU.
pub fn gpu() -> Option<&'static cuda::Cuda> {
    gpu_or_why().as_ref().ok()
}

/// The GPU backend, or the error `Cuda::new` gave (no driver, no device, a kernel module the
/// driver rejects...).
fn gpu_or_why() -> &'static std::result::Result<cuda::Cuda, String> {
    static GPU: std::sync::OnceLock<std::result::Result<cuda::Cuda, String>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| cuda::Cuda::new(0).map_err(|e| e.to_string()))
}

/// Whether a missing GPU fails the GPU tests instead of skipping them (`CONVNET_REQUIRE_GPU=1`:
/// on a GPU machine a broken backend must not pass as "skipped").
pub fn gpu_required() -> bool {
    std::env::var("CONVNET_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Says why a GPU test did not run: once per test binary on the real stderr (libtest captures
/// `eprintln!`, and a silent skip would read as a pass), and in the test's own output. Under
/// `CONVNET_REQUIRE_GPU=1` it fails the test with that reason instead.
pub fn skip_gpu(test: &str) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    let why = match gpu_or_why() {
        Err(e) => e.clone(),
        Ok(_) => "the GPU backend started, but this test found none".into(),
    };
    if gpu_required() {
        panic!("cuda::{test}: CONVNET_REQUIRE_GPU=1, but the GPU backend did not start: {why}");
    }
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "skipping the cuda:: tests of this binary: {why}");
    });
    eprintln!("skipping cuda::{test}: {why}");
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in (-1, 1).
pub fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// Values in ±[0.1, 1]: at least `0.1` from ReLU's kink, so a perturbation of `STEP` never
/// crosses it.
pub fn away_from_zero(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(0.1f32..1.0) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 }).collect()
}

/// Distinct values spaced 0.05 apart in random order, centred on zero: no max-pool ties, and a
/// perturbation of `STEP` never reorders two values.
pub fn distinct(rng: &mut StdRng, len: usize) -> Vec<f32> {
    use rand::seq::SliceRandom;
    let mut v: Vec<f32> = (0..len).map(|i| (i as f32 - len as f32 / 2.0) * 0.05).collect();
    v.shuffle(rng);
    v
}

pub fn tensor<B: Backend>(b: &B, shape: &[usize], data: &[f32]) -> Tensor<B> {
    Tensor::from_slice(b, shape, data).expect("test tensor")
}

pub fn param<B: Backend>(b: &B, shape: &[usize], data: &[f32]) -> Var<B> {
    Var::parameter(tensor(b, shape, data))
}

/// Finite-difference step. Central differences are exact for the linear ops (conv, pooling,
/// linear) up to f32 rounding; the rounding noise in the f64-accumulated objective is about
/// 1e-6, i.e. ~1e-4 in a gradient divided by 2h = 2e-2, well under the tolerance below. For
/// smooth ops (softmax) the O(h^2) truncation is ~1e-4 relative.
pub const STEP: f32 = 1e-2;
/// |analytic - numeric| <= REL * max(|a|, |n|) + abs, with abs = ABS_SHARE * (the input's
/// largest gradient) + ABS_FLOOR. REL is the 1e-2 the issue allows; the absolute part covers the
/// rounding noise above and scales with the gradients (a loss has small ones). An off-by-one in
/// stride or padding moves gradients by a large fraction of their size.
pub const REL: f64 = 1e-2;
pub const ABS_SHARE: f64 = 1e-3;
pub const ABS_FLOOR: f64 = 5e-5;

/// What the checked scalar is made of: the op's output weighted by fixed random values, or the
/// softmax cross-entropy of the output (logits) against labels.
pub enum Head<'a> {
    Weighted,
    CrossEntropy(&'a [usize]),
}

/// Finite-difference step and how many elements may sit on a kink.
#[derive(Clone, Copy)]
pub struct Check {
    pub step: f32,
    pub max_kink_share: f64,
}

/// Per-op checks: inputs chosen away from kinks, so none may be skipped.
pub const SMOOTH: Check = Check { step: STEP, max_kink_share: 0.0 };

/// Compares the analytic gradients of `sum(f(inputs) * w)` (w fixed random weights; or the
/// output itself when it is a single value) with central finite differences.
pub fn grad_check<B: Backend>(
    b: &B,
    inputs: &[(Vec<usize>, Vec<f32>)],
    f: impl Fn(&[Var<B>]) -> Result<Var<B>>,
    check: Check,
) {
    check_with_head(b, inputs, f, Head::Weighted, check)
}

/// Checks every input value: analytic gradients from backward (through the real loss op for
/// `Head::CrossEntropy`) against central differences of the same objective evaluated in f64 on
/// the host from the f32 outputs, which keeps rounding noise at the outputs' own precision.
/// Elements where the function is visibly not smooth (one-sided slopes disagree: a ReLU or
/// max-pool switch inside the step) are skipped; at most `max_kink_share` of them may be.
pub fn check_with_head<B: Backend>(
    b: &B,
    inputs: &[(Vec<usize>, Vec<f32>)],
    f: impl Fn(&[Var<B>]) -> Result<Var<B>>,
    head: Head,
    check: Check,
) {
    let vars: Vec<Var<B>> = inputs.iter().map(|(s, d)| param(b, s, d)).collect();
    let y = f(&vars).expect("forward");
    let out_shape = y.shape();
    let weights: Vec<f32> =
        if out_shape.numel() == 1 { vec![1.0] } else { random(&mut rng(99), out_shape.numel()) };
    match head {
        Head::Weighted => y.backward_with(tensor(b, out_shape.dims(), &weights)).expect("backward"),
        Head::CrossEntropy(labels) => {
            layers::ops::cross_entropy(&y, labels).expect("loss").0.backward().expect("backward")
        }
    }
    let head_value = |out: &[f32]| -> f64 {
        match head {
            Head::Weighted => out.iter().zip(&weights).map(|(&o, &w)| o as f64 * w as f64).sum(),
            Head::CrossEntropy(labels) => {
                let classes = out.len() / labels.len();
                let total: f64 = out
                    .chunks(classes)
                    .zip(labels)
                    .map(|(row, &l)| {
                        let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
                        let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                        lse - row[l] as f64
                    })
                    .sum();
                total / labels.len() as f64
            }
        }
    };
    let objective = |values: &[Vec<f32>]| -> f64 {
        let vars: Vec<Var<B>> = inputs.iter().zip(values).map(|((s, _), d)| param(b, s, d)).collect();
        head_value(&no_grad(|| f(&vars)).expect("forward").value().to_vec().expect("to_vec"))
    };
    let mut values: Vec<Vec<f32>> = inputs.iter().map(|(_, d)| d.clone()).collect();
    let base = objective(&values);
    let h = check.step as f64;
    let (mut checked, mut kinks) = (0usize, 0usize);
    for (i, var) in vars.iter().enumerate() {
        let analytic = var.grad().expect("input has a gradient").to_vec().unwrap();
        let largest = analytic.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(largest > 1e-4, "input {i}: gradient is all (near) zero, the check would prove nothing");
        let abs = ABS_SHARE * largest as f64 + ABS_FLOOR;
        for j in 0..analytic.len() {
            let orig = values[i][j];
            values[i][j] = orig + check.step;
            let plus = objective(&values);
            values[i][j] = orig - check.step;
            let minus = objective(&values);
            values[i][j] = orig;
            let (right, left) = ((plus - base) / h, (base - minus) / h);
            // A smooth function's one-sided slopes differ by about h * f'', far inside the
            // tolerance; a ReLU or max-pool switch within the step moves one of them.
            if (right - left).abs() > 2.0 * (REL * right.abs().max(left.abs()) + abs) {
                kinks += 1;
                continue;
            }
            let numeric = (plus - minus) / (2.0 * h);
            let a = analytic[j] as f64;
            let err = (a - numeric).abs();
            assert!(
                err <= REL * a.abs().max(numeric.abs()) + abs,
                "input {i} (shape {:?}) element {j}: analytic {a:.6} vs numeric {numeric:.6}",
                inputs[i].0
            );
            checked += 1;
        }
    }
    let total = checked + kinks;
    eprintln!("gradient check: {checked} values agree, {kinks} skipped at kinks");
    assert!(
        (kinks as f64) <= check.max_kink_share * total as f64,
        "{kinks} of {total} elements sat on a kink (allowed share {})",
        check.max_kink_share
    );
}
