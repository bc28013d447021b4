//! A weighted sum of tensors of one shape: `sum_i w_i x_i`.
use autograd::Var;
use tensor::{bail, Backend, Result};

/// `sum_i w_i x_i` over `terms` (at least one, all of one shape); each input's gradient is its
/// weight times the output's.
pub fn weighted_sum<B: Backend>(terms: &[(f32, &Var<B>)]) -> Result<Var<B>> {
    let Some(&(_, first)) = terms.first() else { bail!(InvalidArgument, "weighted_sum of no terms") };
    let shape = first.shape().clone();
    if let Some((_, x)) = terms.iter().find(|(_, x)| x.shape() != shape) {
        bail!(Shape, "weighted_sum: a term of shape {} beside one of shape {shape}", x.shape());
    }
    let backend = first.backend();
    let mut out = first.value().zeros_like()?;
    for (w, x) in terms {
        backend.axpy(*w, x.value().storage(), out.storage_mut()?)?;
    }
    let weights: Vec<f32> = terms.iter().map(|(w, _)| *w).collect();
    let parents: Vec<&Var<B>> = terms.iter().map(|(_, x)| *x).collect();
    Ok(Var::from_op(
        "weighted_sum",
        out,
        &parents,
        Box::new(move |dout, _| {
            weights
                .iter()
                .map(|&w| {
                    let mut g = dout.zeros_like()?;
                    backend.axpy(w, dout.storage(), g.storage_mut()?)?;
                    Ok(Some(g))
                })
                .collect()
        }),
    ))
}
