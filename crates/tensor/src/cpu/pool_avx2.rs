//! Max pooling for AVX2 CPUs, 8 outputs per instruction: `pool_avx512.rs`'s tap tables at half
//! the width, with AVX2's vector masks (a lane's mask is all ones or all zeros) in place of mask
//! registers: masked loads of neighbours where the window keeps the plane's size, gathers
//! elsewhere. The AVX-512 path's even/odd permutes for 3-wide stride-2 rows were built for AVX2
//! too and measured slower than these gathers on the Xeon of BENCHMARKS.md (NiN's 54x54 pool:
//! 7.1-7.4 against 9.3 GB/s), so every window takes the tables. The portable loops in `pool.rs`
//! are the reference.
use super::pool_simd::{forward, Kernels, Taps};
use crate::PoolGeometry;
use std::arch::x86_64::*;

#[cfg(test)]
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Same contract as `pool::max_pool2d_forward`: each window's first maximum in row-major order,
/// and its index in the plane.
///
/// # Safety
/// The CPU must support AVX2, and `checks::pool` must have accepted `g` (a geometry as
/// `PoolGeometry::new` makes it, so planes are within `MAX_POOL_PLANE`) with `x.len()` as the
/// input and `y.len()`, `argmax.len()` as outputs.
pub(crate) unsafe fn max_pool2d_forward(x: &[f32], g: &PoolGeometry, y: &mut [f32], argmax: &mut [f32]) {
    let kernels = Kernels { halving: None, group_max };
    // SAFETY: the caller guarantees AVX2, what these kernels are built for, and the checks.
    unsafe { forward(x, g, y, argmax, &kernels) }
}

/// Lanes 0..8 as i32.
#[inline]
#[target_feature(enable = "avx2")]
fn lanes() -> __m256i {
    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
}

/// All-ones lanes where `lo <= v < hi`.
#[inline]
#[target_feature(enable = "avx2")]
fn within(v: __m256i, lo: i32, hi: i32) -> __m256i {
    let above = _mm256_cmpgt_epi32(v, _mm256_set1_epi32(lo - 1));
    _mm256_and_si256(above, _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), v))
}

/// The lanes that take tap `v` (at `cell`, as f32) over the running `best`: those `valid` that
/// have not seen a cell yet, or whose `v` is strictly greater (the first maximum wins ties).
/// Updates `best`, `at` and `seen`.
#[inline]
#[target_feature(enable = "avx2")]
fn take(v: __m256, cell: __m256, valid: __m256, best: &mut __m256, at: &mut __m256, seen: &mut __m256) {
    // All in the float domain (masks as all-ones floats).
    let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(v, *best);
    let take = _mm256_or_ps(_mm256_andnot_ps(*seen, valid), _mm256_and_ps(valid, greater));
    *best = _mm256_blendv_ps(*best, v, take);
    *at = _mm256_blendv_ps(*at, cell, take);
    *seen = _mm256_or_ps(*seen, valid);
}

/// The first `count` outputs of one group (fewer than a group only at the end of the tensor).
///
/// # Safety
/// `src` must point at the readable planes of those outputs (up to `t.planes` planes), `y` and
/// `argmax` at `count <= t.outputs` writable values each; the CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn group_max(t: &Taps, src: *const f32, count: usize, y: *mut f32, argmax: *mut f32) {
    let taps = t.cell.len() / t.outputs;
    let lane = lanes();
    for q in (0..count).step_by(8) {
        let live = within(lane, 0, (count - q).min(8) as i32);
        // SAFETY: the tables hold `outputs` values, a multiple of 16, and q + 8 <= outputs.
        let start = unsafe { _mm256_loadu_si256(t.plane_start.as_ptr().add(q) as *const _) };
        let (mut best, mut at, mut seen) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
        for tap in 0..taps {
            // SAFETY: as `start`, in tap `tap`'s row of the table.
            let cell = unsafe { _mm256_loadu_si256(t.cell.as_ptr().add(tap * t.outputs + q) as *const _) };
            let inside = _mm256_and_si256(live, _mm256_cmpgt_epi32(cell, _mm256_set1_epi32(-1)));
            let v = match &t.shift {
                // Lane l reads input q + l + shift[tap], inside its plane wherever `inside` is
                // set; the base may fall before `src` (wrapping arithmetic, no lane reads it).
                // SAFETY: only the lanes inside their planes are read.
                Some(shift) => unsafe {
                    _mm256_maskload_ps(src.wrapping_add(q).wrapping_offset(shift[tap]), inside)
                },
                // SAFETY: inside lanes gather cell + plane start, a value of the group's planes.
                None => unsafe {
                    _mm256_mask_i32gather_ps::<4>(
                        best,
                        src,
                        _mm256_add_epi32(cell, start),
                        _mm256_castsi256_ps(inside),
                    )
                },
            };
            take(v, _mm256_cvtepi32_ps(cell), _mm256_castsi256_ps(inside), &mut best, &mut at, &mut seen);
        }
        // SAFETY: outputs q..q + 8 of the group, the live lanes only.
        unsafe {
            _mm256_maskstore_ps(y.add(q), live, best);
            _mm256_maskstore_ps(argmax.add(q), live, at);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Against the scalar kernels (`pool_simd::check_against_scalar`).
    #[test]
    fn matches_scalar_kernels() {
        if !super::available() {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        super::super::pool_simd::check_against_scalar(super::max_pool2d_forward);
    }
}
