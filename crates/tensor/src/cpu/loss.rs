//! Fused softmax cross-entropy on logits, stable through log-sum-exp.
use rayon::prelude::*;

/// Per row: (log-sum-exp, index of the first maximum).
fn row_stats(row: &[f32]) -> (f64, usize) {
    let mut arg = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[arg] {
            arg = j;
        }
    }
    let max = row[arg] as f64;
    let s: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    (max + s.ln(), arg)
}

/// Returns (mean loss, number of rows whose arg-max is the label).
pub fn softmax_cross_entropy_forward(
    logits: &[f32],
    labels: &[usize],
    n: usize,
    classes: usize,
) -> (f32, f32) {
    if n == 0 {
        // The mean over no rows, as PyTorch gives it.
        return (f32::NAN, 0.0);
    }
    // Per-row terms in parallel, summed in row order so the result never depends on scheduling
    // (a resumed run must reproduce the same losses).
    let rows: Vec<(f64, bool)> = logits[..n * classes]
        .par_chunks(classes)
        .zip(labels.par_iter())
        .map(|(row, &label)| {
            let (lse, arg) = row_stats(row);
            (lse - row[label] as f64, arg == label)
        })
        .collect();
    let loss: f64 = rows.iter().map(|r| r.0).sum();
    let correct = rows.iter().filter(|r| r.1).count();
    ((loss / n as f64) as f32, correct as f32)
}

pub fn softmax_cross_entropy_backward(
    logits: &[f32],
    labels: &[usize],
    n: usize,
    classes: usize,
    dloss: f32,
    dlogits: &mut [f32],
) {
    if n == 0 {
        return;
    }
    let scale = dloss as f64 / n as f64;
    dlogits[..n * classes]
        .par_chunks_mut(classes)
        .zip(logits.par_chunks(classes))
        .zip(labels.par_iter())
        .for_each(|((d, row), &label)| {
            let (lse, _) = row_stats(row);
            for (j, (d, &v)) in d.iter_mut().zip(row).enumerate() {
                let p = (v as f64 - lse).exp();
                let onehot = if j == label { 1.0 } else { 0.0 };
                *d = ((p - onehot) * scale) as f32;
            }
        });
}
