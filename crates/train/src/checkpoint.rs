//! Checkpoints as safetensors files, independent of the engine's tensor types.
//!
//! A [`Checkpoint`] is a flat list of named `f32` tensors plus string metadata.
//! Model weights use PyTorch `state_dict` names (`0.0.weight`), optimizer state
//! uses names under the [`OPTIMIZER_PREFIX`] (`optimizer.momentum.0.0.weight`),
//! so the file opens with `safetensors.torch.load_file` and the model part can
//! be fed to `model.load_state_dict` after filtering the optimizer entries.
//!
//! Saving is atomic: the file is written under a temporary name in the target
//! directory, flushed to disk, and renamed over the old checkpoint, so a crash
//! at any point leaves either the old or the new checkpoint, never a torn one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};

/// Names starting with this belong to the optimizer, not the model;
/// [`check_against`] ignores them.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// One tensor of a checkpoint: row-major `f32` data of the given shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamedTensor {
    /// The tensor's name in the file, e.g. the state_dict name `0.0.weight`.
    pub name: String,
    /// Dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, row-major: as many as the shape's product ([`save_atomic`] checks).
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// A tensor called `name` of the given shape and data (not checked against each other here).
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        NamedTensor { name: name.into(), shape, data }
    }

    /// Number of elements the shape calls for (1 for a scalar, `None` on overflow).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

/// Tensors plus string->string metadata (the only kind safetensors allows).
///
/// [`load`] returns the tensors sorted by name (plain byte-wise string order,
/// so `10.weight` comes before `2.weight`); the order given to [`save_atomic`]
/// does not matter, the file format does not keep it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    /// The tensors, in any order; [`save_atomic`] refuses duplicate names.
    pub tensors: Vec<NamedTensor>,
    /// The metadata, kept sorted by key so that a save writes it in the same order every time.
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// An empty checkpoint: no tensors, no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Appends a tensor (no check for duplicates here; [`save_atomic`] checks).
    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        self.tensors.push(NamedTensor::new(name, shape, data));
    }

    /// The metadata value for `key`, if any.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Tensors that belong to the model (names not under [`OPTIMIZER_PREFIX`]).
    pub fn model_tensors(&self) -> impl Iterator<Item = &NamedTensor> {
        self.tensors.iter().filter(|t| !t.name.starts_with(OPTIMIZER_PREFIX))
    }
}

/// One way a checkpoint's tensors disagree with what the model expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorMismatch {
    /// A tensor the model has, with another shape in the checkpoint.
    WrongShape {
        /// The tensor's name.
        name: String,
        /// Its shape in the checkpoint.
        found: Vec<usize>,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// The name of a tensor the model expects and the checkpoint lacks.
    Missing(String),
    /// The name of a model tensor in the checkpoint that the model does not have.
    Unexpected(String),
}

impl fmt::Display for TensorMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorMismatch::WrongShape { name, found, expected } => {
                write!(f, "tensor {name} has shape {found:?}, the model expects {expected:?}")
            }
            TensorMismatch::Missing(name) => write!(f, "missing tensor {name}"),
            TensorMismatch::Unexpected(name) => write!(f, "unexpected tensor {name}"),
        }
    }
}

/// Everything that can go wrong with a checkpoint; each variant carries the
/// file's path so that messages say which file is at fault.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading, writing, renaming or syncing failed.
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file exists but is not a valid safetensors file, or holds a tensor
    /// this engine cannot use (e.g. not F32).
    Format {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it, in words.
        reason: String,
    },
    /// The checkpoint given to [`save_atomic`] is inconsistent (data length
    /// does not match the shape, duplicate or reserved names); nothing was written.
    Invalid {
        /// Where the checkpoint was to be written.
        path: PathBuf,
        /// What is inconsistent, in words.
        reason: String,
    },
    /// Tensors disagree with the model ([`check_against`]). `path` is `None`
    /// when the checkpoint was not tied to a file; see [`CheckpointError::at`].
    Mismatch {
        /// The checkpoint file, when known.
        path: Option<PathBuf>,
        /// Every disagreement found, in the order [`check_against`] gives.
        problems: Vec<TensorMismatch>,
    },
}

impl CheckpointError {
    /// Attaches a path to a [`CheckpointError::Mismatch`] that has none
    /// (other variants already name their file and are returned unchanged).
    pub fn at(self, file: &Path) -> Self {
        match self {
            CheckpointError::Mismatch { path: None, problems } => {
                CheckpointError::Mismatch { path: Some(file.to_path_buf()), problems }
            }
            other => other,
        }
    }

    /// The file this error is about, if known.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CheckpointError::Io { path, .. }
            | CheckpointError::Format { path, .. }
            | CheckpointError::Invalid { path, .. } => Some(path),
            CheckpointError::Mismatch { path, .. } => path.as_deref(),
        }
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, source } => {
                write!(f, "checkpoint {}: {source}", path.display())
            }
            CheckpointError::Format { path, reason } => {
                write!(f, "checkpoint {}: {reason}", path.display())
            }
            CheckpointError::Invalid { path, reason } => {
                write!(f, "checkpoint {}: cannot save: {reason}", path.display())
            }
            CheckpointError::Mismatch { path, problems } => {
                match path {
                    Some(p) => write!(f, "checkpoint {}: ", p.display())?,
                    None => write!(f, "checkpoint: ")?,
                }
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// The I/O error's message is part of this one's (`Display`), so it is not also given as the
/// source: a chain printed with `{:#}` would say it twice.
impl std::error::Error for CheckpointError {}

/// Rejects what would produce a file that does not read back as written.
fn validate_for_save(ckpt: &Checkpoint) -> Result<(), String> {
    let mut seen = HashSet::new();
    for t in &ckpt.tensors {
        if t.name.is_empty() {
            return Err("a tensor has an empty name".into());
        }
        // The header is a JSON object whose `__metadata__` key holds the metadata.
        if t.name == "__metadata__" {
            return Err("tensor name __metadata__ is reserved by the format".into());
        }
        if !seen.insert(t.name.as_str()) {
            return Err(format!("tensor name {} appears twice", t.name));
        }
        match t.numel() {
            Some(n) if n == t.data.len() => {}
            Some(n) => {
                return Err(format!(
                    "tensor {} has shape {:?} ({n} elements) but {} values",
                    t.name,
                    t.shape,
                    t.data.len()
                ))
            }
            None => return Err(format!("tensor {} has a shape too large: {:?}", t.name, t.shape)),
        }
    }
    Ok(())
}

/// Writes `ckpt` to `path` atomically (see the module docs). The parent
/// directory is created if missing. On failure no temporary file is left
/// behind and an existing file at `path` is untouched.
pub fn save_atomic(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    validate_for_save(ckpt)
        .map_err(|reason| CheckpointError::Invalid { path: path.to_path_buf(), reason })?;
    write_atomic_with(path, |tmp| {
        let file = File::create(tmp)?;
        let mut out = io::BufWriter::new(file);
        write_safetensors(&mut out, ckpt)?;
        out.flush()
    })
    .map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })
}

/// The safetensors layout, written here rather than by the `safetensors` crate (which reads the
/// files) because the crate keeps the metadata in a hash map and writes it in a different order
/// each run: the same weights must give the same bytes. The header lists the metadata, then the
/// tensors by name, as the crate orders them for a single dtype; it is padded with spaces to a
/// multiple of 8 bytes, and the data follows in the same order, little-endian.
fn write_safetensors(out: &mut impl Write, ckpt: &Checkpoint) -> io::Result<()> {
    let json = |s: &str| serde_json::to_string(s).expect("a string always serialises");
    let mut order: Vec<&NamedTensor> = ckpt.tensors.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = String::from("{");
    let mut entries = Vec::new();
    if !ckpt.metadata.is_empty() {
        let pairs: Vec<String> =
            ckpt.metadata.iter().map(|(k, v)| format!("{}:{}", json(k), json(v))).collect();
        entries.push(format!("\"__metadata__\":{{{}}}", pairs.join(",")));
    }
    let mut offset = 0usize;
    for t in &order {
        let end = offset + 4 * t.data.len();
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        entries.push(format!(
            "{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            json(&t.name),
            shape.join(",")
        ));
        offset = end;
    }
    header.push_str(&entries.join(","));
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    let mut bytes = Vec::new();
    for t in order {
        bytes.clear();
        bytes.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
        out.write_all(&bytes)?;
    }
    Ok(())
}

/// Reads a checkpoint. Tensors come back sorted by name; every tensor must be F32.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = fs::read(path).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(e.kind(), format!("cannot read: {e}")),
    })?;
    from_bytes(&bytes, path)
}

/// [`load`] of a file's contents; `path` names it in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
    let format_err = |reason: String| CheckpointError::Format { path: path.to_path_buf(), reason };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format_err(format!("not a safetensors file ({})", describe(&e, bytes.len()))))?;

    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format_err(format!(
                "tensor {name} has dtype {:?}, only F32 is supported",
                view.dtype()
            )));
        }
        let data =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        tensors.push(NamedTensor { name, shape: view.shape().to_vec(), data });
    }
    // The parser keeps tensors in a hash map; sort for a stable, documented order.
    tensors.sort_by(|a, b| a.name.cmp(&b.name));

    // Header parsing happens twice (deserialize does not expose the metadata),
    // but it is tiny next to the tensor data.
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format_err(format!("not a safetensors file ({})", describe(&e, bytes.len()))))?;
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Checkpoint { tensors, metadata })
}

/// Human wording for the parser's errors (its Display is just Debug).
fn describe(e: &SafeTensorError, file_len: usize) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            format!("{file_len} bytes, shorter than the 8-byte header length")
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            "the header length field is out of range; truncated or not safetensors".into()
        }
        SafeTensorError::InvalidHeader => "the header is not UTF-8".into(),
        SafeTensorError::InvalidHeaderStart | SafeTensorError::InvalidHeaderDeserialization => {
            "the header is not valid safetensors JSON".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the file size does not match the header; truncated?".into()
        }
        SafeTensorError::InvalidOffset(name) => format!("bad data offsets for tensor {name}"),
        SafeTensorError::TensorInvalidInfo => "a tensor's shape does not match its byte size".into(),
        SafeTensorError::ValidationOverflow => "a tensor's shape overflows".into(),
        other => format!("{other:?}"),
    }
}

/// Loads `path` and checks it against the model's `expected` tensors in one go.
pub fn load_checked(path: &Path, expected: &[(String, Vec<usize>)]) -> Result<Checkpoint, CheckpointError> {
    let ckpt = load(path)?;
    check_against(&ckpt, expected).map_err(|e| e.at(path))?;
    Ok(ckpt)
}

/// Checks that every `expected` (name, shape) is present with that shape and
/// that the checkpoint holds no other model tensor (names under
/// [`OPTIMIZER_PREFIX`] are ignored). All problems are reported together, in
/// the order of `expected`, then unexpected names in checkpoint order. The
/// error has no path; use [`CheckpointError::at`] or [`load_checked`].
pub fn check_against(ckpt: &Checkpoint, expected: &[(String, Vec<usize>)]) -> Result<(), CheckpointError> {
    let have: HashMap<&str, &NamedTensor> = ckpt.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut problems = Vec::new();
    for (name, shape) in expected {
        match have.get(name.as_str()) {
            None => problems.push(TensorMismatch::Missing(name.clone())),
            Some(t) if &t.shape != shape => problems.push(TensorMismatch::WrongShape {
                name: name.clone(),
                found: t.shape.clone(),
                expected: shape.clone(),
            }),
            Some(_) => {}
        }
    }
    let wanted: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    for t in ckpt.model_tensors() {
        if !wanted.contains(t.name.as_str()) {
            problems.push(TensorMismatch::Unexpected(t.name.clone()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Mismatch { path: None, problems })
    }
}

/// Writes `contents` to `path` atomically (temp file + fsync + rename + dir fsync).
pub fn write_bytes_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |tmp| {
        fs::write(tmp, contents)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", tmp.display())))
    })
}

/// Distinguishes temp files of concurrent saves within one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Core of the atomic writes: `fill` writes the (already created, empty)
/// temporary file by path; this then syncs it, renames it over `path` and
/// syncs the directory. The temp file is removed on any failure before the
/// rename; after it, there is no temp file left to remove.
/// An error from the final directory sync means the new file is in place
/// but its rename may not yet be durable.
pub(crate) fn write_atomic_with(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let ctx = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("cannot {what} {}: {e}", p.display()))
    };
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no file name", path.display()))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| ctx("create directory", &dir, e))?;

    // Same directory as the target so the rename stays within one filesystem;
    // create_new so two writers can never share (and clobber) a temp file.
    let tmp = loop {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".tmp-{}-{n}", std::process::id()));
        let candidate = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(_) => break candidate,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ctx("create temporary file in", &dir, e)),
        }
    };

    let result = fill(&tmp)
        .and_then(|()| injected_failure().map_or(Ok(()), Err))
        .and_then(|()| {
            // fsync acts on the inode, so a fresh handle flushes what `fill` wrote.
            File::options()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| ctx("sync", &tmp, e))
        })
        .and_then(|()| {
            fs::rename(&tmp, path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot rename {} to {}: {e}", tmp.display(), path.display()),
                )
            })
        });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir).map_err(|e| ctx("sync directory", &dir, e))
}

/// Fault injection for tests of what a failed save leaves: with `CONVNET_FAIL_WRITE=N` the N-th
/// atomic write of the process fails as on a full disk, after its temporary file is written.
fn injected_failure() -> Option<io::Error> {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let at = (*AT.get_or_init(|| std::env::var("CONVNET_FAIL_WRITE").ok().and_then(|v| v.parse().ok())))?;
    let n = WRITES.fetch_add(1, Ordering::Relaxed) + 1;
    (n == at).then(|| {
        io::Error::new(io::ErrorKind::StorageFull, "No space left on device (injected by CONVNET_FAIL_WRITE)")
    })
}

/// Makes the rename itself durable. Some filesystems cannot fsync a
/// directory; that is not worth failing a save over.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported) => Ok(()),
        other => other,
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt() -> Checkpoint {
        let mut c = Checkpoint::new();
        c.push("0.0.weight", vec![2, 1, 3, 3], (0..18).map(|i| i as f32).collect());
        c.push("0.0.bias", vec![2], vec![0.5, -0.5]);
        c.push("optimizer.momentum.0.0.bias", vec![2], vec![0.0, 1.0]);
        c
    }

    fn expected() -> Vec<(String, Vec<usize>)> {
        vec![("0.0.weight".into(), vec![2, 1, 3, 3]), ("0.0.bias".into(), vec![2])]
    }

    #[test]
    fn check_against_accepts_match_and_ignores_optimizer() {
        check_against(&ckpt(), &expected()).unwrap();
    }

    #[test]
    fn check_against_message_names_path_and_shapes() {
        let mut c = ckpt();
        c.tensors[0].shape = vec![2, 3, 3, 1];
        let e = check_against(&c, &expected()).unwrap_err().at(Path::new("runs/x/checkpoint.safetensors"));
        assert_eq!(
            e.to_string(),
            "checkpoint runs/x/checkpoint.safetensors: tensor 0.0.weight has shape \
             [2, 3, 3, 1], the model expects [2, 1, 3, 3]"
        );
    }

    #[test]
    fn save_rejects_inconsistent_checkpoints() {
        let dir = std::env::temp_dir().join(format!("ckpt-unit-{}", std::process::id()));
        let path = dir.join("c.safetensors");
        let mut c = ckpt();
        c.tensors[1].data.push(1.0);
        let e = save_atomic(&path, &c).unwrap_err();
        assert!(matches!(e, CheckpointError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("0.0.bias"), "{e}");

        let mut c = ckpt();
        c.push("0.0.bias", vec![], vec![1.0]);
        assert!(save_atomic(&path, &c).unwrap_err().to_string().contains("twice"));
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn get_finds_by_name() {
        let c = ckpt();
        assert_eq!(c.get("0.0.bias").unwrap().data, vec![0.5, -0.5]);
        assert!(c.get("nope").is_none());
        assert_eq!(c.model_tensors().count(), 2);
    }
}
