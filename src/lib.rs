//! # convnet
//!
//! A deep-learning engine written from scratch in Rust that trains convolutional networks end to
//! end: tensors and a [`Backend`](tensor::Backend) trait with a CPU backend (rayon, an AVX-512
//! GEMM of its own) and a CUDA backend (its own kernels), reverse-mode autograd, layers and
//! optimizers, d2l's NiN and GoogLeNet, and what training them on Fashion-MNIST needs (data,
//! checkpoints). This crate is the front door: add it, `use convnet::prelude::*`, and build.
//!
//! ```
//! use convnet::prelude::*;
//!
//! # fn main() -> convnet::Result<()> {
//! let b = Cpu;
//! let mut rng = StdRng::seed_from_u64(0);
//! // A small CNN: conv, ReLU, pool, then a linear classifier.
//! let net = Sequential::new()
//!     .add(Conv2d::new(&b, 1, 8, 3, 1, 1, WeightInit::XavierUniform, &mut rng)?)
//!     .add(Relu)
//!     .add(MaxPool2d(Window::square(2, 2, 0)))
//!     .add(Flatten)
//!     .add(Linear::new(&b, 8 * 14 * 14, 10, WeightInit::XavierUniform, &mut rng)?);
//! let mut opt = Sgd::new(net.parameters(), 0.1, 0.9, 0.0);
//! // One step on a batch of two 28x28 images.
//! let x = Var::constant(Tensor::zeros(&b, [2, 1, 28, 28])?);
//! let (loss, _correct) = ops::cross_entropy(&net.forward(&x, &mut Mode::train(0, 0))?, &[3, 7])?;
//! opt.zero_grad();
//! loss.backward()?;
//! opt.step()?;
//! assert!(loss.value().item()? > 0.0);
//! # Ok(())
//! # }
//! ```
//!
//! The crates behind it, each usable alone: [`tensor`] (storage, shapes, the backend trait, the
//! CPU backend), [`autograd`] (`Var` and backward), [`layers`] (ops with their backward, modules,
//! initializers, optimizers), [`models`] (NiN, GoogLeNet, summaries), [`cuda`] (the GPU backend),
//! [`train`] (Fashion-MNIST, checkpoints, the training loop of the `train` command).

pub use autograd;
pub use cuda;
pub use layers;
pub use models;
/// The random numbers the initializers take (re-exported so a user's version cannot disagree).
pub use rand;
pub use tensor;
pub use train;

pub use tensor::{Error, Result};

/// What building and training a model needs, in one import.
pub mod prelude {
    pub use autograd::{no_grad, NoGradGuard, Var};
    pub use cuda::{Cuda, Precision};
    pub use layers::{
        ops, Adam, AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Mode, Module,
        Optimizer, Relu, Sequential, Sgd, WeightInit,
    };
    pub use models::ModelKind;
    pub use rand::rngs::StdRng;
    pub use rand::SeedableRng;
    pub use tensor::{Backend, Cpu, Error, Result, Shape, Tensor, Window};
    pub use train::checkpoint::{load as load_checkpoint, save_atomic as save_checkpoint, Checkpoint};
    pub use train::data::{batches, load_split, locate, Batch, Dataset, Split};
}
