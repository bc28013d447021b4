//! Storage, shapes, the `Backend` trait and the CPU backend.
//!
//! A [`Tensor`] is a [`Shape`] (dimensions, row-major: NCHW for images) and a contiguous buffer
//! of f32 on one backend. Cloning a tensor shares its buffer; writing through
//! [`Tensor::storage_mut`] copies the buffer first when another tensor shares it, so a value kept
//! elsewhere (for a backward pass) never changes under its holder.
//!
//! [`Backend`] is the device interface that autograd, the layers and the models are written
//! against: a storage type and the primitive kernels (matrix products described by [`Gemm`],
//! im2col and Winograd tile transforms, pooling, activations, the loss, optimizer steps). Kernels
//! take storages and sizes and write into buffers the caller allocated. The sizes of windowed
//! ops travel as a [`ConvGeometry`] or [`PoolGeometry`], validated when built; [`checks`] holds
//! the argument checks the backends share, so a short buffer or an impossible size is an
//! [`Error`], never an out-of-bounds access. [`Backend::conv_plan`] lets each backend choose how
//! a convolution is computed ([`ConvPlan`]).
//!
//! Two backends live here: [`Cpu`], the reference implementation (rayon, an AVX-512 GEMM), and
//! [`Meter`], which computes nothing and counts the bytes a run's buffers hold at their peak.
//! The CUDA backend is in the `cuda` crate. [`winograd`] has the Winograd helpers, including
//! tile transforms composed from other kernels for backends without fused ones. Every fallible
//! call returns this crate's [`Result`].
//!
//! ```rust
//! use convnet_tensor::{Backend, Cpu, Gemm, Meter, Tensor};
//!
//! # fn main() -> convnet_tensor::Result<()> {
//! // C = A B for a 2 x 3 and a 3 x 2 matrix, both row-major.
//! let a = Tensor::from_slice(&Cpu, [2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let b = Tensor::from_slice(&Cpu, [3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])?;
//! let mut c = Tensor::zeros(&Cpu, [2, 2])?;
//! let g = Gemm::new(false, false, 2, 2, 3);
//! Cpu.gemm(&g, a.storage(), b.storage(), c.storage_mut()?)?;
//! assert_eq!(c.to_vec()?, [4.0, 5.0, 10.0, 11.0]);
//!
//! // A buffer too short for the product is an error, not an out-of-bounds read.
//! let short = Tensor::zeros(&Cpu, [5])?;
//! assert!(Cpu.gemm(&g, short.storage(), b.storage(), c.storage_mut()?).is_err());
//!
//! // The same allocations on a meter cost no memory of their own, only a count.
//! let meter = Meter::new(&Cpu);
//! let x = Tensor::<Meter<Cpu>>::zeros(&meter, [32, 3, 224, 224])?;
//! assert_eq!(meter.live_bytes(), 4 * x.numel());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
pub mod arena;
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

pub use backend::{
    compose_conv_forward, compose_conv_input_grad, compose_conv_weight_grad, compose_epilogue,
    compose_rows_epilogue, AdamSlot, AdamStep, Backend, Epilogue, Gemm, RowsOut, SgdSlot, SgdStep,
};
pub use cpu::Cpu;
pub use error::{Error, Result};
pub use geometry::{ConvGeometry, PoolGeometry, Window, MAX_POOL_PLANE};
pub use meter::Meter;
pub use plan::{ConvAlgorithm, ConvPlan};
pub use shape::Shape;
pub use tensor::{Reading, Tensor};
