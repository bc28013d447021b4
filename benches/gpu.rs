//! GPU timings with CUDA events (median of timed runs after warm-up): our SGEMM on every product
//! of NiN@224 and GoogLeNet@96 at batch 128 (forward, input gradient, batch-summed weight
//! gradient: `tests/common/shapes.rs`), our TF32 convolutions (the implicit products) at every
//! layer larger than 1x1, the memory-bound kernels at NiN's batch-128 sizes, and
//! the training step's images/s. It needs no cuBLAS: the yardstick is PyTorch on the same GPU,
//! `tools/torch_gpu_reference.py`, which times `torch.matmul` (TF32 off and on) and cuDNN at the
//! shapes `--shapes` writes. Without a GPU it says why and exits 0 (1 under
//! `CONVNET_REQUIRE_GPU=1`).
//!
//! ```text
//! cargo bench --bench gpu                          # tables on stdout
//! cargo bench --bench gpu -- --json FILE           # and every figure as JSON
//! cargo bench --bench gpu -- --shapes FILE         # only the shapes, as JSON (no GPU needed)
//! cargo bench --bench gpu -- --quick               # fewer runs (a first look)
//! cargo bench --bench gpu -- --model [--json FILE] # the cost model's prediction (no GPU needed)
//! ```
//!
//! `--model` runs one training step of each network at batch 128 through `cuda::model::Recorder`
//! (CPU arithmetic, the GPU's algorithm choices) and prints every kernel the CUDA backend would
//! launch, grouped, with its predicted time on an H200 (`cuda::model::Gpu::h200`), the predicted
//! step time and images/s, and beside them a model of PyTorch's step with cuDNN on the same GPU
//! (`pytorch_model`). On a GPU the product table also prints the model's time for each product.
#[path = "../tests/common/shapes.rs"]
mod shapes;

use autograd::Var;
use cuda::{model, plan, Cuda, DeviceInfo, Precision};
use cudarc::driver::sys::CUevent_flags;
use layers::{ops, Mode, Module, Optimizer, Sgd, WeightInit};
use models::ModelKind;
use shapes::{distinct_products, googlenet, nin, pytorch_convolutions, Layer};
use std::fmt::Write as _;
use tensor::{Backend, Epilogue, Gemm, PoolGeometry, SgdStep, Tensor, Window};

const BATCH: usize = 128;

struct Options {
    json: Option<String>,
    shapes: Option<String>,
    quick: bool,
    model: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options { json: None, shapes: None, quick: false, model: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => o.json = Some(args.next().ok_or("--json needs a file")?),
            "--shapes" => o.shapes = Some(args.next().ok_or("--shapes needs a file")?),
            "--quick" => o.quick = true,
            "--model" => o.model = true,
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument {other:?} (--json FILE, --shapes FILE, --quick, --model)"
                ))
            }
        }
    }
    Ok(o)
}

/// Reproducible values in [-0.5, 0.5), cheap enough for hundreds of millions.
fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i.wrapping_mul(2_654_435_761)) % 1000) as f32 / 1000.0 - 0.5).collect()
}

/// Median milliseconds of `runs` timed calls of `f`, after `warmup` untimed ones.
fn median_ms(gpu: &Cuda, warmup: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = gpu.stream().record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
            f();
            let end = gpu.stream().record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
            end.synchronize().unwrap();
            start.elapsed_ms(&end).unwrap() as f64
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn layout(g: &Gemm) -> &'static str {
    match (g.trans_a, g.trans_b) {
        (false, false) => "NN",
        (false, true) => "NT",
        (true, false) => "TN",
        (true, true) => "TT",
    }
}

/// The shapes as JSON: every product (what `torch.matmul` is timed on) and every convolution
/// (what cuDNN is timed on).
fn shapes_json() -> String {
    let mut s = String::from("{\n  \"batch\": 128,\n  \"products\": [\n");
    let products = distinct_products(BATCH);
    for (i, (name, g)) in products.iter().enumerate() {
        let sep = if i + 1 < products.len() { "," } else { "" };
        let summed = g.c_stride == 0 && g.batch > 1;
        writeln!(
            s,
            "    {{\"name\": \"{name}\", \"layout\": \"{}\", \"m\": {}, \"n\": {}, \"k\": {}, \"batch\": {}, \
             \"summed\": {summed}, \"a_shared\": {}, \"flops\": {}}}{sep}",
            layout(g),
            g.m,
            g.n,
            g.k,
            g.batch,
            g.a_stride == 0,
            g.flops()
        )
        .unwrap();
    }
    s.push_str("  ],\n  \"convolutions\": [\n");
    let layers: Vec<Layer> = nin().into_iter().chain(googlenet()).collect();
    for (i, l) in layers.iter().enumerate() {
        let sep = if i + 1 < layers.len() { "," } else { "" };
        writeln!(
            s,
            "    {{\"name\": \"{}\", \"c_in\": {}, \"hw\": {}, \"c_out\": {}, \"k\": {}, \"stride\": {}, \"pad\": {}, \
             \"flops\": {}}}{sep}",
            l.name,
            l.c_in,
            l.hw,
            l.c_out,
            l.k,
            l.stride,
            l.pad,
            l.geo(BATCH).flops()
        )
        .unwrap();
    }
    s.push_str("  ]\n}\n");
    s
}

/// One timed figure, for the tables and the JSON.
struct Figure {
    group: &'static str,
    name: String,
    ms: f64,
    /// TFLOP/s for products, GB/s for memory-bound kernels, images/s for steps.
    rate: f64,
    unit: &'static str,
    /// The cost model's time, where it has one.
    predicted_ms: Option<f64>,
}

/// The cost model's parameters for a real device: its SMs and FP32 peak; the rest as for an H200.
fn model_of(info: &DeviceInfo) -> model::Gpu {
    model::Gpu {
        name: info.name.clone(),
        multiprocessors: info.multiprocessors,
        fp32_tflops: info.fp32_peak_tflops(),
        ..model::Gpu::h200()
    }
}

/// Our products in both arithmetics: FP32 (`sgemm_*`) and, where the GPU has TF32 tensor cores,
/// TF32 (`tgemm_*`), each beside the cost model's time.
fn bench_products(gpu: &Cuda, info: &DeviceInfo, runs: usize, out: &mut Vec<Figure>) {
    let predictor = model_of(info);
    let fp32 = gpu.with_precision(Precision::Fp32);
    let tensor = gpu.with_precision(Precision::Tf32).uses_tensor_cores();
    println!("\nour GEMM at every product of NiN@224 and GoogLeNet@96, batch {BATCH} (TFLOP/s; model: predicted ms)");
    println!(
        "{:<40} {:>6} {:>22} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "product", "layout", "m x n x k", "FP32 ms", "TFLOP/s", "model", "TF32 ms", "TFLOP/s", "model"
    );
    for (name, g) in distinct_products(BATCH) {
        let g = Gemm { tf32: true, ..g };
        let (la, lb, lc) = g.required_lengths().unwrap();
        let (a, b) = (gpu.from_slice(&values(la)).unwrap(), gpu.from_slice(&values(lb)).unwrap());
        let mut c = gpu.zeros(lc).unwrap();
        let predict = |arithmetic| -> f64 {
            let launches = model::gemm_launches(&g, info.multiprocessors, arithmetic);
            // From an idle stream, as the events time it: the host's launch first.
            model::step_time(&predictor, &launches) * 1e3
        };
        let dims = format!("{}x{}x{}{}", g.m, g.n, g.k, if g.c_stride == 0 { " sum" } else { "" });
        let ms = median_ms(gpu, 2, runs, || fp32.gemm(&g, &a, &b, &mut c).unwrap());
        let tflops = g.flops() / (ms / 1000.0) / 1e12;
        let model32 = predict(plan::Arithmetic::Fp32);
        out.push(Figure {
            group: "gemm",
            name: name.clone(),
            ms,
            rate: tflops,
            unit: "TFLOP/s",
            predicted_ms: Some(model32),
        });
        let tf32 = if tensor {
            let t_ms = median_ms(gpu, 2, runs, || gpu.gemm(&g, &a, &b, &mut c).unwrap());
            let model_tc = predict(plan::Arithmetic::Tf32);
            let t_tflops = g.flops() / (t_ms / 1000.0) / 1e12;
            out.push(Figure {
                group: "gemm_tf32",
                name: name.clone(),
                ms: t_ms,
                rate: t_tflops,
                unit: "TFLOP/s",
                predicted_ms: Some(model_tc),
            });
            format!("{t_ms:>9.3} {t_tflops:>8.2} {model_tc:>9.3}")
        } else {
            format!("{:>28}", "no TF32 tensor cores")
        };
        println!("{name:<40} {:>6} {dims:>22} {ms:>9.3} {tflops:>8.2} {model32:>9.3} {tf32}", layout(&g));
    }
}

/// Our TF32 convolutions at every NiN@224 and GoogLeNet@96 layer larger than 1x1, batch 128,
/// through the backend's convolution products (the implicit kernels; the input gradient
/// folded by col2im where `plan::implicit_input_grad` says so): the forward, and the forward
/// with both gradients (what `tools/torch_gpu_reference.py` times cuDNN on), each beside the
/// cost model's time (for the three products only where all three are implicit).
fn bench_convolutions(gpu: &Cuda, info: &DeviceInfo, runs: usize, out: &mut Vec<Figure>) {
    let tf32 = gpu.with_precision(Precision::Tf32);
    if !tf32.uses_tensor_cores() {
        println!(
            "
no TF32 tensor cores: no implicit convolutions to time"
        );
        return;
    }
    let predictor = model_of(info);
    println!(
        "
our TF32 convolutions (implicit products), batch {BATCH} (ms; model: predicted ms)"
    );
    println!("{:<32} {:>9} {:>9} {:>12} {:>9}", "convolution", "forward", "model", "fwd + bwd", "model");
    for layer in nin().into_iter().chain(googlenet()).filter(|l| l.k > 1) {
        let geo = layer.geo(BATCH);
        let (image, output) = (geo.c_in * geo.h * geo.w, geo.c_out * geo.col_cols());
        let x = tf32.from_slice(&values(BATCH * image)).unwrap();
        let w = tf32.from_slice(&values(geo.c_out * geo.col_rows())).unwrap();
        let dy = tf32.from_slice(&values(BATCH * output)).unwrap();
        let (mut y, mut dw, mut dx) = (
            tf32.zeros(BATCH * output).unwrap(),
            tf32.zeros(geo.c_out * geo.col_rows()).unwrap(),
            tf32.zeros(BATCH * image).unwrap(),
        );
        let plain = Epilogue { bias: None, relu: false, block: 0, mask: None };
        let fwd =
            median_ms(&tf32, 2, runs, || tf32.conv_forward(&w, &x, &geo, 0, BATCH, &mut y, &plain).unwrap());
        let both = median_ms(&tf32, 2, runs, || {
            tf32.conv_forward(&w, &x, &geo, 0, BATCH, &mut y, &plain).unwrap();
            tf32.conv_weight_grad(&dy, &x, &geo, 0, BATCH, 0.0, &mut dw).unwrap();
            tf32.conv_input_grad(&w, &dy, &geo, 0, BATCH, &mut dx).unwrap();
        });
        let predict = |products: &[plan::Implicit]| {
            let launches: Vec<model::Launch> = products
                .iter()
                .flat_map(|&p| model::implicit_launches(p, &geo, BATCH, 0.0, info.multiprocessors))
                .collect();
            model::step_time(&predictor, &launches) * 1e3
        };
        let model_fwd = predict(&[plan::Implicit::Forward]);
        let model_both = plan::implicit_input_grad(&geo, plan::Arithmetic::Tf32).then(|| {
            predict(&[plan::Implicit::Forward, plan::Implicit::WeightGrad, plan::Implicit::InputGrad])
        });
        let flops = geo.flops();
        out.push(Figure {
            group: "conv_tf32_fwd",
            name: layer.name.clone(),
            ms: fwd,
            rate: flops / (fwd / 1000.0) / 1e12,
            unit: "TFLOP/s",
            predicted_ms: Some(model_fwd),
        });
        out.push(Figure {
            group: "conv_tf32_fwd_bwd",
            name: layer.name.clone(),
            ms: both,
            rate: 3.0 * flops / (both / 1000.0) / 1e12,
            unit: "TFLOP/s",
            predicted_ms: model_both,
        });
        let model_both = model_both.map_or("-".to_string(), |m| format!("{m:.3}"));
        println!("{:<32} {fwd:>9.3} {model_fwd:>9.3} {both:>12.3} {model_both:>9}", layer.name);
    }
}

fn bench_memory_bound(gpu: &Cuda, runs: usize, out: &mut Vec<Figure>) {
    println!("\nmemory-bound kernels at NiN's batch-{BATCH} sizes (bytes: inputs + outputs once)");
    let mut report = |name: &str, bytes: usize, ms: f64| {
        let gbps = bytes as f64 / (ms / 1000.0) / 1e9;
        println!("{name:<52} {ms:>10.3} ms {gbps:>8.0} GB/s");
        out.push(Figure {
            group: "memory",
            name: name.into(),
            ms,
            rate: gbps,
            unit: "GB/s",
            predicted_ms: None,
        });
    };
    // im2col of NiN conv2 over 32 images, and col2im back.
    let conv2 = &nin()[2];
    let geo = conv2.geo(BATCH);
    let x = gpu.from_slice(&values(BATCH * conv2.c_in * conv2.hw * conv2.hw)).unwrap();
    let cols_len = 32 * geo.col_rows() * geo.col_cols();
    let mut cols = gpu.zeros(cols_len).unwrap();
    let x_len = 32 * conv2.c_in * conv2.hw * conv2.hw;
    let ms = median_ms(gpu, 2, runs, || gpu.im2col(&x, &geo, 0, 32, &mut cols).unwrap());
    report("im2col nin_conv2, 32 images", 4 * (x_len + cols_len), ms);
    let mut dx = gpu.zeros(BATCH * conv2.c_in * conv2.hw * conv2.hw).unwrap();
    let ms = median_ms(gpu, 2, runs, || gpu.col2im(&cols, &geo, 0, 32, &mut dx).unwrap());
    report("col2im nin_conv2, 32 images", 4 * (x_len + cols_len), ms);
    // NiN's first pool, 96 x 54 x 54 -> 26 x 26.
    let pg = PoolGeometry::new(BATCH, 96, 54, 54, Window::square(3, 2, 0)).unwrap();
    let (ni, no) = (BATCH * 96 * 54 * 54, BATCH * 96 * 26 * 26);
    let px = gpu.from_slice(&values(ni)).unwrap();
    let (mut py, mut parg, mut pdx) =
        (gpu.zeros(no).unwrap(), gpu.zeros(no).unwrap(), gpu.zeros(ni).unwrap());
    let ms = median_ms(gpu, 2, runs, || gpu.max_pool2d_forward(&px, &pg, &mut py, &mut parg).unwrap());
    report("max_pool2d_forward 96x54x54 3x3/2", 4 * (ni + 2 * no), ms);
    let ms = median_ms(gpu, 2, runs, || gpu.max_pool2d_backward(&parg, &py, &pg, &mut pdx).unwrap());
    report("max_pool2d_backward 96x54x54 3x3/2", 4 * (ni + 2 * no), ms);
    // NiN conv1's output: bias + ReLU and its backward, ReLU alone, axpy.
    let (c, inner) = (96, 54 * 54);
    let len = BATCH * c * inner;
    let bias = gpu.from_slice(&values(c)).unwrap();
    let (mut y, dy) = (gpu.from_slice(&values(len)).unwrap(), gpu.from_slice(&values(len)).unwrap());
    let (mut dz, mut db) = (gpu.zeros(len).unwrap(), gpu.zeros(c).unwrap());
    let ms = median_ms(gpu, 2, runs, || gpu.bias_relu(&mut y, Some(&bias), BATCH, c, inner).unwrap());
    report("bias_relu nin_conv1 output", 4 * 2 * len, ms);
    let ms = median_ms(gpu, 2, runs, || {
        gpu.bias_relu_backward(&y, &dy, &mut dz, Some(&mut db), BATCH, c, inner).unwrap()
    });
    report("bias_relu_backward nin_conv1 output", 4 * 3 * len, ms);
    let ms = median_ms(gpu, 2, runs, || gpu.relu_forward(&dy, &mut dz).unwrap());
    report("relu_forward nin_conv1 output", 4 * 2 * len, ms);
    let ms = median_ms(gpu, 2, runs, || gpu.axpy(0.5, &dy, &mut dz).unwrap());
    report("axpy nin_conv1 output", 4 * 3 * len, ms);
    // The loss and an SGD step over NiN's parameters.
    let logits = gpu.from_slice(&values(BATCH * 10)).unwrap();
    let labels: Vec<usize> = (0..BATCH).map(|i| i % 10).collect();
    let (mut loss, mut hits) = (gpu.zeros(1).unwrap(), gpu.zeros(1).unwrap());
    let ms = median_ms(gpu, 2, runs, || {
        gpu.softmax_cross_entropy_forward(&logits, &labels, BATCH, 10, &mut loss, &mut hits).unwrap()
    });
    report("softmax_cross_entropy_forward 128x10", 4 * (BATCH * 11 + 2), ms);
    let params = 1_992_166;
    let (mut p, g, mut v) = (
        gpu.from_slice(&values(params)).unwrap(),
        gpu.from_slice(&values(params)).unwrap(),
        gpu.zeros(params).unwrap(),
    );
    let hp = SgdStep { lr: 0.01, momentum: 0.9, weight_decay: 5e-4 };
    let ms = median_ms(gpu, 2, runs, || gpu.sgd_step(&mut p, &g, Some(&mut v), &hp).unwrap());
    report("sgd_step (momentum) over NiN's 1,992,166 parameters", 4 * 5 * params, ms);
}

fn bench_steps(gpu: &Cuda, runs: usize, out: &mut Vec<Figure>) {
    println!("\ntraining step (forward, loss, backward, SGD), images/s");
    for precision in [Precision::Tf32, Precision::Fp32] {
        let gpu = &gpu.with_precision(precision);
        for (kind, resize) in [(ModelKind::Nin, 224), (ModelKind::GoogLeNet, 96)] {
            for batch in [32, BATCH] {
                let net = models::build(kind, gpu, WeightInit::XavierUniform, 1).unwrap();
                let mut opt = Sgd::new(net.parameters(), 0.01, 0.0, 0.0);
                let mut mode = Mode::train(1, 0);
                let x = Var::constant(
                    Tensor::from_slice(gpu, [batch, 1, resize, resize], &values(batch * resize * resize))
                        .unwrap(),
                );
                let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
                let ms = median_ms(gpu, 2, runs.min(7), || {
                    let (loss, _) =
                        ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
                    opt.zero_grad();
                    loss.backward().unwrap();
                    opt.step().unwrap();
                });
                let ips = batch as f64 / (ms / 1000.0);
                let name = format!("{kind}@{resize} batch {batch} {}", gpu.name());
                println!("{name:<52} {ms:>10.1} ms {ips:>8.0} images/s");
                out.push(Figure { group: "step", name, ms, rate: ips, unit: "images/s", predicted_ms: None });
            }
        }
    }
}

fn figures_json(info: &DeviceInfo, figures: &[Figure]) -> String {
    let mut s = format!(
        "{{\n  \"device\": \"{}\",\n  \"compute_capability\": \"{}.{}\",\n  \"multiprocessors\": {},\n  \
         \"clock_mhz\": {},\n  \"fp32_peak_tflops_computed\": {:.2},\n  \"figures\": [\n",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.multiprocessors,
        info.clock_mhz,
        info.fp32_peak_tflops()
    );
    for (i, f) in figures.iter().enumerate() {
        let sep = if i + 1 < figures.len() { "," } else { "" };
        let predicted = f.predicted_ms.map_or("null".into(), |p| format!("{p:.6}"));
        writeln!(
            s,
            "    {{\"group\": \"{}\", \"name\": \"{}\", \"ms\": {:.6}, \"rate\": {:.4}, \"unit\": \"{}\", \
             \"predicted_ms\": {predicted}}}{sep}",
            f.group, f.name, f.ms, f.rate, f.unit
        )
        .unwrap();
    }
    s.push_str("  ]\n}\n");
    s
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gpu bench: {e}");
            std::process::exit(2);
        }
    };
    if o.model {
        let text = predict_steps();
        if let Some(path) = &o.json {
            std::fs::write(path, &text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        }
        return;
    }
    if let Some(path) = &o.shapes {
        std::fs::write(path, shapes_json()).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        println!("wrote the shapes of {} products to {path}", distinct_products(BATCH).len());
        return;
    }
    let gpu = match Cuda::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("skipping the GPU benchmarks: {e}");
            let required = std::env::var("CONVNET_REQUIRE_GPU").is_ok_and(|v| v == "1");
            std::process::exit(if required { 1 } else { 0 });
        }
    };
    let info = gpu.device_info().unwrap();
    println!(
        "device: {} (compute {}.{}, {} SMs at {} MHz, {:.0} GiB; FP32 peak {:.1} TFLOP/s computed from these)",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.multiprocessors,
        info.clock_mhz,
        info.memory_bytes as f64 / (1u64 << 30) as f64,
        info.fp32_peak_tflops()
    );
    let runs = if o.quick { 3 } else { 10 };
    let mut figures = Vec::new();
    bench_products(&gpu, &info, runs, &mut figures);
    bench_convolutions(&gpu, &info, runs, &mut figures);
    bench_memory_bound(&gpu, runs, &mut figures);
    bench_steps(&gpu, runs, &mut figures);
    if let Some(path) = &o.json {
        std::fs::write(path, figures_json(&info, &figures)).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        println!("\nwrote {} figures to {path}", figures.len());
    }
}

// ---------------------------------------------------------------------------------------------
// --model: the cost model's prediction of a training step
// ---------------------------------------------------------------------------------------------

/// The launches of one SGD step of `kind` at `batch` (forward, loss, backward, update, and the
/// two values the training loop reads back: the loss and the correct count).
fn recorded_step(kind: ModelKind, resize: usize, batch: usize, precision: Precision) -> Vec<model::Launch> {
    let rec = model::Recorder::new(model::Gpu::h200().multiprocessors, precision);
    let net = models::build(kind, &rec, WeightInit::XavierUniform, 1).unwrap();
    let mut opt = Sgd::new(net.parameters(), 0.1, 0.0, 0.0);
    let mut mode = Mode::train(1, 0);
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let images = values(batch * resize * resize);
    rec.take();
    let x = Var::constant(Tensor::from_slice(&rec, [batch, 1, resize, resize], &images).unwrap());
    let (loss, hits) = ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
    opt.zero_grad();
    loss.backward().unwrap();
    opt.step().unwrap();
    // As the training loop: both values start on their way now and are collected a step later.
    let (loss, hits) = (loss.value().read_later().unwrap(), hits.read_later().unwrap());
    let launches = rec.take();
    loss.item().unwrap();
    hits.item().unwrap();
    launches
}

/// The kernels of ours that do what one op of PyTorch's step does (pooling, dropout's mask, the
/// loss, the optimizer's `foreach` step): PyTorch's model charges it that kernel's time. Its
/// pooling moves more (int64 indices); joins, splits and gradient sums are left out, as ours
/// also stack weights PyTorch does not.
const PYTORCH_RUNS_TOO: [&str; 8] = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "global_avg_pool_forward",
    "global_avg_pool_backward",
    "dropout_forward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "sgd_steps",
];

/// A model of PyTorch eager's step with cuDNN on the same GPU, for comparison: every one of
/// the network's convolutions as PyTorch runs them (`shapes::pytorch_convolutions`: NiN's 12,
/// GoogLeNet's 57), each of its products (the forward, the weight gradient and, past the first
/// layer, the input gradient) at `efficiency` of the given peak or at the streaming bandwidth
/// for the tensors it reads and writes, whichever is longer, plus eight passes over each
/// convolution's output (PyTorch's separate bias, ReLU and backward kernels) at the model's
/// streaming bandwidth, those eight kernels taking at least the model's least time a kernel
/// each; the ops `others` stand for
/// ([`PYTORCH_RUNS_TOO`]) at our kernels' times; at least 10 us of host time per op, about 8 per
/// convolution and one per other op, which the GPU's queue hides where the kernels take longer
/// (as ours, `model::timeline`). Returns the kernels' time and the host's, in seconds; the step
/// takes the longer. A prediction, to be replaced by `tools/gpu-check`'s measurement.
fn pytorch_model(
    layers: &[Layer],
    others: &[&model::Launch],
    batch: usize,
    peak_tflops: f64,
    efficiency: f64,
) -> (f64, f64) {
    let gpu = model::Gpu::h200();
    let mut gpu_time: f64 = others.iter().map(|l| gpu.predict(l)).sum();
    let stream = |bytes: f64| bytes / (gpu.memory_gbps * 1e9 * gpu.stream_efficiency);
    for (i, l) in layers.iter().enumerate() {
        let geo = l.geo(batch);
        let (input, weights) =
            ((batch * l.c_in * l.hw * l.hw * 4) as f64, (l.c_out * geo.col_rows() * 4) as f64);
        let output = (batch * l.c_out * geo.col_cols() * 4) as f64;
        // Each product (forward, weight gradient, input gradient) at its arithmetic or its
        // memory traffic, whichever takes longer: a 1x1 convolution of 96 channels moves
        // more than it computes.
        let compute = geo.flops() / (peak_tflops * 1e12 * efficiency);
        let layer = training_products(i) as f64 * compute.max(stream(input + weights + output))
            + 8.0 * stream(output);
        gpu_time += layer.max(8.0 * gpu.kernel_us * 1e-6);
    }
    (gpu_time, (layers.len() * 8 + others.len()) as f64 * 10e-6)
}

/// The products of the `i`-th convolution in a training step: forward, weight gradient and,
/// past the first layer, input gradient.
fn training_products(i: usize) -> usize {
    if i == 0 {
        2
    } else {
        3
    }
}

/// The `i`-th convolution's FLOPs in a training step.
fn training_flops(i: usize, l: &Layer, batch: usize) -> f64 {
    training_products(i) as f64 * l.geo(batch).flops()
}

fn predict_steps() -> String {
    let gpu = model::Gpu::h200();
    let mut json = format!("{{\n  \"gpu\": \"{}\",\n  \"steps\": [\n", gpu.name);
    println!(
        "cost model: {} ({} SMs; FP32 {:.1} TFLOP/s, our SGEMM at {:.0}% of it; TF32 {:.1} TFLOP/s, our TF32 kernel at \
         {:.0}% of it; {:.0} GB/s, streaming kernels at {:.0}% of it; {:.0} us of host time a launch, queued ahead \
         of the GPU; {:.0} us a kernel at least). Predictions, not measurements.",
        gpu.name,
        gpu.multiprocessors,
        gpu.fp32_tflops,
        100.0 * gpu.sgemm_efficiency,
        gpu.tf32_tflops,
        100.0 * gpu.tgemm_efficiency,
        gpu.memory_gbps,
        100.0 * gpu.stream_efficiency,
        gpu.launch_us,
        gpu.kernel_us
    );
    let mut first = true;
    let mut seen: Vec<&str> = Vec::new();
    for (kind, resize) in [(ModelKind::Nin, 224), (ModelKind::GoogLeNet, 96)] {
        let layers = pytorch_convolutions(kind);
        let convolutions: f64 = layers.iter().enumerate().map(|(i, l)| training_flops(i, l, BATCH)).sum();
        for precision in [Precision::Tf32, Precision::Fp32] {
            let launches = recorded_step(kind, resize, BATCH, precision);
            let total = model::step_time(&gpu, &launches);
            let others: Vec<&model::Launch> =
                launches.iter().filter(|l| PYTORCH_RUNS_TOO.contains(&l.kernel)).collect();
            seen.extend(others.iter().map(|l| l.kernel));
            let flops: f64 = launches.iter().map(|l| l.flops).sum();
            // Both sides price the same work: the recorded products are the listed convolutions'
            // (and GoogLeNet's 1024 x 10 linear layer, 8 MFLOP).
            assert!(
                (flops / convolutions - 1.0).abs() < 1e-3,
                "{kind}: the step records {flops:e} FLOPs, PyTorch's convolutions are {convolutions:e}"
            );
            let issued: f64 = launches.iter().map(|l| l.issued_flops).sum();
            println!(
                "\n{kind}@{resize}, batch {BATCH}, {precision:?}: {} launches, {:.0} GFLOP ({:.0} issued by whole tiles)",
                launches.len(),
                flops / 1e9,
                issued / 1e9
            );
            println!("{:<32} {:>9} {:>12} {:>7}", "kernel", "launches", "predicted ms", "share");
            for (kernel, count, t) in model::by_kernel(&gpu, &launches) {
                println!("{kernel:<32} {count:>9} {:>12.3} {:>6.1}%", t * 1e3, 100.0 * t / total);
            }
            // What fills an SM in the model: two FP32 blocks, 8 warps of TF32 mma (one 128-row
            // block, two 64-row ones).
            let fills = |l: &model::Launch| l.saturating_blocks() * gpu.multiprocessors;
            let thin: Vec<String> = launches
                .iter()
                .filter(|l| l.flops > 0.0 && l.blocks < fills(l))
                .map(|l| format!("{} of {} blocks ({:.2} GFLOP)", l.kernel, l.blocks, l.flops / 1e9))
                .collect();
            println!(
                "products too small to fill the GPU (fewer than two FP32 blocks or 8 TF32 warps per SM): {}{}",
                thin.len(),
                if thin.is_empty() { String::new() } else { format!(": {}", thin.join(", ")) }
            );
            // Like against like: our TF32 step against PyTorch's default (TF32 convolutions),
            // our FP32 step against PyTorch with TF32 off.
            let (kernels, host) = match precision {
                Precision::Tf32 => pytorch_model(&layers, &others, BATCH, gpu.tf32_tflops, 0.5),
                Precision::Fp32 => pytorch_model(&layers, &others, BATCH, gpu.fp32_tflops, 0.8),
            };
            let torch = kernels.max(host);
            println!(
                "step: {:.1} ms, {:.0} images/s predicted; the model of PyTorch with cuDNN in {precision:?}: {:.1} ms \
                 ({:.0} images/s; its kernels {:.1} ms, its host {:.1} ms for {} convolutions and {} other ops): \
                 ours {:.3}x",
                total * 1e3,
                BATCH as f64 / total,
                torch * 1e3,
                BATCH as f64 / torch,
                kernels * 1e3,
                host * 1e3,
                layers.len(),
                others.len(),
                torch / total
            );
            let sep = if first { "" } else { ",\n" };
            first = false;
            write!(
                json,
                "{sep}    {{\"net\": \"{kind}@{resize}\", \"precision\": \"{precision:?}\", \"batch\": {BATCH}, \
                 \"launches\": {}, \"predicted_ms\": {:.4}, \"pytorch_model_ms\": {:.4}, \
                 \"pytorch_model_kernels_ms\": {:.4}, \"pytorch_model_host_ms\": {:.4}}}",
                launches.len(),
                total * 1e3,
                torch * 1e3,
                kernels * 1e3,
                host * 1e3
            )
            .unwrap();
        }
    }
    // A renamed kernel would drop out of PyTorch's side unseen.
    for name in PYTORCH_RUNS_TOO {
        assert!(seen.contains(&name), "no launch of {name} in either step: PYTORCH_RUNS_TOO is out of date");
    }
    json.push_str("\n  ]\n}\n");
    json
}
