//! Differentiable ops (forward and backward side by side), modules that own parameters,
//! initializers and optimizers — all written once against `tensor::Backend`.
pub mod init;
pub mod modules;
pub mod ops;
pub mod optim;

pub use init::WeightInit;
pub use modules::{
    AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Mode, Module, Relu, Sequential,
};
pub use optim::{Adam, Optimizer, Sgd};
