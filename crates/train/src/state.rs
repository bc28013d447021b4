//! What a checkpoint holds beyond the weights, and the conversions between a live model and
//! optimizer and a `Checkpoint`.
//!
//! A run is defined once: every setting that changes its results is stored in the checkpoint's
//! metadata ([`Settings`]) and taken from there on resume; a flag given on resume that disagrees
//! is an error. The metadata also holds the run's position ([`Position`]): epochs done, steps
//! done in the current epoch, the dropout RNG's draws, the optimizer's step count and the
//! current epoch's running sums, so that a run stopped anywhere resumes to the same weights,
//! bit for bit. The order of each epoch's batches is a function of the seed and the epoch
//! (`data::epoch_seed`), so the position within it is enough to rebuild it.
use crate::checkpoint::{self, Checkpoint, OPTIMIZER_PREFIX};
use crate::cli::OptimizerKind;
use crate::data::DEFAULT_CROP_PADDING;
use crate::schedule::Schedule;
use anyhow::{anyhow, bail, Context, Result};
use autograd::Var;
use models::ModelKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tensor::{Backend, Tensor};

/// Epoch-end checkpoints only, the optimizer file named by epoch; read for resuming old runs.
const FORMAT_1: &str = "convnet-checkpoint-1";
/// Checkpoints anywhere in an epoch, the optimizer file named by step.
const FORMAT: &str = "convnet-checkpoint-2";

/// The settings that decide a run's results, fixed when it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The network trained (the subcommand: `nin` or `googlenet`).
    pub model: ModelKind,
    /// Side of the square input images, in pixels (`--resize`).
    pub resize: usize,
    /// Seed of the initial weights, the shuffles, dropout, the validation split and the
    /// augmentation (`--seed`).
    pub seed: u64,
    /// SGD or Adam (`--optimizer`).
    pub optimizer: OptimizerKind,
    /// The peak learning rate, from which the schedule sets each step's (`--lr`).
    pub lr: f32,
    /// SGD's momentum; Adam ignores it (`--momentum`).
    pub momentum: f32,
    /// L2 weight decay added to the gradient (`--weight-decay`).
    pub weight_decay: f32,
    /// Images per training step (`--batch-size`).
    pub batch_size: usize,
    /// Training images used (the first N), or all.
    pub train_limit: Option<usize>,
    /// Test images evaluated (the first N), or all. `None` in runs saved before it was stored.
    pub test_limit: Option<usize>,
    /// The epochs the run was asked for.
    pub epochs: usize,
    /// How the learning rate moves over the run (`--schedule`).
    pub schedule: Schedule,
    /// The learning rate's warm-up, in epochs, fractions allowed (`--warmup-epochs`).
    pub warmup_epochs: f32,
    /// Random crops and horizontal flips of the training images (`--augment`).
    pub augment: bool,
    /// The random crops' zero padding: pixels an image may move each way (`--crop-padding`).
    pub crop_padding: usize,
    /// Label smoothing of the cross-entropy loss, in [0, 1) (`--label-smoothing`).
    pub label_smoothing: f32,
    /// Training images held out for validation (0: none; the test set is then evaluated every
    /// epoch).
    pub val_split: usize,
    /// The weights the run started from (`--init-from`), or random ones.
    pub init_from: Option<String>,
}

impl Settings {
    /// The warm-up in optimizer steps.
    pub fn warmup_steps(&self, steps_per_epoch: usize) -> u64 {
        (self.warmup_epochs as f64 * steps_per_epoch as f64).round() as u64
    }
}

/// Where a run is: what a resume needs besides the weights and the optimizer's tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps completed in epoch `epoch` (0 at an epoch's start). Equal to the epoch's batch
    /// count when training is done and its evaluation is not.
    pub step: usize,
    /// Dropout seeds drawn so far (the RNG's state).
    pub dropout_draws: u64,
    /// Optimizer steps taken since the run began: the step the learning-rate schedule is at.
    pub optimizer_steps: u64,
    /// The current epoch's sum so far of loss x images (each batch's mean loss times its size).
    pub loss_sum: f64,
    /// The current epoch's correct predictions so far.
    pub correct: f64,
    /// The current epoch's images trained on so far.
    pub seen: usize,
    /// Seconds spent training in the current epoch (for its images/s).
    pub seconds: f64,
    /// With a validation split: the best validation accuracy so far (NaN before the first) and
    /// its epoch, whose weights are in `best.safetensors`.
    pub best_val_acc: f64,
    /// The epoch (from 1) of [`Position::best_val_acc`]; 0 before the first.
    pub best_epoch: usize,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            epoch: 0,
            step: 0,
            dropout_draws: 0,
            optimizer_steps: 0,
            loss_sum: 0.0,
            correct: 0.0,
            seen: 0,
            seconds: 0.0,
            best_val_acc: f64::NAN,
            best_epoch: 0,
        }
    }
}

/// A checkpoint's metadata: the run's settings and position.
#[derive(Clone, Debug, PartialEq)]
pub struct RunMeta {
    /// What the run is: fixed when it starts.
    pub settings: Settings,
    /// Where the run is.
    pub position: Position,
    /// The optimizer file of a format-1 checkpoint (named by epoch); `None` for the current format.
    legacy_optimizer_epoch: Option<usize>,
}

fn optimizer_name(kind: OptimizerKind) -> &'static str {
    match kind {
        OptimizerKind::Sgd => "sgd",
        OptimizerKind::Adam => "adam",
    }
}

impl RunMeta {
    /// A new run of `settings`, at its start ([`Position::default`]), in the current format.
    pub fn new(settings: Settings) -> RunMeta {
        RunMeta { settings, position: Position::default(), legacy_optimizer_epoch: None }
    }

    fn to_map(&self) -> BTreeMap<String, String> {
        let (s, p) = (&self.settings, &self.position);
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| m.insert(k.to_string(), v);
        put("format", FORMAT.into());
        put("model", s.model.name().into());
        put("resize", s.resize.to_string());
        put("seed", s.seed.to_string());
        put("optimizer", optimizer_name(s.optimizer).into());
        // Rust prints floats in their shortest form that parses back to the same value.
        put("lr", s.lr.to_string());
        put("momentum", s.momentum.to_string());
        put("weight_decay", s.weight_decay.to_string());
        put("batch_size", s.batch_size.to_string());
        put("train_limit", s.train_limit.map_or("all".into(), |n| n.to_string()));
        put("test_limit", s.test_limit.map_or("all".into(), |n| n.to_string()));
        put("epochs", s.epochs.to_string());
        put("schedule", s.schedule.name().into());
        put("warmup_epochs", s.warmup_epochs.to_string());
        put("augment", s.augment.to_string());
        put("crop_padding", s.crop_padding.to_string());
        put("label_smoothing", s.label_smoothing.to_string());
        put("val_split", s.val_split.to_string());
        if let Some(f) = &s.init_from {
            put("init_from", f.clone());
        }
        put("best_val_acc", p.best_val_acc.to_string());
        put("best_epoch", p.best_epoch.to_string());
        put("epoch", p.epoch.to_string());
        put("step", p.step.to_string());
        put("dropout_draws", p.dropout_draws.to_string());
        put("optimizer_steps", p.optimizer_steps.to_string());
        put("epoch_loss_sum", p.loss_sum.to_string());
        put("epoch_correct", p.correct.to_string());
        put("epoch_seen", p.seen.to_string());
        put("epoch_seconds", p.seconds.to_string());
        m
    }

    /// Reads the settings and position from `ckpt`'s metadata (`path` names the file in errors).
    /// Checkpoints of the first format are read too; keys added since a format first shipped
    /// take their defaults when absent. An unknown format, a missing key, a value that does not
    /// parse or a batch size of 0 is an error.
    pub fn from_checkpoint(ckpt: &Checkpoint, path: &Path) -> Result<RunMeta> {
        let get = |k: &str| {
            ckpt.meta(k).ok_or_else(|| {
                anyhow!("{}: metadata has no `{k}`; was it written by this program?", path.display())
            })
        };
        fn parse<T: std::str::FromStr>(path: &Path, k: &str, v: &str) -> Result<T> {
            v.parse().map_err(|_| anyhow!("{}: metadata `{k}` = {v:?} is not valid", path.display()))
        }
        // Keys added after format 2 first shipped: absent means the default.
        fn optional<T: std::str::FromStr>(ckpt: &Checkpoint, path: &Path, k: &str, default: T) -> Result<T> {
            ckpt.meta(k).map_or(Ok(default), |v| parse(path, k, v))
        }
        let limit = |k: &str| -> Result<Option<usize>> {
            match ckpt.meta(k) {
                None | Some("all") => Ok(None),
                Some(v) => parse(path, k, v).map(Some),
            }
        };
        let format = get("format")?;
        let legacy = match format {
            FORMAT => false,
            FORMAT_1 => true,
            other => bail!("{}: checkpoint format {other:?}, expected {FORMAT:?}", path.display()),
        };
        let optimizer = match get("optimizer")? {
            "sgd" => OptimizerKind::Sgd,
            "adam" => OptimizerKind::Adam,
            other => bail!("{}: unknown optimizer {other:?} in metadata", path.display()),
        };
        let epoch: usize = parse(path, "epoch", get("epoch")?)?;
        let settings = Settings {
            model: get("model")?.parse().with_context(|| format!("{}: metadata `model`", path.display()))?,
            resize: parse(path, "resize", get("resize")?)?,
            seed: parse(path, "seed", get("seed")?)?,
            optimizer,
            lr: parse(path, "lr", get("lr")?)?,
            momentum: parse(path, "momentum", get("momentum")?)?,
            weight_decay: parse(path, "weight_decay", get("weight_decay")?)?,
            batch_size: parse(path, "batch_size", get("batch_size")?)?,
            train_limit: limit("train_limit")?,
            // Format 1 did not store these: the test limit is then whatever the resume asks for,
            // and the epochs what it asks for (the old default was 10).
            test_limit: if legacy { None } else { limit("test_limit")? },
            epochs: if legacy { epoch.max(10) } else { parse(path, "epochs", get("epochs")?)? },
            schedule: match ckpt.meta("schedule") {
                None => Schedule::Constant,
                Some(v) => Schedule::parse(v)
                    .ok_or_else(|| anyhow!("{}: metadata `schedule` = {v:?} is not valid", path.display()))?,
            },
            warmup_epochs: optional(ckpt, path, "warmup_epochs", 0.0)?,
            augment: optional(ckpt, path, "augment", false)?,
            crop_padding: optional(ckpt, path, "crop_padding", DEFAULT_CROP_PADDING)?,
            label_smoothing: optional(ckpt, path, "label_smoothing", 0.0)?,
            val_split: optional(ckpt, path, "val_split", 0)?,
            init_from: ckpt.meta("init_from").map(str::to_string),
        };
        if settings.batch_size == 0 {
            bail!("{}: metadata `batch_size` is 0", path.display());
        }
        let position = if legacy {
            Position {
                epoch,
                dropout_draws: parse(path, "dropout_draws", get("dropout_draws")?)?,
                optimizer_steps: parse(path, "optimizer_steps", get("optimizer_steps")?)?,
                ..Position::default()
            }
        } else {
            Position {
                epoch,
                step: parse(path, "step", get("step")?)?,
                dropout_draws: parse(path, "dropout_draws", get("dropout_draws")?)?,
                optimizer_steps: parse(path, "optimizer_steps", get("optimizer_steps")?)?,
                loss_sum: parse(path, "epoch_loss_sum", get("epoch_loss_sum")?)?,
                correct: parse(path, "epoch_correct", get("epoch_correct")?)?,
                seen: parse(path, "epoch_seen", get("epoch_seen")?)?,
                seconds: parse(path, "epoch_seconds", get("epoch_seconds")?)?,
                best_val_acc: optional(ckpt, path, "best_val_acc", f64::NAN)?,
                best_epoch: optional(ckpt, path, "best_epoch", 0)?,
            }
        };
        Ok(RunMeta { settings, position, legacy_optimizer_epoch: legacy.then_some(epoch) })
    }

    /// Read from a checkpoint of the first format (epoch ends only, fewer settings stored).
    pub fn is_legacy(&self) -> bool {
        self.legacy_optimizer_epoch.is_some()
    }

    /// From now on written in the current format (the optimizer file named by step).
    pub fn set_current_format(&mut self) {
        self.legacy_optimizer_epoch = None;
    }

    /// The optimizer file that goes with these weights, in the run's folder `dir`.
    pub fn optimizer_path(&self, dir: &Path) -> PathBuf {
        match self.legacy_optimizer_epoch {
            Some(epoch) => dir.join(format!("optimizer-epoch{epoch}.safetensors")),
            None => optimizer_path(dir, self.position.optimizer_steps),
        }
    }
}

/// The optimizer file written with the weights after `steps` optimizer steps.
pub fn optimizer_path(dir: &Path, steps: u64) -> PathBuf {
    dir.join(format!("optimizer-step{steps}.safetensors"))
}

/// Whether `name` is an optimizer file of either format.
pub fn is_optimizer_file(name: &str) -> bool {
    name.starts_with("optimizer-") && name.ends_with(".safetensors")
}

/// Weights under their state_dict names (so PyTorch's `load_state_dict` takes the file as it is),
/// settings and position in the metadata.
pub fn weights_checkpoint<B: Backend>(params: &[(String, Var<B>)], meta: &RunMeta) -> Result<Checkpoint> {
    let mut ckpt = Checkpoint::new();
    for (name, p) in params {
        let v = p.value();
        ckpt.push(name.clone(), v.dims().to_vec(), v.to_vec()?);
    }
    ckpt.metadata = meta.to_map();
    Ok(ckpt)
}

/// The optimizer's state under `optimizer.<name>`, in a file of its own beside the weights.
pub fn optimizer_checkpoint<B: Backend>(
    optimizer_state: &[(String, Tensor<B>)],
    meta: &RunMeta,
) -> Result<Checkpoint> {
    let mut ckpt = Checkpoint::new();
    for (name, t) in optimizer_state {
        ckpt.push(format!("{OPTIMIZER_PREFIX}{name}"), t.dims().to_vec(), t.to_vec()?);
    }
    ckpt.metadata = meta.to_map();
    Ok(ckpt)
}

/// Checks names and shapes against the model, then copies the weights in.
pub fn load_weights<B: Backend>(
    ckpt: &Checkpoint,
    params: &[(String, Var<B>)],
    backend: &B,
    path: &Path,
) -> Result<()> {
    let expected: Vec<(String, Vec<usize>)> =
        params.iter().map(|(n, p)| (n.clone(), p.shape().dims().to_vec())).collect();
    checkpoint::check_against(ckpt, &expected).map_err(|e| e.at(path))?;
    for (name, p) in params {
        let t = ckpt.get(name).expect("checked above");
        p.set_value(Tensor::from_slice(backend, t.shape.clone(), &t.data)?)?;
    }
    Ok(())
}

/// The optimizer's tensors, prefix removed, on the backend.
pub fn optimizer_tensors<B: Backend>(ckpt: &Checkpoint, backend: &B) -> Result<Vec<(String, Tensor<B>)>> {
    ckpt.tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix(OPTIMIZER_PREFIX).map(|n| (n, t)))
        .map(|(n, t)| Ok((n.to_string(), Tensor::from_slice(backend, t.shape.clone(), &t.data)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RunMeta {
        RunMeta {
            settings: Settings {
                model: ModelKind::Nin,
                resize: 67,
                seed: 7,
                optimizer: OptimizerKind::Sgd,
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 1e-4,
                batch_size: 16,
                train_limit: Some(100),
                test_limit: None,
                epochs: 3,
                schedule: Schedule::Cosine,
                warmup_epochs: 0.5,
                augment: true,
                crop_padding: 2,
                label_smoothing: 0.1,
                val_split: 5000,
                init_from: Some("d2l/nin.safetensors".into()),
            },
            position: Position {
                epoch: 1,
                step: 4,
                dropout_draws: 9,
                optimizer_steps: 11,
                loss_sum: 0.1 + 0.2,
                correct: 33.0,
                seen: 64,
                seconds: 1.0 / 3.0,
                best_val_acc: 0.875,
                best_epoch: 1,
            },
            legacy_optimizer_epoch: None,
        }
    }

    /// Every field survives the metadata exactly (floats included).
    #[test]
    fn metadata_round_trips() {
        let m = meta();
        let ckpt = Checkpoint { tensors: Vec::new(), metadata: m.to_map() };
        assert_eq!(RunMeta::from_checkpoint(&ckpt, Path::new("c")).unwrap(), m);
        assert_eq!(m.optimizer_path(Path::new("d")), Path::new("d/optimizer-step11.safetensors"));
    }

    /// A run saved before the crops' padding was stored resumes with the padding it used.
    #[test]
    fn crop_padding_defaults_to_the_old_one() {
        let mut map = meta().to_map();
        assert_eq!(map.remove("crop_padding").as_deref(), Some("2"));
        let ckpt = Checkpoint { tensors: Vec::new(), metadata: map };
        let m = RunMeta::from_checkpoint(&ckpt, Path::new("c")).unwrap();
        assert_eq!(m.settings.crop_padding, DEFAULT_CROP_PADDING);
        assert_eq!(DEFAULT_CROP_PADDING, 4);
    }

    /// A checkpoint of the first format (epoch ends only) still resumes, with its optimizer file
    /// named by epoch.
    #[test]
    fn format_1_is_read() {
        let mut map = meta().to_map();
        map.insert("format".into(), FORMAT_1.into());
        for k in
            ["step", "epoch_loss_sum", "epoch_correct", "epoch_seen", "epoch_seconds", "epochs", "test_limit"]
        {
            map.remove(k);
        }
        let ckpt = Checkpoint { tensors: Vec::new(), metadata: map };
        let m = RunMeta::from_checkpoint(&ckpt, Path::new("c")).unwrap();
        assert_eq!(m.position.step, 0);
        assert_eq!(m.settings.epochs, 10);
        assert_eq!(m.optimizer_path(Path::new("d")), Path::new("d/optimizer-epoch1.safetensors"));
    }
}
