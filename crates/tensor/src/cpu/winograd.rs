//! Fused Winograd tile transforms (layouts in `crate::winograd`): each reads the images or the
//! points' domain once and writes the other once, where the composed version makes an im2col
//! copy, a transpose and a dense (a*a)^2 GEMM. The 2-D transform is applied separably
//! (`T D Tt` as two a x a products), 16 tiles at a time in the lanes of AVX-512 registers (plain
//! loops on other CPUs). One rayon task per channel: its tiles' values and planes are its own.
// Index loops over tile cells and lanes read more plainly than zipped iterators here.
#![allow(clippy::needless_range_loop)]
use super::gemm::SendPtr;
use super::isa::Isa;
use crate::ConvGeometry;
use rayon::prelude::*;

/// Tiles transformed together, one per vector lane (16 f32 in an AVX-512 register).
const LANES: usize = 16;
/// Largest tile side the fixed-size buffers hold.
pub(crate) const MAX_TILE: usize = 8;

type Block = [[[f32; LANES]; MAX_TILE]; MAX_TILE];

/// Where column `x` of a chunk lives: its image within the chunk, and its tile's row and
/// column in tile units.
#[inline(always)]
fn tile_at(x: usize, tiles: usize, tiles_w: usize) -> (usize, usize, usize) {
    let (img, t) = (x / tiles, x % tiles);
    (img, t / tiles_w, t % tiles_w)
}

/// `out[k][q] = sum_i sum_j l[k][i] in[i][j] r[q][j]` for every lane, with `l` (rows x n) and
/// `r` (cols x n) row-major: `L In Rt` on `n x n` blocks, 16 tiles at once in AVX-512
/// registers. Sizes known at compile time (`sandwich_avx512` picks them) unroll every loop.
///
/// # Safety
/// The CPU must support AVX-512F (memory is only touched through the references).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sandwich_fixed<const ROWS: usize, const COLS: usize, const N: usize>(
    l: &[f32],
    r: &[f32],
    input: &Block,
    out: &mut Block,
) {
    use std::arch::x86_64::*;
    let (l, r) = (&l[..ROWS * N], &r[..COLS * N]);
    for k in 0..ROWS {
        let mut half = [_mm512_setzero_ps(); N];
        for i in 0..N {
            let w = _mm512_set1_ps(l[k * N + i]);
            for (j, h) in half.iter_mut().enumerate() {
                *h = _mm512_fmadd_ps(w, _mm512_loadu_ps(input[i][j].as_ptr()), *h);
            }
        }
        for q in 0..COLS {
            let mut acc = _mm512_setzero_ps();
            for (j, h) in half.iter().enumerate() {
                acc = _mm512_fmadd_ps(_mm512_set1_ps(r[q * N + j]), *h, acc);
            }
            _mm512_storeu_ps(out[k][q].as_mut_ptr(), acc);
        }
    }
}

/// `sandwich_fixed` with the sizes Winograd's F(2..4, 2..5) tiles use; other sizes up to
/// `MAX_TILE` go through the general loops.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sandwich_avx512(
    l: &[f32],
    rows: usize,
    r: &[f32],
    cols: usize,
    n: usize,
    input: &Block,
    out: &mut Block,
) {
    macro_rules! fixed {
        ($(($r:literal, $c:literal, $n:literal)),*) => {
            match (rows, cols, n) {
                $(($r, $c, $n) => sandwich_fixed::<$r, $c, $n>(l, r, input, out),)*
                _ => sandwich_any(l, rows, r, cols, n, input, out),
            }
        };
    }
    fixed!(
        // input tiles (a, a, a)
        (3, 3, 3),
        (4, 4, 4),
        (5, 5, 5),
        (6, 6, 6),
        // output tiles (m, m, a) and their adjoint (a, a, m)
        (2, 2, 3),
        (2, 2, 4),
        (2, 2, 5),
        (2, 2, 6),
        (3, 3, 4),
        (3, 3, 5),
        (3, 3, 6),
        (4, 4, 5),
        (4, 4, 6),
        (3, 3, 2),
        (4, 4, 2),
        (5, 5, 2),
        (6, 6, 2),
        (4, 4, 3),
        (5, 5, 3),
        (6, 6, 3),
        (5, 5, 4),
        (6, 6, 4)
    )
}

/// The same product with plain loops, for any sizes up to `MAX_TILE` (and CPUs without
/// AVX-512).
#[inline(always)]
fn sandwich_any(l: &[f32], rows: usize, r: &[f32], cols: usize, n: usize, input: &Block, out: &mut Block) {
    for k in 0..rows {
        let mut half = [[0.0f32; LANES]; MAX_TILE];
        for i in 0..n {
            let w = l[k * n + i];
            for j in 0..n {
                for lane in 0..LANES {
                    half[j][lane] += w * input[i][j][lane];
                }
            }
        }
        for q in 0..cols {
            let mut acc = [0.0f32; LANES];
            for j in 0..n {
                let w = r[q * n + j];
                for lane in 0..LANES {
                    acc[lane] += w * half[j][lane];
                }
            }
            out[k][q] = acc;
        }
    }
}

/// `L In Rt` on 16 tiles: AVX-512 registers when the CPU has them, plain loops otherwise.
#[inline(always)]
fn sandwich(l: &[f32], rows: usize, r: &[f32], cols: usize, n: usize, input: &Block, out: &mut Block) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: wide() means the AVX-512 path, which isa() takes only where the CPU has it.
        return unsafe { sandwich_avx512(l, rows, r, cols, n, input, out) };
    }
    sandwich_any(l, rows, r, cols, n, input, out)
}

/// Stores `lanes` values of a lane vector (a fixed 16-value copy when the block is full:
/// a variable-length one becomes a call to memmove).
///
/// # Safety
/// `dst` must point at `lanes <= LANES` writable values that nothing else accesses meanwhile.
#[inline(always)]
unsafe fn store_lanes(dst: *mut f32, src: &[f32; LANES], lanes: usize) {
    if lanes == LANES {
        // SAFETY: dst holds LANES values (the caller's contract); [f32; N] has f32's alignment.
        unsafe { *(dst as *mut [f32; LANES]) = *src };
    } else {
        // SAFETY: dst holds `lanes` values (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(dst, lanes) }.copy_from_slice(&src[..lanes]);
    }
}

/// Loads `lanes` values into a lane vector (see `store_lanes`).
#[inline(always)]
fn load_lanes(dst: &mut [f32; LANES], src: &[f32], lanes: usize) {
    match <&[f32; LANES]>::try_from(&src[..lanes]) {
        Ok(full) => *dst = *full,
        Err(_) => dst[..lanes].copy_from_slice(&src[..lanes]),
    }
}

/// Writes a block of a x a lane vectors to the points' layout `[a*a][channels][cols]` at
/// channel `c`, columns `xb..xb + lanes`.
///
/// # Safety
/// `out` must point at `a * a * channels * cols` writable values, `c < channels`,
/// `xb + lanes <= cols`, and no other thread may touch channel `c`'s values meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store_points(
    out: SendPtr,
    block: &Block,
    a: usize,
    channels: usize,
    c: usize,
    cols: usize,
    xb: usize,
    lanes: usize,
) {
    for k in 0..a {
        for q in 0..a {
            // SAFETY: point (k, q) of channel c, columns xb..xb + lanes, lies inside `out`
            // (the caller's contract) and belongs to this caller alone.
            unsafe {
                store_lanes(out.get().add(((k * a + q) * channels + c) * cols + xb), &block[k][q], lanes)
            };
        }
    }
}

/// Reads a block of a x a lane vectors from the points' layout (see `store_points`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn load_points(
    block: &mut Block,
    points: &[f32],
    a: usize,
    channels: usize,
    c: usize,
    cols: usize,
    xb: usize,
    lanes: usize,
) {
    for k in 0..a {
        for q in 0..a {
            load_lanes(&mut block[k][q], &points[((k * a + q) * channels + c) * cols + xb..], lanes);
        }
    }
}

/// The transpose of a row-major `rows x cols` matrix.
fn transposed(p: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows).map(|i| p[(i % rows) * cols + i / rows]).collect()
}

/// Whether the lane loops may use AVX-512 (16-wide vectors): on the AVX-512 path of `isa()`.
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    super::isa() == Isa::Avx512
}

/// Declares `$name` (the kernel's per-channel work, compiled for the baseline), `$wide` and
/// `$avx2` (the same code compiled with AVX-512, and with AVX2 and FMA: the lane loops become
/// 16- or 8-wide vector code), and `$pick` which calls the one for the given path.
///
/// Each body writes channel `c` (or `o`) of its output through `out`. Safety, for all four: the
/// Backend method's checks accepted the geometry and the buffers (`out` is the output buffer's
/// start), `c < geo.c_in`, and no other thread works on the same channel; `$wide` and `$avx2`
/// also need their instruction sets, and `$pick` a path this CPU has (`isa()`).
macro_rules! per_channel {
    ($pick:ident, $wide:ident, $avx2:ident, $name:ident, ($($arg:ident: $ty:ty),*) $body:block) => {
        /// # Safety
        /// See `per_channel!`.
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name($($arg: $ty),*) $body
        /// # Safety
        /// See `per_channel!`; the CPU must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $wide($($arg: $ty),*) {
            // SAFETY: the same contract as this function's.
            unsafe { $name($($arg),*) }
        }
        /// # Safety
        /// See `per_channel!`; the CPU must support AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx2($($arg: $ty),*) {
            // SAFETY: the same contract as this function's.
            unsafe { $name($($arg),*) }
        }
        /// # Safety
        /// See `per_channel!`; `path` must be one this CPU has.
        #[allow(clippy::too_many_arguments)]
        unsafe fn $pick(path: Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            match path {
                // SAFETY: the caller's contract, and `path` says the CPU has the instructions.
                Isa::Avx512 => return unsafe { $wide($($arg),*) },
                // SAFETY: as above.
                Isa::Avx2 => return unsafe { $avx2($($arg),*) },
                Isa::Portable => {}
            }
            let _ = path;
            // SAFETY: the caller's contract.
            unsafe { $name($($arg),*) }
        }
    };
}

per_channel!(tiles_pick, tiles_wide, tiles_avx2, tiles_channel, (c: usize, x: &[f32], geo: &ConvGeometry, first: usize, count: usize, bt: &[f32], out: SendPtr) {
    let a = geo.window.kernel.0;
    let (m, (ph, pw)) = (geo.window.stride.0, geo.window.padding);
    let (tiles, tiles_w, plane, channels) = (geo.col_cols(), geo.out_w, geo.h * geo.w, geo.c_in);
    let cols = count * tiles;
    let mut d: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    let mut t: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    for xb in (0..cols).step_by(LANES) {
        let lanes = LANES.min(cols - xb);
        for lane in 0..lanes {
            let (img, ty, tx) = tile_at(xb + lane, tiles, tiles_w);
            let src = &x[((first + img) * channels + c) * plane..][..plane];
            let (y0, x0) = ((ty * m) as isize - ph as isize, (tx * m) as isize - pw as isize);
            if y0 >= 0 && x0 >= 0 && y0 as usize + a <= geo.h && x0 as usize + a <= geo.w {
                // Inside the plane: no bounds to test per cell.
                let (y0, x0) = (y0 as usize, x0 as usize);
                for i in 0..a {
                    let row = &src[(y0 + i) * geo.w + x0..][..a];
                    for j in 0..a {
                        d[i][j][lane] = row[j];
                    }
                }
            } else {
                for i in 0..a {
                    let iy = (y0 + i as isize) as usize;
                    for j in 0..a {
                        let ix = (x0 + j as isize) as usize;
                        d[i][j][lane] = if iy < geo.h && ix < geo.w { src[iy * geo.w + ix] } else { 0.0 };
                    }
                }
            }
        }
        sandwich(bt, a, bt, a, a, &d, &mut t);
        // SAFETY: out holds the [a*a][channels][cols] points (the checks); channel c is ours.
        unsafe { store_points(out, &t, a, channels, c, cols, xb, lanes) };
    }
});

per_channel!(tiles_backward_pick, tiles_backward_wide, tiles_backward_avx2, tiles_backward_channel, (c: usize, dv: &[f32], geo: &ConvGeometry, first: usize, count: usize, btt: &[f32], out: SendPtr) {
    let a = geo.window.kernel.0;
    let (m, (ph, pw)) = (geo.window.stride.0, geo.window.padding);
    let (tiles, tiles_w, plane, channels) = (geo.col_cols(), geo.out_w, geo.h * geo.w, geo.c_in);
    let cols = count * tiles;
    for img in 0..count {
        // SAFETY: images first..first + count lie inside dx (the checks); plane (img, c) is ours.
        unsafe { std::slice::from_raw_parts_mut(out.get().add(((first + img) * channels + c) * plane), plane) }.fill(0.0);
    }
    let mut g: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    let mut d: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    for xb in (0..cols).step_by(LANES) {
        let lanes = LANES.min(cols - xb);
        load_points(&mut g, dv, a, channels, c, cols, xb, lanes);
        sandwich(btt, a, btt, a, a, &g, &mut d);
        for lane in 0..lanes {
            let (img, ty, tx) = tile_at(xb + lane, tiles, tiles_w);
            // SAFETY: images first..first + count lie inside dx (the checks); plane (img, c) is ours.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(((first + img) * channels + c) * plane), plane) };
            for i in 0..a {
                let iy = (ty * m + i).wrapping_sub(ph);
                for j in 0..a {
                    let ix = (tx * m + j).wrapping_sub(pw);
                    if iy < geo.h && ix < geo.w {
                        dst[iy * geo.w + ix] += d[i][j][lane];
                    }
                }
            }
        }
    }
});

per_channel!(untile_pick, untile_wide, untile_avx2, untile_channel, (o: usize, points: &[f32], geo: &ConvGeometry, first: usize, count: usize, at: &[f32], out: SendPtr) {
    let m = geo.window.kernel.0;
    let a = at.len() / m;
    let (tiles, tiles_w, plane, channels) = (geo.col_cols(), geo.out_w, geo.h * geo.w, geo.c_in);
    let cols = count * tiles;
    let mut g: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    let mut t: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    for xb in (0..cols).step_by(LANES) {
        let lanes = LANES.min(cols - xb);
        load_points(&mut g, points, a, channels, o, cols, xb, lanes);
        sandwich(at, m, at, m, a, &g, &mut t);
        for lane in 0..lanes {
            let (img, ty, tx) = tile_at(xb + lane, tiles, tiles_w);
            // SAFETY: images first..first + count lie inside y (the checks); plane (img, o) is ours.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(((first + img) * channels + o) * plane), plane) };
            for i in 0..m {
                let row = &mut dst[(ty * m + i) * geo.w + tx * m..][..m];
                for j in 0..m {
                    row[j] = t[i][j][lane];
                }
            }
        }
    }
});

per_channel!(untile_backward_pick, untile_backward_wide, untile_backward_avx2, untile_backward_channel, (o: usize, dy: &[f32], geo: &ConvGeometry, first: usize, count: usize, att: &[f32], out: SendPtr) {
    let m = geo.window.kernel.0;
    let a = att.len() / m;
    let (tiles, tiles_w, plane, channels) = (geo.col_cols(), geo.out_w, geo.h * geo.w, geo.c_in);
    let cols = count * tiles;
    let mut g: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    let mut t: Block = [[[0.0; LANES]; MAX_TILE]; MAX_TILE];
    for xb in (0..cols).step_by(LANES) {
        let lanes = LANES.min(cols - xb);
        for lane in 0..lanes {
            let (img, ty, tx) = tile_at(xb + lane, tiles, tiles_w);
            let src = &dy[((first + img) * channels + o) * plane..][..plane];
            for i in 0..m {
                let row = &src[(ty * m + i) * geo.w + tx * m..][..m];
                for j in 0..m {
                    g[i][j][lane] = row[j];
                }
            }
        }
        sandwich(att, a, att, a, m, &g, &mut t);
        // SAFETY: out holds the [a*a][channels][cols] points (the checks); channel o is ours.
        unsafe { store_points(out, &t, a, channels, o, cols, xb, lanes) };
    }
});

/// `Backend::winograd_tiles`: `v[k*a+q][c][x] = (bt D bt^T)[k][q]` for tile x of channel c.
///
/// # Safety
/// `check_tiles` must have accepted these arguments with `x.len()` and `v.len()`, and the tile
/// side must be at most `MAX_TILE` (the kernel writes `v` through a raw pointer).
pub(crate) unsafe fn tiles(
    x: &[f32],
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    bt: &[f32],
    v: &mut [f32],
) {
    let (out, path) = (SendPtr(v.as_mut_ptr()), super::isa());
    // SAFETY: the caller's checks; each task writes its own channel c < c_in; isa() is a path
    // this CPU has.
    (0..geo.c_in).into_par_iter().for_each(|c| unsafe { tiles_pick(path, c, x, geo, first, count, bt, out) });
}

/// `Backend::winograd_tiles_backward`: `bt^T dV bt` of each tile summed into the dx planes.
///
/// # Safety
/// As `tiles`, with `dx.len()` as the images and `dv.len()` as the points.
pub(crate) unsafe fn tiles_backward(
    dv: &[f32],
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    bt: &[f32],
    dx: &mut [f32],
) {
    let a = geo.window.kernel.0;
    let (btt, out, path) = (transposed(bt, a, a), SendPtr(dx.as_mut_ptr()), super::isa());
    // SAFETY: the caller's checks; each task writes its own channel's planes.
    (0..geo.c_in)
        .into_par_iter()
        .for_each(|c| unsafe { tiles_backward_pick(path, c, dv, geo, first, count, &btt, out) });
}

/// `Backend::winograd_untile`: `at M at^T` of each point-domain tile written to its m x m tile.
///
/// # Safety
/// `check_untile` must have accepted these arguments with `y.len()` and `points.len()`, and both
/// tile sides must be at most `MAX_TILE`.
pub(crate) unsafe fn untile(
    points: &[f32],
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    at: &[f32],
    y: &mut [f32],
) {
    let (out, path) = (SendPtr(y.as_mut_ptr()), super::isa());
    // SAFETY: the caller's checks; each task writes its own channel's planes.
    (0..geo.c_in)
        .into_par_iter()
        .for_each(|o| unsafe { untile_pick(path, o, points, geo, first, count, at, out) });
}

/// `Backend::winograd_untile_backward`: `dM = at^T dY at` for each m x m tile of dy.
///
/// # Safety
/// As `untile`, with `dy.len()` as the images and `dm.len()` as the points.
pub(crate) unsafe fn untile_backward(
    dy: &[f32],
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    at: &[f32],
    dm: &mut [f32],
) {
    let m = geo.window.kernel.0;
    let (att, out, path) = (transposed(at, m, at.len() / m), SendPtr(dm.as_mut_ptr()), super::isa());
    // SAFETY: the caller's checks; each task writes its own channel's points.
    (0..geo.c_in)
        .into_par_iter()
        .for_each(|o| unsafe { untile_backward_pick(path, o, dy, geo, first, count, &att, out) });
}

#[cfg(test)]
mod tests {
    use crate::winograd::{
        composed_tiles, composed_tiles_backward, composed_untile, composed_untile_backward,
    };
    use crate::{Backend, ConvGeometry, Cpu, Window};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    fn assert_near(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what}[{i}]: fused {g} vs composed {w}");
        }
    }

    /// All four fused kernels against their composed versions (im2col/col2im/transpose/GEMM),
    /// on chunks that start past image 0, rectangular planes with padding, tile sides 3 to 6,
    /// random (dense) transforms, and column counts that are not a multiple of the lanes.
    #[test]
    fn fused_matches_composed() {
        let mut rng = StdRng::seed_from_u64(3);
        // (images, channels, h, w, m, a, padding): the output is (h + 2p - a) / m + 1 tiles a side
        for &(n, c, h, w, m, a, p) in
            &[(3, 5, 8, 12, 4, 6, 1), (4, 3, 6, 9, 3, 5, 1), (3, 2, 7, 5, 2, 6, 2), (2, 4, 5, 5, 2, 3, 0)]
        {
            let tiles = ConvGeometry::new(n, c, h, w, 1, Window::new((a, a), (m, m), (p, p))).unwrap();
            let (first, count) = (1, n - 1);
            let cols = count * tiles.col_cols();
            let bt = random(&mut rng, a * a);
            let x = Cpu.from_slice(&random(&mut rng, n * c * h * w)).unwrap();
            let (mut fused, mut composed) =
                (Cpu.zeros(a * a * c * cols).unwrap(), Cpu.zeros(a * a * c * cols).unwrap());
            Cpu.winograd_tiles(&x, &tiles, first, count, &bt, &mut fused).unwrap();
            composed_tiles(&Cpu, &x, &tiles, first, count, &bt, &mut composed).unwrap();
            assert_near("tiles", &fused, &composed);

            let dv = Cpu.from_slice(&random(&mut rng, a * a * c * cols)).unwrap();
            let seed = random(&mut rng, n * c * h * w);
            let (mut fused, mut composed) = (Cpu.from_slice(&seed).unwrap(), Cpu.from_slice(&seed).unwrap());
            Cpu.winograd_tiles_backward(&dv, &tiles, first, count, &bt, &mut fused).unwrap();
            composed_tiles_backward(&Cpu, &dv, &tiles, first, count, &bt, &mut composed).unwrap();
            assert_near("tiles_backward", &fused, &composed);
            assert_eq!(&fused[..c * h * w], &seed[..c * h * w], "image 0 is outside the chunk");

            // Output tiles: o channels of (tiles_h * m) x (tiles_w * m).
            let o = c + 1;
            let out = ConvGeometry::new(n, o, tiles.out_h * m, tiles.out_w * m, 1, Window::square(m, m, 0))
                .unwrap();
            let at = random(&mut rng, m * a);
            let points = Cpu.from_slice(&random(&mut rng, a * a * o * cols)).unwrap();
            let seed = random(&mut rng, n * o * out.h * out.w);
            let (mut fused, mut composed) = (Cpu.from_slice(&seed).unwrap(), Cpu.from_slice(&seed).unwrap());
            Cpu.winograd_untile(&points, &out, first, count, &at, &mut fused).unwrap();
            composed_untile(&Cpu, &points, &out, first, count, &at, &mut composed).unwrap();
            assert_near("untile", &fused, &composed);

            let dy = Cpu.from_slice(&random(&mut rng, n * o * out.h * out.w)).unwrap();
            let (mut fused, mut composed) =
                (Cpu.zeros(a * a * o * cols).unwrap(), Cpu.zeros(a * a * o * cols).unwrap());
            Cpu.winograd_untile_backward(&dy, &out, first, count, &at, &mut fused).unwrap();
            composed_untile_backward(&Cpu, &dy, &out, first, count, &at, &mut composed).unwrap();
            assert_near("untile_backward", &fused, &composed);
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let tiles = ConvGeometry::new(1, 2, 6, 6, 1, Window::new((4, 4), (2, 2), (1, 1))).unwrap();
        let x = Cpu.zeros(72).unwrap();
        let mut v = Cpu.zeros(16 * 2 * 9).unwrap();
        let e = Cpu.winograd_tiles(&x, &tiles, 0, 1, &[0.0; 9], &mut v).unwrap_err().to_string();
        assert!(e.contains("4x4") && e.contains("9 values"), "{e}");
        let mut short = Cpu.zeros(10).unwrap();
        let e = Cpu.winograd_tiles(&x, &tiles, 0, 1, &[0.0; 16], &mut short).unwrap_err().to_string();
        assert!(e.contains("winograd_tiles") && e.contains("10 values"), "{e}");
        let out = ConvGeometry::new(1, 2, 6, 6, 1, Window::square(4, 4, 0)).unwrap();
        let mut y = Cpu.zeros(72).unwrap();
        let e = Cpu.winograd_untile(&v, &out, 0, 1, &[0.0; 24], &mut y).unwrap_err().to_string();
        assert!(e.contains("6x6"), "{e}");
    }
}
