//! The CUDA backend: `tensor::Backend` over cudarc, with the kernels of `kernels/*.cu`.
//!
//! The PTX is generated from `kernels/*.cu` by a pinned NVRTC (`tools/gen_ptx.py`) and embedded
//! here, so users need an NVIDIA driver but no CUDA toolkit. The driver library is loaded at run
//! time: this crate builds, and its callers run, on machines without CUDA; `Cuda::new` then
//! returns an error that says what is missing.
mod allocator;
mod backend;
mod device;
mod kernels;
pub mod model;
pub mod plan;
mod staging;

pub use backend::{Cuda, DeviceInfo, Precision};
pub use device::probe;
pub use staging::{PendingRead, STAGED_UPLOAD_MIN};
