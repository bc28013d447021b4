//! GoogLeNet as in d2l section 8.4 (1-channel 96x96 inputs): five blocks and a linear head.
use crate::{Inception, IN_CHANNELS};
use layers::{Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Relu, Sequential, WeightInit};
use rand::Rng;
use tensor::{Backend, Result, Window};

/// (in_channels, c1, c2, c3, c4) of one Inception block.
type Spec = (usize, usize, (usize, usize), (usize, usize), usize);

const B3: [Spec; 2] = [(192, 64, (96, 128), (16, 32), 32), (256, 128, (128, 192), (32, 96), 64)];
const B4: [Spec; 5] = [
    (480, 192, (96, 208), (16, 48), 64),
    (512, 160, (112, 224), (24, 64), 64),
    (512, 128, (128, 256), (24, 64), 64),
    (512, 112, (144, 288), (32, 64), 64),
    (528, 256, (160, 320), (32, 128), 128),
];
const B5: [Spec; 2] = [(832, 256, (160, 320), (32, 128), 128), (832, 384, (192, 384), (48, 128), 128)];

/// 3x3 stride-2 max pool, padded so the size halves (rounding up).
fn halve() -> MaxPool2d {
    MaxPool2d(Window::square(3, 2, 1))
}

fn inceptions<B: Backend>(
    backend: &B,
    specs: &[Spec],
    init: WeightInit,
    rng: &mut impl Rng,
) -> Result<Sequential<B>> {
    let mut block = Sequential::new();
    for &(i, c1, c2, c3, c4) in specs {
        block = block.add(Inception::new(backend, i, c1, c2, c3, c4, init, rng)?);
    }
    Ok(block)
}

/// GoogLeNet for 1-channel inputs; the blocks are children 0..=4 and the head child 5, so
/// names read `0.0.weight`, `2.0.p1_1.weight`, ..., `5.weight` as in PyTorch.
pub fn googlenet<B: Backend>(
    backend: &B,
    classes: usize,
    init: WeightInit,
    rng: &mut impl Rng,
) -> Result<Sequential<B>> {
    let b1 = Sequential::new()
        .add(Conv2d::new(backend, IN_CHANNELS, 64, 7, 2, 3, init, rng)?)
        .add(Relu)
        .add(halve());
    let b2 = Sequential::new()
        .add(Conv2d::new(backend, 64, 64, 1, 1, 0, init, rng)?)
        .add(Relu)
        .add(Conv2d::new(backend, 64, 192, 3, 1, 1, init, rng)?)
        .add(Relu)
        .add(halve());
    let b3 = inceptions(backend, &B3, init, rng)?.add(halve());
    let b4 = inceptions(backend, &B4, init, rng)?.add(halve());
    let b5 = inceptions(backend, &B5, init, rng)?.add(GlobalAvgPool2d).add(Flatten);
    let head = Linear::new(backend, 1024, classes, init, rng)?;
    Ok(Sequential::new().add(b1).add(b2).add(b3).add(b4).add(b5).add(head))
}
