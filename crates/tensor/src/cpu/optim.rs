//! Optimizer updates with PyTorch's formulas, element-wise over one parameter.
use crate::{AdamStep, SgdStep};
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

pub fn sgd_step(param: &mut [f32], grad: &[f32], velocity: Option<&mut [f32]>, hp: &SgdStep) {
    let (lr, mom, wd) = (hp.lr, hp.momentum, hp.weight_decay);
    match velocity {
        Some(v) if mom != 0.0 => {
            param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(
                |((p, g), v)| {
                    for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                        *v = mom * *v + (g + wd * *p);
                        *p -= lr * *v;
                    }
                },
            )
        }
        _ => param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).for_each(|(p, g)| {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * (g + wd * *p);
            }
        }),
    }
}

pub fn adam_step(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], hp: &AdamStep) {
    let (step_size, inv_sqrt_bc2) = hp.bias_corrections();
    let (b1, b2, eps, wd) = (hp.beta1, hp.beta2, hp.eps, hp.weight_decay);
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
                let g = g + wd * *p;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= step_size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
            }
        });
}
