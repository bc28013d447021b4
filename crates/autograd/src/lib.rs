//! Reverse-mode automatic differentiation over `tensor::Tensor`.
//!
//! A `Var` is a tensor that remembers the op that made it: its parents and a closure that maps
//! the gradient of its output to gradients of its inputs. `backward()` walks the graph once in
//! reverse topological order, summing gradients where a value feeds several consumers, and
//! releases each op's saved tensors as soon as it has run. Ops themselves live in `layers`.
//!
//! Leaves are [`Var::parameter`]s (backward accumulates into their [`Var::grad`]) and
//! [`Var::constant`]s (inputs, labels). An op computes its output tensor with the backend's
//! kernels and wraps it with [`Var::from_op`] (or [`Var::from_op_multi`] for several outputs),
//! giving its parents and a [`BackwardFn`]. The closure is kept only while recording is on and
//! some parent requires a gradient; otherwise the result is a constant and whatever the closure
//! captured is dropped at once. Each backward closure runs at most once, so a second backward
//! pass through the same graph is an `Error::Graph`: run the forward pass again.
//!
//! [`no_grad`] and [`NoGradGuard`] turn recording off on the current thread, for inference.
//! A `Var` is `Send` and `Sync`: its value and gradient sit behind locks, so a model can be
//! built on one thread and trained or served on another.
//!
//! ```rust
//! use convnet_autograd::{no_grad, BackwardFn, Var};
//! use tensor::{Backend, Cpu, Tensor};
//!
//! # fn main() -> tensor::Result<()> {
//! // y = w . x for a parameter w and a constant x, so dy/dw = x.
//! let w = Var::parameter(Tensor::from_slice(&Cpu, [3], &[1.0, 2.0, 3.0])?);
//! let x = Tensor::from_slice(&Cpu, [3], &[4.0, 5.0, 6.0])?;
//!
//! // The forward pass, from the backend's kernels: product, then sum.
//! let mut prod = Tensor::uninit(&Cpu, [3])?;
//! Cpu.mul(w.value_ref().storage(), x.storage(), prod.storage_mut()?)?;
//! let mut dot = Tensor::scalar(&Cpu, 0.0)?;
//! Cpu.sum(prod.storage(), dot.storage_mut()?)?;
//!
//! // The backward pass maps the output's gradient to one gradient per parent.
//! let saved = x.clone();
//! let backward: BackwardFn<Cpu> = Box::new(move |dy: &Tensor<Cpu>, needs: &[bool]| {
//!     if !needs[0] {
//!         return Ok(vec![None]);
//!     }
//!     let mut dw = saved;
//!     Cpu.scale(dw.storage_mut()?, dy.item()?)?;
//!     Ok(vec![Some(dw)])
//! });
//! let y = Var::from_op("dot", dot, &[&w], backward);
//! assert_eq!(y.value().item()?, 32.0);
//!
//! y.backward()?;
//! assert_eq!(w.grad().expect("w is a parameter").to_vec()?, [4.0, 5.0, 6.0]);
//! // The closure has run and freed `saved`: the graph cannot be used again.
//! assert!(y.backward().is_err());
//!
//! // With recording off, an op's result is a constant and keeps nothing alive.
//! let unused: BackwardFn<Cpu> = Box::new(|_: &Tensor<Cpu>, _: &[bool]| Ok(vec![None]));
//! let z = no_grad(|| Var::from_op("dot", y.value(), &[&w], unused));
//! assert!(!z.requires_grad() && z.is_leaf());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
mod grad_mode;
mod var;

pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use var::{BackwardFn, MultiBackwardFn, Var};
