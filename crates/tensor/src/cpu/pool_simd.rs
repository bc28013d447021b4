//! What the SIMD max-pooling kernels (`pool_avx512.rs`, `pool_avx2.rs`) share: the tap tables
//! of the gathering path, and the split of a tensor into rayon tasks around each ISA's two
//! kernels (rows of 3-wide stride-2 windows, and groups of outputs by tap tables).
use super::gemm::SendPtr;
use crate::PoolGeometry;
use rayon::prelude::*;

/// Each output's window cells for a group of planes.
pub(crate) struct Taps {
    /// Planes per group: their outputs are a multiple of 16 (whole vectors of 16 or 8 lanes).
    pub planes: usize,
    /// Outputs per group.
    pub outputs: usize,
    /// `cell[t * outputs + q]`: tap `t` of output `q`'s window, as an index into its plane, or -1.
    pub cell: Vec<i32>,
    /// Where output `q`'s plane starts in the group's input.
    pub plane_start: Vec<i32>,
    /// For stride-1 windows that keep the plane's size, tap `t` of output `q` is input `q +
    /// shift[t]` (when inside): a masked load of neighbours replaces the gather.
    pub shift: Option<Vec<isize>>,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The tap tables of a geometry. Indices are i32 (what the gathers take): a plane holds at most
/// `MAX_POOL_PLANE` = 2^24 values and a group at most 16 planes, so every index is below 2^28.
pub(crate) fn taps(g: &PoolGeometry) -> Taps {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let planes = 16 / gcd(out_plane, 16);
    let outputs = planes * out_plane;
    let (kh, kw) = g.window.kernel;
    let ((sh, sw), (ph, pw)) = (g.window.stride, g.window.padding);
    let mut cell = vec![-1i32; kh * kw * outputs];
    let mut plane_start = Vec::with_capacity(outputs);
    for q in 0..outputs {
        let (p, r) = (q / out_plane, q % out_plane);
        let (oy, ox) = (r / g.out_w, r % g.out_w);
        plane_start.push((p * plane) as i32);
        for ki in 0..kh {
            for kj in 0..kw {
                let (iy, ix) = ((oy * sh + ki) as isize - ph as isize, (ox * sw + kj) as isize - pw as isize);
                if (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix) {
                    cell[(ki * kw + kj) * outputs + q] = (iy as usize * g.w + ix as usize) as i32;
                }
            }
        }
    }
    let same = g.window.stride == (1, 1) && (g.out_h, g.out_w) == (g.h, g.w);
    let shift = same.then(|| {
        let taps = (0..kh).flat_map(|ki| (0..kw).map(move |kj| (ki, kj)));
        taps.map(|(ki, kj)| (ki as isize - ph as isize) * g.w as isize + kj as isize - pw as isize).collect()
    });
    Taps { planes, outputs, cell, plane_start, shift }
}

/// `Kernels::halving`'s kernel.
pub(crate) type HalvingPlane = unsafe fn(&PoolGeometry, *const f32, *mut f32, *mut f32);

/// One ISA's max-pooling kernels, driven by [`forward`].
pub(crate) struct Kernels {
    /// Where the ISA has one: the narrowest output rows it serves, and a kernel for one plane of
    /// a 3-wide, stride-2 window along rows (padding 0 or 1): `src` a readable `h x w` plane,
    /// `y` and `argmax` `out_h * out_w` writable values each.
    pub halving: Option<(usize, HalvingPlane)>,
    /// The first `count` outputs of one group of `Taps`: `src` the group's readable planes,
    /// `y` and `argmax` `count <= outputs` writable values each.
    pub group_max: unsafe fn(&Taps, *const f32, usize, *mut f32, *mut f32),
}

/// Same contract as `pool::max_pool2d_forward` (each window's first maximum in row-major order,
/// and its index in the plane), with `kernels` doing the work: whole planes per task through
/// the halving kernel where the ISA has one and it applies, else whole groups per task through
/// `group_max`, about 4096 outputs a task.
///
/// # Safety
/// The CPU must support the ISA `kernels` are built for, and `checks::pool` must have accepted
/// `g` (a geometry as `PoolGeometry::new` makes it, so planes are within `MAX_POOL_PLANE`) with
/// `x.len()` as the input and `y.len()`, `argmax.len()` as outputs.
pub(crate) unsafe fn forward(
    x: &[f32],
    g: &PoolGeometry,
    y: &mut [f32],
    argmax: &mut [f32],
    kernels: &Kernels,
) {
    let (plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let halving = kernels.halving.filter(|&(min_out_w, _)| {
        g.window.kernel.1 == 3 && g.window.stride.1 == 2 && g.window.padding.1 <= 1 && g.out_w >= min_out_w
    });
    if let Some((_, halving_plane)) = halving {
        let per_task = (4096 / out_plane).max(1);
        let (yp, ap) = (SendPtr(y.as_mut_ptr()), SendPtr(argmax.as_mut_ptr()));
        x[..g.planes() * plane].par_chunks(per_task * plane).enumerate().for_each(|(i, src)| {
            for (k, one) in src.chunks(plane).enumerate() {
                let at = (i * per_task + k) * out_plane;
                // SAFETY: `one` is a whole input plane, and plane i * per_task + k's outputs
                // lie inside y and argmax (checked lengths), written by this task only; the
                // caller guarantees the ISA.
                unsafe { halving_plane(g, one.as_ptr(), yp.get().add(at), ap.get().add(at)) };
            }
        });
        return;
    }
    let n = g.planes() * out_plane;
    let t = taps(g);
    let groups = (4096 / t.outputs).max(1);
    let (out_chunk, in_chunk) = (groups * t.outputs, groups * t.planes * plane);
    let yp = SendPtr(y.as_mut_ptr());
    let ap = SendPtr(argmax.as_mut_ptr());
    x[..g.planes() * plane].par_chunks(in_chunk).enumerate().for_each(|(i, src)| {
        let first = i * out_chunk;
        let len = out_chunk.min(n - first);
        for (k, group) in src.chunks(t.planes * plane).enumerate() {
            let q0 = k * t.outputs;
            if q0 >= len {
                break;
            }
            let count = t.outputs.min(len - q0);
            // SAFETY: `group` holds the planes of these `count` outputs, which lie inside y and
            // argmax (checked lengths) and are written by this task only; the caller guarantees
            // the ISA.
            unsafe {
                (kernels.group_max)(
                    &t,
                    group.as_ptr(),
                    count,
                    yp.get().add(first + q0),
                    ap.get().add(first + q0),
                )
            };
        }
    });
}

/// The SIMD kernels' test: `forward` against the scalar kernels on inputs full of ties (four
/// levels, all at or below zero, so that a padded cell read as 0 would win), with planes that
/// do and do not fill whole vectors, a last group cut short, and the halving path's rows of 8
/// to 54 outputs, padded or not, odd and even widths. One spare value past the end must stay
/// untouched.
#[cfg(test)]
pub(crate) fn check_against_scalar(forward: unsafe fn(&[f32], &PoolGeometry, &mut [f32], &mut [f32])) {
    use crate::Window;
    let mut level = super::pool::tie_levels(0x2545_f491_4f6c_dd1d);
    for &(n, c, h, w, win) in &[
        (2, 3, 7, 9, Window::square(3, 2, 1)),
        (1, 5, 6, 6, Window::square(3, 1, 1)),
        (3, 7, 3, 3, Window::square(3, 1, 1)),
        (1, 7, 3, 3, Window::square(3, 1, 1)),
        (2, 3, 12, 12, Window::square(3, 2, 1)),
        (1, 2, 8, 6, Window::new((2, 3), (1, 2), (1, 1))),
        (1, 1, 5, 13, Window::new((3, 1), (2, 1), (1, 0))),
        (2, 9, 13, 11, Window::square(3, 2, 0)),
        (1, 3, 1, 1, Window::square(1, 1, 0)),
        (1, 600, 6, 6, Window::square(3, 1, 1)),
        (2, 3, 48, 48, Window::square(3, 2, 1)),
        (1, 4, 24, 25, Window::square(3, 2, 1)),
        (1, 3, 27, 54, Window::square(3, 2, 0)),
        (2, 2, 26, 26, Window::square(3, 2, 0)),
        (1, 2, 9, 35, Window::new((2, 3), (3, 2), (1, 1))),
        (1, 2, 7, 23, Window::new((3, 3), (2, 2), (0, 1))),
        (1, 2, 17, 17, Window::square(3, 2, 0)),
        (1, 3, 19, 20, Window::square(3, 2, 1)),
        (2, 2, 5, 21, Window::new((2, 3), (2, 2), (0, 0))),
    ] {
        let g = PoolGeometry::new(n, c, h, w, win).unwrap();
        let x: Vec<f32> = (0..n * c * h * w).map(|_| level()).collect();
        let out = n * c * g.out_h * g.out_w;
        let (mut y, mut arg) = (vec![-7.0; out + 1], vec![-7.0; out + 1]);
        let (mut want_y, mut want_arg) = (vec![-7.0; out + 1], vec![-7.0; out + 1]);
        crate::checks::pool("test", &g, &[x.len()], &[y.len(), arg.len()]).unwrap();
        // SAFETY: the callers check the CPU's ISA first; checks::pool accepted g and the
        // buffers just above.
        unsafe { forward(&x, &g, &mut y, &mut arg) };
        super::pool::max_pool2d_forward_scalar(&x, &g, &mut want_y, &mut want_arg);
        assert_eq!(y, want_y, "values, {n}x{c}x{h}x{w} {win:?}");
        assert_eq!(arg, want_arg, "arg-max indices, {n}x{c}x{h}x{w} {win:?}");
    }
}
