//! A layer-by-layer table of a model, like Keras's `model.summary()` or torchinfo: one forward
//! pass on zeros records every layer's output shape and parameter count.
use crate::parameter_count;
use autograd::{NoGradGuard, Var};
use layers::{Mode, Module};
use std::fmt;
use tensor::{Backend, Error, Result, Tensor};

/// One layer (a leaf module) or one container (a module with `children()`, listed before them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The `state_dict` prefix, e.g. `0.0` (its parameters are `0.0.weight`, `0.0.bias`).
    pub name: String,
    /// 0 for the model's own children, +1 per container level.
    pub depth: usize,
    /// The module's `describe()`.
    pub layer: String,
    /// Output shape without the batch dimension, e.g. [96, 54, 54].
    pub output: Vec<usize>,
    /// Parameters of this module, its descendants' included.
    pub params: usize,
    /// Whether the module has children (then its rows follow this one, one level deeper).
    pub is_container: bool,
}

/// What [`summary`] found: one [`Row`] per module in forward order, and the totals. Its
/// `Display` prints the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The input shape as given (NCHW); the forward ran at batch 1.
    pub input: [usize; 4],
    /// Every module, depth first: a container, then its children.
    pub rows: Vec<Row>,
    /// The model's output shape without the batch dimension.
    pub output: Vec<usize>,
    /// The number of scalars in the model's parameters ([`parameter_count`]).
    pub total_params: usize,
}

impl Summary {
    /// The row of the module with `state_dict` prefix `name` (e.g. `2.0`), if any.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
    /// The rows of the model's own children: the shapes d2l prints after each block.
    pub fn top_level(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.depth == 0)
    }
    /// Values the rows' outputs hold for one sample: leaf rows only (a container's output is its
    /// last child's), and a leaf's internals (an Inception's branches) are not seen.
    pub fn layer_outputs_per_sample(&self) -> usize {
        self.rows.iter().filter(|r| !r.is_container).map(|r| r.output.iter().product::<usize>()).sum()
    }
}

/// Runs `model` once in eval mode without recording gradients on a batch-1 tensor of zeros of
/// `input`'s C x H x W, and tabulates it. An input too small for some layer is an `Err` that
/// names the layer.
pub fn summary<B: Backend>(model: &dyn Module<B>, backend: &B, input: [usize; 4]) -> Result<Summary> {
    let _no_grad = NoGradGuard::new();
    let mut mode = Mode::eval();
    let [_, c, h, w] = input;
    let x = Var::constant(Tensor::zeros(backend, [1, c, h, w])?);
    let mut rows = Vec::new();
    let children = model.children();
    let y = if children.is_empty() {
        walk(model, String::new(), 0, x, &mut mode, &mut rows)?
    } else {
        let mut h = x;
        for (name, child) in children {
            h = walk(child, name, 0, h, &mut mode, &mut rows)?;
        }
        h
    };
    let output = y.shape().dims()[1..].to_vec();
    Ok(Summary { input, rows, output, total_params: parameter_count(&model.parameters()) })
}

/// Records `module`'s row, then runs it: a leaf directly, a container child by child (children
/// are taken to run in sequence, which is `Sequential`'s contract).
fn walk<B: Backend>(
    module: &dyn Module<B>,
    name: String,
    depth: usize,
    x: Var<B>,
    mode: &mut Mode,
    rows: &mut Vec<Row>,
) -> Result<Var<B>> {
    let children = module.children();
    let at = rows.len();
    let layer = module.describe();
    let params = parameter_count(&module.parameters());
    rows.push(Row {
        name: name.clone(),
        depth,
        layer: layer.clone(),
        output: Vec::new(),
        params,
        is_container: !children.is_empty(),
    });
    let y = if children.is_empty() {
        module.forward(&x, mode).map_err(|e| in_layer(e, &name, &layer))?
    } else {
        let mut h = x;
        for (child_name, child) in children {
            let full = if name.is_empty() { child_name } else { format!("{name}.{child_name}") };
            h = walk(child, full, depth + 1, h, mode, rows)?;
        }
        h
    };
    rows[at].output = y.shape().dims()[1..].to_vec();
    Ok(y)
}

/// Prefixes an error's message with the layer that raised it.
fn in_layer(e: Error, name: &str, layer: &str) -> Error {
    let at = |m: String| format!("layer {name} {layer}: {m}");
    match e {
        Error::Shape(m) => Error::Shape(at(m)),
        Error::InvalidArgument(m) => Error::InvalidArgument(at(m)),
        Error::Device(m) => Error::Device(at(m)),
        Error::Graph(m) => Error::Graph(at(m)),
        oom @ Error::OutOfMemory { .. } => oom,
    }
}

fn dims(d: &[usize]) -> String {
    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x")
}

/// 1992166 -> "1,992,166".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn mib(values: usize) -> f64 {
    (values * std::mem::size_of::<f32>()) as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["Layer", "Type", "Output shape", "Params"];
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                let name = if r.name.is_empty() { "(model)" } else { &r.name };
                [
                    format!("{}{name}", "  ".repeat(r.depth)),
                    r.layer.clone(),
                    dims(&r.output),
                    thousands(r.params),
                ]
            })
            .collect();
        let mut width = header.map(str::len);
        for row in &cells {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let total: usize = width.iter().sum::<usize>() + 3 * 2;
        let line = |f: &mut fmt::Formatter<'_>, cols: [&str; 4]| {
            writeln!(
                f,
                "{:<a$}  {:<b$}  {:<c$}  {:>d$}",
                cols[0],
                cols[1],
                cols[2],
                cols[3],
                a = width[0],
                b = width[1],
                c = width[2],
                d = width[3]
            )
        };
        writeln!(f, "{}", "=".repeat(total))?;
        line(f, header)?;
        writeln!(f, "{}", "=".repeat(total))?;
        for row in &cells {
            line(f, [&row[0], &row[1], &row[2], &row[3]])?;
        }
        writeln!(f, "{}", "=".repeat(total))?;
        writeln!(f, "Input: {} (shapes exclude the batch dimension)", dims(&self.input[1..]))?;
        writeln!(f, "Output: {}", dims(&self.output))?;
        writeln!(f, "Total params: {} ({:.2} MiB)", thousands(self.total_params), mib(self.total_params))?;
        let outputs = self.layer_outputs_per_sample();
        writeln!(f, "Layer outputs per sample: {} values ({:.2} MiB)", thousands(outputs), mib(outputs))?;
        write!(f, "{}", "=".repeat(total))
    }
}
