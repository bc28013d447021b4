//! Concatenation along channels (the Inception block's join) and its backward, the split.
use autograd::Var;
use tensor::{bail, Backend, Result, Tensor};

/// Joins NCHW tensors of equal N, H, W along C.
pub fn concat_channels<B: Backend>(xs: &[&Var<B>]) -> Result<Var<B>> {
    let Some(first) = xs.first() else { bail!(InvalidArgument, "concat_channels needs at least one input") };
    let [n, _, h, w] = first.shape().nchw("concat_channels input")?;
    let mut channels = Vec::with_capacity(xs.len());
    for x in xs {
        let [xn, xc, xh, xw] = x.shape().nchw("concat_channels input")?;
        if (xn, xh, xw) != (n, h, w) {
            bail!(
                Shape,
                "concat_channels: input {} does not match {} in batch or spatial size",
                x.shape(),
                first.shape()
            );
        }
        channels.push(xc);
    }
    let total: usize = channels.iter().sum();
    let backend = first.backend();
    let mut y = Tensor::uninit(&backend, [n, total, h, w])?;
    let mut offset = 0;
    for (x, &c) in xs.iter().zip(&channels) {
        backend.copy_channels(x.value_ref().storage(), c, 0, y.storage_mut()?, total, offset, c, n, h * w)?;
        offset += c;
    }
    Ok(Var::from_op(
        "concat_channels",
        y,
        xs,
        Box::new(move |dy, needs| {
            let mut offset = 0;
            let mut grads = Vec::with_capacity(channels.len());
            for (&c, &need) in channels.iter().zip(needs) {
                grads.push(if need {
                    let mut dx = Tensor::uninit(&backend, [n, c, h, w])?;
                    backend.copy_channels(
                        dy.storage(),
                        total,
                        offset,
                        dx.storage_mut()?,
                        c,
                        0,
                        c,
                        n,
                        h * w,
                    )?;
                    Some(dx)
                } else {
                    None
                });
                offset += c;
            }
            Ok(grads)
        }),
    ))
}
