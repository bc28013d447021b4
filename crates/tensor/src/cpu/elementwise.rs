//! Element-wise maps and reductions, and the layout copies (channel ranges, block transposes).
use rayon::prelude::*;

/// Chunk size for element-wise rayon loops: large enough that scheduling is noise.
const CHUNK: usize = 1 << 14;

pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y += alpha * x);
    });
}

pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = a * b);
    });
}

pub fn scale(x: &mut [f32], alpha: f32) {
    x.par_chunks_mut(CHUNK).for_each(|x| x.iter_mut().for_each(|v| *v *= alpha));
}

pub fn sum(x: &[f32]) -> f32 {
    // Fixed chunks summed in order: the same result whatever the thread scheduling.
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(|c| c.iter().map(|&v| v as f64).sum::<f64>()).collect();
    partials.iter().sum::<f64>() as f32
}

#[allow(clippy::too_many_arguments)]
pub fn copy_channels(
    src: &[f32],
    src_channels: usize,
    src_first: usize,
    dst: &mut [f32],
    dst_channels: usize,
    dst_first: usize,
    count: usize,
    n: usize,
    plane_len: usize,
) {
    let block = count * plane_len;
    if block == 0 || n == 0 {
        return;
    }
    dst[..n * dst_channels * plane_len].par_chunks_mut(dst_channels * plane_len).enumerate().for_each(
        |(img, d)| {
            let s = &src[(img * src_channels + src_first) * plane_len..][..block];
            d[dst_first * plane_len..][..block].copy_from_slice(s);
        },
    );
}

/// `dst[(c * rows + r) * block ..] = src[(r * cols + c) * block ..]` for every block.
pub fn transpose_blocks(src: &[f32], rows: usize, cols: usize, block: usize, dst: &mut [f32]) {
    if rows * cols * block == 0 {
        return;
    }
    dst[..rows * cols * block].par_chunks_mut(rows * block).enumerate().for_each(|(c, out)| {
        for (r, b) in out.chunks_mut(block).enumerate() {
            b.copy_from_slice(&src[(r * cols + c) * block..][..block]);
        }
    });
}
