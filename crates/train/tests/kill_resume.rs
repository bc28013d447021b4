//! A run killed with SIGKILL at random moments, again and again, some of them while a checkpoint
//! is being written: after every kill what is on disk loads, and the run resumed from it ends
//! with the same bytes (weights and optimizer state) as a run never interrupted.
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use train::checkpoint;
use train::state::RunMeta;

const BIN: &str = env!("CARGO_BIN_EXE_train");
/// Kills at least this many, and at least `MIN_KILLS_IN_SAVE` of them inside a save.
const MIN_KILLS: usize = 20;
const MIN_KILLS_IN_SAVE: usize = 3;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Raw IDX files: 96 training and 16 test images whose brightness encodes the label.
fn write_data(dir: &Path) {
    for (prefix, n) in [("train", 96u32), ("t10k", 16)] {
        let mut images = [0x803u32, n, 28, 28].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
        let mut labels = [0x801u32, n].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
        for i in 0..n as usize {
            let label = (i * 7 % 10) as u8;
            labels.push(label);
            images.extend((0..784).map(|p| ((label as usize * 25 + (p * 31 + i * 17) % 23) % 256) as u8));
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// Two epochs of 10 steps (16 of the 96 images held out), a checkpoint after every step (so that kills often land in a save),
/// momentum and dropout (optimizer and RNG state to restore).
fn args(data: &Path, out: &Path, resume: bool) -> Vec<String> {
    let mut a: Vec<String> = [
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
        "--checkpoint-every",
        "0s",
        // The better recipe's state too: a schedule with warm-up, augmentation draws, label
        // smoothing, a validation split and its best epoch.
        "--schedule",
        "cosine",
        "--warmup-epochs",
        "0.5",
        "--augment",
        "--label-smoothing",
        "0.1",
        "--val-split",
        "16",
        "--data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(data.display().to_string());
    a.push("--out".into());
    a.push(out.display().to_string());
    if resume {
        a.push("--resume".into());
        a.push(out.join("checkpoint.safetensors").display().to_string());
    }
    a
}

/// What must hold on disk at any moment: no checkpoint yet, or one whose metadata parses and
/// whose optimizer file loads.
fn check_on_disk(out: &Path, context: &str) {
    let path = out.join("checkpoint.safetensors");
    if !path.exists() {
        return;
    }
    let ckpt = checkpoint::load(&path).unwrap_or_else(|e| panic!("{context}: {e}"));
    let meta = RunMeta::from_checkpoint(&ckpt, &path).unwrap_or_else(|e| panic!("{context}: {e}"));
    checkpoint::load(&meta.optimizer_path(out)).unwrap_or_else(|e| panic!("{context}: {e}"));
}

fn left_temporaries(out: &Path) -> bool {
    std::fs::read_dir(out)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(".tmp-")))
        .unwrap_or(false)
}

#[test]
fn killed_anywhere_it_resumes_to_the_same_bytes() {
    let base = temp_dir("run");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_data(&data);

    let reference = base.join("reference");
    let started = Instant::now();
    let o = Command::new(BIN).args(args(&data, &reference, false)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let whole = started.elapsed();
    let expected: Vec<(String, Vec<u8>)> =
        ["checkpoint.safetensors", "optimizer-step20.safetensors", "best.safetensors"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(reference.join(f)).unwrap()))
            .collect();

    let seed: u64 = std::env::var("KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261201);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut kills, mut in_save, mut finished_runs) = (0usize, 0usize, 0usize);
    let out = base.join("killed");
    while kills < MIN_KILLS || in_save < MIN_KILLS_IN_SAVE {
        assert!(kills < 400, "seed {seed}: only {in_save} of {kills} kills landed in a save");
        let _ = std::fs::remove_dir_all(&out);
        // One run, killed until it gets to the end.
        loop {
            let resume = out.join("checkpoint.safetensors").exists();
            let mut child = Command::new(BIN)
                .args(args(&data, &out, resume))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let delay = whole.mul_f64(rng.gen_range(0.0..0.6));
            let deadline = Instant::now() + delay;
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            match status {
                Some(status) => {
                    let mut err = String::new();
                    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                    // A kill after the run's last save (while it was exiting) leaves a finished run,
                    // which a resume rightly declines to extend.
                    let finished_before = err.contains("already holds 2 epochs of the 2 asked for");
                    assert!(status.success() || finished_before, "seed {seed}, after {kills} kills: {err}");
                    break;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    if left_temporaries(&out) {
                        in_save += 1;
                    }
                    check_on_disk(&out, &format!("seed {seed}, kill {kills} after {delay:?}"));
                }
            }
        }
        finished_runs += 1;
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 3, "seed {seed}: metrics.csv of a finished run:\n{metrics}");
        for (file, bytes) in &expected {
            let got = std::fs::read(out.join(file)).unwrap();
            assert!(
                &got == bytes,
                "seed {seed}: {file} after {kills} kills differs from the uninterrupted run's"
            );
        }
    }
    eprintln!(
        "{kills} kills ({in_save} inside a save) over {finished_runs} runs resumed to the uninterrupted bytes \
         (seed {seed}, a whole run {whole:?})"
    );
    let _ = std::fs::remove_dir_all(&base);
}
