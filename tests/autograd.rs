//! The graph itself: inference mode, accumulation, and misuse reported as errors.
mod common;
use autograd::{no_grad, Var};
use common::*;
use layers::ops;
use tensor::{Backend, Error};

fn inference_mode_records_nothing<B: Backend>(b: &B) {
    let w = param(b, &[2, 3], &[0.5; 6]);
    let y = no_grad(|| ops::relu(&w).unwrap());
    assert!(y.is_leaf() && !y.requires_grad(), "no_grad output must be a plain constant");
    assert!(matches!(y.backward(), Err(Error::Shape(_)) | Err(Error::Graph(_))));
    let y = ops::relu(&w).unwrap();
    assert_eq!(y.op(), Some("relu"));
    // Nothing requires a gradient: nothing is recorded either.
    let c = Var::constant(tensor(b, &[2, 3], &[0.5; 6]));
    assert!(ops::relu(&c).unwrap().is_leaf());
}

fn gradients_accumulate_until_zeroed<B: Backend>(b: &B) {
    let w = param(b, &[1, 4], &[1.0, -2.0, 3.0, 0.5]);
    let run = || {
        let y = ops::flatten(&w).unwrap();
        y.backward_with(tensor(b, &[1, 4], &[1.0, 2.0, 3.0, 4.0])).unwrap();
    };
    run();
    run();
    assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
}

fn misuse_is_an_error<B: Backend>(b: &B) {
    let w = param(b, &[2, 10], &[0.1; 20]);
    let (loss, _) = ops::cross_entropy(&w, &[1, 2]).unwrap();
    loss.backward().unwrap();
    let again = loss.backward();
    assert!(matches!(&again, Err(Error::Graph(m)) if m.contains("already")), "{again:?}");
    let y = ops::relu(&w).unwrap();
    assert!(matches!(y.backward(), Err(Error::Graph(m)) if m.contains("[2, 10]")));
    assert!(y.backward_with(tensor(b, &[3], &[0.0; 3])).is_err());
}

backend_tests!(inference_mode_records_nothing, gradients_accumulate_until_zeroed, misuse_is_an_error);
