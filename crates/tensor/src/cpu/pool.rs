//! Max, average and global-average pooling over NCHW planes, one rayon task per plane.
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

/// Index within the plane of the first maximum over rows `ys` and columns `xs` (row-major scan).
#[inline]
fn argmax(src: &[f32], width: usize, ys: (usize, usize), xs: (usize, usize)) -> usize {
    let mut best = ys.0 * width + xs.0;
    let mut best_v = src[best];
    for iy in ys.0..ys.1 {
        let row = &src[iy * width + xs.0..iy * width + xs.1];
        for (j, &v) in row.iter().enumerate() {
            if v > best_v {
                best_v = v;
                best = iy * width + xs.0 + j;
            }
        }
    }
    best
}

pub fn max_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (rows, cols) = windows(g);
    y[..g.planes() * out_plane].par_chunks_mut(out_plane).zip(x.par_chunks(plane)).for_each(|(dst, src)| {
        for (oy, &ys) in rows.iter().enumerate() {
            for (ox, &xs) in cols.iter().enumerate() {
                dst[oy * g.out_w + ox] = src[argmax(src, g.w, ys, xs)];
            }
        }
    });
}

pub fn max_pool2d_backward(x: &[f32], dy: &[f32], g: &PoolGeometry, dx: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (rows, cols) = windows(g);
    dx[..g.planes() * plane].par_chunks_mut(plane).zip(x.par_chunks(plane)).zip(dy.par_chunks(out_plane)).for_each(
        |((dst, src), grad)| {
            dst.fill(0.0);
            for (oy, &ys) in rows.iter().enumerate() {
                for (ox, &xs) in cols.iter().enumerate() {
                    dst[argmax(src, g.w, ys, xs)] += grad[oy * g.out_w + ox];
                }
            }
        },
    );
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
    let inv = 1.0 / plane_len as f64;
    y[..planes].par_iter_mut().zip(x.par_chunks(plane_len)).for_each(|(o, src)| {
        *o = (src.iter().map(|&v| v as f64).sum::<f64>() * inv) as f32;
    });
}

pub fn global_avg_pool_backward(dy: &[f32], planes: usize, plane_len: usize, dx: &mut [f32]) {
    let inv = 1.0 / plane_len as f32;
    dx[..planes * plane_len].par_chunks_mut(plane_len).zip(dy.par_iter()).for_each(|(dst, &g)| dst.fill(g * inv));
}
