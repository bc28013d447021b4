//! The printed summary and `ModelKind`'s names.
mod common;
extern crate convnet_models as models;
use common::*;
use models::{summary, ModelKind};
use std::time::Instant;
use tensor::Cpu;

#[test]
fn tables_print_and_carry_totals() {
    for (kind, expected_params) in [(ModelKind::Nin, "1,992,166"), (ModelKind::GoogLeNet, "5,977,530")] {
        let size = kind.default_resize();
        let model = xavier(kind, 0);
        let start = Instant::now();
        let s = summary(&model, &Cpu, [1, 1, size, size]).unwrap();
        let took = start.elapsed();
        let text = s.to_string();
        println!("{kind} summary at {size} took {took:?}\n{text}");
        // Well under a few seconds in release even on a busy machine.
        assert!(took.as_secs_f64() < 10.0, "{kind} summary took {took:?}");
        assert!(text.contains("Layer") && text.contains("Output shape") && text.contains("Params"));
        assert!(text.contains(&format!("Total params: {expected_params}")), "{text}");
        assert!(text.contains(&format!("Input: 1x{size}x{size}")));
        // Every row is a line of the table, columns aligned: the shape column starts at one offset.
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("Layer")).unwrap();
        let col = lines[header].find("Output shape").unwrap();
        for (row, line) in s.rows.iter().zip(&lines[header + 2..]) {
            assert!(line.trim_start().starts_with(&row.name), "{line}");
            assert!(
                line[col..]
                    .starts_with(&row.output.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")),
                "{line}"
            );
        }
        // Block rows count their children's parameters; leaf rows add up to the total.
        let leaves: usize = s.rows.iter().filter(|r| !r.is_container).map(|r| r.params).sum();
        let blocks: usize = s.top_level().map(|r| r.params).sum();
        assert_eq!(leaves, s.total_params);
        assert_eq!(blocks, s.total_params);
    }
}

#[test]
fn a_leaf_module_summarizes_as_one_row() {
    let s = summary(&layers::Relu, &Cpu, [4, 3, 5, 5]).unwrap();
    assert_eq!(s.rows.len(), 1);
    assert_eq!(s.output, vec![3, 5, 5]);
    assert!(s.to_string().contains("(model)"));
}

#[test]
fn model_kinds_parse_and_name_themselves() {
    for kind in ModelKind::ALL {
        assert_eq!(kind.name().parse::<ModelKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
    }
    assert_eq!("GoogLeNet".parse::<ModelKind>().unwrap(), ModelKind::GoogLeNet);
    assert_eq!(" NiN ".parse::<ModelKind>().unwrap(), ModelKind::Nin);
    assert!("alexnet".parse::<ModelKind>().unwrap_err().to_string().contains("nin, googlenet"));
    assert_eq!((ModelKind::Nin.default_resize(), ModelKind::GoogLeNet.default_resize()), (224, 96));
}
