//! Sizes of 2-D windowed ops (convolution, pooling), validated once and passed to every backend.
use crate::{bail, Result};

/// Kernel size, stride and padding of a 2-D window, each as (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Window {
    pub fn new(kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Window {
        Window { kernel, stride, padding }
    }
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Window {
        Window::new((kernel, kernel), (stride, stride), (padding, padding))
    }

    /// Output size (floor mode, as PyTorch), or an error when the kernel does not fit.
    fn output_size(&self, op: &str, h: usize, w: usize) -> Result<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            bail!(
                InvalidArgument,
                "{op}: kernel {:?} and stride {:?} must be positive",
                self.kernel,
                self.stride
            );
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            bail!(
                Shape,
                "{op}: kernel {kh}x{kw} is larger than the padded input {}x{} (input {h}x{w}, padding {ph}x{pw})",
                h + 2 * ph,
                w + 2 * pw
            );
        }
        Ok(((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1))
    }
}

/// A convolution of `n` images of `c_in x h x w` with `c_out` filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub window: Window,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvGeometry {
    pub fn new(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, window: Window) -> Result<Self> {
        let (out_h, out_w) = window.output_size("conv2d", h, w)?;
        Ok(ConvGeometry { n, c_in, h, w, c_out, window, out_h, out_w })
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn col_rows(&self) -> usize {
        self.c_in * self.window.kernel.0 * self.window.kernel.1
    }
    /// Columns of the im2col matrix: one per output pixel.
    pub fn col_cols(&self) -> usize {
        self.out_h * self.out_w
    }
    /// 1x1, stride 1, no padding: the input itself is the im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.window == Window::square(1, 1, 0)
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.c_out * self.col_cols() * self.col_rows()) as f64
    }
}

/// A pooling of `n x c` planes of `h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub window: Window,
    pub out_h: usize,
    pub out_w: usize,
}

/// The largest input plane pooling takes: arg-max indices are stored exactly in f32.
pub const MAX_POOL_PLANE: usize = 1 << 24;

impl PoolGeometry {
    pub fn new(n: usize, c: usize, h: usize, w: usize, window: Window) -> Result<Self> {
        let (kh, kw) = window.kernel;
        let (ph, pw) = window.padding;
        // PyTorch's rule: padding beyond half the kernel would make windows of padding only.
        if 2 * ph > kh || 2 * pw > kw {
            bail!(
                InvalidArgument,
                "pool2d: padding {:?} must be at most half the kernel {:?}",
                window.padding,
                window.kernel
            );
        }
        // Max pooling stores arg-max indices within a plane as f32, exact up to 2^24.
        if h * w > MAX_POOL_PLANE {
            bail!(
                InvalidArgument,
                "pool2d: an input plane of {h}x{w} exceeds the {MAX_POOL_PLANE} values pooling supports"
            );
        }
        let (out_h, out_w) = window.output_size("pool2d", h, w)?;
        Ok(PoolGeometry { n, c, h, w, window, out_h, out_w })
    }
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
}
