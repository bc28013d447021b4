//! Matrix products on the CPU through our AVX-512 or AVX2 GEMM (`gemm_avx512.rs`,
//! `gemm_avx2.rs`) or, on other CPUs, `matrixmultiply`; parallelised one level at a time:
//! over the batch when it has enough items, otherwise over row or column blocks of one product.
#[cfg(target_arch = "x86_64")]
use super::isa::{isa, Isa};
use crate::Gemm;
use rayon::prelude::*;

/// Below this many flops a product runs on one thread: splitting costs more than it saves.
const PARALLEL_FLOPS: f64 = 4.0e6;

/// A raw pointer that may cross threads; each task writes a disjoint block.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: a SendPtr is only an address; every kernel that shares one between rayon tasks gives
// each task a disjoint range to write, and joins the tasks before the buffer is used again.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: tasks only copy the address out (`get`), never write through a shared one.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    /// Taking `self` whole makes closures capture the wrapper, not the bare pointer.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Strides (row, column) of op(A) given its storage: `rows x cols` after the optional transpose.
fn strides(trans: bool, cols: usize, rows: usize) -> (isize, isize) {
    if trans {
        (1, rows as isize)
    } else {
        (cols as isize, 1)
    }
}

/// One product on one thread, restricted to rows `r0..r1` and columns `c0..c1` of C.
///
/// # Safety
/// `a`, `b`, `c` must point at the starts of op(A), op(B), C of the sizes `g` gives, inside
/// their allocations, with no other thread reading or writing the C cells of `rows x cols`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_block(
    g: &Gemm,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    beta: f32,
    rows: (usize, usize),
    cols: (usize, usize),
) {
    sgemm_part(g, a, b, c, g.n, beta, rows, cols, (0, g.k))
}

/// `sgemm_block` over the depth range `d0..d1` only, into C of row stride `ldc`.
///
/// # Safety
/// As `sgemm_block`, with C holding `rows.1` rows of `ldc` values and `depth` within `0..g.k`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_part(
    g: &Gemm,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    beta: f32,
    rows: (usize, usize),
    cols: (usize, usize),
    depth: (usize, usize),
) {
    let (rsa, csa) = strides(g.trans_a, g.k, g.m);
    let (rsb, csb) = strides(g.trans_b, g.n, g.k);
    let (r0, r1) = rows;
    let (c0, c1) = cols;
    let (d0, k) = (depth.0, depth.1.saturating_sub(depth.0));
    if r1 <= r0 || c1 <= c0 {
        return;
    }
    let c = c.add(r0 * ldc + c0);
    if k == 0 {
        // matrixmultiply would leave C untouched; the product is zero, so C = beta * C. (A and
        // B may be empty: no pointer into them is formed.)
        for r in 0..r1 - r0 {
            for j in 0..c1 - c0 {
                let p = c.add(r * ldc + j);
                *p = if beta == 0.0 { 0.0 } else { beta * *p };
            }
        }
        return;
    }
    let a = a.offset(r0 as isize * rsa + d0 as isize * csa);
    let b = b.offset(c0 as isize * csb + d0 as isize * rsb);
    #[cfg(target_arch = "x86_64")]
    if let Some(ours) = our_gemm() {
        let sgemm = match ours {
            Isa::Avx512 => super::gemm_avx512::sgemm,
            _ => super::gemm_avx2::sgemm,
        };
        // SAFETY: the caller's contract describes these operands; our_gemm() picks a kernel
        // only for a path isa() found on this CPU.
        sgemm(r1 - r0, c1 - c0, k, g.alpha, a, rsa, csa, b, rsb, csb, beta, c, ldc as isize);
        return;
    }
    matrixmultiply::sgemm(r1 - r0, k, c1 - c0, g.alpha, a, rsa, csa, b, rsb, csb, beta, c, ldc as isize, 1);
}

/// Our kernel for the process's path (`isa()`: AVX-512 or AVX2; it beats `matrixmultiply` on
/// most of NiN's and GoogLeNet's shapes, BENCHMARKS.md); `None` on the portable path or with
/// `CONVNET_GEMM=matrixmultiply`, which keeps the library (also the reference in tests).
#[cfg(target_arch = "x86_64")]
fn our_gemm() -> Option<Isa> {
    static CHOICE: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let library = std::env::var("CONVNET_GEMM").is_ok_and(|v| v == "matrixmultiply");
        Some(isa()).filter(|&i| i != Isa::Portable && !library)
    })
}

/// One product, split across threads by rows (or columns when C is short and wide).
///
/// # Safety
/// As `sgemm_block`: `a`, `b`, `c` point at op(A), op(B), C of the sizes `g` gives.
unsafe fn sgemm_parallel(g: &Gemm, a: *const f32, b: *const f32, c: *mut f32, beta: f32) {
    let threads = rayon::current_num_threads();
    let flops = 2.0 * g.m as f64 * g.n as f64 * g.k as f64;
    if threads == 1 || flops < PARALLEL_FLOPS {
        sgemm_block(g, a, b, c, beta, (0, g.m), (0, g.n));
        return;
    }
    let (ap, bp, cp) = (SendPtr(a as *mut f32), SendPtr(b as *mut f32), SendPtr(c));
    if g.m * g.n <= DEPTH_SPLIT_MAX_OUTPUT && g.k >= 4 * g.m.max(g.n) {
        // A small C from a long sum (a weight gradient over a whole chunk): split rows or
        // columns and each thread would pack all of the other operand; split the sum instead.
        let block = g.k.div_ceil(threads).div_ceil(256) * 256;
        let partials: Vec<Vec<f32>> = (0..g.k.div_ceil(block))
            .into_par_iter()
            .map(|i| {
                let mut part = vec![0.0f32; g.m * g.n];
                let depth = (i * block, ((i + 1) * block).min(g.k));
                // SAFETY: a and b as the caller guarantees; `part` is a private m x n C.
                unsafe {
                    sgemm_part(g, ap.get(), bp.get(), part.as_mut_ptr(), g.n, 0.0, (0, g.m), (0, g.n), depth)
                };
                part
            })
            .collect();
        // SAFETY: c points at the caller's m x n C, which no task above wrote.
        let out = unsafe { std::slice::from_raw_parts_mut(c, g.m * g.n) };
        add_partials(out, beta, &partials);
        return;
    }
    // Split the larger operand: each thread then packs only its share of it (the smaller one,
    // usually the weights, is packed by every thread).
    let split_rows = g.m >= g.n;
    let extent = if split_rows { g.m } else { g.n };
    // Blocks of whole 8-row or 16-column strips: a split mid-strip would pad a tile on both
    // sides of it (our 8x48 tiles and 16-lane vectors divide these; 12-row tiles do not).
    let align = if split_rows { 8 } else { 16 };
    let block = extent.div_ceil(threads).div_ceil(align) * align;
    (0..extent.div_ceil(block)).into_par_iter().for_each(|i| {
        let range = (i * block, ((i + 1) * block).min(extent));
        let (rows, cols) = if split_rows { (range, (0, g.n)) } else { ((0, g.m), range) };
        // SAFETY: the operands as the caller guarantees; each task writes only its own rows
        // (or columns) of C.
        unsafe { sgemm_block(g, ap.get(), bp.get(), cp.get(), beta, rows, cols) };
    });
}

/// Products with at most this many outputs may split their depth across threads.
const DEPTH_SPLIT_MAX_OUTPUT: usize = 256 * 256;

/// `out = beta * out + sum of partials` (out not read when beta is 0).
fn add_partials(out: &mut [f32], beta: f32, partials: &[Vec<f32>]) {
    out.par_chunks_mut(4096).enumerate().for_each(|(ci, chunk)| {
        for (j, o) in chunk.iter_mut().enumerate() {
            let s: f32 = partials.iter().map(|p| p[ci * 4096 + j]).sum();
            *o = if beta == 0.0 { s } else { beta * *o + s };
        }
    });
}

/// The batched product described by `Gemm`.
///
/// # Safety
/// `checks::gemm(g, a.len(), b.len(), c.len())` must have accepted these arguments: every item
/// of the batch lies inside its buffer and the items' outputs do not overlap.
pub(crate) unsafe fn gemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    let threads = rayon::current_num_threads();
    if g.batch == 0 {
        return;
    }
    // Item i's operands start inside a and b (wrapping arithmetic: no pointer is formed that
    // the checks did not cover, whatever i the closures are called with).
    let a_at = |i: usize| a.as_ptr().wrapping_add(g.a_offset + i * g.a_stride);
    let b_at = |i: usize| b.as_ptr().wrapping_add(g.b_offset + i * g.b_stride);
    if g.c_stride == 0 && g.batch > 1 {
        // Summed products: each thread reduces a share of the batch into its own buffer.
        let groups = threads.min(g.batch);
        let per = g.batch.div_ceil(groups);
        let mn = g.m * g.n;
        let partials: Vec<Vec<f32>> = (0..groups)
            .into_par_iter()
            .map(|t| {
                let mut acc = vec![0.0f32; mn];
                for i in t * per..((t + 1) * per).min(g.batch) {
                    let beta = if i == t * per { 0.0 } else { 1.0 };
                    // SAFETY: item i < batch lies inside a and b (the caller's checks); acc
                    // holds the m x n C.
                    unsafe { sgemm_block(g, a_at(i), b_at(i), acc.as_mut_ptr(), beta, (0, g.m), (0, g.n)) };
                }
                acc
            })
            .collect();
        add_partials(&mut c[g.c_offset..g.c_offset + mn], g.beta, &partials);
        return;
    }
    let cp = SendPtr(c.as_mut_ptr());
    let c_at = move |i: usize| cp.get().wrapping_add(g.c_offset + i * g.c_stride);
    if g.batch >= threads && threads > 1 {
        (0..g.batch).into_par_iter().for_each(|i| {
            // SAFETY: item i < batch lies inside a, b and c (the caller's checks), and no other
            // item's C overlaps it (c_stride >= m * n), so the tasks write disjoint cells.
            unsafe { sgemm_block(g, a_at(i), b_at(i), c_at(i), g.beta, (0, g.m), (0, g.n)) };
        });
    } else {
        for i in 0..g.batch {
            // SAFETY: item i < batch lies inside a, b and c (the caller's checks).
            unsafe { sgemm_parallel(g, a_at(i), b_at(i), c_at(i), g.beta) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gemm` against a plain f64 triple loop, with offsets, strides, alpha and beta, on shapes
    /// that take each way of splitting the work: one thread, rows, columns, depth, the batch,
    /// and a summed batch; under pools of 2 and 3 threads.
    #[test]
    fn every_split_matches_a_plain_product() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2001) as f32 / 1000.0 - 1.0
                })
                .collect()
        };
        let shapes = [
            (3, 5, 7, 1, false),      // below PARALLEL_FLOPS: one thread
            (300, 40, 200, 1, false), // rows
            (20, 900, 150, 1, false), // columns
            (37, 29, 5000, 1, false), // depth
            (64, 49, 2304, 1, false), // depth, the first block a multiple of 256
            (33, 65, 41, 5, false),   // batch
            (29, 17, 301, 4, true),   // summed batch
        ];
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
                for &(m, n, k, batch, sum) in &shapes {
                    let g = Gemm {
                        batch,
                        a_offset: 3,
                        a_stride: m * k + 5,
                        b_offset: 7,
                        b_stride: k * n + 1,
                        c_offset: 2,
                        c_stride: if sum { 0 } else { m * n + 3 },
                        alpha: 0.75,
                        beta: 0.5,
                        ..Gemm::new(ta, tb, m, n, k)
                    };
                    let (la, lb, lc) = g.required_lengths().unwrap();
                    let (a, b, c0) = (random(la), random(lb), random(lc));
                    let mut c = c0.clone();
                    crate::checks::gemm(&g, a.len(), b.len(), c.len()).unwrap();
                    // SAFETY: checks::gemm accepted the arguments just above.
                    pool.install(|| unsafe { gemm(&g, &a, &b, &mut c) });
                    let mut want: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
                    let at = |i: usize, r: usize, p: usize| {
                        a[g.a_offset + i * g.a_stride + if ta { p * m + r } else { r * k + p }] as f64
                    };
                    let bt = |i: usize, p: usize, j: usize| {
                        b[g.b_offset + i * g.b_stride + if tb { j * k + p } else { p * n + j }] as f64
                    };
                    for r in 0..m {
                        for j in 0..n {
                            let idx = g.c_offset + r * n + j;
                            let items: Vec<usize> = if sum { vec![0] } else { (0..batch).collect() };
                            for &item in &items {
                                let dot: f64 = (0..batch)
                                    .filter(|&i| sum || i == item)
                                    .map(|i| (0..k).map(|p| at(i, r, p) * bt(i, p, j)).sum::<f64>())
                                    .sum();
                                let o = idx + item * g.c_stride;
                                want[o] = 0.5 * c0[o] as f64 + 0.75 * dot;
                            }
                        }
                    }
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let tol = 1e-6 * (k * batch) as f64;
                        assert!((got as f64 - w).abs() <= tol, "{threads} threads, {ta} {tb} {m}x{n}x{k} batch {batch} sum {sum}: c[{i}] = {got}, want {w}");
                    }
                }
            }
        }
    }
}
