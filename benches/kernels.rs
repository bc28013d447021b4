//! Kernel throughput on the CPU backend, reported as GFLOP/s.
//!
//! Every benchmark declares `Throughput::Elements(flops)`, so the "elem/s" criterion prints is
//! flop/s (its "Gelem/s" is GFLOP/s); the groups are named `*_gflops` to say so.
//!
//! * `gemm_gflops`: `Backend::gemm` on `Cpu` — square products and the NiN (Fashion-MNIST at
//!   224x224, batch 32) layer products, flops = 2*m*n*k*batch.
//! * `conv2d_gflops`: `layers::ops::conv2d` forward, and forward + backward through autograd, at
//!   NiN's second convolution with batch 8; flops are the geometry's (forward 2*N*O*P*K, backward
//!   counted as twice that for the input and weight gradients).
//!
//! Run: `cargo bench --bench kernels` (or `-- gemm_gflops`, `-- conv2d_gflops` for one group).
//! Kept short (10 samples, 1 s warm-up, 3 s measurement) so the whole run fits in a few minutes.
use autograd::Var;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tensor::{Backend, ConvGeometry, Cpu, Gemm, Tensor, Window};

/// Deterministic values in [-1, 1) (xorshift64*), so runs are repeatable and no denormals appear.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// One GEMM case: a name, the product, and how it is laid out in memory.
struct Case {
    name: &'static str,
    g: Gemm,
}

impl Case {
    /// `batch` products `C_i = op(A_i) op(B_i)`; A is shared when `shared_a` (conv weights),
    /// C is summed over the batch when `sum_c` (weight gradients).
    #[allow(clippy::too_many_arguments)]
    fn new(name: &'static str, trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize, batch: usize, shared_a: bool, sum_c: bool) -> Case {
        let g = Gemm {
            batch,
            a_stride: if shared_a { 0 } else { m * k },
            b_stride: k * n,
            c_stride: if sum_c { 0 } else { m * n },
            ..Gemm::new(trans_a, trans_b, m, n, k)
        };
        Case { name, g }
    }
    fn id(&self) -> BenchmarkId {
        let g = &self.g;
        let t = |b: bool| if b { "T" } else { "N" };
        let sum = if g.c_stride == 0 && g.batch > 1 { "_sumC" } else { "" };
        BenchmarkId::new(self.name, format!("{}{}_m{}_n{}_k{}_b{}{}", t(g.trans_a), t(g.trans_b), g.m, g.n, g.k, g.batch, sum))
    }
}

fn gemm_cases() -> Vec<Case> {
    vec![
        Case::new("square", false, false, 512, 512, 512, 1, false, false),
        Case::new("square", false, false, 1024, 1024, 1024, 1, false, false),
        // NiN conv1 forward (1 -> 96, 11x11 stride 4, 224 -> 54x54): W[96 x 121] * cols_i[121 x 2916].
        Case::new("nin_conv1_fwd", false, false, 96, 2916, 121, 32, true, false),
        // A NiN 1x1 conv after conv1 (96 -> 96 on 54x54): W[96 x 96] * X_i[96 x 2916].
        Case::new("nin_1x1_fwd", false, false, 96, 2916, 96, 32, true, false),
        // NiN conv2 forward for one image (96 -> 256, 5x5 pad 2 on 26x26): W[256 x 2400] * cols[2400 x 676].
        Case::new("nin_conv2_fwd", false, false, 256, 676, 2400, 1, true, false),
        // NiN conv1 weight gradient: dW[96 x 121] = sum_i dy_i[96 x 2916] * cols_i^T[2916 x 121].
        Case::new("nin_conv1_wgrad", false, true, 96, 121, 2916, 32, false, true),
    ]
}

fn bench_gemm(c: &mut Criterion) {
    let cpu = Cpu;
    let mut group = c.benchmark_group("gemm_gflops");
    group.sampling_mode(SamplingMode::Flat);
    for (i, case) in gemm_cases().iter().enumerate() {
        let g = case.g;
        let (la, lb, lc) = g.required_lengths();
        let a = cpu.from_slice(&values(la, 3 * i as u64 + 1)).unwrap();
        let b = cpu.from_slice(&values(lb, 3 * i as u64 + 2)).unwrap();
        let mut out = cpu.zeros(lc).unwrap();
        group.throughput(Throughput::Elements(g.flops() as u64));
        group.bench_function(case.id(), |bench| {
            bench.iter(|| {
                cpu.gemm(&g, black_box(&a), black_box(&b), &mut out).unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn bench_conv(c: &mut Criterion) {
    let cpu = Cpu;
    // NiN conv2 at 224 input, batch reduced to 8: x [8, 96, 26, 26], w [256, 96, 5, 5], pad 2.
    let (n, c_in, hw, c_out, k, pad) = (8, 96, 26, 256, 5, 2);
    let geo = ConvGeometry::new(n, c_in, hw, hw, c_out, Window::square(k, 1, pad)).unwrap();
    let x = Tensor::from_slice(&cpu, [n, c_in, hw, hw], &values(n * c_in * hw * hw, 101)).unwrap();
    let w = Tensor::from_slice(&cpu, [c_out, c_in, k, k], &values(c_out * c_in * k * k, 102)).unwrap();
    let b = Tensor::from_slice(&cpu, [c_out], &values(c_out, 103)).unwrap();
    let dy = Tensor::from_slice(&cpu, [n, c_out, geo.out_h, geo.out_w], &values(n * c_out * geo.col_cols(), 104)).unwrap();
    let shape = format!("n{n}_c{c_in}_{hw}x{hw}_o{c_out}_k{k}_p{pad}");

    let mut group = c.benchmark_group("conv2d_gflops");
    group.sampling_mode(SamplingMode::Flat);

    group.throughput(Throughput::Elements(geo.flops() as u64));
    group.bench_function(BenchmarkId::new("nin_conv2_forward", &shape), |bench| {
        bench.iter(|| {
            let (xv, wv, bv) = (Var::parameter(x.clone()), Var::parameter(w.clone()), Var::parameter(b.clone()));
            let y = layers::ops::conv2d(&xv, &wv, Some(&bv), (1, 1), (pad, pad)).unwrap();
            black_box(y.value());
        })
    });

    group.throughput(Throughput::Elements(3 * geo.flops() as u64));
    group.bench_function(BenchmarkId::new("nin_conv2_fwd_bwd", &shape), |bench| {
        bench.iter(|| {
            let (xv, wv, bv) = (Var::parameter(x.clone()), Var::parameter(w.clone()), Var::parameter(b.clone()));
            let y = layers::ops::conv2d(&xv, &wv, Some(&bv), (1, 1), (pad, pad)).unwrap();
            y.backward_with(dy.clone()).unwrap();
            black_box((xv.grad(), wv.grad(), bv.grad()));
        })
    });
    group.finish();
}

fn config() -> Criterion {
    eprintln!(
        "kernels bench: {} hardware threads (rayon's default pool size unless RAYON_NUM_THREADS is set)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_gemm, bench_conv
}
criterion_main!(benches);
