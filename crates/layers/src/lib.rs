//! Differentiable ops (forward and backward side by side), modules that own parameters,
//! initializers and optimizers — all written once against `tensor::Backend`.
//!
//! The pieces, from the bottom up:
//! - [`ops`]: functions of [`autograd::Var`]s (`conv2d`, `linear`, `max_pool2d`, `relu`,
//!   `cross_entropy`, ...). Each runs its forward with the backend's kernels and records its
//!   backward in the graph, so `loss.backward()` fills every parameter's gradient. Images are
//!   NCHW throughout.
//! - [`modules`]: the [`Module`] trait and the layers that implement it ([`Conv2d`], [`Linear`],
//!   the pools, [`Relu`], [`Dropout`], [`Flatten`], [`Sequential`]). A module owns its
//!   parameters and names them as PyTorch's `state_dict()` would (`0.weight`, `3.bias`, ...), so
//!   checkpoints map one to one. A [`Mode`] passed to `forward` says train or eval and seeds
//!   dropout.
//! - [`init`]: PyTorch's default initialization and Xavier-uniform ([`WeightInit`]), drawn from
//!   a caller's random number generator so a seed fixes a model.
//! - [`optim`]: [`Sgd`] and [`Adam`] behind the [`Optimizer`] trait, with PyTorch's update rules;
//!   the update itself is a backend kernel.
//!
//! One training step of a small CNN on the CPU:
//!
//! ```rust
//! use autograd::Var;
//! use convnet_layers::{
//!     ops, Conv2d, Flatten, Linear, MaxPool2d, Mode, Module, Optimizer, Relu, Sequential, Sgd, WeightInit,
//! };
//! use rand::{rngs::StdRng, SeedableRng};
//! use tensor::{Cpu, Tensor, Window};
//!
//! # fn main() -> tensor::Result<()> {
//! let mut rng = StdRng::seed_from_u64(0);
//! let init = WeightInit::XavierUniform;
//! // [N, 1, 8, 8] -> conv 3x3 pad 1 -> [N, 4, 8, 8] -> pool 2x2 -> [N, 4, 4, 4] -> [N, 64] -> [N, 3]
//! let net = Sequential::new()
//!     .add(Conv2d::new(&Cpu, 1, 4, 3, 1, 1, init, &mut rng)?)
//!     .add(Relu)
//!     .add(MaxPool2d(Window::square(2, 2, 0)))
//!     .add(Flatten)
//!     .add(Linear::new(&Cpu, 4 * 4 * 4, 3, init, &mut rng)?);
//! let names: Vec<String> = net.parameters().into_iter().map(|(name, _)| name).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "4.weight", "4.bias"]);
//!
//! // SGD with learning rate 0.1, momentum 0.9, no weight decay.
//! let mut opt = Sgd::new(net.parameters(), 0.1, 0.9, 0.0);
//! let pixels: Vec<f32> = (0..2 * 64).map(|i| (i % 7) as f32 / 7.0).collect();
//! let x = Var::constant(Tensor::from_slice(&Cpu, [2, 1, 8, 8], &pixels)?);
//! let logits = net.forward(&x, &mut Mode::train(0, 0))?;
//! assert_eq!(logits.shape().dims(), [2, 3]);
//!
//! let (loss, correct) = ops::cross_entropy(&logits, &[0, 2])?;
//! opt.zero_grad();
//! loss.backward()?;
//! opt.step()?;
//! println!("loss {:.4}, {} of 2 correct", loss.value().item()?, correct.item()?);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
pub mod init;
pub mod modules;
pub mod ops;
pub mod optim;

pub use init::WeightInit;
pub use modules::{
    AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Mode, Module, Relu, Sequential,
};
pub use optim::{Adam, Optimizer, Sgd};
