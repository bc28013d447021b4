//! The training program's library half: data, checkpoints, metrics and the training loop.
pub mod checkpoint;
pub mod data;
pub mod metrics;
pub mod plot;
