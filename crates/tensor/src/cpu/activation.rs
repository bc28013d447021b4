//! ReLU and dropout: element-wise, with the counter-based RNG the GPU reproduces bit for bit.
use rayon::prelude::*;

/// Chunk size for element-wise rayon loops: large enough that scheduling is noise.
const CHUNK: usize = 1 << 14;

pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.max(0.0));
    });
}

pub fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (y, dy))| {
        dx.iter_mut().zip(y.iter().zip(dy)).for_each(|(dx, (&y, &dy))| *dx = if y > 0.0 { dy } else { 0.0 });
    });
}

/// A counter-based uniform in [0, 1) for element `index` under `seed` (SplitMix64 finaliser):
/// every element's draw is independent of the thread that computes it, and a GPU kernel can
/// compute exactly the same stream.
pub fn uniform(seed: u64, index: u64) -> f32 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

pub fn dropout_forward(x: &[f32], p: f32, seed: u64, y: &mut [f32], mask: &mut [f32]) {
    let keep_scale = 1.0 / (1.0 - p);
    y.par_chunks_mut(CHUNK).zip(mask.par_chunks_mut(CHUNK)).zip(x.par_chunks(CHUNK)).enumerate().for_each(
        |(ci, ((y, m), x))| {
            for (j, ((y, m), &x)) in y.iter_mut().zip(m.iter_mut()).zip(x).enumerate() {
                let keep = uniform(seed, (ci * CHUNK + j) as u64) >= p;
                *m = if keep { keep_scale } else { 0.0 };
                *y = x * *m;
            }
        },
    );
}
