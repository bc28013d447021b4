//! One training step's backward reaches every parameter of both networks with a usable gradient.
mod common;
extern crate convnet_models as models;
use autograd::Var;
use common::*;
use layers::{ops, Mode, Module};
use models::ModelKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::{Cpu, Tensor};

fn check_every_parameter_gets_a_gradient(kind: ModelKind, size: usize) {
    let model = xavier(kind, 5);
    let mut rng = StdRng::seed_from_u64(9);
    let batch = 2;
    let data: Vec<f32> = (0..batch * size * size).map(|_| rng.gen_range(0.0..1.0)).collect();
    let x = Var::constant(Tensor::from_slice(&Cpu, [batch, 1, size, size], &data).unwrap());
    // Train mode, so NiN's dropout is on the path too.
    let logits = model.forward(&x, &mut Mode::train(1, 0)).unwrap();
    assert_eq!(logits.shape().dims(), [batch, 10]);
    let (loss, _) = ops::cross_entropy(&logits, &[3, 7]).unwrap();
    assert!(loss.value().item().unwrap().is_finite());
    loss.backward().unwrap();
    for (name, p) in model.parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{kind} {name}: no gradient")).to_vec().unwrap();
        assert_eq!(g.len(), p.shape().numel());
        assert!(g.iter().all(|v| v.is_finite()), "{kind} {name}: non-finite gradient");
        assert!(g.iter().any(|&v| v != 0.0), "{kind} {name}: all-zero gradient");
    }
}

#[test]
fn googlenet_at_48() {
    // 48 -> 24 -> 12 -> 6 -> 3 -> 2 -> global pool.
    check_every_parameter_gets_a_gradient(ModelKind::GoogLeNet, 48);
}

#[test]
fn nin_at_96() {
    // 96 -> 22 -> 10 -> 4 -> 1 before the classifier block.
    check_every_parameter_gets_a_gradient(ModelKind::Nin, 96);
}
