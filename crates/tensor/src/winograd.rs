//! Winograd tile transforms: the argument checks, and the version composed from other `Backend`
//! kernels (im2col, col2im, transpose_blocks, GEMM) that a backend runs unless it has fused
//! kernels of its own (the CPU does: `cpu/winograd.rs`).
//!
//! Layout: `X = count * tiles` columns, tile `t` of image `first + i` at column `i * tiles + t`.
//! - `winograd_tiles`: images -> `V [a*a][C][X]`, `V = Bt D B` for each a x a input tile D
//!   (im2col's tiles: kernel a x a, stride m, the convolution's padding).
//! - `winograd_untile`: `M [a*a][O][X]` -> images, `Y = At M A` for each m x m output tile.
//! - their `_backward`s are the adjoints: `dD = B dV Bt` summed into dx, `dM = A dY At`.
use crate::{bail, checks, Backend, ConvGeometry, Gemm, Result};

/// Largest input tile: a = 6 keeps the transforms' points at 0, ±1, ±2 (and infinity), which stay
/// accurate in f32; larger tiles need points like ±1/2 and lose digits fast.
pub const MAX_INPUT_TILE: usize = 6;

/// Output tile sizes tried, best saving first (3x3: m = 4 saves 4x, m = 3 3.2x, m = 2 2.25x).
const OUTPUT_TILES: [usize; 3] = [4, 3, 2];

/// The output tile size m for a convolution, or `None` where Winograd does not apply: stride 1,
/// a square kernel of at least 2, both output sides multiples of m, and an input tile of at most
/// `MAX_INPUT_TILE`.
pub fn output_tile(geo: &ConvGeometry) -> Option<usize> {
    let (kh, kw) = geo.window.kernel;
    if geo.window.stride != (1, 1) || kh != kw || kh < 2 {
        return None;
    }
    OUTPUT_TILES
        .into_iter()
        .find(|&m| m + kh - 1 <= MAX_INPUT_TILE && geo.out_h.is_multiple_of(m) && geo.out_w.is_multiple_of(m))
}

/// `p (x) p` for a row-major `rows x cols` matrix `p`: the 2-D transform `P T Pt` of a row-major
/// `cols x cols` tile as one `rows^2 x cols^2` matrix acting on the flattened tile.
pub fn kronecker(p: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * rows * cols * cols];
    for i in 0..rows {
        for j in 0..rows {
            for k in 0..cols {
                for l in 0..cols {
                    out[(i * rows + j) * cols * cols + k * cols + l] = p[i * cols + k] * p[j * cols + l];
                }
            }
        }
    }
    out
}

/// Tile side a of an input-tile geometry, after checking `bt` is a x a and the buffers fit:
/// `images` holds the chunk's images, `tiles` the `[a*a][C][X]` values.
pub fn check_tiles(
    op: &str,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    bt: &[f32],
    images: usize,
    tiles: usize,
) -> Result<usize> {
    let (a, aw) = geo.window.kernel;
    // a * a fits: it is a factor of the column matrix, checked by ConvGeometry::new.
    if a != aw || geo.window.stride.0 != geo.window.stride.1 || bt.len() != a * a {
        bail!(
            InvalidArgument,
            "{op}: tiles must be square, their stride too, and the transform {a}x{a}; got kernel {:?}, \
             stride {:?} and {} values",
            geo.window.kernel,
            geo.window.stride,
            bt.len()
        );
    }
    checks::unfold(op, geo, first, count, images, tiles)?;
    Ok(a)
}

/// Tile sides (m, a) of an output-tile geometry (kernel m x m, stride m, no padding, sides
/// divisible by m), after checking `at` is m x a and the buffers fit: `images` the chunk's
/// images, `points` the `[a*a][O][X]` values.
pub fn check_untile(
    op: &str,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    at: &[f32],
    images: usize,
    points: usize,
) -> Result<(usize, usize)> {
    checks::conv_geometry(op, geo)?;
    let m = geo.window.kernel.0;
    if geo.window.kernel != (m, m)
        || geo.window.stride != (m, m)
        || geo.window.padding != (0, 0)
        || !geo.h.is_multiple_of(m)
        || !geo.w.is_multiple_of(m)
    {
        bail!(
            InvalidArgument,
            "{op}: output tiles must tile the {}x{} planes exactly; got window {:?}",
            geo.h,
            geo.w,
            geo.window
        );
    }
    if at.is_empty() || !at.len().is_multiple_of(m) {
        bail!(InvalidArgument, "{op}: the output transform must have {m} rows; got {} values", at.len());
    }
    let a = at.len() / m;
    let image = geo.c_in * geo.h * geo.w; // fits: checked by ConvGeometry::new
    checks::need(op, "images", images, checks::extent(op, "images", &[&[first, image], &[count, image]])?)?;
    let need_points = checks::extent(op, "points", &[&[a, a, geo.c_in, count, geo.col_cols()]])?;
    checks::need(op, "points", points, need_points)?;
    Ok((m, a))
}

/// `winograd_tiles` from im2col, a transpose and one GEMM.
pub fn composed_tiles<B: Backend>(
    b: &B,
    x: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    bt: &[f32],
    v: &mut B::Storage,
) -> Result<()> {
    let a = check_tiles("winograd_tiles", geo, first, count, bt, b.storage_len(x), b.storage_len(v))?;
    let (pts, c, cols) = (a * a, geo.c_in, count * geo.col_cols());
    let mut d = b.uninit(pts * c * cols)?;
    b.im2col(x, geo, first, count, v)?;
    b.transpose_blocks(v, 0, c, pts, cols, &mut d, 0)?;
    b.gemm(&Gemm::new(false, false, pts, c * cols, pts), &b.from_slice(&kronecker(bt, a, a))?, &d, v)
}

/// `winograd_tiles_backward` from a GEMM, a transpose and col2im.
pub fn composed_tiles_backward<B: Backend>(
    b: &B,
    dv: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    bt: &[f32],
    dx: &mut B::Storage,
) -> Result<()> {
    let a =
        check_tiles("winograd_tiles_backward", geo, first, count, bt, b.storage_len(dx), b.storage_len(dv))?;
    let (pts, c, cols) = (a * a, geo.c_in, count * geo.col_cols());
    let (mut dd, mut cols_buf) = (b.uninit(pts * c * cols)?, b.uninit(pts * c * cols)?);
    b.gemm(&Gemm::new(true, false, pts, c * cols, pts), &b.from_slice(&kronecker(bt, a, a))?, dv, &mut dd)?;
    b.transpose_blocks(&dd, 0, pts, c, cols, &mut cols_buf, 0)?;
    b.col2im(&cols_buf, geo, first, count, dx)
}

/// `winograd_untile` from one GEMM, a transpose and col2im.
pub fn composed_untile<B: Backend>(
    b: &B,
    points: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    at: &[f32],
    y: &mut B::Storage,
) -> Result<()> {
    let (m, a) =
        check_untile("winograd_untile", geo, first, count, at, b.storage_len(y), b.storage_len(points))?;
    let (o, cols) = (geo.c_in, count * geo.col_cols());
    let (mut yt, mut ys) = (b.uninit(m * m * o * cols)?, b.uninit(m * m * o * cols)?);
    b.gemm(
        &Gemm::new(false, false, m * m, o * cols, a * a),
        &b.from_slice(&kronecker(at, m, a))?,
        points,
        &mut yt,
    )?;
    b.transpose_blocks(&yt, 0, m * m, o, cols, &mut ys, 0)?;
    b.col2im(&ys, geo, first, count, y)
}

/// `winograd_untile_backward` from im2col, a transpose and one GEMM.
pub fn composed_untile_backward<B: Backend>(
    b: &B,
    dy: &B::Storage,
    geo: &ConvGeometry,
    first: usize,
    count: usize,
    at: &[f32],
    dm: &mut B::Storage,
) -> Result<()> {
    let (m, a) = check_untile(
        "winograd_untile_backward",
        geo,
        first,
        count,
        at,
        b.storage_len(dy),
        b.storage_len(dm),
    )?;
    let (o, cols) = (geo.c_in, count * geo.col_cols());
    let (mut tiles, mut tt) = (b.uninit(m * m * o * cols)?, b.uninit(m * m * o * cols)?);
    b.im2col(dy, geo, first, count, &mut tiles)?;
    b.transpose_blocks(&tiles, 0, o, m * m, cols, &mut tt, 0)?;
    b.gemm(&Gemm::new(true, false, a * a, o * cols, m * m), &b.from_slice(&kronecker(at, m, a))?, &tt, dm)
}
