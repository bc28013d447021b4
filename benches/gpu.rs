//! GPU timings with CUDA events after warm-up (median of many runs): SGEMM at the NiN and
//! GoogLeNet layer shapes next to cuBLAS on the same shapes (cuBLAS is only the yardstick), the
//! memory-bound kernels, and end-to-end training images/s. Prints a skip reason without a GPU.
//!
//! `cargo bench --bench gpu`
use autograd::Var;
use cuda::Cuda;
use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm as _, GemmConfig, StridedBatchedConfig};
use cudarc::driver::sys::CUevent_flags;
use layers::{ops, Mode, Module, Optimizer, Sgd, WeightInit};
use models::ModelKind;
use tensor::{Backend, ConvGeometry, Gemm, PoolGeometry, Tensor, Window};

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
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

fn random(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 1000.0 - 0.5).collect()
}

/// Row-major C = A B as cuBLAS sees it: column-major C^T = B^T A^T.
fn cublas_ms(gpu: &Cuda, blas: &CudaBlas, m: usize, n: usize, k: usize, batch: usize) -> f64 {
    let a = gpu.from_slice(&random(m * k * batch)).unwrap();
    let b = gpu.from_slice(&random(k * n * batch)).unwrap();
    let mut c = gpu.zeros(m * n * batch).unwrap();
    let gemm = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_N,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: n as i32,
        ldb: k as i32,
        beta: 0.0f32,
        ldc: n as i32,
    };
    let cfg = StridedBatchedConfig {
        gemm,
        batch_size: batch as i32,
        stride_a: (k * n) as i64,
        stride_b: (m * k) as i64,
        stride_c: (m * n) as i64,
    };
    // SAFETY: a, b and c hold batch x (m k, k n, m n) values, as the configuration's sizes and
    // strides describe them.
    median_ms(gpu, 3, 20, || unsafe {
        blas.gemm_strided_batched(cfg, b.slice(), a.slice(), c.slice_mut()).unwrap()
    })
}

fn ours_ms(gpu: &Cuda, m: usize, n: usize, k: usize, batch: usize) -> f64 {
    let a = gpu.from_slice(&random(m * k * batch)).unwrap();
    let b = gpu.from_slice(&random(k * n * batch)).unwrap();
    let mut c = gpu.zeros(m * n * batch).unwrap();
    let g =
        Gemm { batch, a_stride: m * k, b_stride: k * n, c_stride: m * n, ..Gemm::new(false, false, m, n, k) };
    median_ms(gpu, 3, 20, || gpu.gemm(&g, &a, &b, &mut c).unwrap())
}

fn train_images_per_sec(gpu: &Cuda, kind: ModelKind, resize: usize, batch: usize) -> f64 {
    let net = models::build(kind, gpu, WeightInit::XavierUniform, 1).unwrap();
    let mut opt = Sgd::new(net.parameters(), 0.01, 0.0, 0.0);
    let mut mode = Mode::train(1, 0);
    let x = Var::constant(
        Tensor::from_slice(gpu, [batch, 1, resize, resize], &random(batch * resize * resize)).unwrap(),
    );
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let ms = median_ms(gpu, 2, 7, || {
        let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
    });
    batch as f64 / (ms / 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let gpu = match Cuda::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("skipping the GPU benchmarks: {e}");
            return;
        }
    };
    println!("device: {} ({})", gpu.device_name(), gpu.name());
    let blas = CudaBlas::new(gpu.stream().clone()).expect("cuBLAS for the reference timings");

    println!("\nSGEMM, batch 128 forward products (row-major, no transposes)");
    println!(
        "{:<34} {:>10} {:>10} {:>12} {:>10}",
        "shape (m x n x k, batch)", "ours ms", "TFLOP/s", "cuBLAS ms", "ratio"
    );
    let shapes = [
        ("NiN conv1 96x2916x121", 96, 2916, 121, 128),
        ("NiN 1x1 96x2916x96", 96, 2916, 96, 128),
        ("NiN conv2 256x676x2400", 256, 676, 2400, 128),
        ("NiN conv3 384x144x2304", 384, 144, 2304, 128),
        ("GoogLeNet b2 192x576x576", 192, 576, 576, 128),
        ("GoogLeNet 4a 3x3 208x36x864", 208, 36, 864, 128),
        ("square 4096", 4096, 4096, 4096, 1),
    ];
    for (name, m, n, k, batch) in shapes {
        let ours = ours_ms(&gpu, m, n, k, batch);
        let theirs = cublas_ms(&gpu, &blas, m, n, k, batch);
        let tflops = 2.0 * (m * n * k * batch) as f64 / (ours / 1000.0) / 1e12;
        println!("{name:<34} {ours:>10.3} {tflops:>10.2} {theirs:>12.3} {:>10.2}", theirs / ours);
    }

    println!("\nmemory-bound kernels");
    let geo = ConvGeometry::new(128, 96, 26, 26, 256, Window::square(5, 1, 2)).unwrap();
    let x = gpu.from_slice(&random(128 * 96 * 26 * 26)).unwrap();
    let mut cols = gpu.zeros(32 * geo.col_rows() * geo.col_cols()).unwrap();
    let ms = median_ms(&gpu, 3, 20, || gpu.im2col(&x, &geo, 0, 32, &mut cols).unwrap());
    let bytes = (32 * geo.col_rows() * geo.col_cols() * 4) as f64;
    println!("im2col NiN conv2, 32 images: {ms:.3} ms, {:.0} GB/s written", bytes / (ms / 1000.0) / 1e9);
    let pgeo = PoolGeometry::new(128, 96, 54, 54, Window::square(3, 2, 0)).unwrap();
    let px = gpu.from_slice(&random(128 * 96 * 54 * 54)).unwrap();
    let (mut py, mut parg) = (gpu.zeros(128 * 96 * 26 * 26).unwrap(), gpu.zeros(128 * 96 * 26 * 26).unwrap());
    let ms = median_ms(&gpu, 3, 20, || gpu.max_pool2d_forward(&px, &pgeo, &mut py, &mut parg).unwrap());
    println!(
        "max_pool2d_forward 128x96x54x54 3x3/2: {ms:.3} ms, {:.0} GB/s read",
        (128 * 96 * 54 * 54 * 4) as f64 / (ms / 1000.0) / 1e9
    );
    let logits = gpu.from_slice(&random(128 * 10)).unwrap();
    let labels = gpu.from_slice(&(0..128).map(|i| (i % 10) as f32).collect::<Vec<_>>()).unwrap();
    let (mut loss, mut correct) = (gpu.zeros(1).unwrap(), gpu.zeros(1).unwrap());
    let ms = median_ms(&gpu, 3, 50, || {
        gpu.softmax_cross_entropy_forward(&logits, &labels, 128, 10, &mut loss, &mut correct).unwrap()
    });
    println!("softmax_cross_entropy_forward 128x10: {ms:.4} ms");

    println!("\nend-to-end training step (forward, loss, backward, SGD), batch 128");
    for (kind, resize) in [(ModelKind::Nin, 224), (ModelKind::GoogLeNet, 96)] {
        let ips = train_images_per_sec(&gpu, kind, resize, 128);
        println!("{kind} at {resize}: {ips:.0} images/s");
    }
}
