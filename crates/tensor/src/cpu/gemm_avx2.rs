//! A single-threaded SGEMM for CPUs with AVX2 and FMA but no AVX-512 (Intel's client cores
//! since Alder Lake, AMD Zen 2 and 3, many cloud instances): the blocking of `gemm_avx512.rs`
//! with a 6x16 micro-kernel, 12 ymm accumulators plus two B vectors and one broadcast, 15 of
//! the 16 ymm registers. Short rows of C (9 or 36 values in NiN and GoogLeNet) are computed
//! transposed, as there. Chosen by `cpu::isa()`, tested against `matrixmultiply`.
//!
//! Operands are given as (pointer, row stride, column stride), as to `gemm_avx512::sgemm`.
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Tile height: rows of C per micro-kernel call.
const MR: usize = 6;
/// Tile width: columns of C per micro-kernel call, two 8-lane vectors.
const NR: usize = 16;
/// Depth of a packed block: a B micro-panel of 256 x 16 values (16 KiB) streams from L1 while a
/// C tile sits in registers.
const KC: usize = 256;
/// Rows of A packed at once (144 x 256 x 4 B = 144 KiB, in the 512 KiB to 2 MiB L2 of these
/// CPUs); a multiple of `MR`.
const MC: usize = 144;
/// Columns of B packed at once (256 x 1536 x 4 B = 1.5 MiB, in L3); a multiple of `NR`.
const NC: usize = 1536;

thread_local! {
    /// Packing buffers, reused by every call on this thread.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether this CPU can run the kernels here.
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Whether computing C^T = B^T A^T wastes fewer cycles: tiles x (k steps + the stores of each
/// depth block), a store costing about 4 k steps plain and 12 scattered.
fn transposed_plan(m: usize, n: usize, k: usize) -> bool {
    let cost = |rows: usize, cols: usize, store: usize| {
        rows.div_ceil(MR) * cols.div_ceil(NR) * (k + k.div_ceil(KC) * store)
    };
    cost(n, m, 12) < cost(m, n, 4)
}

/// `C = alpha * A B + beta * C` for `A: m x k`, `B: k x n`, `C: m x n` (row stride `ldc`,
/// column stride 1). When `beta == 0`, C is not read.
///
/// # Safety
/// The pointers and strides must describe matrices of those sizes inside their allocations (every
/// element `a + i * rsa + p * csa` for `i < m`, `p < k` readable, likewise B, and C's `m x n`
/// cells writable), C not overlapping A or B nor written by another thread meanwhile, and the
/// CPU must support AVX2 and FMA (`available()`).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
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
    if transposed_plan(m, n, k) {
        // C^T (n x m, row stride 1, column stride ldc) = B^T A^T.
        blocked(n, m, k, alpha, (b, csb, rsb), (a, csa, rsa), beta, (c, 1, ldc));
    } else {
        blocked(m, n, k, alpha, (a, rsa, csa), (b, rsb, csb), beta, (c, ldc, 1));
    }
}

/// The blocked product into C with strides (`rsc`, `csc`), one of them 1.
///
/// # Safety
/// As `sgemm`, with C's cells at `c + i * rsc + j * csc`.
#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    (a, rsa, csa): (*const f32, isize, isize),
    (b, rsb, csb): (*const f32, isize, isize),
    beta: f32,
    (c, rsc, csc): (*mut f32, isize, isize),
) {
    PACKS.with(|packs| {
        let (pack_a, pack_b) = &mut *packs.borrow_mut();
        pack_a.resize(MC * KC, 0.0);
        pack_b.resize(KC * NC, 0.0);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b_block(
                    kc,
                    nc,
                    b.offset(pc as isize * rsb + jc as isize * csb),
                    rsb,
                    csb,
                    pack_b.as_mut_ptr(),
                );
                // Later depth blocks add to what the first one stored.
                let beta_here = if pc == 0 { beta } else { 1.0 };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_a_block(
                        mc,
                        kc,
                        a.offset(ic as isize * rsa + pc as isize * csa),
                        rsa,
                        csa,
                        pack_a.as_mut_ptr(),
                    );
                    for jr in (0..nc).step_by(NR) {
                        let pb = pack_b.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let pa = pack_a.as_ptr().add(ir * kc);
                            let tile = Tile {
                                c: c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc),
                                rsc,
                                csc,
                                alpha,
                                beta: beta_here,
                                rows: MR.min(mc - ir),
                                cols: NR.min(nc - jr),
                            };
                            kernel(kc, pa, pb, tile);
                        }
                    }
                }
            }
        }
    });
}

/// Packs `mc x kc` of A into `MR`-row panels, each k step's `MR` values together (zero-padded).
///
/// # Safety
/// `a` with strides `rsa`, `csa` must cover `mc x kc` readable values; `out` must hold
/// `mc.div_ceil(MR) * MR * kc` writable values.
unsafe fn pack_a_block(mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, out: *mut f32) {
    for (panel, ir) in (0..mc).step_by(MR).enumerate() {
        let dst = out.add(panel * MR * kc);
        let rows = MR.min(mc - ir);
        let a = a.offset(ir as isize * rsa);
        for i in 0..MR {
            if i < rows {
                // One row of the panel at a time: along k, the contiguous direction when A is
                // row-major (the common case), and a strided walk otherwise.
                let src = a.offset(i as isize * rsa);
                for p in 0..kc {
                    *dst.add(p * MR + i) = *src.offset(p as isize * csa);
                }
            } else {
                for p in 0..kc {
                    *dst.add(p * MR + i) = 0.0;
                }
            }
        }
    }
}

/// Packs `kc x nc` of B into `NR`-column panels, each k step's `NR` values together
/// (zero-padded).
///
/// # Safety
/// `b` with strides `rsb`, `csb` must cover `kc x nc` readable values; `out` must hold
/// `nc.div_ceil(NR) * NR * kc` writable values; the CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn pack_b_block(kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: *mut f32) {
    for (panel, jr) in (0..nc).step_by(NR).enumerate() {
        let dst = out.add(panel * NR * kc);
        let cols = NR.min(nc - jr);
        let b = b.offset(jr as isize * csb);
        if csb == 1 && cols == NR {
            // Rows of B contiguous along n: two vector copies per k step.
            for p in 0..kc {
                let src = b.offset(p as isize * rsb);
                _mm256_storeu_ps(dst.add(p * NR), _mm256_loadu_ps(src));
                _mm256_storeu_ps(dst.add(p * NR + 8), _mm256_loadu_ps(src.add(8)));
            }
        } else if rsb == 1 {
            // Columns contiguous along k: one column at a time, read in order.
            for j in 0..NR {
                if j < cols {
                    let src = b.offset(j as isize * csb);
                    for p in 0..kc {
                        *dst.add(p * NR + j) = *src.add(p);
                    }
                } else {
                    for p in 0..kc {
                        *dst.add(p * NR + j) = 0.0;
                    }
                }
            }
        } else {
            for p in 0..kc {
                for j in 0..NR {
                    *dst.add(p * NR + j) =
                        if j < cols { *b.offset(p as isize * rsb + j as isize * csb) } else { 0.0 };
                }
            }
        }
    }
}

/// Where and how a micro-kernel stores its tile: only `rows x cols` of it are written, element
/// (i, j) at `c + i * rsc + j * csc`.
struct Tile {
    c: *mut f32,
    rsc: isize,
    csc: isize,
    alpha: f32,
    beta: f32,
    rows: usize,
    cols: usize,
}

/// One `MR x NR` tile: `C = alpha * (packed A panel)(packed B panel) + beta * C`.
///
/// # Safety
/// `a` and `b` must hold packed panels of `kc * MR` and `kc * NR` values; the tile's `rows x
/// cols` cells (`rows <= MR`, `cols <= NR`) must be writable and touched by no other thread; the
/// CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, tile: Tile) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(p * NR));
        let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
        let ap = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*ap.add(i));
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    let Tile { c, rsc, csc, alpha, beta, rows, cols } = tile;
    let alpha_v = _mm256_set1_ps(alpha);
    if csc == 1 && cols == NR {
        // Whole rows of the tile are contiguous: vector stores.
        let beta_v = _mm256_set1_ps(beta);
        for (i, row) in acc.iter().enumerate().take(rows) {
            let dst = c.offset(i as isize * rsc);
            for (h, sum) in row.iter().enumerate() {
                let mut v = _mm256_mul_ps(alpha_v, *sum);
                if beta != 0.0 {
                    v = _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(dst.add(8 * h)), v);
                }
                _mm256_storeu_ps(dst.add(8 * h), v);
            }
        }
        return;
    }
    // An edge tile, or C transposed: through a buffer, one cell at a time.
    let mut buf = [[0.0f32; NR]; MR];
    for (row, sums) in buf.iter_mut().zip(&acc) {
        _mm256_storeu_ps(row.as_mut_ptr(), _mm256_mul_ps(alpha_v, sums[0]));
        _mm256_storeu_ps(row.as_mut_ptr().add(8), _mm256_mul_ps(alpha_v, sums[1]));
    }
    if csc == 1 {
        for (i, row) in buf.iter().enumerate().take(rows) {
            let dst = c.offset(i as isize * rsc);
            for (j, v) in row.iter().enumerate().take(cols) {
                let p = dst.add(j);
                *p = if beta == 0.0 { *v } else { v + beta * *p };
            }
        }
    } else {
        // Transposed: walk C along its rows (the tile's columns), contiguous over i.
        for j in 0..cols {
            let dst = c.offset(j as isize * csc);
            for (i, row) in buf.iter().enumerate().take(rows) {
                let p = dst.offset(i as isize * rsc);
                *p = if beta == 0.0 { row[j] } else { row[j] + beta * *p };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Every transpose, both plans, edge tiles in both directions, several depth and row
    /// blocks, alpha and beta (including beta = 0 over NaN, which must not be read), against an
    /// f64 loop.
    #[test]
    fn matches_f64_loops() {
        if !available() {
            eprintln!("skipping: no AVX2 and FMA on this CPU");
            return;
        }
        let mut rng = StdRng::seed_from_u64(2);
        let shapes = [
            (1, 1, 1),
            (6, 16, 7),
            (7, 17, 300),
            (150, 70, 513),
            (5, 1600, 40),
            (200, 3, 2),
            (100, 9, 300),
            (13, 36, 257),
        ];
        let transposed: Vec<bool> = shapes.iter().map(|&(m, n, k)| transposed_plan(m, n, k)).collect();
        assert!(transposed.contains(&true) && transposed.contains(&false), "both plans must be tested");
        for &(m, n, k) in &shapes {
            for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
                for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (-2.0, 0.25)] {
                    let a: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let c0: Vec<f32> = (0..m * n)
                        .map(|_| if beta == 0.0 { f32::NAN } else { rng.gen_range(-1.0..1.0) })
                        .collect();
                    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
                    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
                    let mut ours = c0.clone();
                    // SAFETY: a, b and ours are dense m x k, k x n and m x n matrices with the
                    // strides given, and the test returned early without AVX2 and FMA.
                    unsafe {
                        sgemm(
                            m,
                            n,
                            k,
                            alpha,
                            a.as_ptr(),
                            rsa as isize,
                            csa as isize,
                            b.as_ptr(),
                            rsb as isize,
                            csb as isize,
                            beta,
                            ours.as_mut_ptr(),
                            n as isize,
                        );
                    }
                    for i in 0..m {
                        for j in 0..n {
                            let dot: f64 = (0..k)
                                .map(|p| a[i * rsa + p * csa] as f64 * b[p * rsb + j * csb] as f64)
                                .sum();
                            let old = if beta == 0.0 { 0.0 } else { beta as f64 * c0[i * n + j] as f64 };
                            let want = alpha as f64 * dot + old;
                            let got = ours[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                                "{m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta} [{i}, {j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
