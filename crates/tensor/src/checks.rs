//! Argument checks shared by every backend, so that a short buffer or an impossible argument is
//! the same clear `Err` on the CPU and on the GPU, never an out-of-bounds access.
use crate::{bail, ConvGeometry, Gemm, PoolGeometry, Result};

/// `Err` unless a buffer of `have` values holds the `need` an op reads or writes.
pub fn need(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        bail!(Shape, "{op}: {what} holds {have} values, {need} needed");
    }
    Ok(())
}

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
    if src_first + count > src_channels || dst_first + count > dst_channels {
        bail!(
            Shape,
            "copy_channels: channels {src_first}..{} of {src_channels} to {dst_first}..{} of {dst_channels}",
            src_first + count,
            dst_first + count
        );
    }
    Ok(())
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

pub fn gemm(g: &Gemm, a: usize, b: usize, c: usize) -> Result<()> {
    let (la, lb, lc) = g.required_lengths();
    need("gemm", "A", a, la)?;
    need("gemm", "B", b, lb)?;
    need("gemm", "C", c, lc)
}

/// `im2col` (and, with `cols` and `images` swapped in meaning, `col2im`): the images range and
/// the chunk's column matrix.
pub fn unfold(
    op: &str,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    images: usize,
    cols: usize,
) -> Result<()> {
    need(op, "images", images, (first + count) * geo.c_in * geo.h * geo.w)?;
    need(op, "cols", cols, count * geo.col_rows() * geo.col_cols())
}

pub fn transpose_blocks(
    src: usize,
    src_offset: usize,
    rows: usize,
    cols: usize,
    block: usize,
    dst: usize,
    dst_offset: usize,
) -> Result<()> {
    let len = rows * cols * block;
    need("transpose_blocks", "src", src, src_offset + len)?;
    need("transpose_blocks", "dst", dst, dst_offset + len)
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
    need(op, "tensor", full, outer * channels * inner)?;
    need(op, "bias", per_channel, channels)
}

/// A pooling kernel's input-sized and output-sized buffers.
pub fn pool(op: &str, geo: &PoolGeometry, inputs: &[usize], outputs: &[usize]) -> Result<()> {
    inputs.iter().try_for_each(|&len| need(op, "input-sized buffer", len, geo.planes() * geo.h * geo.w))?;
    outputs
        .iter()
        .try_for_each(|&len| need(op, "output-sized buffer", len, geo.planes() * geo.out_h * geo.out_w))
}

pub fn global_pool(op: &str, planes: usize, plane_len: usize, full: usize, reduced: usize) -> Result<()> {
    need(op, "planes", full, planes * plane_len)?;
    need(op, "means", reduced, planes)
}

/// Element-wise kernels: every other buffer holds at least `len` values.
pub fn same_len(op: &str, len: usize, others: &[usize]) -> Result<()> {
    others.iter().try_for_each(|&other| need(op, "operand", other, len))
}

/// The loss kernels: `n x classes` logits (and their gradient), `n` labels, one-value scalars.
pub fn softmax_cross_entropy(
    op: &str,
    n: usize,
    classes: usize,
    logits: &[usize],
    labels: usize,
    scalars: &[usize],
) -> Result<()> {
    logits.iter().try_for_each(|&len| need(op, "logits", len, n * classes))?;
    need(op, "labels", labels, n)?;
    scalars.iter().try_for_each(|&len| need(op, "scalar", len, 1))
}

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
    need("copy_channels", "src", src, n * src_channels * plane_len)?;
    need("copy_channels", "dst", dst, n * dst_channels * plane_len)
}
