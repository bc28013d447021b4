//! Per-channel bias: adding it, its gradient, and both fused with ReLU (a convolution's
//! output and its backward in one pass).
use rayon::prelude::*;

pub fn add_bias(y: &mut [f32], bias: &[f32], channels: usize, inner: usize) {
    if channels * inner == 0 {
        return;
    }
    y.par_chunks_mut(channels * inner).for_each(|item| {
        for (c, plane) in item.chunks_mut(inner).enumerate() {
            let b = bias[c];
            plane.iter_mut().for_each(|v| *v += b);
        }
    });
}

/// Each channel's sum over `outer` items of `inner` values. Whole items per thread, read in
/// order (a channel's strips are `channels * inner` apart, and GoogLeNet's are 9-36 long), each
/// strip summed in 16 f32 lanes and the strips in f64.
pub fn bias_grad(dy: &[f32], outer: usize, channels: usize, inner: usize, dbias: &mut [f32]) {
    if channels == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if outer >= threads && inner > 0 {
        let per = outer.div_ceil(threads);
        let item = channels * inner;
        let partials: Vec<Vec<f64>> = dy[..outer * item]
            .par_chunks(per * item)
            .map(|items| {
                let mut acc = vec![0.0f64; channels];
                for one in items.chunks_exact(item) {
                    for (a, strip) in acc.iter_mut().zip(one.chunks_exact(inner)) {
                        *a += strip_sum(strip) as f64;
                    }
                }
                acc
            })
            .collect();
        add_up_channels(&partials, &mut dbias[..channels]);
        return;
    }
    dbias[..channels].par_iter_mut().enumerate().for_each(|(c, db)| {
        let mut s = 0.0f64;
        for o in 0..outer {
            s += dy[(o * channels + c) * inner..][..inner].iter().map(|&v| v as f64).sum::<f64>();
        }
        *db = s as f32;
    });
}

/// `y = max(y + bias[c], 0)` over `[outer][channels][inner]`.
pub fn bias_relu(y: &mut [f32], bias: Option<&[f32]>, channels: usize, inner: usize) {
    if y.is_empty() || inner == 0 {
        return;
    }
    // About 16K values per task whatever the plane size.
    let planes = (16384 / inner).max(1);
    y.par_chunks_mut(planes * inner).enumerate().for_each(|(t, block)| {
        for (j, plane) in block.chunks_mut(inner).enumerate() {
            let b = bias.map_or(0.0, |b| b[(t * planes + j) % channels]);
            plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
        }
    });
}

/// `dz = dy where y > 0, else 0`, and each channel's sum of dz into `dbias` when given: one pass
/// over y and dy, whole items per thread as in `bias_grad`.
pub fn bias_relu_backward(
    y: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    dbias: Option<&mut [f32]>,
    outer: usize,
    channels: usize,
    inner: usize,
) {
    let mask = |dz: &mut [f32], y: &[f32], dy: &[f32]| {
        dz.iter_mut().zip(y.iter().zip(dy)).for_each(|(d, (&y, &g))| *d = if y > 0.0 { g } else { 0.0 });
    };
    let threads = rayon::current_num_threads();
    let item = channels * inner;
    if item == 0 {
        // Nothing to mask, and every channel's sum (if any) is over no values.
        if let Some(db) = dbias {
            db[..channels].fill(0.0);
        }
        return;
    }
    let dbias = match dbias {
        Some(db) if outer >= threads && inner > 0 => db,
        dbias => {
            dz.par_chunks_mut(16384)
                .zip(y.par_chunks(16384).zip(dy.par_chunks(16384)))
                .for_each(|(d, (y, g))| mask(d, y, g));
            if let Some(db) = dbias {
                bias_grad(dz, outer, channels, inner, db);
            }
            return;
        }
    };
    let per = outer.div_ceil(threads);
    let tasks = dz.par_chunks_mut(per * item).zip(y.par_chunks(per * item).zip(dy.par_chunks(per * item)));
    let partials: Vec<Vec<f64>> = tasks
        .map(|(dz, (y, dy))| {
            let mut acc = vec![0.0f64; channels];
            for (dz, (y, dy)) in dz.chunks_mut(item).zip(y.chunks(item).zip(dy.chunks(item))) {
                for (a, (d, (y, g))) in
                    acc.iter_mut().zip(dz.chunks_mut(inner).zip(y.chunks(inner).zip(dy.chunks(inner))))
                {
                    mask(d, y, g);
                    *a += strip_sum(d) as f64;
                }
            }
            acc
        })
        .collect();
    add_up_channels(&partials, dbias);
}

/// `dbias[c]` = the sum of every thread's partial sum for channel c.
fn add_up_channels(partials: &[Vec<f64>], dbias: &mut [f32]) {
    for (c, db) in dbias.iter_mut().enumerate() {
        *db = partials.iter().map(|p| p[c]).sum::<f64>() as f32;
    }
}

/// A sum in 16 independent lanes: vectorised, and shorter chains than one running total.
#[inline]
fn strip_sum(strip: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut blocks = strip.chunks_exact(16);
    for block in &mut blocks {
        lanes.iter_mut().zip(block).for_each(|(l, v)| *l += v);
    }
    lanes.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both the per-item and the per-channel paths against f64 sums, under a 2-thread pool.
    #[test]
    fn bias_grad_sums_every_item_and_position() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (outer, channels, inner) in [(5, 3, 37), (1, 4, 20), (7, 6, 1), (3, 2, 0), (2, 96, 9)] {
            let dy: Vec<f32> = (0..outer * channels * inner).map(|i| (i as f32 * 0.713).sin()).collect();
            let mut db = vec![f32::NAN; channels + 1];
            pool.install(|| bias_grad(&dy, outer, channels, inner, &mut db));
            for (c, &got) in db[..channels].iter().enumerate() {
                let want: f64 = (0..outer)
                    .flat_map(|o| (0..inner).map(move |i| (o * channels + c) * inner + i))
                    .map(|i| dy[i] as f64)
                    .sum();
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{outer}x{channels}x{inner}: db[{c}] = {got}, want {want}"
                );
            }
            assert!(db[channels].is_nan(), "wrote past the channels");
        }
    }
}
