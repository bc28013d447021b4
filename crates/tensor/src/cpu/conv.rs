//! im2col / col2im and the bias helpers that turn convolution into matrix products.
use crate::ConvGeometry;
use rayon::prelude::*;

/// For kernel offset `k` (row or column), the output positions `lo..hi` whose input
/// coordinate `o * stride + k - pad` lies inside `0..len`.
fn valid_range(out_len: usize, len: usize, stride: usize, pad: usize, k: usize) -> (usize, usize) {
    // o * stride + k >= pad  <=>  o >= ceil((pad - k) / stride)
    let lo = if pad > k { (pad - k).div_ceil(stride) } else { 0 };
    // o * stride + k - pad <= len - 1  <=>  o <= (len - 1 + pad - k) / stride
    let hi = if len + pad > k { ((len - 1 + pad - k) / stride + 1).min(out_len) } else { 0 };
    (lo.min(hi), hi)
}

pub fn im2col(x: &[f32], g: &ConvGeometry, first: usize, count: usize, cols: &mut [f32]) {
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (ph, pw) = g.window.padding;
    let (oh, ow, p) = (g.out_h, g.out_w, g.col_cols());
    let plane = g.h * g.w;
    let x = &x[first * g.c_in * plane..(first + count) * g.c_in * plane];
    // One task per (image, input channel): it owns kh * kw rows of the column matrix.
    cols[..count * g.col_rows() * p].par_chunks_mut(kh * kw * p).zip(x.par_chunks(plane)).for_each(|(chunk, src)| {
        for ki in 0..kh {
            let (oy_lo, oy_hi) = valid_range(oh, g.h, sh, ph, ki);
            for kj in 0..kw {
                let (ox_lo, ox_hi) = valid_range(ow, g.w, sw, pw, kj);
                let row = &mut chunk[(ki * kw + kj) * p..][..p];
                row[..oy_lo * ow].fill(0.0);
                row[oy_hi * ow..].fill(0.0);
                for oy in oy_lo..oy_hi {
                    let iy = oy * sh + ki - ph;
                    let dst = &mut row[oy * ow..][..ow];
                    dst[..ox_lo].fill(0.0);
                    dst[ox_hi..].fill(0.0);
                    let src_row = &src[iy * g.w..][..g.w];
                    if ox_hi <= ox_lo {
                        continue;
                    }
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
        }
    });
}

pub fn col2im(cols: &[f32], g: &ConvGeometry, first: usize, count: usize, dx: &mut [f32]) {
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (ph, pw) = g.window.padding;
    let (oh, ow, p) = (g.out_h, g.out_w, g.col_cols());
    let plane = g.h * g.w;
    let dx = &mut dx[first * g.c_in * plane..(first + count) * g.c_in * plane];
    dx.par_chunks_mut(plane).zip(cols[..count * g.col_rows() * p].par_chunks(kh * kw * p)).for_each(|(dst, chunk)| {
        dst.fill(0.0);
        for ki in 0..kh {
            let (oy_lo, oy_hi) = valid_range(oh, g.h, sh, ph, ki);
            for kj in 0..kw {
                let (ox_lo, ox_hi) = valid_range(ow, g.w, sw, pw, kj);
                let row = &chunk[(ki * kw + kj) * p..][..p];
                for oy in oy_lo..oy_hi {
                    let iy = oy * sh + ki - ph;
                    let dst_row = &mut dst[iy * g.w..][..g.w];
                    let src = &row[oy * ow..][..ow];
                    for ox in ox_lo..ox_hi {
                        dst_row[ox * sw + kj - pw] += src[ox];
                    }
                }
            }
        }
    });
}

pub fn add_bias(y: &mut [f32], bias: &[f32], channels: usize, inner: usize) {
    y.par_chunks_mut(channels * inner).for_each(|item| {
        for (c, plane) in item.chunks_mut(inner).enumerate() {
            let b = bias[c];
            plane.iter_mut().for_each(|v| *v += b);
        }
    });
}

pub fn bias_grad(dy: &[f32], outer: usize, channels: usize, inner: usize, dbias: &mut [f32]) {
    dbias[..channels].par_iter_mut().enumerate().for_each(|(c, db)| {
        let mut s = 0.0f64;
        for o in 0..outer {
            s += dy[(o * channels + c) * inner..][..inner].iter().map(|&v| v as f64).sum::<f64>();
        }
        *db = s as f32;
    });
}
