//! The device interface: the primitive kernels every backend (CPU, CUDA) implements.
//!
//! Everything above this trait (autograd, layers, models) is written once against it. The methods
//! work on raw storages plus sizes; shapes are checked by the callers in `layers`. Each kernel has
//! the same name and argument order here, in `cpu/` and in `kernels/*.cu`.
use crate::{ConvGeometry, ConvPlan, PoolGeometry, Result};

/// One (optionally batched) row-major matrix product:
/// `C_i = alpha * op(A_i) * op(B_i) + beta * C_i` for `i in 0..batch`, where `op(A)` is `m x k`,
/// `op(B)` is `k x n` and `C` is `m x n`, all densely packed. `A_i` starts at
/// `a_offset + i * a_stride` (likewise B, C). When `c_stride == 0` and `batch > 1`, the products
/// are summed into the one C: `C = alpha * sum_i op(A_i) op(B_i) + beta * C` (weight gradients);
/// otherwise the outputs must not overlap (`c_stride >= m * n`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    /// `op(A) = A^T`: each A is stored `k x m` rather than `m x k`.
    pub trans_a: bool,
    /// `op(B) = B^T`: each B is stored `n x k` rather than `k x n`.
    pub trans_b: bool,
    /// Rows of `op(A)` and of C.
    pub m: usize,
    /// Columns of `op(B)` and of C.
    pub n: usize,
    /// The shared dimension: columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C's previous values; with 0, C is overwritten (the CPU does not read it then).
    pub beta: f32,
    /// Number of products (1 for a single one; 0 does nothing).
    pub batch: usize,
    /// Index of `A_0`'s first value in A's storage.
    pub a_offset: usize,
    /// Values from one `A_i` to the next (0: every product reads the same A).
    pub a_stride: usize,
    /// Index of `B_0`'s first value in B's storage.
    pub b_offset: usize,
    /// Values from one `B_i` to the next (0: every product reads the same B).
    pub b_stride: usize,
    /// Index of `C_0`'s first value in C's storage.
    pub c_offset: usize,
    /// Values from one `C_i` to the next: at least `m * n`, or 0 to sum the batch into one C.
    pub c_stride: usize,
    /// The caller accepts TF32 tensor-core arithmetic for this product (10-bit mantissas in,
    /// FP32 sums), where the backend offers it and its precision setting allows: a
    /// convolution's products do, as in PyTorch (`cudnn.allow_tf32`), a linear layer's do not
    /// (`matmul.allow_tf32`). Backends without TF32 (the CPU) compute in FP32 either way.
    pub tf32: bool,
}

impl Gemm {
    /// A single product `C = op(A) op(B)` (alpha 1, beta 0) with no offsets.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
            batch: 1,
            a_offset: 0,
            a_stride: 0,
            b_offset: 0,
            b_stride: 0,
            c_offset: 0,
            c_stride: 0,
            tf32: false,
        }
    }
    /// A convolution's product: `new`, with TF32 accepted.
    pub fn conv(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Gemm {
        Gemm { tf32: true, ..Gemm::new(trans_a, trans_b, m, n, k) }
    }
    /// Floating-point operations of the whole batch, a multiply-add counted as two
    /// (`2 m n k batch`).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }
    /// Storage lengths the product reads or writes, for bounds checks; an error when one does
    /// not fit in a `usize`.
    pub fn required_lengths(&self) -> Result<(usize, usize, usize)> {
        let last = self.batch.saturating_sub(1);
        let len = |what, offset, stride, rows, cols| {
            crate::checks::extent("gemm", what, &[&[offset], &[last, stride], &[rows, cols]])
        };
        Ok((
            len("A", self.a_offset, self.a_stride, self.m, self.k)?,
            len("B", self.b_offset, self.b_stride, self.k, self.n)?,
            len("C", self.c_offset, self.c_stride, self.m, self.n)?,
        ))
    }
}

/// A convolution's output stage applied as its forward product is stored
/// ([`Backend::gemm_epilogue`]): a bias per row of C (an output channel), then ReLU, and C's
/// columns written in blocks (NCHW straight from a chunk's product, no transpose pass).
#[derive(Debug)]
pub struct Epilogue<'a, S> {
    /// Added to row `i` of every product: `m` values (a convolution's bias).
    pub bias: Option<&'a S>,
    /// Then `max(v, 0)`.
    pub relu: bool,
    /// 0: C is stored as the plain product stores it. Otherwise the product is a single one
    /// whose `n` columns are `n / block` blocks of `block` (a chunk's images, `block` output
    /// positions each), and C's element `(i, j)` is stored at
    /// `c_offset + (j / block) * m * block + i * block + j % block`: the chunk's
    /// `[O][count][P]` product as the `[count][O][P]` (NCHW) slice of the output.
    pub block: usize,
    /// Then 0 wherever this tensor, laid out as C, is not positive at the value's own place: a
    /// ReLU's backward applied as the gradient of its output is stored (the ReLU's output is
    /// the mask). Only with `block` 0 and C the product's outputs alone, as a bias.
    pub mask: Option<&'a S>,
}

// Only references and two values: copyable whatever S is (a derive would ask S: Copy).
impl<S> Clone for Epilogue<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Epilogue<'_, S> {}

impl<S> Epilogue<'_, S> {
    /// Does nothing: no bias, no ReLU, no mask, C as `gemm` stores it.
    pub fn is_identity(&self) -> bool {
        self.bias.is_none() && !self.relu && self.block == 0 && self.mask.is_none()
    }

    /// The bias and ReLU (not the layout) as a pass of their own over `y`, an `outer x
    /// channels x inner` output whose channels are the product's rows: `bias_relu`, or
    /// `add_bias` without the ReLU, or nothing.
    pub fn apply<B: Backend<Storage = S>>(
        &self,
        backend: &B,
        y: &mut S,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        match (self.relu, self.bias) {
            (true, bias) => backend.bias_relu(y, bias, outer, channels, inner),
            (false, Some(bias)) => backend.add_bias(y, bias, outer, channels, inner),
            (false, None) => Ok(()),
        }
    }
}

/// `Backend::gemm_epilogue` composed of the backend's other kernels: the product, then
/// `bias_relu` or `add_bias` over it, then (with `block`) `transpose_blocks` into place, or
/// (with a mask) `bias_relu_backward` of a copy. The trait's default, and the fallback of
/// backends whose fused kernels cover only some cases.
pub fn compose_epilogue<B: Backend>(
    backend: &B,
    g: &Gemm,
    a: &B::Storage,
    b: &B::Storage,
    c: &mut B::Storage,
    epi: &Epilogue<'_, B::Storage>,
) -> Result<()> {
    let lens = (backend.storage_len(a), backend.storage_len(b), backend.storage_len(c));
    let mask = epi.mask.map(|s| backend.storage_len(s));
    crate::checks::gemm_epilogue(
        g,
        lens,
        epi.bias.map(|s| backend.storage_len(s)),
        epi.relu,
        epi.block,
        mask,
    )?;
    match g.n.checked_div(epi.block) {
        None => {
            backend.gemm(g, a, b, c)?;
            if epi.is_identity() {
                return Ok(());
            }
            epi.apply(backend, c, if g.c_stride == 0 { 1 } else { g.batch }, g.m, g.n)?;
            match epi.mask {
                Some(mask) => {
                    let product = backend.copy(c)?;
                    let len = backend.storage_len(c);
                    backend.bias_relu_backward(mask, &product, c, None, 1, 1, len)
                }
                None => Ok(()),
            }
        }
        Some(blocks) => {
            let mut product = backend.uninit(g.m * g.n)?;
            backend.gemm(&Gemm { c_offset: 0, ..*g }, a, b, &mut product)?;
            epi.apply(backend, &mut product, 1, g.m, g.n)?;
            backend.transpose_blocks(&product, 0, g.m, blocks, epi.block, c, g.c_offset)
        }
    }
}

/// `Backend::conv_forward` as the explicit path: the images unfolded, then one product stored
/// as NCHW through the epilogue. The trait's default, and the fallback of backends whose
/// implicit product covers only some geometries.
#[allow(clippy::too_many_arguments)]
pub fn compose_conv_forward<B: Backend>(
    backend: &B,
    w: &B::Storage,
    x: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    y: &mut B::Storage,
    epi: &Epilogue<'_, B::Storage>,
) -> Result<()> {
    let lens = (backend.storage_len(w), backend.storage_len(x), backend.storage_len(y));
    crate::checks::conv_products("conv_forward", geo, first, count, lens, true)?;
    let (k, p) = (geo.col_rows(), geo.col_cols());
    let mut cols = backend.uninit(count * k * p)?;
    backend.im2col(x, geo, first, count, &mut cols)?;
    let g = Gemm { c_offset: first * geo.c_out * p, ..Gemm::conv(false, false, geo.c_out, count * p, k) };
    backend.gemm_epilogue(&g, w, &cols, y, &Epilogue { block: p, ..*epi })
}

/// `Backend::conv_weight_grad` as the explicit path: the images unfolded, then one product
/// with their columns transposed. The trait's default, and the fallback of backends whose
/// implicit product covers only some geometries.
#[allow(clippy::too_many_arguments)]
pub fn compose_conv_weight_grad<B: Backend>(
    backend: &B,
    dy: &B::Storage,
    x: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    beta: f32,
    dw: &mut B::Storage,
) -> Result<()> {
    let lens = (backend.storage_len(dw), backend.storage_len(x), backend.storage_len(dy));
    crate::checks::conv_products("conv_weight_grad", geo, first, count, lens, false)?;
    let (k, p) = (geo.col_rows(), geo.col_cols());
    let mut cols = backend.uninit(count * k * p)?;
    backend.im2col(x, geo, first, count, &mut cols)?;
    backend.gemm(&Gemm { beta, ..Gemm::conv(false, true, geo.c_out, k, count * p) }, dy, &cols, dw)
}

/// `Backend::conv_input_grad` as the backward's explicit path: `cols = W^T dy` into a column
/// matrix of the chunk, then `col2im` into `dx`. The trait's default, and the fallback of
/// backends whose implicit product covers only some geometries.
pub fn compose_conv_input_grad<B: Backend>(
    backend: &B,
    w: &B::Storage,
    dy: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    dx: &mut B::Storage,
) -> Result<()> {
    let lens = (backend.storage_len(w), backend.storage_len(dx), backend.storage_len(dy));
    crate::checks::conv_products("conv_input_grad", geo, first, count, lens, false)?;
    let (k, p) = (geo.col_rows(), geo.col_cols());
    let mut cols = backend.uninit(count * k * p)?;
    backend.gemm(&Gemm::conv(true, false, k, count * p, geo.c_out), w, dy, &mut cols)?;
    backend.col2im(&cols, geo, first, count, dx)
}

/// One output of [`Backend::gemm_rows_epilogue`]: the product's next `rows` rows, stored in `c`
/// from `c_offset` as `gemm_epilogue` stores a product of `rows` rows, finished by `epilogue`
/// (whose bias has `rows` values).
#[derive(Debug)]
pub struct RowsOut<'a, S> {
    /// Rows of the product (output channels) this output takes.
    pub rows: usize,
    /// Where they go.
    pub c: &'a mut S,
    /// From this offset of `c`.
    pub c_offset: usize,
    /// Their bias, ReLU and layout.
    pub epilogue: Epilogue<'a, S>,
}

/// `Backend::gemm_rows_epilogue` as one `gemm_epilogue` per output, on its rows of A: the
/// trait's default. Checks that `g` is a single product of untransposed A (so that an
/// output's rows of A are a contiguous slice) whose `m` rows the outputs share out exactly.
pub fn compose_rows_epilogue<B: Backend>(
    backend: &B,
    g: &Gemm,
    a: &B::Storage,
    b: &B::Storage,
    outs: &mut [RowsOut<'_, B::Storage>],
) -> Result<()> {
    let rows: Vec<usize> = outs.iter().map(|o| o.rows).collect();
    crate::checks::gemm_rows(g, &rows)?;
    let mut first = 0;
    for out in outs.iter_mut() {
        let part = Gemm { m: out.rows, a_offset: g.a_offset + first * g.k, c_offset: out.c_offset, ..*g };
        backend.gemm_epilogue(&part, a, b, out.c, &out.epilogue)?;
        first += out.rows;
    }
    Ok(())
}

/// PyTorch's SGD: `g = grad + weight_decay * p; v = momentum * v + g; p -= lr * v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the velocity; 0 is plain SGD, which needs no velocity buffer.
    pub momentum: f32,
    /// L2 penalty: `weight_decay * p` is added to the gradient.
    pub weight_decay: f32,
}

/// One parameter of a multi-tensor SGD step ([`Backend::sgd_steps`]): its value, its gradient
/// and, with momentum, its velocity.
pub struct SgdSlot<'a, S> {
    /// The parameter, updated in place.
    pub param: &'a mut S,
    /// Its gradient.
    pub grad: &'a S,
    /// Its velocity (with momentum), updated in place.
    pub velocity: Option<&'a mut S>,
}

/// One parameter of a multi-tensor Adam step ([`Backend::adam_steps`]).
pub struct AdamSlot<'a, S> {
    /// The parameter, updated in place.
    pub param: &'a mut S,
    /// Its gradient.
    pub grad: &'a S,
    /// The first moment, updated in place.
    pub m: &'a mut S,
    /// The second moment, updated in place.
    pub v: &'a mut S,
}

/// PyTorch's Adam (L2 weight decay added to the gradient), at 1-based step `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the running mean of the gradient (first moment, `m`).
    pub beta1: f32,
    /// Decay of the running mean of the squared gradient (second moment, `v`).
    pub beta2: f32,
    /// Added to the bias-corrected `sqrt(v)` in the denominator, so that it is never zero.
    pub eps: f32,
    /// L2 penalty: `weight_decay * p` is added to the gradient (not decoupled as in AdamW).
    pub weight_decay: f32,
    /// The step being taken, counted from 1 (0 is an error: the bias corrections divide by
    /// `1 - beta^step`).
    pub step: u64,
}

impl AdamStep {
    /// `(lr / (1 - beta1^step), 1 / sqrt(1 - beta2^step))`, in f64 and rounded once, as every
    /// backend applies them. Steps past 2^31 count as 2^31 - 1: beta^t is 0 in f64 long before.
    pub fn bias_corrections(&self) -> (f32, f32) {
        let t = self.step.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t);
        ((self.lr as f64 / bc1) as f32, (1.0 / bc2.sqrt()) as f32)
    }
}

/// A compute device: its buffer type and the kernels the engine runs on it. Implemented by
/// [`Cpu`](crate::Cpu), by [`Meter`](crate::Meter) (which only counts memory) and by the CUDA
/// backend of the `cuda` crate.
///
/// A backend value is a cheap handle: every [`Tensor`](crate::Tensor) holds a clone. Kernels
/// take storages and sizes and write into buffers the caller allocated; the CPU and CUDA
/// backends check every length and size with [`checks`](crate::checks) and return an `Err`
/// rather than read or write out of bounds. A device with a queue (a GPU) may return from a
/// kernel before it has run; the values become visible through `to_vec` or `start_read`.
pub trait Backend: Clone + Send + Sync + 'static {
    /// A buffer of f32 on the device.
    type Storage: Send + Sync + 'static;
    /// A copy to the host that may still be in flight: [`Backend::start_read`] begins it,
    /// [`Backend::finish_read`] waits for it. Dropping one unfinished waits for the copy.
    type Reading: Send + 'static;

    /// A short name for messages and reports ("cpu", "cuda:0").
    fn name(&self) -> String;

    // ---- memory ----
    /// A buffer of `len` zeros; an [`Error::OutOfMemory`](crate::Error::OutOfMemory) when the
    /// device cannot allocate it.
    fn zeros(&self, len: usize) -> Result<Self::Storage>;
    /// A buffer for an output the caller overwrites entirely: its contents are unspecified
    /// (recycled memory), which saves zeroing it.
    fn uninit(&self, len: usize) -> Result<Self::Storage> {
        self.zeros(len)
    }
    #[allow(clippy::wrong_self_convention)] // a device upload needs the device
    /// A buffer holding a copy of `data` (an upload, on a GPU).
    fn from_slice(&self, data: &[f32]) -> Result<Self::Storage>;
    /// The values of `src` on the host, once all work queued before the call has finished.
    fn to_vec(&self, src: &Self::Storage) -> Result<Vec<f32>>;
    /// Starts copying `src` to the host after the work already queued, and returns without
    /// waiting for it. A caller that queues more work before [`Backend::finish_read`] keeps a
    /// device busy while the values travel; `to_vec` instead waits for the whole queue. (The CPU
    /// has no queue: its copy is done here.)
    fn start_read(&self, src: &Self::Storage) -> Result<Self::Reading>;
    /// The values of a copy begun by [`Backend::start_read`], once it has arrived.
    fn finish_read(&self, reading: Self::Reading) -> Result<Vec<f32>>;
    /// The number of f32 values `s` holds.
    fn storage_len(&self, s: &Self::Storage) -> usize;
    /// A new buffer holding the values of `src`.
    fn copy(&self, src: &Self::Storage) -> Result<Self::Storage>;
    /// Bytes of memory this device can still give a run (what it has free, plus what this
    /// backend caches for reuse), or `None` when it cannot tell.
    fn memory_available(&self) -> Option<usize> {
        None
    }
    /// Gives back to the system the memory this backend keeps for reuse (freed buffers, or
    /// the CPU pool's segments that no buffer uses) and returns its bytes. A run calls it where
    /// its working set changes (from training steps to evaluation and back), so that the two
    /// phases' buffers are not held side by side.
    fn release_cached(&self) -> usize {
        0
    }
    /// Sets every value of `dst` to `value`.
    fn fill(&self, dst: &mut Self::Storage, value: f32) -> Result<()>;

    // ---- matrix products ----
    /// The product or batch of products `g` describes, reading `a` and `b` and writing `c`; an
    /// error when a buffer is shorter than [`Gemm::required_lengths`] or, with `c_stride != 0`,
    /// the batch's outputs overlap.
    fn gemm(&self, g: &Gemm, a: &Self::Storage, b: &Self::Storage, c: &mut Self::Storage) -> Result<()>;
    /// `gemm` followed by a convolution's output stage ([`Epilogue`]), in the product's own
    /// store where the backend can (the CUDA kernels), saving a pass over the output for the
    /// bias and ReLU and one for the layout. Limits, so that every backend can compose it
    /// ([`compose_epilogue`], the default): `beta` 0; with `block`, a single product
    /// (`batch` 1) and `n` a multiple of `block`; without it, a bias or ReLU needs C to be the
    /// whole output (`c_offset` 0, items `m * n` apart, nothing past them). An error otherwise.
    fn gemm_epilogue(
        &self,
        g: &Gemm,
        a: &Self::Storage,
        b: &Self::Storage,
        c: &mut Self::Storage,
        epi: &Epilogue<'_, Self::Storage>,
    ) -> Result<()> {
        compose_epilogue(self, g, a, b, c, epi)
    }

    /// One product whose rows go to several outputs, each finished by its own epilogue: rows
    /// `[r, r + rows)` of the `m x n` product `g` go to `outs[i]` (`r` the rows of the outputs
    /// before it), as `gemm_epilogue` would store a product of those rows alone (`g.c_offset`
    /// is not used; each output has its own). A single product (`batch` 1) of untransposed A,
    /// the outputs' rows adding up to `m`; each output as `gemm_epilogue` requires. The default
    /// ([`compose_rows_epilogue`]) makes one product per output; a backend may make one for all
    /// (the CUDA kernels: four outputs a launch), reading B once. Convolutions whose outputs
    /// share an input (Inception's stacked 1x1 branches) call it when the backend's plan says
    /// it fuses them ([`ConvPlan::epilogue_stores`]).
    fn gemm_rows_epilogue(
        &self,
        g: &Gemm,
        a: &Self::Storage,
        b: &Self::Storage,
        outs: &mut [RowsOut<'_, Self::Storage>],
    ) -> Result<()> {
        compose_rows_epilogue(self, g, a, b, outs)
    }

    // ---- convolution helpers ----
    /// How this device computes a convolution of `geo` when the caller leaves the choice to it
    /// (`layers::ops::ConvAlgo::Auto`): the algorithm and the chunk size, from what the backend
    /// knows of its device.
    fn conv_plan(&self, geo: &ConvGeometry) -> ConvPlan;
    /// Unfolds images `first..first + count` of `x` (NCHW) into `cols`, one matrix of
    /// `col_rows()` rows by `count * col_cols()` columns: row `(c, ki, kj)`, column
    /// `i * col_cols() + (oy, ox)` for image `first + i`, so one matrix product covers the whole
    /// chunk of images. Padded cells become zeros.
    fn im2col(
        &self,
        x: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        cols: &mut Self::Storage,
    ) -> Result<()>;
    /// The adjoint of `im2col`: sums `cols` back into images `first..first + count` of `dx`,
    /// overwriting them.
    fn col2im(
        &self,
        cols: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut Self::Storage,
    ) -> Result<()>;
    /// A convolution's forward for images `first..first + count` of `x` (NCHW): `w * cols` (`w`
    /// `[c_out][col_rows()]`, cols the images' `im2col`) stored into those images of `y` as
    /// NCHW through `epi`'s bias and ReLU (its `block` is the output plane, whatever `epi`
    /// says). Composed here of `im2col` and `gemm_epilogue` ([`compose_conv_forward`]); a
    /// backend may instead gather `x` inside one product (see `ConvPlan::implicit`).
    #[allow(clippy::too_many_arguments)]
    fn conv_forward(
        &self,
        w: &Self::Storage,
        x: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        y: &mut Self::Storage,
        epi: &Epilogue<'_, Self::Storage>,
    ) -> Result<()> {
        compose_conv_forward(self, w, x, geo, first, count, y, epi)
    }
    /// A convolution's weight gradient from images `first..first + count`: `dw = dy * cols^T +
    /// beta * dw`, dy the chunk's output gradient as one `[c_out][count * col_cols()]` matrix
    /// and cols the images' `im2col` (`dw` `[c_out][col_rows()]`; beta 0 overwrites it).
    /// Composed here of `im2col` and `gemm` ([`compose_conv_weight_grad`]); a backend may
    /// instead gather `x` inside one product (see `ConvPlan::implicit`).
    #[allow(clippy::too_many_arguments)]
    fn conv_weight_grad(
        &self,
        dy: &Self::Storage,
        x: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        beta: f32,
        dw: &mut Self::Storage,
    ) -> Result<()> {
        compose_conv_weight_grad(self, dy, x, geo, first, count, beta, dw)
    }
    /// The input gradient of a convolution for images `first..first + count`: from the chunk's
    /// output gradient `dy` as one `[c_out][count * col_cols()]` matrix (the products' layout)
    /// and the weights `w` (`[c_out][col_rows()]`), the column gradient `W^T dy` folded back
    /// into those images of `dx` (NCHW), overwriting them. Composed here of `gemm` (accepting
    /// TF32) and `col2im` ([`compose_conv_input_grad`]); a backend may instead gather `dy` inside
    /// one product, with no column matrix (see `ConvPlan::implicit_input_grad`).
    #[allow(clippy::too_many_arguments)]
    fn conv_input_grad(
        &self,
        w: &Self::Storage,
        dy: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut Self::Storage,
    ) -> Result<()> {
        compose_conv_input_grad(self, w, dy, geo, first, count, dx)
    }
    /// Reads `src` from `src_offset` as a `rows x cols` matrix of `block`-long blocks and writes
    /// its transpose (`cols x rows` blocks) to `dst` from `dst_offset`: `[O][N][P] <-> [N][O][P]`,
    /// between a chunk's matrix-product layout and NCHW.
    #[allow(clippy::too_many_arguments)]
    fn transpose_blocks(
        &self,
        src: &Self::Storage,
        src_offset: usize,
        rows: usize,
        cols: usize,
        block: usize,
        dst: &mut Self::Storage,
        dst_offset: usize,
    ) -> Result<()>;
    /// Winograd input tiles of images `first..first + count` in the points' domain: for each
    /// a x a tile D of `geo` (kernel a x a, stride m, padding), `V = bt D bt^T` into
    /// `v [a*a][C][X]` (`bt`: the a x a input transform, row-major). See `tensor::winograd`.
    #[allow(clippy::too_many_arguments)]
    fn winograd_tiles(
        &self,
        x: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        bt: &[f32],
        v: &mut Self::Storage,
    ) -> Result<()> {
        crate::winograd::composed_tiles(self, x, geo, first, count, bt, v)
    }
    /// The adjoint of `winograd_tiles`: `bt^T dV bt` of every tile summed into images
    /// `first..first + count` of `dx`, overwriting them.
    #[allow(clippy::too_many_arguments)]
    fn winograd_tiles_backward(
        &self,
        dv: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        bt: &[f32],
        dx: &mut Self::Storage,
    ) -> Result<()> {
        crate::winograd::composed_tiles_backward(self, dv, geo, first, count, bt, dx)
    }
    /// Winograd output tiles back to images: for each point-domain tile M of `points
    /// [a*a][O][X]`, `Y = at M at^T` (`at`: m x a) written to its m x m tile of images
    /// `first..first + count` of `y` (geometry: kernel m x m, stride m, planes divisible by m).
    #[allow(clippy::too_many_arguments)]
    fn winograd_untile(
        &self,
        points: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        at: &[f32],
        y: &mut Self::Storage,
    ) -> Result<()> {
        crate::winograd::composed_untile(self, points, geo, first, count, at, y)
    }
    /// The adjoint of `winograd_untile`: `dM = at^T dY at` for every m x m tile of `dy`.
    #[allow(clippy::too_many_arguments)]
    fn winograd_untile_backward(
        &self,
        dy: &Self::Storage,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        at: &[f32],
        dm: &mut Self::Storage,
    ) -> Result<()> {
        crate::winograd::composed_untile_backward(self, dy, geo, first, count, at, dm)
    }
    /// `y[o, c, i] += bias[c]` over `outer x channels x inner` (NCHW: N, C, H*W; linear: N, C, 1).
    fn add_bias(
        &self,
        y: &mut Self::Storage,
        bias: &Self::Storage,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()>;
    /// `dbias[c] = sum over o, i of dy[o, c, i]`.
    fn bias_grad(
        &self,
        dy: &Self::Storage,
        outer: usize,
        channels: usize,
        inner: usize,
        dbias: &mut Self::Storage,
    ) -> Result<()>;
    /// `y = max(y + bias[c], 0)` in place (no bias: `max(y, 0)`): a convolution's bias and ReLU
    /// in one pass over its output. The default composes `add_bias`, `copy`, `relu_forward`.
    fn bias_relu(
        &self,
        y: &mut Self::Storage,
        bias: Option<&Self::Storage>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        if let Some(b) = bias {
            self.add_bias(y, b, outer, channels, inner)?;
        }
        let pre = self.copy(y)?;
        self.relu_forward(&pre, y)
    }
    /// The backward of `bias_relu` given its output `y`: `dz = dy where y > 0, else 0`, and
    /// when asked `dbias = bias_grad(dz)`, in one pass. The default composes the two.
    #[allow(clippy::too_many_arguments)]
    fn bias_relu_backward(
        &self,
        y: &Self::Storage,
        dy: &Self::Storage,
        dz: &mut Self::Storage,
        dbias: Option<&mut Self::Storage>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        self.relu_backward(y, dy, dz)?;
        match dbias {
            Some(db) => self.bias_grad(dz, outer, channels, inner, db),
            None => Ok(()),
        }
    }
    /// `bias_relu_backward` with `dz` written channel by channel into rows of a larger matrix:
    /// value `(o, c, i)` of the masked gradient (`o < outer`, `c < channels`, `i < inner`) goes
    /// to `dz[(row + c) * outer * inner + o * inner + i]`, the `[channels][outer * inner]`
    /// matrix a convolution's backward products read (several outputs' at their rows), so no
    /// transpose follows. The default: `bias_relu_backward` into a buffer of its own, then
    /// `transpose_blocks` into place.
    #[allow(clippy::too_many_arguments)]
    fn bias_relu_backward_rows(
        &self,
        y: &Self::Storage,
        dy: &Self::Storage,
        dz: &mut Self::Storage,
        row: usize,
        dbias: Option<&mut Self::Storage>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        let mut masked = self.uninit(self.storage_len(dy))?;
        self.bias_relu_backward(y, dy, &mut masked, dbias, outer, channels, inner)?;
        self.transpose_blocks(&masked, 0, outer, channels, inner, dz, row * outer * inner)
    }

    // ---- pooling ----
    /// Max over each window (padded cells never win) into `y`, and into `argmax` the index
    /// within its input plane of each window's first maximum (row-major), as an f32 (exact:
    /// `PoolGeometry` keeps planes within 2^24 values), so the backward need not search again.
    fn max_pool2d_forward(
        &self,
        x: &Self::Storage,
        geo: &PoolGeometry,
        y: &mut Self::Storage,
        argmax: &mut Self::Storage,
    ) -> Result<()>;
    /// Routes each `dy` to its window's stored arg-max, overwriting `dx`.
    fn max_pool2d_backward(
        &self,
        argmax: &Self::Storage,
        dy: &Self::Storage,
        geo: &PoolGeometry,
        dx: &mut Self::Storage,
    ) -> Result<()>;
    /// Mean over each window, padded cells counted in the divisor (PyTorch's default).
    fn avg_pool2d_forward(&self, x: &Self::Storage, geo: &PoolGeometry, y: &mut Self::Storage) -> Result<()>;
    /// The adjoint of `avg_pool2d_forward`: each `dy` spread evenly over the input cells of its
    /// window (divided by the kernel area), overwriting `dx`.
    fn avg_pool2d_backward(
        &self,
        dy: &Self::Storage,
        geo: &PoolGeometry,
        dx: &mut Self::Storage,
    ) -> Result<()>;
    /// Mean of each of `planes` planes of `plane_len` values.
    fn global_avg_pool_forward(
        &self,
        x: &Self::Storage,
        planes: usize,
        plane_len: usize,
        y: &mut Self::Storage,
    ) -> Result<()>;
    /// The adjoint of `global_avg_pool_forward`: every value of plane `i` of `dx` set to
    /// `dy[i] / plane_len`.
    fn global_avg_pool_backward(
        &self,
        dy: &Self::Storage,
        planes: usize,
        plane_len: usize,
        dx: &mut Self::Storage,
    ) -> Result<()>;

    // ---- activation and regularisation ----
    /// `y = max(x, 0)` element-wise.
    fn relu_forward(&self, x: &Self::Storage, y: &mut Self::Storage) -> Result<()>;
    /// `dx = dy where y > 0, else 0` (uses the output, so the input need not be kept).
    fn relu_backward(&self, y: &Self::Storage, dy: &Self::Storage, dx: &mut Self::Storage) -> Result<()>;
    /// Inverted dropout: `mask = keep ? 1 / (1 - p) : 0` drawn from `seed`, `y = x * mask`.
    /// Backward is `dx = dy * mask` (`mul`).
    fn dropout_forward(
        &self,
        x: &Self::Storage,
        p: f32,
        seed: u64,
        y: &mut Self::Storage,
        mask: &mut Self::Storage,
    ) -> Result<()>;

    // ---- loss ----
    /// Mean softmax cross-entropy of `n x classes` logits against the first `n` of `labels`,
    /// into `loss[0]`; `correct[0]` gets the number of rows whose arg-max equals the label. The
    /// labels are host values: every backend checks them against `classes` before a kernel
    /// indexes a row with them, and a GPU uploads them without waiting for the device.
    fn softmax_cross_entropy_forward(
        &self,
        logits: &Self::Storage,
        labels: &[usize],
        n: usize,
        classes: usize,
        loss: &mut Self::Storage,
        correct: &mut Self::Storage,
    ) -> Result<()>;
    /// `dlogits = dloss[0] * (softmax(logits) - onehot(labels)) / n`, labels as in the forward.
    fn softmax_cross_entropy_backward(
        &self,
        logits: &Self::Storage,
        labels: &[usize],
        n: usize,
        classes: usize,
        dloss: &Self::Storage,
        dlogits: &mut Self::Storage,
    ) -> Result<()>;

    // ---- layout ----
    /// Copies `count` channels of each of `n` images, `plane_len` values per channel, from
    /// channel `src_first` of `src` (which has `src_channels`) to channel `dst_first` of `dst`
    /// (which has `dst_channels`). Concatenation and its backward (split) are both this.
    #[allow(clippy::too_many_arguments)]
    fn copy_channels(
        &self,
        src: &Self::Storage,
        src_channels: usize,
        src_first: usize,
        dst: &mut Self::Storage,
        dst_channels: usize,
        dst_first: usize,
        count: usize,
        n: usize,
        plane_len: usize,
    ) -> Result<()>;
    /// Joins `parts` (each a storage and its channels) along channels, in order, into `whole`
    /// (the sum of their channels; `n` images, `plane_len` values a channel): the Inception
    /// block's join, and the stacking of weights. The default copies part by part; a backend may
    /// move several parts in one pass.
    fn concat_channels(
        &self,
        parts: &[(&Self::Storage, usize)],
        whole: &mut Self::Storage,
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        let lens: Vec<_> = parts.iter().map(|(s, c)| (Some(self.storage_len(s)), *c)).collect();
        let total =
            crate::checks::channel_parts("concat_channels", self.storage_len(whole), &lens, n, plane_len)?;
        let mut first = 0;
        for &(part, channels) in parts {
            self.copy_channels(part, channels, 0, whole, total, first, channels, n, plane_len)?;
            first += channels;
        }
        Ok(())
    }
    /// The reverse of [`Backend::concat_channels`]: each part receives its channels of `whole`;
    /// a part given as `None` is skipped (its channels still count).
    fn split_channels(
        &self,
        whole: &Self::Storage,
        parts: &mut [(Option<&mut Self::Storage>, usize)],
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        let lens: Vec<_> = parts.iter().map(|(s, c)| (s.as_ref().map(|s| self.storage_len(s)), *c)).collect();
        let total =
            crate::checks::channel_parts("split_channels", self.storage_len(whole), &lens, n, plane_len)?;
        let mut first = 0;
        for (part, channels) in parts.iter_mut() {
            if let Some(part) = part {
                self.copy_channels(whole, total, first, part, *channels, 0, *channels, n, plane_len)?;
            }
            first += *channels;
        }
        Ok(())
    }

    // ---- element-wise and reductions ----
    /// `y += alpha * x`.
    fn axpy(&self, alpha: f32, x: &Self::Storage, y: &mut Self::Storage) -> Result<()>;
    /// `out = a * b` element-wise.
    fn mul(&self, a: &Self::Storage, b: &Self::Storage, out: &mut Self::Storage) -> Result<()>;
    /// `x *= alpha`.
    fn scale(&self, x: &mut Self::Storage, alpha: f32) -> Result<()>;
    /// `out[0] = sum of x` (accumulated in f64 on the CPU).
    fn sum(&self, x: &Self::Storage, out: &mut Self::Storage) -> Result<()>;

    // ---- optimizers ----
    /// One SGD step on `param`; `velocity` is required when `momentum != 0`.
    fn sgd_step(
        &self,
        param: &mut Self::Storage,
        grad: &Self::Storage,
        velocity: Option<&mut Self::Storage>,
        hp: &SgdStep,
    ) -> Result<()>;
    /// One SGD step on every slot's parameter: what [`Backend::sgd_step`] does to each, checked
    /// for all before any is updated. The default takes them one by one; a backend may update
    /// them all in one pass (PyTorch's multi-tensor `foreach` step).
    fn sgd_steps(&self, slots: &mut [SgdSlot<'_, Self::Storage>], hp: &SgdStep) -> Result<()> {
        for s in slots.iter() {
            let velocity = s.velocity.as_ref().map(|v| self.storage_len(v));
            crate::checks::sgd(self.storage_len(s.param), self.storage_len(s.grad), hp.momentum, velocity)?;
        }
        for s in slots.iter_mut() {
            self.sgd_step(s.param, s.grad, s.velocity.as_deref_mut(), hp)?;
        }
        Ok(())
    }
    /// One Adam step on every slot's parameter, as [`Backend::sgd_steps`] for SGD.
    fn adam_steps(&self, slots: &mut [AdamSlot<'_, Self::Storage>], hp: &AdamStep) -> Result<()> {
        for s in slots.iter() {
            let lens = [s.param, s.grad, s.m, s.v].map(|b| self.storage_len(b));
            crate::checks::adam(lens[0], lens[1], lens[2], lens[3], hp.step)?;
        }
        for s in slots.iter_mut() {
            self.adam_step(s.param, s.grad, s.m, s.v, hp)?;
        }
        Ok(())
    }
    /// One Adam step on `param`, updating the moment buffers `m` and `v` in place (each as long
    /// as `param`, zeros before the first step); an error when a buffer is short or `hp.step`
    /// is 0.
    fn adam_step(
        &self,
        param: &mut Self::Storage,
        grad: &Self::Storage,
        m: &mut Self::Storage,
        v: &mut Self::Storage,
        hp: &AdamStep,
    ) -> Result<()>;
}
