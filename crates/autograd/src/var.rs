use crate::is_grad_enabled;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tensor::{bail, Backend, Result, Shape, Tensor};

/// Maps the gradient of an op's output to the gradients of its parents. `needs[i]` says whether
/// parent `i` wants one (so, e.g., a first convolution skips its input gradient); return `None`
/// where it does not.
pub type BackwardFn<B> = Box<dyn FnOnce(&Tensor<B>, &[bool]) -> Result<Vec<Option<Tensor<B>>>> + Send>;

/// `BackwardFn` for an op with several outputs: the gradient of each (`None` where nothing
/// downstream used it) to the gradients of its parents.
pub type MultiBackwardFn<B> =
    Box<dyn FnOnce(&[Option<Tensor<B>>], &[bool]) -> Result<Vec<Option<Tensor<B>>>> + Send>;

/// How a node's gradient goes back to its parents.
enum Step<B: Backend> {
    /// Taken when backward runs, which frees the tensors it saved.
    Op(Mutex<Option<BackwardFn<B>>>),
    /// The hidden node behind a several-output op: runs once every output's gradient is in.
    Group { outputs: usize, backward: Mutex<Option<MultiBackwardFn<B>>> },
    /// Output `i` of a group (its only parent): hands its gradient over unchanged.
    Output(usize),
}

struct Origin<B: Backend> {
    op: &'static str,
    parents: Vec<Var<B>>,
    step: Step<B>,
}

/// Locks rather than cells, so that a graph, its parameters and the models holding them can move
/// to, and be shared with, other threads; uncontended, each costs a few nanoseconds an access,
/// against the microseconds of the kernel behind it.
struct Node<B: Backend> {
    value: RwLock<Tensor<B>>,
    /// Accumulated gradient of a leaf that requires one (a parameter).
    grad: Mutex<Option<Tensor<B>>>,
    requires_grad: bool,
    origin: Option<Origin<B>>,
}

/// A node of the graph; cloning shares it. `Send` and `Sync`: a model can be built on one thread
/// and trained or served on another.
pub struct Var<B: Backend>(Arc<Node<B>>);

impl<B: Backend> Clone for Var<B> {
    fn clone(&self) -> Self {
        Var(self.0.clone())
    }
}

impl<B: Backend> Var<B> {
    fn leaf(value: Tensor<B>, requires_grad: bool) -> Self {
        Var(Arc::new(Node { value: RwLock::new(value), grad: Mutex::new(None), requires_grad, origin: None }))
    }
    /// A trainable leaf: backward accumulates into its `grad()`.
    pub fn parameter(value: Tensor<B>) -> Self {
        Self::leaf(value, true)
    }
    /// A value no gradient flows to (inputs, labels).
    pub fn constant(value: Tensor<B>) -> Self {
        Self::leaf(value, false)
    }

    /// The result of an op. Records `backward` only when gradients are enabled and some parent
    /// requires one; otherwise the value is a constant and nothing is kept alive.
    pub fn from_op(op: &'static str, value: Tensor<B>, parents: &[&Var<B>], backward: BackwardFn<B>) -> Self {
        if !is_grad_enabled() || !parents.iter().any(|p| p.requires_grad()) {
            return Self::constant(value);
        }
        let origin = Origin {
            op,
            parents: parents.iter().map(|&p| p.clone()).collect(),
            step: Step::Op(Mutex::new(Some(backward))),
        };
        Self::with_origin(value, origin)
    }

    /// The results of an op with several outputs (e.g. products sharing one input), whose
    /// backward runs once with all their gradients. Outputs hang off one hidden node that holds
    /// the parents, so the graph still has one backward per op.
    pub fn from_op_multi(
        op: &'static str,
        values: Vec<Tensor<B>>,
        parents: &[&Var<B>],
        backward: MultiBackwardFn<B>,
    ) -> Result<Vec<Self>> {
        if !is_grad_enabled() || !parents.iter().any(|p| p.requires_grad()) {
            return Ok(values.into_iter().map(Self::constant).collect());
        }
        let Some(first) = values.first() else { bail!(Graph, "`{op}` made no outputs") };
        let step = Step::Group { outputs: values.len(), backward: Mutex::new(Some(backward)) };
        // The group's own value is never read: an empty tensor stands in.
        let group = Self::with_origin(
            Tensor::uninit(first.backend(), [0])?,
            Origin { op, parents: parents.iter().map(|&p| p.clone()).collect(), step },
        );
        Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Self::with_origin(v, Origin { op, parents: vec![group.clone()], step: Step::Output(i) })
            })
            .collect())
    }

    fn with_origin(value: Tensor<B>, origin: Origin<B>) -> Self {
        Var(Arc::new(Node {
            value: RwLock::new(value),
            grad: Mutex::new(None),
            requires_grad: true,
            origin: Some(origin),
        }))
    }

    /// Whether gradients flow to this value: true for parameters and recorded op results, false
    /// for constants (including op results made while recording was off or from constants only).
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    /// Whether no recorded op made this value: true for parameters and constants (an op result
    /// that was not recorded is a constant), false for recorded op results.
    pub fn is_leaf(&self) -> bool {
        self.0.origin.is_none()
    }
    /// The op that made this value, if any.
    pub fn op(&self) -> Option<&'static str> {
        self.0.origin.as_ref().map(|o| o.op)
    }
    /// The value (cheap: the storage is shared).
    pub fn value(&self) -> Tensor<B> {
        self.read().clone()
    }
    /// Borrows the value without cloning it.
    pub fn value_ref(&self) -> RwLockReadGuard<'_, Tensor<B>> {
        self.read()
    }
    /// The value's shape.
    pub fn shape(&self) -> Shape {
        self.read().shape().clone()
    }
    /// A poisoned lock (a panic while another thread held it) still holds a whole tensor: the
    /// value is replaced, never modified in place.
    fn read(&self) -> RwLockReadGuard<'_, Tensor<B>> {
        self.0.value.read().unwrap_or_else(|e| e.into_inner())
    }
    /// The backend the value lives on.
    pub fn backend(&self) -> B {
        self.read().backend().clone()
    }
    /// Replaces a leaf's value (loading a checkpoint); the shape must stay the same.
    pub fn set_value(&self, value: Tensor<B>) -> Result<()> {
        let mut current = self.0.value.write().unwrap_or_else(|e| e.into_inner());
        if current.shape() != value.shape() {
            bail!(
                Shape,
                "cannot set a value of shape {} into a variable of shape {}",
                value.shape(),
                current.shape()
            );
        }
        *current = value;
        Ok(())
    }
    /// Runs `f` on the value in place (optimizer updates). Copies first if the storage is shared.
    pub fn update<T>(&self, f: impl FnOnce(&mut Tensor<B>) -> Result<T>) -> Result<T> {
        f(&mut self.0.value.write().unwrap_or_else(|e| e.into_inner()))
    }
    /// Runs `f` on the values of all of `vars` at once, in place (an optimizer's multi-tensor
    /// step); `f` gets them in the order given. The variables must be distinct (one given twice
    /// is an error, not a deadlock); their locks are taken in a fixed order, so two such calls
    /// on overlapping sets cannot deadlock either.
    pub fn update_all<T>(vars: &[&Var<B>], f: impl FnOnce(&mut [&mut Tensor<B>]) -> Result<T>) -> Result<T> {
        let mut order: Vec<usize> = (0..vars.len()).collect();
        order.sort_by_key(|&i| vars[i].key());
        if order.windows(2).any(|w| vars[w[0]].key() == vars[w[1]].key()) {
            bail!(InvalidArgument, "update_all: a variable is given twice");
        }
        let mut guards: Vec<Option<_>> = (0..vars.len()).map(|_| None).collect();
        for i in order {
            guards[i] = Some(vars[i].0.value.write().unwrap_or_else(|e| e.into_inner()));
        }
        let mut values: Vec<&mut Tensor<B>> =
            guards.iter_mut().map(|g| &mut **g.as_mut().expect("locked above")).collect();
        f(&mut values)
    }
    /// The accumulated gradient of a parameter.
    pub fn grad(&self) -> Option<Tensor<B>> {
        self.0.grad.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Drops the accumulated gradient: `grad()` is `None` until the next backward pass reaches
    /// this value.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn key(&self) -> *const Node<B> {
        Arc::as_ptr(&self.0)
    }

    /// Back-propagates from this one-value output (a loss) with seed gradient 1.
    pub fn backward(&self) -> Result<()> {
        let value = self.value();
        if value.numel() != 1 {
            bail!(Graph, "backward() needs a single-value output (a loss), got shape {}", value.shape());
        }
        let seed = Tensor::full(value.backend(), value.shape().clone(), 1.0)?;
        self.backward_with(seed)
    }

    /// Back-propagates `grad` (of this value's shape) through the graph.
    pub fn backward_with(&self, grad: Tensor<B>) -> Result<()> {
        if grad.shape() != self.value_ref().shape() {
            bail!(
                Shape,
                "backward_with: gradient of shape {} for a value of shape {}",
                grad.shape(),
                self.shape()
            );
        }
        if !self.requires_grad() {
            bail!(Graph, "backward(): this value does not depend on any parameter");
        }
        let order = self.topological_order();
        let mut pending: HashMap<*const Node<B>, Tensor<B>> = HashMap::new();
        // Gradients of a group's outputs, gathered until the group's turn.
        let mut gathered: HashMap<*const Node<B>, Vec<Option<Tensor<B>>>> = HashMap::new();
        pending.insert(self.key(), grad);
        for var in order.iter().rev() {
            let Some(origin) = &var.0.origin else {
                if let Some(g) = pending.remove(&var.key()) {
                    accumulate_into(&mut var.0.grad.lock().unwrap_or_else(|e| e.into_inner()), g)?;
                }
                continue;
            };
            let needs: Vec<bool> = origin.parents.iter().map(|p| p.requires_grad()).collect();
            let grads = match &origin.step {
                Step::Op(backward) => {
                    let Some(g) = pending.remove(&var.key()) else { continue };
                    take_once(backward, origin.op)?(&g, &needs)?
                }
                Step::Output(i) => {
                    // Held for the group, which comes after all of its outputs in this order.
                    let group = &origin.parents[0];
                    if let (Some(g), Some(Origin { step: Step::Group { outputs, .. }, .. })) =
                        (pending.remove(&var.key()), &group.0.origin)
                    {
                        gathered.entry(group.key()).or_insert_with(|| vec![None; *outputs])[*i] = Some(g);
                    }
                    continue;
                }
                Step::Group { backward, .. } => {
                    let Some(gs) = gathered.remove(&var.key()) else { continue };
                    take_once(backward, origin.op)?(&gs, &needs)?
                }
            };
            if grads.len() != origin.parents.len() {
                bail!(
                    Graph,
                    "`{}` returned {} gradients for {} inputs",
                    origin.op,
                    grads.len(),
                    origin.parents.len()
                );
            }
            for ((parent, grad), need) in origin.parents.iter().zip(grads).zip(needs) {
                let (Some(grad), true) = (grad, need) else { continue };
                if grad.shape() != parent.value_ref().shape() {
                    bail!(
                        Graph,
                        "`{}` gave a gradient of shape {} for an input of shape {}",
                        origin.op,
                        grad.shape(),
                        parent.shape()
                    );
                }
                match pending.entry(parent.key()) {
                    Entry::Occupied(mut e) => e.get_mut().axpy_assign(1.0, &grad)?,
                    Entry::Vacant(e) => {
                        e.insert(grad);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node that requires a gradient, parents before children (iterative DFS).
    fn topological_order(&self) -> Vec<Var<B>> {
        let mut order = Vec::new();
        let mut visited = std::collections::HashSet::new();
        let mut stack: Vec<(Var<B>, bool)> = vec![(self.clone(), false)];
        while let Some((var, expanded)) = stack.pop() {
            if expanded {
                order.push(var);
                continue;
            }
            if !visited.insert(var.key()) {
                continue;
            }
            stack.push((var.clone(), true));
            if let Some(origin) = &var.0.origin {
                for p in &origin.parents {
                    if p.requires_grad() && !visited.contains(&p.key()) {
                        stack.push((p.clone(), false));
                    }
                }
            }
        }
        order
    }
}

/// An op's backward, which runs at most once (it frees what the forward pass saved).
fn take_once<F>(slot: &Mutex<Option<F>>, op: &str) -> Result<F> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| {
        tensor::Error::Graph(format!(
            "the graph through `{op}` was already used by a backward pass; run the forward pass again"
        ))
    })
}

/// `slot += grad` (or `slot = grad` when empty): fan-out sums its gradients here.
fn accumulate_into<B: Backend>(slot: &mut Option<Tensor<B>>, grad: Tensor<B>) -> Result<()> {
    match slot {
        None => *slot = Some(grad),
        Some(acc) => acc.axpy_assign(1.0, &grad)?,
    }
    Ok(())
}

impl<B: Backend> std::fmt::Debug for Var<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var({}, op: {:?}, requires_grad: {})", self.shape(), self.op(), self.requires_grad())
    }
}
