//! Loading d2l's PyTorch weights and classifying pictures with them.
//!
//! In PyTorch, after training d2l's NiN or GoogLeNet:
//!
//!     from safetensors.torch import save_file
//!     save_file(net.state_dict(), "googlenet.safetensors")
//!
//! then here (a checkpoint of `train` works too):
//!
//!     cargo run --release --example pytorch_checkpoint -- googlenet.safetensors shirt.png boot.jpg
//!     cargo run --release --example pytorch_checkpoint -- googlenet.safetensors   # the first test images
use convnet::prelude::*;
use convnet::train::{predict, state, weights};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let file = args.next().ok_or_else(|| anyhow::anyhow!("usage: pytorch_checkpoint WEIGHTS [IMAGE...]"))?;
    let images: Vec<PathBuf> = args.collect();

    // The model is recognised from the tensors' names and shapes (d2l's state_dict names).
    let w = weights::load(&file, None)?;
    let b = Cpu;
    let net = convnet::models::build(w.model, &b, WeightInit::XavierUniform, 0)?;
    state::load_weights(&w.checkpoint, &net.parameters(), &b, &file)?;
    // A `train` checkpoint knows the size it was trained at; a PyTorch file gets d2l's.
    let side = w.meta.as_ref().map_or(w.model.default_resize(), |m| m.settings.resize);
    println!("{} weights from {}, inputs of {side}x{side}", w.model, file.display());

    // 28x28 grey images, light on black as Fashion-MNIST's: pictures prepared, or test images.
    let inputs: Vec<(String, Vec<u8>)> = if images.is_empty() {
        let test = load_split(&locate(None, &[Split::Test])?, Split::Test)?;
        (0..8)
            .map(|i| {
                (format!("test[{i}] ({})", predict::CLASSES[test.labels[i] as usize]), test.image(i).to_vec())
            })
            .collect()
    } else {
        images
            .iter()
            .map(|p| Ok((p.display().to_string(), predict::prepare(p, convnet::train::cli::Invert::Auto)?)))
            .collect::<anyhow::Result<_>>()?
    };

    // Resized as in training, one batch, no graph.
    let resizer = convnet::train::data::Resizer::new(28, 28, side, side);
    let mut x = vec![0.0f32; inputs.len() * side * side];
    for ((_, img), dst) in inputs.iter().zip(x.chunks_exact_mut(side * side)) {
        resizer.resize_u8_to_f32(img, dst);
    }
    let x = Var::constant(Tensor::from_slice(&b, [inputs.len(), 1, side, side], &x)?);
    let logits = no_grad(|| net.forward(&x, &mut Mode::eval()))?.value().to_vec()?;
    for ((name, _), row) in inputs.iter().zip(logits.chunks_exact(10)) {
        let (best, _) =
            row.iter().enumerate().fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
        let max = row[best];
        let p = 1.0 / row.iter().map(|&v| (v - max).exp()).sum::<f32>();
        println!("{name}: {} ({:.1}%)", predict::CLASSES[best], 100.0 * p);
    }
    Ok(())
}
