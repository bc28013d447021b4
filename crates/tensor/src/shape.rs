//! Tensor shapes: a list of dimensions, row-major (NCHW for images).
use crate::{bail, Result};
use std::fmt;

/// The dimensions of a tensor, outermost first; values are laid out row-major (the last
/// dimension varies fastest). The empty shape is a scalar of one value. `Display` and `Debug`
/// print `[2, 3]`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape of the given dimensions, outermost first.
    pub fn new(dims: impl Into<Vec<usize>>) -> Shape {
        Shape(dims.into())
    }
    /// The rank-0 shape: no dimensions, one value.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }
    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// The number of dimensions (0 for a scalar).
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// The number of values: the product of the dimensions (1 for a scalar, 0 when any
    /// dimension is 0).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// Dimension `i`; panics when `i >= rank()`.
    pub fn dim(&self, i: usize) -> usize {
        self.0[i]
    }
    /// The dimensions as an array of fixed rank, or an error naming `what` and the expected rank.
    pub fn dims_n<const N: usize>(&self, what: &str) -> Result<[usize; N]> {
        match <[usize; N]>::try_from(self.0.as_slice()) {
            Ok(d) => Ok(d),
            Err(_) => bail!(Shape, "{what} must have rank {N}, got shape {self}"),
        }
    }
    /// NCHW dimensions of a rank-4 shape.
    pub fn nchw(&self, what: &str) -> Result<[usize; 4]> {
        self.dims_n::<4>(what)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Shape {
        Shape(v)
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Shape {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Shape {
        Shape(v.to_vec())
    }
}
