//! im2col / col2im and the bias helpers that turn convolution into matrix products.
use crate::ConvGeometry;
use rayon::prelude::*;

/// For kernel offset `k` (row or column), the output positions `lo..hi` whose input
/// coordinate `o * stride + k - pad` lies inside `0..len`. Shared with pooling.
pub(crate) fn valid_range(out_len: usize, len: usize, stride: usize, pad: usize, k: usize) -> (usize, usize) {
    // o * stride + k >= pad  <=>  o >= ceil((pad - k) / stride)
    let lo = if pad > k { (pad - k).div_ceil(stride) } else { 0 };
    // o * stride + k - pad <= len - 1  <=>  o <= (len - 1 + pad - k) / stride
    let hi = if len + pad > k { ((len - 1 + pad - k) / stride + 1).min(out_len) } else { 0 };
    (lo.min(hi), hi)
}

/// im2col gathers through a table (below) for output rows narrower than this, or strided ones:
/// per-row copies cost more than they move there. col2im's scatter through the table only wins
/// on the narrowest rows (measured: `cargo bench --bench kernels -- im2col_gbps`).
const IM2COL_TABLE_BELOW: usize = 16;
const COL2IM_TABLE_BELOW: usize = 8;

/// For every kernel offset (ki, kj) and output position, the input index within the plane, or
/// `u32::MAX` where it falls in the padding (u32: half the table traffic of usize).
fn gather_table(g: &ConvGeometry) -> Vec<u32> {
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (ph, pw) = g.window.padding;
    let mut table = Vec::with_capacity(kh * kw * g.col_cols());
    for ki in 0..kh {
        for kj in 0..kw {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let (iy, ix) = ((oy * sh + ki).wrapping_sub(ph), (ox * sw + kj).wrapping_sub(pw));
                    table.push(if iy < g.h && ix < g.w { (iy * g.w + ix) as u32 } else { u32::MAX });
                }
            }
        }
    }
    table
}

pub fn im2col(x: &[f32], g: &ConvGeometry, first: usize, count: usize, cols: &mut [f32]) {
    if count == 0 {
        return;
    }
    if g.is_pointwise() {
        // A 1x1 unpadded stride-1 kernel's rows are the input planes: [count][C][P] -> [C][count][P].
        let plane = g.h * g.w;
        return transpose_blocks(&x[first * g.c_in * plane..], count, g.c_in, plane, cols);
    }
    if g.out_w < IM2COL_TABLE_BELOW || g.window.stride.1 > 1 {
        return im2col_table(x, g, first, count, cols);
    }
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (ph, pw) = g.window.padding;
    let (oh, ow, p) = (g.out_h, g.out_w, g.col_cols());
    let plane = g.h * g.w;
    let width = count * p;
    // One task per row (c, ki, kj): it runs along every image of the chunk.
    cols[..g.col_rows() * width].par_chunks_mut(width).enumerate().for_each(|(r, row)| {
        let (c, ki, kj) = (r / (kh * kw), r / kw % kh, r % kw);
        let (oy_lo, oy_hi) = valid_range(oh, g.h, sh, ph, ki);
        let (ox_lo, ox_hi) = valid_range(ow, g.w, sw, pw, kj);
        for (i, part) in row.chunks_mut(p).enumerate() {
            let src = &x[((first + i) * g.c_in + c) * plane..][..plane];
            part[..oy_lo * ow].fill(0.0);
            part[oy_hi * ow..].fill(0.0);
            for oy in oy_lo..oy_hi {
                let dst = &mut part[oy * ow..][..ow];
                dst[..ox_lo].fill(0.0);
                dst[ox_hi..].fill(0.0);
                if ox_hi <= ox_lo {
                    continue;
                }
                let src_row = &src[(oy * sh + ki - ph) * g.w..][..g.w];
                if sw == 1 {
                    let ix0 = ox_lo + kj - pw;
                    dst[ox_lo..ox_hi].copy_from_slice(&src_row[ix0..ix0 + (ox_hi - ox_lo)]);
                } else {
                    for ox in ox_lo..ox_hi {
                        dst[ox] = src_row[ox * sw + kj - pw];
                    }
                }
            }
        }
    });
}

fn im2col_table(x: &[f32], g: &ConvGeometry, first: usize, count: usize, cols: &mut [f32]) {
    let (p, taps, plane) = (g.col_cols(), g.window.kernel.0 * g.window.kernel.1, g.h * g.w);
    let table = gather_table(g);
    let width = count * p;
    cols[..g.col_rows() * width].par_chunks_mut(width).enumerate().for_each(|(r, row)| {
        let (c, tap) = (r / taps, r % taps);
        let offsets = &table[tap * p..][..p];
        for (i, part) in row.chunks_mut(p).enumerate() {
            let src = &x[((first + i) * g.c_in + c) * plane..][..plane];
            for (d, &at) in part.iter_mut().zip(offsets) {
                *d = src.get(at as usize).copied().unwrap_or(0.0);
            }
        }
    });
}

/// col2im through the gather table: each tap adds its row into the plane, taps in the same
/// order as the copy path, so the sums are the same.
fn col2im_table(cols: &[f32], g: &ConvGeometry, first: usize, count: usize, dx: &mut [f32]) {
    let (p, taps, plane) = (g.col_cols(), g.window.kernel.0 * g.window.kernel.1, g.h * g.w);
    let table = gather_table(g);
    let width = count * p;
    let dx = &mut dx[first * g.c_in * plane..(first + count) * g.c_in * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(idx, dst)| {
        let (i, c) = (idx / g.c_in, idx % g.c_in);
        dst.fill(0.0);
        for tap in 0..taps {
            let row = &cols[(c * taps + tap) * width + i * p..][..p];
            for (&v, &at) in row.iter().zip(&table[tap * p..][..p]) {
                if let Some(d) = dst.get_mut(at as usize) {
                    *d += v;
                }
            }
        }
    });
}

pub fn col2im(cols: &[f32], g: &ConvGeometry, first: usize, count: usize, dx: &mut [f32]) {
    if count == 0 || g.c_in == 0 {
        return;
    }
    if g.is_pointwise() {
        // im2col's transpose, back: [C][count][P] -> [count][C][P].
        let plane = g.h * g.w;
        return transpose_blocks(cols, g.c_in, count, plane, &mut dx[first * g.c_in * plane..]);
    }
    if g.out_w < COL2IM_TABLE_BELOW {
        return col2im_table(cols, g, first, count, dx);
    }
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (ph, pw) = g.window.padding;
    let (oh, ow, p) = (g.out_h, g.out_w, g.col_cols());
    let plane = g.h * g.w;
    let width = count * p;
    let dx = &mut dx[first * g.c_in * plane..(first + count) * g.c_in * plane];
    // One task per (image, channel) plane: it gathers its kh * kw rows' share of the columns.
    dx.par_chunks_mut(plane).enumerate().for_each(|(idx, dst)| {
        let (i, c) = (idx / g.c_in, idx % g.c_in);
        dst.fill(0.0);
        for ki in 0..kh {
            let (oy_lo, oy_hi) = valid_range(oh, g.h, sh, ph, ki);
            for kj in 0..kw {
                let (ox_lo, ox_hi) = valid_range(ow, g.w, sw, pw, kj);
                let row = &cols[((c * kh + ki) * kw + kj) * width + i * p..][..p];
                for oy in oy_lo..oy_hi {
                    let iy = oy * sh + ki - ph;
                    let dst_row = &mut dst[iy * g.w..][..g.w];
                    let src = &row[oy * ow..][..ow];
                    if ox_hi <= ox_lo {
                        continue;
                    }
                    if sw == 1 {
                        // Contiguous on both sides: a slice add the compiler vectorises.
                        let ix0 = ox_lo + kj - pw;
                        let n = ox_hi - ox_lo;
                        dst_row[ix0..ix0 + n].iter_mut().zip(&src[ox_lo..ox_hi]).for_each(|(d, s)| *d += s);
                    } else {
                        for ox in ox_lo..ox_hi {
                            dst_row[ox * sw + kj - pw] += src[ox];
                        }
                    }
                }
            }
        }
    });
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
    use crate::Window;

    /// Plain loops over the definition, for geometries on both sides of the table thresholds.
    #[test]
    fn both_paths_match_the_definition() {
        let cases = [
            (2, 3, 5, 21, Window::square(3, 1, 1)),              // wide rows: copies
            (2, 2, 6, 12, Window::new((3, 5), (1, 1), (1, 2))),  // 12 wide: table im2col, copy col2im
            (3, 2, 7, 7, Window::square(3, 1, 1)),               // narrow: tables both ways
            (2, 2, 17, 23, Window::new((4, 3), (2, 3), (1, 1))), // strided
            (3, 4, 5, 6, Window::square(1, 1, 0)),               // pointwise: plane copies
        ];
        for (n, c, h, w, win) in cases {
            let g = ConvGeometry::new(n, c, h, w, 1, win).unwrap();
            let (p, (kh, kw)) = (g.col_cols(), win.kernel);
            let x: Vec<f32> = (0..n * c * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
            let (first, count) = (1, n - 1);
            let mut cols = vec![f32::NAN; g.col_rows() * count * p];
            im2col(&x, &g, first, count, &mut cols);
            let mut want = vec![0.0f32; cols.len()];
            let mut dx_want = vec![0.0f32; count * c * h * w];
            let dcols: Vec<f32> = (0..cols.len()).map(|i| (i as f32 * 0.11).cos()).collect();
            for i in 0..count {
                for ch in 0..c {
                    for ki in 0..kh {
                        for kj in 0..kw {
                            for oy in 0..g.out_h {
                                for ox in 0..g.out_w {
                                    let iy = (oy * win.stride.0 + ki) as isize - win.padding.0 as isize;
                                    let ix = (ox * win.stride.1 + kj) as isize - win.padding.1 as isize;
                                    let at =
                                        ((ch * kh + ki) * kw + kj) * count * p + i * p + oy * g.out_w + ox;
                                    if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                        let src = ((i * c + ch) * h + iy as usize) * w + ix as usize;
                                        want[at] = x[(first * c) * h * w + src];
                                        dx_want[src] += dcols[at];
                                    }
                                }
                            }
                        }
                    }
                }
            }
            assert_eq!(cols, want, "im2col {g:?}");
            let mut dx = vec![f32::NAN; n * c * h * w];
            col2im(&dcols, &g, first, count, &mut dx);
            for (j, (got, want)) in dx[first * c * h * w..].iter().zip(&dx_want).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "col2im {g:?} at {j}: {got} vs {want}"
                );
            }
            assert!(dx[..first * c * h * w].iter().all(|v| v.is_nan()), "col2im wrote outside its images");
        }
    }

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
