//! Weight initializers: PyTorch's defaults for conv and linear layers, and Xavier-uniform.
use rand::Rng;

/// How a layer's weights are drawn. Biases do not follow it: they always take PyTorch's default
/// ([`bias`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightInit {
    /// PyTorch's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    PyTorchDefault,
    /// Glorot & Bengio: U(-b, b) with b = sqrt(6 / (fan_in + fan_out)) (what d2l's `init_cnn` uses).
    XavierUniform,
}

/// Fan-in and fan-out of a weight of shape [out, in, k...] (PyTorch's rule).
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
    let fan_out = shape.first().copied().unwrap_or(1) * receptive;
    (fan_in, fan_out)
}

/// `len` values drawn independently and uniformly from [-bound, bound].
pub fn uniform(rng: &mut impl Rng, len: usize, bound: f32) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-bound..=bound)).collect()
}

/// Values for a weight of `shape` ([out, in, k...], row-major), drawn from `rng` with the bound
/// that `init` gives for the weight's fans.
pub fn weight(init: WeightInit, shape: &[usize], rng: &mut impl Rng) -> Vec<f32> {
    let (fan_in, fan_out) = fans(shape);
    let bound = match init {
        // gain = sqrt(2 / (1 + a^2)) = sqrt(1/3); bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
        WeightInit::PyTorchDefault => 1.0 / (fan_in as f32).sqrt(),
        WeightInit::XavierUniform => (6.0 / (fan_in + fan_out) as f32).sqrt(),
    };
    uniform(rng, shape.iter().product(), bound)
}

/// PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn bias(fan_in: usize, len: usize, rng: &mut impl Rng) -> Vec<f32> {
    uniform(rng, len, 1.0 / (fan_in as f32).sqrt())
}
