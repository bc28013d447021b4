//! Throughput of every kernel of `tensor::Backend` on `tensor::Cpu`, at the real layer shapes of
//! d2l's NiN (1-channel 224x224 input) and GoogLeNet (1-channel 96x96 input), batch 32.
//!
//! The shapes are derived below (`nin()`, `googlenet()`) by chaining the layer geometries of
//! `models::nin` and `models::googlenet`: NiN conv1 224 -> 54, pools 54 -> 26 -> 12 -> 5;
//! GoogLeNet b1 96 -> 48, pool -> 24, b2 at 24, pool -> 12, Inception 3a at 12 (192 in),
//! 4a at 6 (480 in), 5b at 3 (832 in).
//!
//! A group's suffix says what criterion's throughput column means:
//! * `*_gflops` declare `Throughput::Elements(flops)`, so "Gelem/s" is GFLOP/s;
//! * `*_gbps` declare `Throughput::BytesDecimal(bytes)` (criterion's decimal variant of `Bytes`),
//!   so the column reads GB/s (10^9 bytes). The bytes are what the kernel must read and write at
//!   least once: every input once, every output once (an input read several times, as by
//!   im2col or a pooling window, counts once).
//!
//! Groups (ids are `group/function/parameter`):
//! * `gemm_gflops`: `gemm`, flops = 2*m*n*k*batch. `square/{NN,NT,TN,TT}_m512...` and
//!   `square/NN_m1024...`; then each convolution layer's three products as batched calls over
//!   the 32 images (O = out channels, K = in channels x kernel area, P = output pixels):
//!   `<layer>_fwd` y_i = W cols_i (NN, W shared by the batch), `<layer>_wgrad`
//!   dW = sum_i dy_i cols_i^T (NT, summed over the batch: `_sumC`), `<layer>_igrad`
//!   dcols_i = W^T dy_i (TN, W shared; not for a first layer, whose input needs no gradient);
//!   `nin_conv2_fwd/..._b1` is one image; `googlenet_fc_*` are the linear head's three products
//!   (NT forward, NN input gradient, TN weight gradient).
//! * `im2col_gbps`: `im2col` and `col2im` over the batch at NiN conv1, conv2, conv3 and
//!   GoogLeNet b1, b2 3x3, 3a 5x5, 4a 1x1 and 3x3, 5b 3x3; bytes = input images + column matrix.
//! * `winograd_gbps`: the four tile transforms (`winograd_tiles`, `winograd_untile` and their
//!   backwards) over the batch at NiN conv3 and GoogLeNet b2 3x3 as F(4x4, 3x3) and NiN conv2
//!   as F(2x2, 5x5); bytes = images + points.
//! * `conv2d_gflops`: `layers::ops::conv2d` (bias included) `forward` and `fwd_bwd` (forward, then
//!   `backward_with(dy)` through autograd) for every distinct convolution of NiN (the two 1x1
//!   convolutions of a block share a shape) and GoogLeNet's b1, b2 3x3 and Inception 3a 1x1.
//!   Flops: forward F = 2*N*O*P*K; fwd_bwd 3F (input and weight gradients), 2F for a first layer
//!   (its input is a constant). Bias add and bias gradient are timed but not counted.
//! * `conv1x1_gflops`: NiN's 1x1 convolutions on 96x54x54 and 256x26x26 through the direct path
//!   (`direct_*`, `ConvAlgo::Auto`) and, for reference, through im2col (`im2col_*`).
//! * `pool_gbps`: `max_pool2d_{forward,backward}` at NiN's three 3x3/2 pools, GoogLeNet's
//!   Inception 3x3/1 p1 pool (3a, 192x12x12) and b1's 3x3/2 p1 pool (64x48x48 -> 24);
//!   `avg_pool2d_{forward,backward}` at the two GoogLeNet shapes (neither model averages with a
//!   window); `global_avg_pool_{forward,backward}` at GoogLeNet's 1024x3x3 and NiN's 10x5x5.
//! * `activation_gbps`: `relu_{forward,backward}`, `dropout_forward` and `dropout_backward`
//!   (which is `mul` by the mask) at NiN's 384x5x5 (the dropout input) and 96x54x54 (conv1's
//!   output).
//! * `bias_gbps`: `add_bias`, `bias_grad`, `bias_relu` and `bias_relu_backward` (with the bias
//!   gradient) at NiN conv1's output and GoogLeNet 5b's 1x1 output.
//! * `elementwise_gbps`: `transpose_blocks` of each `im2col_gbps` layer's output between
//!   [O][N][P] and NCHW (`to_nchw`, `from_nchw`), `copy_channels` (an Inception concat and its
//!   split, four calls each), `axpy`, `scale`, `sum`, `fill`, `copy`.
//! * `loss_gbps`: `softmax_cross_entropy_{forward,backward}` at 32x10.
//! * `optim_gbps`: `sgd_step` (momentum) and `adam_step` over one parameter vector of NiN's
//!   (1,992,166) and GoogLeNet's (5,977,530) size.
//!
//! Run: `cargo bench --bench kernels` (about 5 minutes on 2 cores), or one piece with a regex
//! filter, e.g. `cargo bench --bench kernels -- gemm_gflops` or `-- 'pool_gbps/max_pool2d'`.
//! `-- --list` lists the ids; `-- --test` runs each benchmark once, as a check.
//! Settings: 10 samples, 0.5 s warm-up, 1 s measurement. The largest convolutions (NiN conv2
//! fwd_bwd: ~80 GFLOP per call) take longer than 1 s for the minimum 10 samples of one call;
//! criterion then says "Unable to complete 10 samples" and runs exactly those 10 calls.
//! Inputs are built only for benchmarks the filter selects.
use autograd::Var;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use layers::ops::{conv2d_with, ConvAlgo};
use std::hint::black_box;
use std::time::Duration;
use tensor::cpu::CpuBuffer;
use tensor::{AdamStep, Backend, ConvGeometry, Cpu, Gemm, PoolGeometry, SgdStep, Tensor, Window};

/// The batch size of every layer shape.
const N: usize = 32;
const NIN_PARAMS: usize = 1_992_166;
const GOOGLENET_PARAMS: usize = 5_977_530;

// ---------------------------------------------------------------------------------------------
// Data and benchmark plumbing
// ---------------------------------------------------------------------------------------------

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

fn buf(len: usize, seed: u64) -> CpuBuffer {
    Cpu.from_slice(&values(len, seed)).unwrap()
}

fn zeros(len: usize) -> CpuBuffer {
    Cpu.zeros(len).unwrap()
}

fn tensor(dims: &[usize], seed: u64) -> Tensor<Cpu> {
    Tensor::from_slice(&Cpu, dims, &values(dims.iter().product(), seed)).unwrap()
}

/// Throughput of a kernel that moves `values` f32s (reads plus writes).
fn bytes(values: usize) -> Throughput {
    Throughput::BytesDecimal((values * std::mem::size_of::<f32>()) as u64)
}

fn flops(f: f64) -> Throughput {
    Throughput::Elements(f as u64)
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Registers one benchmark: `setup` builds its inputs, only if the filter selects it (and then
/// once), and `run` is the timed call on them.
fn bench<S>(
    group: &mut Group,
    id: BenchmarkId,
    throughput: Throughput,
    setup: impl FnOnce() -> S,
    mut run: impl FnMut(&mut S),
) {
    let mut setup = Some(setup);
    let mut state: Option<S> = None;
    group.throughput(throughput);
    group.bench_function(id, |b| {
        let s = state.get_or_insert_with(|| (setup.take().expect("setup runs once"))());
        b.iter(|| {
            run(s);
            black_box(&*s);
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Layer shapes of the two models
// ---------------------------------------------------------------------------------------------

/// A convolution layer at batch `N` (square input and kernel).
#[derive(Clone, Debug)]
struct Conv {
    name: String,
    c_in: usize,
    hw: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// The model's first layer: its input (the image) needs no gradient.
    first: bool,
}

impl Conv {
    fn new(name: &str, c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv {
        Conv { name: name.into(), c_in, hw, c_out, k, stride, pad, first: false }
    }
    fn first(self) -> Conv {
        Conv { first: true, ..self }
    }
    /// The 1x1 convolutions (`c_out -> c_out`) that follow this one in a NiN block.
    fn pointwise(&self) -> Conv {
        Conv::new(&format!("{}_1x1", self.name), self.c_out, self.out_hw(), self.c_out, 1, 1, 0)
    }
    fn geo(&self) -> ConvGeometry {
        ConvGeometry::new(
            N,
            self.c_in,
            self.hw,
            self.hw,
            self.c_out,
            Window::square(self.k, self.stride, self.pad),
        )
        .unwrap()
    }
    fn out_hw(&self) -> usize {
        self.geo().out_h
    }
    fn id(&self) -> String {
        let (c, hw, o, k, s, p) = (self.c_in, self.hw, self.c_out, self.k, self.stride, self.pad);
        format!("{}_n{N}_c{c}_{hw}x{hw}_o{o}_k{k}_s{s}_p{p}", self.name)
    }
    fn forward_flops(&self) -> f64 {
        self.geo().flops()
    }
    /// Forward, weight gradient and (unless a first layer) input gradient: 3F or 2F.
    fn fwd_bwd_flops(&self) -> f64 {
        self.forward_flops() * if self.first { 2.0 } else { 3.0 }
    }
}

/// A pooling layer at batch `N`: `c` planes of `hw x hw`, a square window.
#[derive(Clone, Debug)]
struct Pool {
    name: String,
    c: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Pool {
    fn new(name: &str, c: usize, hw: usize, k: usize, stride: usize, pad: usize) -> Pool {
        Pool { name: name.into(), c, hw, k, stride, pad }
    }
    fn geo(&self) -> PoolGeometry {
        PoolGeometry::new(N, self.c, self.hw, self.hw, Window::square(self.k, self.stride, self.pad)).unwrap()
    }
    fn out_hw(&self) -> usize {
        self.geo().out_h
    }
    fn id(&self) -> String {
        let (c, hw, k, s, p) = (self.c, self.hw, self.k, self.stride, self.pad);
        format!("{}_n{N}_c{c}_{hw}x{hw}_k{k}_s{s}_p{p}", self.name)
    }
}

/// An activation tensor `N x c x hw x hw`.
#[derive(Clone, Copy, Debug)]
struct Act {
    name: &'static str,
    c: usize,
    hw: usize,
}

impl Act {
    fn len(&self) -> usize {
        N * self.c * self.hw * self.hw
    }
    fn id(&self) -> String {
        format!("{}_n{N}_c{}_{}x{}", self.name, self.c, self.hw, self.hw)
    }
}

/// d2l's `Inception(c1, c2, c3, c4)` on `c_in` channels of `hw x hw`.
#[derive(Clone, Copy, Debug)]
struct Inception {
    name: &'static str,
    c_in: usize,
    hw: usize,
    c1: usize,
    c2: (usize, usize),
    c3: (usize, usize),
    c4: usize,
}

impl Inception {
    fn conv(&self, branch: &str, c_in: usize, c_out: usize, k: usize) -> Conv {
        Conv::new(&format!("{}_{branch}", self.name), c_in, self.hw, c_out, k, 1, k / 2)
    }
    /// Branch 1's 1x1 convolution (`p1_1`).
    fn conv_1x1(&self) -> Conv {
        self.conv("1x1", self.c_in, self.c1, 1)
    }
    /// Branch 2's 3x3 convolution (`p2_2`).
    fn conv_3x3(&self) -> Conv {
        self.conv("3x3", self.c2.0, self.c2.1, 3)
    }
    /// Branch 3's 5x5 convolution (`p3_2`).
    fn conv_5x5(&self) -> Conv {
        self.conv("5x5", self.c3.0, self.c3.1, 5)
    }
    /// Branch 4's 3x3 stride-1 max pool (`p4_1`).
    fn pool(&self) -> Pool {
        Pool::new(&format!("{}_pool", self.name), self.c_in, self.hw, 3, 1, 1)
    }
    /// Output channels of the four branches, in concatenation order.
    fn branches(&self) -> [usize; 4] {
        [self.c1, self.c2.1, self.c3.1, self.c4]
    }
    fn out_channels(&self) -> usize {
        self.branches().iter().sum()
    }
}

struct Nin {
    /// conv1..conv4 (11x11/4, 5x5 p2, 3x3 p1, 3x3 p1).
    convs: [Conv; 4],
    /// The three 3x3/2 max pools.
    pools: [Pool; 3],
    /// Input of the global average pool: 10 classes x 5x5.
    gap: Act,
}

impl Nin {
    /// Every distinct convolution in order: each block's k x k convolution, then its 1x1 pair.
    fn layers(&self) -> Vec<Conv> {
        self.convs.iter().flat_map(|c| [c.clone(), c.pointwise()]).collect()
    }
}

/// `models::nin` at 224x224.
fn nin() -> Nin {
    let conv1 = Conv::new("nin_conv1", 1, 224, 96, 11, 4, 0).first();
    let pool1 = Pool::new("nin_pool1", 96, conv1.out_hw(), 3, 2, 0);
    let conv2 = Conv::new("nin_conv2", 96, pool1.out_hw(), 256, 5, 1, 2);
    let pool2 = Pool::new("nin_pool2", 256, conv2.out_hw(), 3, 2, 0);
    let conv3 = Conv::new("nin_conv3", 256, pool2.out_hw(), 384, 3, 1, 1);
    let pool3 = Pool::new("nin_pool3", 384, conv3.out_hw(), 3, 2, 0);
    let conv4 = Conv::new("nin_conv4", 384, pool3.out_hw(), 10, 3, 1, 1);
    assert_eq!(
        [conv1.out_hw(), pool1.out_hw(), pool2.out_hw(), pool3.out_hw(), conv4.out_hw()],
        [54, 26, 12, 5, 5]
    );
    let gap = Act { name: "nin_gap", c: conv4.c_out, hw: conv4.out_hw() };
    Nin { convs: [conv1, conv2, conv3, conv4], pools: [pool1, pool2, pool3], gap }
}

struct GoogLeNet {
    b1: Conv,
    b1_pool: Pool,
    b2_1x1: Conv,
    b2_3x3: Conv,
    i3a: Inception,
    i4a: Inception,
    i5b: Inception,
    /// Input of the global average pool: 1024 x 3x3.
    gap: Act,
    /// The linear head: (in, out) features.
    fc: (usize, usize),
}

/// `models::googlenet` at 96x96.
fn googlenet() -> GoogLeNet {
    let halve = |hw: usize| Pool::new("halve", 1, hw, 3, 2, 1).out_hw();
    let b1 = Conv::new("googlenet_b1", 1, 96, 64, 7, 2, 3).first();
    let b1_pool = Pool::new("googlenet_b1_pool", 64, b1.out_hw(), 3, 2, 1);
    let b2_1x1 = Conv::new("googlenet_b2_1x1", 64, b1_pool.out_hw(), 64, 1, 1, 0);
    let b2_3x3 = Conv::new("googlenet_b2_3x3", 64, b2_1x1.out_hw(), 192, 3, 1, 1);
    // Block 3 starts with 3a on b2's 192 channels, after b2's halving pool.
    let i3a = Inception {
        name: "googlenet_3a",
        c_in: 192,
        hw: halve(b2_3x3.out_hw()),
        c1: 64,
        c2: (96, 128),
        c3: (16, 32),
        c4: 32,
    };
    // Block 4 starts with 4a on 3b's 480 = 128 + 192 + 96 + 64 channels, after a halving pool.
    let i4a = Inception {
        name: "googlenet_4a",
        c_in: 480,
        hw: halve(i3a.hw),
        c1: 192,
        c2: (96, 208),
        c3: (16, 48),
        c4: 64,
    };
    // Block 5 ends with 5b on 5a's 832 = 256 + 320 + 128 + 128 channels, after a halving pool.
    let i5b = Inception {
        name: "googlenet_5b",
        c_in: 832,
        hw: halve(i4a.hw),
        c1: 384,
        c2: (192, 384),
        c3: (48, 128),
        c4: 128,
    };
    assert_eq!([b1.out_hw(), b1_pool.out_hw(), i3a.hw, i4a.hw, i5b.hw], [48, 24, 12, 6, 3]);
    let gap = Act { name: "googlenet_gap", c: i5b.out_channels(), hw: i5b.hw };
    GoogLeNet { b1, b1_pool, b2_1x1, b2_3x3, i3a, i4a, i5b, gap, fc: (gap.c, 10) }
}

// ---------------------------------------------------------------------------------------------
// gemm_gflops
// ---------------------------------------------------------------------------------------------

/// One GEMM case: a name and the product, with its batch layout.
struct Case {
    name: String,
    g: Gemm,
}

impl Case {
    fn new(name: &str, g: Gemm) -> Case {
        Case { name: name.into(), g }
    }
    fn square(trans_a: bool, trans_b: bool, size: usize) -> Case {
        Case::new("square", Gemm::new(trans_a, trans_b, size, size, size))
    }
    /// The products `layers::ops::conv2d` runs for `layer` (im2col or direct 1x1), over the whole
    /// batch in one call: O = c_out, K = col_rows, P = col_cols.
    fn conv(layer: &Conv) -> Vec<Case> {
        let geo = layer.geo();
        let (k, p, o) = (geo.col_rows(), geo.col_cols(), geo.c_out);
        let name = |product: &str| format!("{}_{product}", layer.name);
        // y_i (O x P) = W (O x K) * cols_i (K x P)
        let fwd = Gemm { batch: N, b_stride: k * p, c_stride: o * p, ..Gemm::new(false, false, o, p, k) };
        // dW (O x K) = sum_i dy_i (O x P) * cols_i^T (P x K)
        let wgrad = Gemm { batch: N, a_stride: o * p, b_stride: k * p, ..Gemm::new(false, true, o, k, p) };
        // dcols_i (K x P) = W^T (K x O) * dy_i (O x P)
        let igrad = Gemm { batch: N, b_stride: o * p, c_stride: k * p, ..Gemm::new(true, false, k, p, o) };
        let mut cases = vec![Case::new(&name("fwd"), fwd), Case::new(&name("wgrad"), wgrad)];
        if !layer.first {
            cases.push(Case::new(&name("igrad"), igrad));
        }
        cases
    }
    /// The products of `layers::ops::linear` for x [N, inp], W [out, inp].
    fn linear(name: &str, inp: usize, out: usize) -> Vec<Case> {
        vec![
            Case::new(&format!("{name}_fwd"), Gemm::new(false, true, N, out, inp)),
            Case::new(&format!("{name}_igrad"), Gemm::new(false, false, N, inp, out)),
            Case::new(&format!("{name}_wgrad"), Gemm::new(true, false, out, inp, N)),
        ]
    }
    fn id(&self) -> BenchmarkId {
        let g = &self.g;
        let t = |b: bool| if b { "T" } else { "N" };
        let sum = if g.c_stride == 0 && g.batch > 1 { "_sumC" } else { "" };
        BenchmarkId::new(
            &self.name,
            format!("{}{}_m{}_n{}_k{}_b{}{}", t(g.trans_a), t(g.trans_b), g.m, g.n, g.k, g.batch, sum),
        )
    }
}

fn gemm_cases() -> Vec<Case> {
    let (nin, gn) = (nin(), googlenet());
    let mut cases = vec![
        Case::square(false, false, 512),
        Case::square(false, true, 512),
        Case::square(true, false, 512),
        Case::square(true, true, 512),
        Case::square(false, false, 1024),
    ];
    // NiN conv2's forward product for a single image.
    let mut single = Case::conv(&nin.convs[1]).remove(0);
    single.g.batch = 1;
    cases.push(single);
    let inceptions =
        [gn.i3a, gn.i4a, gn.i5b].into_iter().flat_map(|i| [i.conv_1x1(), i.conv_3x3(), i.conv_5x5()]);
    let googlenet_convs = [gn.b1, gn.b2_1x1, gn.b2_3x3].into_iter().chain(inceptions);
    for layer in nin.layers().into_iter().chain(googlenet_convs) {
        cases.extend(Case::conv(&layer));
    }
    cases.extend(Case::linear("googlenet_fc", gn.fc.0, gn.fc.1));
    cases
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_gflops");
    group.sampling_mode(SamplingMode::Flat);
    for (i, case) in gemm_cases().into_iter().enumerate() {
        let g = case.g;
        let seed = 3 * i as u64;
        let (la, lb, lc) = g.required_lengths().unwrap();
        bench(
            &mut group,
            case.id(),
            flops(g.flops()),
            || (buf(la, seed + 1), buf(lb, seed + 2), zeros(lc)),
            |(a, b, out)| Cpu.gemm(&g, a, b, out).unwrap(),
        );
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// im2col_gbps
// ---------------------------------------------------------------------------------------------

/// The convolutions whose unfolding (and output layout) the `im2col_gbps` and
/// `elementwise_gbps/transpose_blocks` benchmarks time.
fn unfolded_layers() -> Vec<Conv> {
    let (nin, gn) = (nin(), googlenet());
    vec![
        nin.convs[0].clone(),
        nin.convs[1].clone(),
        nin.convs[2].clone(),
        gn.b1,
        gn.b2_3x3,
        gn.i3a.conv_5x5(),
        gn.i4a.conv_1x1(),
        gn.i4a.conv_3x3(),
        gn.i5b.conv_3x3(),
    ]
}

fn bench_im2col(c: &mut Criterion) {
    let mut group = c.benchmark_group("im2col_gbps");
    for layer in &unfolded_layers() {
        let geo = layer.geo();
        let x_len = N * geo.c_in * geo.h * geo.w;
        let cols_len = N * geo.col_rows() * geo.col_cols();
        let moved = bytes(x_len + cols_len);
        bench(
            &mut group,
            BenchmarkId::new("im2col", layer.id()),
            moved.clone(),
            || (buf(x_len, 1), zeros(cols_len)),
            |(x, cols)| Cpu.im2col(x, &geo, 0, N, cols).unwrap(),
        );
        bench(
            &mut group,
            BenchmarkId::new("col2im", layer.id()),
            moved,
            || (buf(cols_len, 2), zeros(x_len)),
            |(cols, dx)| Cpu.col2im(cols, &geo, 0, N, dx).unwrap(),
        );
    }
    group.finish();
}

/// Each layer's output between the product's [O][N][P] layout and NCHW's [N][O][P].
fn bench_transpose_blocks(group: &mut Group) {
    for layer in &unfolded_layers() {
        let geo = layer.geo();
        let (o, p) = (geo.c_out, geo.col_cols());
        let y_len = N * o * p;
        for (dir, rows, cols) in [("to_nchw", o, N), ("from_nchw", N, o)] {
            bench(
                group,
                BenchmarkId::new("transpose_blocks", format!("{}_out_{dir}_n{N}_o{o}_p{p}", layer.name)),
                bytes(2 * y_len),
                || (buf(y_len, 3), zeros(y_len)),
                |(src, dst)| Cpu.transpose_blocks(src, 0, rows, cols, p, dst, 0).unwrap(),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// conv2d_gflops, conv1x1_gflops
// ---------------------------------------------------------------------------------------------

/// Inputs of one convolution layer: x, weight, bias and an output gradient.
struct ConvData {
    layer: Conv,
    x: Tensor<Cpu>,
    w: Tensor<Cpu>,
    b: Tensor<Cpu>,
    dy: Tensor<Cpu>,
}

impl ConvData {
    fn new(layer: &Conv) -> ConvData {
        let (n, c, hw, o, k, out) = (N, layer.c_in, layer.hw, layer.c_out, layer.k, layer.out_hw());
        ConvData {
            layer: layer.clone(),
            x: tensor(&[n, c, hw, hw], 101),
            w: tensor(&[o, c, k, k], 102),
            b: tensor(&[o], 103),
            dy: tensor(&[n, o, out, out], 104),
        }
    }
    /// One forward (and, if `backward`, one backward) pass through `layers::ops::conv2d_with`.
    fn run(&self, algo: ConvAlgo, backward: bool) {
        let x = if self.layer.first { Var::constant(self.x.clone()) } else { Var::parameter(self.x.clone()) };
        let (w, b) = (Var::parameter(self.w.clone()), Var::parameter(self.b.clone()));
        let (s, p) = (self.layer.stride, self.layer.pad);
        let y = conv2d_with(&x, &w, Some(&b), (s, s), (p, p), algo).unwrap();
        if backward {
            y.backward_with(self.dy.clone()).unwrap();
            black_box((x.grad(), w.grad(), b.grad()));
        } else {
            black_box(y.value());
        }
    }
}

/// `{prefix}forward` and `{prefix}fwd_bwd` of one layer.
fn bench_conv_layer(group: &mut Group, layer: &Conv, algo: ConvAlgo, prefix: &str) {
    for (pass, backward, f) in
        [("forward", false, layer.forward_flops()), ("fwd_bwd", true, layer.fwd_bwd_flops())]
    {
        bench(
            group,
            BenchmarkId::new(format!("{prefix}{pass}"), layer.id()),
            flops(f),
            || ConvData::new(layer),
            |data| data.run(algo, backward),
        );
    }
}

fn bench_conv(c: &mut Criterion) {
    let (nin, gn) = (nin(), googlenet());
    let mut group = c.benchmark_group("conv2d_gflops");
    group.sampling_mode(SamplingMode::Flat);
    for layer in nin.layers().iter().chain([gn.b1, gn.b2_3x3, gn.i3a.conv_1x1()].iter()) {
        bench_conv_layer(&mut group, layer, ConvAlgo::Auto, "");
    }
    group.finish();
}

fn bench_conv1x1(c: &mut Criterion) {
    let nin = nin();
    let mut group = c.benchmark_group("conv1x1_gflops");
    group.sampling_mode(SamplingMode::Flat);
    for layer in [nin.convs[0].pointwise(), nin.convs[1].pointwise()] {
        assert!(layer.geo().is_pointwise());
        bench_conv_layer(&mut group, &layer, ConvAlgo::Auto, "direct_");
        bench_conv_layer(&mut group, &layer, ConvAlgo::Im2col, "im2col_");
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// pool_gbps
// ---------------------------------------------------------------------------------------------

fn bench_pool(c: &mut Criterion) {
    let (nin, gn) = (nin(), googlenet());
    let mut group = c.benchmark_group("pool_gbps");
    let googlenet_pools = [gn.i3a.pool(), gn.i4a.pool(), gn.i5b.pool(), gn.b1_pool.clone()];
    let max_pools = nin.pools.iter().chain(googlenet_pools.iter());
    for (pool, max) in max_pools.map(|p| (p, true)).chain(googlenet_pools.iter().map(|p| (p, false))) {
        let geo = pool.geo();
        let (x_len, y_len) = (geo.planes() * geo.h * geo.w, geo.planes() * geo.out_h * geo.out_w);
        let inputs = || (buf(x_len, 11), buf(y_len, 12), zeros(x_len), zeros(y_len));
        if max {
            // The backward reads the arg-max indices a forward stored.
            let with_argmax = || {
                let (x, dy, dx, mut y) = inputs();
                let mut argmax = zeros(y_len);
                Cpu.max_pool2d_forward(&x, &geo, &mut y, &mut argmax).unwrap();
                (x, dy, dx, y, argmax)
            };
            let fwd = BenchmarkId::new("max_pool2d_forward", pool.id());
            let moved = bytes(x_len + 2 * y_len);
            bench(&mut group, fwd, moved.clone(), with_argmax, |(x, _, _, y, arg)| {
                Cpu.max_pool2d_forward(x, &geo, y, arg).unwrap()
            });
            let bwd = BenchmarkId::new("max_pool2d_backward", pool.id());
            bench(&mut group, bwd, moved, with_argmax, |(_, dy, dx, _, arg)| {
                Cpu.max_pool2d_backward(arg, dy, &geo, dx).unwrap()
            });
        } else {
            let fwd = BenchmarkId::new("avg_pool2d_forward", pool.id());
            bench(&mut group, fwd, bytes(x_len + y_len), inputs, |(x, _, _, y)| {
                Cpu.avg_pool2d_forward(x, &geo, y).unwrap()
            });
            let bwd = BenchmarkId::new("avg_pool2d_backward", pool.id());
            bench(&mut group, bwd, bytes(x_len + y_len), inputs, |(_, dy, dx, _)| {
                Cpu.avg_pool2d_backward(dy, &geo, dx).unwrap()
            });
        }
    }
    for act in [gn.gap, nin.gap] {
        let (planes, plane_len) = (N * act.c, act.hw * act.hw);
        let moved = bytes(act.len() + planes);
        let inputs = || (buf(act.len(), 13), buf(planes, 14), zeros(act.len()), zeros(planes));
        let fwd = BenchmarkId::new("global_avg_pool_forward", act.id());
        bench(&mut group, fwd, moved.clone(), inputs, |(x, _, _, y)| {
            Cpu.global_avg_pool_forward(x, planes, plane_len, y).unwrap()
        });
        let bwd = BenchmarkId::new("global_avg_pool_backward", act.id());
        bench(&mut group, bwd, moved, inputs, |(_, dy, dx, _)| {
            Cpu.global_avg_pool_backward(dy, planes, plane_len, dx).unwrap()
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// activation_gbps, elementwise_gbps
// ---------------------------------------------------------------------------------------------

/// NiN's dropout input (pool3's output) and conv1's output.
const NIN_DROPOUT_IN: Act = Act { name: "nin_pool3_out", c: 384, hw: 5 };
const NIN_CONV1_OUT: Act = Act { name: "nin_conv1_out", c: 96, hw: 54 };

fn bench_activation(c: &mut Criterion) {
    let mut group = c.benchmark_group("activation_gbps");
    for act in [NIN_DROPOUT_IN, NIN_CONV1_OUT] {
        let len = act.len();
        // (x or y, dy or mask, out, mask)
        let inputs = || (buf(len, 21), buf(len, 22), zeros(len), zeros(len));
        let id = |kernel: &str| BenchmarkId::new(kernel, act.id());
        bench(&mut group, id("relu_forward"), bytes(2 * len), inputs, |(x, _, y, _)| {
            Cpu.relu_forward(x, y).unwrap()
        });
        bench(&mut group, id("relu_backward"), bytes(3 * len), inputs, |(y, dy, dx, _)| {
            Cpu.relu_backward(y, dy, dx).unwrap()
        });
        bench(&mut group, id("dropout_forward"), bytes(3 * len), inputs, |(x, _, y, mask)| {
            Cpu.dropout_forward(x, 0.5, 7, y, mask).unwrap()
        });
        // The backward of dropout is `dx = dy * mask`.
        bench(&mut group, id("dropout_backward"), bytes(3 * len), inputs, |(dy, mask, dx, _)| {
            Cpu.mul(dy, mask, dx).unwrap()
        });
    }
    group.finish();
}

/// `copy_channels` of an Inception block's four branch outputs into the concatenation
/// (`split == false`), or back out of it.
fn inception_concat(block: &Inception, branches: &mut [CpuBuffer; 4], joined: &mut CpuBuffer, split: bool) {
    let (total, plane) = (block.out_channels(), block.hw * block.hw);
    let mut first = 0;
    for (count, branch) in block.branches().into_iter().zip(branches.iter_mut()) {
        if split {
            Cpu.copy_channels(joined, total, first, branch, count, 0, count, N, plane).unwrap();
        } else {
            Cpu.copy_channels(branch, count, 0, joined, total, first, count, N, plane).unwrap();
        }
        first += count;
    }
}

/// The four Winograd tile transforms of a stride-1 square convolution computed as F(m x m,
/// k x k) (tile side a = m + k - 1), over the whole batch. The transforms' values do not change
/// the work, so random ones stand in for the real matrices.
fn bench_winograd_layer(group: &mut Group, layer: &Conv, m: usize) {
    let geo = layer.geo();
    let a = m + layer.k - 1;
    let tiles =
        ConvGeometry::new(N, layer.c_in, layer.hw, layer.hw, 1, Window::square(a, m, layer.pad)).unwrap();
    let out = ConvGeometry::new(N, layer.c_out, geo.out_h, geo.out_w, 1, Window::square(m, m, 0)).unwrap();
    assert_eq!(tiles.out_h * m, geo.out_h, "{}: F({m}) tiles must cover the output", layer.name);
    let x_len = N * layer.c_in * layer.hw * layer.hw;
    let v_len = a * a * layer.c_in * N * tiles.col_cols();
    let y_len = N * layer.c_out * geo.out_h * geo.out_w;
    let points_len = a * a * layer.c_out * N * out.col_cols();
    let (bt, at) = (values(a * a, 51), values(m * a, 52));
    let id = |kernel: &str| BenchmarkId::new(kernel, format!("{}_f{m}", layer.id()));
    let (tiles_in, tiles_out) = (|| (buf(x_len, 53), zeros(v_len)), bytes(x_len + v_len));
    bench(group, id("winograd_tiles"), tiles_out.clone(), tiles_in, |(x, v)| {
        Cpu.winograd_tiles(x, &tiles, 0, N, &bt, v).unwrap()
    });
    bench(group, id("winograd_tiles_backward"), tiles_out, tiles_in, |(dx, dv)| {
        Cpu.winograd_tiles_backward(dv, &tiles, 0, N, &bt, dx).unwrap()
    });
    let (untile_in, untile_out) = (|| (buf(points_len, 54), zeros(y_len)), bytes(points_len + y_len));
    bench(group, id("winograd_untile"), untile_out.clone(), untile_in, |(points, y)| {
        Cpu.winograd_untile(points, &out, 0, N, &at, y).unwrap()
    });
    bench(group, id("winograd_untile_backward"), untile_out, untile_in, |(dm, dy)| {
        Cpu.winograd_untile_backward(dy, &out, 0, N, &at, dm).unwrap()
    });
}

fn bench_winograd(c: &mut Criterion) {
    let (nin, gn) = (nin(), googlenet());
    let mut group = c.benchmark_group("winograd_gbps");
    // NiN conv3 (3x3 at 12x12) and GoogLeNet b2 (3x3 at 24x24) as F(4x4, 3x3); NiN conv2
    // (5x5 at 26x26) as F(2x2, 5x5).
    bench_winograd_layer(&mut group, &nin.convs[2], 4);
    bench_winograd_layer(&mut group, &gn.b2_3x3, 4);
    bench_winograd_layer(&mut group, &nin.convs[1], 2);
    group.finish();
}

fn bench_bias(c: &mut Criterion) {
    let gn = googlenet();
    let mut group = c.benchmark_group("bias_gbps");
    // NiN conv1's output (96 channels of 2916) and GoogLeNet 5b's 1x1 output (384 of 9).
    let gn_5b_1x1_out = Act { name: "googlenet_5b_1x1_out", c: gn.i5b.c1, hw: gn.i5b.hw };
    for act in [NIN_CONV1_OUT, gn_5b_1x1_out] {
        let (len, ch, inner) = (act.len(), act.c, act.hw * act.hw);
        // (y or dy, bias, dbias, dz)
        let inputs = || (buf(len, 31), buf(ch, 32), zeros(ch), zeros(len));
        let id = |kernel: &str| BenchmarkId::new(kernel, act.id());
        bench(&mut group, id("add_bias"), bytes(2 * len + ch), inputs, |(y, b, _, _)| {
            Cpu.add_bias(y, b, N, ch, inner).unwrap()
        });
        bench(&mut group, id("bias_grad"), bytes(len + ch), inputs, |(dy, _, db, _)| {
            Cpu.bias_grad(dy, N, ch, inner, db).unwrap()
        });
        bench(&mut group, id("bias_relu"), bytes(2 * len + ch), inputs, |(y, b, _, _)| {
            Cpu.bias_relu(y, Some(b), N, ch, inner).unwrap()
        });
        // y doubles as dy: the mask and the sum read the same amount either way.
        bench(&mut group, id("bias_relu_backward"), bytes(3 * len + ch), inputs, |(y, _, db, dz)| {
            Cpu.bias_relu_backward(y, y, dz, Some(db), N, ch, inner).unwrap()
        });
    }
    group.finish();
}

fn bench_elementwise(c: &mut Criterion) {
    let gn = googlenet();
    let mut group = c.benchmark_group("elementwise_gbps");
    bench_transpose_blocks(&mut group);
    // Inception joins: four copy_channels calls move the whole output once each way.
    for block in [gn.i3a, gn.i5b] {
        let len = N * block.out_channels() * block.hw * block.hw;
        let inputs = || (block.branches().map(|ch| buf(N * ch * block.hw * block.hw, ch as u64)), zeros(len));
        let shape =
            format!("n{N}_c{}_{}x{}", block.branches().map(|c| c.to_string()).join("-"), block.hw, block.hw);
        for (split, what) in [(false, "concat"), (true, "split")] {
            let id = BenchmarkId::new("copy_channels", format!("{}_{what}_{shape}", block.name));
            bench(&mut group, id, bytes(2 * len), inputs, |(branches, joined)| {
                inception_concat(&block, branches, joined, split)
            });
        }
    }
    // Whole-buffer maps and reductions on NiN conv1's output.
    let (act, len) = (NIN_CONV1_OUT, NIN_CONV1_OUT.len());
    let inputs = || (buf(len, 41), buf(len, 42), zeros(1));
    let id = |kernel: &str| BenchmarkId::new(kernel, act.id());
    bench(&mut group, id("axpy"), bytes(3 * len), inputs, |(x, y, _)| Cpu.axpy(0.5, x, y).unwrap());
    // Scaling by -1 keeps the values bounded however many times it runs.
    bench(&mut group, id("scale"), bytes(2 * len), inputs, |(x, _, _)| Cpu.scale(x, -1.0).unwrap());
    bench(&mut group, id("sum"), bytes(len + 1), inputs, |(x, _, out)| Cpu.sum(x, out).unwrap());
    bench(&mut group, id("fill"), bytes(len), inputs, |(x, _, _)| Cpu.fill(x, 0.25).unwrap());
    bench(&mut group, id("copy"), bytes(2 * len), inputs, |(x, _, _)| drop(black_box(Cpu.copy(x).unwrap())));
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// loss_gbps, optim_gbps
// ---------------------------------------------------------------------------------------------

fn bench_loss(c: &mut Criterion) {
    let (n, classes) = (N, 10);
    let len = n * classes;
    let mut group = c.benchmark_group("loss_gbps");
    let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
    let inputs = || (buf(len, 51), &labels, Cpu.from_slice(&[1.0, 0.0]).unwrap(), zeros(1), zeros(len));
    let id = |kernel: &str| BenchmarkId::new(kernel, format!("n{n}_classes{classes}"));
    bench(
        &mut group,
        id("softmax_cross_entropy_forward"),
        bytes(len + n + 2),
        inputs,
        |(logits, labels, loss, correct, _)| {
            Cpu.softmax_cross_entropy_forward(logits, labels, n, classes, loss, correct).unwrap()
        },
    );
    bench(
        &mut group,
        id("softmax_cross_entropy_backward"),
        bytes(2 * len + n + 1),
        inputs,
        |(logits, labels, dloss, _, dlogits)| {
            Cpu.softmax_cross_entropy_backward(logits, labels, n, classes, dloss, dlogits).unwrap()
        },
    );
    group.finish();
}

fn bench_optim(c: &mut Criterion) {
    let mut group = c.benchmark_group("optim_gbps");
    let sgd = SgdStep { lr: 0.01, momentum: 0.9, weight_decay: 5e-4 };
    let adam = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 10 };
    for (model, len) in [("nin", NIN_PARAMS), ("googlenet", GOOGLENET_PARAMS)] {
        let inputs = || (buf(len, 61), buf(len, 62), zeros(len), zeros(len));
        // SGD reads p, g, v and writes p, v; Adam reads p, g, m, v and writes p, m, v.
        bench(
            &mut group,
            BenchmarkId::new("sgd_momentum_step", format!("{model}_{len}")),
            bytes(5 * len),
            inputs,
            |(p, g, v, _)| Cpu.sgd_step(p, g, Some(v), &sgd).unwrap(),
        );
        bench(
            &mut group,
            BenchmarkId::new("adam_step", format!("{model}_{len}")),
            bytes(7 * len),
            inputs,
            |(p, g, m, v)| Cpu.adam_step(p, g, m, v, &adam).unwrap(),
        );
    }
    group.finish();
}

fn config() -> Criterion {
    eprintln!(
        "kernels bench: {} hardware threads (rayon's default pool size unless RAYON_NUM_THREADS is set)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_gemm, bench_im2col, bench_winograd, bench_conv, bench_conv1x1, bench_pool, bench_activation, bench_bias, bench_elementwise, bench_loss, bench_optim
}
criterion_main!(benches);
