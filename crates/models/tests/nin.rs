//! NiN: d2l's shapes at 224, PyTorch's parameter names and count, the smallest input it takes.
mod common;
extern crate convnet_models as models;
use common::*;
use models::{summary, ModelKind};
use tensor::{Cpu, Error};

#[test]
fn shapes_after_each_block_match_d2l_at_224() {
    let s = summary(&xavier(ModelKind::Nin, 0), &Cpu, [1, 1, 224, 224]).unwrap();
    let want = [
        "96x54x54",
        "96x26x26",
        "256x26x26",
        "256x12x12",
        "384x12x12",
        "384x5x5",
        "384x5x5",
        "10x5x5",
        "10x1x1",
        "10",
    ];
    assert_eq!(top_level_shapes(&s), want);
    assert_eq!(s.output, vec![10]);
    // 4 blocks of 6 layers, 6 single layers, and a row per block.
    assert_eq!(s.rows.len(), 4 * 6 + 6 + 4);
    assert_eq!(s.row("0.0").unwrap().output, vec![96, 54, 54]);
    assert_eq!(s.row("0.0").unwrap().layer, "Conv2d(1, 96, kernel=11x11, stride=4, padding=0)");
}

#[test]
fn parameter_count_and_names_match_pytorch() {
    let model = xavier(ModelKind::Nin, 0);
    let params = layers::Module::parameters(&model);
    assert_eq!(models::parameter_count(&params), 1_992_166);
    let shapes = param_shapes(&model);
    assert_eq!(shapes.len(), params.len(), "duplicate parameter names");
    assert_eq!(params.len(), 4 * 3 * 2);
    let expect: &[(&str, &[usize])] = &[
        ("0.0.weight", &[96, 1, 11, 11]),
        ("0.0.bias", &[96]),
        ("0.2.weight", &[96, 96, 1, 1]),
        ("0.4.weight", &[96, 96, 1, 1]),
        ("2.0.weight", &[256, 96, 5, 5]),
        ("4.0.weight", &[384, 256, 3, 3]),
        ("4.4.bias", &[384]),
        ("7.0.weight", &[10, 384, 3, 3]),
        ("7.4.weight", &[10, 10, 1, 1]),
        ("7.4.bias", &[10]),
    ];
    for (name, shape) in expect {
        assert_eq!(shapes.get(*name).map(Vec::as_slice), Some(*shape), "{name}");
    }
    // state_dict order: block by block, weight before bias.
    assert_eq!(params[0].0, "0.0.weight");
    assert_eq!(params[23].0, "7.4.bias");
}

#[test]
fn smallest_valid_input_is_67() {
    let model = xavier(ModelKind::Nin, 0);
    let min = ModelKind::Nin.min_resize();
    assert_eq!(min, 67);
    let s = summary(&model, &Cpu, [1, 1, min, min]).unwrap();
    assert_eq!(top_level_shapes(&s)[5], "384x1x1");
    assert_eq!(s.output, vec![10]);
    // 96 works too (22 -> 10 -> 4 -> 1); 64 does not (14 -> 6 -> 2, then the 3x3 pool).
    assert!(summary(&model, &Cpu, [1, 1, 96, 96]).is_ok());
    for size in [min - 1, 64, 10, 5] {
        let err = summary(&model, &Cpu, [1, 1, size, size])
            .err()
            .unwrap_or_else(|| panic!("{size} should not fit"));
        assert!(matches!(err, Error::Shape(_)), "{err}");
        assert!(err.to_string().contains("layer "), "the error names the layer: {err}");
        assert!(ModelKind::Nin.check_resize(size).is_err());
    }
    let err = summary(&model, &Cpu, [1, 1, 66, 66]).unwrap_err().to_string();
    assert!(err.contains("layer 5 MaxPool2d"), "{err}");
    assert!(ModelKind::Nin.check_resize(min).is_ok());
}
