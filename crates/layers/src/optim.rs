//! SGD (momentum, weight decay) and Adam with PyTorch's semantics. The update itself is a
//! backend kernel; this file keeps the per-parameter state.
use autograd::Var;
use tensor::{bail, AdamStep, Backend, Result, SgdStep, Tensor};

pub trait Optimizer<B: Backend> {
    /// Applies one update from the accumulated gradients (parameters without one are skipped).
    fn step(&mut self) -> Result<()>;
    fn parameters(&self) -> &[(String, Var<B>)];
    fn zero_grad(&self) {
        self.parameters().iter().for_each(|(_, p)| p.zero_grad());
    }
    /// Named state tensors (for checkpoints) and the step count.
    fn state(&self) -> (Vec<(String, Tensor<B>)>, u64);
    /// Restores what `state` returned; names and shapes must match.
    fn load_state(&mut self, tensors: Vec<(String, Tensor<B>)>, steps: u64) -> Result<()>;
    fn learning_rate(&self) -> f32;
    /// Sets the learning rate of the next steps (a schedule's).
    fn set_learning_rate(&mut self, lr: f32);
}

/// One state buffer per parameter, created lazily (zeros) at the first step.
struct Slots<B: Backend> {
    prefix: &'static str,
    buffers: Vec<Option<Tensor<B>>>,
}

impl<B: Backend> Slots<B> {
    fn new(prefix: &'static str, n: usize) -> Self {
        Slots { prefix, buffers: (0..n).map(|_| None).collect() }
    }
    fn get(&mut self, i: usize, like: &Tensor<B>) -> Result<&mut Tensor<B>> {
        if self.buffers[i].is_none() {
            self.buffers[i] = Some(like.zeros_like()?);
        }
        Ok(self.buffers[i].as_mut().expect("just created"))
    }
    fn export(&self, params: &[(String, Var<B>)], out: &mut Vec<(String, Tensor<B>)>) {
        for ((name, _), buf) in params.iter().zip(&self.buffers) {
            if let Some(b) = buf {
                out.push((format!("{}.{name}", self.prefix), b.clone()));
            }
        }
    }
    /// Takes this slot set's tensors out of `tensors` by name.
    fn import(&mut self, params: &[(String, Var<B>)], tensors: &mut Vec<(String, Tensor<B>)>) -> Result<()> {
        for (i, (name, p)) in params.iter().enumerate() {
            let key = format!("{}.{name}", self.prefix);
            if let Some(pos) = tensors.iter().position(|(n, _)| *n == key) {
                let (_, t) = tensors.swap_remove(pos);
                if t.shape() != p.value_ref().shape() {
                    bail!(
                        Shape,
                        "optimizer state {key} has shape {}, parameter has {}",
                        t.shape(),
                        p.shape()
                    );
                }
                self.buffers[i] = Some(t);
            } else {
                self.buffers[i] = None;
            }
        }
        Ok(())
    }
}

fn reject_leftovers<B: Backend>(tensors: &[(String, Tensor<B>)]) -> Result<()> {
    if let Some((name, _)) = tensors.first() {
        bail!(InvalidArgument, "optimizer state {name} does not belong to any parameter");
    }
    Ok(())
}

pub struct Sgd<B: Backend> {
    params: Vec<(String, Var<B>)>,
    pub hp: SgdStep,
    velocity: Slots<B>,
    steps: u64,
}

impl<B: Backend> Sgd<B> {
    pub fn new(params: Vec<(String, Var<B>)>, lr: f32, momentum: f32, weight_decay: f32) -> Self {
        let n = params.len();
        Sgd {
            params,
            hp: SgdStep { lr, momentum, weight_decay },
            velocity: Slots::new("momentum", n),
            steps: 0,
        }
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step(&mut self) -> Result<()> {
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(grad) = p.grad() else { continue };
            let velocity = if self.hp.momentum != 0.0 { Some(self.velocity.get(i, &grad)?) } else { None };
            let hp = self.hp;
            p.update(|value| {
                let backend = value.backend().clone();
                let v = match velocity {
                    Some(v) => Some(v.storage_mut()?),
                    None => None,
                };
                backend.sgd_step(value.storage_mut()?, grad.storage(), v, &hp)
            })?;
        }
        self.steps += 1;
        Ok(())
    }
    fn parameters(&self) -> &[(String, Var<B>)] {
        &self.params
    }
    fn state(&self) -> (Vec<(String, Tensor<B>)>, u64) {
        let mut out = Vec::new();
        self.velocity.export(&self.params, &mut out);
        (out, self.steps)
    }
    fn load_state(&mut self, mut tensors: Vec<(String, Tensor<B>)>, steps: u64) -> Result<()> {
        self.velocity.import(&self.params, &mut tensors)?;
        reject_leftovers(&tensors)?;
        self.steps = steps;
        Ok(())
    }
    fn learning_rate(&self) -> f32 {
        self.hp.lr
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.hp.lr = lr;
    }
}

pub struct Adam<B: Backend> {
    params: Vec<(String, Var<B>)>,
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    m: Slots<B>,
    v: Slots<B>,
    steps: u64,
}

impl<B: Backend> Adam<B> {
    /// PyTorch's defaults are betas (0.9, 0.999) and eps 1e-8.
    pub fn new(params: Vec<(String, Var<B>)>, lr: f32, weight_decay: f32) -> Self {
        let n = params.len();
        Adam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            m: Slots::new("exp_avg", n),
            v: Slots::new("exp_avg_sq", n),
            steps: 0,
        }
    }
}

impl<B: Backend> Optimizer<B> for Adam<B> {
    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        let hp = AdamStep {
            lr: self.lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            step: self.steps,
        };
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(grad) = p.grad() else { continue };
            let m = self.m.get(i, &grad)?;
            let v = self.v.get(i, &grad)?;
            p.update(|value| {
                let backend = value.backend().clone();
                backend.adam_step(
                    value.storage_mut()?,
                    grad.storage(),
                    m.storage_mut()?,
                    v.storage_mut()?,
                    &hp,
                )
            })?;
        }
        Ok(())
    }
    fn parameters(&self) -> &[(String, Var<B>)] {
        &self.params
    }
    fn state(&self) -> (Vec<(String, Tensor<B>)>, u64) {
        let mut out = Vec::new();
        self.m.export(&self.params, &mut out);
        self.v.export(&self.params, &mut out);
        (out, self.steps)
    }
    fn load_state(&mut self, mut tensors: Vec<(String, Tensor<B>)>, steps: u64) -> Result<()> {
        self.m.import(&self.params, &mut tensors)?;
        self.v.import(&self.params, &mut tensors)?;
        reject_leftovers(&tensors)?;
        self.steps = steps;
        Ok(())
    }
    fn learning_rate(&self) -> f32 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }
}
