//! The training loop and evaluation, written once for every backend.
use crate::checkpoint;
use crate::cli::{EvalArgs, OptimizerKind, TrainArgs};
use crate::data::{self, Dataset, Split};
use crate::metrics::{self, EpochMetrics};
use crate::plot;
use crate::state::{self, RunMeta};
use anyhow::{bail, Context, Result};
use autograd::{NoGradGuard, Var};
use indicatif::{ProgressBar, ProgressStyle};
use layers::{ops, Adam, Mode, Module, Optimizer, Sequential, Sgd, WeightInit};
use models::ModelKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tensor::{Backend, Reading, Tensor};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const METRICS_FILE: &str = "metrics.csv";
pub const PLOT_FILE: &str = "plot.svg";

/// What a finished run leaves behind.
pub struct RunReport {
    pub out_dir: PathBuf,
    pub history: Vec<EpochMetrics>,
}

/// Loads one split, keeping the first `limit` images.
fn load(dir: &Path, split: Split, limit: Option<u64>) -> Result<Arc<Dataset>> {
    let mut set = data::load_split(dir, split)?;
    if let Some(n) = limit {
        set.truncate(n as usize);
    }
    Ok(Arc::new(set))
}

fn make_optimizer<B: Backend>(meta: &RunMeta, params: Vec<(String, Var<B>)>) -> Box<dyn Optimizer<B>> {
    match meta.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(params, meta.lr, meta.momentum, meta.weight_decay)),
        OptimizerKind::Adam => Box::new(Adam::new(params, meta.lr, meta.weight_decay)),
    }
}

/// Runs (or resumes) a training run and returns its history.
pub fn train<B: Backend>(backend: &B, kind: ModelKind, args: &TrainArgs) -> Result<RunReport> {
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", args.lr);
    }
    let resumed = match &args.resume {
        Some(path) => {
            let ckpt = checkpoint::load(path)?;
            let meta = RunMeta::from_checkpoint(&ckpt, path)?;
            if meta.model != kind {
                bail!(
                    "{} holds a {} model; resume it with `train {} --resume ...`",
                    path.display(),
                    meta.model,
                    meta.model
                );
            }
            Some((ckpt, meta, path.clone()))
        }
        None => None,
    };
    let mut meta = match &resumed {
        Some((_, m, _)) => m.clone(),
        None => RunMeta {
            model: kind,
            resize: args.resize.unwrap_or(kind.default_resize()),
            epoch: 0,
            seed: args.seed,
            dropout_draws: 0,
            optimizer: args.optimizer,
            lr: args.lr,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            optimizer_steps: 0,
            batch_size: args.batch_size as usize,
            train_limit: args.train_limit.map(|n| n as usize),
        },
    };
    kind.check_resize(meta.resize)?;
    let model = models::build(kind, backend, WeightInit::XavierUniform, meta.seed)?;
    if args.summary {
        println!("{}", models::summary(&model, backend, [1, 1, meta.resize, meta.resize])?);
        return Ok(RunReport { out_dir: PathBuf::new(), history: Vec::new() });
    }
    if meta.epoch >= args.epochs {
        bail!("the checkpoint already holds {} epochs; ask for more with --epochs", meta.epoch);
    }

    let data_dir = data::locate(args.data.data.as_deref(), &[Split::Train, Split::Test])?;
    let train_set = load(&data_dir, Split::Train, meta.train_limit.map(|n| n as u64))?;
    let test_set = load(&data_dir, Split::Test, args.data.test_limit)?;

    let params = model.parameters();
    let mut optimizer = make_optimizer(&meta, params.clone());
    let out_dir = match (&args.out, &resumed) {
        (Some(dir), _) => dir.clone(),
        (None, Some((_, _, path))) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        (None, None) => default_out_dir(kind),
    };
    let mut history = Vec::new();
    if let Some((ckpt, _, path)) = &resumed {
        state::load_weights(ckpt, &params, backend, path)?;
        let opt_path = state::optimizer_path(path.parent().unwrap_or(Path::new(".")), meta.epoch);
        let opt_ckpt = checkpoint::load(&opt_path)
            .with_context(|| format!("resuming needs the optimizer state saved beside {}", path.display()))?;
        optimizer
            .load_state(state::optimizer_tensors(&opt_ckpt, backend)?, meta.optimizer_steps)
            .with_context(|| format!("{}", opt_path.display()))?;
        let csv = out_dir.join(METRICS_FILE);
        if csv.exists() {
            history = metrics::read_csv(&csv)?;
            history.truncate(meta.epoch);
        }
        println!("resuming {} from {} after epoch {}", kind, path.display(), meta.epoch);
    }
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create output directory {}", out_dir.display()))?;
    println!(
        "training {kind} at {0}x{0} on {1}: {2} training / {3} test images, batch {4}, {5:?} lr {6}",
        meta.resize,
        backend.name(),
        train_set.len(),
        test_set.len(),
        meta.batch_size,
        meta.optimizer,
        meta.lr
    );

    let mut mode = Mode::train(meta.seed, meta.dropout_draws);
    let (mut train_images, mut train_seconds) = (0usize, 0.0f64);
    for epoch in meta.epoch..args.epochs {
        let started = Instant::now();
        let shuffle = Some(data::epoch_seed(meta.seed, epoch));
        let batches = data::batches(train_set.clone(), meta.batch_size, meta.resize, shuffle, None);
        let bar = progress_bar(batches.len() as u64, epoch + 1, args.epochs);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize);
        // Each step's loss and correct count start on their way to the host as soon as the step
        // is queued and are collected after the next step is queued, so the device never waits
        // for the host between steps; the divergence check is one step late for it.
        let mut pending: Option<(Reading<_>, Reading<_>, usize)> = None;
        let mut read =
            |step: Option<(Reading<_>, Reading<_>, usize)>, seen: &mut usize| -> anyhow::Result<()> {
                let Some((loss, hits, len)) = step else { return Ok(()) };
                let loss_value = loss.item()?;
                if !loss_value.is_finite() {
                    bar.abandon();
                    bail!(
                        "the loss became {loss_value} at epoch {} after {} images: training diverged. \
                     Try a lower learning rate (--lr {}); the last good checkpoint is in {}",
                        epoch + 1,
                        *seen,
                        meta.lr / 10.0,
                        out_dir.display()
                    );
                }
                loss_sum += loss_value as f64 * len as f64;
                correct += hits.item()? as f64;
                *seen += len;
                let rate = *seen as f64 / started.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4}, acc {:.3}, {rate:.1} img/s",
                    loss_sum / *seen as f64,
                    correct / *seen as f64
                ));
                bar.inc(1);
                Ok(())
            };
        for batch in batches {
            let x = Var::constant(Tensor::from_slice(
                backend,
                [batch.len, 1, meta.resize, meta.resize],
                &batch.images,
            )?);
            let logits = model.forward(&x, &mut mode)?;
            let (loss, hits) = ops::cross_entropy(&logits, &batch.labels)?;
            optimizer.zero_grad();
            loss.backward()?;
            optimizer.step()?;
            let step = Some((loss.value().read_later()?, hits.read_later()?, batch.len));
            read(std::mem::replace(&mut pending, step), &mut seen)?;
        }
        read(pending.take(), &mut seen)?;
        let train_time = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let test_acc = evaluate(&model, backend, &test_set, meta.resize, 256)?;
        let row = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen as f64,
            train_acc: correct / seen as f64,
            test_acc,
            seconds: started.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_time,
        };
        println!(
            "epoch {}, loss {:.4}, train acc {:.3}, test acc {:.3}, time {:.1} sec",
            row.epoch, row.train_loss, row.train_acc, row.test_acc, row.seconds
        );
        train_images += seen;
        train_seconds += train_time;
        history.push(row);

        meta.epoch = epoch + 1;
        meta.dropout_draws = mode.draws();
        let (opt_state, steps) = optimizer.state();
        meta.optimizer_steps = steps;
        // Optimizer state first, then the weights that name its epoch, then the previous
        // epoch's optimizer file: a run killed at any moment leaves a loadable, resumable pair.
        checkpoint::save_atomic(
            &state::optimizer_path(&out_dir, meta.epoch),
            &state::optimizer_checkpoint(&opt_state, &meta)?,
        )?;
        checkpoint::save_atomic(&out_dir.join(CHECKPOINT_FILE), &state::weights_checkpoint(&params, &meta)?)?;
        if meta.epoch > 0 {
            let _ = std::fs::remove_file(state::optimizer_path(&out_dir, meta.epoch - 1));
        }
        metrics::write_csv(&out_dir.join(METRICS_FILE), &history)
            .with_context(|| format!("writing {}", out_dir.join(METRICS_FILE).display()))?;
        let title = format!(
            "{kind} on Fashion-MNIST ({0}x{0}, batch {1}, lr {2})",
            meta.resize, meta.batch_size, meta.lr
        );
        plot::write_svg(&out_dir.join(PLOT_FILE), &history, &title)
            .with_context(|| format!("writing {}", out_dir.join(PLOT_FILE).display()))?;
    }
    if let Some(last) = history.last() {
        println!(
            "loss {:.3}, train acc {:.3}, test acc {:.3}",
            last.train_loss, last.train_acc, last.test_acc
        );
        println!("{:.1} examples/sec on {}", train_images as f64 / train_seconds, backend.name());
        println!("saved {}, {}, {} in {}", CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE, out_dir.display());
    }
    Ok(RunReport { out_dir, history })
}

fn progress_bar(len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches, {msg}, ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// Accuracy over `set`, in inference mode (no graph, dropout off).
pub fn evaluate<B: Backend>(
    model: &Sequential<B>,
    backend: &B,
    set: &Arc<Dataset>,
    resize: usize,
    batch_size: usize,
) -> Result<f64> {
    let _no_grad = NoGradGuard::new();
    let mut mode = Mode::eval();
    let mut correct = 0.0f64;
    // Each batch's count is collected after the next batch is queued, as in training.
    let mut pending = None;
    for batch in data::batches(set.clone(), batch_size, resize, None, None) {
        let x = Var::constant(Tensor::from_slice(backend, [batch.len, 1, resize, resize], &batch.images)?);
        let (_, hits) = ops::cross_entropy(&model.forward(&x, &mut mode)?, &batch.labels)?;
        if let Some(previous) = pending.replace(hits.read_later()?) {
            correct += previous.item()? as f64;
        }
    }
    if let Some(last) = pending {
        correct += last.item()? as f64;
    }
    Ok(correct / set.len().max(1) as f64)
}

/// `train eval`: the model and resize come from the checkpoint's metadata.
pub fn eval<B: Backend>(backend: &B, args: &EvalArgs) -> Result<f64> {
    let path = &args.checkpoint;
    let ckpt = checkpoint::load(path)?;
    let meta = RunMeta::from_checkpoint(&ckpt, path)?;
    let resize = args.resize.unwrap_or(meta.resize);
    meta.model.check_resize(resize)?;
    let model = models::build(meta.model, backend, WeightInit::XavierUniform, 0)?;
    state::load_weights(&ckpt, &model.parameters(), backend, path)?;
    // Evaluation reads (and, if need be, downloads) the test split only.
    let data_dir = data::locate(args.data.data.as_deref(), &[Split::Test])?;
    let test_set = load(&data_dir, Split::Test, args.data.test_limit)?;
    let started = Instant::now();
    let acc = evaluate(&model, backend, &test_set, resize, args.batch_size as usize)?;
    println!(
        "{} (epoch {}) at {resize}x{resize}: test acc {acc:.4} on {} images, {:.1} sec on {}",
        meta.model,
        meta.epoch,
        test_set.len(),
        started.elapsed().as_secs_f64(),
        backend.name()
    );
    Ok(acc)
}

/// `runs/<model>-<UTC date>-<time>`.
fn default_out_dir(kind: ModelKind) -> PathBuf {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    PathBuf::from("runs").join(format!(
        "{}-{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        kind.name(),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}
