//! Matrix products on the CPU through `matrixmultiply`, parallelised one level at a time:
//! over the batch when it has enough items, otherwise over row or column blocks of one product.
use crate::Gemm;
use rayon::prelude::*;

/// Below this many flops a product runs on one thread: splitting costs more than it saves.
const PARALLEL_FLOPS: f64 = 4.0e6;

/// A raw pointer that may cross threads; each task writes a disjoint block.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
unsafe impl Send for SendPtr {}
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
/// `a`, `b`, `c` must point at the starts of op(A), op(B), C of sizes given by `g`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_block(g: &Gemm, a: *const f32, b: *const f32, c: *mut f32, beta: f32, rows: (usize, usize), cols: (usize, usize)) {
    let (rsa, csa) = strides(g.trans_a, g.k, g.m);
    let (rsb, csb) = strides(g.trans_b, g.n, g.k);
    let (r0, r1) = rows;
    let (c0, c1) = cols;
    if r1 <= r0 || c1 <= c0 {
        return;
    }
    let a = a.offset(r0 as isize * rsa);
    let b = b.offset(c0 as isize * csb);
    let c = c.add(r0 * g.n + c0);
    if g.k == 0 {
        // matrixmultiply would leave C untouched; the product is zero, so C = beta * C.
        for r in 0..r1 - r0 {
            for j in 0..c1 - c0 {
                let p = c.add(r * g.n + j);
                *p = if beta == 0.0 { 0.0 } else { beta * *p };
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        super::gemm_avx512::sgemm(r1 - r0, c1 - c0, g.k, g.alpha, a, rsa, csa, b, rsb, csb, beta, c, g.n as isize);
        return;
    }
    matrixmultiply::sgemm(r1 - r0, g.k, c1 - c0, g.alpha, a, rsa, csa, b, rsb, csb, beta, c, g.n as isize, 1);
}

/// Our AVX-512 kernel only when asked for with `CONVNET_GEMM=avx512` (and the CPU has it): it
/// matches `matrixmultiply` but does not yet beat it on these shapes (BENCHMARKS.md), so the
/// default stays `matrixmultiply` until it does.
#[cfg(target_arch = "x86_64")]
fn use_avx512() -> bool {
    static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| super::gemm_avx512::available() && std::env::var("CONVNET_GEMM").is_ok_and(|v| v == "avx512"))
}

/// One product, split across threads by rows (or columns when C is short and wide).
unsafe fn sgemm_parallel(g: &Gemm, a: *const f32, b: *const f32, c: *mut f32, beta: f32) {
    let threads = rayon::current_num_threads();
    let flops = 2.0 * (g.m * g.n * g.k) as f64;
    if threads == 1 || flops < PARALLEL_FLOPS {
        sgemm_block(g, a, b, c, beta, (0, g.m), (0, g.n));
        return;
    }
    let (ap, bp, cp) = (SendPtr(a as *mut f32), SendPtr(b as *mut f32), SendPtr(c));
    // Split the larger operand: each thread then packs only its share of it (the smaller one,
    // usually the weights, is packed by every thread).
    let split_rows = g.m >= g.n;
    let extent = if split_rows { g.m } else { g.n };
    // Blocks aligned to the micro-kernel's tile so packing is not wasted on ragged edges.
    let align = if split_rows { 8 } else { 16 };
    let block = extent.div_ceil(threads).div_ceil(align) * align;
    (0..extent.div_ceil(block)).into_par_iter().for_each(|i| {
        let range = (i * block, ((i + 1) * block).min(extent));
        if split_rows {
            sgemm_block(g, ap.get(), bp.get(), cp.get(), beta, range, (0, g.n));
        } else {
            sgemm_block(g, ap.get(), bp.get(), cp.get(), beta, (0, g.m), range);
        }
    });
}

/// The batched product described by `Gemm` (lengths already checked by the caller).
pub fn gemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let a_at = |i: usize| unsafe { a.as_ptr().add(g.a_offset + i * g.a_stride) };
    let b_at = |i: usize| unsafe { b.as_ptr().add(g.b_offset + i * g.b_stride) };
    if g.batch == 0 {
        return;
    }
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
                    unsafe { sgemm_block(g, a_at(i), b_at(i), acc.as_mut_ptr(), beta, (0, g.m), (0, g.n)) };
                }
                acc
            })
            .collect();
        let out = &mut c[g.c_offset..g.c_offset + mn];
        out.par_chunks_mut(4096).enumerate().for_each(|(ci, chunk)| {
            for (j, o) in chunk.iter_mut().enumerate() {
                let idx = ci * 4096 + j;
                let s: f32 = partials.iter().map(|p| p[idx]).sum();
                *o = if g.beta == 0.0 { s } else { g.beta * *o + s };
            }
        });
        return;
    }
    let cp = SendPtr(c.as_mut_ptr());
    let c_at = move |i: usize| unsafe { cp.get().add(g.c_offset + i * g.c_stride) };
    if g.batch >= threads && threads > 1 {
        (0..g.batch).into_par_iter().for_each(|i| unsafe {
            sgemm_block(g, a_at(i), b_at(i), c_at(i), g.beta, (0, g.m), (0, g.n));
        });
    } else {
        for i in 0..g.batch {
            unsafe { sgemm_parallel(g, a_at(i), b_at(i), c_at(i), g.beta) };
        }
    }
}
