use super::{Mode, Module};
use crate::ops;
use autograd::Var;
use tensor::{Backend, Result, Window};

/// Max pooling over each plane of an NCHW input with the given window, PyTorch's `nn.MaxPool2d`
/// (floor mode; see [`ops::max_pool2d`]). No parameters.
pub struct MaxPool2d(pub Window);
/// Average pooling over each plane of an NCHW input with the given window, PyTorch's
/// `nn.AvgPool2d` with `count_include_pad=True` (see [`ops::avg_pool2d`]). No parameters.
pub struct AvgPool2d(pub Window);
/// PyTorch's `AdaptiveAvgPool2d((1, 1))`: [N, C, H, W] -> [N, C, 1, 1], the mean of each plane.
pub struct GlobalAvgPool2d;

fn describe_window(name: &str, w: &Window) -> String {
    format!("{name}(kernel={}x{}, stride={}, padding={})", w.kernel.0, w.kernel.1, w.stride.0, w.padding.0)
}

impl<B: Backend> Module<B> for MaxPool2d {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::max_pool2d(x, self.0)
    }
    fn describe(&self) -> String {
        describe_window("MaxPool2d", &self.0)
    }
    fn max_pool_window(&self) -> Option<Window> {
        Some(self.0)
    }
}

impl<B: Backend> Module<B> for AvgPool2d {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::avg_pool2d(x, self.0)
    }
    fn describe(&self) -> String {
        describe_window("AvgPool2d", &self.0)
    }
}

impl<B: Backend> Module<B> for GlobalAvgPool2d {
    fn forward(&self, x: &Var<B>, _mode: &mut Mode) -> Result<Var<B>> {
        ops::global_avg_pool2d(x)
    }
    fn describe(&self) -> String {
        "AdaptiveAvgPool2d(1)".into()
    }
}
