//! The CUDA backend: `tensor::Backend` over cudarc, with the kernels of `kernels/*.cu`.
//!
//! The PTX is generated from `kernels/*.cu` by a pinned NVRTC (`tools/gen_ptx.py`) and embedded
//! here, so users need an NVIDIA driver but no CUDA toolkit. The driver library is loaded at run
//! time: this crate builds, and its callers run, on machines without CUDA; `Cuda::new` then
//! returns an error that says what is missing.
//!
//! What it holds:
//! - [`Cuda`]: one GPU as a `tensor::Backend`, so the same layers and models run on it as on
//!   `tensor::Cpu`. All kernels run in order on one stream, and device memory comes from a
//!   caching allocator. [`Precision`] says whether convolution products may use TF32 tensor cores
//!   (the default, as PyTorch) or stay FP32; [`DeviceInfo`] reports a device's figures.
//! - Transfers that do not stall the queue: large uploads go through page-locked memory on a copy
//!   stream of their own (at least [`STAGED_UPLOAD_MIN`] values), and reads started with
//!   `Backend::start_read` return a [`PendingRead`] that the host collects later.
//! - [`plan`]: how each kernel is launched (grids, split-k, the convolution algorithm), as pure
//!   functions that need no GPU.
//! - [`model`]: a cost model built on those plans: a CPU backend that records the launches `Cuda`
//!   would make ([`model::Recorder`]) and roofline estimates of their time on a given GPU
//!   ([`model::Gpu`]).
//! - [`probe`]: why no GPU can be used here, if none can.
//!
//! The example runs with or without a GPU: it opens device 0 if there is one, then predicts a
//! matrix product's time on an H200 with the cost model.
//!
//! ```rust
//! use convnet_cuda::model::{by_kernel, step_time, Gpu, Recorder};
//! use convnet_cuda::{Cuda, Precision};
//! use tensor::{Backend, Gemm};
//!
//! # fn main() -> tensor::Result<()> {
//! match Cuda::new(0) {
//!     Ok(gpu) => println!("GPU 0: {} ({})", gpu.device_name(), gpu.name()),
//!     Err(e) => println!("no GPU: {e}"),
//! }
//!
//! // C (256 x 256) = A (256 x 512) * B (512 x 256), computed on the CPU while the launches the
//! // CUDA backend would make for it are recorded.
//! let h200 = Gpu::h200();
//! let recorder = Recorder::new(h200.multiprocessors, Precision::Fp32);
//! let a = recorder.from_slice(&vec![1.0; 256 * 512])?;
//! let b = recorder.from_slice(&vec![0.5; 512 * 256])?;
//! let mut c = recorder.uninit(256 * 256)?;
//! recorder.take(); // forget the uploads
//! recorder.gemm(&Gemm::new(false, false, 256, 256, 512), &a, &b, &mut c)?;
//! assert!(c.iter().all(|&v| v == 256.0));
//!
//! // 16 tiles of 64 x 64 would leave most of 132 SMs idle: the sum over k is split in parts
//! // that a second kernel adds.
//! let launches = recorder.take();
//! let kernels: Vec<&str> = launches.iter().map(|l| l.kernel).collect();
//! assert_eq!(kernels, ["sgemm_nn", "sgemm_split_reduce"]);
//! for (kernel, count, seconds) in by_kernel(&h200, &launches) {
//!     println!("{kernel}: {count} launch(es), {:.1} us", seconds * 1e6);
//! }
//! let predicted = step_time(&h200, &launches);
//! assert!(predicted >= 2.0 * h200.launch_us * 1e-6);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
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
