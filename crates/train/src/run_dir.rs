//! A run's output folder: one run at a time (a lock), and its checkpoint saved so that a crash,
//! a kill or a full disk at any moment leaves the previous checkpoint loadable.
//!
//! The folder holds `checkpoint.safetensors` (the weights, with the run's settings and position
//! in the metadata), the optimizer file it names (`optimizer-step<N>.safetensors`),
//! `metrics.csv`, `plot.svg` and `train.lock`. A save writes the new optimizer file, then the
//! weights that name it (each atomically: a temporary file, synced, renamed over the old), and
//! only then removes the older optimizer file: a kill between any two steps leaves a weights file
//! whose optimizer file exists.
use crate::checkpoint::{self, CheckpointError};
use crate::state::{self, RunMeta};
use anyhow::{bail, Context, Result};
use autograd::Var;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use tensor::{Backend, Tensor};

/// The latest checkpoint: the weights, with the run's settings and position in the metadata.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// One row of metrics per epoch ([`crate::metrics`]).
pub const METRICS_FILE: &str = "metrics.csv";
/// The chart of the metrics ([`crate::plot`]).
pub const PLOT_FILE: &str = "plot.svg";
/// The file locked while a run uses the folder; it names the process and command that hold it.
pub const LOCK_FILE: &str = "train.lock";
/// With a validation split: the weights of the epoch with the best validation accuracy.
pub const BEST_FILE: &str = "best.safetensors";

/// An output folder this process holds the lock of (released when dropped or when the process
/// dies, however it dies: the operating system drops the lock with the file handle).
pub struct RunDir {
    path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates `path` if needed and takes its lock, or says which run holds it. Temporary files
    /// that interrupted saves left in it are then removed. An error if `path` is a file, cannot
    /// be created or locked, or another run holds the lock.
    pub fn open(path: &Path) -> Result<RunDir> {
        if path.exists() && !path.is_dir() {
            bail!("the output folder {} is a file; choose another --out", path.display());
        }
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create the output folder {}", path.display()))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                bail!(
                    "another run is using the output folder {} ({}); wait for it to finish or stop it, \
                     or give this run another --out",
                    path.display(),
                    if holder.is_empty() {
                        "its lock file names no process".into()
                    } else {
                        holder.replace('\n', ", ")
                    }
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        // Who holds it, for the message another run would print (the lock itself is what counts).
        let command: Vec<String> = std::env::args().collect();
        let note = format!("pid {}\ncommand {}\n", std::process::id(), command.join(" "));
        let _ = lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| lock.write_all(note.as_bytes()));
        let dir = RunDir { path: path.to_path_buf(), _lock: lock };
        dir.remove_temporaries();
        Ok(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The folder's [`CHECKPOINT_FILE`].
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join(CHECKPOINT_FILE)
    }
    /// The folder's [`METRICS_FILE`].
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }
    /// The folder's [`PLOT_FILE`].
    pub fn plot_path(&self) -> PathBuf {
        self.path.join(PLOT_FILE)
    }

    /// Temporary files of saves that a kill interrupted (`.<name>.tmp-<pid>-<n>`): only this
    /// run, holding the lock, can own files here, so any left are debris.
    fn remove_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Saves the weights as the best so far (`best.safetensors`, atomically), with `meta`.
    pub fn save_best<B: Backend>(&self, params: &[(String, Var<B>)], meta: &RunMeta) -> Result<()> {
        checkpoint::save_atomic(&self.path.join(BEST_FILE), &state::weights_checkpoint(params, meta)?)
            .map_err(|e| anyhow::Error::new(e).context("saving the best weights failed"))
    }

    /// Saves the weights, the optimizer's state and `meta` (see the module docs for the order).
    pub fn save<B: Backend>(
        &self,
        params: &[(String, Var<B>)],
        optimizer_state: &[(String, Tensor<B>)],
        meta: &RunMeta,
    ) -> Result<()> {
        if !self.path.is_dir() {
            bail!(
                "the output folder {} has disappeared; nothing could be saved (the run stops here)",
                self.path.display()
            );
        }
        let optimizer_file = meta.optimizer_path(&self.path);
        let failed = |e: CheckpointError| {
            anyhow::Error::new(e).context("saving the checkpoint failed; the previous one is intact")
        };
        checkpoint::save_atomic(&optimizer_file, &state::optimizer_checkpoint(optimizer_state, meta)?)
            .map_err(failed)?;
        checkpoint::save_atomic(&self.checkpoint_path(), &state::weights_checkpoint(params, meta)?)
            .map_err(failed)?;
        // The older optimizer files are now unreferenced.
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if state::is_optimizer_file(&name.to_string_lossy()) && entry.path() != optimizer_file {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}
