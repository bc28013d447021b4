//! The training program's library half: data, checkpoints, metrics, the plot and the loop.
//!
//! The `train` binary is a thin layer over this crate: it parses the command line ([`cli`]),
//! picks a backend and calls [`session::train`], [`session::eval`] or [`predict::predict`].
//!
//! # Modules
//!
//! - [`data`]: Fashion-MNIST. Finds the four IDX files (`--data`, `$FASHION_MNIST_DIR`,
//!   Debian's copy, the per-user cache) or downloads them with their MD5 sums checked, reads
//!   them (gzip or raw), resizes images as PyTorch's bilinear `interpolate` does, augments them
//!   (random crops and flips) and batches them on a background thread.
//! - [`checkpoint`]: named `f32` tensors and string metadata in safetensors files, saved
//!   atomically, and checked against the names and shapes a model expects.
//! - [`state`]: what a checkpoint holds beyond the weights: the run's [`state::Settings`] and
//!   [`state::Position`] in its metadata ([`state::RunMeta`]), and the conversions between a
//!   model or optimizer and a checkpoint.
//! - [`run_dir`]: the run's output folder: its lock, and saves in an order that a kill at any
//!   moment cannot break.
//! - [`schedule`]: learning-rate schedules as functions of the optimizer step.
//! - [`memory`]: the run's estimated peak memory, checked against the device's before it starts.
//! - [`stop`]: the first Ctrl-C, SIGTERM or SIGHUP stops a run after its current step, with a
//!   checkpoint saved; a second one exits at once.
//! - [`metrics`] and [`plot`]: `metrics.csv`, one row per epoch, and the `plot.svg` chart of it.
//! - [`weights`]: weights from this program's checkpoints or from plain PyTorch `state_dict`s,
//!   their model recognised from the tensors.
//! - [`session`]: the training loop and evaluation; [`predict`]: `train predict`.
//! - [`cli`]: the command line's options (clap).
//!
//! # How a run flows
//!
//! [`session::train`] takes the settings from the flags, or from the checkpoint's metadata when
//! resuming, and builds the model. [`data::locate`] finds (or downloads) the data,
//! [`data::load_split`] reads it, and a validation split is held out if one is asked for.
//! [`memory::check`] refuses a batch that would not fit, and [`run_dir::RunDir::open`] locks the
//! output folder. Each epoch then takes its batches from [`data::batches_from`], in an order
//! given by [`data::epoch_seed`], and runs forward, backward and an optimizer step per batch at
//! the rate [`schedule::rate`] gives. A checkpoint is saved every `--checkpoint-every` and when a
//! stop is asked for ([`run_dir::RunDir::save`]); at the end of an epoch the model is evaluated,
//! the checkpoint saved, and `metrics.csv` ([`metrics::write_csv`]) and `plot.svg`
//! ([`plot::write_svg`]) rewritten.
//!
//! # Example
//!
//! A checkpoint written atomically and read back, then checked against a model's shapes:
//!
//! ```rust
//! use train::checkpoint::{self, Checkpoint};
//!
//! let dir = std::env::temp_dir().join(format!("train-doc-example-{}", std::process::id()));
//! let path = dir.join("checkpoint.safetensors");
//!
//! let mut ckpt = Checkpoint::new();
//! ckpt.push("0.0.weight", vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
//! ckpt.push("0.0.bias", vec![2], vec![0.5, -0.5]);
//! ckpt.metadata.insert("note".into(), "an example".into());
//! checkpoint::save_atomic(&path, &ckpt)?; // creates `dir` too
//!
//! let back = checkpoint::load(&path)?;
//! // Tensors come back sorted by name.
//! assert_eq!(back.tensors[0].name, "0.0.bias");
//! assert_eq!(back.get("0.0.weight").unwrap().data, ckpt.get("0.0.weight").unwrap().data);
//! assert_eq!(back.meta("note"), Some("an example"));
//!
//! // A model whose bias has three elements does not take these weights.
//! let expected = vec![("0.0.weight".to_string(), vec![2, 3]), ("0.0.bias".to_string(), vec![3])];
//! let err = checkpoint::check_against(&back, &expected).unwrap_err().at(&path);
//! assert!(err.to_string().ends_with("tensor 0.0.bias has shape [2], the model expects [3]"));
//!
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod memory;
pub mod metrics;
pub mod plot;
pub mod predict;
pub mod run_dir;
pub mod schedule;
pub mod session;
pub mod state;
pub mod stop;
pub mod weights;
