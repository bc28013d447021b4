//! Network in Network (Lin et al., 2013) as in d2l section 8.3.
use crate::IN_CHANNELS;
use layers::{Conv2d, Dropout, Flatten, GlobalAvgPool2d, MaxPool2d, Relu, Sequential, WeightInit};
use rand::Rng;
use tensor::{Backend, Result, Window};

/// A k x k convolution followed by two 1x1 convolutions (per-pixel MLPs), each with a ReLU:
/// children 0, 2, 4 hold the parameters, as in d2l's `nn.Sequential`.
#[allow(clippy::too_many_arguments)]
pub fn nin_block<B: Backend>(
    backend: &B,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    init: WeightInit,
    rng: &mut impl Rng,
) -> Result<Sequential<B>> {
    Ok(Sequential::new()
        .add(Conv2d::new(backend, in_channels, out_channels, kernel, stride, padding, init, rng)?)
        .add(Relu)
        .add(Conv2d::new(backend, out_channels, out_channels, 1, 1, 0, init, rng)?)
        .add(Relu)
        .add(Conv2d::new(backend, out_channels, out_channels, 1, 1, 0, init, rng)?)
        .add(Relu))
}

/// NiN for 1-channel inputs (d2l trains it at 224x224). The last block has one channel per
/// class and global average pooling replaces the fully connected head.
pub fn nin<B: Backend>(
    backend: &B,
    classes: usize,
    init: WeightInit,
    rng: &mut impl Rng,
) -> Result<Sequential<B>> {
    let pool = || MaxPool2d(Window::square(3, 2, 0));
    Ok(Sequential::new()
        .add(nin_block(backend, IN_CHANNELS, 96, 11, 4, 0, init, rng)?)
        .add(pool())
        .add(nin_block(backend, 96, 256, 5, 1, 2, init, rng)?)
        .add(pool())
        .add(nin_block(backend, 256, 384, 3, 1, 1, init, rng)?)
        .add(pool())
        .add(Dropout::new(0.5)?)
        .add(nin_block(backend, 384, classes, 3, 1, 1, init, rng)?)
        .add(GlobalAvgPool2d)
        .add(Flatten))
}
