//! GoogLeNet and its Inception block: d2l's shapes at 96, PyTorch's names and count.
mod common;
extern crate convnet_models as models;
use autograd::Var;
use common::*;
use layers::{ops, Mode, Module, WeightInit};
use models::{summary, Inception, ModelKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::{Cpu, Tensor};

#[test]
fn shapes_after_each_block_match_d2l_at_96() {
    let s = summary(&xavier(ModelKind::GoogLeNet, 0), &Cpu, [1, 1, 96, 96]).unwrap();
    assert_eq!(top_level_shapes(&s), ["64x24x24", "192x12x12", "480x6x6", "832x3x3", "1024", "10"]);
    // Leaves 3 + 5 + 3 + 6 + 4 + 1, plus five block rows; an Inception is one row.
    assert_eq!(s.rows.len(), 22 + 5);
    assert_eq!(s.row("2.0").unwrap().output, vec![256, 12, 12]);
    assert_eq!(s.row("2.0").unwrap().layer, "Inception(192, 64, (96, 128), (16, 32), 32)");
    assert_eq!(s.row("3.4").unwrap().output, vec![832, 6, 6]);
}

#[test]
fn parameter_count_and_names_match_pytorch() {
    let model = xavier(ModelKind::GoogLeNet, 0);
    let params = model.parameters();
    assert_eq!(models::parameter_count(&params), 5_977_530);
    let shapes = param_shapes(&model);
    assert_eq!(shapes.len(), params.len(), "duplicate parameter names");
    // 3 plain convs, 9 Inceptions of 6 convs, 1 linear: weight and bias each.
    assert_eq!(params.len(), 2 * (3 + 9 * 6 + 1));
    let expect: &[(&str, &[usize])] = &[
        ("0.0.weight", &[64, 1, 7, 7]),
        ("1.0.weight", &[64, 64, 1, 1]),
        ("1.2.weight", &[192, 64, 3, 3]),
        ("2.0.p1_1.weight", &[64, 192, 1, 1]),
        ("2.0.p2_2.weight", &[128, 96, 3, 3]),
        ("2.0.p3_2.weight", &[32, 16, 5, 5]),
        ("2.1.p4_2.bias", &[64]),
        ("3.4.p3_2.weight", &[128, 32, 5, 5]),
        ("4.1.p4_2.weight", &[128, 832, 1, 1]),
        ("5.weight", &[10, 1024]),
        ("5.bias", &[10]),
    ];
    for (name, shape) in expect {
        assert_eq!(shapes.get(*name).map(Vec::as_slice), Some(*shape), "{name}");
    }
    assert_eq!(params.last().unwrap().0, "5.bias");
}

#[test]
fn any_input_of_at_least_one_pixel_fits() {
    let model = xavier(ModelKind::GoogLeNet, 0);
    assert_eq!(ModelKind::GoogLeNet.min_resize(), 1);
    for size in [1, 2, 5, 48] {
        assert_eq!(summary(&model, &Cpu, [1, 1, size, size]).unwrap().output, vec![10], "{size}");
    }
    let err = summary(&model, &Cpu, [1, 1, 0, 0]).unwrap_err().to_string();
    assert!(err.contains("layer 0.0 Conv2d"), "{err}");
    assert!(ModelKind::GoogLeNet.check_resize(0).is_err());
}

#[test]
fn inception_names_channels_and_branch_order() {
    let mut rng = StdRng::seed_from_u64(3);
    let block = Inception::new(&Cpu, 6, 2, (3, 4), (2, 3), 5, WeightInit::XavierUniform, &mut rng).unwrap();
    assert_eq!(block.out_channels(), 2 + 4 + 3 + 5);
    let names: Vec<String> = block.parameters().into_iter().map(|(n, _)| n).collect();
    let want = ["p1_1", "p2_1", "p2_2", "p3_1", "p3_2", "p4_2"]
        .iter()
        .flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")]);
    assert_eq!(names, want.collect::<Vec<_>>());

    let data: Vec<f32> = (0..2 * 6 * 5 * 7).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let x = Var::constant(Tensor::from_slice(&Cpu, [2, 6, 5, 7], &data).unwrap());
    let y = block.forward(&x, &mut Mode::eval()).unwrap();
    assert_eq!(y.shape().dims(), [2, 14, 5, 7]);
    // Channels 0..2 are ReLU(p1_1(x)); the last 5 are ReLU(p4_2(maxpool(x))).
    let p1 =
        ops::relu(&block.p1_1.forward(&x, &mut Mode::eval()).unwrap()).unwrap().value().to_vec().unwrap();
    let pooled = block.p4_1.forward(&x, &mut Mode::eval()).unwrap();
    let p4 = ops::relu(&block.p4_2.forward(&pooled, &mut Mode::eval()).unwrap())
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let y = y.value().to_vec().unwrap();
    let plane = 5 * 7;
    for n in 0..2 {
        assert_eq!(y[n * 14 * plane..][..2 * plane], p1[n * 2 * plane..][..2 * plane]);
        assert_eq!(y[(n * 14 + 9) * plane..][..5 * plane], p4[n * 5 * plane..][..5 * plane]);
    }
}
