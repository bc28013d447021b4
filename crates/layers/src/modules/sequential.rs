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

/// The convolutions of `layers` from `i` on that are each followed by a ReLU: a run that
/// `ops::conv2d_relu_chain` can take as one op.
fn conv_relu_run<B: Backend>(layers: &[Box<dyn Module<B>>], i: usize) -> Vec<ops::ConvRelu<'_, B>> {
    let mut run = Vec::new();
    let mut j = i;
    while let Some(conv) = layers.get(j).and_then(|l| l.conv_relu()) {
        if !layers.get(j + 1).is_some_and(|l| l.is_relu()) {
            break;
        }
        run.push(conv);
        j += 2;
    }
    run
}

/// Runs `layers` in order, fusing where a layer has a fused form: convolutions each followed
/// by a ReLU, two or more or one with a max pooling after it, as one op
/// (`ops::conv2d_relu_chain`: ReLU passes fused into the products and the pooling); a layer
/// followed by a ReLU (a convolution's bias and ReLU in one pass: the same values, one pass
/// and one tensor fewer); or a layer whose last op can take the max pooling after it (a nested
/// `Sequential` ending in convolutions and ReLUs: NiN's blocks).
fn run<B: Backend>(layers: &[Box<dyn Module<B>>], x: &Var<B>, mode: &mut Mode) -> Result<Var<B>> {
    let pool_at = |j: usize| layers.get(j).and_then(|l| l.max_pool_window());
    let mut h = x.clone();
    let mut i = 0;
    while i < layers.len() {
        let chain = conv_relu_run(layers, i);
        let end = i + 2 * chain.len();
        let pool = pool_at(end);
        if chain.len() >= 2 || (!chain.is_empty() && pool.is_some()) {
            h = ops::conv2d_relu_chain(&h, &chain, pool)?;
            i = end + usize::from(pool.is_some());
            continue;
        }
        if layers.get(i + 1).is_some_and(|next| next.is_relu()) {
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
        // Ending in convolutions each followed by a ReLU: the layers before them as usual, then
        // those with the pooling as one op. Decided before anything runs.
        let n = self.layers.len();
        let mut start = n;
        while start >= 2 && self.layers[start - 1].is_relu() && self.layers[start - 2].conv_relu().is_some() {
            start -= 2;
        }
        if start == n {
            return Ok(None);
        }
        let h = run(&self.layers[..start], x, mode)?;
        ops::conv2d_relu_chain(&h, &conv_relu_run(&self.layers, start), Some(pool)).map(Some)
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
