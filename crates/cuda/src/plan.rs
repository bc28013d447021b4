//! How the CUDA backend launches each kernel: grids, split-k, block counts. Pure functions of the
//! arguments and the device's multiprocessor count, so that the cost model
//! (`cargo bench --bench gpu -- --model`) predicts the very launches the backend makes, and
//! tests can check them without a GPU.
use cudarc::driver::LaunchConfig;
use tensor::{ConvAlgorithm, ConvGeometry, ConvPlan, Gemm};

/// Column values per im2col chunk (256 MiB of f32): large chunks make large products, and a GPU
/// has the memory; NiN@224's largest layer takes 41 of 128 images a chunk.
const CHUNK_VALUES: usize = 64 << 20;

/// 1x1 convolutions on planes of at least this many values take the direct per-image products;
/// on smaller planes (GoogLeNet's 6x6 and 3x3) a per-image product is one part-empty 64-wide
/// tile per item, and the unfolded chunk (a transpose for a 1x1 kernel) makes one wide product.
const DIRECT_MIN_PLANE: usize = 256;

/// The forward keeps a batch's column matrices for the backward when they hold at most this many
/// values (1 GiB): NiN@224's largest at batch 128 holds 207 Mi values (830 MB).
const KEEP_COLUMNS_MAX: usize = 256 << 20;

/// A convolution on the GPU: the direct per-image products for 1x1 kernels on large planes (a
/// product per image fills the GPU through the batch), im2col in large chunks otherwise, its
/// columns kept from the forward for the weight gradient when they fit in 1 GiB (a
/// second unfolding is a full pass over the column matrix, about as long as a product's
/// memory traffic; the memory is there on a GPU).
/// Stacked outputs (Inception's 1x1 branches) are stored from the product by their epilogues
/// (`gemm_rows_epilogue`, four outputs a launch), with no transposes or bias passes after it,
/// and a 1x1 convolution's input gradient by its product (the TN epilogue kernel, no col2im).
/// In TF32 a convolution with a kernel larger than 1x1 takes the implicit products instead
/// ([`implicit`]): no column matrices at all, the whole batch one product each.
/// Winograd is not planned: its transforms would be extra passes over memory on top of products
/// that the FP32 kernel already spends its time on (the CPU, bound by arithmetic, gains from it),
/// and in TF32 its larger tiles (F(4x4, 3x3), F(2x2, 5x5)) lose an order of magnitude of accuracy
/// (about 3e-3 of the output's norm against 3e-4 for the direct product).
pub fn conv(geo: &ConvGeometry, arithmetic: Arithmetic) -> ConvPlan {
    let algorithm = if geo.is_pointwise() && geo.col_cols() >= DIRECT_MIN_PLANE {
        ConvAlgorithm::Direct
    } else {
        ConvAlgorithm::Im2col
    };
    let columns = geo.n.saturating_mul(geo.col_rows()).saturating_mul(geo.col_cols());
    let implicit = algorithm == ConvAlgorithm::Im2col && implicit(geo, arithmetic);
    let keep_columns = algorithm == ConvAlgorithm::Im2col && columns <= KEEP_COLUMNS_MAX && !implicit;
    let epilogue_stores = algorithm == ConvAlgorithm::Im2col;
    let implicit_input_grad = implicit && implicit_input_grad(geo, arithmetic);
    ConvPlan {
        algorithm,
        chunk_values: CHUNK_VALUES,
        keep_columns,
        epilogue_stores,
        implicit,
        implicit_input_grad,
        input_grad_masks: true,
    }
}

/// Whether a convolution's products are implicit on the GPU (kernels/gemm.cu's Gather: the
/// forward and the weight gradient gather the input, the input gradient the output gradient, as
/// each product reads its operand): in TF32 (the FP32 kernels stay the exact path, on columns)
/// and for kernels larger than 1x1 (a 1x1 kernel's columns are the input itself, read directly
/// or moved by one transpose).
pub fn implicit(geo: &ConvGeometry, arithmetic: Arithmetic) -> bool {
    arithmetic == Arithmetic::Tf32 && !geo.is_pointwise()
}

/// Whether the input gradient of an implicit convolution is itself implicit (`tgemm*_dgrad`):
/// stride 1, where it is the correlation of dy with the weights, and input channels a multiple
/// of 32, the product's rows, which the 64-, 96- and 128-row tiles then cover with little
/// padding (NiN conv2's 96 exactly): the implicit product has c_in rows, the explicit one
/// (`W^T dy` into columns, then `col2im`) c_in * kh * kw, so a ragged c_in (GoogLeNet's 16, 24
/// and 48-channel 5x5 inputs) wastes more of the implicit product than the fold costs.
pub fn implicit_input_grad(geo: &ConvGeometry, arithmetic: Arithmetic) -> bool {
    implicit(geo, arithmetic) && geo.window.stride == (1, 1) && geo.c_in.is_multiple_of(32)
}

/// The implicit forward of images `first..first + count` as a product: y (c_out rows,
/// `count * out_h * out_w` columns) = w (c_out x c_in*kh*kw) times x gathered.
pub fn forward_gemm(geo: &ConvGeometry, first: usize, count: usize) -> Gemm {
    let (k, p) = (geo.col_rows(), geo.col_cols());
    Gemm { c_offset: first * geo.c_out * p, ..Gemm::conv(false, false, geo.c_out, count * p, k) }
}

/// The implicit weight gradient from `count` images as a product: dw (c_out x c_in*kh*kw) =
/// dy (c_out x count*out_h*out_w) times x gathered, transposed; beta 1 adds to dw.
pub fn weight_grad_gemm(geo: &ConvGeometry, count: usize, beta: f32) -> Gemm {
    Gemm { beta, ..Gemm::conv(false, true, geo.c_out, geo.col_rows(), count * geo.col_cols()) }
}

/// The implicit input gradient of images `first..first + count` as a product: `dx` (c_in rows,
/// `count * h * w` columns) = Wt (c_in x kh*kw*c_out, the weights transposed) times dy gathered,
/// k ordered (kernel row, kernel column, output channel).
pub fn input_grad_gemm(geo: &ConvGeometry, first: usize, count: usize) -> Gemm {
    let (kh, kw) = geo.window.kernel;
    let image = geo.c_in * geo.h * geo.w;
    Gemm {
        c_offset: first * image,
        ..Gemm::conv(false, false, geo.c_in, count * geo.h * geo.w, kh * kw * geo.c_out)
    }
}

/// An implicit convolution product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implicit {
    /// The forward (`tgemm*_conv_fwd`), through the convolution's epilogue.
    Forward,
    /// The weight gradient (`tgemm64_conv_wgrad`, `tgemm96_conv_wgrad`: no 128-row tile).
    WeightGrad,
    /// The stride-1 input gradient (`tgemm*_dgrad`).
    InputGrad,
}

/// The launch of an implicit product `g`: as [`gemm`]'s (tile height and split-k by
/// [`tile_rows`]), but for the weight gradient, whose kernel has no 128-row tile (it spilled).
pub fn implicit_gemm(g: &Gemm, multiprocessors: usize, product: Implicit) -> GemmLaunch {
    let heights: &[usize] = if product == Implicit::WeightGrad { &[96, 64] } else { &TF32_ROWS };
    gemm_with_rows(g, Arithmetic::Tf32, tile_rows(g, multiprocessors, Arithmetic::Tf32, heights))
}

/// The kernel of an implicit product for its launch's tile height.
pub fn implicit_kernel(product: Implicit, launch: &GemmLaunch) -> &'static str {
    match (product, launch.rows) {
        (Implicit::Forward, 64) => "tgemm64_conv_fwd",
        (Implicit::Forward, 96) => "tgemm96_conv_fwd",
        (Implicit::Forward, _) => "tgemm_conv_fwd",
        (Implicit::WeightGrad, 96) => "tgemm96_conv_wgrad",
        (Implicit::WeightGrad, _) => "tgemm64_conv_wgrad",
        (Implicit::InputGrad, 64) => "tgemm64_dgrad",
        (Implicit::InputGrad, 96) => "tgemm96_dgrad",
        (Implicit::InputGrad, _) => "tgemm_dgrad",
    }
}

/// Grid-stride launch for `n` elements: 256 threads a block, at most 65,535 blocks (the kernels
/// loop over the rest).
pub fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// One block (the loss and `sum`: a fixed-order reduction in one block).
pub fn single_block(threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// One 256-thread block per plane (global average pooling's forward).
pub fn per_plane(planes: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (planes.min(0x7fff_ffff) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The arithmetic of a product on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// `sgemm_*`: FP32 FMAs, a 64 x 64 tile per 256-thread block, k in slices of 16.
    Fp32,
    /// `tgemm_*`: TF32 tensor cores (mma.sync m16n8k8), a 128 x 128 tile per 256-thread block,
    /// k in slices of 32 through a 3-stage cp.async ring in dynamic shared memory; `tgemm64_*`
    /// and `tgemm96_*` the same on 64 x 128 tiles of 128 threads and 96 x 128 tiles of 256, for
    /// products of few or ragged rows ([`tile_rows`]).
    Tf32,
}

impl Arithmetic {
    /// Columns of C one block computes (and rows, but for the TF32 kernels' 64- and 96-row
    /// tiles: [`tile_rows`]).
    pub fn tile(self) -> usize {
        match self {
            Arithmetic::Fp32 => 64,
            Arithmetic::Tf32 => 128,
        }
    }
    /// k per shared-memory slice (the unit a split-k part is counted in).
    pub fn slice(self) -> usize {
        match self {
            Arithmetic::Fp32 => 16,
            Arithmetic::Tf32 => 32,
        }
    }
    /// The most dynamic shared memory a block of this arithmetic needs (the 128-row TF32 tile's:
    /// the backend opts every TF32 kernel in to it).
    pub fn shared_bytes(self) -> u32 {
        match self {
            Arithmetic::Fp32 => 0,
            Arithmetic::Tf32 => tgemm_shared_bytes(128),
        }
    }
}

/// kernels/gemm.cu's `TShape<ROWS>::SHARED_BYTES`: three stages of A's `rows` x 36-float tile
/// and B's 128 x 36 (108 KiB for 128 rows, 94.5 KiB for 96, 81 KiB for 64).
pub const fn tgemm_shared_bytes(rows: usize) -> u32 {
    (3 * (rows + 128) * 36 * 4) as u32
}
/// Threads of an FP32 GEMM block and of a 128- or 96-row TF32 one (a 64-row TF32 block has half).
pub const GEMM_THREADS: u32 = 256;
/// kernels/gemm.cu's `TShape<ROWS>::THREADS`: 8 warps (2 x 4) for 128 and 96 rows, 4 (1 x 4) for
/// 64.
pub const fn tgemm_threads(rows: usize) -> u32 {
    if rows <= 64 {
        GEMM_THREADS / 2
    } else {
        GEMM_THREADS
    }
}
/// The TF32 tile heights there are kernels for, the preferred first (on equal time, fewer and
/// larger blocks).
pub const TF32_ROWS: [usize; 3] = [128, 96, 64];

/// The share of the TF32 kernels' assumed speed a tile height keeps (the cost model's, and the
/// tile choice's): 1 for the 64 x 32 warp tiles of the 128- and 64-row kernels; 0.9 for the
/// 96-row kernel's 48 x 32, whose warps load 5 fragments by ldmatrix per 12 mma.sync instead of 6
/// per 16 (shared-memory reads per product a ninth higher). A guess until a GPU measures it.
pub fn tile_efficiency(arithmetic: Arithmetic, rows: usize) -> f64 {
    if arithmetic == Arithmetic::Tf32 && rows == 96 {
        0.9
    } else {
        1.0
    }
}
/// A split part covers at least this many slices: shorter parts cost more in workspace traffic
/// than their blocks add.
const MIN_SLICES_PER_PART: usize = 4;
/// At most this many parts (a bound on the workspace: parts x m x n values).
const MAX_SPLITS: usize = 512;

/// One GEMM launch: its arithmetic, its grid, and into how many parts the sum is cut (1: no
/// split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmLaunch {
    /// The kernel family: FP32 or TF32 tensor cores.
    pub arithmetic: Arithmetic,
    /// Rows of C a block computes ([`tile_rows`]).
    pub rows: usize,
    /// (column tiles of C, row tiles of C, z): z is the split parts, or the batch items (at
    /// most 65,535; the kernel strides over the rest), or 1 for a batch summed into one C.
    pub grid: (u32, u32, u32),
    /// Parts the sum over k (and over the batch, when it is summed into one C) is cut into; with
    /// more than one, a reduction launch adds the parts.
    pub splits: usize,
}

impl GemmLaunch {
    /// The launch configuration: this grid, [`GemmLaunch::threads`] a block, the kernel's
    /// dynamic shared memory.
    pub fn config(&self) -> LaunchConfig {
        let shared_mem_bytes = match self.arithmetic {
            Arithmetic::Fp32 => 0,
            Arithmetic::Tf32 => tgemm_shared_bytes(self.rows),
        };
        LaunchConfig { grid_dim: self.grid, block_dim: (self.threads(), 1, 1), shared_mem_bytes }
    }
    /// Threads a block: [`GEMM_THREADS`], or 128 for a 64-row TF32 tile ([`tgemm_threads`]).
    pub fn threads(&self) -> u32 {
        match self.arithmetic {
            Arithmetic::Fp32 => GEMM_THREADS,
            Arithmetic::Tf32 => tgemm_threads(self.rows),
        }
    }
    /// Blocks in the grid.
    pub fn blocks(&self) -> usize {
        self.grid.0 as usize * self.grid.1 as usize * self.grid.2 as usize
    }
}

/// The kernel for a product's layout and launch.
pub fn gemm_kernel(g: &Gemm, launch: &GemmLaunch) -> &'static str {
    const FP32: [&str; 4] = ["sgemm_nn", "sgemm_nt", "sgemm_tn", "sgemm_tt"];
    const TF32: [&str; 4] = ["tgemm_nn", "tgemm_nt", "tgemm_tn", "tgemm_tt"];
    const TF32_64: [&str; 4] = ["tgemm64_nn", "tgemm64_nt", "tgemm64_tn", "tgemm64_tt"];
    const TF32_96: [&str; 4] = ["tgemm96_nn", "tgemm96_nt", "tgemm96_tn", "tgemm96_tt"];
    let names = match (launch.arithmetic, launch.rows) {
        (Arithmetic::Fp32, _) => &FP32,
        (Arithmetic::Tf32, 64) => &TF32_64,
        (Arithmetic::Tf32, 96) => &TF32_96,
        (Arithmetic::Tf32, _) => &TF32,
    };
    names[2 * g.trans_a as usize + g.trans_b as usize]
}

/// The kernel of a product with a convolution's epilogue (`Backend::gemm_epilogue`): NN (a
/// convolution's forward) or TN (a 1x1 convolution's input gradient, `W^T dy` stored as NCHW),
/// the layouts built with it.
pub fn gemm_epilogue_kernel(launch: &GemmLaunch, trans_a: bool) -> &'static str {
    let [nn, tn] = match (launch.arithmetic, launch.rows) {
        (Arithmetic::Fp32, _) => ["sgemm_nn_epilogue", "sgemm_tn_epilogue"],
        (Arithmetic::Tf32, 64) => ["tgemm64_nn_epilogue", "tgemm64_tn_epilogue"],
        (Arithmetic::Tf32, 96) => ["tgemm96_nn_epilogue", "tgemm96_tn_epilogue"],
        (Arithmetic::Tf32, _) => ["tgemm_nn_epilogue", "tgemm_tn_epilogue"],
    };
    if trans_a {
        tn
    } else {
        nn
    }
}

/// Outputs one product's epilogue stores (kernels/gemm.cu's EPI_PARTS): `gemm_rows_epilogue`
/// launches one product per group of this many.
pub const EPILOGUE_PARTS: usize = 4;

/// Whether the epilogue kernels store these outputs of one product (`gemm_rows_epilogue`, given
/// each output's block length): B not transposed (they are NN and TN) and one block layout for
/// all. Otherwise the outputs are composed, a product each.
pub fn fuses_rows(g: &Gemm, blocks: &[usize]) -> bool {
    !g.trans_b && blocks.windows(2).all(|w| w[0] == w[1])
}

/// The launch of a product on a GPU of `multiprocessors` SMs. One block per tile of C and
/// batch item; a product whose C is shared by the whole launch (a single product, or a batch
/// summed into one C) may instead be split along its sum (items and k) into parts, each at
/// least four slices long, whose raw sums a second launch adds (`split_parts`).
pub fn gemm(g: &Gemm, multiprocessors: usize, arithmetic: Arithmetic) -> GemmLaunch {
    gemm_with_rows(g, arithmetic, tile_rows(g, multiprocessors, arithmetic, &TF32_ROWS))
}

/// The tile height of a product, and the split-k parts with it: the FP32 kernel's 64; in TF32
/// the one of `heights` under which
/// the product takes the least time as the cost model counts it (its busiest SM's tiles at the
/// height's [`tile_efficiency`], with the split-k [`gemm`] would choose for it), the first of
/// them unless a later one saves at least 5 % of that time (as a split must). So a ragged row count
/// takes the tile it wastes least (96 rows for NiN's 96 channels, 64 for GoogLeNet's 16 to 64,
/// 128-row tiles half empty either way), and a grid whose last round of 128-row tiles would
/// leave SMs idle may take more, lower tiles (NiN conv3's 384 x 18,432 forward: 432 tiles of
/// 128 rows, 4 on the busiest SM for 3.3 on average, or 864 of 64 rows, 7 for 6.5: an eighth
/// less).
pub fn tile_rows(
    g: &Gemm,
    multiprocessors: usize,
    arithmetic: Arithmetic,
    heights: &[usize],
) -> (usize, usize) {
    if arithmetic == Arithmetic::Fp32 {
        let rows = arithmetic.tile();
        return (rows, gemm_time(g, multiprocessors, arithmetic, rows).0);
    }
    let mut best = (f64::INFINITY, arithmetic.tile(), 1);
    for &rows in heights {
        let (splits, time) = gemm_time(g, multiprocessors, arithmetic, rows);
        // A height after the first must save SPLIT_GAIN: a few percent of a last round is
        // within what the model cannot tell apart (and the larger tile reads less per FLOP).
        let gain = if best.0.is_finite() { SPLIT_GAIN } else { 0.0 };
        if time < best.0 * (1.0 - gain) {
            best = (time, rows, splits);
        }
    }
    (best.1, best.2)
}

/// [`gemm`] on tiles of `rows` rows, its sum cut into `splits` parts ([`tile_rows`]).
fn gemm_with_rows(g: &Gemm, arithmetic: Arithmetic, (rows, splits): (usize, usize)) -> GemmLaunch {
    let tiles = (g.n.div_ceil(arithmetic.tile()) as u32, g.m.div_ceil(rows) as u32);
    let summed = g.c_stride == 0 && g.batch > 1;
    if splits > 1 {
        return GemmLaunch { arithmetic, rows, grid: (tiles.0, tiles.1, splits as u32), splits };
    }
    // The kernel walks the batch in steps of gridDim.z, so z is clamped to the hardware limit.
    let z = if summed { 1 } else { g.batch.min(65_535) as u32 };
    GemmLaunch { arithmetic, rows, grid: (tiles.0, tiles.1, z), splits: 1 }
}

/// The split-k parts of a product on tiles of `rows` rows (1: none; only a single product or a
/// batch summed into one C is split, by [`split_parts`]) and its time in the units
/// [`split_parts`] weighs (FLOPs at the arithmetic's full rate on every SM).
fn gemm_time(g: &Gemm, multiprocessors: usize, arithmetic: Arithmetic, rows: usize) -> (usize, f64) {
    let summed = g.c_stride == 0 && g.batch > 1;
    let slices = g.k.div_ceil(arithmetic.slice());
    if summed || g.batch == 1 {
        let steps = if summed { g.batch } else { 1 } * slices;
        return split_parts(g, multiprocessors, arithmetic, rows, steps);
    }
    // One block per tile and item.
    let sms = multiprocessors.max(1);
    let blocks = g.n.div_ceil(arithmetic.tile()) * g.m.div_ceil(rows) * g.batch;
    let busiest = blocks.div_ceil(sms).max(saturating_blocks(arithmetic, rows));
    let tile = 2.0 * (rows * arithmetic.tile() * slices * arithmetic.slice()) as f64;
    (1, busiest as f64 * tile * sms as f64 / tile_efficiency(arithmetic, rows))
}

/// A GPU's arithmetic per byte of memory traffic at which a product and a pass over memory take
/// the same time (the cost model's H200: TF32 `mma.sync` at 35 % of 494.7 TFLOP/s or the FP32
/// SGEMM at 50 % of 66.9, against 80 % of 4.3 TB/s): what a split weighs its reduction's
/// traffic against.
fn balance(arithmetic: Arithmetic) -> f64 {
    match arithmetic {
        Arithmetic::Tf32 => 50.0,
        Arithmetic::Fp32 => 10.0,
    }
}
/// A launch's least time on the device (2 us) as bytes streamed at that bandwidth.
const LAUNCH_BYTES: f64 = 7e6;
/// A split must save at least this share of the whole product's time to be taken: a few
/// percent of a large product's last round is not worth its workspace.
const SPLIT_GAIN: f64 = 0.05;

/// Blocks of a product that an SM needs to reach its ceiling (the cost model's): 8 warps of
/// TF32 `mma.sync` (one 128- or 96-row block, two 64-row ones), two FP32 blocks.
pub fn saturating_blocks(arithmetic: Arithmetic, rows: usize) -> usize {
    match arithmetic {
        Arithmetic::Tf32 => (GEMM_THREADS / tgemm_threads(rows)) as usize,
        Arithmetic::Fp32 => 2,
    }
}

/// Parts a single or summed product of `steps` k slices is cut into (1: not split). Its tiles'
/// blocks spread over the SMs, and the product takes as long as the busiest SM (with fewer
/// blocks than [`saturating_blocks`], an SM runs below its ceiling): cutting the sum into s
/// parts makes s times the blocks, each s times shorter, which fills a GPU that whole tiles
/// leave part-idle or evens out a last round, at the cost of writing the parts and adding them
/// (a second launch). The parts are chosen for the least time so counted, if that saves at least
/// [`SPLIT_GAIN`]: NiN conv2's weight gradient in TF32 (2 x 19 tiles of 128) takes 24 parts
/// (912 blocks: 7 on the busiest SMs, 6.9 on average), NiN conv3's implicit input gradient
/// (288 tiles: 3 on the busiest SMs for 2.2 on average) 4 (9 for 8.7). Returns the parts and
/// the product's time with them, in FLOPs at the full rate of every SM.
fn split_parts(
    g: &Gemm,
    multiprocessors: usize,
    arithmetic: Arithmetic,
    rows: usize,
    steps: usize,
) -> (usize, f64) {
    let sms = multiprocessors.max(1);
    let tiles = g.n.div_ceil(arithmetic.tile()) * g.m.div_ceil(rows);
    let most = (steps / MIN_SLICES_PER_PART).min(MAX_SPLITS);
    let saturating = saturating_blocks(arithmetic, rows);
    // A tile's whole sum, in FLOPs; everything below in FLOPs at the GPU's rate.
    let tile = 2.0 * (rows * arithmetic.tile() * steps * arithmetic.slice()) as f64
        / tile_efficiency(arithmetic, rows);
    let time = |s: usize| {
        let busiest = (tiles * s).div_ceil(sms).max(saturating) as f64;
        let product = busiest * tile / s as f64 * sms as f64;
        // The parts written and read, C written; one launch more.
        let reduce = if s > 1 {
            (4.0 * (s + 1) as f64 * (g.m * g.n) as f64 + LAUNCH_BYTES) * balance(arithmetic)
        } else {
            0.0
        };
        product + reduce
    };
    if tiles == 0 || most < 2 {
        return (1, time(1));
    }
    let best = (2..=most).min_by(|&a, &b| time(a).total_cmp(&time(b))).unwrap_or(1);
    if time(best) < (1.0 - SPLIT_GAIN) * time(1) {
        (best, time(best))
    } else {
        (1, time(1))
    }
}

/// `sgemm_split_reduce` over `outputs` values: a 256-thread block per 32 outputs (eight threads
/// add each output's parts), at most 65,535 blocks (the kernel strides over the rest).
pub fn split_reduce(outputs: usize) -> LaunchConfig {
    let blocks = outputs.div_ceil(32).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// Threads of a channel-sum block (`kernels/bias.cu`).
pub const CHANNEL_THREADS: u32 = 256;

/// A per-channel reduction's launch: one block per (channel, part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSums {
    /// Channels summed: the grid's x dimension (clamped to 65,535).
    pub channels: usize,
    /// Ranges of the outer dimension each channel's sum is cut into (the grid's y dimension);
    /// with more than one, the last part of each channel to finish adds the parts (one arrival
    /// counter per channel).
    pub parts: usize,
}

impl ChannelSums {
    /// The launch configuration: channels x parts blocks of [`CHANNEL_THREADS`] threads.
    pub fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.channels.min(65_535) as u32, self.parts as u32, 1),
            block_dim: (CHANNEL_THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// Blocks of [`CHANNEL_THREADS`] threads one SM holds at once (2,048 threads).
pub const STREAM_RESIDENT_BLOCKS: usize = 8;

/// The arrival counters the backend keeps (kernels/arrival.cuh), enough for any channel sums
/// these plans make: they are cut into parts only for fewer channels than four per SM (half a
/// wave of eight blocks per SM), one counter per channel.
pub fn arrival_counters(multiprocessors: usize) -> usize {
    STREAM_RESIDENT_BLOCKS * multiprocessors.max(1)
}

/// Each channel's sum cut into as many parts (ranges of the outer dimension) as keep
/// channels x parts within one wave of resident blocks (eight per SM: one load in flight per
/// thread needs every thread an SM can hold to cover the memory's latency); at most one part per
/// item. NiN conv1's 96 channels at batch 128 take 11 parts (1,056 blocks on an H200), not the 3
/// that two blocks per SM would give.
pub fn channel_sums(outer: usize, channels: usize, multiprocessors: usize) -> ChannelSums {
    let wave = STREAM_RESIDENT_BLOCKS * multiprocessors.max(1);
    let parts = (wave / channels.max(1)).min(outer).clamp(1, 65_535);
    ChannelSums { channels, parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_SMS: usize = 132;

    /// The products that would run on one block (GoogLeNet's 7x7 stem and block-2 1x1 weight
    /// gradients at batch 128) or on a few (NiN's 1x1 weight gradients) are split until the
    /// busiest SM holds at most a tenth more than the average; large products and per-item
    /// batches are left whole.
    #[test]
    fn small_outputs_are_split_until_the_gpu_is_full() {
        let wgrad = |o: usize, k: usize, p: usize| Gemm {
            batch: 128,
            a_stride: o * p,
            b_stride: k * p,
            ..Gemm::new(false, true, o, k, p)
        };
        let even = |l: &GemmLaunch| l.blocks() as f64 / (H100_SMS * l.blocks().div_ceil(H100_SMS)) as f64;
        for g in [wgrad(64, 49, 2304), wgrad(64, 64, 576), wgrad(96, 96, 2916), wgrad(256, 256, 676)] {
            for arithmetic in [Arithmetic::Fp32, Arithmetic::Tf32] {
                let l = gemm(&g, H100_SMS, arithmetic);
                assert!(l.splits > 1 && l.blocks() >= H100_SMS && even(&l) >= 0.9, "{g:?}: {l:?}");
            }
        }
        // NiN conv2's weight gradient in TF32: 2 x 19 tiles of 128 in 24 parts, 912 blocks (7 on
        // the busiest SMs, 6.9 on average); NiN conv3's implicit input gradient, 288 tiles (3 on
        // the busiest SMs for 2.2 on average), in 4 parts (9 for 8.7).
        let conv2 = gemm(&wgrad(256, 2400, 676), H100_SMS, Arithmetic::Tf32);
        assert_eq!((conv2.grid, conv2.splits), ((19, 2, 24), 24));
        let conv3 = gemm(&Gemm::new(false, false, 256, 18432, 3456), H100_SMS, Arithmetic::Tf32);
        assert_eq!((conv3.grid, conv3.splits), ((144, 2, 4), 4));
        // NiN conv2's forward per image: 4 x 11 tiles x 128 items, no split.
        let fwd = Gemm {
            batch: 128,
            b_stride: 2400 * 676,
            c_stride: 256 * 676,
            ..Gemm::new(false, false, 256, 676, 2400)
        };
        assert_eq!(
            gemm(&fwd, H100_SMS, Arithmetic::Fp32),
            GemmLaunch { arithmetic: Arithmetic::Fp32, rows: 64, grid: (11, 4, 128), splits: 1 }
        );
        // A big single product: 32 x 32 tiles, no split.
        assert_eq!(gemm(&Gemm::new(false, false, 2048, 2048, 2048), H100_SMS, Arithmetic::Fp32).splits, 1);
        // A short sum is not split into parts of less than four slices.
        assert_eq!(gemm(&Gemm::new(false, false, 8, 8, 48), H100_SMS, Arithmetic::Fp32).splits, 1);
        assert_eq!(gemm(&Gemm::new(false, false, 8, 8, 128), H100_SMS, Arithmetic::Fp32).splits, 2);
        // Past 65,535 items the grid's z is clamped (the kernel strides over the rest).
        let many =
            Gemm { batch: 70_000, a_stride: 4, b_stride: 4, c_stride: 4, ..Gemm::new(false, false, 2, 2, 2) };
        assert_eq!(gemm(&many, H100_SMS, Arithmetic::Fp32).grid.2, 65_535);
    }

    /// TF32 tile heights follow the cost model's time: a ragged row count takes the tile it
    /// wastes least (96 rows for 96 channels, 64 for 48 or 64), a grid whose last round of
    /// 128-row tiles would leave SMs idle takes 64-row tiles when that saves an eighth (NiN
    /// conv3's forward), and 128-row tiles stay where the saving is under 5 % (NiN conv2's
    /// forward). Each height has its kernels, threads and shared memory; FP32 keeps its 64 x 64
    /// tile whatever the rows.
    #[test]
    fn tf32_tiles_follow_the_rows() {
        for (m, n, k, rows) in [
            (96, 373_248, 121, 96),
            (96, 373_248, 96, 96),
            (64, 18_432, 400, 64),
            (48, 18_432, 400, 64),
            (384, 18_432, 2304, 64),
            (256, 86_528, 2400, 128),
            (1024, 86_528, 400, 128),
        ] {
            let g = Gemm::new(false, false, m, n, k);
            let l = gemm(&g, H100_SMS, Arithmetic::Tf32);
            assert_eq!((l.rows, l.splits), (rows, 1), "{m} x {n} x {k}");
            assert_eq!(l.grid.1 as usize, m.div_ceil(rows), "m = {m}");
            let cfg = l.config();
            let (threads, shared, nn, tn) = match rows {
                64 => (128, 82944, "tgemm64_nn", "tgemm64_tn_epilogue"),
                96 => (256, 96768, "tgemm96_nn", "tgemm96_tn_epilogue"),
                _ => (256, 110592, "tgemm_nn", "tgemm_tn_epilogue"),
            };
            assert_eq!((cfg.block_dim.0, cfg.shared_mem_bytes), (threads, shared), "m = {m}");
            assert_eq!((gemm_kernel(&g, &l), gemm_epilogue_kernel(&l, true)), (nn, tn));
            let fp32 = gemm(&g, H100_SMS, Arithmetic::Fp32);
            assert_eq!((fp32.rows, fp32.config().block_dim.0, gemm_kernel(&g, &fp32)), (64, 256, "sgemm_nn"));
        }
        // The implicit weight gradient has no 128-row kernel: NiN conv1's (96 rows) takes 96,
        // conv2's (256) 64.
        let geo = |c, hw, o, k, s, p| {
            ConvGeometry::new(128, c, hw, hw, o, tensor::Window::square(k, s, p)).unwrap()
        };
        for (geo, rows, kernel) in [
            (geo(1, 224, 96, 11, 4, 0), 96, "tgemm96_conv_wgrad"),
            (geo(96, 26, 256, 5, 1, 2), 64, "tgemm64_conv_wgrad"),
        ] {
            let l = implicit_gemm(&weight_grad_gemm(&geo, 128, 0.0), H100_SMS, Implicit::WeightGrad);
            assert_eq!((l.rows, implicit_kernel(Implicit::WeightGrad, &l)), (rows, kernel));
        }
    }

    /// NiN conv1's 96 channels at batch 128 get 11 parts each (1,056 blocks, one full wave);
    /// 384 channels 2 (768: 3 would be 1,152, a second wave of 96); 2,000 channels one; a batch
    /// of 1 cannot be cut.
    #[test]
    fn channel_sums_fill_the_gpu() {
        assert_eq!(channel_sums(128, 96, H100_SMS).parts, 11);
        assert_eq!(channel_sums(128, 384, H100_SMS).parts, 2);
        assert_eq!(channel_sums(128, 2000, H100_SMS).parts, 1);
        assert_eq!(channel_sums(1, 10, H100_SMS).parts, 1);
        assert_eq!(channel_sums(0, 10, H100_SMS).parts, 1);
    }

    /// Channel sums cut into parts find an arrival counter per channel, at any width and
    /// batch, on small and large GPUs.
    #[test]
    fn arrival_counters_suffice() {
        for sms in [1, 2, 7, 108, H100_SMS] {
            let have = arrival_counters(sms);
            for channels in 1..=2 * have {
                for outer in [1, 2, 128, 100_000] {
                    let sums = channel_sums(outer, channels, sms);
                    assert!(
                        sums.parts == 1 || channels <= have,
                        "{channels} channels in {} parts",
                        sums.parts
                    );
                }
            }
        }
    }

    /// The GPU takes the direct path for 1x1 kernels on planes of 256 or more and im2col for the
    /// rest. In FP32 im2col runs in chunks of up to 64 Mi column values (NiN conv2 at batch 128:
    /// 41 images a chunk) and keeps them for the weight gradient where they fit; in TF32 a
    /// kernel larger than 1x1 takes the implicit products (no columns), the input gradient too
    /// for stride 1 and input channels a multiple of 32.
    #[test]
    fn conv_plans() {
        use tensor::Window;
        let geo = |c, hw, o, k, s, p| ConvGeometry::new(128, c, hw, hw, o, Window::square(k, s, p)).unwrap();
        for arithmetic in [Arithmetic::Fp32, Arithmetic::Tf32] {
            assert_eq!(conv(&geo(96, 54, 96, 1, 1, 0), arithmetic).algorithm, ConvAlgorithm::Direct);
            assert_eq!(conv(&geo(832, 3, 384, 1, 1, 0), arithmetic).algorithm, ConvAlgorithm::Im2col);
            assert!(!conv(&geo(96, 54, 96, 1, 1, 0), arithmetic).keep_columns);
            // 1x1 kernels are never implicit (their columns are the input).
            assert!(!conv(&geo(832, 3, 384, 1, 1, 0), arithmetic).implicit);
        }
        let conv2 = geo(96, 26, 256, 5, 1, 2);
        let plan = conv(&conv2, Arithmetic::Fp32);
        assert_eq!(plan.algorithm, ConvAlgorithm::Im2col);
        assert_eq!(plan.chunk_values / (conv2.col_rows() * conv2.col_cols()), 41);
        assert!(plan.keep_columns && !plan.implicit && !plan.implicit_input_grad);
        // 128 x 2304 x 90,000 columns (3x3 on 256 channels at 300x300) would be 100 GiB: unfolded again.
        assert!(!conv(&geo(256, 300, 64, 3, 1, 1), Arithmetic::Fp32).keep_columns);
        let tf32 = |g: &ConvGeometry| {
            let p = conv(g, Arithmetic::Tf32);
            (p.algorithm, p.keep_columns, p.implicit, p.implicit_input_grad)
        };
        let im2col = ConvAlgorithm::Im2col;
        // NiN conv2: 96 input channels, its input gradient implicit too (96-row tiles);
        // GoogLeNet's 5x5 on 16 channels folds it back.
        assert_eq!(tf32(&conv2), (im2col, false, true, true));
        assert_eq!(tf32(&geo(16, 12, 32, 5, 1, 2)), (im2col, false, true, false));
        // NiN conv3 (256 channels, stride 1) all implicit; conv1 (stride 4) but its input gradient.
        assert_eq!(tf32(&geo(256, 12, 384, 3, 1, 1)), (im2col, false, true, true));
        assert_eq!(tf32(&geo(64, 224, 96, 11, 4, 0)), (im2col, false, true, false));
    }
}
