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

pub fn col2im(cols: &[f32], g: &ConvGeometry, first: usize, count: usize, dx: &mut [f32]) {
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
    dst[..rows * cols * block].par_chunks_mut(rows * block).enumerate().for_each(|(c, out)| {
        for (r, b) in out.chunks_mut(block).enumerate() {
            b.copy_from_slice(&src[(r * cols + c) * block..][..block]);
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
