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
    // 48 images in batches of 16: 6 steps in two epochs.
    let opt = checkpoint::load(&part.join("optimizer-step6.safetensors")).unwrap();
    assert_eq!(opt.get("optimizer.momentum.0.0.weight").unwrap().shape, vec![96, 1, 11, 11]);
    let optimizer_files: Vec<String> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("optimizer-"))
        .collect();
    assert_eq!(optimizer_files, ["optimizer-step6.safetensors"], "older optimizer files are removed");
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

/// Small raw IDX files with `n` training images (and 16 test images).
fn tiny_data_of(name: &str, n: usize) -> PathBuf {
    let dir = temp_dir(name);
    write_split(&dir, "train", n);
    write_split(&dir, "t10k", 16);
    dir
}

/// NiN at 67x67 with momentum (optimizer state) and dropout (RNG state): 96 images in batches of
/// 8, 12 steps an epoch.
fn short_run(data: &Path, out: &Path) -> Vec<String> {
    [
        "nin",
        "--resize",
        "67",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--momentum",
        "0.9",
        "--lr",
        "0.05",
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(args: &[String], envs: &[(&str, &str)]) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn train")
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child this test spawned and has not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

fn wait_for(path: &Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed().as_secs() < 120, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Ctrl-C (SIGINT) finishes the step, saves, prints the command that continues the run and exits
/// with 130; that command ends with the same bytes as a run never stopped. SIGTERM does the same.
#[test]
fn a_signal_stops_cleanly_and_the_printed_command_resumes_exactly() {
    let data = tiny_data_of("signal", 96);
    let base = temp_dir("signal-out");
    let whole = short_run(&data, &base.join("whole"));
    let o = Command::new(BIN).args(&whole).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for (sig, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let out = base.join(name);
        let mut args = short_run(&data, &out);
        args.extend(["--checkpoint-every".into(), "0s".into()]);
        let child = spawn(&args, &[]);
        wait_for(&out.join("checkpoint.safetensors"));
        signal(&child, sig);
        let o = child.wait_with_output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(130), "{t}");
        let command =
            t.lines().skip_while(|l| !l.contains("Continue with:")).nth(1).expect(&t).trim().to_string();
        assert!(command.contains("--resume") && command.contains("checkpoint.safetensors"), "{command}");
        let words: Vec<&str> = command.split_whitespace().collect();
        assert!(words[0].ends_with("train"), "{command}");
        let o = Command::new(BIN).args(&words[1..]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        for file in ["checkpoint.safetensors", "optimizer-step24.safetensors"] {
            assert!(
                std::fs::read(out.join(file)).unwrap()
                    == std::fs::read(base.join("whole").join(file)).unwrap(),
                "{name}: {file} differs from the uninterrupted run's"
            );
        }
    }
}

/// A second interrupt exits at once, and what is on disk still loads.
#[test]
fn a_second_interrupt_exits_at_once() {
    let data = tiny_data_of("twice", 96);
    let out = temp_dir("twice-out");
    let mut args = short_run(&data, &out);
    args.extend(["--checkpoint-every".into(), "0s".into()]);
    let child = spawn(&args, &[]);
    wait_for(&out.join("checkpoint.safetensors"));
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let ckpt = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let steps = ckpt.meta("optimizer_steps").unwrap();
    checkpoint::load(&out.join(format!("optimizer-step{steps}.safetensors"))).unwrap();
}

/// A resumed run keeps every setting that changes its results, the test limit included; a flag
/// that disagrees is an error naming both values; --epochs may grow.
#[test]
fn a_run_is_defined_once() {
    let data = tiny_data_of("settings", 48);
    let out = temp_dir("settings-out");
    let o = train(&[
        "nin",
        "--resize",
        "67",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--epochs",
        "1",
        "--test-limit",
        "8",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("48 training / 8 test images"), "{}", text(&o));
    let ckpt = out.join("checkpoint.safetensors");
    let resume = |extra: &[&str]| {
        let mut args = vec!["nin", "--resume", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        train(&args)
    };
    let o = resume(&["--epochs", "2", "--lr", "0.05", "--test-limit", "16"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("--lr 0.05 (the run's is 0.01)") && t.contains("--test-limit 16 (the run's is 8)"),
        "{t}"
    );
    let o = resume(&["--epochs", "2", "--lr", "0.01", "--batch-size", "16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("48 training / 8 test images"), "the stored test limit is kept: {}", text(&o));
    let o = resume(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already holds 2 epochs of the 2"), "{}", text(&o));
}

/// One run per output folder: a second run gets an error naming the folder and the holder; a
/// new run never writes over a folder holding a checkpoint; an output path that is a file is
/// refused.
#[test]
fn one_run_per_output_folder() {
    let data = tiny_data_of("lock", 48);
    let out = temp_dir("lock-out");
    let args = |out: &Path| {
        let mut a = short_run(&data, out);
        let at = a.iter().position(|x| x == "--epochs").unwrap();
        a[at + 1] = "1".into();
        a
    };
    // Another process holds the lock.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(out.join("train.lock"))
        .unwrap();
    lock.lock().unwrap();
    std::fs::write(out.join("train.lock"), "pid 4242\ncommand train nin\n").unwrap();
    let o = Command::new(BIN).args(args(&out)).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("another run is using") && text(&o).contains("pid 4242"), "{}", text(&o));
    drop(lock);
    let o = Command::new(BIN).args(args(&out)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(BIN).args(args(&out)).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("already holds a run's checkpoint") && text(&o).contains("--resume"),
        "{}",
        text(&o)
    );
    let file = out.join("metrics.csv");
    let o = Command::new(BIN).args(args(&file)).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is a file"), "{}", text(&o));
}

/// A save that fails (a full disk, injected) stops the run with an error naming the file, and the
/// previous checkpoint and its optimizer file stay whole; no temporary file is left.
#[test]
fn a_failed_save_keeps_the_previous_checkpoint() {
    let data = tiny_data_of("full-disk", 96);
    let out = temp_dir("full-disk-out");
    let mut args = short_run(&data, &out);
    args.extend(["--checkpoint-every".into(), "0s".into()]);
    // Two files a save: the 7th write is the 4th save's optimizer file, the 8th its weights.
    for at in ["7", "8"] {
        let _ = std::fs::remove_dir_all(&out);
        let o = spawn(&args, &[("CONVNET_FAIL_WRITE", at)]).wait_with_output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("No space left") && t.contains("intact") && t.contains("safetensors"), "{t}");
        let ckpt = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
        assert_eq!(ckpt.meta("step"), Some("3"), "the third save is the last whole one");
        checkpoint::load(&out.join("optimizer-step3.safetensors")).unwrap();
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }
}

/// A run that cannot fit in memory is refused before it allocates, with both figures and the
/// largest batch that fits, instead of being killed by the kernel; --summary prints the estimate.
#[test]
fn a_run_too_large_for_memory_is_refused_with_the_batch_that_fits() {
    let data = tiny_data_of("memory", 48);
    let out = temp_dir("memory-out");
    // NiN at 4000x4000: about 3 GB an image in training.
    let o = train(&[
        "nin",
        "--resize",
        "4000",
        "--batch-size",
        "48",
        "--epochs",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.join("run").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("needs about") && t.contains("GiB is available"), "{t}");
    assert!(t.contains("the largest batch that fits is") || t.contains("not even a batch of 1"), "{t}");
    assert!(!out.join("run").exists(), "nothing is created for a refused run");
    let o = train(&["googlenet", "--summary", "--batch-size", "64"]);
    assert!(o.status.success());
    assert!(text(&o).contains("estimated peak memory of a run at batch 64"), "{}", text(&o));
}

/// The better recipe's flags: a validation split keeps the best epoch in best.safetensors and
/// tests it once at the end; the metrics hold the validation accuracy and the learning rate; a
/// schedule ties the run to its length; bad values are errors naming the flag.
#[test]
fn a_run_with_a_validation_split_keeps_and_tests_its_best_epoch() {
    let data = tiny_data_of("recipe", 48);
    let out = temp_dir("recipe-out");
    let base = |out: &Path| -> Vec<String> {
        [
            "nin",
            "--resize",
            "67",
            "--batch-size",
            "8",
            "--lr",
            "0.05",
            "--schedule",
            "onecycle",
            "--augment",
            "--crop-padding",
            "2",
            "--label-smoothing",
            "0.1",
            "--val-split",
            "16",
            "--epochs",
            "2",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let o = Command::new(BIN).args(base(&out.join("run"))).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("32 training / 16 val images") && t.contains("onecycle schedule"), "{t}");
    assert!(t.contains("onecycle schedule, rising over the first 30% of the run"), "{t}");
    assert!(t.contains("crops of up to 2 pixels each way and flips"), "{t}");
    assert!(t.contains("best epoch") && t.contains("test acc"), "{t}");
    let best = checkpoint::load(&out.join("run/best.safetensors")).unwrap();
    let test_acc: f64 = best.meta("test_acc").unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&test_acc));
    let rows = metrics::read_csv(&out.join("run/metrics.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.test_acc.is_nan() && (0.0..=1.0).contains(&r.val_acc)));
    let best_epoch: usize = best.meta("best_epoch").unwrap().parse().unwrap();
    let best_val = rows.iter().map(|r| r.val_acc).fold(f64::MIN, f64::max);
    assert_eq!(rows[best_epoch - 1].val_acc, best_val, "the best epoch is the one with the best val acc");
    // One-cycle ends far below its peak.
    assert!(rows[1].lr < 0.001 && rows[0].lr > rows[1].lr, "{rows:?}");
    // The run's length is part of a schedule: --epochs may not change on resume; nor may the
    // crops' padding.
    let ckpt = out.join("run/checkpoint.safetensors");
    for (flag, value, needle) in [
        ("--epochs", "3", "--epochs 3 (the run's is 2)"),
        ("--crop-padding", "4", "--crop-padding 4 (the run's is 2)"),
    ] {
        let o = train(&[
            "nin",
            "--resume",
            ckpt.to_str().unwrap(),
            flag,
            value,
            "--data",
            data.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains(needle), "{}", text(&o));
    }
    // A padding without crops to pad, and one that leaves nothing of a 28x28 image.
    let o = train(&["nin", "--crop-padding", "2", "--data", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--crop-padding 2 pads --augment's random crops"), "{}", text(&o));
    let o = train(&["nin", "--augment", "--crop-padding", "28"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("28 is not in 0..28"), "{}", text(&o));
    // Values no run can use.
    for (flag, value, needle) in [
        ("--label-smoothing", "1.5", "--label-smoothing must be in [0, 1)"),
        ("--warmup-epochs", "5", "longer than the run's 2 epochs"),
        ("--val-split", "48", "would leave no training images"),
        ("--lr", "0", "--lr must be a positive number"),
    ] {
        let mut args = base(&out.join(format!("bad{flag}")));
        let at = args.iter().position(|a| a == flag);
        match at {
            Some(i) => args[i + 1] = value.into(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{flag} {value}: {}", text(&o));
        assert!(text(&o).contains(needle), "{flag} {value}: {}", text(&o));
    }
}

/// A PyTorch state_dict as `safetensors.torch.save_file(net.state_dict(), path)` writes it: the
/// tensors, no metadata.
fn write_state_dict(path: &Path, tensors: &[checkpoint::NamedTensor], prefix: &str) {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b).unwrap();
            (format!("{prefix}{}", t.name), view)
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

/// Weights both ways: a plain state_dict (no metadata, maybe under `module.`) evaluates as the
/// checkpoint it came from, starts a run with --init-from, and one that does not fit is refused
/// with every wrong tensor named.
#[test]
fn pytorch_state_dicts_evaluate_and_start_runs() {
    let data = tiny_data_of("state-dict", 48);
    let out = temp_dir("state-dict-out");
    let d = data.to_str().unwrap();
    let o = train(&[
        "nin",
        "--resize",
        "67",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--epochs",
        "1",
        "--data",
        d,
        "--out",
        out.join("run").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ckpt_path = out.join("run/checkpoint.safetensors");
    let ckpt = checkpoint::load(&ckpt_path).unwrap();
    let accuracy = |o: &Output| {
        let t = text(o);
        assert!(o.status.success(), "{t}");
        t.split("test acc ").nth(1).expect(&t).split_whitespace().next().unwrap().to_string()
    };
    let ours = accuracy(&train(&["eval", "--checkpoint", ckpt_path.to_str().unwrap(), "--data", d]));
    for prefix in ["", "module."] {
        let sd = out.join(format!("state_dict{}.safetensors", prefix.trim_end_matches('.')));
        write_state_dict(&sd, &ckpt.tensors, prefix);
        let o = train(&["eval", "--checkpoint", sd.to_str().unwrap(), "--resize", "67", "--data", d]);
        assert_eq!(accuracy(&o), ours, "{prefix:?}");
        assert!(text(&o).contains("nin (a state_dict)"), "{}", text(&o));
    }
    let sd = out.join("state_dict.safetensors");
    let o = train(&["eval", "--checkpoint", sd.to_str().unwrap(), "--model", "googlenet", "--data", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a googlenet state_dict"), "{}", text(&o));
    // A state_dict that does not fit: every problem named.
    let mut broken = ckpt.tensors.clone();
    let w = broken.iter_mut().find(|t| t.name == "0.0.weight").unwrap();
    w.shape = vec![w.data.len()];
    broken.retain(|t| t.name != "0.2.bias");
    let bad = out.join("broken.safetensors");
    write_state_dict(&bad, &broken, "");
    let o = train(&["eval", "--checkpoint", bad.to_str().unwrap(), "--data", d]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("broken.safetensors")
            && t.contains("missing tensor 0.2.bias")
            && t.contains("has shape ["),
        "{t}"
    );
    // --init-from: a run that barely moves ends where the state_dict began.
    let o = train(&[
        "nin",
        "--resize",
        "67",
        "--batch-size",
        "16",
        "--lr",
        "1e-30",
        "--epochs",
        "1",
        "--init-from",
        sd.to_str().unwrap(),
        "--data",
        d,
        "--out",
        out.join("init").to_str().unwrap(),
    ]);
    assert!(o.status.success() && text(&o).contains("starting from the weights in"), "{}", text(&o));
    let after = checkpoint::load(&out.join("init/checkpoint.safetensors")).unwrap();
    assert_eq!(after.meta("init_from"), Some(sd.to_str().unwrap()));
    for t in &ckpt.tensors {
        let a = after.get(&t.name).unwrap();
        let worst = t.data.iter().zip(&a.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{}: moved {worst}", t.name);
    }
    let o = train(&[
        "googlenet",
        "--init-from",
        sd.to_str().unwrap(),
        "--data",
        d,
        "--out",
        out.join("wrong").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a googlenet state_dict") && !out.join("wrong").exists(), "{}", text(&o));
}

/// `train predict`: test images exported as PNG get exactly the predictions of --test-index; a
/// colour JPEG or PNG of another size, dark on light, is read and inverted; bad inputs are errors
/// naming them.
#[test]
fn predict_reads_images_as_training_did() {
    let data = tiny_data_of("predict", 48);
    let out = temp_dir("predict-out");
    let d = data.to_str().unwrap();
    let o = train(&[
        "nin",
        "--resize",
        "67",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--epochs",
        "1",
        "--data",
        d,
        "--out",
        out.join("run").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ckpt = out.join("run/checkpoint.safetensors");
    let c = ckpt.to_str().unwrap();
    // The test images as the IDX file holds them (raw: 16-byte header, then 28x28 bytes each).
    let raw = std::fs::read(data.join("t10k-images-idx3-ubyte")).unwrap();
    let image = |i: usize| raw[16 + i * 784..16 + (i + 1) * 784].to_vec();
    let mut files = Vec::new();
    for i in 0..4 {
        let f = out.join(format!("test{i}.png"));
        image::GrayImage::from_raw(28, 28, image(i)).unwrap().save(&f).unwrap();
        files.push(f);
    }
    let o = train(&["predict", "--checkpoint", c, "--test-index", "0..4", "--top", "10", "--data", d]);
    assert!(o.status.success(), "{}", text(&o));
    let from_index: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split_once(": ").unwrap().1.split(" (true").next().unwrap().to_string())
        .collect();
    assert_eq!(from_index.len(), 4);
    let mut args = vec!["predict", "--checkpoint", c, "--top", "10"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let o = train(&args);
    assert!(o.status.success(), "{}", text(&o));
    let from_files: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split_once(": ").unwrap().1.to_string())
        .collect();
    assert_eq!(from_files, from_index, "a PNG of a test image is predicted as the test image");
    // Colour, three times the size, dark on light: inverted automatically.
    let big = image::imageops::resize(
        &image::GrayImage::from_raw(28, 28, image(0).iter().map(|v| 255 - v).collect()).unwrap(),
        84,
        84,
        image::imageops::FilterType::Nearest,
    );
    let rgb = image::DynamicImage::ImageLuma8(big).to_rgb8();
    for name in ["photo.png", "photo.jpg"] {
        rgb.save(out.join(name)).unwrap();
        let f = out.join(name);
        let o = train(&["predict", "--checkpoint", c, "--json", f.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let top = json[0]["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let p: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]) && p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
        let not_inverted =
            train(&["predict", "--checkpoint", c, "--json", "--invert", "no", f.to_str().unwrap()]);
        assert_ne!(not_inverted.stdout, o.stdout, "{name}: auto inverts a light background");
    }
    for (bad, needle) in [(out.join("missing.png"), "cannot open"), (ckpt.clone(), "not a PNG or JPEG")] {
        let o = train(&["predict", "--checkpoint", c, bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains(needle) && text(&o).contains(bad.to_str().unwrap()), "{}", text(&o));
    }
    let o = train(&["predict", "--checkpoint", c, "--test-index", "10..20", "--data", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("the test set has 16 images"), "{}", text(&o));
    let o = train(&["predict", "--checkpoint", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("nothing to predict"), "{}", text(&o));
}
