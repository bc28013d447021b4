//! Modules own parameters and name them as PyTorch's `state_dict()` would.
mod conv;
mod dropout;
mod linear;
mod pool;
mod sequential;

pub use conv::Conv2d;
pub use dropout::Dropout;
pub use linear::{Flatten, Linear};
pub use pool::{AvgPool2d, GlobalAvgPool2d, MaxPool2d};
pub use sequential::{Relu, Sequential};

use crate::ops::ConvRelu;
use autograd::Var;
use tensor::{Backend, Result, Window};

/// Train or eval, and the counter-based source of dropout seeds (its state is two integers, so
/// a checkpoint can store it and a resumed run draws the same masks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mode {
    train: bool,
    seed: u64,
    draws: u64,
}

impl Mode {
    /// Training mode: dropout is active, its seeds derived from `seed` and the count of seeds
    /// already drawn (`draws`: 0 for a fresh run, the saved [`Mode::draws`] to resume one).
    pub fn train(seed: u64, draws: u64) -> Mode {
        Mode { train: true, seed, draws }
    }
    /// Evaluation mode: dropout is the identity and no seeds are drawn.
    pub fn eval() -> Mode {
        Mode { train: false, seed: 0, draws: 0 }
    }
    /// Whether this is training mode.
    pub fn is_train(&self) -> bool {
        self.train
    }
    /// The base seed that every drawn seed is derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// How many seeds were drawn so far.
    pub fn draws(&self) -> u64 {
        self.draws
    }
    /// A fresh seed for one random op.
    pub fn next_seed(&mut self) -> u64 {
        self.draws += 1;
        self.seed ^ self.draws.wrapping_mul(0xD1B5_4A32_D192_ED03)
    }
}

/// A layer or a network of layers on backend `B`: a forward pass over [`Var`]s, the parameters it
/// owns with their `state_dict()` names, and a description for summaries (PyTorch's `nn.Module`).
///
/// `Send + Sync`, as their parameters: a model can move to, and be shared with, other threads.
pub trait Module<B: Backend>: Send + Sync {
    /// The output for input `x`, recorded in the autograd graph when gradients are enabled.
    /// `mode` says train or eval and hands out dropout seeds. Errors when `x` does not fit the
    /// layer (its rank, channels or spatial size).
    fn forward(&self, x: &Var<B>, mode: &mut Mode) -> Result<Var<B>>;
    /// Parameters with their `state_dict()` names relative to this module.
    fn parameters(&self) -> Vec<(String, Var<B>)> {
        Vec::new()
    }
    /// A one-line description for summaries, e.g. `Conv2d(1, 96, kernel=11x11, stride=4)`.
    fn describe(&self) -> String;
    /// Named sub-modules, for summaries that list layers one by one.
    fn children(&self) -> Vec<(String, &dyn Module<B>)> {
        Vec::new()
    }
    /// Whether this layer is a ReLU, which the layer before it may fuse (`forward_relu`).
    fn is_relu(&self) -> bool {
        false
    }
    /// `relu(forward(x))` computed as one op, or `None` when this layer has no fused form.
    fn forward_relu(&self, _x: &Var<B>, _mode: &mut Mode) -> Result<Option<Var<B>>> {
        Ok(None)
    }
    /// The window of a max-pooling layer, which the layers before it may fuse
    /// (`forward_max_pool`, [`ops::conv2d_relu_chain`](crate::ops::conv2d_relu_chain)); `None`
    /// for any other layer.
    fn max_pool_window(&self) -> Option<Window> {
        None
    }
    /// A convolution's parameters, for a [`Sequential`] to run it with the ReLU after it and
    /// the convolutions and ReLUs around it as one op
    /// ([`ops::conv2d_relu_chain`](crate::ops::conv2d_relu_chain)); `None` for other layers.
    fn conv_relu(&self) -> Option<ConvRelu<'_, B>> {
        None
    }
    /// `max_pool2d(forward(x), pool)` with the pooling fused into this layer's last op, or
    /// `None` when there is no such form (decided before anything runs: a [`Sequential`] ending
    /// in convolutions each followed by a ReLU has one).
    fn forward_max_pool(&self, _x: &Var<B>, _pool: Window, _mode: &mut Mode) -> Result<Option<Var<B>>> {
        Ok(None)
    }
}

/// Prefixes every parameter name of `module` with `prefix.`.
pub fn prefixed<B: Backend>(prefix: &str, module: &dyn Module<B>) -> Vec<(String, Var<B>)> {
    module.parameters().into_iter().map(|(n, v)| (format!("{prefix}.{n}"), v)).collect()
}
