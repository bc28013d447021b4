//! im2col / col2im: a chunk of images unfolded into one matrix (and its adjoint), so that a
//! convolution is one matrix product per chunk.
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
        return super::elementwise::transpose_blocks(
            &x[first * g.c_in * plane..],
            count,
            g.c_in,
            plane,
            cols,
        );
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
        return super::elementwise::transpose_blocks(
            cols,
            g.c_in,
            count,
            plane,
            &mut dx[first * g.c_in * plane..],
        );
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
}
