//! Memory checked before it is spent: a run's peak is estimated by running its steps on
//! `tensor::Meter` (the real graph, buffers that are only lengths, the backend's own algorithm
//! choices) and compared with what the device has, so that a batch too large is refused with
//! the figures and the largest batch that fits, instead of the kernel killing the process.
//!
//! The phases of a run hold different buffers: a full training step, the smaller last step of an
//! epoch, an evaluation batch, the smaller last one. The CPU's buffer pool serves every size from
//! the same segments (best fit, freed neighbours merged: `tensor::arena`), so what the process
//! holds is how far its buffers have ever reached into them, which the meter follows decision by
//! decision; a run evaluates at the training batch size, so the largest phase is the training
//! step. The GPU's allocator gives its cache back before it would fail, so there too the largest
//! phase counts.
use crate::session::make_optimizer;
use crate::state::Settings;
use anyhow::{bail, Result};
use autograd::{NoGradGuard, Var};
use layers::{ops, Mode, Module, WeightInit};
use tensor::{Backend, Meter, Tensor};

/// The program itself: code, threads' stacks, the allocator's own overhead (measured at about
/// 60 MiB for a small run).
const BASE_BYTES: usize = 96 << 20;
/// Batches the loader prepares ahead, plus the one in use.
const LOADER_BATCHES: usize = 4;

/// A run's estimated peak, and where it comes from, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Weights, gradients and optimizer state.
    pub persistent: usize,
    /// The step's, evaluation's... buffers at their peak, as the device keeps them.
    pub transient: usize,
    /// On the CPU: the data set and the loader's batches, and the program itself.
    pub host: usize,
}

impl Estimate {
    /// The estimated peak: the three parts together, in bytes.
    pub fn total(&self) -> usize {
        self.persistent + self.transient + self.host
    }
}

/// Whether the backend keeps freed buffers of every size (the CPU) or gives them back under
/// pressure (a GPU).
fn keeps_every_size<B: Backend>(backend: &B) -> bool {
    backend.name() == "cpu"
}

/// The estimate for `settings` on `backend` at `batch`, with `train_len` and `test_len` images.
pub fn estimate<B: Backend>(
    backend: &B,
    settings: &Settings,
    batch: usize,
    train_len: usize,
    test_len: usize,
) -> Result<Estimate> {
    // On the CPU the pool's free buffers count (see the module docs): one meter runs the phases in
    // order, as a run does, and its peak is what the process holds at most.
    let meter = if keeps_every_size(backend) { Meter::with_cpu_pool(backend) } else { Meter::new(backend) };
    let model = models::build(settings.model, &meter, WeightInit::XavierUniform, settings.seed)?;
    let mut optimizer = make_optimizer(settings, model.parameters());
    let r = settings.resize;
    let mut train_step = |n: usize| -> Result<usize> {
        meter.reset_peak();
        let base = meter.live_bytes();
        let x = Var::constant(Tensor::zeros(&meter, [n, 1, r, r])?);
        let (loss, _) = ops::cross_entropy(&model.forward(&x, &mut Mode::train(0, 0))?, &vec![0; n])?;
        optimizer.zero_grad();
        loss.backward()?;
        optimizer.step()?;
        Ok(meter.peak_bytes() - base)
    };
    // A batch larger than the data set is the data set.
    let batch = batch.min(train_len.max(1));
    // The first step creates the optimizer's state: what is alive after it stays.
    let mut peaks = vec![train_step(batch)?];
    let persistent = meter.live_bytes();
    let last = train_len % batch;
    if last > 0 && train_len > batch {
        peaks.push(train_step(last)?);
    }
    let eval_step = |n: usize| -> Result<usize> {
        let _no_grad = NoGradGuard::new();
        meter.reset_peak();
        let x = Var::constant(Tensor::zeros(&meter, [n, 1, r, r])?);
        let _ = ops::cross_entropy(&model.forward(&x, &mut Mode::eval())?, &vec![0; n])?;
        Ok(meter.peak_bytes() - persistent)
    };
    // Evaluation starts with the cache given back, and runs at the training batch size, as
    // `session::evaluate` does.
    meter.release_cached();
    let eval_batch = batch.min(test_len.max(1));
    peaks.push(eval_step(eval_batch)?);
    let last = test_len % eval_batch;
    if last > 0 && test_len > eval_batch {
        peaks.push(eval_step(last)?);
    }
    let transient = peaks.into_iter().max().unwrap_or(0);
    let host = if keeps_every_size(backend) {
        let images = (train_len + test_len) * (28 * 28 + 1);
        let batches = LOADER_BATCHES * 2 * batch * r * r * 4;
        images + batches + BASE_BYTES
    } else {
        0
    };
    Ok(Estimate { persistent, transient, host })
}

/// The most memory this process has had resident (Linux's `VmHWM`), in bytes; `None` elsewhere.
pub fn peak_resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<usize> {
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?;
    kib.trim().parse::<usize>().ok().map(|k| k * 1024)
}

/// The line a run ends with: its peak resident memory, when the system says.
pub fn peak_line() -> Option<String> {
    peak_resident_bytes().map(|b| format!("peak resident memory {:.2} GiB", b as f64 / (1u64 << 30) as f64))
}

/// Refuses a run whose estimated peak exceeds what `backend` says it has, naming both figures and
/// the largest batch that fits. Passes when the backend cannot tell what it has.
pub fn check<B: Backend>(
    backend: &B,
    settings: &Settings,
    train_len: usize,
    test_len: usize,
) -> Result<Estimate> {
    let need = estimate(backend, settings, settings.batch_size, train_len, test_len)?;
    let Some(available) = backend.memory_available() else { return Ok(need) };
    if need.total() <= available {
        return Ok(need);
    }
    let fits = |b: usize| -> Result<bool> {
        Ok(estimate(backend, settings, b, train_len, test_len)?.total() <= available)
    };
    let (mut lo, mut hi) = (0usize, settings.batch_size);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let advice = if lo == 0 {
        format!("not even a batch of 1 fits at {0}x{0}; try a smaller --resize", settings.resize)
    } else {
        format!("the largest batch that fits is {lo} (--batch-size {lo})")
    };
    bail!(
        "a batch of {batch} at {r}x{r} needs about {need:.2} GiB at its peak on {device} (weights and optimizer \
         state {persistent:.2}, activations and work buffers {transient:.2}, data and program {host:.2}), but \
         {available:.2} GiB is available; {advice}",
        batch = settings.batch_size,
        r = settings.resize,
        need = gib(need.total()),
        device = backend.name(),
        persistent = gib(need.persistent),
        transient = gib(need.transient),
        host = gib(need.host),
        available = gib(available),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status = "Name:\ttrain\nVmPeak:\t 9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 5 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM: lots kB\n"), None);
        assert!(peak_resident_bytes().is_some_and(|b| b > 0) || !cfg!(target_os = "linux"));
    }
}
