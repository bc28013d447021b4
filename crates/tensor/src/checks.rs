//! Argument checks shared by every backend, so that a short buffer or an impossible argument is
//! the same clear `Err` on the CPU and on the GPU, never an out-of-bounds access.
use crate::{bail, Result};

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
pub fn channel_ranges(src_channels: usize, src_first: usize, dst_channels: usize, dst_first: usize, count: usize) -> Result<()> {
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

/// SGD with momentum needs a velocity buffer of the parameter's length.
pub fn sgd_velocity(momentum: f32, velocity: Option<usize>, param_len: usize) -> Result<()> {
    if momentum != 0.0 {
        match velocity {
            Some(len) => need("sgd_step", "velocity", len, param_len)?,
            None => bail!(InvalidArgument, "sgd_step: momentum {momentum} needs a velocity buffer"),
        }
    }
    Ok(())
}

/// Adam's bias corrections divide by `1 - beta^step`: steps count from 1.
pub fn adam_step(step: u64) -> Result<()> {
    if step == 0 {
        bail!(InvalidArgument, "adam_step: step counts from 1");
    }
    Ok(())
}
