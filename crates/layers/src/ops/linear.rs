//! Fully connected layer `y = x W^T + b` and flatten.
use autograd::Var;
use tensor::{bail, Backend, Gemm, Result, Tensor};

/// x `[N, in]`, weight `[out, in]` (PyTorch's layout), bias `[out]`.
pub fn linear<B: Backend>(x: &Var<B>, weight: &Var<B>, bias: Option<&Var<B>>) -> Result<Var<B>> {
    let (xs, ws) = (x.shape(), weight.shape());
    let [n, inp] = xs.dims_n::<2>("linear input")?;
    let [out, w_in] = ws.dims_n::<2>("linear weight")?;
    if w_in != inp {
        bail!(Shape, "linear: input {xs} has {inp} features but weight {ws} expects {w_in}");
    }
    if let Some(b) = bias {
        if b.shape().dims() != [out] {
            bail!(Shape, "linear: bias has shape {}, expected [{out}]", b.shape());
        }
    }
    let (xv, wv) = (x.value(), weight.value());
    let backend = xv.backend().clone();
    let mut y = Tensor::uninit(&backend, [n, out])?;
    backend.gemm(&Gemm::new(false, true, n, out, inp), xv.storage(), wv.storage(), y.storage_mut()?)?;
    if let Some(b) = bias {
        backend.add_bias(y.storage_mut()?, b.value_ref().storage(), n, out, 1)?;
    }
    let mut parents = vec![x, weight];
    parents.extend(bias);
    Ok(Var::from_op(
        "linear",
        y,
        &parents,
        Box::new(move |dy, needs| {
            let mut grads = vec![None, None];
            if needs[0] {
                // dx (N x in) = dy (N x out) * W (out x in)
                let mut dx = xv.uninit_like()?;
                backend.gemm(
                    &Gemm::new(false, false, n, inp, out),
                    dy.storage(),
                    wv.storage(),
                    dx.storage_mut()?,
                )?;
                grads[0] = Some(dx);
            }
            if needs[1] {
                // dW (out x in) = dy^T (out x N) * x (N x in)
                let mut dw = wv.uninit_like()?;
                backend.gemm(
                    &Gemm::new(true, false, out, inp, n),
                    dy.storage(),
                    xv.storage(),
                    dw.storage_mut()?,
                )?;
                grads[1] = Some(dw);
            }
            if needs.len() > 2 {
                let mut db = Tensor::uninit(&backend, [out])?;
                backend.bias_grad(dy.storage(), n, out, 1, db.storage_mut()?)?;
                grads.push(Some(db));
            }
            Ok(grads)
        }),
    ))
}

/// [N, d1, d2, ...] -> [N, d1 * d2 * ...]; the gradient is reshaped back.
pub fn flatten<B: Backend>(x: &Var<B>) -> Result<Var<B>> {
    let shape = x.shape();
    if shape.rank() < 1 {
        bail!(Shape, "flatten needs a batch dimension, got shape {shape}");
    }
    let n = shape.dim(0);
    let y = x.value().reshape([n, shape.numel() / n.max(1)])?;
    Ok(Var::from_op("flatten", y, &[x], Box::new(move |dy, _| Ok(vec![Some(dy.reshape(shape)?)]))))
}
