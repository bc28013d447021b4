//! A single-threaded SGEMM for AVX-512 CPUs: BLIS-style blocking with our own packing and two
//! register-blocked micro-kernels (12x32 and 8x48, 24 accumulators in zmm registers each),
//! chosen per product by how little of their tiles would be padding; short rows of C are
//! computed transposed. The default on CPUs with AVX-512F (`cpu::gemm`), tested against
//! `matrixmultiply`.
//!
//! Operands are given as (pointer, row stride, column stride), so every transpose is just a
//! choice of strides; packing reads them along whichever stride is 1 (transposing 16x16
//! blocks in registers when that is across the panel).
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Depth of a packed block: B micro-panels of 256 x 32 or 48 values (32 or 48 KiB) stream
/// from L1 and L2 while a C tile sits in registers.
const KC: usize = 256;
/// Rows of A packed at once (96 x 256 x 4 B = 96 KiB, in L2); a multiple of every tile height.
const MC: usize = 96;
/// Columns of B packed at once (256 x 1536 x 4 B = 1.5 MiB); a multiple of every tile width.
const NC: usize = 1536;

thread_local! {
    /// Packing buffers, reused by every call on this thread.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// The micro-kernels: `rows` x `vectors` 16-lane accumulators, 24 of the 32 zmm registers
/// either way. 12 x 32 wastes least when C's rows are long, 8 x 48 when they are 48 or 144
/// values long or there are only 8 of them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TileShape {
    Rows12Cols32,
    Rows8Cols48,
}

impl TileShape {
    fn rows(self) -> usize {
        match self {
            TileShape::Rows12Cols32 => 12,
            TileShape::Rows8Cols48 => 8,
        }
    }
    fn cols(self) -> usize {
        match self {
            TileShape::Rows12Cols32 => 32,
            TileShape::Rows8Cols48 => 48,
        }
    }
}

/// How one product runs: which tile, and whether it computes C^T = B^T A^T so that the
/// vector lanes run along m (C's rows being short: 9 or 36 values), at the price of
/// transposing each tile as it is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Plan {
    shape: TileShape,
    transposed: bool,
}

/// The plan with the fewest estimated cycles: tiles x (k steps + the stores of each depth
/// block), where a k step is 24 FMAs and a tile's store costs about 4 such steps plain and 16
/// with the transposes (fitted to the `gemm_gflops` bench on Zen 4).
fn plan(m: usize, n: usize, k: usize) -> Plan {
    let mut best = (usize::MAX, Plan { shape: TileShape::Rows12Cols32, transposed: false });
    for shape in [TileShape::Rows12Cols32, TileShape::Rows8Cols48] {
        for transposed in [false, true] {
            let (rows, cols, store) = if transposed { (n, m, 16) } else { (m, n, 4) };
            let cost =
                rows.div_ceil(shape.rows()) * cols.div_ceil(shape.cols()) * (k + k.div_ceil(KC) * store);
            if cost < best.0 {
                best = (cost, Plan { shape, transposed });
            }
        }
    }
    best.1
}

/// `C = alpha * A B + beta * C` for `A: m x k`, `B: k x n`, `C: m x n` (row stride `ldc`,
/// column stride 1). When `beta == 0`, C is not read.
///
/// # Safety
/// The pointers and strides must describe matrices of those sizes inside their allocations (every
/// element `a + i * rsa + p * csa` for `i < m`, `p < k` readable, likewise B, and C's `m x n`
/// cells writable), C not overlapping A or B nor written by another thread meanwhile, and the
/// CPU must support AVX-512F (`available()`).
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
    let plan = plan(m, n, k);
    let (m, n, a, rsa, csa, b, rsb, csb) =
        if plan.transposed { (n, m, b, csb, rsb, a, csa, rsa) } else { (m, n, a, rsa, csa, b, rsb, csb) };
    let product = Product { m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, ldc };
    match (plan.shape, plan.transposed) {
        (TileShape::Rows12Cols32, false) => blocked::<12, 2, false>(product),
        (TileShape::Rows12Cols32, true) => blocked::<12, 2, true>(product),
        (TileShape::Rows8Cols48, false) => blocked::<8, 3, false>(product),
        (TileShape::Rows8Cols48, true) => blocked::<8, 3, true>(product),
    }
}

/// One product's operands, as `sgemm` takes them.
struct Product {
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
}

/// The blocked product with `MR x (16 NV)` tiles; `TRANSPOSED` stores tile element (i, j) at
/// `c[j * ldc + i]`.
///
/// # Safety
/// As `sgemm`, for the operands in `g` (already swapped when `TRANSPOSED`).
unsafe fn blocked<const MR: usize, const NV: usize, const TRANSPOSED: bool>(g: Product) {
    let nr = 16 * NV;
    let Product { m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, ldc } = g;
    PACKS.with(|packs| {
        let (pack_a, pack_b) = &mut *packs.borrow_mut();
        pack_a.resize(MC * KC, 0.0);
        pack_b.resize(KC * NC, 0.0);
        let (rsc, csc) = if TRANSPOSED { (1, ldc) } else { (ldc, 1) };
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b_block(
                    kc,
                    nc,
                    nr,
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
                        MR,
                        a.offset(ic as isize * rsa + pc as isize * csa),
                        rsa,
                        csa,
                        pack_a.as_mut_ptr(),
                    );
                    for jr in (0..nc).step_by(nr) {
                        let cols = nr.min(nc - jr);
                        let pb = pack_b.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let rows = MR.min(mc - ir);
                            let pa = pack_a.as_ptr().add(ir * kc);
                            let cp = c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc);
                            let tile = Tile { c: cp, ldc, alpha, beta: beta_here, rows, cols };
                            kernel::<MR, NV, TRANSPOSED>(kc, pa, pb, tile);
                        }
                    }
                }
            }
        }
    });
}

/// Packs `mc x kc` of A into `mr`-row panels, each k step's `mr` values together
/// (zero-padded).
///
/// # Safety
/// `a` with strides `rsa`, `csa` must cover `mc x kc` readable values; `out` must hold
/// `mc.div_ceil(mr) * mr * kc` writable values, `mr <= 16`; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a_block(
    mc: usize,
    kc: usize,
    mr: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    out: *mut f32,
) {
    let keep = lane_mask(mr);
    for (panel, ir) in (0..mc).step_by(mr).enumerate() {
        let dst = out.add(panel * mr * kc);
        let rows = mr.min(mc - ir);
        let a = a.offset(ir as isize * rsa);
        if rsa == 1 {
            // A column is contiguous: one masked load per k step.
            for p in 0..kc {
                let v = _mm512_maskz_loadu_ps(lane_mask(rows), a.offset(p as isize * csa));
                _mm512_mask_storeu_ps(dst.add(p * mr), keep, v);
            }
        } else if csa == 1 {
            // Rows contiguous along k: transpose 16 k steps of the panel's rows at a time.
            for p0 in (0..kc).step_by(16) {
                let steps = 16.min(kc - p0);
                let mut t = [_mm512_setzero_ps(); 16];
                for (i, v) in t.iter_mut().enumerate().take(rows) {
                    *v = _mm512_maskz_loadu_ps(lane_mask(steps), a.offset(i as isize * rsa).add(p0));
                }
                transpose16(&mut t);
                for (q, v) in t.iter().enumerate().take(steps) {
                    _mm512_mask_storeu_ps(dst.add((p0 + q) * mr), keep, *v);
                }
            }
        } else {
            for p in 0..kc {
                for i in 0..mr {
                    *dst.add(p * mr + i) =
                        if i < rows { *a.offset(p as isize * csa + i as isize * rsa) } else { 0.0 };
                }
            }
        }
    }
}

/// Packs `kc x nc` of B into `nr`-column panels (`nr` a multiple of 16), each k step's `nr`
/// values together (zero-padded).
///
/// # Safety
/// `b` with strides `rsb`, `csb` must cover `kc x nc` readable values; `out` must hold
/// `nc.div_ceil(nr) * nr * kc` writable values; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_block(
    kc: usize,
    nc: usize,
    nr: usize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    out: *mut f32,
) {
    for (panel, jr) in (0..nc).step_by(nr).enumerate() {
        let dst = out.add(panel * nr * kc);
        let cols = nr.min(nc - jr);
        let b = b.offset(jr as isize * csb);
        for slab in (0..nr).step_by(16) {
            let width = 16.min(cols.saturating_sub(slab));
            if width == 0 {
                // A slab wholly past B's last column: zeros, and no address past B is formed.
                for p in 0..kc {
                    _mm512_storeu_ps(dst.add(p * nr + slab), _mm512_setzero_ps());
                }
                continue;
            }
            if csb == 1 {
                // Rows of B contiguous along n: a masked load per k step.
                for p in 0..kc {
                    let v = _mm512_maskz_loadu_ps(lane_mask(width), b.offset(p as isize * rsb).add(slab));
                    _mm512_storeu_ps(dst.add(p * nr + slab), v);
                }
            } else if rsb == 1 {
                // Columns contiguous along k: transpose 16 columns by 16 k steps at a time.
                for p0 in (0..kc).step_by(16) {
                    let steps = 16.min(kc - p0);
                    let mut t = [_mm512_setzero_ps(); 16];
                    for (j, v) in t.iter_mut().enumerate().take(width) {
                        *v = _mm512_maskz_loadu_ps(
                            lane_mask(steps),
                            b.offset((slab + j) as isize * csb).add(p0),
                        );
                    }
                    transpose16(&mut t);
                    for (q, v) in t.iter().enumerate().take(steps) {
                        _mm512_storeu_ps(dst.add((p0 + q) * nr + slab), *v);
                    }
                }
            } else {
                for p in 0..kc {
                    for j in slab..slab + 16 {
                        *dst.add(p * nr + j) =
                            if j < cols { *b.offset(p as isize * rsb + j as isize * csb) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Transposes a 16x16 block held as 16 rows: afterwards `rows[j]` lane `i` is what was
/// `rows[i]` lane `j`. Pairs of rows interleave, then pairs of pairs, then 128-bit lanes.
///
/// # Safety
/// The CPU must support AVX-512F (no memory is touched but `rows`).
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(rows: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    // u[4g + c], 128-bit lane L: column 4L + c, rows 4g..4g+4.
    let mut u = [_mm512_setzero_ps(); 16];
    let pd = _mm512_castps_pd;
    for g in 0..4 {
        let (x0, x1, y0, y1) = (pd(t[4 * g]), pd(t[4 * g + 2]), pd(t[4 * g + 1]), pd(t[4 * g + 3]));
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x1));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x1));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(y0, y1));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(y0, y1));
    }
    for col in 0..4 {
        let even01 = _mm512_shuffle_f32x4::<0x88>(u[col], u[4 + col]);
        let odd01 = _mm512_shuffle_f32x4::<0xDD>(u[col], u[4 + col]);
        let even23 = _mm512_shuffle_f32x4::<0x88>(u[8 + col], u[12 + col]);
        let odd23 = _mm512_shuffle_f32x4::<0xDD>(u[8 + col], u[12 + col]);
        rows[col] = _mm512_shuffle_f32x4::<0x88>(even01, even23);
        rows[8 + col] = _mm512_shuffle_f32x4::<0xDD>(even01, even23);
        rows[4 + col] = _mm512_shuffle_f32x4::<0x88>(odd01, odd23);
        rows[12 + col] = _mm512_shuffle_f32x4::<0xDD>(odd01, odd23);
    }
}

/// Where and how a micro-kernel stores its tile: only `rows x cols` of it are written.
struct Tile {
    c: *mut f32,
    ldc: isize,
    alpha: f32,
    beta: f32,
    rows: usize,
    cols: usize,
}

/// One `MR x 16 NV` tile: `C = alpha * (packed A panel)(packed B panel) + beta * C`. With
/// `TRANSPOSED`, tile element (i, j) goes to `c[j * ldc + i]`.
///
/// # Safety
/// `a` and `b` must hold packed panels of `kc * MR` and `kc * 16 * NV` values; `tile.c` with
/// `tile.ldc` must cover the tile's `rows x cols` writable cells (`rows <= MR`, `cols <= 16 NV`)
/// that no other thread touches; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const MR: usize, const NV: usize, const TRANSPOSED: bool>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    tile: Tile,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    for p in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, b_vec) in bv.iter_mut().enumerate() {
            *b_vec = _mm512_loadu_ps(b.add((p * NV + v) * 16));
        }
        let ap = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*ap.add(i));
            for (sum, b_vec) in row.iter_mut().zip(&bv) {
                *sum = _mm512_fmadd_ps(av, *b_vec, *sum);
            }
        }
    }
    let Tile { c, ldc, alpha, beta, rows, cols } = tile;
    let alpha_v = _mm512_set1_ps(alpha);
    let beta_v = _mm512_set1_ps(beta);
    let store = |ptr: *mut f32, mask: __mmask16, v: __m512| {
        let mut v = _mm512_mul_ps(alpha_v, v);
        if beta != 0.0 {
            v = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, ptr), v);
        }
        _mm512_mask_storeu_ps(ptr, mask, v);
    };
    for slab in 0..NV {
        let width = 16.min(cols.saturating_sub(slab * 16));
        if width == 0 {
            break;
        }
        if TRANSPOSED {
            // The slab's 16 columns become 16 vectors of the tile's rows.
            let mut t = [_mm512_setzero_ps(); 16];
            for (v, row) in t.iter_mut().zip(&acc) {
                *v = row[slab];
            }
            transpose16(&mut t);
            for (j, v) in t.iter().enumerate().take(width) {
                store(c.offset((slab * 16 + j) as isize * ldc), lane_mask(rows), *v);
            }
        } else {
            for (i, row) in acc.iter().enumerate().take(rows) {
                store(c.offset(i as isize * ldc).add(slab * 16), lane_mask(width), row[slab]);
            }
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

    /// Every transpose, every plan (both tiles, plain and transposed stores), edge tiles in
    /// both directions, several depth blocks, alpha and beta (including beta = 0 over NaN,
    /// which must not be read), against `matrixmultiply`.
    #[test]
    fn matches_matrixmultiply() {
        if !available() {
            eprintln!("skipping: no AVX-512F on this CPU");
            return;
        }
        let mut rng = StdRng::seed_from_u64(1);
        let shapes = [
            (1, 1, 1),
            (12, 32, 7),
            (13, 33, 300),
            (97, 70, 513),
            (5, 2100, 40),
            (200, 3, 2),
            (100, 9, 300),
            (96, 13, 700),
        ];
        let plans: Vec<Plan> = shapes.iter().map(|&(m, n, k)| plan(m, n, k)).collect();
        for shape in [TileShape::Rows12Cols32, TileShape::Rows8Cols48] {
            for transposed in [false, true] {
                assert!(
                    plans.contains(&Plan { shape, transposed }),
                    "no test shape runs {shape:?} transposed {transposed}"
                );
            }
        }
        for &(m, n, k) in &shapes {
            for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
                for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (-2.0, 0.25)] {
                    let a: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let c0: Vec<f32> = (0..m * n)
                        .map(|_| if beta == 0.0 { f32::NAN } else { rng.gen_range(-1.0..1.0) })
                        .collect();
                    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
                    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
                    let (mut ours, mut reference) = (c0.clone(), c0.clone());
                    if beta == 0.0 {
                        reference.fill(0.0);
                    }
                    // SAFETY: a, b, ours and reference are dense m x k, k x n and m x n matrices
                    // with the strides given, and the test returned early without AVX-512F.
                    unsafe {
                        sgemm(
                            m,
                            n,
                            k,
                            alpha,
                            a.as_ptr(),
                            rsa,
                            csa,
                            b.as_ptr(),
                            rsb,
                            csb,
                            beta,
                            ours.as_mut_ptr(),
                            n as isize,
                        );
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            alpha,
                            a.as_ptr(),
                            rsa,
                            csa,
                            b.as_ptr(),
                            rsb,
                            csb,
                            beta,
                            reference.as_mut_ptr(),
                            n as isize,
                            1,
                        );
                    }
                    for (i, (x, y)) in ours.iter().zip(&reference).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()) * (k as f32).sqrt(),
                            "{m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta} [{i}]: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
