//! Argument checks shared by every backend, so that a short buffer or an impossible argument is
//! the same clear `Err` on the CPU and on the GPU, never an out-of-bounds access.
//!
//! Every size is computed with checked arithmetic (`extent`): release builds wrap on overflow,
//! and a wrapped requirement would let a short buffer pass. Geometries are recomputed from their
//! inputs (`conv_geometry`, `pool_geometry`), since their fields are public and a kernel trusts
//! the output size and the plane-size limit they carry.
use crate::{bail, ConvGeometry, Error, Gemm, PoolGeometry, Result};

/// `sum over terms of (product of the term's factors)`, or an error naming `op` and `what` when
/// it does not fit in a `usize`.
pub fn extent(op: &str, what: &str, terms: &[&[usize]]) -> Result<usize> {
    terms
        .iter()
        .try_fold(0usize, |sum, factors| {
            factors.iter().try_fold(1usize, |p, &f| p.checked_mul(f)).and_then(|p| sum.checked_add(p))
        })
        .ok_or_else(|| {
            let terms: Vec<String> = terms
                .iter()
                .map(|t| t.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(" x "))
                .collect();
            Error::InvalidArgument(format!("{op}: the size of {what} ({}) overflows", terms.join(" + ")))
        })
}

/// `Err` unless a buffer of `have` values holds the `need` an op reads or writes.
pub fn need(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        bail!(Shape, "{op}: {what} holds {have} values, {need} needed");
    }
    Ok(())
}

/// `need` with the requirement given as `extent`'s terms.
fn need_extent(op: &str, what: &str, have: usize, terms: &[&[usize]]) -> Result<()> {
    need(op, what, have, extent(op, what, terms)?)
}

/// A dropout probability lies in [0, 1): 1 would drop everything and scale by infinity. NaN is
/// refused too.
pub fn dropout_probability(p: f32) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!(InvalidArgument, "dropout probability must be in [0, 1), got {p}");
    }
    Ok(())
}

/// The channel ranges of `Backend::copy_channels` lie inside both tensors.
pub fn channel_ranges(
    src_channels: usize,
    src_first: usize,
    dst_channels: usize,
    dst_first: usize,
    count: usize,
) -> Result<()> {
    let inside = |first: usize, channels: usize| first.checked_add(count).is_some_and(|end| end <= channels);
    if !inside(src_first, src_channels) || !inside(dst_first, dst_channels) {
        bail!(
            Shape,
            "copy_channels: {count} channels from channel {src_first} of {src_channels} to channel \
             {dst_first} of {dst_channels}"
        );
    }
    Ok(())
}

/// `Backend::concat_channels` and `split_channels`: every part (its buffer's length, or `None`
/// for a part skipped, and its channels) holds its `n` images, and `whole` their channels
/// together. Returns the channels of `whole`.
pub fn channel_parts(
    op: &str,
    whole: usize,
    parts: &[(Option<usize>, usize)],
    n: usize,
    plane_len: usize,
) -> Result<usize> {
    let mut total = 0usize;
    for (i, &(len, channels)) in parts.iter().enumerate() {
        if let Some(len) = len {
            need_extent(op, &format!("part {i}"), len, &[&[n, channels, plane_len]])?;
        }
        total = total
            .checked_add(channels)
            .ok_or_else(|| Error::InvalidArgument(format!("{op}: the channels of the parts overflow")))?;
    }
    need_extent(op, "the whole", whole, &[&[n, total, plane_len]])?;
    Ok(total)
}

/// An SGD step: the gradient, and with momentum a velocity buffer, as long as the parameter.
pub fn sgd(param: usize, grad: usize, momentum: f32, velocity: Option<usize>) -> Result<()> {
    need("sgd_step", "grad", grad, param)?;
    if momentum != 0.0 {
        match velocity {
            Some(len) => need("sgd_step", "velocity", len, param)?,
            None => bail!(InvalidArgument, "sgd_step: momentum {momentum} needs a velocity buffer"),
        }
    }
    Ok(())
}

/// An Adam step: buffers as long as the parameter, and a step counted from 1 (the bias
/// corrections divide by `1 - beta^step`).
pub fn adam(param: usize, grad: usize, m: usize, v: usize, step: u64) -> Result<()> {
    same_len("adam_step", param, &[grad, m, v])?;
    if step == 0 {
        bail!(InvalidArgument, "adam_step: step counts from 1");
    }
    Ok(())
}

// ---- per-kernel length checks: what each `Backend` method reads and writes, in one place ----

/// The product's operands hold what it reads and writes, and a batch's outputs do not overlap
/// (threads and GPU blocks write them concurrently).
pub fn gemm(g: &Gemm, a: usize, b: usize, c: usize) -> Result<()> {
    let (la, lb, lc) = g.required_lengths()?;
    need("gemm", "A", a, la)?;
    need("gemm", "B", b, lb)?;
    need("gemm", "C", c, lc)?;
    // m * n fits: it is a term of `lc`.
    if g.batch > 1 && g.c_stride != 0 && g.c_stride < g.m * g.n {
        bail!(
            InvalidArgument,
            "gemm: c_stride {} is less than the {}x{} output, so the batch's {} outputs overlap \
             (c_stride 0 sums them into one)",
            g.c_stride,
            g.m,
            g.n,
            g.batch
        );
    }
    Ok(())
}

/// `Backend::gemm_rows_epilogue`: one product (`batch` 1) of untransposed A, so that each
/// output's rows of A are a contiguous slice, whose `m` rows the outputs' `rows` share out
/// exactly (at least one output).
pub fn gemm_rows(g: &Gemm, rows: &[usize]) -> Result<()> {
    let total: usize = rows.iter().sum();
    if g.trans_a || g.batch != 1 || total != g.m || rows.is_empty() {
        bail!(
            InvalidArgument,
            "gemm_rows_epilogue: needs one product (batch {}) of untransposed A (trans_a {}) whose {} rows the \
             {} outputs' {total} rows share out",
            g.batch,
            g.trans_a,
            g.m,
            rows.len()
        );
    }
    Ok(())
}

/// `gemm_epilogue`'s arguments: the product's (`gemm`), `beta` 0, a bias of `m` values, a
/// mask as long as C, and the layouts every backend can compose (see `Backend::gemm_epilogue`).
/// `lens`: A, B, C.
pub fn gemm_epilogue(
    g: &Gemm,
    lens: (usize, usize, usize),
    bias: Option<usize>,
    relu: bool,
    block: usize,
    mask: Option<usize>,
) -> Result<()> {
    let (a, b, c) = lens;
    gemm(g, a, b, c)?;
    if g.beta != 0.0 {
        bail!(
            InvalidArgument,
            "gemm_epilogue: beta must be 0 (the epilogue follows a fresh product), got {}",
            g.beta
        );
    }
    if let Some(len) = bias {
        if len != g.m {
            bail!(InvalidArgument, "gemm_epilogue: the bias has {len} values for {} rows", g.m);
        }
    }
    if let Some(len) = mask {
        if block > 0 || len != c {
            bail!(
                InvalidArgument,
                "gemm_epilogue: a mask needs C stored as the product stores it (block 0, got {block}) and as many values as C ({len} for {c})"
            );
        }
    }
    if block > 0 {
        if g.batch != 1 || !g.n.is_multiple_of(block) {
            bail!(
                InvalidArgument,
                "gemm_epilogue: blocks of {block} columns need a single product whose {} columns they divide (batch {})",
                g.n,
                g.batch
            );
        }
    } else if bias.is_some() || relu || mask.is_some() {
        let items = if g.c_stride == 0 { 1 } else { g.batch };
        let whole = g.c_offset == 0 && (items == 1 || g.c_stride == g.m * g.n) && c == items * g.m * g.n;
        if !whole {
            bail!(
                InvalidArgument,
                "gemm_epilogue: a bias or ReLU needs C to be the {items} outputs of {}x{} alone (C holds {c} values, offset {}, stride {})",
                g.m,
                g.n,
                g.c_offset,
                g.c_stride
            );
        }
    }
    Ok(())
}

/// `geo` is what `ConvGeometry::new` makes of its inputs (sizes that fit, the output size that
/// follows from the window).
pub fn conv_geometry(op: &str, geo: &ConvGeometry) -> Result<()> {
    let again = ConvGeometry::new(geo.n, geo.c_in, geo.h, geo.w, geo.c_out, geo.window)
        .map_err(|e| Error::InvalidArgument(format!("{op}: {e}")))?;
    same_output(op, (geo.h, geo.w), &geo.window, (geo.out_h, geo.out_w), (again.out_h, again.out_w))
}

/// `geo` is what `PoolGeometry::new` makes of its inputs (see `conv_geometry`).
pub fn pool_geometry(op: &str, geo: &PoolGeometry) -> Result<()> {
    let again = PoolGeometry::new(geo.n, geo.c, geo.h, geo.w, geo.window)
        .map_err(|e| Error::InvalidArgument(format!("{op}: {e}")))?;
    same_output(op, (geo.h, geo.w), &geo.window, (geo.out_h, geo.out_w), (again.out_h, again.out_w))
}

/// A geometry's stored output size is the one its input and window give.
fn same_output(
    op: &str,
    input: (usize, usize),
    window: &crate::Window,
    stored: (usize, usize),
    derived: (usize, usize),
) -> Result<()> {
    if stored != derived {
        bail!(
            InvalidArgument,
            "{op}: the geometry's output is {}x{}, but a {}x{} input under {window:?} gives {}x{}",
            stored.0,
            stored.1,
            input.0,
            input.1,
            derived.0,
            derived.1
        );
    }
    Ok(())
}

/// `im2col` (and, with `cols` and `images` swapped in meaning, `col2im`): a valid geometry, the
/// images `first..first + count`, and the chunk's column matrix.
pub fn unfold(
    op: &str,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    images: usize,
    cols: usize,
) -> Result<()> {
    conv_geometry(op, geo)?;
    let image = geo.c_in * geo.h * geo.w; // fits: checked by ConvGeometry::new
    need_extent(op, "images", images, &[&[first, image], &[count, image]])?;
    need_extent(op, "cols", cols, &[&[count, geo.col_rows(), geo.col_cols()]])
}

/// The convolution products' buffers (`Backend::conv_forward`, `conv_weight_grad`,
/// `conv_input_grad`): the weights (or their gradient) `[c_out][col_rows()]`, images
/// `first..first + count` of the input (or its gradient), and `out` values of the output side:
/// those images of the output, or the chunk's output gradient `[c_out][count * col_cols()]`
/// (the same count of values).
pub fn conv_products(
    op: &str,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    (w, images, out): (usize, usize, usize),
    out_images: bool,
) -> Result<()> {
    conv_geometry(op, geo)?;
    need_extent(op, "weights", w, &[&[geo.c_out, geo.col_rows()]])?;
    let image = geo.c_in * geo.h * geo.w; // fits: checked by ConvGeometry::new
    need_extent(op, "the input", images, &[&[first, image], &[count, image]])?;
    let plane = geo.c_out * geo.col_cols(); // fits: the output's extent is checked too
    let from = if out_images { first } else { 0 };
    need_extent(op, "the output", out, &[&[from, plane], &[count, plane]])
}

/// `Backend::transpose_blocks`: `src` and `dst` each hold `rows x cols` blocks of `block` values
/// from their offsets.
pub fn transpose_blocks(
    src: usize,
    src_offset: usize,
    rows: usize,
    cols: usize,
    block: usize,
    dst: usize,
    dst_offset: usize,
) -> Result<()> {
    let op = "transpose_blocks";
    need_extent(op, "src", src, &[&[src_offset], &[rows, cols, block]])?;
    need_extent(op, "dst", dst, &[&[dst_offset], &[rows, cols, block]])
}

/// `add_bias` and `bias_grad`: a full `outer x channels x inner` tensor and a per-channel one.
pub fn bias(
    op: &str,
    full: usize,
    per_channel: usize,
    outer: usize,
    channels: usize,
    inner: usize,
) -> Result<()> {
    need_extent(op, "tensor", full, &[&[outer, channels, inner]])?;
    need(op, "bias", per_channel, channels)
}

/// A pooling kernel's geometry and its input-sized and output-sized buffers.
pub fn pool(op: &str, geo: &PoolGeometry, inputs: &[usize], outputs: &[usize]) -> Result<()> {
    pool_geometry(op, geo)?;
    // Both products fit: checked by PoolGeometry::new.
    let (input, output) = (geo.planes() * geo.h * geo.w, geo.planes() * geo.out_h * geo.out_w);
    inputs.iter().try_for_each(|&len| need(op, "input-sized buffer", len, input))?;
    outputs.iter().try_for_each(|&len| need(op, "output-sized buffer", len, output))
}

/// Global average pooling: `planes` planes of `plane_len` values (none empty) and their means.
pub fn global_pool(op: &str, planes: usize, plane_len: usize, full: usize, reduced: usize) -> Result<()> {
    if plane_len == 0 && planes > 0 {
        bail!(InvalidArgument, "{op}: the mean of an empty plane is undefined ({planes} planes of 0 values)");
    }
    need_extent(op, "planes", full, &[&[planes, plane_len]])?;
    need(op, "means", reduced, planes)
}

/// Element-wise kernels: every other buffer holds at least `len` values.
pub fn same_len(op: &str, len: usize, others: &[usize]) -> Result<()> {
    others.iter().try_for_each(|&other| need(op, "operand", other, len))
}

/// The loss kernels: `n x classes` logits (and their gradient), `n` labels below `classes`,
/// one-value scalars.
pub fn softmax_cross_entropy(
    op: &str,
    n: usize,
    classes: usize,
    logits: &[usize],
    labels: &[usize],
    scalars: &[usize],
) -> Result<()> {
    if classes == 0 && n > 0 {
        bail!(InvalidArgument, "{op}: {n} rows of 0 classes");
    }
    let len = extent(op, "logits", &[&[n, classes]])?;
    logits.iter().try_for_each(|&have| need(op, "logits", have, len))?;
    need(op, "labels", labels.len(), n)?;
    if let Some((i, &bad)) = labels[..n].iter().enumerate().find(|(_, &l)| l >= classes) {
        bail!(InvalidArgument, "{op}: label {bad} at index {i} is not a class index below {classes}");
    }
    scalars.iter().try_for_each(|&len| need(op, "scalar", len, 1))
}

/// `Backend::copy_channels`: the channel ranges lie inside both tensors (`channel_ranges`), and
/// `src` and `dst` hold `n` images of `src_channels` and `dst_channels` planes of `plane_len`.
#[allow(clippy::too_many_arguments)]
pub fn copy_channels(
    src: usize,
    src_channels: usize,
    src_first: usize,
    dst: usize,
    dst_channels: usize,
    dst_first: usize,
    count: usize,
    n: usize,
    plane_len: usize,
) -> Result<()> {
    channel_ranges(src_channels, src_first, dst_channels, dst_first, count)?;
    need_extent("copy_channels", "src", src, &[&[n, src_channels, plane_len]])?;
    need_extent("copy_channels", "dst", dst, &[&[n, dst_channels, plane_len]])
}
