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
    {
        let values: Vec<_> = xs.iter().map(|x| x.value_ref()).collect();
        let parts: Vec<_> = values.iter().zip(&channels).map(|(v, &c)| (v.storage(), c)).collect();
        backend.concat_channels(&parts, y.storage_mut()?, n, h * w)?;
    }
    Ok(Var::from_op(
        "concat_channels",
        y,
        xs,
        Box::new(move |dy, needs| {
            let mut grads = channels
                .iter()
                .zip(needs)
                .map(|(&c, &need)| need.then(|| Tensor::uninit(&backend, [n, c, h, w])).transpose())
                .collect::<Result<Vec<_>>>()?;
            let mut parts = grads
                .iter_mut()
                .zip(&channels)
                .map(|(dx, &c)| Ok((dx.as_mut().map(Tensor::storage_mut).transpose()?, c)))
                .collect::<Result<Vec<_>>>()?;
            backend.split_channels(dy.storage(), &mut parts, n, h * w)?;
            drop(parts);
            Ok(grads)
        }),
    ))
}
