//! ReLU and inverted dropout.
use autograd::Var;
use tensor::{Backend, Result, Tensor};

/// `max(x, 0)` element-wise, any shape; the backward passes the gradient where the output is
/// positive and zero elsewhere.
pub fn relu<B: Backend>(x: &Var<B>) -> Result<Var<B>> {
    let xv = x.value();
    let backend = xv.backend().clone();
    let mut y = xv.uninit_like()?;
    backend.relu_forward(xv.storage(), y.storage_mut()?)?;
    let saved = y.clone();
    Ok(Var::from_op(
        "relu",
        y,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = saved.uninit_like()?;
            backend.relu_backward(saved.storage(), dy.storage(), dx.storage_mut()?)?;
            Ok(vec![Some(dx)])
        }),
    ))
}

/// Zeroes each value with probability `p` and scales the rest by `1 / (1 - p)`, with the mask
/// drawn from `seed`; the identity when `p == 0`.
pub fn dropout<B: Backend>(x: &Var<B>, p: f32, seed: u64) -> Result<Var<B>> {
    tensor::checks::dropout_probability(p)?;
    if p == 0.0 {
        return Ok(x.clone());
    }
    let xv = x.value();
    let backend = xv.backend().clone();
    let mut y = xv.uninit_like()?;
    let mut mask = xv.uninit_like()?;
    backend.dropout_forward(xv.storage(), p, seed, y.storage_mut()?, mask.storage_mut()?)?;
    Ok(Var::from_op(
        "dropout",
        y,
        &[x],
        Box::new(move |dy, _| {
            let mut dx: Tensor<B> = mask.uninit_like()?;
            backend.mul(dy.storage(), mask.storage(), dx.storage_mut()?)?;
            Ok(vec![Some(dx)])
        }),
    ))
}
