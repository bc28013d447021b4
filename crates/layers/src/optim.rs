//! SGD (momentum, weight decay) and Adam with PyTorch's semantics. The update itself is a
//! backend kernel, given every parameter at once (`Backend::sgd_steps`, `adam_steps`: one launch
//! on a GPU, as PyTorch's `foreach` step); this file keeps the per-parameter state.
use autograd::Var;
use tensor::{bail, AdamSlot, AdamStep, Backend, Result, SgdSlot, SgdStep, Tensor};

/// Updates a fixed list of named parameters from their accumulated gradients, PyTorch's
/// `torch.optim.Optimizer`. A training step is `zero_grad()`, `loss.backward()`, `step()`.
pub trait Optimizer<B: Backend> {
    /// Applies one update from the accumulated gradients (parameters without one are skipped).
    fn step(&mut self) -> Result<()>;
    /// The parameters it updates, with the names it was given (a model's `parameters()`); the
    /// names key the state tensors.
    fn parameters(&self) -> &[(String, Var<B>)];
    /// Clears every parameter's gradient (sets it to none), so that the next backward pass does
    /// not add to the last one's.
    fn zero_grad(&self) {
        self.parameters().iter().for_each(|(_, p)| p.zero_grad());
    }
    /// Named state tensors (for checkpoints) and the step count. Each name is the state's kind and
    /// the parameter's name, e.g. `momentum.0.weight` or `exp_avg_sq.5.bias`; buffers not created
    /// yet (before the first step, or for a parameter that never had a gradient) are left out.
    fn state(&self) -> (Vec<(String, Tensor<B>)>, u64);
    /// Restores what `state` returned; names and shapes must match. A parameter whose state is
    /// absent starts again from zeros; a shape mismatch is a `Shape` error and a tensor that
    /// belongs to no parameter an `InvalidArgument` one.
    fn load_state(&mut self, tensors: Vec<(String, Tensor<B>)>, steps: u64) -> Result<()>;
    /// The learning rate the next step uses.
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
    /// The buffers of the parameters `live` lists (ascending indices, with their gradients),
    /// created as needed, in that order.
    fn many(&mut self, live: &[(usize, Tensor<B>)]) -> Result<Vec<&mut Tensor<B>>> {
        for (i, grad) in live {
            self.get(*i, grad)?;
        }
        let mut wanted = live.iter().map(|(i, _)| *i).peekable();
        Ok(self
            .buffers
            .iter_mut()
            .enumerate()
            .filter_map(|(j, b)| {
                (wanted.peek() == Some(&j)).then(|| {
                    wanted.next();
                    b.as_mut().expect("created above")
                })
            })
            .collect())
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

/// The parameters that have a gradient: their indices (ascending) and gradients.
fn with_grads<B: Backend>(params: &[(String, Var<B>)]) -> Vec<(usize, Tensor<B>)> {
    params.iter().enumerate().filter_map(|(i, (_, p))| p.grad().map(|g| (i, g))).collect()
}

fn reject_leftovers<B: Backend>(tensors: &[(String, Tensor<B>)]) -> Result<()> {
    if let Some((name, _)) = tensors.first() {
        bail!(InvalidArgument, "optimizer state {name} does not belong to any parameter");
    }
    Ok(())
}

/// Stochastic gradient descent with momentum and L2 weight decay, PyTorch's `torch.optim.SGD`
/// (no dampening, no Nesterov): `g = grad + weight_decay * p; v = momentum * v + g;
/// p -= lr * v`, with `v` starting at zero, so the first step is `p -= lr * g`. Without momentum
/// no velocity is kept. Its state tensors are named `momentum.<parameter>`.
pub struct Sgd<B: Backend> {
    params: Vec<(String, Var<B>)>,
    /// The learning rate, momentum and weight decay of the next steps.
    pub hp: SgdStep,
    velocity: Slots<B>,
    steps: u64,
}

impl<B: Backend> Sgd<B> {
    /// SGD over `params` (e.g. a model's `parameters()`); PyTorch's defaults for the last two
    /// are 0.
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
        let live = with_grads(&self.params);
        if let Some((_, first)) = live.first() {
            let (hp, backend) = (self.hp, first.backend().clone());
            let mut velocity: Vec<Option<&mut Tensor<B>>> = if hp.momentum != 0.0 {
                self.velocity.many(&live)?.into_iter().map(Some).collect()
            } else {
                live.iter().map(|_| None).collect()
            };
            let vars: Vec<&Var<B>> = live.iter().map(|(i, _)| &self.params[*i].1).collect();
            Var::update_all(&vars, |values| {
                let mut slots = Vec::with_capacity(values.len());
                for ((value, (_, grad)), v) in values.iter_mut().zip(&live).zip(velocity.iter_mut()) {
                    let velocity = match v {
                        Some(v) => Some(v.storage_mut()?),
                        None => None,
                    };
                    slots.push(SgdSlot { param: value.storage_mut()?, grad: grad.storage(), velocity });
                }
                backend.sgd_steps(&mut slots, &hp)
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

/// Adam with L2 weight decay added to the gradient, PyTorch's `torch.optim.Adam` (not AdamW, no
/// AMSGrad): at step t, `g = grad + weight_decay * p; m = beta1 * m + (1 - beta1) * g;
/// v = beta2 * v + (1 - beta2) * g^2; p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)`.
/// Its state tensors are named `exp_avg.<parameter>` (m) and `exp_avg_sq.<parameter>` (v).
///
/// One step count serves every parameter (PyTorch counts per parameter; the two agree as long
/// as every parameter has a gradient at every step).
pub struct Adam<B: Backend> {
    params: Vec<(String, Var<B>)>,
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moment averages, (beta1, beta2).
    pub betas: (f32, f32),
    /// Added to the denominator for numerical stability.
    pub eps: f32,
    /// L2 penalty: `weight_decay * p` is added to each gradient.
    pub weight_decay: f32,
    m: Slots<B>,
    v: Slots<B>,
    steps: u64,
}

impl<B: Backend> Adam<B> {
    /// Adam over `params` (e.g. a model's `parameters()`) with PyTorch's defaults for the rest:
    /// betas (0.9, 0.999) and eps 1e-8 (public fields, which may be changed).
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
        let live = with_grads(&self.params);
        let Some((_, first)) = live.first() else { return Ok(()) };
        let backend = first.backend().clone();
        let (mut ms, mut vs) = (self.m.many(&live)?, self.v.many(&live)?);
        let vars: Vec<&Var<B>> = live.iter().map(|(i, _)| &self.params[*i].1).collect();
        Var::update_all(&vars, |values| {
            let mut slots = Vec::with_capacity(values.len());
            for (((value, (_, grad)), m), v) in
                values.iter_mut().zip(&live).zip(ms.iter_mut()).zip(vs.iter_mut())
            {
                slots.push(AdamSlot {
                    param: value.storage_mut()?,
                    grad: grad.storage(),
                    m: m.storage_mut()?,
                    v: v.storage_mut()?,
                });
            }
            backend.adam_steps(&mut slots, &hp)
        })
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
