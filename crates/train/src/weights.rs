//! Weights from any safetensors file: a checkpoint of this program (its settings in the metadata)
//! or a plain PyTorch `state_dict` saved with `safetensors.torch.save_file` (no metadata), whose
//! model is recognised from its tensor names and shapes.
use crate::checkpoint::{self, Checkpoint, NamedTensor, OPTIMIZER_PREFIX};
use crate::state::RunMeta;
use anyhow::{anyhow, bail, Result};
use layers::{Module, WeightInit};
use models::ModelKind;
use std::path::Path;
use tensor::{Cpu, Meter};

/// A model's parameters as (state_dict name, shape), computed without allocating them.
pub fn model_shapes(kind: ModelKind) -> Vec<(String, Vec<usize>)> {
    let meter = Meter::new(&Cpu);
    let model = models::build(kind, &meter, WeightInit::XavierUniform, 0).expect("the models build");
    model.parameters().iter().map(|(n, p)| (n.clone(), p.shape().dims().to_vec())).collect()
}

/// Loaded weights and what is known of them.
pub struct Weights {
    /// The file's tensors and metadata (a `module.` prefix on every name removed).
    pub checkpoint: Checkpoint,
    /// The model the weights are for.
    pub model: ModelKind,
    /// The run's settings and position, for this program's checkpoints.
    pub meta: Option<RunMeta>,
}

/// Loads `path` and finds its model: from the metadata of this program's checkpoints, from the
/// tensors of a plain `state_dict` (checked against `model` when one is named). Names under
/// `module.` (PyTorch's DataParallel) are taken without it.
pub fn load(path: &Path, model: Option<ModelKind>) -> Result<Weights> {
    let mut ckpt = checkpoint::load(path)?;
    if ckpt.meta("format").is_some_and(|f| f.starts_with("convnet-checkpoint")) {
        let meta = RunMeta::from_checkpoint(&ckpt, path)?;
        if let Some(m) = model.filter(|&m| m != meta.settings.model) {
            bail!("{} holds a {} model, not {m}", path.display(), meta.settings.model);
        }
        let kind = meta.settings.model;
        return Ok(Weights { checkpoint: ckpt, model: kind, meta: Some(meta) });
    }
    if !ckpt.tensors.is_empty() && ckpt.tensors.iter().all(|t| t.name.starts_with("module.")) {
        for t in &mut ckpt.tensors {
            t.name = t.name["module.".len()..].to_string();
        }
    }
    let kind = recognise(&ckpt, model, path)?;
    Ok(Weights { checkpoint: ckpt, model: kind, meta: None })
}

/// The model whose parameters `ckpt` holds exactly (only `wanted` when given); otherwise an error
/// listing, for the closest model, the missing, unexpected and mis-shaped tensors.
fn recognise(ckpt: &Checkpoint, wanted: Option<ModelKind>, path: &Path) -> Result<ModelKind> {
    let candidates: Vec<ModelKind> = match wanted {
        Some(k) => vec![k],
        None => ModelKind::ALL.to_vec(),
    };
    let mut failures = Vec::new();
    for kind in candidates {
        match checkpoint::check_against(ckpt, &model_shapes(kind)) {
            Ok(()) => return Ok(kind),
            Err(checkpoint::CheckpointError::Mismatch { problems, .. }) => failures.push((kind, problems)),
            Err(e) => return Err(e.into()),
        }
    }
    failures.sort_by_key(|(_, p)| p.len());
    let (closest, problems) = &failures[0];
    let shown: Vec<String> = problems.iter().take(12).map(|p| p.to_string()).collect();
    let more = problems.len().saturating_sub(shown.len());
    let count = |n: usize| if n == 1 { "1 problem".to_string() } else { format!("{n} problems") };
    let others: Vec<String> =
        failures[1..].iter().map(|(k, p)| format!("{} as {k}", count(p.len()))).collect();
    Err(anyhow!(
        "{}: {} tensors that are not {} (the closest: {} as {closest}: {}{}{}). A plain PyTorch \
         state_dict of d2l's {} must hold every parameter under its state_dict name",
        path.display(),
        ckpt.tensors.len(),
        match wanted {
            Some(k) => format!("a {k} state_dict"),
            None => "the state_dict of NiN or GoogLeNet".into(),
        },
        count(problems.len()),
        shown.join("; "),
        if more > 0 { format!("; and {more} more") } else { String::new() },
        if others.is_empty() { String::new() } else { format!("; {}", others.join(", ")) },
        closest,
    ))
}

/// The tensors that are the model's (not the optimizer's).
pub fn model_tensors(ckpt: &Checkpoint) -> impl Iterator<Item = &NamedTensor> {
    ckpt.tensors.iter().filter(|t| !t.name.starts_with(OPTIMIZER_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_dict(kind: ModelKind) -> Checkpoint {
        let mut c = Checkpoint::new();
        for (name, shape) in model_shapes(kind) {
            let n = shape.iter().product();
            c.push(name, shape, vec![0.5; n]);
        }
        c
    }

    /// A plain state_dict is recognised; one with a wrong, missing or extra tensor is refused
    /// with the tensors named.
    #[test]
    fn recognises_models_and_names_what_is_wrong() {
        let p = Path::new("w.safetensors");
        for kind in ModelKind::ALL {
            assert_eq!(recognise(&state_dict(kind), None, p).unwrap(), kind);
        }
        assert_eq!(model_shapes(ModelKind::Nin)[0], ("0.0.weight".to_string(), vec![96, 1, 11, 11]));
        let mut bad = state_dict(ModelKind::Nin);
        bad.tensors[0].shape = vec![96, 3, 11, 11];
        bad.tensors.retain(|t| t.name != "0.0.bias");
        bad.push("extra.weight", vec![1], vec![0.0]);
        let e = recognise(&bad, None, p).unwrap_err().to_string();
        for needle in [
            "w.safetensors",
            "as nin",
            "0.0.weight has shape [96, 3, 11, 11]",
            "missing tensor 0.0.bias",
            "unexpected tensor extra.weight",
            "as googlenet",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let e =
            recognise(&state_dict(ModelKind::Nin), Some(ModelKind::GoogLeNet), p).unwrap_err().to_string();
        assert!(e.contains("not a googlenet state_dict"), "{e}");
    }
}
