//! d2l's initialization: Xavier-uniform weights, PyTorch-default biases, reproducible by seed.
mod common;
extern crate convnet_models as models;
use common::*;
use layers::{init::fans, Module};
use models::ModelKind;
use std::collections::HashMap;

#[test]
fn xavier_bounds_hold_and_are_used() {
    for kind in ModelKind::ALL {
        let model = xavier(kind, 1);
        let params: HashMap<String, Vec<f32>> =
            model.parameters().into_iter().map(|(n, v)| (n, v.value().to_vec().unwrap())).collect();
        for (name, var) in model.parameters() {
            let Some(layer) = name.strip_suffix(".weight") else { continue };
            let shape = var.shape().dims().to_vec();
            let (fan_in, fan_out) = fans(&shape);
            let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
            let w = &params[&name];
            let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max <= bound, "{kind} {name}: |w| {max} > {bound}");
            assert!(max > 0.9 * bound, "{kind} {name}: max |w| {max} far below the bound {bound}");
            // The spread of U(-b, b): standard deviation b / sqrt(3).
            let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
            assert!((std / (bound / 3f32.sqrt()) - 1.0).abs() < 0.2, "{kind} {name}: std {std}");
            let bias_bound = 1.0 / (fan_in as f32).sqrt();
            assert!(
                params[&format!("{layer}.bias")].iter().all(|b| b.abs() <= bias_bound),
                "{kind} {layer}.bias"
            );
        }
    }
}

#[test]
fn the_seed_decides_every_weight() {
    for kind in ModelKind::ALL {
        let values = |seed| -> Vec<(String, Vec<f32>)> {
            xavier(kind, seed)
                .parameters()
                .into_iter()
                .map(|(n, v)| (n, v.value().to_vec().unwrap()))
                .collect()
        };
        let (a, b, c) = (values(42), values(42), values(43));
        assert_eq!(a, b, "{kind}: same seed, different weights");
        for ((name, x), (_, y)) in a.iter().zip(&c) {
            assert_ne!(x, y, "{kind} {name}: a different seed gave the same values");
        }
    }
}
