//! What a checkpoint holds beyond the weights, and the conversions between a live model and
//! optimizer and a `Checkpoint`.
use crate::checkpoint::{self, Checkpoint, OPTIMIZER_PREFIX};
use crate::cli::OptimizerKind;
use anyhow::{anyhow, bail, Context, Result};
use autograd::Var;
use models::ModelKind;
use std::collections::BTreeMap;
use std::path::Path;
use tensor::{Backend, Tensor};

const FORMAT: &str = "convnet-checkpoint-1";

/// The run's settings and position, stored as the checkpoint's string metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct RunMeta {
    pub model: ModelKind,
    pub resize: usize,
    /// Epochs completed.
    pub epoch: usize,
    pub seed: u64,
    /// Dropout seeds drawn so far (the RNG's state).
    pub dropout_draws: u64,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub optimizer_steps: u64,
    pub batch_size: usize,
    pub train_limit: Option<usize>,
}

impl RunMeta {
    fn to_map(&self) -> BTreeMap<String, String> {
        let optimizer = match self.optimizer {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        };
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| m.insert(k.to_string(), v);
        put("format", FORMAT.into());
        put("model", self.model.name().into());
        put("resize", self.resize.to_string());
        put("epoch", self.epoch.to_string());
        put("seed", self.seed.to_string());
        put("dropout_draws", self.dropout_draws.to_string());
        put("optimizer", optimizer.into());
        put("lr", self.lr.to_string());
        put("momentum", self.momentum.to_string());
        put("weight_decay", self.weight_decay.to_string());
        put("optimizer_steps", self.optimizer_steps.to_string());
        put("batch_size", self.batch_size.to_string());
        if let Some(n) = self.train_limit {
            put("train_limit", n.to_string());
        }
        m
    }

    pub fn from_checkpoint(ckpt: &Checkpoint, path: &Path) -> Result<RunMeta> {
        let get = |k: &str| {
            ckpt.meta(k).ok_or_else(|| {
                anyhow!("{}: metadata has no `{k}`; was it written by this program?", path.display())
            })
        };
        fn parse<T: std::str::FromStr>(path: &Path, k: &str, v: &str) -> Result<T> {
            v.parse().map_err(|_| anyhow!("{}: metadata `{k}` = {v:?} is not valid", path.display()))
        }
        if get("format")? != FORMAT {
            bail!("{}: checkpoint format {:?}, expected {FORMAT:?}", path.display(), get("format")?);
        }
        let optimizer = match get("optimizer")? {
            "sgd" => OptimizerKind::Sgd,
            "adam" => OptimizerKind::Adam,
            other => bail!("{}: unknown optimizer {other:?} in metadata", path.display()),
        };
        Ok(RunMeta {
            model: get("model")?.parse().with_context(|| format!("{}: metadata `model`", path.display()))?,
            resize: parse(path, "resize", get("resize")?)?,
            epoch: parse(path, "epoch", get("epoch")?)?,
            seed: parse(path, "seed", get("seed")?)?,
            dropout_draws: parse(path, "dropout_draws", get("dropout_draws")?)?,
            optimizer,
            lr: parse(path, "lr", get("lr")?)?,
            momentum: parse(path, "momentum", get("momentum")?)?,
            weight_decay: parse(path, "weight_decay", get("weight_decay")?)?,
            optimizer_steps: parse(path, "optimizer_steps", get("optimizer_steps")?)?,
            batch_size: parse(path, "batch_size", get("batch_size")?)?,
            train_limit: ckpt.meta("train_limit").map(|v| parse(path, "train_limit", v)).transpose()?,
        })
    }
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

/// The optimizer file that goes with the weights of epoch `epoch` in `dir`.
pub fn optimizer_path(dir: &Path, epoch: usize) -> std::path::PathBuf {
    dir.join(format!("optimizer-epoch{epoch}.safetensors"))
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
