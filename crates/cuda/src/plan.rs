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
/// Winograd is not planned: its transforms would be extra passes over memory on top of products
/// that the FP32 kernel already spends its time on (the CPU, bound by arithmetic, gains from it).
pub fn conv(geo: &ConvGeometry) -> ConvPlan {
    let algorithm = if geo.is_pointwise() && geo.col_cols() >= DIRECT_MIN_PLANE {
        ConvAlgorithm::Direct
    } else {
        ConvAlgorithm::Im2col
    };
    let columns = geo.n.saturating_mul(geo.col_rows()).saturating_mul(geo.col_cols());
    let keep_columns = algorithm == ConvAlgorithm::Im2col && columns <= KEEP_COLUMNS_MAX;
    let epilogue_stores = algorithm == ConvAlgorithm::Im2col;
    ConvPlan { algorithm, chunk_values: CHUNK_VALUES, keep_columns, epilogue_stores }
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
    /// the same on 64 x 128 tiles of 128 threads, for products of few rows ([`Arithmetic::rows`]).
    Tf32,
}

impl Arithmetic {
    /// Columns of C one block computes (and rows, but for the TF32 kernel's 64-row tiles).
    pub fn tile(self) -> usize {
        match self {
            Arithmetic::Fp32 => 64,
            Arithmetic::Tf32 => 128,
        }
    }
    /// Rows of C one block computes for a product of `m` rows: the tile's, but for TF32 where
    /// 64-row tiles leave fewer rows empty than 128-row ones (m mod 128 in 1..=64: a 16- to
    /// 64-channel convolution's forward and weight gradient, half to seven eighths of a 128-row
    /// tile empty). Each of the 64-row kernel's four warps computes the same 64 x 32 part as the
    /// 128-row kernel's eight, so the work a product issues shrinks with its padding.
    pub fn rows(self, m: usize) -> usize {
        match self {
            Arithmetic::Tf32 if (1..=64).contains(&(m % 128)) => 64,
            _ => self.tile(),
        }
    }
    /// k per shared-memory slice (the unit a split-k part is counted in).
    pub fn slice(self) -> usize {
        match self {
            Arithmetic::Fp32 => 16,
            Arithmetic::Tf32 => 32,
        }
    }
    /// Blocks of this arithmetic one SM holds at once: the SGEMM 3 (79 registers x 256 threads
    /// each), the TF32 kernel 2 (108 KiB of shared memory each; 81 KiB for 64-row tiles, still
    /// two). A grid of more than this many per
    /// SM runs in waves, the last one part-empty.
    pub fn resident_blocks(self) -> usize {
        match self {
            Arithmetic::Fp32 => 3,
            Arithmetic::Tf32 => 2,
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
/// and B's 128 x 36 (108 KiB for 128 rows, 81 KiB for 64).
pub const fn tgemm_shared_bytes(rows: usize) -> u32 {
    (3 * (rows + 128) * 36 * 4) as u32
}
/// Threads of an FP32 GEMM block and of a 128-row TF32 one (a 64-row TF32 block has half).
pub const GEMM_THREADS: u32 = 256;
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
    /// Rows of C a block computes ([`Arithmetic::rows`]).
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
    /// Threads a block: [`GEMM_THREADS`], or two a row of a 64-row TF32 tile (4 warps).
    pub fn threads(&self) -> u32 {
        match self.arithmetic {
            Arithmetic::Fp32 => GEMM_THREADS,
            Arithmetic::Tf32 => 2 * self.rows as u32,
        }
    }
    /// Whether this is the 64-row TF32 kernel (`tgemm64_*`).
    fn short(&self) -> bool {
        self.arithmetic == Arithmetic::Tf32 && self.rows == 64
    }
    /// Blocks in the grid.
    pub fn blocks(&self) -> usize {
        self.grid.0 as usize * self.grid.1 as usize * self.grid.2 as usize
    }
}

/// The kernel for a product's layout and launch.
pub fn gemm_kernel(g: &Gemm, launch: &GemmLaunch) -> &'static str {
    match (launch.arithmetic, launch.short(), g.trans_a, g.trans_b) {
        (Arithmetic::Fp32, _, false, false) => "sgemm_nn",
        (Arithmetic::Fp32, _, false, true) => "sgemm_nt",
        (Arithmetic::Fp32, _, true, false) => "sgemm_tn",
        (Arithmetic::Fp32, _, true, true) => "sgemm_tt",
        (Arithmetic::Tf32, false, false, false) => "tgemm_nn",
        (Arithmetic::Tf32, false, false, true) => "tgemm_nt",
        (Arithmetic::Tf32, false, true, false) => "tgemm_tn",
        (Arithmetic::Tf32, false, true, true) => "tgemm_tt",
        (Arithmetic::Tf32, true, false, false) => "tgemm64_nn",
        (Arithmetic::Tf32, true, false, true) => "tgemm64_nt",
        (Arithmetic::Tf32, true, true, false) => "tgemm64_tn",
        (Arithmetic::Tf32, true, true, true) => "tgemm64_tt",
    }
}

/// The kernel of a product with a convolution's epilogue (`Backend::gemm_epilogue`): NN (a
/// convolution's forward) or TN (a 1x1 convolution's input gradient, `W^T dy` stored as NCHW),
/// the layouts built with it.
pub fn gemm_epilogue_kernel(launch: &GemmLaunch, trans_a: bool) -> &'static str {
    match (launch.arithmetic, launch.short(), trans_a) {
        (Arithmetic::Fp32, _, false) => "sgemm_nn_epilogue",
        (Arithmetic::Fp32, _, true) => "sgemm_tn_epilogue",
        (Arithmetic::Tf32, false, false) => "tgemm_nn_epilogue",
        (Arithmetic::Tf32, false, true) => "tgemm_tn_epilogue",
        (Arithmetic::Tf32, true, false) => "tgemm64_nn_epilogue",
        (Arithmetic::Tf32, true, true) => "tgemm64_tn_epilogue",
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
/// summed into one C) and has fewer tiles than two per multiprocessor is split along its sum
/// (items and k) into as many parts as one wave of resident blocks holds (a part more would
/// start a second, nearly empty wave: 38 tiles in 7 parts are 266 blocks, two more than the 264
/// TF32 blocks an H200 holds, and would take twice as long as 6 parts), each part at least four
/// slices long.
pub fn gemm(g: &Gemm, multiprocessors: usize, arithmetic: Arithmetic) -> GemmLaunch {
    let rows = arithmetic.rows(g.m);
    let tiles = (g.n.div_ceil(arithmetic.tile()) as u32, g.m.div_ceil(rows) as u32);
    let summed = g.c_stride == 0 && g.batch > 1;
    let target = 2 * multiprocessors.max(1);
    let wave = arithmetic.resident_blocks() * multiprocessors.max(1);
    let tile_count = tiles.0 as usize * tiles.1 as usize;
    if (summed || g.batch == 1) && g.k > 0 && tile_count < target {
        let steps = if summed { g.batch } else { 1 } * g.k.div_ceil(arithmetic.slice());
        let splits = (wave / tile_count).min(steps / MIN_SLICES_PER_PART).min(MAX_SPLITS);
        if splits > 1 {
            return GemmLaunch { arithmetic, rows, grid: (tiles.0, tiles.1, splits as u32), splits };
        }
    }
    // The kernel walks the batch in steps of gridDim.z, so z is clamped to the hardware limit.
    let z = if summed { 1 } else { g.batch.min(65_535) as u32 };
    GemmLaunch { arithmetic, rows, grid: (tiles.0, tiles.1, z), splits: 1 }
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

    /// The products the issue named as running on one block (GoogLeNet's 7x7 stem and block-2
    /// 1x1 weight gradients at batch 128) and on 4 and 16 (NiN's 1x1 weight gradients) now have
    /// at least two blocks per SM; large products and per-item batches are left whole.
    #[test]
    fn small_outputs_are_split_until_the_gpu_is_full() {
        let wgrad = |o: usize, k: usize, p: usize| Gemm {
            batch: 128,
            a_stride: o * p,
            b_stride: k * p,
            ..Gemm::new(false, true, o, k, p)
        };
        for g in [wgrad(64, 49, 2304), wgrad(64, 64, 576), wgrad(96, 96, 2916), wgrad(256, 256, 676)] {
            let l = gemm(&g, H100_SMS, Arithmetic::Fp32);
            assert!(l.splits > 1 && l.blocks() >= 2 * H100_SMS, "{g:?}: {l:?}");
            assert!(l.blocks() <= 3 * H100_SMS, "{g:?}: {l:?} is more than one wave");
        }
        // NiN conv2's weight gradient in TF32: 2 x 19 tiles of 128; 7 parts would be 266 blocks,
        // two past the 264 an H200 holds, so 6 parts (228 blocks) in one wave.
        let conv2 = gemm(&wgrad(256, 2400, 676), H100_SMS, Arithmetic::Tf32);
        assert_eq!((conv2.grid, conv2.splits), ((19, 2, 6), 6));
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

    /// TF32 products with at most 64 rows past a multiple of 128 take the 64-row kernel (128
    /// threads, 81 KiB of shared memory, twice the row tiles); the others the 128-row one; FP32
    /// keeps its 64 x 64 tile whatever the rows.
    #[test]
    fn tf32_tiles_follow_the_rows() {
        for (m, rows) in
            [(1, 64), (16, 64), (64, 64), (65, 128), (128, 128), (129, 64), (192, 64), (193, 128), (832, 64)]
        {
            let g = Gemm::new(false, false, m, 18432, 400);
            let l = gemm(&g, H100_SMS, Arithmetic::Tf32);
            assert_eq!(l.rows, rows, "m = {m}");
            assert_eq!(l.grid.1 as usize, m.div_ceil(rows), "m = {m}");
            let cfg = l.config();
            let short = rows == 64;
            assert_eq!(cfg.block_dim.0, if short { 128 } else { 256 });
            assert_eq!(cfg.shared_mem_bytes, if short { 82944 } else { 110592 });
            assert_eq!(gemm_kernel(&g, &l), if short { "tgemm64_nn" } else { "tgemm_nn" });
            assert_eq!(
                gemm_epilogue_kernel(&l, true),
                if short { "tgemm64_tn_epilogue" } else { "tgemm_tn_epilogue" }
            );
            let fp32 = gemm(&g, H100_SMS, Arithmetic::Fp32);
            assert_eq!((fp32.rows, fp32.config().block_dim.0, gemm_kernel(&g, &fp32)), (64, 256, "sgemm_nn"));
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
    /// rest, in chunks of up to 64 Mi column values (NiN conv2 at batch 128: 41 images a chunk).
    #[test]
    fn conv_plans() {
        use tensor::Window;
        let geo = |c, hw, o, k, s, p| ConvGeometry::new(128, c, hw, hw, o, Window::square(k, s, p)).unwrap();
        assert_eq!(conv(&geo(96, 54, 96, 1, 1, 0)).algorithm, ConvAlgorithm::Direct);
        assert_eq!(conv(&geo(832, 3, 384, 1, 1, 0)).algorithm, ConvAlgorithm::Im2col);
        let conv2 = geo(96, 26, 256, 5, 1, 2);
        let plan = conv(&conv2);
        assert_eq!(plan.algorithm, ConvAlgorithm::Im2col);
        assert_eq!(plan.chunk_values / (conv2.col_rows() * conv2.col_cols()), 41);
        assert!(plan.keep_columns);
        // 128 x 2304 x 90,000 columns (3x3 on 256 channels at 300x300) would be 100 GiB: unfolded again.
        assert!(!conv(&geo(256, 300, 64, 3, 1, 1)).keep_columns);
        assert!(!conv(&geo(96, 54, 96, 1, 1, 0)).keep_columns);
    }
}
