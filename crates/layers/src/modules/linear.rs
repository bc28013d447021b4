use super::{Mode, Module};
use crate::init::{self, WeightInit};
use crate::ops;
use autograd::Var;
use rand::Rng;
use tensor::{Backend, Result, Tensor};

/// A fully connected layer `y = x W^T + b`, PyTorch's `nn.Linear`: [N, in] -> [N, out]. Its
/// parameters are named `weight` and `bias`.
pub struct Linear<B: Backend> {
    /// [out, in] (PyTorch's layout).
    pub weight: Var<B>,
    /// `[out]`.
    pub bias: Var<B>,
}

impl<B: Backend> Linear<B> {
    /// A layer from `inputs` to `outputs` features, weights from `init`, bias from PyTorch's
    /// default (both drawn from `rng`, weights first).
    pub fn new(
        backend: &B,
        inputs: usize,
        outputs: usize,
        init: WeightInit,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let w = init::weight(init, &[outputs, inputs], rng);
        let b = init::bias(inputs, outputs, rng);
        Ok(Linear {
            weight: Var::parameter(Tensor::from_slice(backend, [outputs, inputs], &w)?),
            bias: Var::parameter(Tensor::from_slice(backend, [outputs], &b)?),
        })
    }
}

impl<B: Backend> Module<B> for Linear<B> {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::linear(x, &self.weight, Some(&self.bias))
    }
    fn parameters(&self) -> Vec<(String, Var<B>)> {
        vec![("weight".into(), self.weight.clone()), ("bias".into(), self.bias.clone())]
    }
    fn describe(&self) -> String {
        let d = self.weight.shape();
        format!("Linear({}, {})", d.dim(1), d.dim(0))
    }
}

/// Flattens each sample: [N, d1, d2, ...] -> [N, d1 * d2 * ...], PyTorch's `nn.Flatten()`
/// (see [`ops::flatten`]). No parameters.
pub struct Flatten;

impl<B: Backend> Module<B> for Flatten {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::flatten(x)
    }
    fn describe(&self) -> String {
        "Flatten".into()
    }
}
