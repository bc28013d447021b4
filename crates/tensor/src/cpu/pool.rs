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

/// Index within the plane of the first maximum of window (oy, ox).
fn argmax(src: &[f32], g: &PoolGeometry, oy: usize, ox: usize) -> usize {
    let (y0, y1) = window(oy, g.window.stride.0, g.window.padding.0, g.window.kernel.0, g.h);
    let (x0, x1) = window(ox, g.window.stride.1, g.window.padding.1, g.window.kernel.1, g.w);
    let mut best = y0 * g.w + x0;
    for iy in y0..y1 {
        for ix in x0..x1 {
            let i = iy * g.w + ix;
            if src[i] > src[best] {
                best = i;
            }
        }
    }
    best
}

pub fn max_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    y[..g.planes() * out_plane].par_chunks_mut(out_plane).zip(x.par_chunks(plane)).for_each(|(dst, src)| {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                dst[oy * g.out_w + ox] = src[argmax(src, g, oy, ox)];
            }
        }
    });
}

pub fn max_pool2d_backward(x: &[f32], dy: &[f32], g: &PoolGeometry, dx: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    dx[..g.planes() * plane].par_chunks_mut(plane).zip(x.par_chunks(plane)).zip(dy.par_chunks(out_plane)).for_each(
        |((dst, src), grad)| {
            dst.fill(0.0);
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    dst[argmax(src, g, oy, ox)] += grad[oy * g.out_w + ox];
                }
            }
        },
    );
}

pub fn avg_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    // Floor mode keeps every window inside the padded image, so the divisor is the kernel area.
    let inv = 1.0 / (g.window.kernel.0 * g.window.kernel.1) as f32;
    y[..g.planes() * out_plane].par_chunks_mut(out_plane).zip(x.par_chunks(plane)).for_each(|(dst, src)| {
        for oy in 0..g.out_h {
            let (y0, y1) = window(oy, g.window.stride.0, g.window.padding.0, g.window.kernel.0, g.h);
            for ox in 0..g.out_w {
                let (x0, x1) = window(ox, g.window.stride.1, g.window.padding.1, g.window.kernel.1, g.w);
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
    dx[..g.planes() * plane].par_chunks_mut(plane).zip(dy.par_chunks(out_plane)).for_each(|(dst, grad)| {
        dst.fill(0.0);
        for oy in 0..g.out_h {
            let (y0, y1) = window(oy, g.window.stride.0, g.window.padding.0, g.window.kernel.0, g.h);
            for ox in 0..g.out_w {
                let (x0, x1) = window(ox, g.window.stride.1, g.window.padding.1, g.window.kernel.1, g.w);
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
