//! Max, average and global-average pooling over NCHW planes, one rayon task per plane (several
//! per task for small max-pool planes).
use super::im2col::valid_range;
use crate::PoolGeometry;
use rayon::prelude::*;

/// The input rows (or columns) `lo..hi` covered by output position `o`, clipped to the image.
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).max(0) as usize).min(len);
    (lo, hi)
}

/// Input index ranges `lo..hi`, one per output row (or column).
type Spans = Vec<(usize, usize)>;

/// Every output row's and column's clipped window, computed once per call rather than per cell.
fn windows(g: &PoolGeometry) -> (Spans, Spans) {
    let w = &g.window;
    let rows = (0..g.out_h).map(|o| window(o, w.stride.0, w.padding.0, w.kernel.0, g.h)).collect();
    let cols = (0..g.out_w).map(|o| window(o, w.stride.1, w.padding.1, w.kernel.1, g.w)).collect();
    (rows, cols)
}

/// Each window's first maximum (row-major) and its index in the plane, one task per plane.
/// Stride-1 rows are done a whole output row at a time (vectorised): every window starts from
/// its top-left cell, then the cells are visited offset by offset in row-major order, replacing
/// on a strictly greater value (the same winner as a scan of each window). Other strides are
/// separable: each input row's first maximum under every window column, then the earliest row
/// holding the greatest of those. Planes under `SMALL_PLANE_WIDTH` wide take a table (below).
/// On the AVX-512 and AVX2 paths (`isa()`) `pool_avx512.rs` and `pool_avx2.rs` run instead,
/// tested against these kernels.
///
/// # Safety
/// `checks::pool` must have accepted `g` with `x.len()` as the input and `y.len()`,
/// `argmax.len()` as outputs (the SIMD kernels write through raw pointers).
pub(crate) unsafe fn max_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32], argmax: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match super::isa() {
        // SAFETY: the CPU has AVX-512F (isa() found it), and the caller's checks are this
        // function's contract too.
        super::Isa::Avx512 => return unsafe { super::pool_avx512::max_pool2d_forward(x, g, y, argmax) },
        // SAFETY: as above, with AVX2 (and FMA) found.
        super::Isa::Avx2 => return unsafe { super::pool_avx2::max_pool2d_forward(x, g, y, argmax) },
        super::Isa::Portable => {}
    }
    max_pool2d_forward_scalar(x, g, y, argmax)
}

/// Pooling tests' inputs: four levels, -3 to 0, from an xorshift stream (many ties, and all at
/// or below zero, so that a padded cell read as 0 would win).
#[cfg(test)]
pub(crate) fn tie_levels(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 4) as f32 - 3.0
    }
}

pub(crate) fn max_pool2d_forward_scalar(x: &[f32], g: &PoolGeometry, y: &mut [f32], argmax: &mut [f32]) {
    if g.out_w < SMALL_PLANE_WIDTH {
        return max_pool2d_forward_small(x, g, y, argmax);
    }
    let (plane, out_plane, ow) = (g.h * g.w, g.out_h * g.out_w, g.out_w);
    let pw = g.window.padding.1;
    let (rows, cols) = windows(g);
    let by_rows = g.window.stride.1 == 1;
    // For each kernel column, the output columns whose input column lies inside the image.
    let (sw, kw) = (g.window.stride.1, g.window.kernel.1);
    let col_ranges: Vec<(usize, usize)> = (0..kw).map(|kj| valid_range(g.out_w, g.w, sw, pw, kj)).collect();
    let n = g.planes() * out_plane;
    let tasks =
        y[..n].par_chunks_mut(out_plane).zip(argmax[..n].par_chunks_mut(out_plane)).zip(x.par_chunks(plane));
    tasks.for_each_init(Vec::new, |row_max, ((dst, arg), src)| {
        if !by_rows {
            row_max.resize(2 * g.h * ow, 0.0);
            let (hmax, harg) = row_max.split_at_mut(g.h * ow);
            for iy in 0..g.h {
                let row = &src[iy * g.w..][..g.w];
                for (ox, &(x0, x1)) in cols.iter().enumerate() {
                    let (mut b, mut a) = (row[x0], (iy * g.w + x0) as f32);
                    for (j, &v) in row[x0 + 1..x1].iter().enumerate() {
                        keep_greater(&mut b, &mut a, v, (iy * g.w + x0 + 1 + j) as f32);
                    }
                    hmax[iy * ow + ox] = b;
                    harg[iy * ow + ox] = a;
                }
            }
        }
        let (hmax, harg) = row_max.split_at(row_max.len() / 2);
        for (oy, &(y0, y1)) in rows.iter().enumerate() {
            let best = &mut dst[oy * ow..][..ow];
            let at = &mut arg[oy * ow..][..ow];
            if !by_rows {
                best.copy_from_slice(&hmax[y0 * ow..][..ow]);
                at.copy_from_slice(&harg[y0 * ow..][..ow]);
                for iy in y0 + 1..y1 {
                    let cells = best
                        .iter_mut()
                        .zip(at.iter_mut())
                        .zip(&hmax[iy * ow..][..ow])
                        .zip(&harg[iy * ow..][..ow]);
                    for (((b, a), &v), &i) in cells {
                        keep_greater(b, a, v, i);
                    }
                }
                continue;
            }
            for (ox, &(x0, _)) in cols.iter().enumerate() {
                best[ox] = src[y0 * g.w + x0];
                at[ox] = (y0 * g.w + x0) as f32;
            }
            for iy in y0..y1 {
                let row = &src[iy * g.w..][..g.w];
                for (kj, &(lo, hi)) in col_ranges.iter().enumerate() {
                    if hi <= lo {
                        continue;
                    }
                    let ix0 = lo + kj - pw;
                    let first = (iy * g.w + ix0) as i32;
                    let cells = best[lo..hi].iter_mut().zip(&mut at[lo..hi]).zip(&row[ix0..ix0 + (hi - lo)]);
                    for (j, ((b, a), &v)) in cells.enumerate() {
                        keep_greater(b, a, v, (first + j as i32) as f32);
                    }
                }
            }
        }
    });
}

/// Outputs narrower than this take the table path: row-wise work is all overhead there.
const SMALL_PLANE_WIDTH: usize = 8;

/// Small planes (GoogLeNet's 6x6 and 3x3): every window's cells from one table, in row-major
/// order, many planes per task.
fn max_pool2d_forward_small(x: &[f32], g: &PoolGeometry, y: &mut [f32], argmax: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (rows, cols) = windows(g);
    let (kh, kw) = g.window.kernel;
    // Cell (ki, kj) of window q, or u32::MAX outside the image; and each window's first cell.
    let mut cells = vec![u32::MAX; kh * kw * out_plane];
    let mut first = Vec::with_capacity(out_plane);
    for (oy, &(y0, y1)) in rows.iter().enumerate() {
        for (ox, &(x0, x1)) in cols.iter().enumerate() {
            let q = oy * g.out_w + ox;
            first.push(y0 * g.w + x0);
            for (i, iy) in (y0..y1).enumerate() {
                for (j, ix) in (x0..x1).enumerate() {
                    cells[(i * kw + j) * out_plane + q] = (iy * g.w + ix) as u32;
                }
            }
        }
    }
    let per_task = (4096 / out_plane).max(1);
    let n = g.planes() * out_plane;
    let tasks =
        y[..n].par_chunks_mut(per_task * out_plane).zip(argmax[..n].par_chunks_mut(per_task * out_plane));
    tasks.zip(x.par_chunks(per_task * plane)).for_each(|((dst, arg), src)| {
        for ((best, at), src) in
            dst.chunks_mut(out_plane).zip(arg.chunks_mut(out_plane)).zip(src.chunks(plane))
        {
            for (q, &f) in first.iter().enumerate() {
                best[q] = src[f];
                at[q] = f as f32;
            }
            for tap in cells.chunks(out_plane) {
                for ((b, a), &c) in best.iter_mut().zip(at.iter_mut()).zip(tap) {
                    if let Some(&v) = src.get(c as usize) {
                        keep_greater(b, a, v, c as f32);
                    }
                }
            }
        }
    });
}

/// `if v > *best { *best = v; *at = index }`, written with bit masks so that it compiles to
/// selects: on real data a branch here mispredicts often.
#[inline(always)]
fn keep_greater(best: &mut f32, at: &mut f32, v: f32, index: f32) {
    let take = -((v > *best) as i32) as u32;
    *best = f32::from_bits((v.to_bits() & take) | (best.to_bits() & !take));
    *at = f32::from_bits((index.to_bits() & take) | (at.to_bits() & !take));
}

/// Scatters each `dy` to its window's stored arg-max, in output order. An index outside the
/// plane (not one `max_pool2d_forward` wrote) is skipped rather than a panic.
pub fn max_pool2d_backward(argmax: &[f32], dy: &[f32], g: &PoolGeometry, dx: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    dx[..g.planes() * plane]
        .par_chunks_mut(plane)
        .zip(argmax.par_chunks(out_plane))
        .zip(dy.par_chunks(out_plane))
        .for_each(|((dst, arg), grad)| {
            dst.fill(0.0);
            for (&a, &d) in arg.iter().zip(grad) {
                if let Some(cell) = dst.get_mut(a as usize) {
                    *cell += d;
                }
            }
        });
}

pub fn avg_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    // Floor mode keeps every window inside the padded image, so the divisor is the kernel area.
    let inv = 1.0 / (g.window.kernel.0 * g.window.kernel.1) as f32;
    let (rows, cols) = windows(g);
    y[..g.planes() * out_plane].par_chunks_mut(out_plane).zip(x.par_chunks(plane)).for_each(|(dst, src)| {
        for (oy, &(y0, y1)) in rows.iter().enumerate() {
            for (ox, &(x0, x1)) in cols.iter().enumerate() {
                let mut s = 0.0f32;
                for iy in y0..y1 {
                    s += src[iy * g.w + x0..iy * g.w + x1].iter().sum::<f32>();
                }
                dst[oy * g.out_w + ox] = s * inv;
            }
        }
    });
}

pub fn avg_pool2d_backward(dy: &[f32], g: &PoolGeometry, dx: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let inv = 1.0 / (g.window.kernel.0 * g.window.kernel.1) as f32;
    let (rows, cols) = windows(g);
    dx[..g.planes() * plane].par_chunks_mut(plane).zip(dy.par_chunks(out_plane)).for_each(|(dst, grad)| {
        dst.fill(0.0);
        for (oy, &(y0, y1)) in rows.iter().enumerate() {
            for (ox, &(x0, x1)) in cols.iter().enumerate() {
                let share = grad[oy * g.out_w + ox] * inv;
                for iy in y0..y1 {
                    dst[iy * g.w + x0..iy * g.w + x1].iter_mut().for_each(|v| *v += share);
                }
            }
        }
    });
}

pub fn global_avg_pool_forward(x: &[f32], planes: usize, plane_len: usize, y: &mut [f32]) {
    if planes == 0 {
        return;
    }
    let inv = 1.0 / plane_len as f64;
    y[..planes].par_iter_mut().zip(x.par_chunks(plane_len)).for_each(|(o, src)| {
        *o = (src.iter().map(|&v| v as f64).sum::<f64>() * inv) as f32;
    });
}

pub fn global_avg_pool_backward(dy: &[f32], planes: usize, plane_len: usize, dx: &mut [f32]) {
    if planes * plane_len == 0 {
        return;
    }
    let inv = 1.0 / plane_len as f32;
    dx[..planes * plane_len]
        .par_chunks_mut(plane_len)
        .zip(dy.par_iter())
        .for_each(|(dst, &g)| dst.fill(g * inv));
}

#[cfg(test)]
mod tests {
    use crate::{PoolGeometry, Window};

    /// Each window scanned in row-major order, the first of the greatest values winning.
    fn naive(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<f32>) {
        let (mut y, mut arg) = (Vec::new(), Vec::new());
        let ((kh, kw), (sh, sw), (ph, pw)) = (g.window.kernel, g.window.stride, g.window.padding);
        for p in 0..g.planes() {
            let src = &x[p * g.h * g.w..][..g.h * g.w];
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut best: Option<(f32, usize)> = None;
                    for i in 0..kh {
                        for j in 0..kw {
                            let (iy, ix) =
                                ((oy * sh + i) as isize - ph as isize, (ox * sw + j) as isize - pw as isize);
                            if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                                continue;
                            }
                            let at = iy as usize * g.w + ix as usize;
                            if best.is_none_or(|(b, _)| src[at] > b) {
                                best = Some((src[at], at));
                            }
                        }
                    }
                    let (b, at) = best.expect("every window holds a cell");
                    y.push(b);
                    arg.push(at as f32);
                }
            }
        }
        (y, arg)
    }

    /// The portable kernels (which the AVX-512 ones are tested against) against the naive scan,
    /// on inputs full of ties at or below zero (a padded cell read as 0 would win): the row path
    /// (planes 8 or more outputs wide, stride 1 and not) and the table path for small planes.
    #[test]
    fn portable_kernels_match_a_naive_scan() {
        let mut level = super::tie_levels(0x9e37_79b9_7f4a_7c15);
        for &(n, c, h, w, win) in &[
            (2, 3, 7, 9, Window::square(3, 2, 1)),
            (1, 5, 6, 6, Window::square(3, 1, 1)),
            (3, 7, 3, 3, Window::square(3, 1, 1)),
            (2, 3, 12, 12, Window::square(3, 2, 1)),
            (1, 2, 8, 6, Window::new((2, 3), (1, 2), (1, 1))),
            (2, 9, 13, 11, Window::square(3, 2, 0)),
            (1, 3, 20, 19, Window::square(3, 1, 1)),
            (2, 2, 26, 26, Window::square(3, 2, 0)),
            (1, 2, 9, 35, Window::new((2, 3), (3, 2), (1, 1))),
            (1, 1, 17, 33, Window::new((3, 5), (1, 1), (1, 2))),
        ] {
            let g = PoolGeometry::new(n, c, h, w, win).unwrap();
            let x: Vec<f32> = (0..n * c * h * w).map(|_| level()).collect();
            let (want_y, want_arg) = naive(&x, &g);
            let out = want_y.len();
            let (mut y, mut arg) = (vec![-7.0; out], vec![-7.0; out]);
            super::max_pool2d_forward_scalar(&x, &g, &mut y, &mut arg);
            assert_eq!((&y, &arg), (&want_y, &want_arg), "portable, {n}x{c}x{h}x{w} {win:?}");
        }
    }
}
