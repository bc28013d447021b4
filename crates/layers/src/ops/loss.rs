//! Fused softmax cross-entropy on logits with integer labels, and its label-smoothed form.
use super::weighted_sum;
use autograd::Var;
use tensor::{bail, Backend, Result, Tensor};

/// Mean cross-entropy of logits [N, classes] against `labels` (each `< classes`). Returns the
/// loss (a scalar Var) and the number of correct arg-max predictions (a one-value tensor that
/// stays on the device until read).
pub fn cross_entropy<B: Backend>(logits: &Var<B>, labels: &[usize]) -> Result<(Var<B>, Tensor<B>)> {
    let [n, classes] = logits.shape().dims_n::<2>("cross_entropy logits")?;
    if labels.len() != n {
        bail!(Shape, "cross_entropy: {} labels for logits of shape {}", labels.len(), logits.shape());
    }
    if let Some((i, &bad)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        bail!(
            InvalidArgument,
            "cross_entropy: label {bad} at index {i} is out of range for {classes} classes"
        );
    }
    let backend = logits.backend();
    let labels = labels.to_vec();
    let lv = logits.value();
    let mut loss = Tensor::scalar(&backend, 0.0)?;
    let mut correct = Tensor::scalar(&backend, 0.0)?;
    backend.softmax_cross_entropy_forward(
        lv.storage(),
        &labels,
        n,
        classes,
        loss.storage_mut()?,
        correct.storage_mut()?,
    )?;
    let loss = Var::from_op(
        "cross_entropy",
        loss,
        &[logits],
        Box::new(move |dloss, _| {
            let mut dlogits = lv.uninit_like()?;
            backend.softmax_cross_entropy_backward(
                lv.storage(),
                &labels,
                n,
                classes,
                dloss.storage(),
                dlogits.storage_mut()?,
            )?;
            Ok(vec![Some(dlogits)])
        }),
    );
    Ok((loss, correct))
}

/// Cross-entropy against labels smoothed by `epsilon` (PyTorch's `label_smoothing`): the target
/// is `1 - epsilon` on the label plus `epsilon / classes` on every class, so the loss is
/// `(1 - epsilon) CE(label) + epsilon / classes * sum_k CE(k)`, computed as exactly that sum of
/// fused cross-entropies (their gradients sum through the autograd graph). The correct count is
/// against the true labels.
pub fn cross_entropy_smoothed<B: Backend>(
    logits: &Var<B>,
    labels: &[usize],
    epsilon: f32,
) -> Result<(Var<B>, Tensor<B>)> {
    if !(0.0..1.0).contains(&epsilon) {
        bail!(InvalidArgument, "label smoothing must be in [0, 1), got {epsilon}");
    }
    let (loss, correct) = cross_entropy(logits, labels)?;
    if epsilon == 0.0 {
        return Ok((loss, correct));
    }
    let [n, classes] = logits.shape().dims_n::<2>("cross_entropy logits")?;
    let mut terms = vec![loss];
    for k in 0..classes {
        terms.push(cross_entropy(logits, &vec![k; n])?.0);
    }
    let mut weights = vec![1.0 - epsilon];
    weights.extend(std::iter::repeat_n(epsilon / classes as f32, classes));
    let pairs: Vec<(f32, &Var<B>)> = weights.into_iter().zip(&terms).collect();
    Ok((weighted_sum(&pairs)?, correct))
}
