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
            let parts: Vec<_> =
                channels.iter().zip(needs).map(|(&c, &need)| (c, need.then_some([n, c, h, w]))).collect();
            split_into(dy, n, h * w, &parts)
        }),
    ))
}

/// `whole` (`n` blocks of channels, `plane_len` values each) split along channels into new
/// tensors: part `i` takes the next `parts[i].0` channels, as a tensor of shape `parts[i].1`
/// (which holds `n x channels x plane_len` values), or is skipped when that is `None`. One
/// `Backend::split_channels` call.
pub(crate) fn split_into<B: Backend>(
    whole: &Tensor<B>,
    n: usize,
    plane_len: usize,
    parts: &[(usize, Option<[usize; 4]>)],
) -> Result<Vec<Option<Tensor<B>>>> {
    let backend = whole.backend();
    let mut tensors = parts
        .iter()
        .map(|(_, s)| s.map(|s| Tensor::uninit(backend, s)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let mut views = tensors
        .iter_mut()
        .zip(parts)
        .map(|(t, &(c, _))| Ok((t.as_mut().map(Tensor::storage_mut).transpose()?, c)))
        .collect::<Result<Vec<_>>>()?;
    backend.split_channels(whole.storage(), &mut views, n, plane_len)?;
    drop(views);
    Ok(tensors)
}
