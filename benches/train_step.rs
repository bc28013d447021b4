//! End-to-end training throughput on the CPU: forward, loss, backward and SGD step of NiN at
//! 224x224 and GoogLeNet at 96x96, batch 32 and 128, median of several steps after a warm-up,
//! with each configuration's peak resident memory (it runs in a child process of its own).
//!
//! `cargo bench --bench train_step` (set `STEPS=n` for more timed steps, default 3).
use autograd::Var;
use layers::{ops, Mode, Module, Optimizer, Sgd, WeightInit};
use models::ModelKind;
use std::process::Command;
use std::time::Instant;
use tensor::{Cpu, Tensor};

const CONFIGS: &[(&str, usize, usize)] =
    &[("nin", 224, 32), ("nin", 224, 128), ("googlenet", 96, 32), ("googlenet", 96, 128)];

/// Peak resident set of this process, from /proc (Linux), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Child: times one configuration and prints `images_per_sec peak_mib`.
fn measure(kind: ModelKind, resize: usize, batch: usize, steps: usize) {
    let net = models::build(kind, &Cpu, WeightInit::XavierUniform, 1).unwrap();
    let mut opt = Sgd::new(net.parameters(), 0.01, 0.0, 0.0);
    let mut mode = Mode::train(1, 0);
    let images: Vec<f32> = (0..batch * resize * resize).map(|i| (i % 255) as f32 / 255.0).collect();
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut step = || {
        let x = Var::constant(Tensor::from_slice(&Cpu, [batch, 1, resize, resize], &images).unwrap());
        let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
    };
    step();
    let mut times: Vec<f64> = (0..steps)
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{} {}", batch as f64 / times[times.len() / 2], peak_rss_mib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let kind: ModelKind = args[i + 1].parse().unwrap();
        measure(kind, args[i + 2].parse().unwrap(), args[i + 3].parse().unwrap(), steps);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    println!(
        "training step on the CPU ({} threads), median of {steps} steps after one warm-up",
        rayon::current_num_threads()
    );
    println!("{:<10} {:>7} {:>6} {:>10} {:>14}", "model", "input", "batch", "images/s", "peak RSS MiB");
    let exe = std::env::current_exe().unwrap();
    for &(model, resize, batch) in CONFIGS {
        let out = Command::new(&exe)
            .args(["--one", model, &resize.to_string(), &batch.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
        let (ips, mib) = (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN));
        println!("{model:<10} {resize:>7} {batch:>6} {ips:>10.1} {mib:>14.0}");
    }
}
