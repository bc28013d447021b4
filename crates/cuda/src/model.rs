//! The cost model: every kernel launch the CUDA backend makes for a piece of work, and how long
//! each should take on a given GPU, from roofline ceilings (FP32 arithmetic, memory bandwidth),
//! how well its grid fills the multiprocessors, and the host's cost per launch, which a stream
//! hides behind the kernels already queued.
//!
//! No GPU is needed: [`Recorder`] is a `Backend` that computes on the CPU (so a real training
//! step runs through the layers and models, taking the GPU's algorithm choices from
//! [`plan::conv`]) and records, for every call, the launches `Cuda` makes for it, from the same
//! functions of [`plan`] that `Cuda` launches with. `cargo bench --bench gpu -- --model` prints the
//! prediction for both networks; on a GPU, the bench prints each measured kernel beside it.
//!
//! Every figure it gives is a prediction. Its parameters (`Gpu`) are the device's datasheet or
//! measured ceilings and two efficiencies that only a GPU run can calibrate: our FP32 SGEMM's
//! share of the FP32 peak and a streaming kernel's share of the copy bandwidth.
use crate::plan::{self, elementwise, single_block};
use crate::Precision;
use cudarc::driver::LaunchConfig;
use std::sync::{Arc, Mutex};
use tensor::cpu::CpuBuffer;
use tensor::{
    AdamSlot, AdamStep, Backend, ConvGeometry, ConvPlan, Cpu, Epilogue, Gemm, PoolGeometry, Result, RowsOut,
    SgdSlot, SgdStep,
};

/// One launch (or copy) as the model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The kernel's name, or `upload`, `download`, `copy` for copies.
    pub kernel: &'static str,
    /// Blocks in the grid (all three dimensions); 0 for a copy.
    pub blocks: usize,
    /// Threads per block; 0 for a copy.
    pub threads: u32,
    /// Floating-point operations (multiply-adds count 2); 0 for memory-bound kernels.
    pub flops: f64,
    /// The operations the kernel executes: `flops` plus what its tiles compute past the edges of
    /// the matrices (a 64-wide tile on a 9-wide product does 64 columns' work).
    pub issued_flops: f64,
    /// Bytes the kernel must read and write at least once.
    pub bytes: f64,
    /// A host-device copy, timed at the link's bandwidth, not the GPU memory's.
    pub host_link: bool,
    /// The host waits for the GPU here (a download).
    pub synchronises: bool,
    /// Runs on the copy stream beside the kernels (a staged upload), not in their sequence.
    pub beside: bool,
    /// Its arithmetic runs on TF32 tensor cores.
    pub tensor: bool,
    /// A TF32 product's tile height (`plan::tile_rows`: 128, 96 or 64); 0 for other launches.
    pub rows: usize,
}

impl Launch {
    fn kernel(kernel: &'static str, cfg: LaunchConfig, flops: f64, bytes: f64) -> Launch {
        let blocks = cfg.grid_dim.0 as usize * cfg.grid_dim.1 as usize * cfg.grid_dim.2 as usize;
        Launch {
            kernel,
            blocks,
            threads: cfg.block_dim.0,
            flops,
            issued_flops: flops,
            bytes,
            host_link: false,
            synchronises: false,
            beside: false,
            tensor: false,
            rows: 0,
        }
    }
    /// Blocks per SM the launch needs to reach its ceiling (see [`Gpu::predict`]): 8 warps of a
    /// TF32 product, two FP32 product blocks (`plan::saturating_blocks`), four streaming blocks.
    pub fn saturating_blocks(&self) -> usize {
        match (self.flops > 0.0, self.tensor) {
            (true, true) => plan::saturating_blocks(plan::Arithmetic::Tf32, self.rows),
            (true, false) => plan::saturating_blocks(plan::Arithmetic::Fp32, 64),
            _ => 4,
        }
    }
    fn streaming(kernel: &'static str, n: usize, bytes: usize) -> Launch {
        Launch::kernel(kernel, elementwise(n), 0.0, bytes as f64)
    }
    fn copy(kernel: &'static str, bytes: usize, host_link: bool, synchronises: bool) -> Launch {
        Launch {
            kernel,
            blocks: 0,
            threads: 0,
            flops: 0.0,
            issued_flops: 0.0,
            bytes: bytes as f64,
            host_link,
            synchronises,
            beside: false,
            tensor: false,
            rows: 0,
        }
    }
}

/// A GPU's ceilings and the model's efficiencies.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpu {
    /// A label for reports.
    pub name: String,
    /// Streaming multiprocessors (SMs): how many blocks fill the GPU.
    pub multiprocessors: usize,
    /// FP32 fused-multiply-add peak, TFLOP/s.
    pub fp32_tflops: f64,
    /// Device memory bandwidth a copy reaches, GB/s.
    pub memory_gbps: f64,
    /// Host-to-device bandwidth (pinned memory), GB/s.
    pub link_gbps: f64,
    /// The host's cost of one launch, in microseconds. Launches are asynchronous: the host queues
    /// the next kernels while the GPU runs earlier ones, and a kernel waits for its launch only
    /// when the GPU has caught up with the host ([`step_time`]).
    pub launch_us: f64,
    /// The least a kernel takes on the device once its turn comes, queued behind another, in
    /// microseconds: the launch's latency on the GPU and its grid's fill and drain.
    pub kernel_us: f64,
    /// A round trip to read a value back (the host waits for the queue to drain), microseconds.
    pub sync_us: f64,
    /// Our SGEMM's share of the FP32 peak on a full grid (a 64x64x16 tile, 4x4 per thread; an
    /// estimate until measured).
    pub sgemm_efficiency: f64,
    /// Dense TF32 tensor-core peak, TFLOP/s.
    pub tf32_tflops: f64,
    /// Our TF32 kernel's share of that peak on a full grid (mma.sync; fragments by ldmatrix from
    /// K-contiguous tiles, by single-float loads from M/N-contiguous ones, each element rounded
    /// to TF32 on the way; an estimate until measured), for the 64 x 32 warp tiles of the 128-
    /// and 64-row kernels; the 96-row kernel's keeps `plan::tile_efficiency` of it.
    pub tgemm_efficiency: f64,
    /// A streaming kernel's share of the copy bandwidth on a full grid.
    pub stream_efficiency: f64,
}

impl Gpu {
    /// An H200 (H100 SXM: the same 132 SMs and clocks, 3.35 TB/s): the datasheet's FP32 peak at
    /// 1980 MHz, the ~4.3 TB/s a copy reaches, PCIe 5 for uploads.
    pub fn h200() -> Gpu {
        Gpu {
            name: "H200 (model)".into(),
            multiprocessors: 132,
            fp32_tflops: 66.9,
            memory_gbps: 4300.0,
            link_gbps: 50.0,
            launch_us: 4.0,
            kernel_us: 2.0,
            sync_us: 20.0,
            sgemm_efficiency: 0.5,
            tf32_tflops: 494.7,
            tgemm_efficiency: 0.35,
            stream_efficiency: 0.8,
        }
    }

    /// The model's device time for one launch, in seconds, from when its turn in the stream
    /// comes: the slower of its arithmetic and its memory traffic at the ceilings, each scaled by
    /// how well the grid fills the GPU, and never less than [`Gpu::kernel_us`]. The host's cost
    /// of launching it is [`step_time`]'s business.
    pub fn predict(&self, l: &Launch) -> f64 {
        let least = self.kernel_us * 1e-6;
        if l.synchronises {
            return self.sync_us * 1e-6 + l.bytes / (self.link_gbps * 1e9);
        }
        if l.host_link {
            return (l.bytes / (self.link_gbps * 1e9)).max(least);
        }
        if l.blocks == 0 {
            // A device-to-device copy: the copy engine at full bandwidth (read and write).
            return (l.bytes / (self.memory_gbps * 1e9)).max(least);
        }
        let sms = self.multiprocessors as f64;
        let blocks = l.blocks as f64;
        // Blocks per SM needed to reach the ceiling: the SGEMM needs 2 to hide its latencies,
        // the TF32 kernel 8 warps of tensor-core work with their copies in flight (one 256-thread
        // block, two of the 64-row kernel's 128), a streaming kernel 4 of its 256-thread blocks
        // (of the 8 an SM holds) to keep enough loads in flight.
        let saturating = l.saturating_blocks() as f64;
        let full = plan::STREAM_RESIDENT_BLOCKS as f64 * sms;
        // A product's blocks spread over the SMs: the busiest holds ceil(blocks / SMs) of them
        // and takes the longest (blocks resident together share an SM's arithmetic, so a grid
        // that fits at once still takes as long as its most loaded SM), and an SM with fewer
        // than `saturating` runs below its ceiling. A streaming kernel shares the memory, not an
        // SM: it runs in waves of resident blocks, the last part-empty.
        let fill = if l.flops > 0.0 {
            blocks / (sms * (blocks / sms).ceil().max(saturating))
        } else if blocks <= full {
            (blocks / (saturating * sms)).min(1.0)
        } else {
            blocks / ((blocks / full).ceil() * full)
        };
        let rate = if l.tensor {
            self.tf32_tflops * self.tgemm_efficiency * plan::tile_efficiency(plan::Arithmetic::Tf32, l.rows)
        } else {
            self.fp32_tflops * self.sgemm_efficiency
        };
        let compute = l.issued_flops / (rate * 1e12 * fill);
        let memory = l.bytes / (self.memory_gbps * 1e9 * self.stream_efficiency * fill);
        compute.max(memory).max(least)
    }
}

/// The launches of a product (`Cuda::gemm`): the GEMM, and with split-k the reduction.
pub fn gemm_launches(g: &Gemm, multiprocessors: usize, arithmetic: plan::Arithmetic) -> Vec<Launch> {
    product_launches(g, multiprocessors, arithmetic, Product::Plain)
}

/// The launches of a product with a convolution's epilogue (`Cuda::gemm_epilogue`, NN or TN): those
/// of the product, on the `*_epilogue` kernel, which also reads the bias; bias, ReLU and layout
/// cost no pass of their own.
pub fn epilogue_launches(g: &Gemm, multiprocessors: usize, arithmetic: plan::Arithmetic) -> Vec<Launch> {
    product_launches(g, multiprocessors, arithmetic, Product::Epilogue)
}

/// The launches of one implicit convolution product over `count` images (`Cuda::conv_forward`,
/// `conv_weight_grad` and `conv_input_grad` in TF32; `beta` is the weight gradient's): the
/// product on its `tgemm_*conv*` / `tgemm*_dgrad` kernel, which reads its gathered operand once
/// from memory (each value serves kh x kw of the product's k, from the caches), and with
/// split-k the reduction; the input gradient transposes the weights first.
pub fn implicit_launches(
    product: plan::Implicit,
    geo: &ConvGeometry,
    count: usize,
    beta: f32,
    multiprocessors: usize,
) -> Vec<Launch> {
    let input = f32s(count * geo.c_in * geo.h * geo.w);
    let output = f32s(count * geo.c_out * geo.col_cols());
    let (g, gathered) = match product {
        plan::Implicit::Forward => (plan::forward_gemm(geo, 0, count), input),
        plan::Implicit::WeightGrad => (plan::weight_grad_gemm(geo, count, beta), input),
        plan::Implicit::InputGrad => (plan::input_grad_gemm(geo, 0, count), output),
    };
    if g.m == 0 || g.n == 0 {
        return Vec::new();
    }
    let mut launches = Vec::new();
    if product == plan::Implicit::InputGrad {
        let weights = geo.c_out * geo.col_rows();
        launches.push(Launch::streaming("transpose_blocks", weights, f32s(2 * weights)));
    }
    launches.extend(product_launches(
        &g,
        multiprocessors,
        plan::Arithmetic::Tf32,
        Product::Gathered(product, gathered),
    ));
    launches
}

/// What a product reads and stores: a plain product, one with a convolution's epilogue, or an
/// implicit one (B gathered from a tensor of the given bytes).
#[derive(Clone, Copy, PartialEq)]
enum Product {
    Plain,
    Epilogue,
    Gathered(plan::Implicit, usize),
}

/// [`gemm_launches`], [`epilogue_launches`] or the product of [`implicit_launches`].
fn product_launches(
    g: &Gemm,
    multiprocessors: usize,
    arithmetic: plan::Arithmetic,
    product: Product,
) -> Vec<Launch> {
    if g.batch == 0 || g.m == 0 || g.n == 0 {
        return Vec::new();
    }
    let launch = match product {
        Product::Gathered(implicit, _) => plan::implicit_gemm(g, multiprocessors, implicit),
        _ => plan::gemm(g, multiprocessors, arithmetic),
    };
    let items = |stride: usize| if stride == 0 { 1 } else { g.batch };
    let c_items = if g.c_stride == 0 { 1 } else { g.batch };
    let c_bytes = 4 * g.m * g.n * c_items * if g.beta != 0.0 { 2 } else { 1 };
    let a_bytes = 4 * g.m * g.k * items(g.a_stride);
    let b_bytes = match product {
        Product::Gathered(_, bytes) => bytes,
        _ => 4 * g.k * g.n * items(g.b_stride),
    };
    let mn = g.m * g.n;
    let (kernel, bias_bytes) = match product {
        Product::Epilogue => (plan::gemm_epilogue_kernel(&launch, g.trans_a), f32s(g.m)),
        // The forward's epilogue reads the bias.
        Product::Gathered(implicit, _) => (
            plan::implicit_kernel(implicit, &launch),
            if implicit == plan::Implicit::Forward { f32s(g.m) } else { 0 },
        ),
        Product::Plain => (plan::gemm_kernel(g, &launch), 0),
    };
    let padded = |d: usize, tile: usize| d.div_ceil(tile) * tile;
    let issued = 2.0
        * padded(g.m, launch.rows) as f64
        * padded(g.n, arithmetic.tile()) as f64
        * g.k as f64
        * g.batch as f64;
    let launch_of = |bytes: usize| Launch {
        issued_flops: issued,
        tensor: arithmetic == plan::Arithmetic::Tf32,
        rows: if arithmetic == plan::Arithmetic::Tf32 { launch.rows } else { 0 },
        ..Launch::kernel(kernel, launch.config(), g.flops(), (bytes + bias_bytes) as f64)
    };
    if launch.splits == 1 {
        return vec![launch_of(a_bytes + b_bytes + c_bytes)];
    }
    let w = 4 * launch.splits * mn;
    let reduce = Launch::kernel("sgemm_split_reduce", plan::split_reduce(mn), 0.0, (w + c_bytes) as f64);
    vec![launch_of(a_bytes + b_bytes + w), reduce]
}

/// A `Backend` that computes on the CPU and records what `Cuda` would launch for each call.
#[derive(Clone)]
pub struct Recorder {
    multiprocessors: usize,
    precision: Precision,
    launches: Arc<Mutex<Vec<Launch>>>,
}

impl Recorder {
    /// Records the launches of a GPU with `multiprocessors` SMs and TF32 tensor cores, computing
    /// convolution products in `precision`.
    pub fn new(multiprocessors: usize, precision: Precision) -> Recorder {
        Recorder { multiprocessors, precision, launches: Arc::default() }
    }
    /// The launches recorded so far, and forgets them.
    pub fn take(&self) -> Vec<Launch> {
        std::mem::take(&mut *self.launches.lock().expect("recorder lock"))
    }
    /// The arithmetic `Cuda` computes `g` in: TF32 where the product accepts it and the
    /// precision allows.
    fn arithmetic(&self, g: &Gemm) -> plan::Arithmetic {
        if g.tf32 && self.precision == Precision::Tf32 {
            plan::Arithmetic::Tf32
        } else {
            plan::Arithmetic::Fp32
        }
    }
    /// The arithmetic of convolution products (what `conv_plan` plans for).
    fn conv_arithmetic(&self) -> plan::Arithmetic {
        match self.precision {
            Precision::Tf32 => plan::Arithmetic::Tf32,
            Precision::Fp32 => plan::Arithmetic::Fp32,
        }
    }
    fn record(&self, launches: impl IntoIterator<Item = Launch>) {
        self.launches.lock().expect("recorder lock").extend(launches);
    }
    fn stream(&self, kernel: &'static str, n: usize, bytes: usize) {
        self.record([Launch::streaming(kernel, n, bytes)]);
    }
    /// As `Cuda::optim_steps`: the table's upload, then one launch with a block per chunk of
    /// each parameter, moving `f32s_per_value` f32s per value (reads and writes).
    fn optim_steps(&self, kernel: &'static str, lens: &[usize], f32s_per_value: usize) {
        let blocks: usize = lens.iter().map(|n| n.div_ceil(crate::backend::OPTIM_CHUNK)).sum();
        if blocks == 0 {
            return;
        }
        let table = 8 * (5 * lens.len() + 2 * blocks);
        let values: usize = lens.iter().sum();
        let cfg =
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        self.record([
            Launch::copy("upload", table, true, false),
            Launch::kernel(kernel, cfg, 0.0, (f32s(f32s_per_value * values) + table) as f64),
        ]);
    }
    fn channel_sums(&self, outer: usize, channels: usize, bytes: usize) {
        if channels == 0 {
            return;
        }
        let cs = plan::channel_sums(outer, channels, self.multiprocessors);
        // With parts, each is written once and read once by its channel's last block, which
        // adds a few floats: one launch either way (`Cuda::channel_sums`).
        let parts = if cs.parts == 1 { 0 } else { 2 * channels * cs.parts };
        let bytes = bytes as f64 + 4.0 * (channels + parts) as f64;
        self.record([Launch::kernel("channel_sums", cs.config(), 0.0, bytes)]);
    }
}

/// f32 bytes of `n` values.
const fn f32s(n: usize) -> usize {
    4 * n
}

impl Backend for Recorder {
    type Storage = CpuBuffer;
    type Reading = Vec<f32>;

    fn name(&self) -> String {
        "cuda-model".into()
    }
    fn zeros(&self, len: usize) -> Result<CpuBuffer> {
        self.stream("fill", len, f32s(len));
        Cpu.zeros(len)
    }
    fn uninit(&self, len: usize) -> Result<CpuBuffer> {
        Cpu.uninit(len)
    }
    fn from_slice(&self, data: &[f32]) -> Result<CpuBuffer> {
        let n = data.len();
        if n >= crate::STAGED_UPLOAD_MIN {
            // As `Cuda::from_slice`: the link copy on the copy stream, then a device copy in
            // the kernels' sequence.
            self.record([
                Launch { beside: true, ..Launch::copy("upload (copy stream)", f32s(n), true, false) },
                Launch::copy("copy", 2 * f32s(n), false, false),
            ]);
        } else {
            self.record([Launch::copy("upload", f32s(n), true, false)]);
        }
        Cpu.from_slice(data)
    }
    fn to_vec(&self, src: &CpuBuffer) -> Result<Vec<f32>> {
        self.record([Launch::copy("download", f32s(src.len()), true, true)]);
        Cpu.to_vec(src)
    }
    fn start_read(&self, src: &CpuBuffer) -> Result<Vec<f32>> {
        // Queued behind the kernels; the host collects it a step later, so it does not wait.
        self.record([Launch::copy("download", f32s(src.len()), true, false)]);
        Cpu.to_vec(src)
    }
    fn finish_read(&self, reading: Vec<f32>) -> Result<Vec<f32>> {
        Ok(reading)
    }
    fn storage_len(&self, s: &CpuBuffer) -> usize {
        s.len()
    }
    fn copy(&self, src: &CpuBuffer) -> Result<CpuBuffer> {
        self.record([Launch::copy("copy", 2 * f32s(src.len()), false, false)]);
        Cpu.copy(src)
    }
    fn fill(&self, dst: &mut CpuBuffer, value: f32) -> Result<()> {
        self.stream("fill", dst.len(), f32s(dst.len()));
        Cpu.fill(dst, value)
    }
    fn conv_plan(&self, geo: &ConvGeometry) -> ConvPlan {
        plan::conv(geo, self.conv_arithmetic())
    }
    fn gemm(&self, g: &Gemm, a: &CpuBuffer, b: &CpuBuffer, c: &mut CpuBuffer) -> Result<()> {
        Cpu.gemm(g, a, b, c)?;
        self.record(gemm_launches(g, self.multiprocessors, self.arithmetic(g)));
        Ok(())
    }
    fn gemm_epilogue(
        &self,
        g: &Gemm,
        a: &CpuBuffer,
        b: &CpuBuffer,
        c: &mut CpuBuffer,
        epi: &Epilogue<'_, CpuBuffer>,
    ) -> Result<()> {
        if g.trans_b {
            // As `Cuda`: composed of the other kernels, each recorded.
            return tensor::compose_epilogue(self, g, a, b, c, epi);
        }
        Cpu.gemm_epilogue(g, a, b, c, epi)?;
        let mut launches = epilogue_launches(g, self.multiprocessors, self.arithmetic(g));
        if let (Some(mask), Some(store)) = (epi.mask, launches.last_mut()) {
            // The launch that stores C (the product, or its split's reduction) reads the mask.
            store.bytes += f32s(mask.len()) as f64;
        }
        self.record(launches);
        Ok(())
    }
    fn gemm_rows_epilogue(
        &self,
        g: &Gemm,
        a: &CpuBuffer,
        b: &CpuBuffer,
        outs: &mut [RowsOut<'_, CpuBuffer>],
    ) -> Result<()> {
        let blocks: Vec<usize> = outs.iter().map(|o| o.epilogue.block).collect();
        if !plan::fuses_rows(g, &blocks) || outs.iter().any(|o| o.epilogue.mask.is_some()) {
            // As `Cuda`: one product per output, each recorded.
            return tensor::compose_rows_epilogue(self, g, a, b, outs);
        }
        Cpu.gemm_rows_epilogue(g, a, b, outs)?;
        // As `Cuda`: one product over each group of up to four outputs' rows.
        for group in outs.chunks(plan::EPILOGUE_PARTS) {
            let m = group.iter().map(|o| o.rows).sum();
            self.record(epilogue_launches(&Gemm { m, ..*g }, self.multiprocessors, self.arithmetic(g)));
        }
        Ok(())
    }
    fn im2col(
        &self,
        x: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        cols: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.im2col(x, geo, first, count, cols)?;
        let total = count * geo.col_rows() * geo.col_cols();
        self.stream("im2col", total, f32s(total + count * geo.c_in * geo.h * geo.w));
        Ok(())
    }
    fn col2im(
        &self,
        cols: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.col2im(cols, geo, first, count, dx)?;
        let total = count * geo.c_in * geo.h * geo.w;
        self.stream("col2im", total, f32s(total + count * geo.col_rows() * geo.col_cols()));
        Ok(())
    }
    fn conv_forward(
        &self,
        w: &CpuBuffer,
        x: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        y: &mut CpuBuffer,
        epi: &Epilogue<'_, CpuBuffer>,
    ) -> Result<()> {
        if !plan::implicit(geo, self.conv_arithmetic()) {
            // As `Cuda`: composed of the other kernels, each recorded.
            return tensor::compose_conv_forward(self, w, x, geo, first, count, y, epi);
        }
        // The values as the CPU composes them (the same sums); the launches `Cuda` makes.
        tensor::compose_conv_forward(&Cpu, w, x, geo, first, count, y, epi)?;
        self.record(implicit_launches(plan::Implicit::Forward, geo, count, 0.0, self.multiprocessors));
        Ok(())
    }
    fn conv_weight_grad(
        &self,
        dy: &CpuBuffer,
        x: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        beta: f32,
        dw: &mut CpuBuffer,
    ) -> Result<()> {
        if !plan::implicit(geo, self.conv_arithmetic()) {
            return tensor::compose_conv_weight_grad(self, dy, x, geo, first, count, beta, dw);
        }
        tensor::compose_conv_weight_grad(&Cpu, dy, x, geo, first, count, beta, dw)?;
        self.record(implicit_launches(plan::Implicit::WeightGrad, geo, count, beta, self.multiprocessors));
        Ok(())
    }
    fn conv_input_grad(
        &self,
        w: &CpuBuffer,
        dy: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        if !plan::implicit_input_grad(geo, self.conv_arithmetic()) {
            return tensor::compose_conv_input_grad(self, w, dy, geo, first, count, dx);
        }
        tensor::compose_conv_input_grad(&Cpu, w, dy, geo, first, count, dx)?;
        self.record(implicit_launches(plan::Implicit::InputGrad, geo, count, 0.0, self.multiprocessors));
        Ok(())
    }
    fn transpose_blocks(
        &self,
        src: &CpuBuffer,
        src_offset: usize,
        rows: usize,
        cols: usize,
        block: usize,
        dst: &mut CpuBuffer,
        dst_offset: usize,
    ) -> Result<()> {
        Cpu.transpose_blocks(src, src_offset, rows, cols, block, dst, dst_offset)?;
        let len = rows * cols * block;
        self.stream("transpose_blocks", len, f32s(2 * len));
        Ok(())
    }
    fn add_bias(
        &self,
        y: &mut CpuBuffer,
        bias: &CpuBuffer,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        Cpu.add_bias(y, bias, outer, channels, inner)?;
        let len = outer * channels * inner;
        self.stream("add_bias", len, f32s(2 * len + channels));
        Ok(())
    }
    fn bias_grad(
        &self,
        dy: &CpuBuffer,
        outer: usize,
        channels: usize,
        inner: usize,
        dbias: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.bias_grad(dy, outer, channels, inner, dbias)?;
        self.channel_sums(outer, channels, f32s(outer * channels * inner));
        Ok(())
    }
    fn bias_relu(
        &self,
        y: &mut CpuBuffer,
        bias: Option<&CpuBuffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        Cpu.bias_relu(y, bias, outer, channels, inner)?;
        let len = outer * channels * inner;
        self.stream("bias_relu", len, f32s(2 * len + channels));
        Ok(())
    }
    fn bias_relu_backward(
        &self,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dz: &mut CpuBuffer,
        dbias: Option<&mut CpuBuffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        let with_bias = dbias.is_some();
        Cpu.bias_relu_backward(y, dy, dz, dbias, outer, channels, inner)?;
        let len = outer * channels * inner;
        if with_bias {
            self.channel_sums(outer, channels, f32s(3 * len));
        } else {
            self.stream("relu_backward", len, f32s(3 * len));
        }
        Ok(())
    }
    fn bias_relu_backward_rows(
        &self,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dz: &mut CpuBuffer,
        row: usize,
        dbias: Option<&mut CpuBuffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        Cpu.bias_relu_backward_rows(y, dy, dz, row, dbias, outer, channels, inner)?;
        // As `Cuda`: one channel_sums launch, dz written in rows, with or without the bias.
        self.channel_sums(outer, channels, f32s(3 * outer * channels * inner));
        Ok(())
    }
    fn max_pool2d_forward(
        &self,
        x: &CpuBuffer,
        geo: &PoolGeometry,
        y: &mut CpuBuffer,
        argmax: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.max_pool2d_forward(x, geo, y, argmax)?;
        let (i, o) = (geo.planes() * geo.h * geo.w, geo.planes() * geo.out_h * geo.out_w);
        self.stream("max_pool2d_forward", o, f32s(i + 2 * o));
        Ok(())
    }
    fn max_pool2d_backward(
        &self,
        argmax: &CpuBuffer,
        dy: &CpuBuffer,
        geo: &PoolGeometry,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.max_pool2d_backward(argmax, dy, geo, dx)?;
        let (i, o) = (geo.planes() * geo.h * geo.w, geo.planes() * geo.out_h * geo.out_w);
        self.stream("max_pool2d_backward", i, f32s(i + 2 * o));
        Ok(())
    }
    fn avg_pool2d_forward(&self, x: &CpuBuffer, geo: &PoolGeometry, y: &mut CpuBuffer) -> Result<()> {
        Cpu.avg_pool2d_forward(x, geo, y)?;
        let (i, o) = (geo.planes() * geo.h * geo.w, geo.planes() * geo.out_h * geo.out_w);
        self.stream("avg_pool2d_forward", o, f32s(i + o));
        Ok(())
    }
    fn avg_pool2d_backward(&self, dy: &CpuBuffer, geo: &PoolGeometry, dx: &mut CpuBuffer) -> Result<()> {
        Cpu.avg_pool2d_backward(dy, geo, dx)?;
        let (i, o) = (geo.planes() * geo.h * geo.w, geo.planes() * geo.out_h * geo.out_w);
        self.stream("avg_pool2d_backward", i, f32s(i + o));
        Ok(())
    }
    fn global_avg_pool_forward(
        &self,
        x: &CpuBuffer,
        planes: usize,
        plane_len: usize,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.global_avg_pool_forward(x, planes, plane_len, y)?;
        if planes > 0 {
            let bytes = f32s(planes * plane_len + planes) as f64;
            self.record([Launch::kernel("global_avg_pool_forward", plan::per_plane(planes), 0.0, bytes)]);
        }
        Ok(())
    }
    fn global_avg_pool_backward(
        &self,
        dy: &CpuBuffer,
        planes: usize,
        plane_len: usize,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.global_avg_pool_backward(dy, planes, plane_len, dx)?;
        self.stream("global_avg_pool_backward", planes * plane_len, f32s(planes * plane_len + planes));
        Ok(())
    }
    fn relu_forward(&self, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        Cpu.relu_forward(x, y)?;
        self.stream("relu_forward", x.len(), f32s(2 * x.len()));
        Ok(())
    }
    fn relu_backward(&self, y: &CpuBuffer, dy: &CpuBuffer, dx: &mut CpuBuffer) -> Result<()> {
        Cpu.relu_backward(y, dy, dx)?;
        self.stream("relu_backward", y.len(), f32s(3 * y.len()));
        Ok(())
    }
    fn dropout_forward(
        &self,
        x: &CpuBuffer,
        p: f32,
        seed: u64,
        y: &mut CpuBuffer,
        mask: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.dropout_forward(x, p, seed, y, mask)?;
        self.stream("dropout_forward", x.len(), f32s(3 * x.len()));
        Ok(())
    }
    fn softmax_cross_entropy_forward(
        &self,
        logits: &CpuBuffer,
        labels: &[usize],
        n: usize,
        classes: usize,
        loss: &mut CpuBuffer,
        correct: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.softmax_cross_entropy_forward(logits, labels, n, classes, loss, correct)?;
        self.record([
            Launch::copy("upload", f32s(n), true, false),
            Launch::kernel(
                "softmax_cross_entropy_forward",
                single_block(256),
                0.0,
                f32s(n * (classes + 1)) as f64,
            ),
        ]);
        Ok(())
    }
    fn softmax_cross_entropy_backward(
        &self,
        logits: &CpuBuffer,
        labels: &[usize],
        n: usize,
        classes: usize,
        dloss: &CpuBuffer,
        dlogits: &mut CpuBuffer,
    ) -> Result<()> {
        Cpu.softmax_cross_entropy_backward(logits, labels, n, classes, dloss, dlogits)?;
        self.record([Launch::copy("upload", f32s(n), true, false)]);
        self.stream("softmax_cross_entropy_backward", n, f32s(n * (2 * classes + 1)));
        Ok(())
    }
    fn copy_channels(
        &self,
        src: &CpuBuffer,
        src_channels: usize,
        src_first: usize,
        dst: &mut CpuBuffer,
        dst_channels: usize,
        dst_first: usize,
        count: usize,
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        Cpu.copy_channels(src, src_channels, src_first, dst, dst_channels, dst_first, count, n, plane_len)?;
        let moved = n * count * plane_len;
        self.stream("copy_channels", moved, f32s(2 * moved));
        Ok(())
    }
    fn concat_channels(
        &self,
        parts: &[(&CpuBuffer, usize)],
        whole: &mut CpuBuffer,
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        Cpu.concat_channels(parts, whole, n, plane_len)?;
        // As `Cuda::concat_channels`: one launch per four parts.
        for chunk in parts.chunks(crate::backend::PARTS_PER_LAUNCH) {
            let moved = n * plane_len * chunk.iter().map(|&(_, c)| c).sum::<usize>();
            self.stream("concat_channels", moved, f32s(2 * moved));
        }
        Ok(())
    }
    fn split_channels(
        &self,
        whole: &CpuBuffer,
        parts: &mut [(Option<&mut CpuBuffer>, usize)],
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        Cpu.split_channels(whole, parts, n, plane_len)?;
        let wanted: Vec<usize> = parts.iter().filter(|(p, _)| p.is_some()).map(|&(_, c)| c).collect();
        for chunk in wanted.chunks(crate::backend::PARTS_PER_LAUNCH) {
            let moved = n * plane_len * chunk.iter().sum::<usize>();
            self.stream("split_channels", moved, f32s(2 * moved));
        }
        Ok(())
    }
    fn axpy(&self, alpha: f32, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        Cpu.axpy(alpha, x, y)?;
        self.stream("axpy", x.len(), f32s(3 * x.len()));
        Ok(())
    }
    fn mul(&self, a: &CpuBuffer, b: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        Cpu.mul(a, b, out)?;
        self.stream("mul", a.len(), f32s(3 * a.len()));
        Ok(())
    }
    fn scale(&self, x: &mut CpuBuffer, alpha: f32) -> Result<()> {
        Cpu.scale(x, alpha)?;
        self.stream("scale", x.len(), f32s(2 * x.len()));
        Ok(())
    }
    fn sum(&self, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        Cpu.sum(x, out)?;
        self.record([Launch::kernel("sum", single_block(1024), 0.0, f32s(x.len() + 1) as f64)]);
        Ok(())
    }
    fn sgd_step(
        &self,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        velocity: Option<&mut CpuBuffer>,
        hp: &SgdStep,
    ) -> Result<()> {
        let momentum = velocity.is_some() && hp.momentum != 0.0;
        let n = param.len();
        Cpu.sgd_step(param, grad, velocity, hp)?;
        if momentum {
            self.stream("sgd_momentum_step", n, f32s(5 * n));
        } else {
            self.stream("sgd_step", n, f32s(3 * n));
        }
        Ok(())
    }
    fn sgd_steps(&self, slots: &mut [SgdSlot<'_, CpuBuffer>], hp: &SgdStep) -> Result<()> {
        Cpu.sgd_steps(slots, hp)?;
        let lens: Vec<usize> = slots.iter().map(|s| s.param.len()).collect();
        if hp.momentum != 0.0 {
            self.optim_steps("sgd_momentum_steps", &lens, 5);
        } else {
            self.optim_steps("sgd_steps", &lens, 3);
        }
        Ok(())
    }
    fn adam_steps(&self, slots: &mut [AdamSlot<'_, CpuBuffer>], hp: &AdamStep) -> Result<()> {
        Cpu.adam_steps(slots, hp)?;
        let lens: Vec<usize> = slots.iter().map(|s| s.param.len()).collect();
        self.optim_steps("adam_steps", &lens, 7);
        Ok(())
    }
    fn adam_step(
        &self,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        m: &mut CpuBuffer,
        v: &mut CpuBuffer,
        hp: &AdamStep,
    ) -> Result<()> {
        Cpu.adam_step(param, grad, m, v, hp)?;
        self.stream("adam_step", param.len(), f32s(7 * param.len()));
        Ok(())
    }
}

/// What each launch adds to a sequence's time, in seconds, in order: the kernels' stream
/// simulated against the host that feeds it. The host spends [`Gpu::launch_us`] on each launch
/// and runs ahead of the GPU; a kernel starts when both its launch and the kernel before it are
/// done, so a short kernel queued behind long ones costs only its device time, and a run of
/// short ones costs the host's pace. A download that the host waits for drains the queue
/// first. Copies on the copy stream (`beside`) run beside the kernels and add their own times.
pub fn timeline(gpu: &Gpu, launches: &[Launch]) -> Vec<f64> {
    let (mut host, mut device) = (0.0f64, 0.0f64);
    launches
        .iter()
        .map(|l| {
            if l.beside {
                return gpu.launch_us * 1e-6 + gpu.predict(l);
            }
            let before = device;
            if l.synchronises {
                host = host.max(device) + gpu.predict(l);
                device = host;
            } else {
                host += gpu.launch_us * 1e-6;
                device = host.max(device) + gpu.predict(l);
            }
            device - before
        })
        .collect()
}

/// The model's time for a sequence of launches, in seconds: the kernels' stream as
/// [`timeline`] runs it, or the copy stream's copies beside it if they take longer.
pub fn step_time(gpu: &Gpu, launches: &[Launch]) -> f64 {
    let times = timeline(gpu, launches);
    let lane = |beside: bool| {
        launches.iter().zip(&times).filter(|(l, _)| l.beside == beside).map(|(_, t)| t).sum::<f64>()
    };
    lane(false).max(lane(true))
}

/// The predicted time of a list of launches, grouped by kernel: (kernel, launches, seconds),
/// slowest first; each launch counts what it adds to the sequence ([`timeline`]).
pub fn by_kernel(gpu: &Gpu, launches: &[Launch]) -> Vec<(&'static str, usize, f64)> {
    let mut groups: Vec<(&'static str, usize, f64)> = Vec::new();
    for (l, t) in launches.iter().zip(timeline(gpu, launches)) {
        match groups.iter_mut().find(|(k, _, _)| *k == l.kernel) {
            Some(g) => {
                g.1 += 1;
                g.2 += t;
            }
            None => groups.push((l.kernel, 1, t)),
        }
    }
    groups.sort_by(|a, b| b.2.total_cmp(&a.2));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STAGED_UPLOAD_MIN;

    /// The model's ceilings: a large product is arithmetic-bound at the SGEMM's efficiency, a
    /// large copy memory-bound at the streaming efficiency, a tiny kernel costs one launch, and a
    /// one-block product runs at its share of one SM's worth of the grid.
    #[test]
    fn roofline_ceilings() {
        let gpu = Gpu::h200();
        // 4096 tiles over 132 SMs: 32 on the busiest, 31.03 on average.
        let big = &gemm_launches(&Gemm::new(false, false, 4096, 4096, 4096), 132, plan::Arithmetic::Fp32)[0];
        let t = gpu.predict(big);
        let want = big.flops / (66.9e12 * 0.5 * 4096.0 / (32.0 * 132.0));
        assert!((t / want - 1.0).abs() < 1e-9, "{t} vs {want}");
        // 170 TF32 blocks of 8 warps: one saturates an SM, so the 38 SMs given two take twice
        // as long as the rest (the grid fits the 264 resident blocks, but does not fill them).
        let cfg =
            plan::GemmLaunch { arithmetic: plan::Arithmetic::Tf32, rows: 128, grid: (170, 1, 1), splits: 1 };
        let tf32 = Launch { tensor: true, rows: 128, ..Launch::kernel("tgemm_nn", cfg.config(), 1e9, 0.0) };
        let want = 1e9 / (494.7e12 * 0.35 * 170.0 / 264.0);
        assert!((gpu.predict(&tf32) / want - 1.0).abs() < 1e-9);
        // One full wave of 8 x 132 blocks moving 1 GiB.
        let stream = Launch::streaming("axpy", 8 * 132 * 256, 1 << 30);
        let want = (1u64 << 30) as f64 / (4300e9 * 0.8);
        assert!((gpu.predict(&stream) / want - 1.0).abs() < 1e-9);
        assert_eq!(gpu.predict(&Launch::streaming("fill", 10, 40)), 2e-6);
        let one = Launch::kernel(
            "sgemm_nn",
            plan::gemm(&Gemm::new(false, false, 64, 64, 16), 132, plan::Arithmetic::Fp32).config(),
            1e9,
            0.0,
        );
        assert!((gpu.predict(&one) / (1e9 / (66.9e12 * 0.5 / 264.0)) - 1.0).abs() < 1e-9);
        // A 9-wide product issues a whole 64-wide tile's work.
        let thin = &gemm_launches(&Gemm::new(false, false, 4096, 9, 4096), 132, plan::Arithmetic::Fp32)[0];
        assert_eq!(thin.issued_flops, thin.flops * 64.0 / 9.0);
    }

    /// The host runs ahead of the GPU: short kernels in a row go at the host's pace of one launch
    /// each, short kernels queued behind a long one at their own device time, and a download the
    /// host waits for drains the queue before the host goes on.
    #[test]
    fn launches_queue_behind_the_kernels() {
        let gpu = Gpu::h200();
        let tiny = Launch::streaming("fill", 10, 40);
        let us = |t: f64| (t * 1e6 * 1e6).round() / 1e6;
        // Ten short kernels: the tenth is launched at 40 us and runs 2 us.
        let row = vec![tiny.clone(); 10];
        assert_eq!(us(step_time(&gpu, &row)), 42.0);
        // Behind a kernel of about a millisecond, the host has queued them all: 2 us each.
        let long = Launch::streaming("axpy", 8 * 132 * 256, 3_440_000_000);
        assert_eq!(us(gpu.predict(&long)), 1000.0);
        let mut queued = vec![long.clone()];
        queued.extend(row.iter().cloned());
        assert_eq!(us(step_time(&gpu, &queued)), 4.0 + 1000.0 + 20.0);
        let by = by_kernel(&gpu, &queued);
        assert_eq!((by[1].0, by[1].1, us(by[1].2)), ("fill", 10, 20.0));
        // A download the host waits for: the queue drains, the read takes its round trip, and
        // the next launches start from there at the host's pace again.
        let mut synced = queued.clone();
        synced.push(Launch::copy("download", 4, true, true));
        synced.extend(row.iter().cloned());
        let read = gpu.predict(&synced[11]);
        assert!((read - (20e-6 + 4.0 / 50e9)).abs() < 1e-12, "{read}");
        assert!((step_time(&gpu, &synced) - (step_time(&gpu, &queued) + read + 42e-6)).abs() < 1e-12);
        // The parts add up to the whole.
        let parts: f64 = timeline(&gpu, &synced).iter().sum();
        assert!((parts - step_time(&gpu, &synced)).abs() < 1e-12);
    }

    /// The recorder computes what the CPU does and records the GPU's launches: a split product
    /// as two launches.
    #[test]
    fn recorder_computes_and_records() {
        let r = Recorder::new(132, Precision::Fp32);
        let g =
            Gemm { batch: 128, a_stride: 64 * 49, b_stride: 49 * 49, ..Gemm::new(false, true, 64, 49, 49) };
        let (la, lb, lc) = g.required_lengths().unwrap();
        let (a, b) = (r.from_slice(&vec![1.0; la]).unwrap(), r.from_slice(&vec![0.5; lb]).unwrap());
        let mut c = r.uninit(lc).unwrap();
        r.gemm(&g, &a, &b, &mut c).unwrap();
        assert!(c.iter().all(|&v| v == 0.5 * 49.0 * 128.0));
        let kernels: Vec<&str> = r.take().iter().map(|l| l.kernel).collect();
        let staged = ["upload (copy stream)", "copy"];
        assert_eq!(kernels, [&staged[..], &staged[..], &["sgemm_nt", "sgemm_split_reduce"]].concat());
        assert!(r.take().is_empty());
    }

    /// A staged upload runs beside the kernels: the step takes the longer of the two sequences,
    /// and a small upload stays in the kernels' sequence.
    #[test]
    fn staged_uploads_overlap_the_kernels() {
        let gpu = Gpu::h200();
        let r = Recorder::new(132, Precision::Fp32);
        let batch = r.from_slice(&vec![1.0; STAGED_UPLOAD_MIN]).unwrap();
        let launches = r.take();
        assert_eq!(launches.iter().map(|l| l.beside).collect::<Vec<_>>(), [true, false]);
        let link = timeline(&gpu, &launches)[0];
        assert!((link - (4.0 * STAGED_UPLOAD_MIN as f64 / 50e9 + 4e-6)).abs() < 1e-12);
        // Nothing else queued: the copy stream's time.
        assert_eq!(step_time(&gpu, &launches), link);
        // Kernels longer than the upload hide it.
        let mut c = r.uninit(batch.len()).unwrap();
        for _ in 0..20 {
            r.axpy(1.0, &batch, &mut c).unwrap();
        }
        let mut all = launches.clone();
        all.extend(r.take());
        let kernels: f64 =
            all.iter().zip(timeline(&gpu, &all)).filter(|(l, _)| !l.beside).map(|(_, t)| t).sum();
        assert!(kernels > link);
        assert_eq!(step_time(&gpu, &all), kernels);
        r.from_slice(&[1.0; 10]).unwrap();
        assert!(r.take().iter().all(|l| !l.beside && l.kernel == "upload"));
        // A read started behind the kernels does not make the host wait.
        r.start_read(&batch).unwrap();
        assert!(r.take().iter().all(|l| !l.synchronises));
    }
}
