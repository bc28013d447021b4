//! A single-threaded SGEMM for AVX-512 CPUs: BLIS-style blocking with our own packing and a
//! 12x32 register-blocked micro-kernel (24 accumulators in zmm registers). Opt-in with
//! `CONVNET_GEMM=avx512` on CPUs with AVX-512F: on the Zen 4 it was measured on it runs level
//! with `matrixmultiply`, which stays the default and the reference it is tested against.
//!
//! Operands are given as (pointer, row stride, column stride), so every transpose is just a
//! choice of strides; packing reads them along whichever stride is 1.
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of a micro-tile (A values broadcast per k step).
const MR: usize = 12;
/// Columns of a micro-tile: two 16-lane vectors.
const NR: usize = 32;
/// Depth of a packed block: a 32-column B micro-panel (KC x 32 x 4 B = 32 KiB) stays in L1.
const KC: usize = 256;
/// Rows of A packed at once (96 x 256 x 4 B = 96 KiB, in L2).
const MC: usize = 96;
/// Columns of B packed at once (256 x 2048 x 4 B = 2 MiB, in L2/L3).
const NC: usize = 2048;

thread_local! {
    /// Packing buffers, reused by every call on this thread.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// `C = alpha * A B + beta * C` for `A: m x k`, `B: k x n`, `C: m x n` (row stride `ldc`,
/// column stride 1). When `beta == 0`, C is not read.
///
/// # Safety
/// The pointers and strides must describe valid matrices of those sizes, C not aliasing A or B,
/// and the CPU must support AVX-512F (`available()`).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    ldc: isize,
) {
    PACKS.with(|packs| {
        let (pack_a, pack_b) = &mut *packs.borrow_mut();
        pack_a.resize(MC * KC, 0.0);
        pack_b.resize(KC * NC.div_ceil(NR) * NR, 0.0);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b_block(kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, pack_b);
                // Later depth blocks add to what the first one stored.
                let beta_here = if pc == 0 { beta } else { 1.0 };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_a_block(mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, pack_a);
                    for jr in (0..nc).step_by(NR) {
                        let cols = NR.min(nc - jr);
                        let pb = pack_b.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let rows = MR.min(mc - ir);
                            let pa = pack_a.as_ptr().add(ir * kc);
                            let cp = c.offset((ic + ir) as isize * ldc + (jc + jr) as isize);
                            kernel(kc, pa, pb, cp, ldc, alpha, beta_here, rows, cols);
                        }
                    }
                }
            }
        }
    });
}

/// Packs `mc x kc` of A into MR-row panels, each k step's MR values together (zero-padded).
unsafe fn pack_a_block(mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, out: &mut [f32]) {
    for (panel, ir) in (0..mc).step_by(MR).enumerate() {
        let dst = &mut out[panel * MR * kc..][..MR * kc];
        let rows = MR.min(mc - ir);
        if csa == 1 {
            // Rows contiguous along k: read each row once.
            for i in 0..MR {
                if i < rows {
                    let src = a.offset((ir + i) as isize * rsa);
                    for p in 0..kc {
                        dst[p * MR + i] = *src.add(p);
                    }
                } else {
                    (0..kc).for_each(|p| dst[p * MR + i] = 0.0);
                }
            }
        } else {
            for p in 0..kc {
                let src = a.offset(p as isize * csa + ir as isize * rsa);
                for i in 0..MR {
                    dst[p * MR + i] = if i < rows { *src.offset(i as isize * rsa) } else { 0.0 };
                }
            }
        }
    }
}

/// Packs `kc x nc` of B into NR-column panels, each k step's NR values together (zero-padded).
unsafe fn pack_b_block(kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: &mut [f32]) {
    for (panel, jr) in (0..nc).step_by(NR).enumerate() {
        let dst = &mut out[panel * NR * kc..][..NR * kc];
        let cols = NR.min(nc - jr);
        if csb == 1 {
            // Rows of B contiguous along n: copy runs of NR.
            for p in 0..kc {
                let src = std::slice::from_raw_parts(b.offset(p as isize * rsb + jr as isize), cols);
                dst[p * NR..p * NR + cols].copy_from_slice(src);
                dst[p * NR + cols..(p + 1) * NR].fill(0.0);
            }
        } else {
            for j in 0..NR {
                if j < cols {
                    let src = b.offset((jr + j) as isize * csb);
                    for p in 0..kc {
                        dst[p * NR + j] = *src.offset(p as isize * rsb);
                    }
                } else {
                    (0..kc).for_each(|p| dst[p * NR + j] = 0.0);
                }
            }
        }
    }
}

/// One MR x NR tile: `C = alpha * (packed A panel)(packed B panel) + beta * C`, writing only
/// `rows x cols` of it (masked stores at the right edge).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: isize, alpha: f32, beta: f32, rows: usize, cols: usize) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(p * NR));
        let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
        let ap = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*ap.add(i));
            row[0] = _mm512_fmadd_ps(av, b0, row[0]);
            row[1] = _mm512_fmadd_ps(av, b1, row[1]);
        }
    }
    let alpha_v = _mm512_set1_ps(alpha);
    let beta_v = _mm512_set1_ps(beta);
    let masks = [lane_mask(cols.min(16)), lane_mask(cols.saturating_sub(16))];
    for (i, row) in acc.iter().enumerate().take(rows) {
        let crow = c.offset(i as isize * ldc);
        for (h, &mask) in masks.iter().enumerate() {
            if mask == 0 {
                continue;
            }
            let ptr = crow.add(h * 16);
            let mut v = _mm512_mul_ps(alpha_v, row[h]);
            if beta != 0.0 {
                v = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, ptr), v);
            }
            _mm512_mask_storeu_ps(ptr, mask, v);
        }
    }
}

/// The first `n` (0..=16) lanes.
fn lane_mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Every transpose, edge tiles in both directions, several depth blocks, alpha and beta
    /// (including beta = 0 over NaN, which must not be read), against `matrixmultiply`.
    #[test]
    fn matches_matrixmultiply() {
        if !available() {
            eprintln!("skipping: no AVX-512F on this CPU");
            return;
        }
        let mut rng = StdRng::seed_from_u64(1);
        for &(m, n, k) in &[(1, 1, 1), (12, 32, 7), (13, 33, 300), (97, 70, 513), (5, 2100, 40), (200, 3, 2)] {
            for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
                for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (-2.0, 0.25)] {
                    let a: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let c0: Vec<f32> = (0..m * n).map(|_| if beta == 0.0 { f32::NAN } else { rng.gen_range(-1.0..1.0) }).collect();
                    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
                    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
                    let (mut ours, mut reference) = (c0.clone(), c0.clone());
                    if beta == 0.0 {
                        reference.fill(0.0);
                    }
                    unsafe {
                        sgemm(m, n, k, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, ours.as_mut_ptr(), n as isize);
                        matrixmultiply::sgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, reference.as_mut_ptr(), n as isize, 1);
                    }
                    for (i, (x, y)) in ours.iter().zip(&reference).enumerate() {
                        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()) * (k as f32).sqrt(), "{m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta} [{i}]: {x} vs {y}");
                    }
                }
            }
        }
    }
}
