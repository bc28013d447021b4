//! 2-D convolution: forward and both backward products side by side.
//!
//! General kernels go through im2col + GEMM, a chunk of images at a time so the column buffer
//! stays bounded; 1x1 stride-1 unpadded kernels multiply the NCHW input directly.
use autograd::Var;
use tensor::{bail, Backend, ConvGeometry, Gemm, Result, Tensor, Window};

/// Upper bound on the im2col buffer, in values (64 MiB of f32).
const COLS_BUDGET: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// The direct product for 1x1 kernels, im2col otherwise.
    Auto,
    /// Always im2col (the reference the 1x1 path is tested against).
    Im2col,
}

/// `y = conv(x, weight) + bias` for x [N, C, H, W], weight [O, C, kh, kw], bias [O].
pub fn conv2d<B: Backend>(x: &Var<B>, weight: &Var<B>, bias: Option<&Var<B>>, stride: (usize, usize), padding: (usize, usize)) -> Result<Var<B>> {
    conv2d_with(x, weight, bias, stride, padding, ConvAlgo::Auto)
}

pub fn conv2d_with<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
    algo: ConvAlgo,
) -> Result<Var<B>> {
    let (xs, ws) = (x.shape(), weight.shape());
    let [n, c, h, w] = xs.nchw("conv2d input")?;
    let [o, wc, kh, kw] = ws.nchw("conv2d weight")?;
    if wc != c {
        bail!(Shape, "conv2d: input {xs} has {c} channels but weight {ws} expects {wc}");
    }
    if let Some(b) = bias {
        if b.shape().dims() != [o] {
            bail!(Shape, "conv2d: bias has shape {}, expected [{o}] for weight {ws}", b.shape());
        }
    }
    let geo = ConvGeometry::new(n, c, h, w, o, Window::new((kh, kw), stride, padding))?;
    let direct = algo == ConvAlgo::Auto && geo.is_pointwise();
    let (xv, wv) = (x.value(), weight.value());
    let mut y = forward(&xv, &wv, &geo, direct)?;
    if let Some(b) = bias {
        let backend = xv.backend().clone();
        backend.add_bias(y.storage_mut()?, b.value_ref().storage(), n, o, geo.col_cols())?;
    }
    let mut parents = vec![x, weight];
    parents.extend(bias);
    Ok(Var::from_op(
        "conv2d",
        y,
        &parents,
        Box::new(move |dy, needs| {
            let dx = if needs[0] { Some(backward_input(dy, &wv, &geo, direct)?) } else { None };
            let dw = if needs[1] { Some(backward_weight(&xv, dy, &geo, direct)?) } else { None };
            let mut grads = vec![dx, dw];
            if needs.len() > 2 {
                let backend = dy.backend().clone();
                let mut db = Tensor::zeros(&backend, [geo.c_out])?;
                backend.bias_grad(dy.storage(), geo.n, geo.c_out, geo.col_cols(), db.storage_mut()?)?;
                grads.push(Some(db));
            }
            Ok(grads)
        }),
    ))
}

/// Images per im2col chunk.
fn chunk_images(geo: &ConvGeometry) -> usize {
    (COLS_BUDGET / (geo.col_rows() * geo.col_cols()).max(1)).clamp(1, geo.n.max(1))
}

fn forward<B: Backend>(x: &Tensor<B>, w: &Tensor<B>, geo: &ConvGeometry, direct: bool) -> Result<Tensor<B>> {
    let backend = x.backend().clone();
    let (k, p, o) = (geo.col_rows(), geo.col_cols(), geo.c_out);
    let mut y = Tensor::zeros(&backend, [geo.n, o, geo.out_h, geo.out_w])?;
    // y_i (O x P) = W (O x K) * cols_i (K x P)
    let mut g = Gemm { batch: geo.n, b_stride: k * p, c_stride: o * p, ..Gemm::new(false, false, o, p, k) };
    if direct {
        backend.gemm(&g, w.storage(), x.storage(), y.storage_mut()?)?;
        return Ok(y);
    }
    let chunk = chunk_images(geo);
    let mut cols = backend.zeros(chunk * k * p)?;
    for first in (0..geo.n).step_by(chunk) {
        let count = chunk.min(geo.n - first);
        backend.im2col(x.storage(), geo, first, count, &mut cols)?;
        g.batch = count;
        g.c_offset = first * o * p;
        backend.gemm(&g, w.storage(), &cols, y.storage_mut()?)?;
    }
    Ok(y)
}

fn backward_input<B: Backend>(dy: &Tensor<B>, w: &Tensor<B>, geo: &ConvGeometry, direct: bool) -> Result<Tensor<B>> {
    let backend = dy.backend().clone();
    let (k, p, o) = (geo.col_rows(), geo.col_cols(), geo.c_out);
    let mut dx = Tensor::zeros(&backend, [geo.n, geo.c_in, geo.h, geo.w])?;
    // dcols_i (K x P) = W^T (K x O) * dy_i (O x P)
    let mut g = Gemm { batch: geo.n, b_stride: o * p, c_stride: k * p, ..Gemm::new(true, false, k, p, o) };
    if direct {
        backend.gemm(&g, w.storage(), dy.storage(), dx.storage_mut()?)?;
        return Ok(dx);
    }
    let chunk = chunk_images(geo);
    let mut dcols = backend.zeros(chunk * k * p)?;
    for first in (0..geo.n).step_by(chunk) {
        let count = chunk.min(geo.n - first);
        g.batch = count;
        g.b_offset = first * o * p;
        backend.gemm(&g, w.storage(), dy.storage(), &mut dcols)?;
        backend.col2im(&dcols, geo, first, count, dx.storage_mut()?)?;
    }
    Ok(dx)
}

fn backward_weight<B: Backend>(x: &Tensor<B>, dy: &Tensor<B>, geo: &ConvGeometry, direct: bool) -> Result<Tensor<B>> {
    let backend = x.backend().clone();
    let (k, p, o) = (geo.col_rows(), geo.col_cols(), geo.c_out);
    let (kh, kw) = geo.window.kernel;
    let mut dw = Tensor::zeros(&backend, [o, geo.c_in, kh, kw])?;
    // dW (O x K) = sum_i dy_i (O x P) * cols_i^T (P x K)
    let mut g = Gemm { batch: geo.n, a_stride: o * p, b_stride: k * p, ..Gemm::new(false, true, o, k, p) };
    if direct {
        backend.gemm(&g, dy.storage(), x.storage(), dw.storage_mut()?)?;
        return Ok(dw);
    }
    let chunk = chunk_images(geo);
    let mut cols = backend.zeros(chunk * k * p)?;
    for first in (0..geo.n).step_by(chunk) {
        let count = chunk.min(geo.n - first);
        backend.im2col(x.storage(), geo, first, count, &mut cols)?;
        g.batch = count;
        g.a_offset = first * o * p;
        g.beta = if first == 0 { 0.0 } else { 1.0 };
        backend.gemm(&g, dy.storage(), &cols, dw.storage_mut()?)?;
    }
    Ok(dw)
}
