//! A small CNN of your own, trained on Fashion-MNIST on the CPU.
//!
//!     cargo run --release --example custom_cnn             # 2 epochs over all 60,000 images
//!     cargo run --release --example custom_cnn -- 20       # only the first 20 batches of each epoch
use convnet::prelude::*;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let batches_per_epoch: Option<usize> = std::env::args().nth(1).map(|n| n.parse()).transpose()?;
    let b = Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let init = WeightInit::XavierUniform;
    // 28x28 -> conv 32 -> pool -> conv 64 -> pool -> 7x7x64 -> 128 -> 10
    let net = Sequential::new()
        .add(Conv2d::new(&b, 1, 32, 3, 1, 1, init, &mut rng)?)
        .add(Relu)
        .add(MaxPool2d(Window::square(2, 2, 0)))
        .add(Conv2d::new(&b, 32, 64, 3, 1, 1, init, &mut rng)?)
        .add(Relu)
        .add(MaxPool2d(Window::square(2, 2, 0)))
        .add(Flatten)
        .add(Linear::new(&b, 64 * 7 * 7, 128, init, &mut rng)?)
        .add(Relu)
        .add(Dropout::new(0.3)?)
        .add(Linear::new(&b, 128, 10, init, &mut rng)?);
    let mut opt = Sgd::new(net.parameters(), 0.05, 0.9, 5e-4);

    // The data: found on disk (or downloaded once), 28x28 images kept as they are.
    let dir = locate(None, &[Split::Train, Split::Test])?;
    let (train, test) = (Arc::new(load_split(&dir, Split::Train)?), Arc::new(load_split(&dir, Split::Test)?));
    let mut mode = Mode::train(0, 0);
    for epoch in 0..2 {
        let (mut loss_sum, mut seen) = (0.0, 0);
        let limit = batches_per_epoch.map(|n| n * 64);
        for batch in batches(train.clone(), 64, 28, Some(epoch), limit) {
            let x = Var::constant(Tensor::from_slice(&b, [batch.len, 1, 28, 28], &batch.images)?);
            let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut mode)?, &batch.labels)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            loss_sum += loss.value().item()? as f64 * batch.len as f64;
            seen += batch.len;
        }
        // Test accuracy, without recording a graph, dropout off.
        let correct = no_grad(|| -> anyhow::Result<f64> {
            let mut correct = 0.0;
            for batch in batches(test.clone(), 500, 28, None, limit) {
                let x = Var::constant(Tensor::from_slice(&b, [batch.len, 1, 28, 28], &batch.images)?);
                correct +=
                    ops::cross_entropy(&net.forward(&x, &mut Mode::eval())?, &batch.labels)?.1.item()? as f64;
            }
            Ok(correct)
        })?;
        let acc = correct / limit.unwrap_or(test.len()).min(test.len()) as f64;
        println!("epoch {}: loss {:.4}, test acc {acc:.4}", epoch + 1, loss_sum / seen as f64);
    }
    Ok(())
}
