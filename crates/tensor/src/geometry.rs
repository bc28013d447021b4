//! Sizes of 2-D windowed ops (convolution, pooling), validated once and passed to every backend.
use crate::{bail, checks::extent, Result};

/// Kernel size, stride and padding of a 2-D window, each as (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Window size in input cells.
    pub kernel: (usize, usize),
    /// Step between consecutive windows.
    pub stride: (usize, usize),
    /// Cells added on each side of the input (top and bottom, left and right): zeros for
    /// convolution and average pooling; max pooling never picks them.
    pub padding: (usize, usize),
}

impl Window {
    /// A window from (height, width) pairs; nothing is checked until a geometry is built on it.
    pub fn new(kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Window {
        Window { kernel, stride, padding }
    }
    /// A window with the same kernel, stride and padding along both axes.
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
        if h == 0 || w == 0 {
            bail!(InvalidArgument, "{op}: an input plane of {h}x{w} is empty");
        }
        let padded_h = extent(op, "the padded input", &[&[h], &[2, ph]])?;
        let padded_w = extent(op, "the padded input", &[&[w], &[2, pw]])?;
        if padded_h < kh || padded_w < kw {
            bail!(
                Shape,
                "{op}: kernel {kh}x{kw} is larger than the padded input {padded_h}x{padded_w} (input {h}x{w}, \
                 padding {ph}x{pw})"
            );
        }
        Ok(((padded_h - kh) / sh + 1, (padded_w - kw) / sw + 1))
    }
}

/// A convolution of `n` images of `c_in x h x w` with `c_out` filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels (filters).
    pub c_out: usize,
    /// Kernel, stride and padding.
    pub window: Window,
    /// Output height, derived from the input and the window.
    pub out_h: usize,
    /// Output width, derived from the input and the window.
    pub out_w: usize,
}

impl ConvGeometry {
    /// The geometry, or an error when the window does not fit the input or a size derived from
    /// it (the input, the output, one image's column matrix, the weights) overflows a `usize`.
    pub fn new(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, window: Window) -> Result<Self> {
        let (out_h, out_w) = window.output_size("conv2d", h, w)?;
        let (kh, kw) = window.kernel;
        extent("conv2d", "the input", &[&[n, c_in, h, w]])?;
        extent("conv2d", "the output", &[&[n, c_out, out_h, out_w]])?;
        extent("conv2d", "the column matrix", &[&[c_in, kh, kw, out_h, out_w]])?;
        extent("conv2d", "the weights", &[&[c_out, c_in, kh, kw]])?;
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
    /// Floating-point operations of the forward pass, counting a multiply-add as two (bias
    /// excluded).
    pub fn flops(&self) -> f64 {
        2.0 * self.n as f64 * self.c_out as f64 * self.col_cols() as f64 * self.col_rows() as f64
    }
}

/// A pooling of `n x c` planes of `h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Images in the batch.
    pub n: usize,
    /// Channels per image.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel, stride and padding.
    pub window: Window,
    /// Output height, derived from the input and the window.
    pub out_h: usize,
    /// Output width, derived from the input and the window.
    pub out_w: usize,
}

/// The largest input plane pooling takes: arg-max indices are stored exactly in f32.
pub const MAX_POOL_PLANE: usize = 1 << 24;

impl PoolGeometry {
    /// The geometry (output size in floor mode, as PyTorch), or an error when the padding
    /// exceeds half the kernel, a plane is empty or holds more than [`MAX_POOL_PLANE`] values,
    /// the kernel or stride is zero, the kernel is larger than the padded input, or the input or
    /// output size overflows a `usize`.
    pub fn new(n: usize, c: usize, h: usize, w: usize, window: Window) -> Result<Self> {
        let (kh, kw) = window.kernel;
        let (ph, pw) = window.padding;
        // PyTorch's rule: padding beyond half the kernel would make windows of padding only.
        if ph > kh / 2 || pw > kw / 2 {
            bail!(
                InvalidArgument,
                "pool2d: padding {:?} must be at most half the kernel {:?}",
                window.padding,
                window.kernel
            );
        }
        // Max pooling stores arg-max indices within a plane as f32, exact up to 2^24.
        if h.checked_mul(w).is_none_or(|plane| plane > MAX_POOL_PLANE) {
            bail!(
                InvalidArgument,
                "pool2d: an input plane of {h}x{w} exceeds the {MAX_POOL_PLANE} values pooling supports"
            );
        }
        let (out_h, out_w) = window.output_size("pool2d", h, w)?;
        extent("pool2d", "the input", &[&[n, c, h, w]])?;
        extent("pool2d", "the output", &[&[n, c, out_h, out_w]])?;
        Ok(PoolGeometry { n, c, h, w, window, out_h, out_w })
    }
    /// The number of planes pooled: `n * c`.
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
}
