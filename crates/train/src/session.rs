//! The training loop and evaluation, written once for every backend.
use crate::checkpoint;
use crate::cli::Every;
use crate::cli::{EvalArgs, OptimizerKind, TrainArgs};
use crate::data::{self, Dataset, Split};
use crate::metrics::{self, EpochMetrics};
use crate::plot;
use crate::run_dir::{RunDir, BEST_FILE, CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE};
use crate::schedule::{self, Schedule};
use crate::state::{self, Position, RunMeta, Settings};
use crate::stop::{self, Stopped};
use crate::weights;
use anyhow::{bail, Context, Result};
use autograd::{NoGradGuard, Var};
use indicatif::{ProgressBar, ProgressStyle};
use layers::{ops, Adam, Mode, Module, Optimizer, Sequential, Sgd, WeightInit};
use models::ModelKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tensor::{Backend, Reading, Tensor};

/// What a finished run leaves behind.
pub struct RunReport {
    /// The run's output folder (empty after `--summary`, which trains nothing).
    pub out_dir: PathBuf,
    /// One row per epoch since the run began (on a resume, the earlier rows are those read back
    /// from `metrics.csv`).
    pub history: Vec<EpochMetrics>,
    /// With a validation split: the best epoch's test accuracy.
    pub final_test_acc: Option<f64>,
}

/// Loads one split, keeping the first `limit` images.
fn load(dir: &Path, split: Split, limit: Option<usize>) -> Result<Arc<Dataset>> {
    let mut set = data::load_split(dir, split)?;
    if let Some(n) = limit {
        set.truncate(n);
    }
    Ok(Arc::new(set))
}

pub(crate) fn make_optimizer<B: Backend>(
    s: &Settings,
    params: Vec<(String, Var<B>)>,
) -> Box<dyn Optimizer<B>> {
    match s.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(params, s.lr, s.momentum, s.weight_decay)),
        OptimizerKind::Adam => Box::new(Adam::new(params, s.lr, s.weight_decay)),
    }
}

/// A new run's settings: the flags given, else the defaults their help names.
fn new_settings(kind: ModelKind, args: &TrainArgs) -> Result<Settings> {
    if let (Some(p), false) = (args.crop_padding, args.augment.unwrap_or(false)) {
        bail!("--crop-padding {p} pads --augment's random crops; add --augment, or leave it out");
    }
    Ok(Settings {
        model: kind,
        resize: args.resize.unwrap_or(kind.default_resize()),
        seed: args.seed.unwrap_or(42),
        optimizer: args.optimizer.unwrap_or(OptimizerKind::Sgd),
        lr: args.lr.unwrap_or(0.1),
        momentum: args.momentum.unwrap_or(0.0),
        weight_decay: args.weight_decay.unwrap_or(0.0),
        batch_size: args.batch_size.unwrap_or(128) as usize,
        train_limit: args.train_limit.map(|n| n as usize),
        test_limit: args.data.test_limit.map(|n| n as usize),
        epochs: args.epochs.unwrap_or(10) as usize,
        schedule: args.schedule.unwrap_or(Schedule::Constant),
        warmup_epochs: args.warmup_epochs.unwrap_or(0.0),
        augment: args.augment.unwrap_or(false),
        crop_padding: args.crop_padding.map_or(data::DEFAULT_CROP_PADDING, |p| p as usize),
        label_smoothing: args.label_smoothing.unwrap_or(0.0),
        val_split: args.val_split.unwrap_or(0),
        init_from: args.init_from.as_ref().map(|p| p.display().to_string()),
    })
}

/// Settings no run can use, as errors naming the flag.
fn check_settings(s: &Settings) -> Result<()> {
    if !(s.lr.is_finite() && s.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", s.lr);
    }
    if !(s.warmup_epochs.is_finite() && s.warmup_epochs >= 0.0) {
        bail!("--warmup-epochs must be 0 or more, got {}", s.warmup_epochs);
    }
    if s.warmup_epochs > s.epochs as f32 {
        bail!("--warmup-epochs {} is longer than the run's {} epochs", s.warmup_epochs, s.epochs);
    }
    if !(0.0..1.0).contains(&s.label_smoothing) {
        bail!("--label-smoothing must be in [0, 1), got {}", s.label_smoothing);
    }
    Ok(())
}

/// A resumed run's settings: the stored ones. A flag that disagrees with them is an error naming
/// both values; `--epochs` may change (it moves the end, not the path there), and a checkpoint
/// of the first format, which did not store the test limit, takes the one given.
fn resumed_settings(meta: &RunMeta, args: &TrainArgs, path: &Path) -> Result<Settings> {
    let stored = &meta.settings;
    let mut conflicts = Vec::new();
    let mut check = |flag: &str, given: Option<String>, have: String| {
        if let Some(given) = given {
            if given != have {
                conflicts.push(format!("{flag} {given} (the run's is {have})"));
            }
        }
    };
    let limit = |v: Option<usize>| v.map_or("all".to_string(), |n| n.to_string());
    check("--resize", args.resize.map(|v| v.to_string()), stored.resize.to_string());
    check("--seed", args.seed.map(|v| v.to_string()), stored.seed.to_string());
    check(
        "--optimizer",
        args.optimizer.map(|v| format!("{v:?}").to_lowercase()),
        format!("{:?}", stored.optimizer).to_lowercase(),
    );
    check("--lr", args.lr.map(|v| v.to_string()), stored.lr.to_string());
    check("--momentum", args.momentum.map(|v| v.to_string()), stored.momentum.to_string());
    check("--weight-decay", args.weight_decay.map(|v| v.to_string()), stored.weight_decay.to_string());
    check("--batch-size", args.batch_size.map(|v| v.to_string()), stored.batch_size.to_string());
    check("--train-limit", args.train_limit.map(|v| v.to_string()), limit(stored.train_limit));
    check("--schedule", args.schedule.map(|v| v.name().to_string()), stored.schedule.name().to_string());
    check("--warmup-epochs", args.warmup_epochs.map(|v| v.to_string()), stored.warmup_epochs.to_string());
    check("--augment", args.augment.map(|v| v.to_string()), stored.augment.to_string());
    check("--crop-padding", args.crop_padding.map(|v| v.to_string()), stored.crop_padding.to_string());
    check(
        "--label-smoothing",
        args.label_smoothing.map(|v| v.to_string()),
        stored.label_smoothing.to_string(),
    );
    check("--val-split", args.val_split.map(|v| v.to_string()), stored.val_split.to_string());
    check(
        "--init-from",
        args.init_from.as_ref().map(|p| p.display().to_string()),
        stored.init_from.clone().unwrap_or_else(|| "random weights".into()),
    );
    // A schedule other than constant is a function of the run's length.
    if stored.schedule != Schedule::Constant {
        check("--epochs", args.epochs.map(|v| v.to_string()), stored.epochs.to_string());
    }
    let mut settings = stored.clone();
    if meta.is_legacy() {
        settings.test_limit = args.data.test_limit.map(|n| n as usize);
    } else {
        check("--test-limit", args.data.test_limit.map(|v| v.to_string()), limit(stored.test_limit));
    }
    if !conflicts.is_empty() {
        bail!(
            "{}: a resumed run keeps the settings it started with, and {} {}: {}. Leave {} out, or start a \
             new run with another --out",
            path.display(),
            if conflicts.len() == 1 { "this flag" } else { "these flags" },
            if conflicts.len() == 1 { "disagrees" } else { "disagree" },
            conflicts.join(", "),
            if conflicts.len() == 1 { "it" } else { "them" },
        );
    }
    if let Some(epochs) = args.epochs {
        settings.epochs = epochs as usize;
    }
    Ok(settings)
}

/// An epoch's running sums: loss x images, correct predictions, images.
#[derive(Clone, Copy)]
struct Sums {
    loss_sum: f64,
    correct: f64,
    seen: usize,
}

impl Sums {
    /// The run's position after `step` steps of epoch `epoch`, `seconds` into its training.
    fn position<B: Backend>(
        &self,
        epoch: usize,
        step: usize,
        mode: &Mode,
        optimizer: &dyn Optimizer<B>,
        seconds: f64,
        best: &Position,
    ) -> Position {
        Position {
            best_val_acc: best.best_val_acc,
            best_epoch: best.best_epoch,
            epoch,
            step,
            dropout_draws: mode.draws(),
            optimizer_steps: optimizer.state().1,
            loss_sum: self.loss_sum,
            correct: self.correct,
            seen: self.seen,
            seconds,
        }
    }
}

/// Runs (or resumes) a training run and returns its history. A stop asked for by a signal
/// (`stop::requested`) saves a checkpoint and returns a [`Stopped`] error.
pub fn train<B: Backend>(backend: &B, kind: ModelKind, args: &TrainArgs) -> Result<RunReport> {
    let resumed = match &args.resume {
        Some(path) => {
            let ckpt = checkpoint::load(path)?;
            let meta = RunMeta::from_checkpoint(&ckpt, path)?;
            if meta.settings.model != kind {
                bail!(
                    "{} holds a {} model; resume it with `train {} --resume ...`",
                    path.display(),
                    meta.settings.model,
                    meta.settings.model
                );
            }
            Some((ckpt, meta, path.clone()))
        }
        None => None,
    };
    let mut meta = match &resumed {
        Some((_, m, path)) => {
            let mut meta = m.clone();
            meta.settings = resumed_settings(m, args, path)?;
            meta
        }
        None => RunMeta::new(new_settings(kind, args)?),
    };
    let settings = meta.settings.clone();
    check_settings(&settings)?;
    kind.check_resize(settings.resize)?;
    let model = models::build(kind, backend, WeightInit::XavierUniform, settings.seed)?;
    if args.summary {
        println!("{}", models::summary(&model, backend, [1, 1, settings.resize, settings.resize])?);
        // The full data set's sizes unless limited (the summary reads no data).
        let train_len = settings.train_limit.unwrap_or(60_000).min(60_000);
        let test_len = settings.test_limit.unwrap_or(10_000).min(10_000);
        let e = crate::memory::estimate(backend, &settings, settings.batch_size, train_len, test_len)?;
        let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
        println!(
            "estimated peak memory of a run at batch {} on {}: {:.2} GiB (weights and optimizer state {:.2}, \
             activations and work buffers {:.2}, data and program {:.2}){}",
            settings.batch_size,
            backend.name(),
            gib(e.total()),
            gib(e.persistent),
            gib(e.transient),
            gib(e.host),
            backend.memory_available().map_or(String::new(), |a| format!("; {:.2} GiB available", gib(a)))
        );
        return Ok(RunReport { out_dir: PathBuf::new(), history: Vec::new(), final_test_acc: None });
    }
    let finished = meta.position.epoch >= settings.epochs;
    if finished && !(settings.val_split > 0 && resumed.as_ref().is_some_and(|(_, _, p)| !tested(p))) {
        bail!(
            "the checkpoint already holds {} epochs of the {} asked for; ask for more with --epochs",
            meta.position.epoch,
            settings.epochs
        );
    }

    // Before anything is written: weights that do not fit the model are an error naming them.
    if let (Some(path), None) = (&args.init_from, &resumed) {
        let w = weights::load(path, Some(kind))?;
        state::load_weights(&w.checkpoint, &model.parameters(), backend, path)?;
        println!("starting from the weights in {}", path.display());
    }
    let data_dir = data::locate(args.data.data.as_deref(), &[Split::Train, Split::Test])?;
    let train_set = load(&data_dir, Split::Train, settings.train_limit)?;
    // With a validation split the test set is read once, at the end (`final_test`).
    let (train_set, held_out) = match settings.val_split {
        0 => (train_set, load(&data_dir, Split::Test, settings.test_limit)?),
        n if n >= train_set.len() => {
            bail!("--val-split {n} would leave no training images (the run has {})", train_set.len())
        }
        n => {
            let (train, val) = train_set.split_off_random(n, settings.seed ^ VAL_SALT);
            (Arc::new(train), Arc::new(val))
        }
    };
    let held_out_name = if settings.val_split > 0 { "val" } else { "test" };
    let steps_per_epoch = train_set.len().div_ceil(settings.batch_size);
    if meta.position.step > steps_per_epoch {
        bail!(
            "the checkpoint is at step {} of epoch {}, but an epoch of {} images has {steps_per_epoch} steps",
            meta.position.step,
            meta.position.epoch + 1,
            train_set.len()
        );
    }

    crate::memory::check(backend, &settings, train_set.len(), held_out.len())?;

    let out_path = match (&args.out, &resumed) {
        (Some(dir), _) => dir.clone(),
        (None, Some((_, _, path))) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        (None, None) => default_out_dir(kind),
    };
    let dir = RunDir::open(&out_path)?;
    let resuming_here = resumed.as_ref().is_some_and(|(_, _, path)| {
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        canonical(path).is_some_and(|p| Some(p) == canonical(&dir.checkpoint_path()))
    });
    if dir.checkpoint_path().exists() && !resuming_here {
        bail!(
            "{} already holds a run's checkpoint; continue it with --resume {}, or choose another --out",
            dir.path().display(),
            dir.checkpoint_path().display()
        );
    }

    let params = model.parameters();
    let mut optimizer = make_optimizer(&settings, params.clone());
    let mut history = Vec::new();
    if let Some((ckpt, _, path)) = &resumed {
        state::load_weights(ckpt, &params, backend, path)?;
        let opt_path = meta.optimizer_path(path.parent().unwrap_or(Path::new(".")));
        let opt_ckpt = checkpoint::load(&opt_path)
            .with_context(|| format!("resuming needs the optimizer state saved beside {}", path.display()))?;
        optimizer
            .load_state(state::optimizer_tensors(&opt_ckpt, backend)?, meta.position.optimizer_steps)
            .with_context(|| format!("{}", opt_path.display()))?;
        let csv = path.parent().unwrap_or(Path::new(".")).join(METRICS_FILE);
        if csv.exists() {
            history = metrics::read_csv(&csv)?;
            history.truncate(meta.position.epoch);
        }
        let p = &meta.position;
        if p.step > 0 {
            println!("resuming {kind} from {} at step {} of epoch {}", path.display(), p.step, p.epoch + 1);
        } else {
            println!("resuming {kind} from {} after epoch {}", path.display(), p.epoch);
        }
    }
    // Saves from here on name their optimizer file by step, in this folder.
    meta.set_current_format();
    println!(
        "training {kind} at {0}x{0} on {1}: {2} training / {3} {held_out_name} images, batch {4}, {5:?} lr {6}{7}",
        settings.resize,
        backend.name(),
        train_set.len(),
        held_out.len(),
        settings.batch_size,
        settings.optimizer,
        settings.lr,
        recipe(&settings),
    );
    if finished {
        // Trained to the end, but the final test of the best epoch did not run.
        let test_acc = final_test(&model, backend, &data_dir, &settings, &dir)?;
        return Ok(RunReport { out_dir: dir.path().to_path_buf(), history, final_test_acc: Some(test_acc) });
    }
    let total_steps = (settings.epochs * steps_per_epoch) as u64;
    let warmup_steps = settings.warmup_steps(steps_per_epoch);
    let mut global_step = meta.position.optimizer_steps;
    let mut lr = settings.lr;

    let program_args: Vec<String> = std::env::args().collect();
    let stopped =
        |dir: &RunDir| Stopped { resume: stop::resume_command(&program_args, &dir.checkpoint_path()) };
    let mut mode = Mode::train(settings.seed, meta.position.dropout_draws);
    let (mut train_images, mut train_seconds) = (0usize, 0.0f64);
    for epoch in meta.position.epoch..settings.epochs {
        let resumed_at = meta.position.clone();
        let started = Instant::now();
        let shuffle = Some(data::epoch_seed(settings.seed, epoch));
        let augment = settings.augment.then(|| data::Augment {
            seed: data::epoch_seed(settings.seed ^ AUGMENT_SALT, epoch),
            padding: settings.crop_padding,
        });
        let batches = data::batches_from(
            train_set.clone(),
            settings.batch_size,
            settings.resize,
            shuffle,
            None,
            resumed_at.step,
            augment,
        );
        let bar = progress_bar(steps_per_epoch as u64, resumed_at.step as u64, epoch + 1, settings.epochs);
        let mut sums =
            Sums { loss_sum: resumed_at.loss_sum, correct: resumed_at.correct, seen: resumed_at.seen };
        let mut step = resumed_at.step;
        let mut last_save = Instant::now();
        // Each step's loss and correct count start on their way to the host as soon as the step
        // is queued and are collected after the next step is queued, so the device never waits
        // for the host between steps; the divergence check is one step late for it.
        let mut pending: Option<(Reading<_>, Reading<_>, usize)> = None;
        let read = |step: Option<(Reading<_>, Reading<_>, usize)>, sums: &mut Sums| -> anyhow::Result<()> {
            let Some((loss, hits, len)) = step else { return Ok(()) };
            let loss_value = loss.item()?;
            if !loss_value.is_finite() {
                bar.abandon();
                bail!(
                    "the loss became {loss_value} at epoch {} after {} images: training diverged. \
                     Try a lower learning rate (--lr {}); the last good checkpoint is in {}",
                    epoch + 1,
                    sums.seen,
                    settings.lr / 10.0,
                    dir.path().display()
                );
            }
            sums.loss_sum += loss_value as f64 * len as f64;
            sums.correct += hits.item()? as f64;
            sums.seen += len;
            let rate = (sums.seen - resumed_at.seen) as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4}, acc {:.3}, {rate:.1} img/s",
                sums.loss_sum / sums.seen as f64,
                sums.correct / sums.seen as f64
            ));
            bar.inc(1);
            Ok(())
        };
        for batch in batches {
            let x = Var::constant(Tensor::from_slice(
                backend,
                [batch.len, 1, settings.resize, settings.resize],
                &batch.images,
            )?);
            let logits = model.forward(&x, &mut mode)?;
            let (loss, hits) = ops::cross_entropy_smoothed(&logits, &batch.labels, settings.label_smoothing)?;
            optimizer.zero_grad();
            loss.backward()?;
            lr = schedule::rate(settings.schedule, settings.lr, global_step, total_steps, warmup_steps);
            optimizer.set_learning_rate(lr);
            optimizer.step()?;
            global_step += 1;
            step += 1;
            let queued = Some((loss.value().read_later()?, hits.read_later()?, batch.len));
            read(std::mem::replace(&mut pending, queued), &mut sums)?;
            let due = match args.checkpoint_every {
                Every::Off => false,
                Every::After(every) => last_save.elapsed() >= every,
            };
            if due || stop::requested() {
                read(pending.take(), &mut sums)?;
                meta.position = sums.position(
                    epoch,
                    step,
                    &mode,
                    &*optimizer,
                    resumed_at.seconds + started.elapsed().as_secs_f64(),
                    &resumed_at,
                );
                dir.save(&params, &optimizer.state().0, &meta)?;
                last_save = Instant::now();
                if stop::requested() {
                    bar.abandon();
                    return Err(stopped(&dir).into());
                }
            }
        }
        read(pending.take(), &mut sums)?;
        let Sums { loss_sum, correct, seen } = sums;
        let train_time = resumed_at.seconds + started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let Some(held_out_acc) =
            evaluate_unless_stopped(&model, backend, &held_out, settings.resize, settings.batch_size)?
        else {
            // Stopped during the evaluation: save the trained epoch; the resume evaluates it.
            meta.position = sums.position(epoch, step, &mode, &*optimizer, train_time, &resumed_at);
            dir.save(&params, &optimizer.state().0, &meta)?;
            return Err(stopped(&dir).into());
        };
        let row = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen as f64,
            train_acc: correct / seen as f64,
            test_acc: if settings.val_split > 0 { f64::NAN } else { held_out_acc },
            seconds: resumed_at.seconds + started.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_time,
            val_acc: if settings.val_split > 0 { held_out_acc } else { f64::NAN },
            lr: lr as f64,
        };
        println!(
            "epoch {}, loss {:.4}, train acc {:.3}, {held_out_name} acc {held_out_acc:.3}, time {:.1} sec",
            row.epoch, row.train_loss, row.train_acc, row.seconds
        );
        train_images += seen - resumed_at.seen;
        train_seconds += train_time - resumed_at.seconds;
        history.push(row);

        let (mut best_val_acc, mut best_epoch) = (resumed_at.best_val_acc, resumed_at.best_epoch);
        if settings.val_split > 0 && (best_val_acc.is_nan() || held_out_acc > best_val_acc) {
            (best_val_acc, best_epoch) = (held_out_acc, epoch + 1);
        }
        meta.position = Position {
            epoch: epoch + 1,
            dropout_draws: mode.draws(),
            optimizer_steps: optimizer.state().1,
            best_val_acc,
            best_epoch,
            ..Position::default()
        };
        // The best weights, the metrics and the plot before the checkpoint that names their
        // epoch: a run killed between them redoes the epoch and writes the same files again,
        // while a checkpoint saved first could leave a finished run without its last row.
        if settings.val_split > 0 && best_epoch == epoch + 1 {
            dir.save_best(&params, &meta)?;
        }
        metrics::write_csv(&dir.metrics_path(), &history)
            .with_context(|| format!("writing {}", dir.metrics_path().display()))?;
        let title = format!(
            "{kind} on Fashion-MNIST ({0}x{0}, batch {1}, lr {2})",
            settings.resize, settings.batch_size, settings.lr
        );
        plot::write_svg(&dir.plot_path(), &history, &title)
            .with_context(|| format!("writing {}", dir.plot_path().display()))?;
        dir.save(&params, &optimizer.state().0, &meta)?;
        if stop::requested() && epoch + 1 < settings.epochs {
            return Err(stopped(&dir).into());
        }
    }
    let final_test_acc = if settings.val_split > 0 {
        Some(final_test(&model, backend, &data_dir, &settings, &dir)?)
    } else {
        None
    };
    if let Some(last) = history.last() {
        let acc = if settings.val_split > 0 { last.val_acc } else { last.test_acc };
        println!(
            "loss {:.3}, train acc {:.3}, {held_out_name} acc {acc:.3}",
            last.train_loss, last.train_acc
        );
        if train_seconds > 0.0 {
            println!("{:.1} examples/sec on {}", train_images as f64 / train_seconds, backend.name());
        }
        if let Some(line) = crate::memory::peak_line() {
            println!("{line}");
        }
        println!("saved {}, {}, {} in {}", CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE, dir.path().display());
    }
    Ok(RunReport { out_dir: dir.path().to_path_buf(), history, final_test_acc })
}

/// Salts that keep the validation split's and the augmentation's draws apart from the shuffle's.
const VAL_SALT: u64 = 0x76a1_5eed;
const AUGMENT_SALT: u64 = 0xa09_3e47;

/// The recipe beyond d2l's, for the start line.
fn recipe(s: &Settings) -> String {
    let mut parts = Vec::new();
    // What the schedule does with the warm-up: one-cycle rises over part of the run without one.
    match (s.schedule, s.warmup_epochs > 0.0) {
        (Schedule::Onecycle, false) => parts.push(format!(
            "onecycle schedule, rising over the first {:.0}% of the run",
            schedule::ONECYCLE_RISE * 100.0
        )),
        (Schedule::Onecycle, true) => {
            parts.push(format!("onecycle schedule, rising over the first {} epochs", s.warmup_epochs))
        }
        (Schedule::Constant, false) => {}
        (schedule, false) => parts.push(format!("{} schedule", schedule.name())),
        (schedule, true) => {
            parts.push(format!("{} schedule after {} warm-up epochs", schedule.name(), s.warmup_epochs))
        }
    }
    if s.augment {
        // Padding 0 leaves a crop nowhere to move: the flips are all there is.
        parts.push(if s.crop_padding == 0 {
            "flips".to_string()
        } else {
            format!("crops of up to {} pixels each way and flips", s.crop_padding)
        });
    }
    if s.label_smoothing > 0.0 {
        parts.push(format!("label smoothing {}", s.label_smoothing));
    }
    if s.momentum > 0.0 {
        parts.push(format!("momentum {}", s.momentum));
    }
    if s.weight_decay > 0.0 {
        parts.push(format!("weight decay {}", s.weight_decay));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// Whether the run's best weights were tested (`best.safetensors` holds a `test_acc`).
fn tested(checkpoint: &Path) -> bool {
    let best = checkpoint.parent().unwrap_or(Path::new(".")).join(BEST_FILE);
    checkpoint::load(&best).is_ok_and(|c| c.meta("test_acc").is_some())
}

/// The end of a run with a validation split: the best epoch's weights on the test set, read now
/// for the first time; the accuracy goes into `best.safetensors`.
fn final_test<B: Backend>(
    model: &Sequential<B>,
    backend: &B,
    data_dir: &Path,
    settings: &Settings,
    dir: &RunDir,
) -> Result<f64> {
    let best_path = dir.path().join(BEST_FILE);
    let mut best = checkpoint::load(&best_path)?;
    state::load_weights(&best, &model.parameters(), backend, &best_path)?;
    let test_set = load(data_dir, Split::Test, settings.test_limit)?;
    let acc = evaluate(model, backend, &test_set, settings.resize, settings.batch_size)?;
    best.metadata.insert("test_acc".into(), acc.to_string());
    checkpoint::save_atomic(&best_path, &best)?;
    println!(
        "best epoch {} (val acc {:.4}): test acc {acc:.4} on {} images, saved in {}",
        best.meta("best_epoch").unwrap_or("?"),
        best.meta("best_val_acc").and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN),
        test_set.len(),
        best_path.display()
    );
    Ok(acc)
}

/// The bar of one epoch, `start` of its `len` steps already done (a resumed epoch).
fn progress_bar(len: u64, start: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches, {msg}, ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar.set_position(start);
    // The jump to `start` would read as `start` steps done in no time and keep the ETA near
    // zero for minutes; record it, then forget the rate so that only steps run now count.
    bar.tick();
    bar.reset_eta();
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
    Ok(evaluate_until(model, backend, set, resize, batch_size, || false)?.expect("never stopped"))
}

/// [`evaluate`], or `None` if a stop is asked for (`stop::requested`) before it ends.
fn evaluate_unless_stopped<B: Backend>(
    model: &Sequential<B>,
    backend: &B,
    set: &Arc<Dataset>,
    resize: usize,
    batch_size: usize,
) -> Result<Option<f64>> {
    evaluate_until(model, backend, set, resize, batch_size, stop::requested)
}

fn evaluate_until<B: Backend>(
    model: &Sequential<B>,
    backend: &B,
    set: &Arc<Dataset>,
    resize: usize,
    batch_size: usize,
    stop: impl Fn() -> bool,
) -> Result<Option<f64>> {
    // Each phase has buffers of its own sizes: a cache that keeps freed buffers by size (the
    // GPU's) is given back at both ends, so a run does not hold training's and evaluation's side
    // by side. The CPU's pool serves any size from the same memory and gives back only segments
    // nothing uses.
    backend.release_cached();
    let result = evaluate_batches(model, backend, set, resize, batch_size, stop);
    backend.release_cached();
    result
}

fn evaluate_batches<B: Backend>(
    model: &Sequential<B>,
    backend: &B,
    set: &Arc<Dataset>,
    resize: usize,
    batch_size: usize,
    stop: impl Fn() -> bool,
) -> Result<Option<f64>> {
    let _no_grad = NoGradGuard::new();
    let mut mode = Mode::eval();
    let mut correct = 0.0f64;
    // Each batch's count is collected after the next batch is queued, as in training.
    let mut pending = None;
    for batch in data::batches(set.clone(), batch_size, resize, None, None) {
        if stop() {
            return Ok(None);
        }
        let x = Var::constant(Tensor::from_slice(backend, [batch.len, 1, resize, resize], &batch.images)?);
        let (_, hits) = ops::cross_entropy(&model.forward(&x, &mut mode)?, &batch.labels)?;
        if let Some(previous) = pending.replace(hits.read_later()?) {
            correct += previous.item()? as f64;
        }
    }
    if let Some(last) = pending {
        correct += last.item()? as f64;
    }
    Ok(Some(correct / set.len().max(1) as f64))
}

/// `train eval`: the model and resize come from the checkpoint's metadata.
pub fn eval<B: Backend>(backend: &B, args: &EvalArgs) -> Result<f64> {
    let path = &args.checkpoint;
    let w = weights::load(path, args.model)?;
    let resize =
        args.resize.or(w.meta.as_ref().map(|m| m.settings.resize)).unwrap_or(w.model.default_resize());
    w.model.check_resize(resize)?;
    let model = models::build(w.model, backend, WeightInit::XavierUniform, 0)?;
    state::load_weights(&w.checkpoint, &model.parameters(), backend, path)?;
    // Evaluation reads (and, if need be, downloads) the test split only.
    let data_dir = data::locate(args.data.data.as_deref(), &[Split::Test])?;
    let test_set = load(&data_dir, Split::Test, args.data.test_limit.map(|n| n as usize))?;
    let started = Instant::now();
    let acc = evaluate(&model, backend, &test_set, resize, args.batch_size as usize)?;
    println!(
        "{} ({}) at {resize}x{resize}: test acc {acc:.4} on {} images, {:.1} sec on {}",
        w.model,
        match &w.meta {
            None => "a state_dict".to_string(),
            Some(m) if m.position.step == 0 => format!("epoch {}", m.position.epoch),
            Some(m) => format!("epoch {} and {} steps", m.position.epoch, m.position.step),
        },
        test_set.len(),
        started.elapsed().as_secs_f64(),
        backend.name()
    );
    if let Some(line) = crate::memory::peak_line() {
        println!("{line}");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_resumed_epochs_eta_counts_only_the_steps_run_since() {
        let bar = progress_bar(469, 255, 6, 10);
        std::thread::sleep(Duration::from_millis(20));
        bar.set_position(256);
        bar.tick();
        // One step in 20 ms or more leaves 213 steps for at least 4 s; counting the 255 resumed
        // steps as done in an instant gives an ETA of a few milliseconds.
        assert!(bar.eta() > Duration::from_secs(1), "ETA {:?}", bar.eta());
    }

    /// The start line names what the schedule and the augmentation do, not just their flags.
    #[test]
    fn the_recipe_line_says_what_the_run_does() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let Command::GoogLeNet(args) = Cli::try_parse_from(["train", "googlenet"]).unwrap().command else {
            panic!("googlenet parses as GoogLeNet")
        };
        let mut s = new_settings(ModelKind::GoogLeNet, &args).unwrap();
        assert_eq!(recipe(&s), "");
        s.schedule = Schedule::Onecycle;
        s.augment = true;
        s.crop_padding = 0;
        assert_eq!(recipe(&s), " (onecycle schedule, rising over the first 30% of the run, flips)");
        s.warmup_epochs = 1.5;
        s.crop_padding = 4;
        assert_eq!(
            recipe(&s),
            " (onecycle schedule, rising over the first 1.5 epochs, crops of up to 4 pixels each way and flips)"
        );
        s.schedule = Schedule::Cosine;
        s.augment = false;
        assert_eq!(recipe(&s), " (cosine schedule after 1.5 warm-up epochs)");
        s.warmup_epochs = 0.0;
        assert_eq!(recipe(&s), " (cosine schedule)");
        s.schedule = Schedule::Constant;
        s.warmup_epochs = 2.0;
        assert_eq!(recipe(&s), " (constant schedule after 2 warm-up epochs)");
    }
}
