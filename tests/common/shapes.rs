//! The convolutions of d2l's NiN at 224x224 and GoogLeNet at 96x96 (1-channel inputs) as the
//! engine runs them, and the three matrix products each one is per image: the shapes of the GPU
//! parity tests (`tests/parity_large.rs`) and of `benches/gpu.rs`, which includes this file.
//! An Inception block's three 1x1 convolutions of its input run as one, their weights stacked
//! (`ops::conv2d_relu_shared`), so they are one layer here.
#![allow(dead_code)]
use models::ModelKind;
use tensor::{ConvGeometry, Gemm, Window};

/// One convolution: `c_in x hw x hw` in, `c_out` filters of `k x k`, stride, padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub c_in: usize,
    pub hw: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

/// Which of a convolution's products: `y_i = W cols_i`, `dcols_i = W^T dy_i`, `dW = sum_i dy_i
/// cols_i^T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Forward,
    InputGrad,
    WeightGrad,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::Forward => "fwd",
            Product::InputGrad => "igrad",
            Product::WeightGrad => "wgrad",
        }
    }
}

impl Layer {
    fn new(name: &str, c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Layer {
        Layer { name: name.into(), c_in, hw, c_out, k, stride, pad }
    }
    pub fn geo(&self, n: usize) -> ConvGeometry {
        let window = Window::square(self.k, self.stride, self.pad);
        ConvGeometry::new(n, self.c_in, self.hw, self.hw, self.c_out, window).expect("layer geometry")
    }
    pub fn out_hw(&self) -> usize {
        self.geo(1).out_h
    }
    /// The product over a batch of `n` images, packed densely: the weights shared by every item
    /// (stride 0), the weight gradient summed over the batch (C stride 0).
    pub fn product(&self, which: Product, n: usize) -> Gemm {
        let geo = self.geo(n);
        let (o, p, k) = (self.c_out, geo.col_cols(), geo.col_rows());
        match which {
            Product::Forward => {
                Gemm { batch: n, b_stride: k * p, c_stride: o * p, ..Gemm::new(false, false, o, p, k) }
            }
            Product::InputGrad => {
                Gemm { batch: n, b_stride: o * p, c_stride: k * p, ..Gemm::new(true, false, k, p, o) }
            }
            Product::WeightGrad => {
                Gemm { batch: n, a_stride: o * p, b_stride: k * p, ..Gemm::new(false, true, o, k, p) }
            }
        }
    }
}

/// NiN at 224: each block's k x k convolution and its 1x1 (the block's two 1x1 layers have one
/// shape), pooled 3x3/2 in between.
pub fn nin() -> Vec<Layer> {
    nin_layers(false)
}

/// GoogLeNet at 96: the stem, then each Inception block's stacked 1x1s, 3x3, 5x5 and pool
/// projection.
pub fn googlenet() -> Vec<Layer> {
    googlenet_layers(true)
}

/// Every convolution of d2l's PyTorch module as PyTorch runs it, in its parameters' order: NiN's
/// two 1x1 layers a block both listed, an Inception block's three 1x1 convolutions of its input
/// apart (the model of PyTorch's step in `benches/gpu.rs`). `tests/parity_large.rs` checks them
/// against the models' weights.
pub fn pytorch_convolutions(model: ModelKind) -> Vec<Layer> {
    match model {
        ModelKind::Nin => nin_layers(true),
        ModelKind::GoogLeNet => googlenet_layers(false),
    }
}

fn nin_layers(both_1x1: bool) -> Vec<Layer> {
    let mut layers = Vec::new();
    let mut hw = 224;
    for (i, &(c_in, c_out, k, stride, pad)) in
        [(1, 96, 11, 4, 0), (96, 256, 5, 1, 2), (256, 384, 3, 1, 1), (384, 10, 3, 1, 1)].iter().enumerate()
    {
        let conv = Layer::new(&format!("nin_conv{}", i + 1), c_in, hw, c_out, k, stride, pad);
        hw = conv.out_hw();
        layers.push(conv);
        let suffixes: &[&str] = if both_1x1 { &["_1", "_2"] } else { &[""] };
        for suffix in suffixes {
            layers.push(Layer::new(&format!("nin_conv{}_1x1{suffix}", i + 1), c_out, hw, c_out, 1, 1, 0));
        }
        hw = (hw - 3) / 2 + 1;
    }
    layers
}

fn googlenet_layers(stacked: bool) -> Vec<Layer> {
    let mut layers = vec![
        Layer::new("googlenet_b1", 1, 96, 64, 7, 2, 3),
        Layer::new("googlenet_b2_1x1", 64, 24, 64, 1, 1, 0),
        Layer::new("googlenet_b2_3x3", 64, 24, 192, 3, 1, 1),
    ];
    // (name, in, c1, (c2 reduce, c2), (c3 reduce, c3), c4, plane side)
    let blocks = [
        ("3a", 192, 64, (96, 128), (16, 32), 32, 12),
        ("3b", 256, 128, (128, 192), (32, 96), 64, 12),
        ("4a", 480, 192, (96, 208), (16, 48), 64, 6),
        ("4b", 512, 160, (112, 224), (24, 64), 64, 6),
        ("4c", 512, 128, (128, 256), (24, 64), 64, 6),
        ("4d", 512, 112, (144, 288), (32, 64), 64, 6),
        ("4e", 528, 256, (160, 320), (32, 128), 128, 6),
        ("5a", 832, 256, (160, 320), (32, 128), 128, 3),
        ("5b", 832, 384, (192, 384), (48, 128), 128, 3),
    ];
    for (name, c_in, c1, (c2r, c2), (c3r, c3), c4, hw) in blocks {
        let at = |part: &str| format!("googlenet_{name}_{part}");
        let (conv3, conv5) =
            (Layer::new(&at("3x3"), c2r, hw, c2, 3, 1, 1), Layer::new(&at("5x5"), c3r, hw, c3, 5, 1, 2));
        if stacked {
            layers.extend([Layer::new(&at("1x1s"), c_in, hw, c1 + c2r + c3r, 1, 1, 0), conv3, conv5]);
        } else {
            // d2l's forward order: p1, p2 (reduce, 3x3), p3 (reduce, 5x5).
            let one = |part: &str, c| Layer::new(&at(part), c_in, hw, c, 1, 1, 0);
            layers.extend([one("1x1", c1), one("3x3_reduce", c2r), conv3, one("5x5_reduce", c3r), conv5]);
        }
        layers.push(Layer::new(&at("pool_1x1"), c_in, hw, c4, 1, 1, 0));
    }
    layers
}

/// Every layer's three products at batch `n`, each distinct (m, n, k, layout, batch) once, named
/// `<layer>_<fwd|igrad|wgrad>`.
pub fn distinct_products(n: usize) -> Vec<(String, Gemm)> {
    let mut out: Vec<(String, Gemm)> = Vec::new();
    for layer in nin().into_iter().chain(googlenet()) {
        for which in [Product::Forward, Product::InputGrad, Product::WeightGrad] {
            let g = layer.product(which, n);
            if !out.iter().any(|(_, seen)| *seen == g) {
                out.push((format!("{}_{}", layer.name, which.name()), g));
            }
        }
    }
    out
}
