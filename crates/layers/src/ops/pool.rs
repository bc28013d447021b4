//! Max, average and global-average pooling over NCHW inputs.
use autograd::Var;
use tensor::{Backend, PoolGeometry, Result, Tensor, Window};

fn geometry<B: Backend>(x: &Var<B>, window: Window, what: &str) -> Result<PoolGeometry> {
    let [n, c, h, w] = x.shape().nchw(what)?;
    PoolGeometry::new(n, c, h, w, window)
}

/// Max pooling (floor mode; padded cells never win); backward routes to the arg-max the
/// forward stored.
pub fn max_pool2d<B: Backend>(x: &Var<B>, window: Window) -> Result<Var<B>> {
    let geo = geometry(x, window, "max_pool2d input")?;
    let backend = x.backend();
    let mut y = Tensor::uninit(&backend, [geo.n, geo.c, geo.out_h, geo.out_w])?;
    let mut argmax = backend.uninit(y.shape().numel())?;
    backend.max_pool2d_forward(x.value_ref().storage(), &geo, y.storage_mut()?, &mut argmax)?;
    Ok(Var::from_op(
        "max_pool2d",
        y,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::uninit(&backend, [geo.n, geo.c, geo.h, geo.w])?;
            backend.max_pool2d_backward(&argmax, dy.storage(), &geo, dx.storage_mut()?)?;
            Ok(vec![Some(dx)])
        }),
    ))
}

/// Average pooling, padding counted in the divisor (PyTorch's `count_include_pad=True`).
pub fn avg_pool2d<B: Backend>(x: &Var<B>, window: Window) -> Result<Var<B>> {
    let geo = geometry(x, window, "avg_pool2d input")?;
    let backend = x.backend();
    let mut y = Tensor::uninit(&backend, [geo.n, geo.c, geo.out_h, geo.out_w])?;
    backend.avg_pool2d_forward(x.value_ref().storage(), &geo, y.storage_mut()?)?;
    Ok(Var::from_op(
        "avg_pool2d",
        y,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::uninit(&backend, [geo.n, geo.c, geo.h, geo.w])?;
            backend.avg_pool2d_backward(dy.storage(), &geo, dx.storage_mut()?)?;
            Ok(vec![Some(dx)])
        }),
    ))
}

/// Mean over each H x W plane: [N, C, H, W] -> [N, C, 1, 1] (PyTorch's AdaptiveAvgPool2d(1)).
pub fn global_avg_pool2d<B: Backend>(x: &Var<B>) -> Result<Var<B>> {
    let [n, c, h, w] = x.shape().nchw("global_avg_pool2d input")?;
    let backend = x.backend();
    let mut y = Tensor::uninit(&backend, [n, c, 1, 1])?;
    backend.global_avg_pool_forward(x.value_ref().storage(), n * c, h * w, y.storage_mut()?)?;
    Ok(Var::from_op(
        "global_avg_pool2d",
        y,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::uninit(&backend, [n, c, h, w])?;
            backend.global_avg_pool_backward(dy.storage(), n * c, h * w, dx.storage_mut()?)?;
            Ok(vec![Some(dx)])
        }),
    ))
}
