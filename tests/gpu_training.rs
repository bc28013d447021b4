//! A few NiN training steps on the GPU give the CPU's losses from the same initial weights and
//! batches (dropout off), in both GPU precisions. Skipped, saying why, when no GPU works.
mod common;
use autograd::Var;
use common::*;
use cuda::Precision;
use layers::{ops, Mode, Module, Optimizer, Sgd, WeightInit};
use models::ModelKind;
use tensor::{Backend, Cpu, Tensor};

/// Losses of `steps` SGD steps of NiN at 67x67 on fixed random batches.
fn losses<B: Backend>(b: &B, steps: usize) -> Vec<f32> {
    let net = models::build(ModelKind::Nin, b, WeightInit::XavierUniform, 5).unwrap();
    let mut opt = Sgd::new(net.parameters(), 0.05, 0.9, 1e-4);
    let mut r = rng(50);
    // Eval mode: dropout off, so both devices compute the same function.
    let mut mode = Mode::eval();
    (0..steps)
        .map(|step| {
            let images: Vec<f32> = random(&mut r, 8 * 67 * 67).iter().map(|v| v.abs()).collect();
            let labels: Vec<usize> = (0..8).map(|i| (i * 3 + step) % 10).collect();
            let x = Var::constant(Tensor::from_slice(b, [8, 1, 67, 67], &images).unwrap());
            let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
            opt.zero_grad();
            loss.backward().unwrap();
            opt.step().unwrap();
            loss.value().item().unwrap()
        })
        .collect()
}

/// In FP32 the GPU follows the CPU's losses to 1e-3; in TF32 (convolutions on tensor cores, the
/// GPU's default) to 2e-2, as 10-bit operands allow over four steps; and a TF32 run repeated gives
/// the same losses bit for bit.
#[test]
fn nin_steps_match_the_cpu() {
    let Some(gpu) = gpu() else { return skip_gpu("nin_steps_match_the_cpu") };
    let cpu = losses(&Cpu, 4);
    for (precision, tolerance) in [(Precision::Fp32, 1e-3), (Precision::Tf32, 2e-2)] {
        let cuda = losses(&gpu.with_precision(precision), 4);
        for (step, (a, b)) in cpu.iter().zip(&cuda).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * a.abs().max(1.0),
                "{precision:?}, step {step}: cpu loss {a} vs gpu {b}"
            );
        }
    }
    let tf32 = gpu.with_precision(Precision::Tf32);
    let (first, second) = (losses(&tf32, 2), losses(&tf32, 2));
    assert_eq!(
        first.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        second.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        "TF32 steps repeated"
    );
}
