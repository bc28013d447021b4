//! Optimizers against PyTorch's update formulas, and a tiny CNN that must learn a synthetic task.
mod common;
use autograd::Var;
use common::*;
use layers::{
    ops, Adam, Conv2d, Flatten, Linear, MaxPool2d, Mode, Module, Optimizer, Relu, Sequential, Sgd, WeightInit,
};
use rand::Rng;
use tensor::{Backend, Window};

/// Sets `p.grad` to `g` by back-propagating `g` through an identity-shaped op.
fn set_grad<B: Backend>(b: &B, p: &Var<B>, g: &[f32]) {
    p.zero_grad();
    let y = ops::flatten(p).unwrap();
    y.backward_with(tensor(b, y.shape().dims(), g)).unwrap();
}

fn sgd_matches_pytorch_formula<B: Backend>(b: &B) {
    let mut r = rng(30);
    let p0 = random(&mut r, 6);
    let p = param(b, &[2, 3], &p0);
    let (lr, mom, wd) = (0.1f64, 0.9f64, 0.01f64);
    let mut opt = Sgd::new(vec![("p".into(), p.clone())], lr as f32, mom as f32, wd as f32);
    // torch.optim.SGD: g += wd * p; buf = mom * buf + g (buf = g at the first step); p -= lr * buf
    let mut want: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
    let mut buf = [0.0f64; 6];
    for _ in 0..3 {
        let g = random(&mut r, 6);
        set_grad(b, &p, &g);
        opt.step().unwrap();
        for i in 0..6 {
            let gi = g[i] as f64 + wd * want[i];
            buf[i] = mom * buf[i] + gi;
            want[i] -= lr * buf[i];
        }
    }
    let got = p.value().to_vec().unwrap();
    for i in 0..6 {
        assert!((got[i] as f64 - want[i]).abs() < 1e-5, "element {i}: {} vs {}", got[i], want[i]);
    }
    // Optimizer state survives a round trip through `state` / `load_state`.
    let (state, steps) = opt.state();
    assert_eq!(steps, 3);
    assert_eq!(state.len(), 1);
    let mut fresh = Sgd::new(vec![("p".into(), p.clone())], lr as f32, mom as f32, wd as f32);
    fresh.load_state(state.clone(), steps).unwrap();
    assert_eq!(fresh.state().0[0].1.to_vec().unwrap(), state[0].1.to_vec().unwrap());
    let bad = vec![("momentum.q".to_string(), state[0].1.clone())];
    assert!(fresh.load_state(bad, 1).is_err(), "state for an unknown parameter is refused");
}

fn adam_matches_pytorch_formula<B: Backend>(b: &B) {
    let mut r = rng(31);
    let p0 = random(&mut r, 5);
    let p = param(b, &[5], &p0);
    let (lr, wd) = (0.01f64, 0.1f64);
    let mut opt = Adam::new(vec![("p".into(), p.clone())], lr as f32, wd as f32);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut want: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0f64; 5], vec![0.0f64; 5]);
    for t in 1..=4 {
        let g = random(&mut r, 5);
        set_grad(b, &p, &g);
        opt.step().unwrap();
        // torch.optim.Adam: g += wd * p; m, v moments; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        for i in 0..5 {
            let gi = g[i] as f64 + wd * want[i];
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            want[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
        }
    }
    let got = p.value().to_vec().unwrap();
    for i in 0..5 {
        assert!((got[i] as f64 - want[i]).abs() < 1e-5, "element {i}: {} vs {}", got[i], want[i]);
    }
}

/// Every parameter is updated in one call (`Backend::sgd_steps`, `adam_steps`) with its own
/// gradient and state: three of one shape, the middle one without a gradient (left alone, no
/// state made), each against an optimizer of that parameter alone.
fn optimizers_pair_each_parameter_with_its_own_state<B: Backend>(b: &B) {
    let mut r = rng(32);
    let data: Vec<Vec<f32>> = (0..3).map(|_| random(&mut r, 6)).collect();
    let grads: Vec<Vec<Vec<f32>>> = (0..2).map(|_| (0..3).map(|_| random(&mut r, 6)).collect()).collect();
    for adam in [false, true] {
        let make = |params: Vec<(String, Var<B>)>| -> Box<dyn Optimizer<B>> {
            if adam {
                Box::new(Adam::new(params, 0.01, 0.1))
            } else {
                Box::new(Sgd::new(params, 0.1, 0.9, 0.01))
            }
        };
        let together: Vec<Var<B>> = data.iter().map(|d| param(b, &[2, 3], d)).collect();
        let alone: Vec<Var<B>> = data.iter().map(|d| param(b, &[2, 3], d)).collect();
        let mut all = make(together.iter().enumerate().map(|(i, p)| (format!("p{i}"), p.clone())).collect());
        let mut each: Vec<_> = alone.iter().map(|p| make(vec![("p".into(), p.clone())])).collect();
        for g in &grads {
            all.zero_grad();
            for (k, (t, a)) in together.iter().zip(&alone).enumerate() {
                if k != 1 {
                    set_grad(b, t, &g[k]);
                    set_grad(b, a, &g[k]);
                    each[k].step().unwrap();
                }
            }
            all.step().unwrap();
        }
        for (k, (t, a)) in together.iter().zip(&alone).enumerate() {
            assert_eq!(
                t.value().to_vec().unwrap(),
                a.value().to_vec().unwrap(),
                "adam {adam}, parameter {k}"
            );
        }
        assert_eq!(together[1].value().to_vec().unwrap(), data[1], "a parameter without a gradient moved");
        let names: Vec<String> = all.state().0.into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().all(|n| !n.ends_with("p1")), "state made for p1: {names:?}");
    }
}

/// 8x8 images with a bright 3x3 patch in one of four quadrants (the class), plus noise.
fn quadrant_batch(r: &mut rand::rngs::StdRng, n: usize) -> (Vec<f32>, Vec<usize>) {
    let mut images = vec![0.0f32; n * 64];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = r.gen_range(0..4);
        labels.push(class);
        let img = &mut images[i * 64..(i + 1) * 64];
        img.iter_mut().for_each(|v| *v = r.gen_range(0.0..0.3));
        let (y0, x0) = ((class / 2) * 4 + r.gen_range(0..2), (class % 2) * 4 + r.gen_range(0..2));
        for y in y0..y0 + 3 {
            for x in x0..x0 + 3 {
                img[y * 8 + x] = 1.0;
            }
        }
    }
    (images, labels)
}

fn tiny_cnn_learns<B: Backend>(b: &B) {
    let mut r = rng(32);
    let net = Sequential::new()
        .add(Conv2d::new(b, 1, 6, 3, 1, 1, WeightInit::XavierUniform, &mut r).unwrap())
        .add(Relu)
        .add(MaxPool2d(Window::square(2, 2, 0)))
        .add(Flatten)
        .add(Linear::new(b, 6 * 16, 4, WeightInit::XavierUniform, &mut r).unwrap());
    let mut opt = Sgd::new(net.parameters(), 0.1, 0.9, 0.0);
    let mut mode = Mode::train(1, 0);
    let mut losses = Vec::new();
    for _ in 0..80 {
        let (images, labels) = quadrant_batch(&mut r, 32);
        let x = Var::constant(tensor(b, &[32, 1, 8, 8], &images));
        let (loss, _) = ops::cross_entropy(&net.forward(&x, &mut mode).unwrap(), &labels).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
        losses.push(loss.value().item().unwrap());
    }
    let first = losses[..5].iter().sum::<f32>() / 5.0;
    let last = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
    assert!(last < first / 10.0, "loss went from {first} to {last}: not a 10x cut");
}

/// What a training loop does with its transfers: a batch uploaded while the previous batches'
/// kernels are queued (on a GPU, through the staging slots, which are reused every other
/// upload), each step's values started on their way before the next step is queued and
/// collected after, some reads dropped unfinished. Every value must be the right one.
fn uploads_and_reads_in_flight<B: Backend>(b: &B) {
    let mut r = rng(31);
    // Below, at and past the size from which a GPU stages uploads, and growing past it so the
    // slots are reallocated; the last ones smaller again (a partial last batch).
    let lens = [5, 65_535, 65_536, 65_537, 200_003, 70_000, 300_001, 300_001, 1000, 90_000];
    let mut pending = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let data = random(&mut r, len);
        let x = tensor(b, &[len], &data);
        // A kernel that reads the upload, then one that writes the uploaded buffer.
        let mut y = x.zeros_like().unwrap();
        b.axpy(2.0, x.storage(), y.storage_mut().unwrap()).unwrap();
        let mut z = x.clone();
        b.scale(z.storage_mut().unwrap(), -1.0).unwrap();
        let expected_y: Vec<f32> = data.iter().map(|v| 2.0 * v).collect();
        pending.push((i, y.read_later().unwrap(), expected_y, x.read_later().unwrap(), data));
        if i % 3 == 2 {
            // Dropped before it is collected: the copy must still be waited for, not freed under.
            drop(z.read_later().unwrap());
        }
    }
    // Collected in reverse order, after everything was queued.
    for (i, y, expected_y, x, data) in pending.into_iter().rev() {
        assert_eq!(y.finish().unwrap(), expected_y, "upload {i}: 2 * x");
        assert_eq!(x.finish().unwrap(), data, "upload {i}: x itself (z's scale must not touch it)");
    }
    let one = tensor(b, &[1], &[4.5]);
    assert_eq!(one.read_later().unwrap().item().unwrap(), 4.5);
    let two = tensor(b, &[2], &[1.0, 2.0]);
    assert!(two.read_later().unwrap().item().is_err(), "item() of two values");
}

backend_tests!(
    sgd_matches_pytorch_formula,
    adam_matches_pytorch_formula,
    optimizers_pair_each_parameter_with_its_own_state,
    tiny_cnn_learns,
    uploads_and_reads_in_flight
);
