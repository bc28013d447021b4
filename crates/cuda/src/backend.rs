//! `impl Backend for Cuda`: each method checks its buffers, then launches the kernel of the same
//! name from `kernels/`. Everything stays on the device; only `from_slice` and `to_vec` copy.
use crate::allocator::{Allocator, Buffer};
use crate::device;
use crate::kernels::{is_tensor_kernel, CUBIN_CAPABILITY, MODULES};
use crate::plan::{self, elementwise, single_block, EPILOGUE_PARTS};
use crate::staging::{PendingRead, Staging, STAGED_UPLOAD_MIN};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::Arc;
use tensor::{
    checks, AdamSlot, AdamStep, Backend, ConvGeometry, ConvPlan, Epilogue, Error, Gemm, PoolGeometry, Result,
    RowsOut, SgdSlot, SgdStep,
};

struct Inner {
    ordinal: usize,
    device_name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    allocator: Arc<Allocator>,
    /// Page-locked host buffers and the copy stream for uploads and reads that do not stall.
    staging: Staging,
    /// Streaming multiprocessors: how many blocks a launch needs to fill the GPU.
    multiprocessors: usize,
    /// TF32 tensor cores are there (sm_80 and up) and the TF32 kernels got their shared memory.
    tensor_cores: bool,
    /// The arrival counters of reductions a launch's blocks finish themselves
    /// (kernels/arrival.cuh: channel sums cut into parts): zeroed once here, and
    /// every launch leaves them zeroed. Kernels on the one stream run in order, so launches
    /// share them.
    counters: CudaSlice<i32>,
}

/// The arithmetic of the products a caller allows TF32 for (`Gemm::tf32`: convolutions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// TF32 tensor cores (10-bit mantissas in, FP32 sums), PyTorch's default for convolutions
    /// (`torch.backends.cudnn.allow_tf32`). Linear layers stay FP32, as PyTorch's matmuls.
    #[default]
    Tf32,
    /// FP32 for every product: the exact path, and the reference the TF32 one is tested against.
    Fp32,
}

/// A device's name and the figures that bound its speed.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    /// The name the driver reports, e.g. `NVIDIA H200`.
    pub name: String,
    /// (major, minor): (9, 0) for an H100 or H200.
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors (SMs).
    pub multiprocessors: usize,
    /// The highest SM clock the driver reports.
    pub clock_mhz: usize,
    /// Total device memory, in bytes.
    pub memory_bytes: usize,
    /// The CUDA version the driver supports, as 1000 * major + 10 * minor.
    pub driver_cuda_version: i32,
}

impl DeviceInfo {
    /// FP32 lanes per multiprocessor: 64 on Volta, Turing and the A100 (sm_80), 128 on later
    /// parts (sm_86 and up, Hopper included).
    pub fn fp32_lanes_per_sm(&self) -> usize {
        match self.compute_capability {
            (major, _) if major < 8 => 64,
            (8, 0) => 64,
            _ => 128,
        }
    }
    /// The FP32 fused-multiply-add peak at the highest clock, in TFLOP/s: computed from the
    /// attributes, not measured.
    pub fn fp32_peak_tflops(&self) -> f64 {
        (self.multiprocessors * self.fp32_lanes_per_sm() * 2) as f64 * self.clock_mhz as f64 * 1e6 / 1e12
    }
}

/// One GPU. Cloning shares the context, stream, kernels and memory allocator.
#[derive(Clone)]
pub struct Cuda {
    inner: Arc<Inner>,
    precision: Precision,
}

/// Launches `$name` with `$cfg` and the given kernel arguments (references that outlive the call).
///
/// Every call site must pass the arguments in the order and types of the kernel's parameter
/// list in `kernels/<family>.cu`, after checking (`tensor::checks`) that each buffer holds what
/// the kernel reads or writes for the sizes passed.
macro_rules! launch {
    ($self:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let cfg: LaunchConfig = $cfg;
        let func = $self.function($name)?;
        let mut builder = $self.inner.stream.launch_builder(func);
        $( builder.arg($arg); )*
        // SAFETY: the arguments match the kernel's parameters, and the caller's checks bound
        // every index the kernel forms for these sizes within its buffers (see the macro's doc).
        let launched = unsafe { builder.launch(cfg) };
        $self.launched($name, &cfg, launched)
    }};
}

/// `CONVNET_SYNC=1`: wait for every kernel as it is launched, so that a fault is reported by
/// the launch that caused it (kernel name and geometry) rather than by the next copy.
fn sync_each_launch() -> bool {
    static SYNC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SYNC.get_or_init(|| std::env::var("CONVNET_SYNC").is_ok_and(|v| v == "1"))
}

/// What a failure surfacing at a copy or a synchronisation means, for its message.
const EARLIER_FAULT: &str = "an earlier kernel may have faulted; CONVNET_SYNC=1 names it";

/// A size as the kernels' `int`, or an error for tensors beyond 2^31 values.
fn int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::InvalidArgument(format!("{what} = {v} exceeds the CUDA kernels' 32-bit sizes")))
}

/// kernels/gemm.cu's `Epilogue`, which the `*_epilogue` kernels and `sgemm_split_reduce` take by
/// value: C's rows cut into `parts` outputs (`first[p]..first[p + 1]`), each with its address
/// (part 0's is the kernel's C), bias address (0: none) and ReLU; one block length for all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelEpilogue {
    parts: i32,
    block: i32,
    first: [i32; EPILOGUE_PARTS + 1],
    c: [u64; EPILOGUE_PARTS],
    bias: [u64; EPILOGUE_PARTS],
    relu: [i32; EPILOGUE_PARTS],
    mask_delta: i64,
    masked: i32,
}

// The C struct's size: 7 ints, 4 bytes of padding to align the pointers, 8 pointers, 4 ints,
// the mask's 8-byte offset and its flag, 4 bytes of padding at the end.
const _: () = assert!(std::mem::size_of::<KernelEpilogue>() == 128);

// SAFETY: plain data (integers and device addresses) laid out as the kernels' `Epilogue`
// (repr(C), the same fields in the same order), so its bytes are a valid kernel argument.
unsafe impl cudarc::driver::DeviceRepr for KernelEpilogue {}

/// kernels/gemm.cu's `Gather`, which the implicit convolution kernels take by value: the
/// gathered tensor (channels, plane, channel and image strides), the plane of the product's
/// pixels (width, size), the kernel, stride and padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelGather {
    channels: i32,
    h: i32,
    w: i32,
    out_w: i32,
    out_plane: i32,
    kh: i32,
    kw: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    chan_stride: i32,
    img_stride: i32,
}

// The C struct's size: 13 ints.
const _: () = assert!(std::mem::size_of::<KernelGather>() == 52);

// SAFETY: plain integers laid out as the kernels' `Gather` (repr(C), the same fields in the
// same order), so its bytes are a valid kernel argument.
unsafe impl cudarc::driver::DeviceRepr for KernelGather {}

impl KernelGather {
    /// Gathering images of x (NCHW, `geo`'s input) for the forward or the weight gradient,
    /// whose pixels are the output's.
    fn input(geo: &ConvGeometry) -> Result<KernelGather> {
        Self::of(
            geo,
            geo.c_in,
            (geo.h, geo.w),
            (geo.out_w, geo.col_cols()),
            (geo.h * geo.w, geo.c_in * geo.h * geo.w),
        )
    }
    /// Gathering the output gradient of `count` images in the products' rows layout
    /// (`[c_out][count][out_h][out_w]`) for the input gradient, whose pixels are the input's.
    fn output_grad(geo: &ConvGeometry, count: usize) -> Result<KernelGather> {
        let plane = geo.col_cols();
        Self::of(geo, geo.c_out, (geo.out_h, geo.out_w), (geo.w, geo.h * geo.w), (count * plane, plane))
    }
    fn of(
        geo: &ConvGeometry,
        channels: usize,
        (h, w): (usize, usize),
        (out_w, out_plane): (usize, usize),
        (chan_stride, img_stride): (usize, usize),
    ) -> Result<KernelGather> {
        let win = &geo.window;
        Ok(KernelGather {
            channels: int("channels", channels)?,
            h: int("h", h)?,
            w: int("w", w)?,
            out_w: int("out_w", out_w)?,
            out_plane: int("plane", out_plane)?,
            kh: int("kh", win.kernel.0)?,
            kw: int("kw", win.kernel.1)?,
            stride_h: int("sh", win.stride.0)?,
            stride_w: int("sw", win.stride.1)?,
            pad_h: int("ph", win.padding.0)?,
            pad_w: int("pw", win.padding.1)?,
            chan_stride: int("channel stride", chan_stride)?,
            img_stride: int("image stride", img_stride)?,
        })
    }
}

/// Parts `concat_channels` and `split_channels` move in one launch (the kernels' four slots).
pub const PARTS_PER_LAUNCH: usize = 4;

/// The `int` arguments of one launch of `concat_channels` or `split_channels` over up to four
/// parts, each given as its channels and its first channel in the whole (empty slots 0), and
/// the values it moves. The sizes of the whole were checked against its buffer already.
fn channel_part_args(
    op: &str,
    parts: &[(usize, usize)],
    n: usize,
    plane_len: usize,
) -> Result<([i32; 8], usize)> {
    let mut args = [0i32; 2 * PARTS_PER_LAUNCH];
    for (k, &(channels, first)) in parts.iter().enumerate() {
        args[k] = int("channels", channels)?;
        args[PARTS_PER_LAUNCH + k] = int("first channel", first)?;
    }
    let channels: usize = parts.iter().map(|&(c, _)| c).sum();
    let moved = checks::extent(op, "the parts", &[&[n, channels, plane_len]])?;
    int(op, moved)?;
    Ok((args, moved))
}

/// Each present part's channels and first channel in the whole, from `(present, channels)` of
/// parts lying side by side from channel 0 (a part not present still takes its channels).
fn part_firsts(parts: impl Iterator<Item = (bool, usize)>) -> Vec<(usize, usize)> {
    let mut first = 0;
    parts
        .filter_map(|(present, channels)| {
            let at = first;
            first += channels;
            present.then_some((channels, at))
        })
        .collect()
}

/// Values of one parameter a block of the multi-tensor optimizer kernels updates (`OPTIM_CHUNK`
/// in `kernels/optim.cu`).
pub const OPTIM_CHUNK: usize = 4096;

/// The multi-tensor optimizer kernels' table (`kernels/optim.cu`): five words per parameter
/// (value, gradient, two state buffers or 0, length), then two per block (the parameter, the
/// first value of its chunk). Returns the table and the number of blocks.
fn optim_table(params: &[[u64; 5]]) -> (Vec<u64>, usize) {
    let mut table: Vec<u64> = params.iter().flatten().copied().collect();
    let mut blocks = 0;
    for (k, words) in params.iter().enumerate() {
        for start in (0..words[4]).step_by(OPTIM_CHUNK) {
            table.extend([k as u64, start]);
            blocks += 1;
        }
    }
    (table, blocks)
}

/// `copy_channels`' sizes as the kernel's `int`s, each checked (the checks bound only the
/// buffers' lengths, not every factor), and the number of values it moves.
fn copy_channels_args(
    src_channels: usize,
    src_first: usize,
    dst_channels: usize,
    dst_first: usize,
    count: usize,
    n: usize,
    plane_len: usize,
) -> Result<[i32; 7]> {
    let moved = checks::extent("copy_channels", "the copy", &[&[n, count, plane_len]])?;
    int("copy_channels size", moved)?;
    Ok([
        int("src_channels", src_channels)?,
        int("src_first", src_first)?,
        int("dst_channels", dst_channels)?,
        int("dst_first", dst_first)?,
        int("count", count)?,
        int("n", n)?,
        int("plane_len", plane_len)?,
    ])
}

impl Cuda {
    /// Opens GPU `ordinal` and loads every kernel.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        let (ctx, device_name) = device::open(ordinal)?;
        let stream = ctx.default_stream();
        // SAFETY: every kernel, copy and allocation of this backend goes through this one
        // stream, so stream order alone keeps each buffer's uses in sequence; cudarc's
        // cross-stream event tracking would only add overhead.
        unsafe { ctx.disable_event_tracking() };
        let mut functions = HashMap::new();
        // An sm_90 device loads the prebuilt cubins (no JIT at start); others JIT the PTX.
        let capability = ctx
            .compute_capability()
            .map_err(|e| Error::Device(format!("reading the compute capability: {e}")))?;
        for m in MODULES {
            let module = if capability == CUBIN_CAPABILITY {
                ctx.load_module(Ptx::from_binary(m.sm_90.to_vec())).map_err(|e| {
                    Error::Device(format!("loading crates/cuda/cubin/{}.sm_90.cubin failed: {e}", m.family))
                })?
            } else {
                ctx.load_module(Ptx::from_src(m.ptx)).map_err(|e| {
                    Error::Device(format!("loading crates/cuda/ptx/{}.ptx failed: {e}", m.family))
                })?
            };
            for name in m.kernels {
                let f = module
                    .load_function(name)
                    .map_err(|e| Error::Device(format!("kernel {name} of kernels/{}.cu: {e}", m.family)))?;
                functions.insert(*name, f);
            }
        }
        let allocator = Allocator::new(stream.clone(), format!("cuda:{ordinal} ({device_name})"));
        let multiprocessors = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| Error::Device(format!("reading the multiprocessor count: {e}")))?
            .max(1) as usize;
        // The TF32 kernels need more shared memory than the 48 KiB a launch gets by default:
        // opt in, or keep to FP32 where the device cannot give it (or has no TF32 tensor cores).
        let shared = plan::Arithmetic::Tf32.shared_bytes() as i32;
        let tensor_cores = capability.0 >= 8
            && MODULES.iter().flat_map(|m| m.kernels).filter(|name| is_tensor_kernel(name)).all(|name| {
                functions.get(name).is_some_and(|f| {
                    f.set_attribute(
                        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        shared,
                    )
                    .is_ok()
                })
            });
        let staging = Staging::new(&ctx, &stream)?;
        let counters = stream
            .alloc_zeros::<i32>(plan::arrival_counters(multiprocessors))
            .map_err(|e| Error::Device(format!("allocating the arrival counters: {e}")))?;
        let inner = Inner {
            ordinal,
            device_name,
            ctx,
            stream,
            functions,
            allocator,
            staging,
            multiprocessors,
            tensor_cores,
            counters,
        };
        Ok(Cuda { inner: Arc::new(inner), precision: Precision::default() })
    }

    /// The same GPU computing convolution products in `precision` (the default is TF32, as
    /// PyTorch's convolutions).
    pub fn with_precision(&self, precision: Precision) -> Cuda {
        Cuda { inner: self.inner.clone(), precision }
    }

    /// The precision of convolution products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether products that allow TF32 run on tensor cores here (sm_80 and up, and the
    /// precision is TF32).
    pub fn uses_tensor_cores(&self) -> bool {
        self.inner.tensor_cores && self.precision == Precision::Tf32
    }

    /// The arithmetic of convolution products here (what `conv_plan` plans for).
    fn conv_arithmetic(&self) -> plan::Arithmetic {
        if self.uses_tensor_cores() {
            plan::Arithmetic::Tf32
        } else {
            plan::Arithmetic::Fp32
        }
    }

    /// The GPU's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.inner.device_name
    }

    /// The device's properties that the benchmarks and reports need.
    pub fn device_info(&self) -> Result<DeviceInfo> {
        use cudarc::driver::sys::CUdevice_attribute as Attr;
        let ctx = &self.inner.ctx;
        let attr = |a: Attr| {
            ctx.attribute(a)
                .map(|v| v.max(0) as usize)
                .map_err(|e| Error::Device(format!("reading device attribute {a:?}: {e}")))
        };
        let mut driver = 0i32;
        // SAFETY: the driver is initialised (this context exists); it writes one int to a live
        // local.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver) };
        Ok(DeviceInfo {
            name: self.inner.device_name.clone(),
            compute_capability: ctx
                .compute_capability()
                .map_err(|e| Error::Device(format!("reading the compute capability: {e}")))?,
            multiprocessors: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            clock_mhz: attr(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)? / 1000,
            memory_bytes: ctx
                .total_mem()
                .map_err(|e| Error::Device(format!("reading the memory size: {e}")))?,
            driver_cuda_version: driver,
        })
    }

    /// Waits for every queued kernel (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.inner
            .stream
            .synchronize()
            .map_err(|e| Error::Device(format!("synchronize: {e} ({EARLIER_FAULT})")))
    }

    /// The stream every kernel runs on (for timing with events).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Bytes of device memory the allocator keeps for reuse.
    pub fn cached_bytes(&self) -> usize {
        self.inner.allocator.cached_bytes()
    }

    /// A product on kernels/gemm.cu's kernels (checked by the caller), with a convolution's
    /// epilogue on the NN `*_epilogue` kernels when `epi` is given (its part 0 stored through
    /// `c` from `g.c_offset`). Split-k (see gemm.cu's top): the parts' raw sums into a
    /// workspace, then one pass adds them in order into C, through the epilogue.
    fn product(
        &self,
        g: &Gemm,
        a: &Buffer,
        b: &Buffer,
        c: &mut Buffer,
        epi: Option<&KernelEpilogue>,
    ) -> Result<()> {
        if g.batch == 0 || g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let sum_batch = (g.c_stride == 0 && g.batch > 1) as i32;
        let (m, n, k, batch) = (int("m", g.m)?, int("n", g.n)?, int("k", g.k)?, int("batch", g.batch)?);
        let [ao, as_, bo, bs, co, cs] =
            [g.a_offset, g.a_stride, g.b_offset, g.b_stride, g.c_offset, g.c_stride].map(|v| v as i64);
        let arithmetic =
            if g.tf32 && self.uses_tensor_cores() { plan::Arithmetic::Tf32 } else { plan::Arithmetic::Fp32 };
        let launch = plan::gemm(g, self.inner.multiprocessors, arithmetic);
        let name = match epi {
            Some(_) => plan::gemm_epilogue_kernel(&launch, g.trans_a),
            None => plan::gemm_kernel(g, &launch),
        };
        let (alpha, beta) = (g.alpha, g.beta);
        let splits = launch.splits as i32;
        // A null pointer where there is no workspace (no split).
        let null = 0u64;
        let mut w = if launch.splits > 1 { Some(self.uninit(launch.splits * g.m * g.n)?) } else { None };
        let cfg = launch.config();
        let mut builder = self.inner.stream.launch_builder(self.function(name)?);
        builder.arg(&m).arg(&n).arg(&k).arg(&alpha).arg(a.slice()).arg(&ao).arg(&as_).arg(b.slice());
        builder.arg(&bo).arg(&bs).arg(&beta).arg(c.slice_mut()).arg(&co).arg(&cs).arg(&batch);
        builder.arg(&sum_batch).arg(&splits);
        match w.as_mut() {
            Some(w) => builder.arg(w.slice_mut()),
            None => builder.arg(&null),
        };
        if let Some(e) = epi {
            builder.arg(e);
        }
        // SAFETY: the arguments match the kernel's parameters in order and type (the *_epilogue
        // kernels take the Epilogue after W), and the caller's checks bound every index it forms
        // within its buffers: A, B and C hold `required_lengths`, a blocked C covers the same
        // m * n values from c_offset (n a multiple of block), and each further part of the
        // epilogue its rows' values from its address, bias its rows; a mask (one part, block 0)
        // holds as many values as C, each read at its C element's offset plus the buffers'
        // distance; W has splits * m * n.
        let launched = unsafe { builder.launch(cfg) };
        self.launched(name, &cfg, launched)?;
        match w {
            Some(w) => self.split_reduce(&w, launch.splits, g, c, epi.unwrap_or(&KernelEpilogue::default())),
            None => Ok(()),
        }
    }

    /// `sgemm_split_reduce`: the `splits` parts in `w` (each `g.m x g.n` raw sums) added in
    /// order into C from `g.c_offset`, scaled by `g.alpha` and `g.beta`, through `epi`. The
    /// caller's checks bound C for the product `g` in the epilogue's layout.
    fn split_reduce(
        &self,
        w: &Buffer,
        splits: usize,
        g: &Gemm,
        c: &mut Buffer,
        epi: &KernelEpilogue,
    ) -> Result<()> {
        let splits = int("splits", splits)?;
        let (m, n, co) = (int("m", g.m)?, int("n", g.n)?, g.c_offset as i64);
        let (alpha, beta) = (g.alpha, g.beta);
        let cfg = plan::split_reduce(g.m * g.n);
        let mut builder = self.inner.stream.launch_builder(self.function("sgemm_split_reduce")?);
        builder
            .arg(w.slice())
            .arg(&splits)
            .arg(&m)
            .arg(&n)
            .arg(&alpha)
            .arg(&beta)
            .arg(c.slice_mut())
            .arg(&co);
        builder.arg(epi);
        // SAFETY: the arguments match the kernel's parameters in order and type; W holds the
        // splits * m * n partial sums (allocated so by the caller), C the m * n outputs from
        // c_offset (in the epilogue's layout and parts), as the caller checked.
        let launched = unsafe { builder.launch(cfg) };
        self.launched("sgemm_split_reduce", &cfg, launched)
    }

    /// The device address of image `first` of `x` (NCHW, `geo`'s input) for an implicit product
    /// gathering `count` images from it, whose offsets are 32-bit: an error past 2^31 values.
    fn gathered_images(&self, x: &Buffer, geo: &ConvGeometry, first: usize, count: usize) -> Result<u64> {
        let image = geo.c_in * geo.h * geo.w;
        int("the input's images", count * image)?;
        Ok(self.address(x) + 4 * (first * image) as u64)
    }

    /// One implicit convolution product `g` (`product`'s kernel, see kernels/gemm.cu's Gather):
    /// A read whole, B gathered from the device address `b` as `gather` says, C from
    /// `g.c_offset` through `epi` (the weight gradient's is plain: row-major, alpha and beta);
    /// with split-k, the parts' sums added by `sgemm_split_reduce`. The caller checked every
    /// buffer against the convolution's geometry.
    #[allow(clippy::too_many_arguments)]
    fn implicit_product(
        &self,
        product: plan::Implicit,
        g: &Gemm,
        a: &Buffer,
        b: u64,
        c: &mut Buffer,
        epi: &KernelEpilogue,
        gather: &KernelGather,
    ) -> Result<()> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let (m, n, k) = (int("m", g.m)?, int("n", g.n)?, int("k", g.k)?);
        let launch = plan::implicit_gemm(g, self.inner.multiprocessors, product);
        let name = plan::implicit_kernel(product, &launch);
        let (alpha, beta, co) = (g.alpha, g.beta, g.c_offset as i64);
        let splits = int("splits", launch.splits)?;
        let null = 0u64;
        let mut ws = if launch.splits > 1 { Some(self.uninit(launch.splits * g.m * g.n)?) } else { None };
        let cfg = launch.config();
        let mut builder = self.inner.stream.launch_builder(self.function(name)?);
        builder
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&alpha)
            .arg(a.slice())
            .arg(&b)
            .arg(&beta)
            .arg(c.slice_mut())
            .arg(&co);
        builder.arg(&splits);
        match ws.as_mut() {
            Some(ws) => builder.arg(ws.slice_mut()),
            None => builder.arg(&null),
        };
        builder.arg(epi).arg(gather);
        // SAFETY: the arguments match the kernel's parameters in order and type (m, n, k,
        // alpha, A, B, beta, C, c_off, splits, W, the Epilogue, the Gather). A holds the m x k
        // operand; every B offset the kernel forms is a channel, image and cell inside the
        // gathered tensor that `gather` describes (cells outside its plane are zero-filled, not
        // read), which the caller checked to lie inside its buffer from `b` and to hold fewer
        // than 2^31 values; C's m x n values from c_offset (NCHW blocks through `epi`, or
        // row-major) were checked; W has splits * m * n values.
        let launched = unsafe { builder.launch(cfg) };
        self.launched(name, &cfg, launched)?;
        match ws {
            Some(ws) => self.split_reduce(&ws, launch.splits, g, c, epi),
            None => Ok(()),
        }
    }

    /// kernels/gemm.cu's `Epilogue` for up to four outputs of one product, each given as its
    /// rows, its epilogue (bias, ReLU; the first one's block for all) and the device address it
    /// is stored at (ignored for the first, which is stored through the kernel's C).
    fn kernel_epilogue(&self, outs: &[(usize, &Epilogue<'_, Buffer>, u64)]) -> Result<KernelEpilogue> {
        let block = outs.first().map_or(0, |o| o.1.block);
        let mut e =
            KernelEpilogue { parts: outs.len() as i32, block: int("block", block)?, ..Default::default() };
        let mut at = 0;
        for (i, &(rows, epi, c)) in outs.iter().enumerate() {
            e.first[i] = int("rows", at)?;
            e.bias[i] = epi.bias.map_or(0, |b| self.address(b));
            e.relu[i] = epi.relu as i32;
            e.c[i] = if i == 0 { 0 } else { c };
            at += rows;
        }
        e.first[outs.len()] = int("rows", at)?;
        Ok(e)
    }

    /// The device address of `b`'s first value. Only for arguments of kernels launched on this
    /// backend's stream (stream order keeps their uses in sequence; see `new`).
    fn address(&self, b: &Buffer) -> u64 {
        let (address, _sync) = b.slice().device_ptr(&self.inner.stream);
        address
    }

    /// `address` of a buffer a kernel writes.
    fn address_mut(&self, b: &mut Buffer) -> u64 {
        let (address, _sync) = b.slice_mut().device_ptr_mut(&self.inner.stream);
        address
    }

    /// The device address of the first `needed` arrival counters (kernels/arrival.cuh), for a
    /// launch of `kernel`; an error if the plan asks for more than there are.
    fn counters(&self, needed: usize, kernel: &str) -> Result<u64> {
        let have = self.inner.counters.len();
        if needed > have {
            return Err(Error::Device(format!(
                "{kernel}: a reduction over {needed} outputs' parts needs as many arrival counters; the backend keeps {have}"
            )));
        }
        let (address, _sync) = self.inner.counters.device_ptr(&self.inner.stream);
        Ok(address)
    }

    fn function(&self, name: &'static str) -> Result<&CudaFunction> {
        self.inner.functions.get(name).ok_or_else(|| Error::Device(format!("kernel {name} is not loaded")))
    }

    /// Launches the multi-tensor optimizer kernel `name` over the parameters `words` describes
    /// (see `optim_table`), with the kernel's scalar arguments `hyper` after the table's.
    fn optim_steps(&self, name: &'static str, words: &[[u64; 5]], hyper: &[f32]) -> Result<()> {
        let (table, blocks) = optim_table(words);
        if blocks == 0 {
            return Ok(());
        }
        let tensors = int("parameters", words.len())?;
        let grid = u32::try_from(blocks)
            .ok()
            .filter(|&b| b <= i32::MAX as u32)
            .ok_or_else(|| Error::InvalidArgument(format!("{name}: {blocks} blocks exceed a grid")))?;
        // Uploaded with this launch: its pointers change with every step's gradients.
        let table = self
            .inner
            .stream
            .clone_htod(&table)
            .map_err(|e| Error::Device(format!("{name}: uploading its table: {e} ({EARLIER_FAULT})")))?;
        let cfg = LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let mut builder = self.inner.stream.launch_builder(self.function(name)?);
        builder.arg(&table).arg(&tensors);
        for x in hyper {
            builder.arg(x);
        }
        // SAFETY: the arguments match the kernel's parameters in order and type (the table, the
        // parameters' count, then the f32 scalars `hyper`, which its callers give in the
        // kernel's order); the table holds, for each parameter, pointers to buffers the caller
        // checked to hold its length (`checks::sgd` / `checks::adam`), kept alive and borrowed
        // by the caller past the launch, and one chunk entry per block, each inside its
        // parameter.
        let launched = unsafe { builder.launch(cfg) };
        self.launched(name, &cfg, launched)
    }

    fn pool_args(geo: &PoolGeometry) -> Result<[i32; 11]> {
        let w = &geo.window;
        Ok([
            int("planes", geo.planes())?,
            int("h", geo.h)?,
            int("w", geo.w)?,
            int("kh", w.kernel.0)?,
            int("kw", w.kernel.1)?,
            int("sh", w.stride.0)?,
            int("sw", w.stride.1)?,
            int("ph", w.padding.0)?,
            int("pw", w.padding.1)?,
            int("oh", geo.out_h)?,
            int("ow", geo.out_w)?,
        ])
    }

    /// Launches a kernel whose arguments are its inputs, its outputs, then `int` sizes (the
    /// pooling and im2col families), one thread per `total` element, grid-stride.
    fn launch_sized(
        &self,
        name: &'static str,
        total: usize,
        inputs: &[&Buffer],
        outs: &mut [&mut Buffer],
        sizes: &[i32],
    ) -> Result<()> {
        let func = self.function(name)?;
        let mut builder = self.inner.stream.launch_builder(func);
        for input in inputs {
            builder.arg(input.slice());
        }
        for out in outs.iter_mut() {
            builder.arg(out.slice_mut());
        }
        for v in sizes {
            builder.arg(v);
        }
        let cfg = elementwise(total);
        // SAFETY: the pooling and im2col kernels take (inputs, outputs, int sizes) in that
        // order, and the callers checked each buffer against the sizes (tensor::checks).
        let launched = unsafe { builder.launch(cfg) };
        self.launched(name, &cfg, launched)
    }

    /// A launch's outcome as this crate's error, naming the kernel and its geometry; with
    /// `CONVNET_SYNC=1`, after waiting for the kernel to finish.
    fn launched<T>(
        &self,
        name: &str,
        cfg: &LaunchConfig,
        launched: std::result::Result<T, cudarc::driver::DriverError>,
    ) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::Device(format!(
                "kernel {name} (grid {:?}, block {:?}, {} bytes of shared memory) failed: {e}",
                cfg.grid_dim, cfg.block_dim, cfg.shared_mem_bytes
            ))
        };
        launched.map_err(|e| fail(&e))?;
        if sync_each_launch() {
            self.inner.stream.synchronize().map_err(|e| fail(&e))?;
        }
        Ok(())
    }

    /// The first `n` labels (already checked against the classes on the host) on the device, as
    /// the f32 the loss kernels read: exact, as the classes are checked to be at most 2^24. The
    /// upload needs no synchronisation with the kernels queued before it.
    fn labels_on_device(&self, op: &str, labels: &[usize], n: usize, classes: usize) -> Result<Buffer> {
        if classes > 1 << 24 {
            return Err(Error::InvalidArgument(format!(
                "{op}: {classes} classes; the CUDA loss kernels take at most 2^24 (labels travel as f32)"
            )));
        }
        let as_f32: Vec<f32> = labels[..n].iter().map(|&l| l as f32).collect();
        self.from_slice(&as_f32)
    }

    /// `dbias[c]` = the sum of channel c of `dy`, in one pass and one launch (kernels/bias.cu's
    /// channel_sums: with parts, the last part of each channel adds them in order); with
    /// `mask = Some(y)` the backward of bias + ReLU, which also writes `dz = y > 0 ? dy : 0` at
    /// the device address `dz.0`, channel by channel when `dz.1` (`bias_relu_backward_rows`).
    /// Arguments already checked.
    #[allow(clippy::too_many_arguments)]
    fn channel_sums(
        &self,
        mask: Option<&Buffer>,
        dy: &Buffer,
        dz: Option<(u64, bool)>,
        dbias: &mut Buffer,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        if channels == 0 {
            return Ok(());
        }
        let launch = plan::channel_sums(outer, channels, self.inner.multiprocessors);
        let (o, c, i) = (int("outer", outer)?, int("channels", channels)?, int("inner", inner)?);
        let parts = launch.parts as i32;
        // With one part per channel the blocks' sums go to dbias directly (the same rounding as
        // the parts' sum: a double rounded once); no partial sums, no counters.
        let split = launch.parts > 1;
        let mut partial = if split { Some(self.uninit(channels * launch.parts)?) } else { None };
        let counters = self.counters(if split { channels } else { 0 }, "channel_sums")?;
        let null = 0u64;
        let cfg = launch.config();
        let func = self.function("channel_sums")?;
        let mut builder = self.inner.stream.launch_builder(func);
        match mask {
            Some(y) => builder.arg(y.slice()),
            None => builder.arg(&null),
        };
        builder.arg(dy.slice());
        let (dz, dz_rows) = dz.map_or((0, 0), |(address, rows)| (address, rows as i32));
        builder.arg(&dz).arg(&dz_rows);
        match partial.as_mut() {
            Some(p) => builder.arg(p.slice_mut()),
            None => builder.arg(&null),
        };
        builder.arg(&counters).arg(dbias.slice_mut()).arg(&o).arg(&c).arg(&i).arg(&parts);
        // SAFETY: the arguments match channel_sums' parameters in order and type; the caller
        // checked that dy (and y when given) hold outer * channels * inner values, as many from
        // dz's address when given (in either layout), and dbias `channels`; partial holds
        // channels * parts values when there are parts, and the counters one zeroed int per
        // channel then (null y and dz: plain sums).
        let launched = unsafe { builder.launch(cfg) };
        self.launched("channel_sums", &cfg, launched)
    }

    fn conv_args(geo: &ConvGeometry, first: usize, count: usize) -> Result<[i32; 13]> {
        let w = &geo.window;
        Ok([
            int("first", first)?,
            int("count", count)?,
            int("c_in", geo.c_in)?,
            int("h", geo.h)?,
            int("w", geo.w)?,
            int("kh", w.kernel.0)?,
            int("kw", w.kernel.1)?,
            int("sh", w.stride.0)?,
            int("sw", w.stride.1)?,
            int("ph", w.padding.0)?,
            int("pw", w.padding.1)?,
            int("oh", geo.out_h)?,
            int("ow", geo.out_w)?,
        ])
    }
}

impl Backend for Cuda {
    type Storage = Buffer;
    type Reading = PendingRead;

    /// `cuda:0`, and the arithmetic of its convolutions: `cuda:0 (tf32)` or `cuda:0 (fp32)`.
    fn name(&self) -> String {
        format!("cuda:{} ({})", self.inner.ordinal, if self.uses_tensor_cores() { "tf32" } else { "fp32" })
    }

    fn zeros(&self, len: usize) -> Result<Buffer> {
        let mut b = self.inner.allocator.take(len)?;
        self.fill(&mut b, 0.0)?;
        Ok(b)
    }
    fn uninit(&self, len: usize) -> Result<Buffer> {
        self.inner.allocator.take(len)
    }
    /// Large uploads (a batch) go through page-locked memory on the copy stream and overlap the
    /// kernels queued before them; small ones (parameters, labels) go directly.
    fn from_slice(&self, data: &[f32]) -> Result<Buffer> {
        if data.len() >= STAGED_UPLOAD_MIN {
            return self.inner.staging.upload(&self.inner.allocator, data);
        }
        let mut b = self.inner.allocator.take(data.len())?;
        if !data.is_empty() {
            self.inner.stream.memcpy_htod(data, b.slice_mut()).map_err(|e| {
                Error::Device(format!("upload of {} values: {e} ({EARLIER_FAULT})", data.len()))
            })?;
        }
        Ok(b)
    }
    fn to_vec(&self, src: &Buffer) -> Result<Vec<f32>> {
        if src.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .stream
            .clone_dtoh(src.slice())
            .map_err(|e| Error::Device(format!("download of {} values: {e} ({EARLIER_FAULT})", src.len())))
    }
    fn start_read(&self, src: &Buffer) -> Result<PendingRead> {
        self.inner.staging.start_read(src)
    }
    fn finish_read(&self, reading: PendingRead) -> Result<Vec<f32>> {
        reading.finish()
    }
    fn storage_len(&self, s: &Buffer) -> usize {
        s.len()
    }
    fn copy(&self, src: &Buffer) -> Result<Buffer> {
        let mut b = self.inner.allocator.take(src.len())?;
        if !src.is_empty() {
            self.inner.stream.memcpy_dtod(src.slice(), b.slice_mut()).map_err(|e| {
                Error::Device(format!("device copy of {} values: {e} ({EARLIER_FAULT})", src.len()))
            })?;
        }
        Ok(b)
    }
    /// Free device memory, plus what the allocator caches for reuse.
    fn memory_available(&self) -> Option<usize> {
        let (free, _) = self.inner.ctx.mem_get_info().ok()?;
        Some(free + self.inner.allocator.cached_bytes())
    }
    fn release_cached(&self) -> usize {
        self.inner.allocator.release()
    }
    fn fill(&self, dst: &mut Buffer, value: f32) -> Result<()> {
        let n = int("len", dst.len())?;
        launch!(self, "fill", elementwise(dst.len()), dst.slice_mut(), &n, &value)
    }

    fn conv_plan(&self, geo: &ConvGeometry) -> ConvPlan {
        plan::conv(geo, self.conv_arithmetic())
    }

    fn gemm(&self, g: &Gemm, a: &Buffer, b: &Buffer, c: &mut Buffer) -> Result<()> {
        checks::gemm(g, a.len(), b.len(), c.len())?;
        self.product(g, a, b, c, None)
    }

    /// The NN layout (a convolution's forward products) stores through the `*_epilogue`
    /// kernels; the others (no caller yet) are composed.
    fn gemm_epilogue(
        &self,
        g: &Gemm,
        a: &Buffer,
        b: &Buffer,
        c: &mut Buffer,
        epi: &Epilogue<'_, Buffer>,
    ) -> Result<()> {
        let bias = epi.bias.map(|b| b.len());
        let mask = epi.mask.map(|m| m.len());
        checks::gemm_epilogue(g, (a.len(), b.len(), c.len()), bias, epi.relu, epi.block, mask)?;
        if g.trans_b {
            return tensor::compose_epilogue(self, g, a, b, c, epi);
        }
        let mut e = self.kernel_epilogue(&[(g.m, epi, 0)])?;
        if let Some(mask) = epi.mask {
            // The mask's element lies this many bytes from C's (the same layout, checked to be
            // as long): the kernels read it at their store's address plus the difference.
            e.masked = 1;
            e.mask_delta = self.address(mask).wrapping_sub(self.address_mut(c)) as i64;
        }
        self.product(g, a, b, c, Some(&e))
    }

    /// Up to four outputs a launch (`EPILOGUE_PARTS`): one product over their rows, each output's
    /// rows stored and finished by the kernel's epilogue (B read once, no pass after it).
    fn gemm_rows_epilogue(
        &self,
        g: &Gemm,
        a: &Buffer,
        b: &Buffer,
        outs: &mut [RowsOut<'_, Buffer>],
    ) -> Result<()> {
        let rows: Vec<usize> = outs.iter().map(|o| o.rows).collect();
        checks::gemm_rows(g, &rows)?;
        let mut first = 0;
        for out in outs.iter() {
            let part = Gemm { m: out.rows, a_offset: g.a_offset + first * g.k, c_offset: out.c_offset, ..*g };
            first += out.rows;
            let bias = out.epilogue.bias.map(|b| b.len());
            let lens = (a.len(), b.len(), out.c.len());
            let mask = out.epilogue.mask.map(|m| m.len());
            checks::gemm_epilogue(&part, lens, bias, out.epilogue.relu, out.epilogue.block, mask)?;
        }
        let blocks: Vec<usize> = outs.iter().map(|o| o.epilogue.block).collect();
        // A mask is one output's (kernel_epilogue): several go through the composition.
        if !plan::fuses_rows(g, &blocks) || outs.iter().any(|o| o.epilogue.mask.is_some()) {
            return tensor::compose_rows_epilogue(self, g, a, b, outs);
        }
        let mut first = 0;
        for group in outs.chunks_mut(EPILOGUE_PARTS) {
            let m: usize = group.iter().map(|o| o.rows).sum();
            // Parts after the first are stored at their own address (offset included).
            let parts: Vec<_> = group
                .iter()
                .map(|o| (o.rows, &o.epilogue, self.address(o.c) + 4 * o.c_offset as u64))
                .collect();
            let e = self.kernel_epilogue(&parts)?;
            let product = Gemm { m, a_offset: g.a_offset + first * g.k, c_offset: group[0].c_offset, ..*g };
            self.product(&product, a, b, group[0].c, Some(&e))?;
            first += m;
        }
        Ok(())
    }

    fn im2col(
        &self,
        x: &Buffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        cols: &mut Buffer,
    ) -> Result<()> {
        checks::unfold("im2col", geo, first, count, x.len(), cols.len())?;
        let total = count * geo.col_rows() * geo.col_cols();
        self.launch_sized("im2col", total, &[x], &mut [cols], &Self::conv_args(geo, first, count)?)
    }
    fn col2im(
        &self,
        cols: &Buffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut Buffer,
    ) -> Result<()> {
        checks::unfold("col2im", geo, first, count, dx.len(), cols.len())?;
        let total = count * geo.c_in * geo.h * geo.w;
        self.launch_sized("col2im", total, &[cols], &mut [dx], &Self::conv_args(geo, first, count)?)
    }
    /// In TF32, one implicit product (`tgemm*_conv_fwd`, see kernels/gemm.cu's Gather): no
    /// column matrix; otherwise composed (im2col, then the product with its epilogue).
    fn conv_forward(
        &self,
        w: &Buffer,
        x: &Buffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        y: &mut Buffer,
        epi: &Epilogue<'_, Buffer>,
    ) -> Result<()> {
        if !plan::implicit(geo, self.conv_arithmetic()) || epi.mask.is_some() {
            // A mask (which the blocked store refuses) gets the composition's error.
            return tensor::compose_conv_forward(self, w, x, geo, first, count, y, epi);
        }
        checks::conv_products("conv_forward", geo, first, count, (w.len(), x.len(), y.len()), true)?;
        let e = self.kernel_epilogue(&[(geo.c_out, &Epilogue { block: geo.col_cols(), ..*epi }, 0)])?;
        let b = self.gathered_images(x, geo, first, count)?;
        let g = plan::forward_gemm(geo, first, count);
        self.implicit_product(plan::Implicit::Forward, &g, w, b, y, &e, &KernelGather::input(geo)?)
    }
    /// In TF32, one implicit product (`tgemm64_conv_wgrad` or `tgemm96_conv_wgrad`): no column matrix; otherwise
    /// composed (im2col, then the product).
    fn conv_weight_grad(
        &self,
        dy: &Buffer,
        x: &Buffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        beta: f32,
        dw: &mut Buffer,
    ) -> Result<()> {
        if !plan::implicit(geo, self.conv_arithmetic()) {
            return tensor::compose_conv_weight_grad(self, dy, x, geo, first, count, beta, dw);
        }
        checks::conv_products("conv_weight_grad", geo, first, count, (dw.len(), x.len(), dy.len()), false)?;
        let b = self.gathered_images(x, geo, first, count)?;
        let g = plan::weight_grad_gemm(geo, count, beta);
        let plain = KernelEpilogue::default();
        self.implicit_product(plan::Implicit::WeightGrad, &g, dy, b, dw, &plain, &KernelGather::input(geo)?)
    }
    /// In TF32 and for stride 1, one implicit product (`tgemm*_dgrad`) after a transpose of the
    /// weights: no column matrix, no col2im; otherwise composed (`W^T dy` into columns, then
    /// col2im).
    fn conv_input_grad(
        &self,
        w: &Buffer,
        dy: &Buffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut Buffer,
    ) -> Result<()> {
        if !plan::implicit_input_grad(geo, self.conv_arithmetic()) {
            return tensor::compose_conv_input_grad(self, w, dy, geo, first, count, dx);
        }
        checks::conv_products("conv_input_grad", geo, first, count, (w.len(), dx.len(), dy.len()), false)?;
        let g = plan::input_grad_gemm(geo, first, count);
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        // Wt [c_in][kh][kw][c_out]: the weights [c_out][c_in * kh * kw] transposed.
        let mut wt = self.uninit(geo.c_out * geo.col_rows())?;
        self.transpose_blocks(w, 0, geo.c_out, geo.col_rows(), 1, &mut wt, 0)?;
        int("the output gradient", geo.c_out * count * geo.col_cols())?;
        let stored = Epilogue { bias: None, relu: false, block: geo.h * geo.w, mask: None };
        let e = self.kernel_epilogue(&[(geo.c_in, &stored, 0)])?;
        let gather = KernelGather::output_grad(geo, count)?;
        self.implicit_product(plan::Implicit::InputGrad, &g, &wt, self.address(dy), dx, &e, &gather)
    }
    fn transpose_blocks(
        &self,
        src: &Buffer,
        src_offset: usize,
        rows: usize,
        cols: usize,
        block: usize,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<()> {
        checks::transpose_blocks(src.len(), src_offset, rows, cols, block, dst.len(), dst_offset)?;
        let len = rows * cols * block;
        let (r, c, b) = (int("rows", rows)?, int("cols", cols)?, int("block", block)?);
        int("transpose size", len)?;
        let (so, doff) = (src_offset as i64, dst_offset as i64);
        launch!(
            self,
            "transpose_blocks",
            elementwise(len),
            src.slice(),
            &so,
            &r,
            &c,
            &b,
            dst.slice_mut(),
            &doff
        )
    }
    fn add_bias(
        &self,
        y: &mut Buffer,
        bias: &Buffer,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        checks::bias("add_bias", y.len(), bias.len(), outer, channels, inner)?;
        let (o, c, i) = (int("outer", outer)?, int("channels", channels)?, int("inner", inner)?);
        launch!(
            self,
            "add_bias",
            elementwise(outer * channels * inner),
            y.slice_mut(),
            bias.slice(),
            &o,
            &c,
            &i
        )
    }
    fn bias_grad(
        &self,
        dy: &Buffer,
        outer: usize,
        channels: usize,
        inner: usize,
        dbias: &mut Buffer,
    ) -> Result<()> {
        checks::bias("bias_grad", dy.len(), dbias.len(), outer, channels, inner)?;
        self.channel_sums(None, dy, None, dbias, outer, channels, inner)
    }
    fn bias_relu(
        &self,
        y: &mut Buffer,
        bias: Option<&Buffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        checks::bias("bias_relu", y.len(), bias.map_or(channels, |b| b.len()), outer, channels, inner)?;
        let (o, c, i) = (int("outer", outer)?, int("channels", channels)?, int("inner", inner)?);
        let cfg = elementwise(outer * channels * inner);
        match bias {
            Some(b) => launch!(self, "bias_relu", cfg, y.slice_mut(), b.slice(), &o, &c, &i),
            // A null bias: ReLU alone.
            None => launch!(self, "bias_relu", cfg, y.slice_mut(), &0u64, &o, &c, &i),
        }
    }
    fn bias_relu_backward(
        &self,
        y: &Buffer,
        dy: &Buffer,
        dz: &mut Buffer,
        dbias: Option<&mut Buffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        let len = checks::extent("bias_relu_backward", "the tensor", &[&[outer, channels, inner]])?;
        checks::same_len("bias_relu_backward", len, &[y.len(), dy.len(), dz.len()])?;
        match dbias {
            Some(db) => {
                checks::bias("bias_relu_backward", len, db.len(), outer, channels, inner)?;
                let dz = self.address_mut(dz);
                self.channel_sums(Some(y), dy, Some((dz, false)), db, outer, channels, inner)
            }
            None => {
                let n = int("len", len)?;
                launch!(self, "relu_backward", elementwise(len), y.slice(), dy.slice(), dz.slice_mut(), &n)
            }
        }
    }
    fn bias_relu_backward_rows(
        &self,
        y: &Buffer,
        dy: &Buffer,
        dz: &mut Buffer,
        row: usize,
        dbias: Option<&mut Buffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        let op = "bias_relu_backward_rows";
        let len = checks::extent(op, "the tensor", &[&[outer, channels, inner]])?;
        checks::same_len(op, len, &[y.len(), dy.len()])?;
        let end = checks::extent(op, "the rows", &[&[row, outer, inner], &[channels, outer, inner]])?;
        if dz.len() < end {
            return Err(Error::InvalidArgument(format!(
                "{op}: rows {row}..{} of {outer} x {inner} values need {end} values; dz has {}",
                row + channels,
                dz.len()
            )));
        }
        let dz = self.address_mut(dz) + 4 * (row * outer * inner) as u64;
        match dbias {
            Some(db) => {
                checks::bias(op, len, db.len(), outer, channels, inner)?;
                self.channel_sums(Some(y), dy, Some((dz, true)), db, outer, channels, inner)
            }
            // Without a bias gradient the sums still run (into a scratch buffer): the pass is
            // the same one, and the mask needs no kernel of its own.
            None => {
                let mut scratch = self.uninit(channels)?;
                self.channel_sums(Some(y), dy, Some((dz, true)), &mut scratch, outer, channels, inner)
            }
        }
    }

    fn max_pool2d_forward(
        &self,
        x: &Buffer,
        geo: &PoolGeometry,
        y: &mut Buffer,
        argmax: &mut Buffer,
    ) -> Result<()> {
        checks::pool("max_pool2d_forward", geo, &[x.len()], &[y.len(), argmax.len()])?;
        self.launch_sized(
            "max_pool2d_forward",
            geo.planes() * geo.out_h * geo.out_w,
            &[x],
            &mut [y, argmax],
            &Self::pool_args(geo)?,
        )
    }
    fn max_pool2d_backward(
        &self,
        argmax: &Buffer,
        dy: &Buffer,
        geo: &PoolGeometry,
        dx: &mut Buffer,
    ) -> Result<()> {
        checks::pool("max_pool2d_backward", geo, &[dx.len()], &[argmax.len(), dy.len()])?;
        self.launch_sized(
            "max_pool2d_backward",
            geo.planes() * geo.h * geo.w,
            &[argmax, dy],
            &mut [dx],
            &Self::pool_args(geo)?,
        )
    }
    fn avg_pool2d_forward(&self, x: &Buffer, geo: &PoolGeometry, y: &mut Buffer) -> Result<()> {
        checks::pool("avg_pool2d_forward", geo, &[x.len()], &[y.len()])?;
        self.launch_sized(
            "avg_pool2d_forward",
            geo.planes() * geo.out_h * geo.out_w,
            &[x],
            &mut [y],
            &Self::pool_args(geo)?,
        )
    }
    fn avg_pool2d_backward(&self, dy: &Buffer, geo: &PoolGeometry, dx: &mut Buffer) -> Result<()> {
        checks::pool("avg_pool2d_backward", geo, &[dx.len()], &[dy.len()])?;
        self.launch_sized(
            "avg_pool2d_backward",
            geo.planes() * geo.h * geo.w,
            &[dy],
            &mut [dx],
            &Self::pool_args(geo)?,
        )
    }
    fn global_avg_pool_forward(
        &self,
        x: &Buffer,
        planes: usize,
        plane_len: usize,
        y: &mut Buffer,
    ) -> Result<()> {
        checks::global_pool("global_avg_pool_forward", planes, plane_len, x.len(), y.len())?;
        if planes == 0 {
            return Ok(());
        }
        let (p, l) = (int("planes", planes)?, int("plane_len", plane_len)?);
        let cfg = plan::per_plane(planes);
        launch!(self, "global_avg_pool_forward", cfg, x.slice(), y.slice_mut(), &p, &l)
    }
    fn global_avg_pool_backward(
        &self,
        dy: &Buffer,
        planes: usize,
        plane_len: usize,
        dx: &mut Buffer,
    ) -> Result<()> {
        checks::global_pool("global_avg_pool_backward", planes, plane_len, dx.len(), dy.len())?;
        let (p, l) = (int("planes", planes)?, int("plane_len", plane_len)?);
        launch!(
            self,
            "global_avg_pool_backward",
            elementwise(planes * plane_len),
            dy.slice(),
            dx.slice_mut(),
            &p,
            &l
        )
    }

    fn relu_forward(&self, x: &Buffer, y: &mut Buffer) -> Result<()> {
        checks::same_len("relu_forward", x.len(), &[y.len()])?;
        let n = int("len", x.len())?;
        launch!(self, "relu_forward", elementwise(x.len()), x.slice(), y.slice_mut(), &n)
    }
    fn relu_backward(&self, y: &Buffer, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        checks::same_len("relu_backward", y.len(), &[dy.len(), dx.len()])?;
        let n = int("len", y.len())?;
        launch!(self, "relu_backward", elementwise(y.len()), y.slice(), dy.slice(), dx.slice_mut(), &n)
    }
    fn dropout_forward(
        &self,
        x: &Buffer,
        p: f32,
        seed: u64,
        y: &mut Buffer,
        mask: &mut Buffer,
    ) -> Result<()> {
        checks::dropout_probability(p)?;
        checks::same_len("dropout_forward", x.len(), &[y.len(), mask.len()])?;
        let n = int("len", x.len())?;
        launch!(
            self,
            "dropout_forward",
            elementwise(x.len()),
            x.slice(),
            y.slice_mut(),
            mask.slice_mut(),
            &n,
            &p,
            &seed
        )
    }

    fn softmax_cross_entropy_forward(
        &self,
        logits: &Buffer,
        labels: &[usize],
        n: usize,
        classes: usize,
        loss: &mut Buffer,
        correct: &mut Buffer,
    ) -> Result<()> {
        checks::softmax_cross_entropy(
            "softmax_cross_entropy_forward",
            n,
            classes,
            &[logits.len()],
            labels,
            &[loss.len(), correct.len()],
        )?;
        let labels = self.labels_on_device("softmax_cross_entropy_forward", labels, n, classes)?;
        let (ni, ci) = (int("n", n)?, int("classes", classes)?);
        launch!(
            self,
            "softmax_cross_entropy_forward",
            single_block(256),
            logits.slice(),
            labels.slice(),
            &ni,
            &ci,
            loss.slice_mut(),
            correct.slice_mut()
        )
    }
    fn softmax_cross_entropy_backward(
        &self,
        logits: &Buffer,
        labels: &[usize],
        n: usize,
        classes: usize,
        dloss: &Buffer,
        dlogits: &mut Buffer,
    ) -> Result<()> {
        checks::softmax_cross_entropy(
            "softmax_cross_entropy_backward",
            n,
            classes,
            &[logits.len(), dlogits.len()],
            labels,
            &[dloss.len()],
        )?;
        let labels = self.labels_on_device("softmax_cross_entropy_backward", labels, n, classes)?;
        let (ni, ci) = (int("n", n)?, int("classes", classes)?);
        launch!(
            self,
            "softmax_cross_entropy_backward",
            elementwise(n),
            logits.slice(),
            labels.slice(),
            &ni,
            &ci,
            dloss.slice(),
            dlogits.slice_mut()
        )
    }

    fn concat_channels(
        &self,
        parts: &[(&Buffer, usize)],
        whole: &mut Buffer,
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        let lens: Vec<_> = parts.iter().map(|(b, c)| (Some(b.len()), *c)).collect();
        let total = checks::channel_parts("concat_channels", whole.len(), &lens, n, plane_len)?;
        let (wc, ni, pl) = (int("channels", total)?, int("n", n)?, int("plane_len", plane_len)?);
        // A null pointer for an empty slot: its 0 channels are never read.
        let null = 0u64;
        let placed = part_firsts(parts.iter().map(|&(_, c)| (true, c)));
        for (chunk, placed) in parts.chunks(PARTS_PER_LAUNCH).zip(placed.chunks(PARTS_PER_LAUNCH)) {
            let (args, moved) = channel_part_args("concat_channels", placed, n, plane_len)?;
            if moved == 0 {
                continue;
            }
            let cfg = elementwise(moved);
            let mut builder = self.inner.stream.launch_builder(self.function("concat_channels")?);
            builder.arg(whole.slice_mut()).arg(&wc).arg(&ni).arg(&pl);
            for k in 0..PARTS_PER_LAUNCH {
                match chunk.get(k) {
                    Some((part, _)) => builder.arg(part.slice()),
                    None => builder.arg(&null),
                };
            }
            for a in &args {
                builder.arg(a);
            }
            // SAFETY: the arguments match the kernel's parameters in order and type; the checks
            // above bound every part to its n x channels x plane_len values and the whole to n x
            // total x plane_len, and each part's channels lie inside the whole's from its first.
            let launched = unsafe { builder.launch(cfg) };
            self.launched("concat_channels", &cfg, launched)?;
        }
        Ok(())
    }

    fn split_channels(
        &self,
        whole: &Buffer,
        parts: &mut [(Option<&mut Buffer>, usize)],
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        let lens: Vec<_> = parts.iter().map(|(b, c)| (b.as_ref().map(|b| b.len()), *c)).collect();
        let total = checks::channel_parts("split_channels", whole.len(), &lens, n, plane_len)?;
        let (wc, ni, pl) = (int("channels", total)?, int("n", n)?, int("plane_len", plane_len)?);
        let null = 0u64;
        // The parts wanted, with their places in the whole (skipped ones only move them).
        let placed = part_firsts(parts.iter().map(|(p, c)| (p.is_some(), *c)));
        let mut wanted: Vec<&mut Buffer> = parts.iter_mut().filter_map(|(p, _)| p.as_deref_mut()).collect();
        for (chunk, placed) in wanted.chunks_mut(PARTS_PER_LAUNCH).zip(placed.chunks(PARTS_PER_LAUNCH)) {
            let (args, moved) = channel_part_args("split_channels", placed, n, plane_len)?;
            if moved == 0 {
                continue;
            }
            let cfg = elementwise(moved);
            let mut builder = self.inner.stream.launch_builder(self.function("split_channels")?);
            builder.arg(whole.slice()).arg(&wc).arg(&ni).arg(&pl);
            let mut slots = chunk.iter_mut();
            for _ in 0..PARTS_PER_LAUNCH {
                match slots.next() {
                    Some(part) => builder.arg(part.slice_mut()),
                    None => builder.arg(&null),
                };
            }
            for a in &args {
                builder.arg(a);
            }
            // SAFETY: as in `concat_channels`, the other way round: each part wanted holds its
            // n x channels x plane_len values, the whole n x total x plane_len, and the parts are
            // distinct buffers (each a `&mut`), so no two slots write the same memory.
            let launched = unsafe { builder.launch(cfg) };
            self.launched("split_channels", &cfg, launched)?;
        }
        Ok(())
    }

    fn copy_channels(
        &self,
        src: &Buffer,
        src_channels: usize,
        src_first: usize,
        dst: &mut Buffer,
        dst_channels: usize,
        dst_first: usize,
        count: usize,
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        checks::copy_channels(
            src.len(),
            src_channels,
            src_first,
            dst.len(),
            dst_channels,
            dst_first,
            count,
            n,
            plane_len,
        )?;
        let [sc, sf, dc, df, c, ni, pl] =
            copy_channels_args(src_channels, src_first, dst_channels, dst_first, count, n, plane_len)?;
        launch!(
            self,
            "copy_channels",
            elementwise(n * count * plane_len),
            src.slice(),
            &sc,
            &sf,
            dst.slice_mut(),
            &dc,
            &df,
            &c,
            &ni,
            &pl
        )
    }

    fn axpy(&self, alpha: f32, x: &Buffer, y: &mut Buffer) -> Result<()> {
        checks::same_len("axpy", x.len(), &[y.len()])?;
        let n = int("len", x.len())?;
        launch!(self, "axpy", elementwise(x.len()), &alpha, x.slice(), y.slice_mut(), &n)
    }
    fn mul(&self, a: &Buffer, b: &Buffer, out: &mut Buffer) -> Result<()> {
        checks::same_len("mul", a.len(), &[b.len(), out.len()])?;
        let n = int("len", a.len())?;
        launch!(self, "mul", elementwise(a.len()), a.slice(), b.slice(), out.slice_mut(), &n)
    }
    fn scale(&self, x: &mut Buffer, alpha: f32) -> Result<()> {
        let n = int("len", x.len())?;
        launch!(self, "scale", elementwise(x.len()), x.slice_mut(), &n, &alpha)
    }
    fn sum(&self, x: &Buffer, out: &mut Buffer) -> Result<()> {
        checks::same_len("sum", 1, &[out.len()])?;
        let n = int("len", x.len())?;
        launch!(self, "sum", single_block(1024), x.slice(), out.slice_mut(), &n)
    }

    fn sgd_step(
        &self,
        param: &mut Buffer,
        grad: &Buffer,
        velocity: Option<&mut Buffer>,
        hp: &SgdStep,
    ) -> Result<()> {
        let n = int("len", param.len())?;
        let cfg = elementwise(param.len());
        let (lr, mom, wd) = (hp.lr, hp.momentum, hp.weight_decay);
        checks::sgd(param.len(), grad.len(), mom, velocity.as_ref().map(|v| v.len()))?;
        let Some(v) = velocity.filter(|_| mom != 0.0) else {
            return launch!(self, "sgd_step", cfg, param.slice_mut(), grad.slice(), &n, &lr, &wd);
        };
        launch!(
            self,
            "sgd_momentum_step",
            cfg,
            param.slice_mut(),
            grad.slice(),
            v.slice_mut(),
            &n,
            &lr,
            &mom,
            &wd
        )
    }
    fn sgd_steps(&self, slots: &mut [SgdSlot<'_, Buffer>], hp: &SgdStep) -> Result<()> {
        let momentum = hp.momentum != 0.0;
        for s in slots.iter() {
            checks::sgd(s.param.len(), s.grad.len(), hp.momentum, s.velocity.as_ref().map(|v| v.len()))?;
            int("len", s.param.len())?;
        }
        let stream = &self.inner.stream;
        // The pointers' guards record this launch's use of each buffer when dropped, after it.
        let mut guards = Vec::with_capacity(3 * slots.len());
        let mut words = Vec::with_capacity(slots.len());
        for s in slots.iter_mut() {
            let len = s.param.len() as u64;
            let (p, gp) = s.param.slice_mut().device_ptr_mut(stream);
            let (g, gg) = s.grad.slice().device_ptr(stream);
            let mut v = 0;
            if momentum {
                let (vp, gv) =
                    s.velocity.as_deref_mut().expect("checked above").slice_mut().device_ptr_mut(stream);
                v = vp;
                guards.push(gv);
            }
            guards.extend([gp, gg]);
            words.push([p, g, v, 0, len]);
        }
        let (lr, mom, wd) = (hp.lr, hp.momentum, hp.weight_decay);
        if momentum {
            self.optim_steps("sgd_momentum_steps", &words, &[lr, mom, wd])?;
        } else {
            self.optim_steps("sgd_steps", &words, &[lr, wd])?;
        }
        drop(guards);
        Ok(())
    }
    fn adam_steps(&self, slots: &mut [AdamSlot<'_, Buffer>], hp: &AdamStep) -> Result<()> {
        for s in slots.iter() {
            checks::adam(s.param.len(), s.grad.len(), s.m.len(), s.v.len(), hp.step)?;
            int("len", s.param.len())?;
        }
        let stream = &self.inner.stream;
        let mut guards = Vec::with_capacity(4 * slots.len());
        let mut words = Vec::with_capacity(slots.len());
        for s in slots.iter_mut() {
            let len = s.param.len() as u64;
            let (p, gp) = s.param.slice_mut().device_ptr_mut(stream);
            let (g, gg) = s.grad.slice().device_ptr(stream);
            let (m, gm) = s.m.slice_mut().device_ptr_mut(stream);
            let (v, gv) = s.v.slice_mut().device_ptr_mut(stream);
            guards.extend([gp, gg, gm, gv]);
            words.push([p, g, m, v, len]);
        }
        let (step_size, inv_sqrt_bc2) = hp.bias_corrections();
        let (b1, b2, eps, wd) = (hp.beta1, hp.beta2, hp.eps, hp.weight_decay);
        self.optim_steps("adam_steps", &words, &[b1, b2, eps, wd, step_size, inv_sqrt_bc2])?;
        drop(guards);
        Ok(())
    }
    fn adam_step(
        &self,
        param: &mut Buffer,
        grad: &Buffer,
        m: &mut Buffer,
        v: &mut Buffer,
        hp: &AdamStep,
    ) -> Result<()> {
        checks::adam(param.len(), grad.len(), m.len(), v.len(), hp.step)?;
        // Bias corrections in f64 on the host, exactly as the CPU kernel computes them.
        let (step_size, inv_sqrt_bc2) = hp.bias_corrections();
        let n = int("len", param.len())?;
        let (b1, b2, eps, wd) = (hp.beta1, hp.beta2, hp.eps, hp.weight_decay);
        launch!(
            self,
            "adam_step",
            elementwise(param.len()),
            param.slice_mut(),
            grad.slice(),
            m.slice_mut(),
            v.slice_mut(),
            &n,
            &b1,
            &b2,
            &eps,
            &wd,
            &step_size,
            &inv_sqrt_bc2
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each size a kernel takes as an `int` is checked on its own: the buffers' lengths bound
    /// only products of them (a channel count of 2^32 + 1 with one value per plane once became
    /// 1 in the kernel).
    /// An H100 SXM's published FP32 peak (132 SMs of 128 lanes at 1980 MHz: 66.9 TFLOP/s), and
    /// an A100's 64 lanes per SM (108 SMs at 1410 MHz: 19.5).
    #[test]
    fn fp32_peak_from_the_attributes() {
        let h100 = DeviceInfo {
            name: "H100".into(),
            compute_capability: (9, 0),
            multiprocessors: 132,
            clock_mhz: 1980,
            memory_bytes: 80 << 30,
            driver_cuda_version: 13000,
        };
        assert!((h100.fp32_peak_tflops() - 66.9).abs() < 0.05, "{}", h100.fp32_peak_tflops());
        let a100 = DeviceInfo { compute_capability: (8, 0), multiprocessors: 108, clock_mhz: 1410, ..h100 };
        assert!((a100.fp32_peak_tflops() - 19.5).abs() < 0.05, "{}", a100.fp32_peak_tflops());
    }

    /// Parts keep their places in the whole when one between them is skipped, and a launch's
    /// arguments are their channels, then their first channels.
    #[test]
    fn channel_parts_keep_their_places() {
        let placed = part_firsts([(true, 2), (false, 3), (true, 1), (true, 4)].into_iter());
        assert_eq!(placed, [(2, 0), (1, 5), (4, 6)]);
        let (args, moved) = channel_part_args("split_channels", &placed, 3, 10).unwrap();
        assert_eq!((args, moved), ([2, 1, 4, 0, 0, 5, 6, 0], 3 * 7 * 10));
        assert!(channel_part_args("split_channels", &[(1 << 20, 0)], 1 << 11, 1 << 11).is_err());
    }

    /// The multi-tensor table: five words a parameter, then a block per chunk of 4096 values,
    /// none for an empty parameter.
    #[test]
    fn optim_table_has_a_block_per_chunk() {
        let words = [[1, 2, 3, 4, 2 * 4096 + 1], [5, 6, 0, 0, 0], [7, 8, 0, 0, 4096]];
        let (table, blocks) = optim_table(&words);
        assert_eq!(blocks, 4);
        assert_eq!(&table[..15], words.iter().flatten().copied().collect::<Vec<u64>>().as_slice());
        assert_eq!(&table[15..], &[0, 0, 0, 4096, 0, 8192, 2, 0]);
    }

    #[test]
    fn copy_channels_sizes_are_checked_one_by_one() {
        assert_eq!(copy_channels_args(4, 1, 6, 2, 3, 2, 5).unwrap(), [4, 1, 6, 2, 3, 2, 5]);
        let wide = (1usize << 32) + 1;
        let e = copy_channels_args(wide, 0, wide, 0, 1, 1, 1).unwrap_err().to_string();
        assert!(e.contains("src_channels") && e.contains("4294967297"), "{e}");
        let e = copy_channels_args(1, 0, 1, 0, 1, 1 << 16, 1 << 16).unwrap_err().to_string();
        assert!(e.contains("copy_channels size"), "{e}");
    }
}
