use super::{Mode, Module};
use crate::ops;
use autograd::Var;
use tensor::{Backend, Result};

/// Inverted dropout in training, the identity in eval mode (PyTorch's `nn.Dropout`): each
/// value is zeroed with probability `p` and the others scaled by `1 / (1 - p)`, a fresh mask per
/// forward from [`Mode::next_seed`]. No parameters.
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// Dropout with drop probability `p`; an `InvalidArgument` error unless `0 <= p < 1`.
    pub fn new(p: f32) -> Result<Self> {
        tensor::checks::dropout_probability(p)?;
        Ok(Dropout { p })
    }
}

impl<B: Backend> Module<B> for Dropout {
    fn forward(&self, x: &Var<B>, mode: &mut Mode) -> Result<Var<B>> {
        if !mode.is_train() {
            return Ok(x.clone());
        }
        ops::dropout(x, self.p, mode.next_seed())
    }
    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}
