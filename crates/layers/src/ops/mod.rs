//! Differentiable ops: each computes its forward with backend kernels and records its backward
//! right beside it.
mod activation;
mod concat;
mod conv;
mod linear;
mod loss;
mod pool;
mod sum;
mod winograd;

pub use activation::{dropout, relu};
pub use concat::concat_channels;
pub use conv::{
    conv2d, conv2d_relu, conv2d_relu_chain, conv2d_relu_max_pool, conv2d_relu_shared, conv2d_with, ConvAlgo,
    ConvRelu,
};
pub use linear::{flatten, linear};
pub use loss::{cross_entropy, cross_entropy_smoothed};
pub use pool::{avg_pool2d, global_avg_pool2d, max_pool2d};
pub use sum::weighted_sum;

use tensor::Tensor;

/// A convolution's backward results: the input's and the weights' gradients, each when asked.
/// Here rather than in `conv.rs` so that `winograd.rs`, which `conv.rs` calls, needs nothing
/// from it.
type ConvGrads<B> = (Option<Tensor<B>>, Option<Tensor<B>>);
