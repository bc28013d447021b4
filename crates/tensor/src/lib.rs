//! Storage, shapes, the `Backend` trait and the CPU backend.
mod backend;
pub mod checks;
pub mod cpu;
mod error;
mod geometry;
pub mod meter;
mod plan;
mod shape;
mod tensor;
pub mod winograd;

pub use backend::{AdamStep, Backend, Gemm, SgdStep};
pub use cpu::Cpu;
pub use error::{Error, Result};
pub use geometry::{ConvGeometry, PoolGeometry, Window, MAX_POOL_PLANE};
pub use meter::Meter;
pub use plan::{ConvAlgorithm, ConvPlan};
pub use shape::Shape;
pub use tensor::{Reading, Tensor};
