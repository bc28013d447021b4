use super::{prefixed, Mode, Module};
use crate::ops;
use autograd::Var;
use tensor::{Backend, Result};

/// `max(x, 0)` element-wise, PyTorch's `nn.ReLU`. No parameters; in a [`Sequential`], the layer
/// before it may run fused with it ([`Module::forward_relu`]).
pub struct Relu;

impl<B: Backend> Module<B> for Relu {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::relu(x)
    }
    fn describe(&self) -> String {
        "ReLU".into()
    }
    fn is_relu(&self) -> bool {
        true
    }
}

/// Runs its layers in order; parameters are named by index, as `nn.Sequential` does.
pub struct Sequential<B: Backend> {
    layers: Vec<Box<dyn Module<B>>>,
}

impl<B: Backend> Default for Sequential<B> {
    fn default() -> Self {
        Sequential { layers: Vec::new() }
    }
}

impl<B: Backend> Sequential<B> {
    /// An empty network (its forward is the identity).
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a layer (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module<B> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
    /// The number of direct layers (a nested `Sequential` counts as one).
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<B: Backend> Module<B> for Sequential<B> {
    fn forward(&self, x: &Var<B>, mode: &mut Mode) -> Result<Var<B>> {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            // A layer followed by a ReLU runs fused when it can (a convolution's bias and ReLU
            // in one pass): the same values, one pass and one tensor fewer.
            if self.layers.get(i + 1).is_some_and(|next| next.is_relu()) {
                if let Some(y) = self.layers[i].forward_relu(&h, mode)? {
                    h = y;
                    i += 2;
                    continue;
                }
            }
            h = self.layers[i].forward(&h, mode)?;
            i += 1;
        }
        Ok(h)
    }
    fn parameters(&self) -> Vec<(String, Var<B>)> {
        self.layers.iter().enumerate().flat_map(|(i, l)| prefixed(&i.to_string(), l.as_ref())).collect()
    }
    fn describe(&self) -> String {
        "Sequential".into()
    }
    fn children(&self) -> Vec<(String, &dyn Module<B>)> {
        self.layers.iter().enumerate().map(|(i, l)| (i.to_string(), l.as_ref())).collect()
    }
}
