//! The graph itself: inference mode, accumulation, and misuse reported as errors.
mod common;
use autograd::{no_grad, Var};
use common::*;
use layers::{ops, Module};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tensor::{Backend, Error, Tensor};

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

/// An op with several outputs (`Var::from_op_multi`): its backward runs once, after every
/// consumer of every output, with each output's summed gradient, and `None` for an output no
/// consumer used.
fn several_outputs_share_one_backward<B: Backend>(b: &B) {
    // Splits x [1, 2, 1, 2] into its two channels.
    let split = |x: &Var<B>, calls: Arc<AtomicUsize>, seen: Arc<Mutex<Vec<bool>>>| -> Vec<Var<B>> {
        let v = x.value().to_vec().unwrap();
        let outs = vec![tensor(b, &[1, 1, 1, 2], &v[..2]), tensor(b, &[1, 1, 1, 2], &v[2..])];
        let b = b.clone();
        Var::from_op_multi(
            "split",
            outs,
            &[x],
            Box::new(move |dys, _| {
                calls.fetch_add(1, Ordering::SeqCst);
                *seen.lock().unwrap() = dys.iter().map(Option::is_some).collect();
                let mut dx = Vec::new();
                for dy in dys {
                    dx.extend(dy.as_ref().map_or(Ok(vec![0.0; 2]), |d| d.to_vec())?);
                }
                Ok(vec![Some(Tensor::from_slice(&b, [1, 2, 1, 2], &dx)?)])
            }),
        )
        .unwrap()
    };
    let (calls, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let x = param(b, &[1, 2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
    let ys = split(&x, calls.clone(), seen.clone());
    assert_eq!(ys[1].value().to_vec().unwrap(), vec![3.0, 4.0]);
    // Output 1 feeds the concatenation twice, output 0 once.
    let z = ops::concat_channels(&[&ys[1], &ys[0], &ys[1]]).unwrap();
    z.backward_with(tensor(b, &[1, 3, 1, 2], &[1.0, 2.0, 10.0, 20.0, 100.0, 200.0])).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![10.0, 20.0, 101.0, 202.0]);
    let again = z.backward_with(tensor(b, &[1, 3, 1, 2], &[0.0; 6]));
    assert!(matches!(&again, Err(Error::Graph(m)) if m.contains("already")), "{again:?}");
    // Only output 0 used: output 1's gradient is None and contributes nothing.
    x.zero_grad();
    let ys = split(&x, calls.clone(), seen.clone());
    ys[0].backward_with(tensor(b, &[1, 1, 1, 2], &[5.0, 6.0])).unwrap();
    assert_eq!((calls.load(Ordering::SeqCst), seen.lock().unwrap().clone()), (2, vec![true, false]));
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![5.0, 6.0, 0.0, 0.0]);
    // Nothing to differentiate: plain constants, nothing recorded.
    let ys = no_grad(|| split(&x, calls.clone(), seen.clone()));
    assert!(ys.iter().all(|y| y.is_leaf() && !y.requires_grad()));
}

/// Models and their graphs are `Send + Sync`: a model built here trains on another thread, and
/// one model serves two threads at once with the answers it gives on one.
fn models_move_and_are_shared_across_threads<B: Backend>(b: &B) {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Var<B>>();
    send_sync::<layers::Sequential<B>>();
    let model = models::build(models::ModelKind::GoogLeNet, b, layers::WeightInit::XavierUniform, 3).unwrap();
    let x = tensor(b, &[2, 1, 32, 32], &random(&mut rng(1), 2 * 32 * 32));
    let before = model.parameters()[0].1.value().to_vec().unwrap();
    let (model, x) = std::thread::spawn(move || {
        use layers::Optimizer;
        let mut opt = layers::Sgd::new(model.parameters(), 0.1, 0.0, 0.0);
        let logits = model.forward(&Var::constant(x.clone()), &mut layers::Mode::train(1, 0)).unwrap();
        let (loss, _) = ops::cross_entropy(&logits, &[1, 7]).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        (model, x)
    })
    .join()
    .unwrap();
    assert_ne!(model.parameters()[0].1.value().to_vec().unwrap(), before, "trained on the other thread");
    let model = Arc::new(model);
    let infer = |m: &layers::Sequential<B>| {
        no_grad(|| {
            m.forward(&Var::constant(x.clone()), &mut layers::Mode::eval()).unwrap().value().to_vec().unwrap()
        })
    };
    let here = infer(&model);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| infer(&model))).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), here);
        }
    });
}

backend_tests!(
    models_move_and_are_shared_across_threads,
    inference_mode_records_nothing,
    gradients_accumulate_until_zeroed,
    misuse_is_an_error,
    several_outputs_share_one_backward
);

/// `Var::update_all` hands out the values in the order given, and refuses a variable given
/// twice (two write locks on one value would deadlock).
#[test]
fn update_all_refuses_a_variable_twice() {
    let (a, b) = (param(&tensor::Cpu, &[2], &[1.0, 2.0]), param(&tensor::Cpu, &[1], &[5.0]));
    Var::update_all(&[&b, &a], |values| {
        assert_eq!(values.iter().map(|v| v.numel()).collect::<Vec<_>>(), [1, 2]);
        values[0].storage_mut()?.fill(7.0);
        Ok(())
    })
    .unwrap();
    assert_eq!(b.value().to_vec().unwrap(), [7.0]);
    let e = Var::update_all(&[&a, &b, &a], |_| Ok(())).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
}
