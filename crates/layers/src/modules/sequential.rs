use super::{prefixed, Mode, Module};
use crate::ops;
use autograd::Var;
use tensor::{Backend, Result, Window};

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

/// Runs `layers` in order, fusing where a layer has a fused form: a layer followed by a ReLU
/// (a convolution's bias and ReLU in one pass: the same values, one pass and one tensor fewer),
/// and by a ReLU and a max pooling too (`ops::conv2d_relu_max_pool`: the backward works on the
/// pooled tensor), or a layer whose last op can take the max pooling after it (a nested
/// `Sequential` ending in a convolution and a ReLU: NiN's blocks).
fn run<B: Backend>(layers: &[Box<dyn Module<B>>], x: &Var<B>, mode: &mut Mode) -> Result<Var<B>> {
    let pool_at = |j: usize| layers.get(j).and_then(|l| l.max_pool_window());
    let mut h = x.clone();
    let mut i = 0;
    while i < layers.len() {
        if layers.get(i + 1).is_some_and(|next| next.is_relu()) {
            if let Some(pool) = pool_at(i + 2) {
                if let Some(y) = layers[i].forward_relu_max_pool(&h, pool, mode)? {
                    h = y;
                    i += 3;
                    continue;
                }
            }
            if let Some(y) = layers[i].forward_relu(&h, mode)? {
                h = y;
                i += 2;
                continue;
            }
        }
        if let Some(pool) = pool_at(i + 1) {
            if let Some(y) = layers[i].forward_max_pool(&h, pool, mode)? {
                h = y;
                i += 2;
                continue;
            }
        }
        h = layers[i].forward(&h, mode)?;
        i += 1;
    }
    Ok(h)
}

impl<B: Backend> Module<B> for Sequential<B> {
    fn forward(&self, x: &Var<B>, mode: &mut Mode) -> Result<Var<B>> {
        run(&self.layers, x, mode)
    }
    fn forward_max_pool(&self, x: &Var<B>, pool: Window, mode: &mut Mode) -> Result<Option<Var<B>>> {
        // Ending in a layer with a fused ReLU and pooling, then a ReLU: the rest as usual, then
        // that layer with both. Decided before anything runs.
        let n = self.layers.len();
        if n < 2 || !self.layers[n - 1].is_relu() || !self.layers[n - 2].fuses_relu_max_pool() {
            return Ok(None);
        }
        let h = run(&self.layers[..n - 2], x, mode)?;
        self.layers[n - 2].forward_relu_max_pool(&h, pool, mode)
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
