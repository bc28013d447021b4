//! Helpers shared by the model tests.
#![allow(dead_code)]
use layers::{Module, Sequential, WeightInit};
use models::{build, ModelKind};
use std::collections::HashMap;
use tensor::Cpu;

/// A model with d2l's initialization.
pub fn xavier(kind: ModelKind, seed: u64) -> Sequential<Cpu> {
    build(kind, &Cpu, WeightInit::XavierUniform, seed).unwrap()
}

/// Parameter name -> shape.
pub fn param_shapes(model: &dyn Module<Cpu>) -> HashMap<String, Vec<usize>> {
    model.parameters().into_iter().map(|(n, v)| (n, v.shape().dims().to_vec())).collect()
}

/// Output shapes of the model's top-level children, as "CxHxW" strings.
pub fn top_level_shapes(s: &models::Summary) -> Vec<String> {
    s.top_level().map(|r| r.output.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")).collect()
}
