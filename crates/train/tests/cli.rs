//! The `train` binary used as a person would: help, bad flags, missing data, a run, its
//! checkpoint, resume and eval — on small IDX files written here, and on the real data.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use train::checkpoint;
use train::metrics;

const BIN: &str = env!("CARGO_BIN_EXE_train");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn train(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).env_remove("FASHION_MNIST_DIR").output().expect("run train");
    eprintln!(
        "$ train {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
    v.extend_from_slice(payload);
    v
}

/// Raw (uncompressed) IDX files: images whose mean brightness encodes the label, learnable.
fn write_split(dir: &Path, prefix: &str, n: usize) {
    let mut pixels = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i * 7 % 10) as u8;
        labels.push(label);
        pixels.extend((0..784).map(|p| ((label as usize * 25 + (p * 31 + i * 17) % 23) % 256) as u8));
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx(0x803, &[n as u32, 28, 28], &pixels))
        .unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(0x801, &[n as u32], &labels))
        .unwrap();
}

fn tiny_data(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    write_split(&dir, "train", 48);
    write_split(&dir, "t10k", 16);
    dir
}

fn real_data() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FASHION_MNIST_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fashion-mnist")),
        Some(PathBuf::from("/usr/share/datasets/fashion-mnist")),
    ];
    candidates.into_iter().flatten().find(|d| d.join("train-images-idx3-ubyte.gz").exists())
}

#[test]
fn help_wrong_flags_and_missing_data_are_clear() {
    let out = train(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out).contains("nin") && text(&out).contains("googlenet") && text(&out).contains("eval"));
    let out = train(&["nin", "--help"]);
    for flag in [
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--momentum",
        "--weight-decay",
        "--resize",
        "--seed",
        "--threads",
        "--train-limit",
        "--test-limit",
        "--device",
        "--data",
        "--out",
        "--resume",
        "--summary",
    ] {
        assert!(text(&out).contains(flag), "help lacks {flag}");
    }
    let out = train(&["nin", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--bogus"));
    let out = train(&["nin", "--batch-size", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let empty = temp_dir("empty");
    let out = train(&["nin", "--data", empty.to_str().unwrap(), "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(empty.to_str().unwrap()) && text(&out).contains("train-images-idx3-ubyte"),
        "{}",
        text(&out)
    );
    let out = train(&["nin", "--device", "cuda", "--summary"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("cuda"));
    let out = train(&["nin", "--resize", "32", "--summary"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("32"), "{}", text(&out));
}

#[test]
fn summary_prints_the_table() {
    let out = train(&["nin", "--summary"]);
    assert!(out.status.success());
    let t = text(&out);
    assert!(t.contains("96x54x54") && t.contains("1,992,166"), "{t}");
}

/// A run of two epochs, and the same run stopped after one and resumed, give the same losses
/// bit for bit (weights, momentum, data order and dropout draws all restored).
#[test]
fn resume_reproduces_an_uninterrupted_run_and_eval_agrees() {
    let data = tiny_data("resume");
    let base = temp_dir("resume-out");
    let (full, part) = (base.join("full"), base.join("part"));
    let common = [
        "--resize",
        "67",
        "--batch-size",
        "16",
        "--momentum",
        "0.9",
        "--lr",
        "0.01",
        "--seed",
        "7",
        "--data",
        data.to_str().unwrap(),
    ];
    let run = |out: &Path, epochs: &str, extra: &[&str]| {
        let mut args = vec!["nin", "--epochs", epochs, "--out", out.to_str().unwrap()];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        let o = train(&args);
        assert!(o.status.success(), "{}", text(&o));
    };
    run(&full, "2", &[]);
    run(&part, "1", &[]);
    let ckpt = part.join("checkpoint.safetensors");
    let o = train(&[
        "nin",
        "--epochs",
        "2",
        "--resume",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let a = metrics::read_csv(&full.join("metrics.csv")).unwrap();
    let b = metrics::read_csv(&part.join("metrics.csv")).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            x.train_loss.to_bits(),
            y.train_loss.to_bits(),
            "epoch {}: {} vs {}",
            x.epoch,
            x.train_loss,
            y.train_loss
        );
        assert_eq!(x.train_acc, y.train_acc);
        assert_eq!(x.test_acc, y.test_acc);
    }
    // The weights themselves are identical.
    let (ca, cb) =
        (checkpoint::load(&full.join("checkpoint.safetensors")).unwrap(), checkpoint::load(&ckpt).unwrap());
    assert_eq!(ca.tensors, cb.tensors);
    assert_eq!(ca.get("0.0.weight").unwrap().shape, vec![96, 1, 11, 11]);
    assert!(
        ca.tensors.iter().all(|t| !t.name.starts_with("optimizer.")),
        "weights file holds the state_dict only"
    );
    let opt = checkpoint::load(&part.join("optimizer-epoch2.safetensors")).unwrap();
    assert_eq!(opt.get("optimizer.momentum.0.0.weight").unwrap().shape, vec![96, 1, 11, 11]);
    assert!(
        !part.join("optimizer-epoch1.safetensors").exists(),
        "the previous epoch's optimizer file is removed"
    );
    assert!(full.join("plot.svg").exists());

    // eval reads the model from the metadata and reproduces the last test accuracy.
    let o = train(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("test acc {:.4}", b[1].test_acc)), "{}", text(&o));

    // A checkpoint that claims another model is refused, naming the file and the tensors.
    let mut wrong = cb.clone();
    wrong.metadata.insert("model".into(), "googlenet".into());
    wrong.metadata.insert("resize".into(), "96".into());
    let wrong_path = base.join("wrong.safetensors");
    checkpoint::save_atomic(&wrong_path, &wrong).unwrap();
    let o = train(&["eval", "--checkpoint", wrong_path.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrong.safetensors") && text(&o).contains("tensor"), "{}", text(&o));
    // Resuming with the other model's command is refused too.
    let o = train(&[
        "googlenet",
        "--epochs",
        "3",
        "--resume",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("nin"), "{}", text(&o));
}

#[test]
fn a_diverging_run_stops_and_says_why() {
    let data = tiny_data("diverge");
    let out = temp_dir("diverge-out");
    let o = train(&[
        "googlenet",
        "--resize",
        "32",
        "--lr",
        "1e30",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("diverged") && t.contains("lower learning rate"), "{t}");
}

/// NiN at a reduced resize on a few thousand real images reaches well above chance on
/// held-out real test images. Skipped, saying so, without the data.
#[test]
fn nin_learns_real_fashion_mnist() {
    let Some(data) = real_data() else {
        // Straight to stderr: libtest would swallow eprintln! and the skip would look like a pass.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipping nin_learns_real_fashion_mnist: Fashion-MNIST not found (set FASHION_MNIST_DIR or install dataset-fashion-mnist)");
        return;
    };
    let out = temp_dir("e2e");
    let o = train(&[
        "nin",
        "--resize",
        "67",
        "--epochs",
        "6",
        "--train-limit",
        "5000",
        "--test-limit",
        "1000",
        "--batch-size",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = metrics::read_csv(&out.join("metrics.csv")).unwrap();
    let acc = rows.last().unwrap().test_acc;
    // Measured 0.80 here (0.61 with CONVNET_WINOGRAD=0): rounding alone moves NiN's early
    // training (without normalisation) a lot, so 0.5 leaves room for another path. At lr 0.002
    // the im2col path reached 0.78 and the Winograd one 0.48.
    assert!(acc >= 0.5, "test accuracy {acc} after 6 epochs on 5000 images (chance is 0.1)");
}
