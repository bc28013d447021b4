//! The same code on the GPU: a training step of GoogLeNet on the CUDA backend when a GPU works,
//! compared with the CPU's. Without a GPU it says why and stops.
//!
//!     cargo run --release --example gpu
use convnet::prelude::*;

/// One SGD step from the same weights and batch; returns the loss and the first weights after it.
fn step<B: Backend>(b: &B) -> anyhow::Result<(f32, Vec<f32>)> {
    let net = convnet::models::build(ModelKind::GoogLeNet, b, WeightInit::XavierUniform, 1)?;
    let mut opt = Sgd::new(net.parameters(), 0.1, 0.9, 0.0);
    let images: Vec<f32> = (0..8 * 96 * 96).map(|i| ((i * 7919) % 251) as f32 / 250.0).collect();
    let x = Var::constant(Tensor::from_slice(b, [8, 1, 96, 96], &images)?);
    // Dropout draws the same masks on every backend (a counter-based generator).
    let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut Mode::train(5, 0))?, &[0, 1, 2, 3, 4, 5, 6, 7])?;
    opt.zero_grad();
    loss.backward()?;
    opt.step()?;
    Ok((loss.value().item()?, net.parameters()[0].1.value().to_vec()?))
}

fn main() -> anyhow::Result<()> {
    let gpu = match Cuda::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("no GPU here ({e}); the CPU backend runs the same code:");
            let (loss, _) = step(&Cpu)?;
            println!("cpu: loss {loss:.6}");
            return Ok(());
        }
    };
    // FP32 everywhere, to compare with the CPU closely (the default, TF32, is PyTorch's).
    let exact = gpu.with_precision(Precision::Fp32);
    println!("{} ({})", exact.name(), exact.device_name());
    let (cpu_loss, cpu_w) = step(&Cpu)?;
    let (gpu_loss, gpu_w) = step(&exact)?;
    let worst = cpu_w.iter().zip(&gpu_w).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!(
        "loss: cpu {cpu_loss:.6}, gpu {gpu_loss:.6}; largest weight difference after the step {worst:.2e}"
    );
    // The order of the sums differs (the GPU splits long ones), so agreement is to rounding.
    anyhow::ensure!(
        (cpu_loss - gpu_loss).abs() <= 1e-3 * cpu_loss.abs() && worst < 1e-3,
        "the GPU disagrees with the CPU"
    );
    let (tf32_loss, _) = step(&gpu)?;
    println!("the same step in TF32 (tensor cores): loss {tf32_loss:.6}");
    Ok(())
}
