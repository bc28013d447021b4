//! Max pooling for AVX-512 CPUs, 16 outputs per instruction for any window, stride and padding.
//!
//! Window cell `t` (row-major within the kernel) of each output is gathered through a table of
//! its index in the plane (-1 where it falls in the padding). The scalar kernels in `pool.rs`
//! visit a plane's cells one at a time (~4 cycles each); here a tap of 16 windows is one masked
//! gather, compare and two blends. Outputs run flat across planes, so 3x3 and 6x6 planes fill
//! whole vectors: the table covers the fewest planes whose outputs are a multiple of 16. Windows
//! that keep the plane's size (GoogLeNet's 3x3/1 pools) load 16 neighbours instead of gathering:
//! gathers cost about a cycle per value on Zen 4. Windows 3 wide with stride 2 along rows of 12
//! or more outputs (NiN's and GoogLeNet's halving pools) split loaded rows into even and odd
//! columns with permutes instead (3x faster than the gathers).
use super::pool_simd::{forward, Kernels, Taps};
use crate::PoolGeometry;
use std::arch::x86_64::*;

#[cfg(test)]
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Same contract as `pool::max_pool2d_forward`: each window's first maximum in row-major order,
/// and its index in the plane.
///
/// # Safety
/// The CPU must support AVX-512F (`available()`), and `checks::pool` must have accepted `g` (a
/// geometry as `PoolGeometry::new` makes it, so planes are within `MAX_POOL_PLANE`) with
/// `x.len()` as the input and `y.len()`, `argmax.len()` as outputs.
pub(crate) unsafe fn max_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32], argmax: &mut [f32]) {
    let kernels = Kernels { halving: Some((HALVING_MIN_OUT_W, halving_plane)), group_max };
    // SAFETY: the caller guarantees AVX-512F, what these kernels are built for, and the checks.
    unsafe { forward(x, g, y, argmax, &kernels) }
}

/// Output rows at least this wide take `halving_plane` (narrower ones would leave most lanes
/// of its vectors idle; the gathers over several planes serve them better).
const HALVING_MIN_OUT_W: usize = 12;

/// One plane of a 3-wide, stride-2 window along rows (padding 0 or 1; any window height, row
/// stride and padding): 16 outputs of a row take their three taps of each input row from two
/// pairs of loads, split into even and odd columns by permutes instead of 48 gathered values.
///
/// # Safety
/// `src` must point at a readable `g.h x g.w` plane and `y`, `argmax` at `g.out_h * g.out_w`
/// writable values each; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn halving_plane(g: &PoolGeometry, src: *const f32, y: *mut f32, argmax: *mut f32) {
    let (kh, pw) = (g.window.kernel.0, g.window.padding.1 as isize);
    let (sh, ph) = (g.window.stride.0, g.window.padding.0 as isize);
    let w = g.w as isize;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // The 16 values from column `c` of a row: lanes outside the row are masked off (no read),
    // and the address is formed with wrapping arithmetic, as c may lie before the row's start
    // (padding) or 16 lanes may run past the plane's end.
    let inside = |c: isize| -> __mmask16 {
        let (lo, hi) = ((-c).clamp(0, 16), (w - c).clamp(0, 16));
        if hi <= lo {
            0
        } else {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
        }
    };
    for oy in 0..g.out_h {
        for ox0 in (0..g.out_w).step_by(16) {
            let live: __mmask16 = if g.out_w - ox0 >= 16 { 0xffff } else { (1u16 << (g.out_w - ox0)) - 1 };
            let mut best = _mm512_setzero_ps();
            let mut at = _mm512_setzero_ps();
            let mut seen: __mmask16 = 0;
            // Column of tap 0 for each lane: 2 (ox0 + lane) - pw.
            let c0 = 2 * ox0 as isize - pw;
            let col0 = _mm512_add_epi32(_mm512_set1_epi32(c0 as i32), _mm512_slli_epi32::<1>(lane));
            for ki in 0..kh {
                let iy = (oy * sh) as isize + ki as isize - ph;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let row = src.offset(iy * w);
                // Columns c0 .. c0 + 34: tap t of lane j is column c0 + 2j + t.
                let load = |c: isize| _mm512_maskz_loadu_ps(inside(c), row.wrapping_offset(c));
                let (a0, a1, b0, b1) = (load(c0), load(c0 + 16), load(c0 + 2), load(c0 + 18));
                let taps = [
                    _mm512_permutex2var_ps(a0, even, a1),
                    _mm512_permutex2var_ps(a0, odd, a1),
                    _mm512_permutex2var_ps(b0, even, b1),
                ];
                for (t, v) in taps.into_iter().enumerate() {
                    let col = _mm512_add_epi32(col0, _mm512_set1_epi32(t as i32));
                    let valid = live
                        & _mm512_cmpge_epi32_mask(col, _mm512_setzero_si512())
                        & _mm512_cmplt_epi32_mask(col, _mm512_set1_epi32(g.w as i32));
                    let take = valid & (!seen | _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best));
                    best = _mm512_mask_blend_ps(take, best, v);
                    let cell = _mm512_add_epi32(col, _mm512_set1_epi32((iy * w) as i32));
                    at = _mm512_mask_blend_ps(take, at, _mm512_cvtepi32_ps(cell));
                    seen |= valid;
                }
            }
            let q = oy * g.out_w + ox0;
            _mm512_mask_storeu_ps(y.add(q), live, best);
            _mm512_mask_storeu_ps(argmax.add(q), live, at);
        }
    }
}

/// The first `count` outputs of one group (fewer than a group only at the end of the tensor).
///
/// # Safety
/// `src` must point at the readable planes of those outputs (up to `t.planes` planes), `y` and
/// `argmax` at `count <= t.outputs` writable values each; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn group_max(t: &Taps, src: *const f32, count: usize, y: *mut f32, argmax: *mut f32) {
    let taps = t.cell.len() / t.outputs;
    for q in (0..count).step_by(16) {
        let live: __mmask16 = if count - q >= 16 { 0xffff } else { (1u16 << (count - q)) - 1 };
        let start = _mm512_loadu_si512(t.plane_start.as_ptr().add(q) as *const _);
        let mut best = _mm512_setzero_ps();
        let mut at = _mm512_setzero_ps();
        // Lanes that have seen a cell of their window: the first one is taken whatever its value.
        let mut seen: __mmask16 = 0;
        for tap in 0..taps {
            let cell = _mm512_loadu_si512(t.cell.as_ptr().add(tap * t.outputs + q) as *const _);
            let inside = live & _mm512_cmpge_epi32_mask(cell, _mm512_setzero_si512());
            let v = match &t.shift {
                // Lane l reads input q + l + shift[tap], inside its plane wherever `inside` is
                // set; the base may fall before `src` (wrapping arithmetic, no lane reads it).
                Some(shift) => {
                    _mm512_mask_loadu_ps(best, inside, src.wrapping_add(q).wrapping_offset(shift[tap]))
                }
                None => _mm512_mask_i32gather_ps::<4>(best, inside, _mm512_add_epi32(cell, start), src),
            };
            let take = inside & (!seen | _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best));
            best = _mm512_mask_blend_ps(take, best, v);
            at = _mm512_mask_blend_ps(take, at, _mm512_cvtepi32_ps(cell));
            seen |= inside;
        }
        _mm512_mask_storeu_ps(y.add(q), live, best);
        _mm512_mask_storeu_ps(argmax.add(q), live, at);
    }
}

#[cfg(test)]
mod tests {
    /// Against the scalar kernels (`pool_simd::check_against_scalar`).
    #[test]
    fn matches_scalar_kernels() {
        if !super::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        super::super::pool_simd::check_against_scalar(super::max_pool2d_forward);
    }
}
