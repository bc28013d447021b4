//! The Inception block of GoogLeNet (Szegedy et al., 2015), d2l section 8.4.
use autograd::Var;
use layers::ops;
use layers::{Conv2d, MaxPool2d, Mode, Module, WeightInit};
use rand::Rng;
use tensor::{Backend, Result, Window};

/// Four parallel branches joined on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1.
/// Every branch keeps the spatial size, so only the channel count changes.
///
/// The fields carry d2l's names, which prefix the parameters' names (`p2_2.weight`, ...). Each
/// convolution is followed by a ReLU, which `forward` applies fused (the fields hold no `Relu`).
pub struct Inception<B: Backend> {
    /// Branch 1: 1x1 convolution, in_channels -> c1.
    pub p1_1: Conv2d<B>,
    /// Branch 2, first: 1x1 convolution, in_channels -> c2.0.
    pub p2_1: Conv2d<B>,
    /// Branch 2, second: 3x3 convolution with padding 1, c2.0 -> c2.1.
    pub p2_2: Conv2d<B>,
    /// Branch 3, first: 1x1 convolution, in_channels -> c3.0.
    pub p3_1: Conv2d<B>,
    /// Branch 3, second: 5x5 convolution with padding 2, c3.0 -> c3.1.
    pub p3_2: Conv2d<B>,
    /// Branch 4, first: 3x3 max pool, stride 1, padding 1.
    pub p4_1: MaxPool2d,
    /// Branch 4, second: 1x1 convolution, in_channels -> c4.
    pub p4_2: Conv2d<B>,
    /// The constructor's arguments, for `describe()`.
    spec: (usize, usize, (usize, usize), (usize, usize), usize),
}

impl<B: Backend> Inception<B> {
    /// Arguments as d2l's `Inception(c1, c2, c3, c4)`, plus the input channels that PyTorch's
    /// lazy layers infer. Parameters are drawn in `state_dict` order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: &B,
        in_channels: usize,
        c1: usize,
        c2: (usize, usize),
        c3: (usize, usize),
        c4: usize,
        init: WeightInit,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Ok(Inception {
            p1_1: Conv2d::new(backend, in_channels, c1, 1, 1, 0, init, rng)?,
            p2_1: Conv2d::new(backend, in_channels, c2.0, 1, 1, 0, init, rng)?,
            p2_2: Conv2d::new(backend, c2.0, c2.1, 3, 1, 1, init, rng)?,
            p3_1: Conv2d::new(backend, in_channels, c3.0, 1, 1, 0, init, rng)?,
            p3_2: Conv2d::new(backend, c3.0, c3.1, 5, 1, 2, init, rng)?,
            p4_1: MaxPool2d(Window::square(3, 1, 1)),
            p4_2: Conv2d::new(backend, in_channels, c4, 1, 1, 0, init, rng)?,
            spec: (in_channels, c1, c2, c3, c4),
        })
    }
    /// The channels the block takes.
    pub fn in_channels(&self) -> usize {
        self.spec.0
    }
    /// The channels the block outputs: c1 + c2.1 + c3.1 + c4.
    pub fn out_channels(&self) -> usize {
        let (_, c1, c2, c3, c4) = self.spec;
        c1 + c2.1 + c3.1 + c4
    }
    fn convs(&self) -> [(&'static str, &Conv2d<B>); 6] {
        [
            ("p1_1", &self.p1_1),
            ("p2_1", &self.p2_1),
            ("p2_2", &self.p2_2),
            ("p3_1", &self.p3_1),
            ("p3_2", &self.p3_2),
            ("p4_2", &self.p4_2),
        ]
    }
}

impl<B: Backend> Module<B> for Inception<B> {
    fn forward(&self, x: &Var<B>, mode: &mut Mode) -> Result<Var<B>> {
        // Each convolution with its ReLU as one fused op; the three 1x1 convolutions of x as
        // one product (x unfolded once, its gradient formed once; they share stride and padding).
        let pointwise = [&self.p1_1, &self.p2_1, &self.p3_1].map(|conv| (&conv.weight, Some(&conv.bias)));
        let Ok([p1, p2_1, p3_1]) = <[Var<B>; 3]>::try_from(ops::conv2d_relu_shared(
            x,
            &pointwise,
            self.p1_1.stride,
            self.p1_1.padding,
        )?) else {
            unreachable!("one output per convolution")
        };
        let p2 = self.p2_2.forward_fused_relu(&p2_1)?;
        let p3 = self.p3_2.forward_fused_relu(&p3_1)?;
        let p4 = self.p4_2.forward_fused_relu(&self.p4_1.forward(x, mode)?)?;
        ops::concat_channels(&[&p1, &p2, &p3, &p4])
    }
    fn parameters(&self) -> Vec<(String, Var<B>)> {
        self.convs().into_iter().flat_map(|(name, conv)| layers::modules::prefixed(name, conv)).collect()
    }
    fn describe(&self) -> String {
        let (i, c1, c2, c3, c4) = self.spec;
        format!("Inception({i}, {c1}, ({}, {}), ({}, {}), {c4})", c2.0, c2.1, c3.0, c3.1)
    }
    // No `children()`: the branches run side by side, not in sequence, so a summary that
    // chains children must show the block as one layer.
}
