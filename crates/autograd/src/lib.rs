//! Reverse-mode automatic differentiation over `tensor::Tensor`.
//!
//! A `Var` is a tensor that remembers the op that made it: its parents and a closure that maps
//! the gradient of its output to gradients of its inputs. `backward()` walks the graph once in
//! reverse topological order, summing gradients where a value feeds several consumers, and
//! releases each op's saved tensors as soon as it has run. Ops themselves live in `layers`.
mod grad_mode;
mod var;

pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use var::{BackwardFn, MultiBackwardFn, Var};
