//! No safe call may read or write outside a buffer, race, or panic: arguments whose sizes
//! overflow, batched outputs that overlap, geometries built by hand and labels out of range are
//! errors on every backend. Each case here once corrupted memory, raced or panicked.
mod common;
use common::*;
use tensor::{Backend, ConvGeometry, Error, Gemm, PoolGeometry, Window};

fn up<B: Backend>(b: &B, data: &[f32]) -> B::Storage {
    b.from_slice(data).unwrap()
}

/// The call must be an `Err` whose message holds every one of `needles`.
fn rejected(what: &str, r: tensor::Result<()>, needles: &[&str]) {
    let e = match r {
        Err(e) => e.to_string(),
        Ok(()) => panic!("{what}: accepted"),
    };
    for n in needles {
        assert!(e.contains(n), "{what}: error {e:?} does not mention {n:?}");
    }
}

/// Release builds wrap on overflow: a wrapped requirement once let a 4-value C pass for a
/// product that wrote before it, and m = n = k = 2^32 needed nothing at all.
fn gemm_sizes_that_overflow_are_errors<B: Backend>(b: &B) {
    let (a, bb, mut c) = (up(b, &[1.0; 8]), up(b, &[1.0; 8]), up(b, &[0.0; 4]));
    let g = Gemm { c_offset: usize::MAX - 3, ..Gemm::new(false, false, 1, 8, 1) };
    rejected("c_offset near usize::MAX", b.gemm(&g, &a, &bb, &mut c), &["gemm", "C", "overflows"]);
    let g = Gemm { a_offset: usize::MAX, ..Gemm::new(false, false, 1, 1, 1) };
    rejected("a_offset usize::MAX", b.gemm(&g, &a, &bb, &mut c), &["gemm", "A", "overflows"]);
    let huge = 1usize << 32;
    rejected(
        "m = n = k = 2^32",
        b.gemm(&Gemm::new(false, false, huge, huge, huge), &a, &bb, &mut c),
        &["overflows"],
    );
    let g = Gemm { batch: usize::MAX, b_stride: 2, ..Gemm::new(false, false, 1, 1, 1) };
    rejected("batch x stride", b.gemm(&g, &a, &bb, &mut c), &["B", "overflows"]);
    // Untouched: the rejected calls wrote nothing.
    assert_eq!(b.to_vec(&c).unwrap(), vec![0.0; 4]);
}

/// Batched outputs closer than m x n apart were written by several threads (and GPU blocks) at
/// once; the result depended on scheduling. Run under two threads, as the race needed.
fn overlapping_batched_outputs_are_errors<B: Backend>(b: &B) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (m, n, k) = (96, 96, 256);
    let a = up(b, &random(&mut rng(1), 2 * m * k));
    let bb = up(b, &random(&mut rng(2), 2 * k * n));
    let mut c = up(b, &vec![0.0; 2 * m * n]);
    let g =
        Gemm { batch: 2, a_stride: m * k, b_stride: k * n, c_stride: 1, ..Gemm::new(false, false, m, n, k) };
    let r = pool.install(|| b.gemm(&g, &a, &bb, &mut c));
    rejected("c_stride 1 < 96 x 96", r, &["c_stride 1", "overlap"]);
    // The limits: m x n apart is fine, and 0 sums the batch.
    for c_stride in [m * n, 0] {
        pool.install(|| b.gemm(&Gemm { c_stride, ..g }, &a, &bb, &mut c)).unwrap();
    }
}

/// A chunk that starts past usize::MAX needed "0 images" and wrote dx[-1].
fn chunks_past_usize_max_are_errors<B: Backend>(b: &B) {
    let geo = ConvGeometry::new(1, 2, 6, 6, 1, Window::new((4, 4), (2, 2), (1, 1))).unwrap();
    let bt = [0.0f32; 16];
    let (x, mut v) = (up(b, &[1.0; 72]), up(b, &[0.0; 16 * 2 * 9]));
    let mut dx = up(b, &[0.0; 72]);
    for (first, count) in [(usize::MAX, 1), (1, usize::MAX), (usize::MAX / 72 + 1, 0)] {
        let at = format!("first {first} count {count}");
        rejected(&at, b.winograd_tiles_backward(&v, &geo, first, count, &bt, &mut dx), &["overflows"]);
        rejected(&at, b.winograd_tiles(&x, &geo, first, count, &bt, &mut v), &["overflows"]);
        rejected(&at, b.im2col(&x, &geo, first, count, &mut v), &["im2col", "overflows"]);
        rejected(&at, b.col2im(&v, &geo, first, count, &mut dx), &["col2im", "overflows"]);
    }
    let out = ConvGeometry::new(1, 2, 6, 6, 1, Window::square(3, 3, 0)).unwrap();
    let (at, points) = ([0.0f32; 12], up(b, &[0.0; 16 * 2 * 4]));
    let mut y = up(b, &[0.0; 72]);
    rejected("untile", b.winograd_untile(&points, &out, usize::MAX, 1, &at, &mut y), &["overflows"]);
    let mut dm = up(b, &[0.0; 16 * 2 * 4]);
    rejected(
        "untile_backward",
        b.winograd_untile_backward(&y, &out, 1, usize::MAX, &at, &mut dm),
        &["overflows"],
    );
    assert_eq!(b.to_vec(&dx).unwrap(), vec![0.0; 72], "dx written by a rejected call");
    rejected(
        "transpose_blocks",
        b.transpose_blocks(&x, usize::MAX, 1, 1, 1, &mut dx, 0),
        &["transpose_blocks", "overflows"],
    );
    let mut big = up(b, &[0.0; 4]);
    rejected(
        "copy_channels",
        b.copy_channels(&x, 2, usize::MAX, &mut big, 2, 0, 2, 1, 1),
        &["copy_channels", "18446744073709551615"],
    );
    rejected("add_bias", b.add_bias(&mut big, &x, usize::MAX, 2, 2), &["add_bias", "overflows"]);
}

/// Kernels trust a geometry's output size and plane limit, and its fields are public: a
/// geometry that `new` would not make is an error, not a read or write out of place.
fn hand_built_geometries_are_errors<B: Backend>(b: &B) {
    let g = PoolGeometry::new(1, 2, 7, 7, Window::square(3, 2, 1)).unwrap();
    let x = up(b, &[1.0; 2 * 7 * 7]);
    let (mut y, mut arg) = (up(b, &[0.0; 2 * 4 * 4]), up(b, &[0.0; 2 * 4 * 4]));
    let mut dx = up(b, &[0.0; 2 * 7 * 7]);
    for bad in [
        PoolGeometry { out_h: g.out_h + 5, ..g },
        PoolGeometry { out_w: 1, ..g },
        PoolGeometry { window: Window::square(3, 1, 1), ..g },
    ] {
        let what = format!("{bad:?}");
        rejected(&what, b.max_pool2d_forward(&x, &bad, &mut y, &mut arg), &["max_pool2d_forward", "7x7"]);
        rejected(&what, b.max_pool2d_backward(&arg, &y, &bad, &mut dx), &["max_pool2d_backward"]);
        rejected(&what, b.avg_pool2d_forward(&x, &bad, &mut y), &["avg_pool2d_forward"]);
        rejected(&what, b.avg_pool2d_backward(&y, &bad, &mut dx), &["avg_pool2d_backward"]);
    }
    // Beyond the plane limit (arg-max indices exact in f32, i32 gather indices): even with no
    // planes at all, the geometry is not one `new` makes.
    let huge = PoolGeometry { n: 0, h: 5000, w: 5000, out_h: 2500, out_w: 2500, ..g };
    rejected("5000x5000 planes", b.max_pool2d_forward(&x, &huge, &mut y, &mut arg), &["16777216"]);

    let c = ConvGeometry::new(2, 2, 6, 6, 3, Window::square(3, 1, 1)).unwrap();
    let mut cols = up(b, &[0.0; 2 * 18 * 36]);
    for bad in [ConvGeometry { out_h: 9, ..c }, ConvGeometry { out_w: 2, ..c }] {
        rejected("im2col", b.im2col(&x, &bad, 0, 1, &mut cols), &["im2col", "output is"]);
        rejected("col2im", b.col2im(&cols, &bad, 0, 1, &mut dx), &["col2im", "output is"]);
    }
    let bt = [0.0f32; 16];
    let tiles = ConvGeometry::new(1, 2, 6, 6, 1, Window::new((4, 4), (2, 2), (1, 1))).unwrap();
    let bad = ConvGeometry { out_h: tiles.out_h + 1, ..tiles };
    rejected("winograd_tiles", b.winograd_tiles(&x, &bad, 0, 1, &bt, &mut cols), &["winograd_tiles"]);
    // Tiles of unequal strides: the fused kernels read one stride for both directions.
    let uneven = ConvGeometry::new(1, 2, 6, 6, 1, Window::new((4, 4), (2, 1), (1, 1))).unwrap();
    rejected("uneven strides", b.winograd_tiles(&x, &uneven, 0, 1, &bt, &mut cols), &["stride"]);
}

/// A label outside the classes indexed past its row of logits (a panic on the CPU, an
/// out-of-bounds read on the GPU). Labels are host values, checked before any kernel runs.
fn labels_out_of_range_are_errors<B: Backend>(b: &B) {
    let logits = up(b, &random(&mut rng(3), 3 * 4));
    let (mut loss, mut correct) = (up(b, &[0.0]), up(b, &[0.0]));
    let (dloss, mut dlogits) = (up(b, &[1.0]), up(b, &[0.0; 12]));
    for bad in [4, 5, usize::MAX] {
        let labels = [0, bad, 2];
        let what = format!("label {bad}");
        let r = b.softmax_cross_entropy_forward(&logits, &labels, 3, 4, &mut loss, &mut correct);
        rejected(&what, r, &["softmax_cross_entropy_forward", "index 1", "below 4"]);
        let r = b.softmax_cross_entropy_backward(&logits, &labels, 3, 4, &dloss, &mut dlogits);
        rejected(&what, r, &["softmax_cross_entropy_backward", "index 1"]);
    }
    assert_eq!(b.to_vec(&dlogits).unwrap(), vec![0.0; 12], "a rejected call wrote");
    // Labels past row n are not read; fewer than n are an error.
    b.softmax_cross_entropy_forward(&logits, &[0, 3, 2, 99], 3, 4, &mut loss, &mut correct).unwrap();
    let r = b.softmax_cross_entropy_forward(&logits, &[0, 3], 3, 4, &mut loss, &mut correct);
    rejected("2 labels for 3 rows", r, &["labels holds 2 values, 3 needed"]);
    let r = b.softmax_cross_entropy_forward(&logits, &[0], 1, 0, &mut loss, &mut correct);
    rejected("0 classes", r, &["0 classes"]);
}

/// Every kernel with an empty dimension: an `Ok` that does nothing or an `Err`, never a panic
/// (zero-length chunks once reached rayon, which panics on them).
fn empty_sizes_never_panic<B: Backend>(b: &B) {
    let e = || up(b, &[]);
    let one = || up(b, &[1.0]);
    let ok = |what: &str, r: tensor::Result<()>| {
        if let Err(err) = r {
            assert!(
                matches!(err, Error::Shape(_) | Error::InvalidArgument(_)),
                "{what}: unexpected error {err}"
            );
        }
    };
    for (m, n, k, batch) in [(0, 3, 2, 1), (3, 0, 2, 1), (3, 2, 0, 1), (3, 2, 2, 0), (0, 0, 0, 2)] {
        let g = Gemm {
            batch,
            a_stride: m * k,
            b_stride: k * n,
            c_stride: m * n,
            ..Gemm::new(false, true, m, n, k)
        };
        let (a, bb, mut c) = (
            up(b, &vec![1.0; m * k * batch]),
            up(b, &vec![1.0; k * n * batch]),
            up(b, &vec![0.5; m * n * batch]),
        );
        ok("gemm", b.gemm(&g, &a, &bb, &mut c));
        ok("gemm summed", b.gemm(&Gemm { c_stride: 0, ..g }, &a, &bb, &mut c));
    }
    let geo = ConvGeometry::new(0, 0, 3, 3, 0, Window::square(3, 1, 1)).unwrap();
    ok("im2col", b.im2col(&e(), &geo, 0, 0, &mut e()));
    ok("col2im", b.col2im(&e(), &geo, 0, 0, &mut e()));
    let pointwise = ConvGeometry::new(2, 3, 4, 4, 2, Window::square(1, 1, 0)).unwrap();
    ok("im2col 1x1, no images", b.im2col(&e(), &pointwise, 0, 0, &mut e()));
    ok("col2im 1x1, no images", b.col2im(&e(), &pointwise, 0, 0, &mut e()));
    ok("transpose_blocks", b.transpose_blocks(&e(), 0, 0, 5, 3, &mut e(), 0));
    ok("transpose_blocks", b.transpose_blocks(&e(), 0, 4, 5, 0, &mut e(), 0));
    for (outer, channels, inner) in [(0, 3, 4), (2, 0, 4), (2, 3, 0)] {
        let full = outer * channels * inner;
        let (mut y, bias, mut db) =
            (up(b, &vec![1.0; full]), up(b, &vec![1.0; channels]), up(b, &vec![7.0; channels]));
        ok("add_bias", b.add_bias(&mut y, &bias, outer, channels, inner));
        ok("bias_grad", b.bias_grad(&y, outer, channels, inner, &mut db));
        ok("bias_relu", b.bias_relu(&mut y, Some(&bias), outer, channels, inner));
        let (dy, mut dz) = (up(b, &vec![1.0; full]), up(b, &vec![0.0; full]));
        ok(
            "bias_relu_backward",
            b.bias_relu_backward(&y, &dy, &mut dz, Some(&mut db), outer, channels, inner),
        );
        if outer * inner == 0 {
            assert!(b.to_vec(&db).unwrap().iter().all(|&v| v == 0.0), "a sum over nothing is 0");
        }
    }
    ok("global_avg_pool_forward", b.global_avg_pool_forward(&e(), 0, 0, &mut e()));
    ok("global_avg_pool_forward", b.global_avg_pool_forward(&e(), 2, 0, &mut up(b, &[0.0; 2])));
    ok("global_avg_pool_backward", b.global_avg_pool_backward(&e(), 0, 4, &mut e()));
    ok("global_avg_pool_backward", b.global_avg_pool_backward(&up(b, &[1.0; 2]), 2, 0, &mut e()));
    let pool = PoolGeometry::new(0, 3, 4, 4, Window::square(2, 2, 0)).unwrap();
    ok("max_pool2d_forward", b.max_pool2d_forward(&e(), &pool, &mut e(), &mut e()));
    ok("max_pool2d_backward", b.max_pool2d_backward(&e(), &e(), &pool, &mut e()));
    ok("avg_pool2d_forward", b.avg_pool2d_forward(&e(), &pool, &mut e()));
    ok("copy_channels", b.copy_channels(&e(), 0, 0, &mut e(), 0, 0, 0, 3, 4));
    ok("copy_channels", b.copy_channels(&e(), 2, 0, &mut e(), 2, 0, 2, 3, 0));
    ok("copy_channels", b.copy_channels(&e(), 2, 0, &mut e(), 2, 0, 2, 0, 4));
    let (mut loss, mut correct) = (one(), one());
    ok("loss, no rows", b.softmax_cross_entropy_forward(&e(), &[], 0, 0, &mut loss, &mut correct));
    ok("loss backward, no rows", b.softmax_cross_entropy_backward(&e(), &[], 0, 10, &one(), &mut e()));
    ok("relu", b.relu_forward(&e(), &mut e()));
    ok("dropout", b.dropout_forward(&e(), 0.5, 1, &mut e(), &mut e()));
    ok("sum", b.sum(&e(), &mut one()));
    ok("planes of 0x3", PoolGeometry::new(1, 1, 0, 3, Window::square(1, 1, 0)).map(|_| ()));
    ok("planes of 3x0", ConvGeometry::new(1, 1, 3, 0, 1, Window::square(1, 1, 1)).map(|_| ()));
}

/// The shapes whose pointer arithmetic once left the allocation (a zero-width slab of the 8x48
/// tile past the end of B; pooling loads based before x with padding 1) still compute the
/// right values. What was undefined (forming the address) is not observable at run time; the
/// kernels now form such addresses with wrapping arithmetic or not at all.
fn edge_addresses_compute_the_right_values<B: Backend>(b: &B) {
    let (m, n, k) = (64, 3136, 576);
    let (a, bb) = (random(&mut rng(5), m * k), random(&mut rng(6), k * n));
    let mut c = up(b, &vec![0.0; m * n]);
    b.gemm(&Gemm::new(false, false, m, n, k), &up(b, &a), &up(b, &bb), &mut c).unwrap();
    let c = b.to_vec(&c).unwrap();
    for (i, j) in [(0, 0), (63, 3135), (17, 3120), (40, 3100), (5, 47)] {
        let want: f64 = (0..k).map(|p| a[i * k + p] as f64 * bb[p * n + j] as f64).sum();
        assert!((c[i * n + j] as f64 - want).abs() < 1e-3, "C[{i}][{j}] = {} vs {want}", c[i * n + j]);
    }
    // Values all below zero: a padded cell read as 0 would win.
    for (h, w, win) in [(30, 30, Window::square(3, 2, 1)), (6, 6, Window::square(3, 1, 1))] {
        let g = PoolGeometry::new(1, 2, h, w, win).unwrap();
        let x: Vec<f32> = (0..2 * h * w).map(|i| -1.0 - (i % 7) as f32).collect();
        let out = 2 * g.out_h * g.out_w;
        let (mut y, mut arg) = (up(b, &vec![0.0; out]), up(b, &vec![0.0; out]));
        b.max_pool2d_forward(&up(b, &x), &g, &mut y, &mut arg).unwrap();
        let y = b.to_vec(&y).unwrap();
        assert!(y.iter().all(|&v| v <= -1.0), "a padded cell won: {win:?}");
        // The top-left window's maximum, computed here.
        let want = (0..2)
            .flat_map(|i| (0..2).map(move |j| (i, j)))
            .map(|(i, j)| x[i * w + j])
            .fold(f32::MIN, f32::max);
        if win.padding == (1, 1) {
            assert_eq!(y[0], want, "{win:?}");
        }
    }
}

/// A buffer the system cannot give is an error naming the size, not an abort of the process.
fn allocations_too_large_are_errors<B: Backend>(b: &B) {
    // 2^62 + 1 values are 4 bytes once the byte count wraps.
    for len in [1usize << 60, (1 << 62) + 1, usize::MAX / 4] {
        let e = match b.zeros(len) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{len} values allocated"),
        };
        assert!(e.contains("out of memory") || e.contains("exceeds"), "{e}");
    }
}

backend_tests!(
    allocations_too_large_are_errors,
    gemm_sizes_that_overflow_are_errors,
    overlapping_batched_outputs_are_errors,
    chunks_past_usize_max_are_errors,
    hand_built_geometries_are_errors,
    labels_out_of_range_are_errors,
    empty_sizes_never_panic,
    edge_addresses_compute_the_right_values,
);
