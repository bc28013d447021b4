//! The networks of d2l's chapter 8 (NiN, GoogLeNet), built from `layers` modules with parameter
//! names equal to PyTorch's `state_dict()` of d2l's code, and a Keras-style summary.
//!
//! Each network is a [`layers::Sequential`] of blocks, so it runs on any `tensor::Backend` and
//! its parameters carry the names (`0.0.weight`, `2.0.p1_1.bias`, ...) and shapes of the PyTorch
//! model, which lets checkpoints move between the two. [`nin`] and [`googlenet`] build one for a
//! given class count; [`build`] builds one by [`ModelKind`] for Fashion-MNIST (one channel, ten
//! classes) from a seed. [`Inception`] is GoogLeNet's block, a [`layers::Module`] of its own.
//! [`summary()`] runs one forward pass on zeros and tabulates every layer's output shape and
//! parameter count; [`parameter_count`] adds up a parameter list.
//!
//! Building GoogLeNet on the CPU and checking it against d2l's figures:
//!
//! ```rust
//! use convnet_models::{build, parameter_count, summary, ModelKind};
//! use layers::{Module, WeightInit};
//! use tensor::Cpu;
//!
//! # fn main() -> tensor::Result<()> {
//! let kind = ModelKind::GoogLeNet;
//! let model = build(kind, &Cpu, WeightInit::XavierUniform, 0)?;
//! assert_eq!(parameter_count(&model.parameters()), 5_977_530);
//!
//! // One 96x96 grey image, d2l's input size for GoogLeNet.
//! let size = kind.default_resize();
//! let s = summary(&model, &Cpu, [1, 1, size, size])?;
//! let blocks: Vec<Vec<usize>> = s.top_level().map(|row| row.output.clone()).collect();
//! assert_eq!(blocks[0], [64, 24, 24]);
//! assert_eq!(s.output, [10]);
//! assert_eq!(s.total_params, 5_977_530);
//! println!("{s}");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
mod googlenet;
mod inception;
mod nin;
mod summary;

pub use googlenet::googlenet;
pub use inception::Inception;
pub use nin::{nin, nin_block};
pub use summary::{summary, Row, Summary};

use autograd::Var;
use layers::{Sequential, WeightInit};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::fmt;
use std::str::FromStr;
use tensor::{bail, Backend, Error, Result};

/// Fashion-MNIST: one grey channel, ten classes. The input channels of every network here.
pub const IN_CHANNELS: usize = 1;
/// The classes [`build`]'s networks output scores for: Fashion-MNIST's ten.
pub const CLASSES: usize = 10;

/// The networks this crate builds, by name (`"nin"`, `"googlenet"`: its `Display` and
/// `FromStr`, which ignores case and surrounding spaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Network in Network, d2l section 8.3 ([`nin`]).
    Nin,
    /// GoogLeNet, d2l section 8.4 ([`googlenet`]).
    GoogLeNet,
}

impl ModelKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ModelKind; 2] = [ModelKind::Nin, ModelKind::GoogLeNet];

    /// The lower-case name that `Display` prints and `FromStr` parses.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Nin => "nin",
            ModelKind::GoogLeNet => "googlenet",
        }
    }
    /// The input size d2l trains at.
    pub fn default_resize(self) -> usize {
        match self {
            ModelKind::Nin => 224,
            ModelKind::GoogLeNet => 96,
        }
    }
    /// The smallest square input every layer accepts. NiN: the 11x11/4 conv and three 3x3/2
    /// pools need 67 -> 15 -> 7 -> 3 -> 1. GoogLeNet pads every window, so any size >= 1 fits.
    /// (Tests check both sides of each bound against a real forward.)
    pub fn min_resize(self) -> usize {
        match self {
            ModelKind::Nin => 67,
            ModelKind::GoogLeNet => 1,
        }
    }
    /// A clear error before any work when `resize` is too small for this network.
    pub fn check_resize(self, resize: usize) -> Result<()> {
        let min = self.min_resize();
        if resize < min {
            bail!(
                InvalidArgument,
                "{self} needs inputs of at least {min}x{min}, got {resize}x{resize}; use a larger resize"
            );
        }
        Ok(())
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        match ModelKind::ALL.into_iter().find(|k| k.name() == wanted) {
            Some(k) => Ok(k),
            None => bail!(InvalidArgument, "unknown model `{s}`; expected one of: nin, googlenet"),
        }
    }
}

/// Builds `kind` for 1-channel inputs and 10 classes, every random draw from `seed`. d2l's
/// recipe is `WeightInit::XavierUniform` (biases always keep PyTorch's default).
pub fn build<B: Backend>(kind: ModelKind, backend: &B, init: WeightInit, seed: u64) -> Result<Sequential<B>> {
    let mut rng = StdRng::seed_from_u64(seed);
    match kind {
        ModelKind::Nin => nin(backend, CLASSES, init, &mut rng),
        ModelKind::GoogLeNet => googlenet(backend, CLASSES, init, &mut rng),
    }
}

/// The number of scalars in `params` (as `sum(p.numel() for p in model.parameters())`).
pub fn parameter_count<B: Backend>(params: &[(String, Var<B>)]) -> usize {
    params.iter().map(|(_, p)| p.shape().numel()).sum()
}
