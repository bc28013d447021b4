use super::{Mode, Module};
use crate::init::{self, WeightInit};
use crate::ops;
use autograd::Var;
use rand::Rng;
use tensor::{Backend, Result, Tensor};

/// A 2-D convolution with a bias over NCHW inputs, PyTorch's `nn.Conv2d` (no dilation, no
/// groups): [N, C_in, H, W] -> [N, C_out, H_out, W_out]. Its parameters are named `weight` and
/// `bias`.
pub struct Conv2d<B: Backend> {
    /// The filters, [C_out, C_in, kh, kw] (PyTorch's layout).
    pub weight: Var<B>,
    /// One value per output channel, `[C_out]`.
    pub bias: Var<B>,
    /// Steps between windows, (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zeros added on each side of the input, (rows above and below, columns left and right).
    pub padding: (usize, usize),
}

impl<B: Backend> Conv2d<B> {
    /// A square-kernel convolution, weights from `init`, bias from PyTorch's default.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: &B,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        init: WeightInit,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Self::rect(backend, c_in, c_out, (kernel, kernel), (stride, stride), (padding, padding), init, rng)
    }
    /// A convolution with a kernel, stride and padding each given as (height, width); weights
    /// from `init`, bias from PyTorch's default (both drawn from `rng`, weights first).
    #[allow(clippy::too_many_arguments)]
    pub fn rect(
        backend: &B,
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        init: WeightInit,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let shape = [c_out, c_in, kernel.0, kernel.1];
        let w = init::weight(init, &shape, rng);
        let b = init::bias(c_in * kernel.0 * kernel.1, c_out, rng);
        Ok(Conv2d {
            weight: Var::parameter(Tensor::from_slice(backend, shape, &w)?),
            bias: Var::parameter(Tensor::from_slice(backend, [c_out], &b)?),
            stride,
            padding,
        })
    }
    /// `relu(self(x))` as one fused op (`ops::conv2d_relu`).
    pub fn forward_fused_relu(&self, x: &Var<B>) -> Result<Var<B>> {
        ops::conv2d_relu(x, &self.weight, Some(&self.bias), self.stride, self.padding)
    }
}

impl<B: Backend> Module<B> for Conv2d<B> {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::conv2d(x, &self.weight, Some(&self.bias), self.stride, self.padding)
    }
    fn forward_relu(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Option<Var<B>>> {
        self.forward_fused_relu(x).map(Some)
    }
    fn conv_relu(&self) -> Option<ops::ConvRelu<'_, B>> {
        Some(ops::ConvRelu {
            weight: &self.weight,
            bias: Some(&self.bias),
            stride: self.stride,
            padding: self.padding,
        })
    }
    fn parameters(&self) -> Vec<(String, Var<B>)> {
        vec![("weight".into(), self.weight.clone()), ("bias".into(), self.bias.clone())]
    }
    fn describe(&self) -> String {
        let d = self.weight.shape();
        let pair = |p: (usize, usize)| if p.0 == p.1 { p.0.to_string() } else { format!("{}x{}", p.0, p.1) };
        format!(
            "Conv2d({}, {}, kernel={}x{}, stride={}, padding={})",
            d.dim(1),
            d.dim(0),
            d.dim(2),
            d.dim(3),
            pair(self.stride),
            pair(self.padding)
        )
    }
}
