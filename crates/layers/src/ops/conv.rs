//! 2-D convolution: forward and both backward products side by side.
//!
//! General kernels go through im2col + GEMM a chunk of images at a time: im2col lays the whole
//! chunk out as one matrix, so each chunk is a single large product (the weights are packed
//! once, not once per image) whose result is transposed back to NCHW. 1x1 stride-1 unpadded
//! kernels can multiply the NCHW input directly, image by image, with no copy. Stride-1 3x3 and
//! 5x5 kernels whose output sides fit its tiles can go through Winograd's algorithm
//! (`winograd.rs`), which needs 2.25-4x fewer multiplies. Which one runs, and in chunks of how
//! many images, is the backend's choice (`Backend::conv_plan`) unless the caller names one.
use super::winograd::Winograd;
use super::ConvGrads;
use autograd::Var;
use tensor::winograd::output_tile;
use tensor::{
    bail, Backend, ConvAlgorithm, ConvGeometry, ConvPlan, Epilogue, Gemm, PoolGeometry, Result, RowsOut,
    Tensor, Window,
};

/// Which algorithm computes a convolution ([`conv2d_with`]). All compute the same function, up
/// to rounding; the explicit choices exist for tests and benchmarks that compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// Whatever the backend plans for the geometry (`Backend::conv_plan`).
    Auto,
    /// Always im2col (the reference the other paths are tested against).
    Im2col,
    /// The direct product over the NCHW input, an error unless the kernel is 1x1, stride 1, no
    /// padding.
    Direct,
    /// Winograd's algorithm, an error where it does not apply (see `winograd::output_tile`).
    Winograd,
}

/// How one convolution is computed: the direct path, im2col (its [`Unfolding`]), or Winograd.
enum Plan<B: Backend> {
    Direct,
    Im2col(Unfolding),
    Winograd(Box<Winograd<B>>),
}

/// How `forward` and `backward` multiply: the direct products over NCHW, or im2col in chunks of
/// at most `chunk_values` column values, the forward's columns kept for the backward or not
/// (`ConvPlan::keep_columns`), stacked outputs and a 1x1 convolution's input gradient stored
/// by the products' epilogues or moved after them (`ConvPlan::epilogue_stores`).
#[derive(Clone, Copy)]
struct Unfolding {
    direct: bool,
    chunk_values: usize,
    keep_columns: bool,
    epilogue_stores: bool,
    implicit: bool,
    implicit_input_grad: bool,
}

impl Unfolding {
    /// Whether a convolution of `outputs` stacked outputs takes the backend's convolution
    /// products (`ConvPlan::implicit`) rather than unfolding columns itself.
    fn implicit_for(&self, geo: &ConvGeometry, outputs: usize) -> bool {
        self.implicit && outputs == 1 && !geo.is_pointwise()
    }
    /// Images per chunk: the whole batch for the backend's convolution products (no columns to
    /// bound), else as many as `chunk_values` column values hold.
    fn chunk(&self, geo: &ConvGeometry, outputs: usize) -> usize {
        if self.implicit_for(geo, outputs) {
            geo.n.max(1)
        } else {
            chunk_images(geo, self.chunk_values)
        }
    }
    /// im2col in a single chunk: the backward's products read the whole batch's output
    /// gradients as one `[O][N * P]` matrix.
    fn one_chunk(&self, geo: &ConvGeometry, outputs: usize) -> bool {
        !self.direct && self.chunk(geo, outputs) >= geo.n
    }
    fn im2col(plan: &ConvPlan) -> Unfolding {
        Unfolding {
            direct: false,
            chunk_values: plan.chunk_values,
            keep_columns: plan.keep_columns,
            epilogue_stores: plan.epilogue_stores,
            implicit: plan.implicit,
            implicit_input_grad: plan.implicit_input_grad,
        }
    }
}

impl<B: Backend> Plan<B> {
    fn choose(backend: &B, geo: &ConvGeometry, algo: ConvAlgo) -> Result<Plan<B>> {
        let planned = backend.conv_plan(geo);
        let chunk_values = planned.chunk_values;
        let winograd = |m| Ok(Plan::Winograd(Box::new(Winograd::new(backend, geo, m, chunk_values)?)));
        match algo {
            ConvAlgo::Im2col => Ok(Plan::Im2col(Unfolding::im2col(&planned))),
            ConvAlgo::Direct if geo.is_pointwise() => Ok(Plan::Direct),
            ConvAlgo::Direct => bail!(
                InvalidArgument,
                "conv2d: the direct path needs a 1x1 kernel, stride 1 and no padding; got kernel {:?}, \
                 stride {:?}, padding {:?}",
                geo.window.kernel,
                geo.window.stride,
                geo.window.padding
            ),
            ConvAlgo::Winograd => match output_tile(geo) {
                Some(m) => winograd(m),
                None => bail!(
                    InvalidArgument,
                    "conv2d: Winograd needs stride 1, a square kernel and output sides that its tiles divide; got kernel {:?}, stride {:?}, output {}x{}",
                    geo.window.kernel,
                    geo.window.stride,
                    geo.out_h,
                    geo.out_w
                ),
            },
            ConvAlgo::Auto => match planned.algorithm {
                ConvAlgorithm::Direct if geo.is_pointwise() => Ok(Plan::Direct),
                ConvAlgorithm::Winograd { tile } if output_tile(geo).is_some() => winograd(tile),
                _ => Ok(Plan::Im2col(Unfolding::im2col(&planned))),
            },
        }
    }

    /// The direct path, or im2col's (not asked of a Winograd plan).
    fn unfolding(&self) -> Unfolding {
        match self {
            Plan::Direct => Unfolding {
                direct: true,
                chunk_values: 0,
                keep_columns: false,
                epilogue_stores: false,
                implicit: false,
                implicit_input_grad: false,
            },
            Plan::Im2col(unfolding) => *unfolding,
            Plan::Winograd(_) => unreachable!("the Winograd path does not unfold"),
        }
    }
}

/// `y = conv(x, weight) + bias` for x `[N, C, H, W]`, weight `[O, C, kh, kw]`, bias `[O]`: y is
/// [N, O, H_out, W_out] with `H_out = (H + 2 * padding.0 - kh) / stride.0 + 1` (floor) and
/// likewise W_out. As PyTorch's `F.conv2d`, this is a cross-correlation (the kernel is not
/// flipped). The backend picks the algorithm ([`ConvAlgo::Auto`]). A `Shape` error when the
/// ranks, channels or bias do not match or the kernel exceeds the padded input.
pub fn conv2d<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Var<B>> {
    conv2d_with(x, weight, bias, stride, padding, ConvAlgo::Auto)
}

/// [`conv2d`] computed with `algo`: an `InvalidArgument` error when that algorithm does not apply
/// to the geometry (see [`ConvAlgo`]).
pub fn conv2d_with<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
    algo: ConvAlgo,
) -> Result<Var<B>> {
    conv2d_impl(x, weight, bias, stride, padding, algo, false)
}

/// `relu(conv2d(x, weight, bias))` as one op: bias and ReLU are applied to the convolution's
/// output in place, and the backward masks the gradient and sums the bias gradient in one pass.
/// Only the output is kept for the backward (no separate pre-activation tensor).
pub fn conv2d_relu<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Var<B>> {
    conv2d_impl(x, weight, bias, stride, padding, ConvAlgo::Auto, true)
}

/// What a convolution's backward products need, as its forward (`compute`) leaves it.
struct Computed<B: Backend> {
    geo: ConvGeometry,
    plan: Plan<B>,
    x: Tensor<B>,
    w: Tensor<B>,
    /// Winograd's transformed weights and kept input tiles.
    filter: Option<(B::Storage, Option<B::Storage>)>,
    /// The im2col columns kept for the weight gradient (`ConvPlan::keep_columns`).
    columns: Option<Vec<B::Storage>>,
    /// The backend stores the direct path's input gradient through a ReLU's mask in the
    /// product (`ConvPlan::input_grad_masks`).
    masks: bool,
}

/// A convolution's forward (the plan's products, then the bias and ReLU if asked, in the
/// products' store or a pass after Winograd): its output, and what its backward needs.
#[allow(clippy::too_many_arguments)]
fn compute<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
    algo: ConvAlgo,
    relu: bool,
) -> Result<(Tensor<B>, Computed<B>)> {
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
    let (xv, wv) = (x.value(), weight.value());
    let bias_value = bias.map(|b| b.value_ref());
    // The output's bias and ReLU: in the product's store, or a pass after Winograd.
    let stage = Epilogue { bias: bias_value.as_ref().map(|b| b.storage()), relu, block: 0, mask: None };
    let plan = Plan::choose(xv.backend(), &geo, algo)?;
    let masks = xv.backend().conv_plan(&geo).input_grad_masks;
    // Winograd keeps its transformed weights (and, batch permitting, input tiles) for the
    // backward pass; im2col its columns if the plan says so.
    let (mut y, filter, columns) = match &plan {
        Plan::Winograd(wino) => {
            let u = wino.filter(&wv)?;
            let (y, kept) = wino.forward(&xv, &u)?;
            (y, Some((u, kept)), None)
        }
        _ => {
            let (mut ys, columns) = forward(&xv, &wv, &[o], &[stage], &geo, plan.unfolding())?;
            (ys.remove(0), None, columns)
        }
    };
    if filter.is_some() {
        // Winograd's output gets its bias and ReLU in a pass of their own.
        stage.apply(xv.backend(), y.storage_mut()?, n, o, geo.col_cols())?;
    }
    drop(bias_value);
    Ok((y, Computed { geo, plan, x: xv, w: wv, filter, columns, masks }))
}

/// Input, weight and bias gradients of one convolution, each if wanted.
type LayerGrads<B> = (Option<Tensor<B>>, Option<Tensor<B>>, Option<Tensor<B>>);

impl<B: Backend> Computed<B> {
    /// Whether the backward takes the output gradient in the products' `[O][N * P]` layout,
    /// written by the ReLU's backward pass (im2col in one chunk).
    fn gathers(&self) -> bool {
        !matches!(self.plan, Plan::Winograd(_)) && self.plan.unfolding().one_chunk(&self.geo, 1)
    }

    /// Whether the input gradient can be stored through the mask of a ReLU before the
    /// convolution by its product: the direct path, on a backend that applies it there.
    fn masks_input_grad(&self) -> bool {
        self.masks && matches!(self.plan, Plan::Direct)
    }

    /// The input and weight gradients (each if wanted) from the gradient `dz` of the product's
    /// output (NCHW; past any ReLU), the input gradient stored through `dx_mask` if given
    /// (only where [`Computed::masks_input_grad`]).
    fn products(
        &self,
        dz: &Tensor<B>,
        want_dx: bool,
        want_dw: bool,
        dx_mask: Option<&Tensor<B>>,
    ) -> Result<ConvGrads<B>> {
        match (&self.plan, &self.filter) {
            (Plan::Winograd(wino), Some((u, kept))) => {
                wino.backward(&self.x, u, kept.as_ref(), dz, want_dx, want_dw)
            }
            _ => backward(
                &self.x,
                &self.w,
                OutGrads::PerOutput(std::slice::from_ref(dz)),
                &[self.geo.c_out],
                &self.geo,
                self.plan.unfolding(),
                self.columns.as_deref(),
                want_dx,
                want_dw,
                dx_mask.map(|m| m.storage()),
            ),
        }
    }

    /// The gradients from the gradient `dy` of the output `y = relu(z + bias)`: through the
    /// ReLU straight into the products' `[O][N * P]` layout where the backward takes it (and
    /// the bias gradient from the same pass: no transpose in `backward`), else masked as NCHW,
    /// then the products (the input gradient through `dx_mask`, as in `products`).
    fn through_relu(
        &self,
        y: &Tensor<B>,
        dy: &Tensor<B>,
        want: (bool, bool, bool),
        dx_mask: Option<&Tensor<B>>,
    ) -> Result<LayerGrads<B>> {
        let (want_dx, want_dw, want_db) = want;
        let backend = self.x.backend();
        let geo = &self.geo;
        if self.gathers() {
            let mut gathered = backend.uninit(geo.c_out * geo.n * geo.col_cols())?;
            let mut db = if want_db { Some(Tensor::uninit(backend, [geo.c_out])?) } else { None };
            let db_storage = db.as_mut().map(|t| t.storage_mut()).transpose()?;
            let (n, c, p) = (geo.n, geo.c_out, geo.col_cols());
            backend.bias_relu_backward_rows(
                y.storage(),
                dy.storage(),
                &mut gathered,
                0,
                db_storage,
                n,
                c,
                p,
            )?;
            let (dx, dw) = backward(
                &self.x,
                &self.w,
                OutGrads::Gathered(&gathered),
                &[c],
                geo,
                self.plan.unfolding(),
                self.columns.as_deref(),
                want_dx,
                want_dw,
                None,
            )?;
            return Ok((dx, dw, db));
        }
        let (dz, db) = through_relu(y, dy, want_db)?;
        let (dx, dw) = self.products(&dz, want_dx, want_dw, dx_mask)?;
        Ok((dx, dw, db))
    }
}

#[allow(clippy::too_many_arguments)]
fn conv2d_impl<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
    algo: ConvAlgo,
    relu: bool,
) -> Result<Var<B>> {
    let (y, conv) = compute(x, weight, bias, stride, padding, algo, relu)?;
    let backend = conv.x.backend().clone();
    let activated = relu.then(|| y.clone());
    let mut parents = vec![x, weight];
    parents.extend(bias);
    Ok(Var::from_op(
        if relu { "conv2d_relu" } else { "conv2d" },
        y,
        &parents,
        Box::new(move |dy, needs| {
            let want_db = needs.len() > 2;
            if let Some(y) = &activated {
                let (dx, dw, db) = conv.through_relu(y, dy, (needs[0], needs[1], want_db), None)?;
                let mut grads = vec![dx, dw];
                grads.extend(want_db.then_some(db));
                return Ok(grads);
            }
            let (dx, dw) = conv.products(dy, needs[0], needs[1], None)?;
            let mut grads = vec![dx, dw];
            if want_db {
                let geo = conv.geo;
                let mut db = Tensor::uninit(&backend, [geo.c_out])?;
                backend.bias_grad(dy.storage(), geo.n, geo.c_out, geo.col_cols(), db.storage_mut()?)?;
                grads.push(Some(db));
            }
            Ok(grads)
        }),
    ))
}

/// One convolution of a [`conv2d_relu_chain`]: its weight, bias, stride and padding.
pub struct ConvRelu<'a, B: Backend> {
    /// `[O, C, kh, kw]`.
    pub weight: &'a Var<B>,
    /// `[O]`, or none.
    pub bias: Option<&'a Var<B>>,
    /// Steps between windows, (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zeros added on each side, (rows, columns).
    pub padding: (usize, usize),
}

/// `max_pool2d(relu(conv2d(x, weight, bias)), pool)` as one op (a convolution block's end in
/// NiN and GoogLeNet's stem): [`conv2d_relu_chain`] of one convolution with the pooling.
pub fn conv2d_relu_max_pool<B: Backend>(
    x: &Var<B>,
    weight: &Var<B>,
    bias: Option<&Var<B>>,
    stride: (usize, usize),
    padding: (usize, usize),
    pool: Window,
) -> Result<Var<B>> {
    conv2d_relu_chain(x, &[ConvRelu { weight, bias, stride, padding }], Some(pool))
}

/// Convolutions each followed by a ReLU, one after the other, and optionally a max pooling
/// after the last, as one op (NiN's blocks; GoogLeNet's stem): the same values and gradients
/// as the ops one by one (the bias gradients summed in another order), with less work:
/// - with the pooling, the backward masks the gradient where the *pooled* output is positive
///   (each pooled value is the last convolution's output at its arg-max, so the mask there is
///   the ReLU's) and sums the bias gradient over the pooled gradient, then routes it back
///   through the arg-max: passes over the pooled tensor, a quarter of the output or less,
///   instead of three over the output, which is not kept at all;
/// - a convolution on the direct path stores its input gradient through the mask of the ReLU
///   before it, on a backend that applies it in the product (`ConvPlan::input_grad_masks`): one
///   pass of the ReLU's output read with the product's store, and one over the masked
///   gradient for the bias, instead of the gradient's store and three passes more (a
///   convolution whose backward takes its gradient gathered keeps its own ReLU pass, which
///   writes that layout).
pub fn conv2d_relu_chain<B: Backend>(
    x: &Var<B>,
    layers: &[ConvRelu<'_, B>],
    pool: Option<Window>,
) -> Result<Var<B>> {
    if layers.is_empty() {
        bail!(InvalidArgument, "conv2d_relu_chain needs at least one convolution");
    }
    let mut convs = Vec::with_capacity(layers.len());
    let mut outs: Vec<Tensor<B>> = Vec::with_capacity(layers.len());
    let mut input = x.clone();
    for l in layers {
        let (y, conv) = compute(&input, l.weight, l.bias, l.stride, l.padding, ConvAlgo::Auto, true)?;
        input = Var::constant(y.clone());
        convs.push(conv);
        outs.push(y);
    }
    drop(input);
    let backend = x.backend();
    let last = outs.pop().expect("one layer at least");
    let (out, pooled) = match pool {
        Some(window) => {
            let [n, c, h, w] = last.shape().nchw("conv2d output")?;
            let geo = PoolGeometry::new(n, c, h, w, window)?;
            let mut pooled = Tensor::uninit(&backend, [n, c, geo.out_h, geo.out_w])?;
            let mut argmax = backend.uninit(pooled.shape().numel())?;
            backend.max_pool2d_forward(last.storage(), &geo, pooled.storage_mut()?, &mut argmax)?;
            // The last output is not needed again: the backward's mask comes from the pooled
            // values.
            (pooled.clone(), Some((pooled, argmax, geo)))
        }
        None => (last.clone(), None),
    };
    // Kept for the backward: the ReLU outputs before the last (masks), and the last unless
    // pooled.
    if pooled.is_none() {
        outs.push(last);
    } else {
        drop(last);
    }
    let mut parents = vec![x];
    let mut slots = Vec::with_capacity(layers.len());
    for l in layers {
        slots.push((parents.len(), l.bias.map(|_| parents.len() + 1)));
        parents.push(l.weight);
        parents.extend(l.bias);
    }
    Ok(Var::from_op(
        if pooled.is_some() { "conv2d_relu_max_pool" } else { "conv2d_relu_chain" },
        out,
        &parents,
        Box::new(move |dy, needs| {
            let mut grads: Vec<Option<Tensor<B>>> = (0..needs.len()).map(|_| None).collect();
            let wants_db = |l: usize| slots[l].1.is_some_and(|i| needs[i]);
            let top = convs.len() - 1;
            // The gradient of a layer's output: still to go through its ReLU, or already
            // masked (its bias gradient with it).
            let mut raw = None;
            let mut masked = None;
            match &pooled {
                Some((pooled, argmax, geo)) => {
                    let (dy_masked, db) = through_relu(pooled, dy, wants_db(top))?;
                    let mut dz = Tensor::uninit(&backend, [geo.n, geo.c, geo.h, geo.w])?;
                    backend.max_pool2d_backward(argmax, dy_masked.storage(), geo, dz.storage_mut()?)?;
                    masked = Some((dz, db));
                }
                None => raw = Some(dy.clone()),
            }
            for l in (0..=top).rev() {
                let conv = &convs[l];
                let want_dx = l > 0 || needs[0];
                let want_dw = needs[slots[l].0];
                // The input gradient through the ReLU before this layer, where the product
                // stores it so and the layer before takes it as NCHW.
                let fused = l > 0 && conv.masks_input_grad() && !convs[l - 1].gathers();
                let mask = if fused { Some(&outs[l - 1]) } else { None };
                let (dx, dw, db) = match (masked.take(), raw.take()) {
                    (Some((dz, db)), _) => {
                        let (dx, dw) = conv.products(&dz, want_dx, want_dw, mask)?;
                        (dx, dw, db)
                    }
                    (None, Some(dy)) => {
                        conv.through_relu(&outs[l], &dy, (want_dx, want_dw, wants_db(l)), mask)?
                    }
                    (None, None) => unreachable!("each layer gets its output's gradient"),
                };
                grads[slots[l].0] = dw;
                if let Some(i) = slots[l].1 {
                    grads[i] = db;
                }
                let Some(dx) = dx else {
                    break;
                };
                if l == 0 {
                    grads[0] = Some(dx);
                } else if fused {
                    let prev = &convs[l - 1].geo;
                    let db = if wants_db(l - 1) {
                        let mut db = Tensor::uninit(&backend, [prev.c_out])?;
                        backend.bias_grad(
                            dx.storage(),
                            prev.n,
                            prev.c_out,
                            prev.col_cols(),
                            db.storage_mut()?,
                        )?;
                        Some(db)
                    } else {
                        None
                    };
                    masked = Some((dx, db));
                } else {
                    raw = Some(dx);
                }
            }
            Ok(grads)
        }),
    ))
}

/// Back through an output `y = relu(z + bias)` ([N, C, H, W]): `dz = dy` where `y` is
/// positive, and the bias gradient (summed over all but C) from the same pass when wanted.
fn through_relu<B: Backend>(
    y: &Tensor<B>,
    dy: &Tensor<B>,
    want_db: bool,
) -> Result<(Tensor<B>, Option<Tensor<B>>)> {
    let [n, c, h, w] = y.shape().nchw("conv2d output")?;
    let mut dz = dy.uninit_like()?;
    let mut db = if want_db { Some(Tensor::uninit(y.backend(), [c])?) } else { None };
    let db_storage = db.as_mut().map(|t| t.storage_mut()).transpose()?;
    y.backend().bias_relu_backward(y.storage(), dy.storage(), dz.storage_mut()?, db_storage, n, c, h * w)?;
    Ok((dz, db))
}

/// Several `conv2d_relu`s of one input with one window (an Inception block's 1x1 branches)
/// as one op, one output each: the input is unfolded once and multiplied by the weights
/// stacked on output channels, and the backward forms the input gradient in one product
/// instead of one per convolution plus their sum. Kernels that would take Winograd's algorithm
/// on their own take the product here.
pub fn conv2d_relu_shared<B: Backend>(
    x: &Var<B>,
    convs: &[(&Var<B>, Option<&Var<B>>)],
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Vec<Var<B>>> {
    let Some((first, _)) = convs.first() else {
        bail!(InvalidArgument, "conv2d_relu_shared needs at least one convolution")
    };
    let xs = x.shape();
    let [n, c, h, w] = xs.nchw("conv2d_relu_shared input")?;
    let [_, _, kh, kw] = first.shape().nchw("conv2d_relu_shared weight")?;
    let mut outs = Vec::with_capacity(convs.len());
    for (weight, bias) in convs {
        let ws = weight.shape();
        let [o, wc, wkh, wkw] = ws.nchw("conv2d_relu_shared weight")?;
        if (wc, wkh, wkw) != (c, kh, kw) {
            bail!(Shape, "conv2d_relu_shared: weight {ws} does not fit input {xs} and the first weight's {kh}x{kw} kernel; expected [_, {c}, {kh}, {kw}]");
        }
        if let Some(b) = bias {
            if b.shape().dims() != [o] {
                bail!(
                    Shape,
                    "conv2d_relu_shared: bias has shape {}, expected [{o}] for weight {ws}",
                    b.shape()
                );
            }
        }
        outs.push(o);
    }
    let total: usize = outs.iter().sum();
    let geo = ConvGeometry::new(n, c, h, w, total, Window::new((kh, kw), stride, padding))?;
    // The backend's plan for the stacked convolution; Winograd (never planned for 1x1 kernels,
    // Inception's case) falls back to im2col here.
    let unfolding = match Plan::choose(&x.backend(), &geo, ConvAlgo::Auto)? {
        Plan::Winograd(_) => Unfolding::im2col(&x.backend().conv_plan(&geo)),
        plan => plan.unfolding(),
    };
    let (xv, backend) = (x.value(), x.backend());
    let k = geo.col_rows();
    let mut stacked = Tensor::uninit(&backend, [total, c, kh, kw])?;
    {
        let weights: Vec<_> = convs.iter().map(|(weight, _)| weight.value_ref()).collect();
        let parts: Vec<_> = weights.iter().zip(&outs).map(|(w, &o)| (w.storage(), o)).collect();
        backend.concat_channels(&parts, stacked.storage_mut()?, 1, k)?;
    }
    let bias_values: Vec<_> = convs.iter().map(|(_, bias)| bias.map(|b| b.value_ref())).collect();
    let stages: Vec<Epilogue<'_, B::Storage>> = bias_values
        .iter()
        .map(|b| Epilogue { bias: b.as_ref().map(|b| b.storage()), relu: true, block: 0, mask: None })
        .collect();
    let (ys, columns) = forward(&xv, &stacked, &outs, &stages, &geo, unfolding)?;
    drop(stages);
    drop(bias_values);
    let activated = ys.clone();
    // Each convolution's slots among the parents: its weight, then its bias if it has one.
    let mut parents = vec![x];
    let mut slots = Vec::with_capacity(convs.len());
    for (weight, bias) in convs {
        slots.push((parents.len(), bias.map(|_| parents.len() + 1)));
        parents.push(weight);
        parents.extend(bias);
    }
    Var::from_op_multi(
        "conv2d_relu_shared",
        ys,
        &parents,
        Box::new(move |dys, needs| {
            let mut dzs = Vec::with_capacity(dys.len());
            let mut grads: Vec<Option<Tensor<B>>> = vec![None; needs.len()];
            // With one chunk, every output's masked gradient goes straight to its rows of the
            // products' [O][N * P] matrix: no transposes in `backward`.
            let (n, p) = (geo.n, geo.col_cols());
            let mut gathered = if unfolding.one_chunk(&geo, outs.len()) {
                Some(backend.uninit(total * n * p)?)
            } else {
                None
            };
            for (((y, dy), &(_, bias_slot)), at) in
                activated.iter().zip(dys).zip(&slots).zip(row_offsets(&outs))
            {
                let want_db = bias_slot.is_some_and(|s| needs[s]);
                let mut db = if want_db { Some(Tensor::uninit(&backend, [y.dims()[1]])?) } else { None };
                // No gradient reached this output: it contributes nothing.
                let zeros;
                let dy = match dy {
                    Some(dy) => dy,
                    None => {
                        zeros = y.zeros_like()?;
                        &zeros
                    }
                };
                match gathered.as_mut() {
                    Some(gathered) => {
                        let db_storage = db.as_mut().map(|t| t.storage_mut()).transpose()?;
                        let c = y.dims()[1];
                        backend.bias_relu_backward_rows(
                            y.storage(),
                            dy.storage(),
                            gathered,
                            at,
                            db_storage,
                            n,
                            c,
                            p,
                        )?;
                    }
                    None => {
                        let (dz, masked_db) = through_relu(y, dy, want_db)?;
                        dzs.push(dz);
                        db = masked_db;
                    }
                }
                if let Some(s) = bias_slot {
                    grads[s] = db;
                }
            }
            let want_dw = slots.iter().any(|&(s, _)| needs[s]);
            let grads_in = match gathered.as_ref() {
                Some(gathered) => OutGrads::Gathered(gathered),
                None => OutGrads::PerOutput(&dzs),
            };
            let (dx, dw) = backward(
                &xv,
                &stacked,
                grads_in,
                &outs,
                &geo,
                unfolding,
                columns.as_deref(),
                needs[0],
                want_dw,
                None,
            )?;
            grads[0] = dx;
            if let Some(dw) = dw {
                let parts: Vec<_> = slots
                    .iter()
                    .zip(&outs)
                    .map(|(&(s, _), &o)| (o, needs[s].then_some([o, c, kh, kw])))
                    .collect();
                let dws = super::concat::split_into(&dw, 1, k, &parts)?;
                for (&(s, _), dwi) in slots.iter().zip(dws) {
                    grads[s] = dwi;
                }
            }
            Ok(grads)
        }),
    )
}

/// Images per im2col chunk: as many as fit `chunk_values` column values, at least one.
fn chunk_images(geo: &ConvGeometry, chunk_values: usize) -> usize {
    (chunk_values / (geo.col_rows() * geo.col_cols()).max(1)).clamp(1, geo.n.max(1))
}

/// Where each output's rows start in the stacked weights and products.
fn row_offsets(outs: &[usize]) -> Vec<usize> {
    outs.iter().scan(0, |at, &o| Some(std::mem::replace(at, *at + o))).collect()
}

/// `forward`'s outputs, and the column matrices it kept (one per chunk).
type Outputs<B> = (Vec<Tensor<B>>, Option<Vec<<B as Backend>::Storage>>);

/// Products of one input with weights stacked on output channels (`w` [sum of outs, C, kh,
/// kw], `geo.c_out` their sum): output `i` takes `outs[i]` of the rows. One output is a plain
/// convolution; several share the input's unfolding and one product. Output `i` leaves with
/// `stages[i]`'s bias and ReLU applied (the `block` of each is ignored). With
/// `unfolding.keep_columns` (im2col only) every chunk's column matrix is returned too, for
/// `backward`.
fn forward<B: Backend>(
    x: &Tensor<B>,
    w: &Tensor<B>,
    outs: &[usize],
    stages: &[Epilogue<'_, B::Storage>],
    geo: &ConvGeometry,
    unfolding: Unfolding,
) -> Result<Outputs<B>> {
    let backend = x.backend().clone();
    let (k, p, total) = (geo.col_rows(), geo.col_cols(), geo.c_out);
    let mut ys = outs
        .iter()
        .map(|&o| Tensor::uninit(&backend, [geo.n, o, geo.out_h, geo.out_w]))
        .collect::<Result<Vec<_>>>()?;
    if unfolding.direct {
        for (((y, &o), at), stage) in ys.iter_mut().zip(outs).zip(row_offsets(outs)).zip(stages) {
            // y_i (O x P) = W (O x C) * x_i (C x P), then the bias and ReLU as it is stored
            let g = Gemm {
                batch: geo.n,
                a_offset: at * k,
                b_stride: k * p,
                c_stride: o * p,
                ..Gemm::conv(false, false, o, p, k)
            };
            backend.gemm_epilogue(&g, w.storage(), x.storage(), y.storage_mut()?, stage)?;
        }
        return Ok((ys, None));
    }
    if unfolding.implicit_for(geo, outs.len()) {
        // The whole batch in one product, its operand gathered by the backend.
        let stage = Epilogue { block: p, ..stages[0] };
        backend.conv_forward(w.storage(), x.storage(), geo, 0, geo.n, ys[0].storage_mut()?, &stage)?;
        return Ok((ys, None));
    }
    let chunk = chunk_images(geo, unfolding.chunk_values);
    let mut kept = unfolding.keep_columns.then(Vec::new);
    let mut scratch = None;
    // Several outputs share one product: stored into each by its epilogue (`epilogue_stores`), or
    // computed whole, then moved to each output and finished there.
    let fused = outs.len() > 1 && unfolding.epilogue_stores;
    let mut product = if outs.len() > 1 && !fused { Some(backend.uninit(chunk * total * p)?) } else { None };
    for first in (0..geo.n).step_by(chunk) {
        let count = chunk.min(geo.n - first);
        // The first chunk is the largest: its buffer serves every later one when not kept.
        let mut cols = match scratch.take() {
            Some(cols) => cols,
            None => backend.uninit(count * k * p)?,
        };
        backend.im2col(x.storage(), geo, first, count, &mut cols)?;
        let g = Gemm::conv(false, false, total, count * p, k);
        if fused {
            // Each output's rows of the chunk's [O x count*P] product, stored as its NCHW slice
            // and finished by its own bias and ReLU.
            let mut parts = ys
                .iter_mut()
                .zip(outs)
                .zip(stages)
                .map(|((y, &o), stage)| {
                    Ok(RowsOut {
                        rows: o,
                        c: y.storage_mut()?,
                        c_offset: first * o * p,
                        epilogue: Epilogue { block: p, ..*stage },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            backend.gemm_rows_epilogue(&g, w.storage(), &cols, &mut parts)?;
        }
        match product.as_mut() {
            None if fused => {}
            // [O x count*P] = W (O x K) * cols (K x count*P), stored as [count][O][P] (NCHW)
            // with the bias and ReLU applied.
            None => {
                let g = Gemm { c_offset: first * total * p, ..g };
                let epi = Epilogue { block: p, ..stages[0] };
                backend.gemm_epilogue(&g, w.storage(), &cols, ys[0].storage_mut()?, &epi)?;
            }
            Some(product) => {
                backend.gemm(&g, w.storage(), &cols, product)?;
                for ((y, &o), at) in ys.iter_mut().zip(outs).zip(row_offsets(outs)) {
                    backend.transpose_blocks(
                        product,
                        at * count * p,
                        o,
                        count,
                        p,
                        y.storage_mut()?,
                        first * o * p,
                    )?;
                }
            }
        }
        match kept.as_mut() {
            Some(kept) => kept.push(cols),
            None => scratch = Some(cols),
        }
    }
    if product.is_some() {
        for (y, (stage, &o)) in ys.iter_mut().zip(stages.iter().zip(outs)) {
            stage.apply(&backend, y.storage_mut()?, geo.n, o, p)?;
        }
    }
    Ok((ys, kept))
}

/// The output gradients `backward` multiplies: one NCHW tensor per output, gathered chunk by
/// chunk into the products' `[O][count * P]` layout, or (im2col in one chunk) already gathered
/// for the whole batch (`Backend::bias_relu_backward_rows`).
enum OutGrads<'a, B: Backend> {
    PerOutput(&'a [Tensor<B>]),
    Gathered(&'a B::Storage),
}

/// Gradients of the input and of the stacked weight (as `forward`), each only if wanted, from
/// every output's gradient; a chunk's gathered output gradients serve both. `columns`: the
/// forward's column matrices, one per chunk (`keep_columns`), or None to unfold again.
#[allow(clippy::too_many_arguments)]
fn backward<B: Backend>(
    x: &Tensor<B>,
    w: &Tensor<B>,
    grads: OutGrads<'_, B>,
    outs: &[usize],
    geo: &ConvGeometry,
    unfolding: Unfolding,
    columns: Option<&[B::Storage]>,
    want_dx: bool,
    want_dw: bool,
    dx_mask: Option<&B::Storage>,
) -> Result<ConvGrads<B>> {
    let backend = x.backend().clone();
    if dx_mask.is_some() && (!unfolding.direct || outs.len() != 1) {
        bail!(
            InvalidArgument,
            "conv2d backward: an input gradient through a mask is the direct path's, of one output"
        );
    }
    let (k, p, total) = (geo.col_rows(), geo.col_cols(), geo.c_out);
    let (kh, kw) = geo.window.kernel;
    let mut dx =
        if want_dx { Some(Tensor::uninit(&backend, [geo.n, geo.c_in, geo.h, geo.w])?) } else { None };
    let mut dw = if want_dw { Some(Tensor::uninit(&backend, [total, geo.c_in, kh, kw])?) } else { None };
    if unfolding.direct {
        let OutGrads::PerOutput(dys) = grads else {
            bail!(InvalidArgument, "conv2d backward: the direct path takes each output's gradient")
        };
        for (i, ((dy, &o), at)) in dys.iter().zip(outs).zip(row_offsets(outs)).enumerate() {
            if let Some(dx) = dx.as_mut() {
                // dx_i (C x P) (+)= W^T (C x O) * dy_i (O x P), summed over the outputs
                let beta = if i == 0 { 0.0 } else { 1.0 };
                let g = Gemm {
                    batch: geo.n,
                    beta,
                    a_offset: at * k,
                    b_stride: o * p,
                    c_stride: k * p,
                    ..Gemm::conv(true, false, k, p, o)
                };
                match dx_mask {
                    // Through the ReLU before the convolution, as the product stores it.
                    Some(mask) => {
                        let store = Epilogue { bias: None, relu: false, block: 0, mask: Some(mask) };
                        backend.gemm_epilogue(&g, w.storage(), dy.storage(), dx.storage_mut()?, &store)?;
                    }
                    None => backend.gemm(&g, w.storage(), dy.storage(), dx.storage_mut()?)?,
                }
            }
            if let Some(dw) = dw.as_mut() {
                // dW (O x C) = sum_i dy_i (O x P) * x_i^T (P x C)
                let g = Gemm {
                    batch: geo.n,
                    a_stride: o * p,
                    b_stride: k * p,
                    c_offset: at * k,
                    ..Gemm::conv(false, true, o, k, p)
                };
                backend.gemm(&g, dy.storage(), x.storage(), dw.storage_mut()?)?;
            }
        }
        return Ok((dx, dw));
    }
    let chunk = unfolding.chunk(geo, outs.len());
    let chunks = geo.n.div_ceil(chunk);
    let implicit = unfolding.implicit_for(geo, outs.len());
    if let Some(columns) = columns {
        if columns.len() != chunks {
            bail!(
                InvalidArgument,
                "conv2d backward: {} kept column matrices for {chunks} chunks",
                columns.len()
            );
        }
    }
    // A 1x1 kernel's input gradient is stored as NCHW by its product's epilogue; a larger one's
    // comes from `conv_input_grad` where the plan says (no column matrix here), else from
    // columns folded back by `col2im`.
    let stored_dx = unfolding.epilogue_stores && geo.is_pointwise();
    let implicit_dx = implicit && unfolding.implicit_input_grad;
    // Unfolded columns (without kept ones, unless the backend's products are implicit) and the
    // input gradient's columns.
    let dx_columns = want_dx && !stored_dx && !implicit_dx;
    let unfolds = columns.is_none() && want_dw && !implicit;
    let mut cols = if unfolds || dx_columns { Some(backend.uninit(chunk * k * p)?) } else { None };
    let mut dy_chunk = match grads {
        OutGrads::PerOutput(_) => Some(backend.uninit(chunk * total * p)?),
        OutGrads::Gathered(_) if chunks == 1 => None,
        OutGrads::Gathered(_) => bail!(
            InvalidArgument,
            "conv2d backward: gradients gathered for the whole batch, but the plan takes {chunks} chunks"
        ),
    };
    for (index, first) in (0..geo.n).step_by(chunk).enumerate() {
        let count = chunk.min(geo.n - first);
        // The outputs' gradients for the chunk as one [O x count*P] matrix.
        let dy_chunk: &B::Storage = match (&grads, dy_chunk.as_mut()) {
            (OutGrads::Gathered(gathered), _) => gathered,
            (OutGrads::PerOutput(dys), Some(dy_chunk)) => {
                for ((dy, &o), at) in dys.iter().zip(outs).zip(row_offsets(outs)) {
                    backend.transpose_blocks(
                        dy.storage(),
                        first * o * p,
                        count,
                        o,
                        p,
                        dy_chunk,
                        at * count * p,
                    )?;
                }
                dy_chunk
            }
            (OutGrads::PerOutput(_), None) => unreachable!("allocated for per-output gradients"),
        };
        if let (Some(dw), true) = (dw.as_mut(), implicit) {
            let beta = if first == 0 { 0.0 } else { 1.0 };
            backend.conv_weight_grad(dy_chunk, x.storage(), geo, first, count, beta, dw.storage_mut()?)?;
        } else if let Some(dw) = dw.as_mut() {
            // dW (O x K) += dy (O x count*P) * cols^T (count*P x K)
            let chunk_cols = match (columns, cols.as_mut()) {
                (Some(columns), _) => &columns[index],
                (None, Some(cols)) => {
                    backend.im2col(x.storage(), geo, first, count, cols)?;
                    &*cols
                }
                (None, None) => unreachable!("columns are allocated when none were kept"),
            };
            let g = Gemm {
                beta: if first == 0 { 0.0 } else { 1.0 },
                ..Gemm::conv(false, true, total, k, count * p)
            };
            backend.gemm(&g, dy_chunk, chunk_cols, dw.storage_mut()?)?;
        }
        if let Some(dx) = dx.as_mut() {
            // dcols (K x count*P) = W^T (K x O) * dy (O x count*P), folded back into images;
            // a 1x1 kernel's columns are the images' channels, stored as NCHW by the product.
            let g = Gemm::conv(true, false, k, count * p, total);
            if stored_dx {
                let store = Epilogue { bias: None, relu: false, block: p, mask: None };
                let g = Gemm { c_offset: first * k * p, ..g };
                backend.gemm_epilogue(&g, w.storage(), dy_chunk, dx.storage_mut()?, &store)?;
            } else if implicit_dx {
                backend.conv_input_grad(w.storage(), dy_chunk, geo, first, count, dx.storage_mut()?)?;
            } else {
                let cols = cols.as_mut().expect("columns are allocated for a folded input gradient");
                backend.gemm(&g, w.storage(), dy_chunk, cols)?;
                backend.col2im(cols, geo, first, count, dx.storage_mut()?)?;
            }
        }
    }
    Ok((dx, dw))
}
