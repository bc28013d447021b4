//! Checkpoint files on disk: exact round trips, corrupt files, shape checks,
//! and the atomic-replace guarantees of `save_atomic`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use train::checkpoint::{
    check_against, load, load_checked, save_atomic, Checkpoint, CheckpointError, NamedTensor, TensorMismatch,
};

/// A fresh, empty directory unique to this test (and process).
fn test_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("checkpoint_io-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Values that are easy to corrupt in a careless conversion.
const SPECIAL: [f32; 10] = [
    -0.0,
    0.0,
    f32::MIN_POSITIVE / 3.0, // subnormal
    -1.0e-45,                // smallest negative subnormal
    f32::MAX,
    f32::MIN,
    3.4e38,
    f32::INFINITY,
    f32::NEG_INFINITY,
    1.0 + f32::EPSILON,
];

fn random_checkpoint(seed: u64) -> Checkpoint {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let shapes: Vec<(&str, Vec<usize>)> = vec![
        ("0.0.weight", vec![7, 1, 3, 5]),
        ("0.0.bias", vec![7]),
        ("3.weight", vec![13, 17]),
        ("scalar", vec![]),
        ("empty", vec![4, 0, 2]),
        ("ones", vec![1, 1, 1, 1, 1]),
        ("optimizer.momentum.0.0.weight", vec![7, 1, 3, 5]),
        ("optimizer.momentum.3.weight", vec![13, 17]),
    ];
    let mut ckpt = Checkpoint::new();
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let mut data: Vec<f32> = (0..n)
            .map(|_| match rng.gen_range(0..4) {
                0 => rng.gen_range(-1.0f32..1.0),
                1 => f32::from_bits(rng.gen()), // anything, including NaN payloads
                2 => rng.gen_range(-1e30f32..1e30),
                _ => SPECIAL[rng.gen_range(0..SPECIAL.len())],
            })
            .collect();
        for (d, s) in data.iter_mut().zip(SPECIAL) {
            *d = s; // make sure every special value is present at least once
        }
        ckpt.push(name, shape, data);
    }
    ckpt.metadata.insert("model".into(), "alexnet".into());
    ckpt.metadata.insert("epoch".into(), "7".into());
    ckpt.metadata.insert("rng_state".into(), "0123456789abcdef:fedcba".into());
    ckpt.metadata.insert("optimizer.lr".into(), "0.01".into());
    ckpt.metadata.insert("note".into(), "unicode ✓ \"quotes\" \\ and\nnewline".into());
    ckpt.metadata.insert(String::new(), "empty key".into());
    ckpt
}

fn assert_bit_exact(a: &NamedTensor, b: &NamedTensor) {
    assert_eq!(a.name, b.name);
    assert_eq!(a.shape, b.shape, "{}", a.name);
    assert_eq!(a.data.len(), b.data.len(), "{}", a.name);
    for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{}[{i}]: {x:e} vs {y:e}", a.name);
    }
}

fn model_shapes() -> Vec<(String, Vec<usize>)> {
    vec![
        ("0.0.weight".into(), vec![7, 1, 3, 5]),
        ("0.0.bias".into(), vec![7]),
        ("3.weight".into(), vec![13, 17]),
        ("scalar".into(), vec![]),
        ("empty".into(), vec![4, 0, 2]),
        ("ones".into(), vec![1, 1, 1, 1, 1]),
    ]
}

#[test]
fn round_trip_is_bit_exact_with_metadata() {
    let dir = test_dir("roundtrip");
    let path = dir.join("nested/run/checkpoint.safetensors"); // parents get created
    let ckpt = random_checkpoint(42);
    save_atomic(&path, &ckpt).unwrap();
    let back = load(&path).unwrap();

    assert_eq!(back.metadata, ckpt.metadata);
    assert_eq!(back.tensors.len(), ckpt.tensors.len());
    // load returns tensors sorted by name.
    let names: Vec<&str> = back.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for t in &ckpt.tensors {
        assert_bit_exact(t, back.get(&t.name).expect("tensor missing after load"));
    }
    check_against(&back, &model_shapes()).unwrap();
    assert_eq!(dir_entries(&dir.join("nested/run")), vec!["checkpoint.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_checkpoint_round_trips() {
    let dir = test_dir("empty");
    let path = dir.join("c.safetensors");
    save_atomic(&path, &Checkpoint::default()).unwrap();
    let back = load(&path).unwrap();
    assert!(back.tensors.is_empty());
    assert_eq!(back.metadata, BTreeMap::new());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_is_standard_safetensors_little_endian_f32() {
    // Check the layout by hand so that other readers (PyTorch) agree with us.
    let dir = test_dir("layout");
    let path = dir.join("c.safetensors");
    let mut ckpt = Checkpoint::new();
    ckpt.push("w", vec![2], vec![1.0, -2.5]);
    ckpt.metadata.insert("epoch".into(), "3".into());
    save_atomic(&path, &ckpt).unwrap();
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), "{header}");
    assert!(header.contains("\"__metadata__\":{\"epoch\":\"3\"}"), "{header}");
    let data = &bytes[8 + n..];
    assert_eq!(data, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    fs::remove_dir_all(&dir).unwrap();
}

fn assert_load_fails_naming(path: &Path, what: &str) -> String {
    let err = load(path).expect_err(what);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{what}: message {msg:?} does not name the file");
    assert_eq!(err.path(), Some(path));
    msg
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = test_dir("bad");

    let missing = dir.join("missing.safetensors");
    let msg = assert_load_fails_naming(&missing, "missing file");
    assert!(matches!(load(&missing), Err(CheckpointError::Io { .. })), "{msg}");

    let empty = dir.join("empty.safetensors");
    fs::write(&empty, b"").unwrap();
    let msg = assert_load_fails_naming(&empty, "empty file");
    assert!(msg.contains("not a safetensors file"), "{msg}");

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for len in [1usize, 7, 8, 9, 100, 4096] {
        let random = dir.join(format!("random{len}.safetensors"));
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        fs::write(&random, bytes).unwrap();
        let msg = assert_load_fails_naming(&random, "random bytes");
        assert!(matches!(load(&random), Err(CheckpointError::Format { .. })), "{msg}");
    }

    // A header length that fits, followed by text that is not JSON.
    let junk = dir.join("junk.safetensors");
    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"not json");
    fs::write(&junk, bytes).unwrap();
    assert_load_fails_naming(&junk, "junk header");

    // A real checkpoint cut short at several points.
    let good = dir.join("good.safetensors");
    save_atomic(&good, &random_checkpoint(1)).unwrap();
    let full = fs::read(&good).unwrap();
    for cut in [4, 8, 20, full.len() / 2, full.len() - 1] {
        let truncated = dir.join(format!("truncated{cut}.safetensors"));
        fs::write(&truncated, &full[..cut]).unwrap();
        let msg = assert_load_fails_naming(&truncated, "truncated checkpoint");
        assert!(msg.contains("not a safetensors file"), "{msg}");
    }

    // A directory is not a checkpoint either.
    assert_load_fails_naming(&dir, "directory");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_f32_tensor_is_rejected_by_name() {
    let dir = test_dir("dtype");
    let path = dir.join("f16.safetensors");
    let header = br#"{"half":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0, 60, 0, 60]);
    fs::write(&path, bytes).unwrap();
    let msg = assert_load_fails_naming(&path, "F16 tensor");
    assert!(msg.contains("half") && msg.contains("F16"), "{msg}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_against_reports_shape_missing_and_unexpected() {
    let dir = test_dir("check");
    let path = dir.join("checkpoint.safetensors");
    let mut ckpt = Checkpoint::new();
    ckpt.push("0.0.weight", vec![96, 3, 11, 11], vec![0.0; 96 * 3 * 11 * 11]);
    ckpt.push("0.0.bias", vec![96], vec![0.0; 96]);
    ckpt.push("9.bias", vec![10], vec![0.0; 10]);
    // Optimizer state for tensors the model does not have is not the model's concern.
    ckpt.push("optimizer.momentum.42.weight", vec![1], vec![0.0]);
    save_atomic(&path, &ckpt).unwrap();

    let expected: Vec<(String, Vec<usize>)> = vec![
        ("0.0.weight".into(), vec![96, 1, 11, 11]),
        ("0.0.bias".into(), vec![96]),
        ("5.weight".into(), vec![4096, 6400]),
    ];
    let err = load_checked(&path, &expected).unwrap_err();
    let CheckpointError::Mismatch { path: Some(p), problems } = &err else {
        panic!("expected a mismatch with a path, got {err:?}");
    };
    assert_eq!(p, &path);
    assert_eq!(
        problems,
        &vec![
            TensorMismatch::WrongShape {
                name: "0.0.weight".into(),
                found: vec![96, 3, 11, 11],
                expected: vec![96, 1, 11, 11],
            },
            TensorMismatch::Missing("5.weight".into()),
            TensorMismatch::Unexpected("9.bias".into()),
        ]
    );
    let msg = err.to_string();
    for part in [
        format!("checkpoint {}: ", path.display()),
        "tensor 0.0.weight has shape [96, 3, 11, 11], the model expects [96, 1, 11, 11]".into(),
        "missing tensor 5.weight".into(),
        "unexpected tensor 9.bias".into(),
    ] {
        assert!(msg.contains(&part), "{msg:?} lacks {part:?}");
    }
    assert!(!msg.contains("optimizer"), "{msg}");

    // Without a file, the message still reads well.
    let err = check_against(&ckpt, &expected[1..2]).unwrap_err();
    assert!(err.to_string().starts_with("checkpoint: unexpected tensor 0.0.weight"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_replaces_existing_and_leaves_no_temp_files() {
    let dir = test_dir("replace");
    let path = dir.join("checkpoint.safetensors");
    let first = random_checkpoint(1);
    save_atomic(&path, &first).unwrap();
    for seed in 2..5 {
        let next = random_checkpoint(seed);
        save_atomic(&path, &next).unwrap();
        let back = load(&path).unwrap();
        for t in &next.tensors {
            assert_bit_exact(t, back.get(&t.name).unwrap());
        }
    }
    // A smaller checkpoint over a bigger one: no stale bytes survive.
    let mut small = Checkpoint::new();
    small.push("b", vec![1], vec![1.5]);
    save_atomic(&path, &small).unwrap();
    assert_eq!(load(&path).unwrap(), small);
    assert_eq!(dir_entries(&dir), vec!["checkpoint.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_saves_from_threads_do_not_collide() {
    let dir = test_dir("threads");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let path = dir.join("checkpoint.safetensors");
            std::thread::spawn(move || {
                for seed in 0..5 {
                    save_atomic(&path, &random_checkpoint(i * 100 + seed)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Whichever save came last, the file is whole.
    let back = load(&dir.join("checkpoint.safetensors")).unwrap();
    check_against(&back, &model_shapes()).unwrap();
    assert_eq!(dir_entries(&dir), vec!["checkpoint.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_save_over_directory_keeps_everything_and_leaves_no_temp() {
    let dir = test_dir("fail-dir");
    // The target name is taken by a non-empty directory: the rename must fail.
    let target = dir.join("checkpoint.safetensors");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), b"precious").unwrap();
    // An older checkpoint next to it must be untouched too.
    let old = dir.join("old.safetensors");
    let old_ckpt = random_checkpoint(3);
    save_atomic(&old, &old_ckpt).unwrap();
    let old_bytes = fs::read(&old).unwrap();

    let err = save_atomic(&target, &random_checkpoint(4)).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&target.display().to_string()), "{err}");
    assert!(target.is_dir());
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"precious");
    assert_eq!(fs::read(&old).unwrap(), old_bytes);
    assert_eq!(dir_entries(&dir), vec!["checkpoint.safetensors", "old.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_save_with_invalid_data_keeps_old_checkpoint() {
    let dir = test_dir("fail-invalid");
    let path = dir.join("checkpoint.safetensors");
    save_atomic(&path, &random_checkpoint(5)).unwrap();
    let before = fs::read(&path).unwrap();
    let mut bad = random_checkpoint(6);
    bad.tensors[0].data.pop(); // one value short of its shape
    let err = save_atomic(&path, &bad).unwrap_err();
    assert!(matches!(err, CheckpointError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains(&bad.tensors[0].name), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(dir_entries(&dir), vec!["checkpoint.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_save_when_parent_is_a_file() {
    let dir = test_dir("fail-parent");
    let blocker = dir.join("runs");
    fs::write(&blocker, b"not a directory").unwrap();
    let err = save_atomic(&blocker.join("checkpoint.safetensors"), &random_checkpoint(7)).unwrap_err();
    assert!(err.to_string().contains("runs"), "{err}");
    assert_eq!(fs::read(&blocker).unwrap(), b"not a directory");
    assert_eq!(dir_entries(&dir), vec!["runs"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn failed_save_in_read_only_directory_keeps_old_checkpoint() {
    use std::os::unix::fs::PermissionsExt;
    let dir = test_dir("fail-readonly");
    let path = dir.join("checkpoint.safetensors");
    save_atomic(&path, &random_checkpoint(8)).unwrap();
    let before = fs::read(&path).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores directory permissions; then there is nothing to test.
    let probe = dir.join(".probe");
    let writable = fs::write(&probe, b"").is_ok();
    let result = if writable {
        let _ = fs::remove_file(&probe);
        None
    } else {
        Some(save_atomic(&path, &random_checkpoint(9)))
    };
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(result) = result {
        let err = result.unwrap_err();
        assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(dir_entries(&dir), vec!["checkpoint.safetensors"]);
    } else {
        eprintln!("running as root: read-only directory case skipped");
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// The same tensors and metadata give the same bytes, whatever order they were added in, in
/// every process (the `safetensors` crate's writer orders metadata by a randomly seeded hash):
/// saved weights can be compared and deduplicated by their files.
#[test]
fn same_contents_give_the_same_bytes() {
    let dir = test_dir("deterministic");
    let ckpt = random_checkpoint(7);
    let mut reordered = ckpt.clone();
    reordered.tensors.reverse();
    let mut metadata: Vec<(String, String)> = ckpt.metadata.clone().into_iter().collect();
    metadata.reverse();
    reordered.metadata = metadata.into_iter().collect();
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    save_atomic(&a, &ckpt).unwrap();
    save_atomic(&b, &reordered).unwrap();
    let bytes = fs::read(&a).unwrap();
    assert_eq!(bytes, fs::read(&b).unwrap());
    // A digest of the file: a change to the writer's layout shows here.
    let mut nonempty = Checkpoint::new();
    nonempty.push("b", vec![2], vec![1.0, 2.0]);
    nonempty.push("a", vec![1, 1], vec![-0.0]);
    for (k, v) in [("z", "1"), ("a", "x\"y"), ("m", "")] {
        nonempty.metadata.insert(k.into(), v.into());
    }
    save_atomic(&a, &nonempty).unwrap();
    let bytes = fs::read(&a).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "the header is padded to 8 bytes");
    assert_eq!(
        std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end(),
        "{\"__metadata__\":{\"a\":\"x\\\"y\",\"m\":\"\",\"z\":\"1\"},\
         \"a\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]},\
         \"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
    );
    // Byte for byte what the safetensors crate writes when the order is not in question (one
    // metadata key), so every reader of the format takes it.
    let mut one_key = nonempty.clone();
    one_key.metadata.retain(|k, _| k == "z");
    save_atomic(&a, &one_key).unwrap();
    let data_b: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let data_a: Vec<u8> = (-0.0f32).to_le_bytes().to_vec();
    let theirs = safetensors::serialize(
        [
            ("b", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data_b).unwrap()),
            (
                "a",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 1], &data_a).unwrap(),
            ),
        ],
        &Some([("z".to_string(), "1".to_string())].into_iter().collect()),
    )
    .unwrap();
    assert_eq!(fs::read(&a).unwrap(), theirs);
    fs::remove_dir_all(&dir).unwrap();
}
